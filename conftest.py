# Repo-only choices; the plugin itself is registered by the package's entry point.
import os
from pathlib import Path

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


@pytest.fixture(scope="module")
def data_dir(pytestconfig: pytest.Config) -> Path:
    """The real items: a folder with test.jsonl and train.jsonl, from $PRICER_DATA."""
    from pricer.data import DATA_ENV

    source = os.environ.get(DATA_ENV)
    if not source:
        pytest.skip(f"{DATA_ENV} is not set; point it at a folder with test.jsonl and train.jsonl")
    # Absolute: pytester runs each project in its own folder, where a relative path names nothing.
    return pytestconfig.invocation_params.dir / source
