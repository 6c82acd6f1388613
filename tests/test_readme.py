"""The README and docs/ stay true: the classic commands they show are run and their key lines matched, the README's
failing gate is rerun and its sample matched, the LLM figures are checked against the stored baselines they come
from (no model is run), the README stays short and every relative link resolves."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pricer.cli.main import main
from pricer.engines.classic import CLASSIC_NAMES
from pricer.engines.widths import NAMES as WIDTHS
from pricer.errors import DataError
from pricer.report.tester import metrics_row
from pricer.store.baselines import baseline_path, read_baseline
from pricer.task.items import DATA_ENV, DataSpec
from pricer.task.load import load_items
from pricer.task.metrics import score_item

REPO = Path(__file__).resolve().parent.parent
README_LINES = 150  # the front door: what it is, the commands, one failing gate, links onward
BASE = "smollm2-135m-instruct"
FINE_TUNED = "smollm2-135m-instruct+smollm2-135m-pricer"
ELIDED = "..."  # a sample line of its own: real lines were left out here; at a line's end: the rest was cut

# The change the README's failing gate shows: two guesses in every five tripled (as tests/plugin/test_plugin.py plants).
PLANTED_REGRESSION = """
import pytest

from pricer.engines.classic import ClassicPredictor
from pricer.engines.predict import Prediction


@pytest.fixture(autouse=True)
def tripled_guesses(monkeypatch):
    honest = ClassicPredictor.predict

    def predict(self, items):
        return [Prediction(guess=3 * p.guess, completion=p.completion, parsed=p.parsed) if i % 5 < 2 else p
                for i, p in enumerate(honest(self, items))]

    monkeypatch.setattr(ClassicPredictor, "predict", predict)
"""


def page(name: str) -> str:
    """A page of the docs: README.md, DEVELOPERS.md or docs/NAME.md."""
    return (REPO / name).read_text(encoding="utf-8")


def pages() -> dict[str, str]:
    """README.md and every docs/ page, by path relative to the repo."""
    names = ["README.md", "DEVELOPERS.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
    return {name: page(name) for name in names}


README = page("README.md")
DATA = page("docs/data.md")
RESULTS = page("docs/results.md")


def hardware_class(text: str) -> str:
    """The class folder of stored baselines a page's LLM figures name, e.g. cpu-bfloat16."""
    match = re.search(r"baselines/[^/\s]+/((?:cpu|cuda)-[a-z0-9]+)/", text)
    assert match, "the page should name the class folder of the stored baselines its LLM figures come from"
    return match.group(1)


def stored_baseline(model_name: str, width: str, hardware: str) -> Path:
    """The stored baseline of a model at a width: in its hardware class folder, or where baselines sat before."""
    flat = baseline_path(REPO / "baselines", model_name, width)
    classed = flat.parent / hardware / flat.name
    return classed if classed.exists() else flat


def indented_blocks(text: str) -> list[list[str]]:
    """Every indented sample of a page, each as its lines without the indent."""
    blocks, lines = [], []
    for line in text.splitlines():
        if line.startswith("    "):
            lines.append(line[4:])
        elif lines:
            blocks.append(lines)
            lines = []
    return blocks + [lines] if lines else blocks


def block_after(command: str, text: str) -> list[str]:
    """The first indented sample a page shows after `command` (past any prose between them)."""
    lines: list[str] = []
    for line in text[text.index(f"    {command}\n"):].splitlines()[1:]:
        if line.startswith("    "):
            lines.append(line[4:])
        elif line.strip() and lines:
            break
    return lines


def money(text: str) -> float:
    return float(text.replace("$", "").replace(",", ""))


@pytest.fixture(scope="module")
def printed(data_dir: Path) -> dict[str, list[str]]:
    """What `pricer eval --predictor NAME --n 250` prints for each classic predictor (charts off: not checked)."""
    import contextlib
    import io

    out = {}
    for name in CLASSIC_NAMES:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert main(["eval", "--data", str(data_dir), "--predictor", name, "--n", "250", "--no-charts"]) == 0
        out[name] = buffer.getvalue().splitlines()
    return out


def test_eval_sample_lines_are_what_the_random_forest_prints(printed: dict[str, list[str]]) -> None:
    shown = [line for line in block_after("pricer eval --predictor random-forest --n 250", DATA) if line != "..."]
    assert len(shown) == 3
    assert shown == [printed["random-forest"][0], printed["random-forest"][1], printed["random-forest"][-1]]


def test_classic_figures_are_what_the_predictors_score(printed: dict[str, list[str]]) -> None:
    figures = re.findall(r"(constant|linear|bow \(ridge\)|random forest) (\$[\d.,]+) / ([\d.]+) / ([\d.]+%)", DATA)
    assert [name for name, *_ in figures] == ["constant", "linear", "bow (ridge)", "random forest"]
    for name, error, rmsle, hits in figures:
        command = {"bow (ridge)": "bow", "random forest": "random-forest"}.get(name, name)
        title = printed[command][-1]
        assert title == f"{command} Error={error} RMSLE={rmsle} Hits={hits}"


def test_random_forest_beats_constant_on_the_real_test_items(printed: dict[str, list[str]]) -> None:
    def error(name: str) -> float:
        return money(re.search(r"Error=(\$[\d,.]+)", printed[name][-1]).group(1))

    assert error("random-forest") < error("constant")


def test_bits_table_row_is_the_stored_4bit_baseline() -> None:
    header, _, row, *_ = block_after("pricer eval --model default --bits 4,8,16,32 --n 250", DATA)
    cells = re.split(r"\s{2,}", row.strip())
    stored = read_baseline(stored_baseline(BASE, "4bit", hardware_class(DATA))).metrics
    expected = metrics_row(f"{BASE} 4bit", _Metrics(stored))
    assert header.split()[:2] == ["run", "Error"]
    assert cells[:6] == expected  # s/item, the last cell, is the machine's


def test_finetune_table_is_the_stored_baselines() -> None:
    from scipy import stats

    start = RESULTS.index("    width  base Error")
    rows = RESULTS[start:].split("\n\n")[0].splitlines()[1:]
    assert [row.split()[0] for row in rows] == list(WIDTHS)
    number = r"-?\$?-?[\d,]+\.\d+"
    for row in rows:
        width = row.split()[0]
        values = [money(v) for v in re.findall(number, row)]
        base, tuned = (read_baseline(stored_baseline(name, width, hardware_class(RESULTS))) for name in (BASE, FINE_TUNED))
        better, worse = map(int, re.search(r"(\d+) / (\d+)\s*$", row).groups())
        assert values[:6] == [round(base.metrics["error"], 2), *(round(v, 2) for v in base.metrics["error_ci"]),
                              round(tuned.metrics["error"], 2), *(round(v, 2) for v in tuned.metrics["error_ci"])]
        changes = [score_item(t.guess, t.truth).error - score_item(b.guess, b.truth).error
                   for b, t in zip(base.items, tuned.items)]
        mean = sum(changes) / len(changes)
        low, high = stats.t.interval(0.95, len(changes) - 1, loc=mean, scale=stats.sem(changes))
        assert values[6:9] == [round(mean, 2), round(low, 2), round(high, 2)]
        assert (better, worse) == (sum(c < 0 for c in changes), sum(c > 0 for c in changes))


def test_ini_examples_are_valid_toml() -> None:
    examples = re.findall(r"(pricer_\w+ = (?:\"[^\"]*\"|[^\s`]+))", "\n".join(pages().values()))
    assert len(examples) >= 3
    for example in examples:
        tomllib.loads(example)  # raises on an unquoted value such as 4,8


def test_bad_row_example_is_the_message_pricer_gives(tmp_path: Path) -> None:
    shown = re.search(r"`test\.jsonl: (row 2: column 'price': -3 is not a positive number)`", DATA).group(1)
    path = tmp_path / "test.jsonl"
    rows = [{"text": "Lamp\n\nPrice is $", "price": 5}, {"text": "Chair\n\nPrice is $", "price": -3}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError) as caught:
        load_items(DataSpec(source=str(path), n=None))
    assert str(caught.value) == f"{path}: {shown}"


def failing_sample() -> list[str]:
    """The README's failing gate: its `$ pytest -m eval ...` line, then the output it shows."""
    shown = [block for block in indented_blocks(README) if block[0].startswith("$ pytest -m eval")]
    assert len(shown) == 1, "the README should show one failing gate, starting with its `$ pytest -m eval ...` line"
    return shown[0]


@pytest.fixture(scope="module")
def failing_gate(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """What the README's failing command prints, run for real in a user's project: a baseline made first, then the
    change the README describes planted (pytest in a subprocess, as a user runs it)."""
    args = shlex.split(failing_sample()[0].removeprefix("$ "))
    assert args[0] == "pytest"
    project = tmp_path_factory.mktemp("shop")
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntestpaths = [\"tests\"]\n")
    (project / "tests").mkdir()
    shutil.copy(REPO / "tests" / "test_eval.py", project / "tests" / "test_eval.py")  # this repo's gate, as users copy it
    # PYTEST_* off: an xdist worker's variables would make the run pin GPUs as a worker; CI and BUILD_NUMBER off:
    # under them pytest prints the short summary's reasons whole, where a terminal (the sample) cuts them;
    # plain, 80 columns as the sample.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PYTEST_") and key not in ("CI", "BUILD_NUMBER")}
    env.update({DATA_ENV: str(data_dir.resolve()), "NO_COLOR": "1", "COLUMNS": "80"})
    env.setdefault("OMP_NUM_THREADS", "1")

    def pytest_run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", *args[1:], *extra], cwd=project, env=env,
                              capture_output=True, text=True, timeout=900)

    first = pytest_run("--update-baselines", "--pricer-reason", "first baseline")
    assert first.returncode == 1 and "a rewrite never gates green" in first.stdout, first.stdout + first.stderr
    (project / "conftest.py").write_text(PLANTED_REGRESSION)
    planted = pytest_run()
    assert planted.returncode == 1, planted.stdout + planted.stderr
    return planted.stdout.splitlines()


def without_project(line: str) -> str:
    """A line with the project's folder cut from a baseline's path: the README's run was made elsewhere."""
    return re.sub(r"^\S*/(baselines/)", r"\1", line)


def shown_as(shown: str, real: str) -> bool:
    """Whether a sample line shows a real one: equal, or its start where the sample cut the rest."""
    shown, real = without_project(shown), without_project(real)
    cut = f" {ELIDED}"
    return real.startswith(shown.removesuffix(cut)) if shown.endswith(cut) else real == shown


def first_unmatched(sample: list[str], printed: list[str]) -> list[str] | None:
    """The first run of sample lines (between `...` lines) not found together, in order, in what was printed."""
    runs, run = [], []
    for line in sample:
        if line == ELIDED:
            runs, run = runs + [run] if run else runs, []
        else:
            run.append(line)
    start = 0
    for run in runs + [run] if run else runs:
        for at in range(start, len(printed) - len(run) + 1):
            if all(shown_as(s, r) for s, r in zip(run, printed[at:at + len(run)])):
                start = at + len(run)
                break
        else:
            return run
    return None


def measures_table(lines: list[str]) -> list[str]:
    """The verdict's table: its `measure ...` header, the dashed rule, and every row as wide as the rule."""
    at = next(i for i, line in enumerate(lines[:-1])
              if line.startswith("measure ") and set(lines[i + 1]) == {"-", " "})
    width = len(lines[at + 1])
    end = at + 2
    while end < len(lines) and len(lines[end]) == width:
        end += 1
    return lines[at:end]


REFRESH = "the README's failing gate no longer matches a real run: refresh its sample from this output"


def test_readme_failing_sample_is_what_a_real_failing_gate_prints(failing_gate: list[str]) -> None:
    unmatched = first_unmatched(failing_sample()[1:], failing_gate)
    assert unmatched is None, f"{REFRESH}\n" + "\n".join(failing_gate) + "\n\nnot printed so:\n" + "\n".join(unmatched)


def test_readme_failing_sample_shows_every_row_of_the_measures_table(failing_gate: list[str]) -> None:
    assert measures_table(failing_sample()) == measures_table(failing_gate), f"{REFRESH}\n" + "\n".join(failing_gate)


def test_readme_accepts_the_failing_change_with_the_command_the_gate_prints(failing_gate: list[str]) -> None:
    prefix = "if this change is intended, accept it with: "
    printed = [line.removeprefix(prefix) for line in failing_gate if line.startswith(prefix)]
    assert len(printed) == 1, f"{REFRESH}\n" + "\n".join(failing_gate)
    accepting = [block[0] for block in indented_blocks(README) if "--update-baselines --pricer-reason" in block[0]
                 and not block[0].startswith("$")]
    assert len(accepting) == 1, "the README should show the accepting command once, with a reason of its own"
    *command, reason, option, trade_off = shlex.split(accepting[0])
    *printed_command, _, printed_option, _ = shlex.split(printed[0])
    assert command == printed_command and option == printed_option == "--pricer-accept-worse"
    assert reason != "why" and trade_off != "what it buys"


def test_readme_stays_under_150_lines() -> None:
    assert len(README.splitlines()) < README_LINES, "the README is the front door: move reference to docs/"


def headings(text: str) -> set[str]:
    """GitHub's anchors for a page's headings (outside fenced code)."""
    anchors, fenced = set(), False
    for line in text.splitlines():
        fenced ^= line.startswith("```")
        if not fenced and (match := re.match(r"#+ (.+)", line)):
            anchors.add(re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def links(text: str) -> list[str]:
    """A page's relative markdown links (web addresses left out)."""
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", target)]


def test_every_relative_link_in_the_readme_and_docs_resolves() -> None:
    broken = []
    for name, text in pages().items():
        for target in links(text):
            file, _, anchor = target.partition("#")
            path = (REPO / name).parent / file if file else REPO / name
            if not path.exists():
                broken.append(f"{name}: {target}: no such file")
            elif anchor and path.suffix == ".md" and anchor not in headings(path.read_text(encoding="utf-8")):
                broken.append(f"{name}: {target}: no such heading")
    assert not broken, "\n".join(broken)


def test_readme_links_every_docs_page() -> None:
    linked = {(REPO / target.partition("#")[0]).resolve() for target in links(README)}
    assert sorted(p.name for p in (REPO / "docs").glob("*.md") if p.resolve() not in linked) == []


class _Metrics:
    """A stored baseline's metrics in the shape report.metrics_row reads."""

    def __init__(self, stored: dict) -> None:
        self.error, self.error_ci = stored["error"], tuple(stored["error_ci"])
        self.rmsle, self.hits, self.unparsed = stored["rmsle"], stored["hits"], stored["unparsed"]
