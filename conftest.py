# Repo-only choices; the plugin itself is registered by the package's entry point.
import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread while a module runs, restored after: for tiny prompts on a shared 2-core machine, OpenMP's
    spinning threads stalled 8-bit prediction of two prompts from 1.5 s (one thread) to 28 s (two, load 6)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_cache():
    """Each width loads once per module that asks; closing frees them."""
    from pricer.models import ModelCache

    cache = ModelCache()
    yield cache
    cache.clear()
