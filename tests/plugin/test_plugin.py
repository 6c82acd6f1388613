"""Tests of pricer.plugin.pytest_plugin through pytester: on real items the gate fails and passes when it should.

The projects gate classic predictors (constant, random-forest), so no LLM is loaded; they need $PRICER_DATA.
"""

from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import pytest

GATED_N = 250  # the course's test size: enough items for the paired test to see a planted regression
SMALL_N = 50  # where the point is not statistical; the plugin warns below this many items
EVAL_FILE = "test_price_gate"  # not test_eval: an in-process run must not meet this repo's module of that name

EVAL_TEST = """
import pytest

pytestmark = pytest.mark.eval


def test_accuracy_holds_against_baseline(pricer_gate):
    pricer_gate.check()
"""

# Triples the guesses of 40% of the items (two in every five): a regression the gate must catch.
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

    # monkeypatch, not assignment: the run is in-process, and the next run must get the honest predictor back.
    monkeypatch.setattr(ClassicPredictor, "predict", predict)
"""


# Before the first in-process run: what the plugin imports late (see conftest.py).
pytestmark = pytest.mark.usefixtures("late_imports")


def write_baseline(folder: Path, data: Path, *, predictor: str, n: int) -> Path:
    """Store a classic predictor's baseline through the session the plugin uses; returns its path."""
    from pricer.errors import BaselineError
    from pricer.plugin.session import EvalSession, EvalSettings
    from pricer.task.items import DataSpec

    settings = EvalSettings(data=DataSpec(source=str(data), n=n), predictor=predictor, baselines=folder,
                            update=True, reason="made by tests/plugin/test_plugin.py")
    session = EvalSession(settings, root=folder)
    with pytest.raises(BaselineError, match="a rewrite never gates green"):
        session.gates.check(predictor)
    return session.home.path(predictor)


@pytest.fixture(scope="module")
def stored_baselines(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baselines folder holding the constant predictor's baseline on GATED_N items, made once per module."""
    folder = tmp_path_factory.mktemp("baselines")
    write_baseline(folder, data_dir, predictor="constant", n=GATED_N)
    return folder


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's repo: an ini (so it is the rootdir) and one eval test like tests/test_eval.py."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(**{EVAL_FILE: EVAL_TEST})
    return pytester


@pytest.fixture
def baselined(project: pytest.Pytester, stored_baselines: Path) -> pytest.Pytester:
    """The project with the shared constant baseline in its baselines/ folder."""
    shutil.copytree(stored_baselines, project.path / "baselines")
    return project


def gate(pytester: pytest.Pytester, data: Path | None, *args: str, predictor: str = "constant",
         n: int = GATED_N) -> pytest.RunResult:
    """`pytest -m eval` in the project, gating a classic predictor on the first n items."""
    data_args = ("--pricer-data", str(data)) if data else ()
    return pytester.runpytest("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", predictor,
                              "--pricer-n", str(n), "--pricer-baselines", str(pytester.path / "baselines"),
                              *data_args, *args)


def classic_file(pytester: pytest.Pytester, predictor: str = "constant") -> Path:
    return pytester.path / "baselines" / predictor / "classic.json"


def named(path: Path) -> str:
    """The path as an fnmatch pattern matching only itself."""
    return glob.escape(str(path))


def test_gate_fails_when_the_baseline_is_missing_and_prints_the_command_creating_it(project, data_dir):
    result = gate(project, data_dir, n=SMALL_N)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"{named(classic_file(project))}: baseline not found; create it with:",
        "  pytest *-m eval --pricer-predictor constant*--update-baselines --pricer-reason 'first baseline'",
    ])
    assert not classic_file(project).exists()


def test_update_baselines_without_a_reason_is_a_usage_error(project):
    result = gate(project, None, "--update-baselines", n=SMALL_N)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --update-baselines needs --pricer-reason 'why the baselines move'"])


def test_update_baselines_writes_the_baseline_yet_fails_and_a_second_rewrite_keeps_history(project, data_dir):
    path = classic_file(project)

    first = gate(project, data_dir, "--update-baselines", "--pricer-reason", "first cut", n=SMALL_N)

    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines([
        f"{named(path)}: baseline rewritten, reason: first cut; a rewrite never gates green, re-run to gate",
    ])
    written = json.loads(path.read_text(encoding="utf-8"))
    assert (written["reason"], written["history"], written["metrics"]["n"]) == ("first cut", [], SMALL_N)
    assert list(path.parent.iterdir()) == [path], "the atomic write left a temporary file behind"

    second = gate(project, data_dir, "--update-baselines", "--pricer-reason", "second cut", n=SMALL_N)

    second.assert_outcomes(failed=1)
    second.stdout.fnmatch_lines([f"{named(path)}: baseline rewritten (Error $* -> $*, +0.00), reason: second cut; *"])
    rewritten = json.loads(path.read_text(encoding="utf-8"))
    assert rewritten["reason"] == "second cut"
    assert [(h["reason"], h["metrics"]) for h in rewritten["history"]] == [("first cut", written["metrics"])]


def test_gate_passes_on_a_clean_rerun_against_the_baseline_it_wrote(project, data_dir):
    gate(project, data_dir, "--update-baselines", "--pricer-reason", "first baseline").assert_outcomes(failed=1)

    result = gate(project, data_dir)

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["constant: ok Error $* -> $* (tested +0.00, CI [[]+0.00, +0.00], p=1.000; mean +0.00); *"])


@pytest.mark.e2e  # a whole gate at 250 items, twice: `pytest -m e2e`
def test_gate_fails_on_a_planted_regression_and_passes_on_a_clean_rerun(project, data_dir):
    write_baseline(project.path / "baselines", data_dir, predictor="random-forest", n=GATED_N)
    project.makeconftest(PLANTED_REGRESSION)

    planted = gate(project, data_dir, predictor="random-forest")

    planted.assert_outcomes(failed=1)
    planted.stdout.fnmatch_lines([
        "*/baselines/random-forest/classic.json: random-forest: FAILED: * is worse by *, beyond the tolerance *, "
        "Holm-adjusted p=* < 0.05 (*, p=*)",
        "measure * baseline * now * change * 95% CI * p * Holm p * tolerance * detectable * limit * verdict",
        "Error * $* $* +$* [[]+$*, +$*[]] * WORSE",
        "log error * WORSE",
        "each measure fails when Holm p < 0.05 (corrected for 4 measures) and its change is beyond its tolerance; *",
        "items whose * got worse most:",
        "  #* truth $*, baseline guess $*, now $* (* +*)",
        "if this change is intended, accept it with: "
        "*pytest *-m eval --pricer-predictor random-forest*--update-baselines --pricer-reason why "
        "--pricer-accept-worse 'what it buys'",  # a WORSE run is accepted only with the trade-off named
    ])

    (project.path / "conftest.py").unlink()
    clean = gate(project, data_dir, predictor="random-forest")

    clean.assert_outcomes(passed=1)


def test_gate_fails_naming_a_truncated_baseline(baselined, data_dir):
    path = classic_file(baselined)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")

    result = gate(baselined, data_dir)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"{named(path)}:*: not valid JSON (*); the file may be truncated"])


def test_gate_fails_naming_a_hand_edited_baseline(baselined, data_dir):
    path = classic_file(baselined)
    stored = json.loads(path.read_text(encoding="utf-8"))
    stored["items"][0]["guess"] += 1.0
    path.write_text(json.dumps(stored, sort_keys=True, indent=2), encoding="utf-8")

    result = gate(baselined, data_dir)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"{named(path)}: checksum mismatch: the file was edited by hand or damaged; restore it from git or *",
    ])


def test_gate_fails_as_not_comparable_when_the_baseline_was_made_on_other_data(baselined, data_dir):
    # The same items, but the first one's price moved by a dollar.
    edited = baselined.path / "edited" / data_dir.name
    edited.mkdir(parents=True)
    shutil.copyfile(data_dir / "train.jsonl", edited / "train.jsonl")
    rows = [json.loads(line) for line in (data_dir / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    rows[0]["price"] += 1.0
    (edited / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    result = gate(baselined, edited)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*/classic.json: constant: FAILED: not comparable with the baseline",
        "not comparable: the baseline prices other items, or at another width:",
        "  items_sha256: baseline '*', now '*'",
        f"  items: baseline '{GATED_N} items', now '{GATED_N} items, 1 with another index or price'",
    ])


@pytest.mark.parametrize(("option", "value", "reason", "row"), [
    ("--pricer-max-error", "1", "Error $*.** is above the limit $1.00", "Error * <= $1.00 * ok"),
    ("--pricer-min-hits", "90%", "Hits *% is below the limit 90.0%", "Hits * >= 90.0% * ok"),
], ids=["max-error", "min-hits"])
def test_gate_fails_when_a_plain_limit_is_broken(baselined, data_dir, option, value, reason, row):
    result = gate(baselined, data_dir, option, value)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*/classic.json: constant: FAILED: {reason}", "measure * limit * verdict", row])


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--pricer-bits", "3", "--pricer-bits: '3' is not one of 4, 8, 16, 32"),
    ("--pricer-n", "0", "--pricer-n: '0' must be at least 1"),
    ("--pricer-tolerance", "abc", "--pricer-tolerance: 'abc' is not a number"),
    ("--pricer-log-tolerance", "abc", "--pricer-log-tolerance: 'abc' is not a number"),
    ("--pricer-hits-tolerance", "150%", "--pricer-hits-tolerance: '150%' is more than 100%"),
], ids=["bits", "n", "tolerance", "log-tolerance", "hits-tolerance"])
def test_bad_option_value_is_a_usage_error_naming_the_option(project, option, value, message):
    result = project.runpytest("-p", "no:cacheprovider", "-m", "eval", option, value)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*error: argument {option}: {message}"])


def test_bad_ini_value_is_a_usage_error_naming_the_ini_key(project):
    project.makeini("[pytest]\npricer_bits = 5\n")

    result = project.runpytest("-p", "no:cacheprovider", "-m", "eval")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini pricer_bits: --pricer-bits: '5' is not one of 4, 8, 16, 32"])


def test_options_set_in_the_ini_file_take_effect(project, stored_baselines, data_dir):
    shutil.copytree(stored_baselines, project.path / "stored")
    project.makeini(f"""
        [pytest]
        pricer_predictor = constant
        pricer_n = {GATED_N}
        pricer_data = {data_dir}
        pricer_baselines = stored
    """)

    result = project.runpytest("-p", "no:cacheprovider", "-m", "eval", "-v")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"{EVAL_FILE}.py::test_accuracy_holds_against_baseline[[]constant[]] PASSED*"])


def test_plain_pytest_deselects_eval_tests_with_this_repos_addopts(project):
    project.makeini("""
        [pytest]
        addopts = -m 'not eval and not benchmark'
    """)
    project.makepyfile(test_fast="def test_fast():\n    pass\n")

    result = project.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1, deselected=4)  # the eval test once per default width: 4, 8, 16, 32 bits


def test_terminal_summary_shows_a_pricer_gate_section_with_one_line_per_width(baselined, data_dir):
    result = gate(baselined, data_dir)

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*=== pricer gate ===*",
        "constant: ok Error $* -> $* (tested +0.00, *); absurd answers 0; detectable $*, tolerance $*",
        "models loaded: 0",
    ], consecutive=True)


def test_small_n_warns_that_the_gate_can_only_catch_large_regressions(project, data_dir):
    write_baseline(project.path / "baselines", data_dir, predictor="constant", n=10)

    result = gate(project, data_dir, n=10)

    result.assert_outcomes(passed=1)  # warning counts vary with how pytest imported pricer; match the lines
    result.stdout.fnmatch_lines([
        "*UserWarning: --pricer-n 10 is small: the gate can only catch large regressions",
        "*UserWarning: constant: this gate detects at 80% power a worsening of Error $*, log error *, Hits * pts, "
        "unparsed * pts: too coarse to protect anything; raise --pricer-n",
    ])


def answers_changed(positions: tuple[int, ...], guess: str) -> str:
    """A conftest that changes the classic predictor's answers at these positions (guess: an expression of `p`)."""
    return f"""
import pytest

from pricer.engines.classic import ClassicPredictor
from pricer.engines.predict import Prediction


@pytest.fixture(autouse=True)
def changed_answers(monkeypatch):
    honest = ClassicPredictor.predict

    def predict(self, items):
        return [Prediction(guess={guess}, completion=p.completion, parsed=p.parsed) if i in {positions!r} else p
                for i, p in enumerate(honest(self, items))]

    monkeypatch.setattr(ClassicPredictor, "predict", predict)
"""


def test_gate_fails_on_three_absurd_answers_and_lists_them(baselined, data_dir):
    baselined.makeconftest(answers_changed((5, 50, 150), "99_999.0"))

    result = gate(baselined, data_dir)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*constant: FAILED: 3 absurd answers (above 10x the baseline's answer for its item and 2x its truth), "
        "more than the tail budget of 1*",
        "absurd answers (tail budget 1):",
        "  #6 *: truth $*, baseline guess $*, now $99,999.00",
    ])


@pytest.mark.parametrize("changed", [(7,), (7, 8), (7, 8, 9)])
def test_gate_gives_a_verdict_when_one_to_three_answers_change(baselined, data_dir, changed):
    baselined.makeconftest(answers_changed(changed, "p.guess + 1"))

    result = gate(baselined, data_dir, "-W", "error::RuntimeWarning")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["constant: ok Error $* -> $* (tested *; mean *); *"])


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_failing_gate_puts_the_failing_measure_in_the_summary_the_junit_xml_and_a_chart(baselined, data_dir):
    import xml.etree.ElementTree as ET

    from pricer.plugin.summary import property_slug

    baselined.makeconftest(PLANTED_REGRESSION.replace("3 * p.guess", "8 * p.guess"))  # 3x hides in a constant's error

    result = gate(baselined, data_dir, "--pricer-summary", "summary.md", "--junitxml", "junit.xml")

    result.assert_outcomes(failed=1)
    shown = [line.removeprefix("chart of what moved: ") for line in result.stdout.lines
             if line.startswith("chart of what moved: ")]
    chart = ".pricer/charts/constant/classic-moved.png"
    # Once in the failure, and again in the short summary where pytest prints reasons whole (under CI=true).
    assert set(shown) == {str(baselined.path / chart)}
    assert Path(shown[0]).read_bytes().startswith(PNG_MAGIC)
    assert (baselined.path / ".pricer" / ".gitignore").read_text(encoding="utf-8").endswith("\n*\n")
    text = (baselined.path / "summary.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[:3] == ["## pricer gate: constant: FAILED (constant)", "", "### constant: FAILED"]
    failing = [line[2:].split(" is worse by ")[0] for line in lines
               if line.startswith("- ") and " is worse by " in line]
    assert "Error" in failing
    for measure in failing:
        assert any(line.startswith(f"| {measure} |") and line.endswith("| WORSE |") for line in lines), measure
    assert f"Chart of what moved: `{chart}`" in lines
    assert "--pricer-predictor constant" in text and "--update-baselines --pricer-reason why" in text
    properties = {p.get("name"): p.get("value") for p in ET.parse(baselined.path / "junit.xml").iter("property")}
    assert properties["pricer.verdict"] == "FAILED" and properties["pricer.width"] == "constant"
    assert {properties[f"pricer.{property_slug(measure)}.verdict"] for measure in failing} == {"WORSE"}
    assert properties["pricer.hardware_class"] == "none" and properties["pricer.chart"] == chart
    result.stdout.fnmatch_lines([f"summary appended to {named(baselined.path / 'summary.md')}"])


def test_passing_gate_draws_its_chart_only_when_pricer_charts_asks(baselined, data_dir):
    quiet = gate(baselined, data_dir)
    asked = gate(baselined, data_dir, "--pricer-charts", "charts")

    quiet.assert_outcomes(passed=1)
    asked.assert_outcomes(passed=1)
    assert not (baselined.path / ".pricer").exists()
    assert (baselined.path / "charts" / "constant" / "classic-moved.png").read_bytes().startswith(PNG_MAGIC)


def test_summary_path_naming_a_folder_is_a_usage_error(project):
    result = project.runpytest("-p", "no:cacheprovider", "-m", "eval", "--pricer-summary", ".")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --pricer-summary: '{named(project.path)}' is a folder; name a file in it"])
