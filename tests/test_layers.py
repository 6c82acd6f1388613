"""The layout DEVELOPERS.md draws is the one the code has: every entry of pricer/ is a layer of its table, no module
imports from a layer above its own (imports inside functions and under TYPE_CHECKING count too), no modules import
each other in a circle, none passes 400 lines; and a planted upward import or circle is caught."""

from __future__ import annotations

import ast
import graphlib
import importlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pricer

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pricer"
MAX_LINES = 400


def layout_rows(developers: Path = ROOT / "DEVELOPERS.md") -> dict[str, str]:
    """The Layout table, bottom layer first: `errors.py` -> "errors", `task/` -> "task", each with its job."""
    text = developers.read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(\w+)(?:\.py|/)` \| (.*) \|$", section, flags=re.M))


def layers(developers: Path = ROOT / "DEVELOPERS.md") -> list[str]:
    return list(layout_rows(developers))


def module_name(path: Path, package: Path) -> str:
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, package): path for path in sorted(package.rglob("*.py"))}


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """Every pricer module `name` imports, wherever the import statement stands, with its line."""
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*here.split(".")[: len(here.split(".")) - node.level + 1], *filter(None, [base])])
            # `from pricer.task import metrics` imports the module pricer.task.metrics, not only the package.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != name:
                yield target, node.lineno


def layer_of(name: str, order: list[str]) -> int:
    """The rank of a module's layer; pricer/__init__.py sits below them all."""
    parts = name.split(".")
    return order.index(parts[1]) if len(parts) > 1 else -1


def upward_imports(package: Path, order: list[str]) -> list[str]:
    known = modules(package)
    found = []
    for name, path in known.items():
        for target, line in imported(name, path, known):
            if layer_of(target, order) > layer_of(name, order):
                found.append(f"{path.relative_to(package.parent)}:{line}: {name} imports {target}, a layer above")
    return found


def circle(package: Path) -> tuple[str, ...] | None:
    known = modules(package)
    graph = {name: {target for target, _ in imported(name, path, known)} for name, path in known.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return tuple(exc.args[1])
    return None


def test_the_layout_table_names_every_entry_of_the_package():
    entries = sorted(p.stem for p in PACKAGE.iterdir() if p.name not in ("__init__.py", "__pycache__"))
    assert sorted(layers()) == entries
    assert len(entries) <= 12, "a newcomer should see the layers at a glance"


def test_each_layer_row_names_what_its_package_holds():
    for layer, job in layout_rows().items():
        folder = PACKAGE / layer
        if folder.is_dir():
            held = {p.stem if p.suffix == ".py" else f"{p.name}/" for p in folder.iterdir()
                    if p.name not in ("__init__.py", "__pycache__")}
            assert {name for name in held if f"`{name}`" not in job} == set(), layer


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward_imports(PACKAGE, layers()) == []


def test_no_modules_import_each_other_in_a_circle():
    assert circle(PACKAGE) is None


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(PACKAGE, tmp_path / "pricer", ignore=shutil.ignore_patterns("__pycache__")))


def test_a_planted_upward_import_is_named_with_its_file_and_line(package_copy: Path):
    before = upward_imports(package_copy, layers())
    prompts = package_copy / "task" / "prompts.py"
    lines = prompts.read_text(encoding="utf-8").splitlines()
    planted = ["", "def planted():", "    from pricer.cli import main  # noqa: F401", "",
               "from typing import TYPE_CHECKING", "if TYPE_CHECKING:", "    from pricer.gate.verdict import Verdict"]
    prompts.write_text("\n".join(lines + planted) + "\n", encoding="utf-8")

    found = [line for line in upward_imports(package_copy, layers()) if line not in before]
    assert found == [
        f"pricer/task/prompts.py:{len(lines) + 3}: pricer.task.prompts imports pricer.cli.main, a layer above",
        f"pricer/task/prompts.py:{len(lines) + 7}: pricer.task.prompts imports pricer.gate.verdict, a layer above",
    ]


def test_a_planted_circle_inside_a_layer_is_found(package_copy: Path):
    before = upward_imports(package_copy, layers())
    metrics, prompts = package_copy / "task" / "metrics.py", package_copy / "task" / "prompts.py"
    for path, other in ((metrics, "prompts"), (prompts, "metrics")):
        path.write_text(path.read_text(encoding="utf-8") + f"\nfrom pricer.task import {other}  # noqa: E402\n",
                        encoding="utf-8")

    assert set(circle(package_copy) or ()) == {"pricer.task.metrics", "pricer.task.prompts"}
    assert upward_imports(package_copy, layers()) == before  # the same layer: only the circle is wrong


def test_an_entry_missing_from_the_table_fails(tmp_path: Path):
    developers = tmp_path / "DEVELOPERS.md"
    text = (ROOT / "DEVELOPERS.md").read_text(encoding="utf-8")
    developers.write_text(re.sub(r"^\| `history/` \|.*\n", "", text, flags=re.M), encoding="utf-8")
    assert "history" in layers() and "history" not in layers(developers)


@pytest.mark.parametrize("old", sorted(pricer.MOVED))
def test_module_paths_the_docs_named_before_still_import(old: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delitem(sys.modules, old, raising=False)  # imported anew, through the finder
    with pytest.warns(DeprecationWarning, match=re.escape(f"{old} is now {pricer.MOVED[old]}")):
        module = importlib.import_module(old)
    new = importlib.import_module(pricer.MOVED[old])
    assert module is new and new.__spec__.name == pricer.MOVED[old]  # the module itself, its own name kept


def test_the_old_default_model_path_works_in_a_fresh_interpreter():
    # What docs/engines.md told users to run before the move.
    code = "from pricer.models import converted_folder, default_gguf; print(callable(converted_folder), default_gguf.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", pricer.MOVED["pricer.models"]]
