"""examples/user-repo as a new user gets it: copied to a folder of its own, pricer installed there from a wheel built
from this checkout into a fresh virtual environment, its gate green on a rerun and red on a planted regression.

The environment reuses this one's packages (torch and the rest), so nothing is downloaded; a classic predictor keeps
each gate to seconds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # a server, a second process or a wheel: `pytest -m e2e`

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "user-repo"
PREDICTOR = "--pricer-predictor=bow"  # learns the words of the example's descriptions; seconds to train
GATE = ("-m", "eval", PREDICTOR, "-p", "no:cacheprovider")
# Every guess tripled, as a units slip would: what the gate is for.
PLANTED_REGRESSION = '''
import pytest

from pricer.engines.classic import ClassicPredictor
from pricer.engines.predict import Prediction


@pytest.fixture(autouse=True)
def tripled_guesses(monkeypatch):
    honest = ClassicPredictor.predict

    def predict(self, items):
        return [Prediction(guess=3 * p.guess, completion=p.completion, parsed=p.parsed) for p in honest(self, items)]

    monkeypatch.setattr(ClassicPredictor, "predict", predict)
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh virtual environment holding pricer from a wheel of this checkout."""
    work = tmp_path_factory.mktemp("install")
    source = work / "source"  # a copy, so the build's folders never land in the checkout
    shutil.copytree(ROOT / "pricer", source / "pricer", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # With the build backend at hand, no download; a Python whose venvs lack setuptools (3.12+) fetches it.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation, "--wheel-dir", str(work / "dist"),
        str(source))
    (wheel,) = (work / "dist").glob("pricer-*.whl")
    env = work / "venv"
    venv.create(env, system_site_packages=True, with_pip=False)
    python = env / "bin" / "python"
    # --system-site-packages reaches the base interpreter's packages; when this runs inside a virtual environment,
    # its packages are named too (a plain path: its .pth files, e.g. an editable pricer, are not run).
    purelib = Path(run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")[1].strip())
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "reused.pth").write_text("".join(f"{path}\n" for path in sorted(here)), encoding="utf-8")
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index",
        str(wheel))
    return python


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "my-repo"
    shutil.copytree(EXAMPLE, target)
    return target


def run(*argv: str, cwd: Path | None = None, check: bool = True) -> tuple[int, str]:
    """Exit code and output of a command in a user's environment: none of this checkout's paths or data."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PRICER_DATA", "PYTEST_ADDOPTS")}
    done = subprocess.run(argv, cwd=cwd, env={**env, "NO_COLOR": "1"}, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.returncode, done.stdout + done.stderr


def pytest_in(repo: Path, python: Path, *args: str) -> tuple[int, str]:
    return run(str(python), "-m", "pytest", *args, cwd=repo, check=False)


def test_the_example_repository_gates_green_then_red_on_a_planted_regression(repo: Path, installed: Path) -> None:
    code, out = pytest_in(repo, installed, *GATE, "--update-baselines", "--pricer-reason=first baseline")
    assert code == 1 and "baseline rewritten" in out, out  # a rewrite never gates green
    assert (repo / "baselines" / "bow" / "classic.json").is_file()

    code, out = pytest_in(repo, installed, *GATE)
    assert code == 0, out
    assert "bow: ok Error" in out

    (repo / "conftest.py").write_text(PLANTED_REGRESSION, encoding="utf-8")
    code, out = pytest_in(repo, installed, *GATE)
    assert code == 1, out
    assert "bow: FAILED" in out and "WORSE" in out
    where = run(str(installed), "-c", "import pricer; print(pricer.__file__)", cwd=repo)[1]
    assert where.startswith(str(installed.parent.parent)), where  # the wheel's pricer, not this checkout's


def test_plain_pytest_in_the_example_repository_leaves_the_gate_and_no_clutter(repo: Path, installed: Path) -> None:
    code, out = pytest_in(repo, installed)

    assert code == pytest.ExitCode.NO_TESTS_COLLECTED, out  # its only test is the gate: one per width, deselected
    assert "2 deselected / 0 selected" in out
    assert "Warning" not in out
    assert not (repo / ".benchmarks").exists()
