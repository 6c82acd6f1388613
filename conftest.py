# Repo-only choices; the plugin itself is registered by the package's entry point.
import importlib
import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

# What the plugin imports late, inside its functions. pytester forgets the modules an in-process run imported first,
# and numpy cannot be imported twice in one process ("cannot load module more than once per process"), so a module
# running pytester in process imports them first: `pytestmark = pytest.mark.usefixtures("late_imports")`.
LATE_IMPORTS = (
    "numpy", "scipy.stats", "datasets", "cpuinfo", "sklearn.dummy", "sklearn.ensemble",
    "sklearn.feature_extraction.text", "sklearn.linear_model", "sklearn.metrics", "sklearn.pipeline",
    "sklearn.preprocessing",
)


@pytest.fixture(scope="module")
def late_imports(request: pytest.FixtureRequest) -> None:
    """Import LATE_IMPORTS, and the test module's own MORE_LATE_IMPORTS, before its first in-process run."""
    for name in (*LATE_IMPORTS, *getattr(request.module, "MORE_LATE_IMPORTS", ())):
        importlib.import_module(name)


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
    from pricer.engines.transformers.cache import ModelCache

    cache = ModelCache()
    yield cache
    cache.clear()


@pytest.fixture(scope="module")
def data_dir(pytestconfig: pytest.Config) -> Path:
    """The real items: a folder with test.jsonl and train.jsonl, from $PRICER_DATA; the test is skipped without it."""
    from pricer.task.items import DATA_ENV

    source = os.environ.get(DATA_ENV)
    if not source:
        pytest.skip(f"{DATA_ENV} is not set; point it at a folder with test.jsonl and train.jsonl")
    # Absolute: pytester runs each project in its own folder, where a relative path names nothing.
    return pytestconfig.invocation_params.dir / source
