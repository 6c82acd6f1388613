"""pricer: a pytest regression gate for LLMs that predict a product's price from its description."""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"

# Module paths the docs named before pricer/ became layer packages, and where each now lives: code written against
# them keeps importing, and gets the module itself (not a copy), with a warning naming its new path.
MOVED = {
    "pricer.models": "pricer.engines.transformers.default_model",
    "pricer.pytest_plugin": "pricer.plugin.pytest_plugin",
    "pricer.timing": "pricer.history.timing",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers only for MOVED's old paths, and only after the regular finders found nothing there."""

    moves_pricer_modules = True  # marks it, so that a re-imported pricer (pytester forgets modules) adds no second

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} is now {MOVED[spec.name]}; import it from there", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # importlib gives the module the old path's spec; exec_module restores it
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state  # already run, under its own name


if not any(getattr(finder, "moves_pricer_modules", False) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
