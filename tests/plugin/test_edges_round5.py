"""Edges, round five: a saved run never replaces another program's file, a one-item run, `pricer power` and a
hand-edited anchor end in a message instead of a traceback, anchors are read as strictly as baselines, and the
inputs that passed in silence or named the wrong cause are refused naming the option, file or field."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tests.plugin.test_edges import data_folder, refused, stored, usage_error
from tests.plugin.test_outputs import baselined, read_only  # noqa: F401 (baselined: a fixture this module uses)
from tests.plugin.test_plugin import stored_baselines  # noqa: F401 (a module-scoped fixture this module uses)
from tests.plugin.test_plugin import gate, named

from pricer.cli.main import main
from pricer.engines.evaluate import score_run
from pricer.engines.predict import Prediction
from pricer.errors import BaselineError, DataError, OptionError, OutputError
from pricer.files import dumps_json
from pricer.options.parsers import git_ref
from pricer.plugin.session import EvalSession, EvalSettings
from pricer.store.baselines import read_baseline, write_baseline, write_run
from pricer.store.fingerprint import Fingerprint
from pricer.store.git_refs import baseline_at
from pricer.task.items import DataSpec, Item
from pricer.task.load import load_items

pytestmark = pytest.mark.usefixtures("late_imports")
MORE_LATE_IMPORTS = ("torch", "xdist.dsession", "execnet")  # as test_outputs, whose fixtures run here


def argument_error(pytester: pytest.Pytester, *args: str) -> str:
    """pytest's usage error for an option value its parser refused: the line after its usage line."""
    line = usage_error(pytester, *args)
    if line.startswith("ERROR: usage:"):
        line = next(line for line in pytester.runpytest_inprocess("-p", "no:cacheprovider", *args).stderr.lines
                    if ": error: argument " in line)
    return line


def resealed(path: Path, edit) -> Path:
    """The stored file with `edit(body)` applied and its checksum recomputed, as a careful hand edit leaves it."""
    body = json.loads(path.read_text())
    body.pop("checksum")
    edit(body)
    try:
        text = dumps_json(body)
    except ValueError:  # NaN: what another writer (json.dumps) stores, which our writer refuses to
        text = json.dumps(body, sort_keys=True, indent=2) + "\n"
    import hashlib

    body["checksum"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    path.write_text(json.dumps(body, sort_keys=True, indent=2) + "\n")
    return path


def anchored(path: Path) -> Path:
    """A baseline rewritten once, so it keeps the first one as its anchor."""
    stored(path)
    first = read_baseline(path)
    run = score_run("m 32bit", [Item(index=b.index, prompt="", price=b.truth, title=b.title) for b in first.items],
                    [Prediction(guess=b.guess + 1, completion=None) for b in first.items])
    write_baseline(path, run=run, fingerprint=first.fingerprint, reason="second", previous=first)
    assert read_baseline(path).anchor is not None
    return path


def classic(path: Path, *, predictor: str = "bow") -> Path:
    """A classic predictor's baseline of four items (no bits: the same on every machine)."""
    items = [Item(index=i + 1, prompt=f"item {i}", price=100.0 * (i + 1), title=f"item {i}") for i in range(4)]
    run = score_run(predictor, items, [Prediction(guess=g, completion=str(g)) for g in (110, 190, 300, 420)])
    write_baseline(path, run=run, fingerprint=Fingerprint(decisive={"predictor": predictor, "n": 4,
                                                                    "items_sha256": "i" * 64}, context={}),
                   reason="test", previous=None)
    return path


# ---------------------------------------------------------------- data loss: a run replaces only a run


@pytest.mark.parametrize("name, content", [("chart.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
                                           ("pyproject.toml", b"[tool.pytest.ini_options]\n")])
def test_save_run_never_replaces_a_file_that_is_not_a_run(tmp_path, capsys, name, content) -> None:
    foreign = tmp_path / name
    foreign.write_bytes(content)

    line = refused(["eval", "--predictor", "constant", "--data", str(data_folder(tmp_path)), "--no-charts",
                    "--save-run", str(foreign)], capsys)

    assert line.endswith(f"--save-run: {str(foreign)!r} is an existing file that is not a run pricer stored; a run "
                         "replaces only a run: name a new file, or remove this one first")
    assert foreign.read_bytes() == content


def test_save_run_replaces_the_run_it_saved_before(tmp_path, capsys) -> None:
    data, run = data_folder(tmp_path), tmp_path / "run.json"
    args = ["eval", "--predictor", "constant", "--data", str(data), "--n", "4", "--no-charts", "--quiet", "--save-run",
            str(run)]

    assert main(args) == 0
    assert main(args) == 0
    assert capsys.readouterr().out.count(f"run saved to {run}") == 2
    assert read_baseline(run).name == "constant"


def test_save_run_of_several_widths_writes_none_when_one_would_replace_a_foreign_file(tmp_path) -> None:
    from pricer.cli.run_commands import _save_runs

    items = [Item(index=1, prompt="p", price=10.0, title="t")]
    results = [score_run(f"m {w}", items, [Prediction(guess=12.0, completion="12")]) for w in ("4bit", "8bit")]
    (tmp_path / "run-8bit.json").write_text("notes a person keeps\n")

    with pytest.raises(OptionError, match=r"--save-run: .*run-8bit\.json: an existing file that is not a run"):
        _save_runs(tmp_path / "run.json", results, [{"width": "4bit", "n": 1}, {"width": "8bit", "n": 1}])

    assert not (tmp_path / "run-4bit.json").exists()
    assert (tmp_path / "run-8bit.json").read_text() == "notes a person keeps\n"


def test_save_run_of_several_widths_refuses_a_foreign_file_before_any_model_runs(tmp_path, capsys, monkeypatch) -> None:
    import pricer.cli.run_commands

    monkeypatch.setattr(pricer.cli.run_commands, "_run_llm", lambda *a: pytest.fail("a model ran"))
    (tmp_path / "run-8bit.json").write_text("notes a person keeps\n")

    line = refused(["eval", "--model", "default", "--bits", "4,8", "--data", str(data_folder(tmp_path)), "--n", "4",
                    "--no-charts", "--save-run", str(tmp_path / "run.json")], capsys)

    assert line.endswith(f"--save-run: {tmp_path / 'run-8bit.json'}: an existing file that is not a run pricer stored; "
                         "a run replaces only a run: name a new file, or remove this one first")


def test_save_run_of_a_served_model_is_stored_with_its_servers_fields(tmp_path, capsys, monkeypatch) -> None:
    import pricer.engines.endpoint.predictor

    class Served:  # a server's answers without a server: what `pricer eval --endpoint` asks, and what it says it is
        def __init__(self, config, *, width: str) -> None:
            self.name, self.width = f"served {width}", width

        def predict(self, items):
            return [Prediction(guess=item.price + 5, completion=str(item.price + 5)) for item in items]

        def fields(self) -> dict:
            return {"predictor": "llm", "engine": "endpoint", "bits": int(self.width.removesuffix("bit"))}

    monkeypatch.setattr(pricer.engines.endpoint.predictor, "EndpointPredictor", Served)
    run = tmp_path / "run.json"

    code = main(["eval", "--endpoint", "http://127.0.0.1:9/v1", "--data", str(data_folder(tmp_path)), "--n", "4",
                 "--no-charts", "--quiet", "--save-run", str(run)])

    assert code == 0, capsys.readouterr().err
    assert read_baseline(run).fingerprint.decisive["bits"] == 32
    assert read_baseline(run).fingerprint.context["engine"] == "endpoint"


def test_saved_runs_never_replace_a_foreign_file_where_a_run_goes(baselined, data_dir) -> None:
    foreign = baselined.path / "runs" / "constant" / "classic.json"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("[tool.pytest.ini_options]\n")

    result = gate(baselined, data_dir, "--pricer-save-runs=runs")

    assert result.ret == 3
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"--pricer-save-runs: {named(foreign)}: an existing file that is not a run pricer "
                                 "stored; *"])
    assert foreign.read_text() == "[tool.pytest.ini_options]\n"


def test_a_run_is_written_onto_a_stream_or_an_empty_file_but_not_onto_another_programs(tmp_path) -> None:
    run = score_run("m", [Item(index=1, prompt="p", price=10.0, title="t")], [Prediction(guess=12.0, completion="12")])
    stored_as = {"run": run, "fingerprint": Fingerprint(decisive={"n": 1}, context={}), "reason": "r", "previous": None}
    empty, image = tmp_path / "run.json", tmp_path / "run.png"
    empty.touch()
    image.write_bytes(b"\x89PNG\r\n")

    for target in (empty, Path("/dev/null")):
        write_run(target, **stored_as)
    with pytest.raises(OutputError, match=r"run\.png: an existing file that is not a run pricer stored"):
        write_run(image, **stored_as)

    assert read_baseline(empty).name == "m"
    assert image.read_bytes() == b"\x89PNG\r\n"


@pytest.mark.parametrize("name", ["notes.png", "figure.svg", "paper.pdf"])
def test_a_chart_never_replaces_a_file_that_is_not_an_image_of_its_format(tmp_path, capsys, name) -> None:
    baseline, run = stored(tmp_path / "32bit.json"), stored(tmp_path / "run.json", guesses=(150, 190, 300, 420))
    notes = tmp_path / name
    notes.write_text("notes a person keeps\n")

    assert main(["compare", str(baseline), str(run), "--chart", str(notes)]) == 3

    assert capsys.readouterr().err.endswith(f"{notes}: an existing file that is not a {notes.suffix[1:].upper()} "
                                            "image; a chart replaces only an image: name a new file, or remove this "
                                            "one first\n")
    assert notes.read_text() == "notes a person keeps\n"
    assert main(["compare", str(baseline), str(run), "--chart", str(tmp_path / f"chart{notes.suffix}")]) == 0
    assert main(["compare", str(baseline), str(run), "--chart", str(tmp_path / f"chart{notes.suffix}")]) == 0


# ---------------------------------------------------------------- tracebacks


def test_a_one_item_rewrite_is_stored_with_its_undefined_r2_as_null(tmp_path) -> None:
    settings = EvalSettings(data=DataSpec(source=str(data_folder(tmp_path)), n=1), predictor="constant", update=True,
                            reason="smoke")

    with pytest.raises(BaselineError, match="a rewrite never gates green"):
        EvalSession(settings, root=tmp_path).gates.check("constant")

    path = tmp_path / "baselines" / "constant" / "classic.json"
    assert json.loads(path.read_text())["metrics"]["r2"] is None
    assert read_baseline(path).metrics["n"] == 1


def test_power_of_a_one_item_baseline_says_what_it_cannot_scale(tmp_path, capsys) -> None:
    baseline = stored(tmp_path / "32bit.json", guesses=(110,))

    assert main(["power", str(baseline)]) == 0

    out = capsys.readouterr().out
    assert out.startswith(f"{baseline}: 1 item, Error $10.00")
    assert "unknown: 1 item has no spread to scale from; store a baseline of at least 50 items" in out


def test_power_of_a_worsening_too_small_to_detect_says_so(tmp_path, capsys) -> None:
    baseline = stored(tmp_path / "32bit.json")

    assert main(["power", "--worse=1e-300", "--tolerance", "0", "--log-tolerance", "0", str(baseline)]) == 0

    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("Error ", "log error "))]
    assert len(rows) == 2
    assert all(row.endswith("more than any data set holds: the worsening asked about is too small to detect")
               for row in rows)


def test_a_baseline_name_past_the_limit_is_a_usage_error(pytester) -> None:
    line = argument_error(pytester, "--pricer-baseline-name", "a" * 300)
    assert line.endswith(f"--pricer-baseline-name: {'a' * 20!r}... is 300 characters; a baselines folder name has at "
                         "most 255")


@pytest.mark.parametrize("option", ["--pricer-model", "--pricer-endpoint-model"])
def test_a_model_name_too_long_for_a_folder_is_a_usage_error_naming_the_fix(pytester, option) -> None:
    served = ("--pricer-endpoint", "http://127.0.0.1:9/v1") if option == "--pricer-endpoint-model" else ()
    line = usage_error(pytester, option, f"owner/{'m' * 300}", *served)
    assert line.startswith(f"ERROR: the baselines folder name {'m' * 20!r}..., made from the model's name, is ")
    assert line.endswith("characters; a file name holds at most 255: name the folder with --pricer-baseline-name")


@pytest.mark.parametrize("guess, shown", [(float("nan"), "field 'anchor.items[1].guess' is nan, not a number"),
                                          (-500, "anchor: items[1]: field 'guess' is -500, not a price of 0 or more")])
def test_compare_names_a_hand_edited_anchor_guess(tmp_path, capsys, guess, shown) -> None:
    baseline = anchored(tmp_path / "32bit.json")
    resealed(baseline, lambda body: body["anchor"]["items"][1].update(guess=guess))
    run = stored(tmp_path / "run.json")

    line = refused(["compare", str(baseline), str(run)], capsys)

    assert line.startswith(f"pricer: error: {baseline}: {shown}")


def test_the_gate_names_a_hand_edited_anchor_instead_of_a_traceback(tmp_path) -> None:
    session = EvalSession(EvalSettings(data=DataSpec(source=str(data_folder(tmp_path)), n=4), predictor="constant"),
                          root=tmp_path)
    baseline = anchored(session.home.path("constant"))
    resealed(baseline, lambda body: body["anchor"]["items"][1].update(guess=float("nan")))

    with pytest.raises(BaselineError, match=rf"^{baseline}: field 'anchor.items\[1\].guess' is nan, not a number"):
        session.gates.check("constant")


# ---------------------------------------------------------------- anchors read as strictly as baselines


@pytest.mark.parametrize("where, field, value, shown", [
    ("anchor", "date", "yesterday", r"anchor: field 'date': 'yesterday' is not an ISO 8601 date"),
    ("anchor", "commit", {"sha": 1}, r"anchor: field 'commit' must be a commit id or null, found \{'sha': 1\}"),
    ("anchor", "reason", 7, r"anchor: field 'reason' must be a str, found 7"),
    ("anchor", "name", None, r"anchor: field 'name' must be a str, found None"),
    ("anchor.items.0", "truth", 0, r"anchor: items\[0\]: field 'truth' is 0, not a positive price"),
    ("anchor.items.0", "guess", "12", r"anchor: items\[0\]: field 'guess' is '12'"),
    ("", "date", "yesterday", r"field 'date': 'yesterday' is not an ISO 8601 date"),
    ("", "commit", 5, r"field 'commit' must be a commit id or null, found 5"),
    ("history.0", "date", "last week", r"field 'date': 'last week' is not an ISO 8601 date"),
    ("items.2", "guess", -1, r"items\[2\]: field 'guess' is -1, not a price of 0 or more"),
    ("metrics", "error", float("inf"), r"field 'metrics.error' is inf, not a number"),
])
def test_every_stored_field_is_checked_naming_the_file_and_field(tmp_path, where, field, value, shown) -> None:
    path = anchored(tmp_path / "32bit.json")

    def edit(body):
        part = body
        for key in filter(None, where.split(".")):
            part = part[int(key)] if isinstance(part, list) else part[key]
        part[field] = value

    resealed(path, edit)

    with pytest.raises(BaselineError, match=rf"^{path}: {shown}"):
        read_baseline(path)


def test_an_anchor_with_a_null_commit_as_made_outside_git_is_read(tmp_path) -> None:
    path = resealed(anchored(tmp_path / "32bit.json"), lambda body: body["anchor"].update(commit=None))
    assert read_baseline(path).anchor.commit is None


@pytest.mark.parametrize("field, value, shown", [("error", float("nan"), "nan is not a number"),
                                                  ("hits", float("inf"), "inf is not a number"),
                                                  ("n", -3, "-3 is not a count"),
                                                  ("item_errors", [1.0, float("nan")], "must be lists of numbers")])
def test_an_accuracy_history_line_with_an_impossible_number_is_named(tmp_path, capsys, monkeypatch, field, value,
                                                                     shown) -> None:
    from pricer.history.accuracy_history import accuracy_entry

    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    monkeypatch.chdir(tmp_path)
    baseline = read_baseline(stored(tmp_path / "32bit.json"))
    run = score_run("m", [Item(index=b.index, prompt="", price=b.truth, title=b.title) for b in baseline.items],
                    [Prediction(guess=b.guess, completion=None) for b in baseline.items])
    line = accuracy_entry(model="m", width="32bit", run=run, fingerprint=baseline.fingerprint, passed=True,
                          commit={"commit": None}, machine={"cpu": "c", "node": "n"}, date="2026-01-01T00:00:00Z")
    entry = line.to_dict()
    entry[field] = value
    (tmp_path / "h.jsonl").write_text(json.dumps(entry) + "\n")

    error = refused(["history", "--accuracy-history", "h.jsonl", "--no-chart"], capsys)

    assert error.startswith("pricer: error: h.jsonl:1: field") and shown in error


# ---------------------------------------------------------------- silent: the ini's lists, charts nobody sees


@pytest.mark.parametrize("value, shown", [
    ("[[4], [8]]", "[4] is a TOML array; pricer_bits takes a number or a list of them, e.g. pricer_bits = [4, 8, 16, 32]"),
    ("[]", "[] is an empty list; give it values, e.g. pricer_bits = [4, 8, 16, 32], or remove the key to take the "
           "default"),
])
def test_an_ini_list_of_lists_or_of_nothing_is_a_usage_error(pytester, value, shown) -> None:
    line = usage_error(pytester, toml=f"pricer_bits = {value}\n")
    assert line == f"ERROR: {pytester.path / 'pyproject.toml'}: ini pricer_bits = {shown}"


# Under xdist a second process: with the end-to-end proofs (`pytest -m e2e`).
@pytest.mark.parametrize("workers", [pytest.param((), id="serial"),
                                     pytest.param(("-n", "2"), id="xdist", marks=pytest.mark.e2e)])
def test_charts_into_a_read_only_folder_on_a_passing_gate_are_named_and_exit_3(baselined, data_dir, workers) -> None:
    if workers:
        pytest.importorskip("xdist", reason="pytest-xdist is not installed (pip install -e '.[test]')")
    (baselined.path / "charts").mkdir()
    with read_only(baselined.path / "charts"):
        result = gate(baselined, data_dir, "--pricer-charts=charts", *workers)

    assert (result.ret, result.parseoutcomes().get("passed")) == (3, 1)  # a worker's chart is relayed, not lost
    result.stdout.fnmatch_lines([f"--pricer-charts: constant: chart of what moved not drawn "
                                 f"({named(baselined.path / 'charts')}/constant/classic-moved.png: cannot be written: *"])


# ---------------------------------------------------------------- wrong causes


def test_a_hardware_class_with_a_trailing_newline_is_a_usage_error(pytester) -> None:
    line = argument_error(pytester, "--pricer-baseline-class", "cpu-float32\n")
    assert line.endswith("--pricer-baseline-class: 'cpu-float32\\n' is not a hardware class: cpu or cuda, a dash, "
                         "then float32, bfloat16 or float16")


@pytest.mark.parametrize("ref", ["HEAD~1", "main^", "origin/main~2", "v1.0^{commit}"])
def test_against_takes_git_revision_syntax(ref) -> None:
    assert git_ref("--pricer-against")(ref) == ref


@pytest.mark.parametrize("ref", ["HEAD:baselines", "two words", "-n", "feat*"])
def test_against_still_refuses_what_names_no_commit(ref) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="is not a git branch, tag or commit"):
        git_ref("--pricer-against")(ref)


def test_a_baseline_at_the_commit_before_is_read_through_head_tilde_one(tmp_path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    path = stored(tmp_path / "baselines" / "m" / "32bit.json", guesses=(110, 190, 300, 420))
    git("add", "-A")
    git("commit", "-qm", "first")
    stored(path, guesses=(120, 190, 300, 420))
    git("commit", "-qam", "second")

    found = baseline_at("HEAD~1", path)

    assert [b.guess for b in found.baseline.items] == [110, 190, 300, 420]
    assert not found.unchanged


def test_accept_of_another_widths_run_onto_a_classic_baseline_is_refused_as_not_comparable(tmp_path, capsys) -> None:
    baseline = classic(tmp_path / "bow" / "classic.json")
    run = stored(tmp_path / "run.json", bits=8, model="default")
    before = baseline.read_bytes()

    line = refused(["accept", str(baseline), str(run), "--reason", "try"], capsys)

    assert line == (f"pricer: error: {baseline}: not replaced: {run} is not comparable with it, a run of another "
                    "width (bits: baseline 'classic', now 8); accept it onto that width's baseline")
    assert baseline.read_bytes() == before
    assert main(["compare", str(baseline), str(run)]) == 1
    assert "not comparable" in capsys.readouterr().out


def test_accept_of_an_8bit_run_onto_a_4bit_baseline_is_refused_as_not_comparable(tmp_path, capsys) -> None:
    baseline = stored(tmp_path / "4bit.json", bits=4)
    run = stored(tmp_path / "run.json", bits=8)

    line = refused(["accept", str(baseline), str(run), "--reason", "try"], capsys)

    assert "a run of another width (bits: baseline 4, now 8)" in line


def test_two_classic_predictors_are_judged_as_a_change_not_refused(tmp_path, capsys) -> None:
    baseline = classic(tmp_path / "bow.json")
    other = classic(tmp_path / "forest.json", predictor="forest")

    assert main(["compare", str(baseline), str(other)]) == 0
    out = capsys.readouterr().out
    assert "predictor: baseline 'bow', now 'forest'" in out and "not comparable" not in out


@pytest.mark.parametrize("link", ["loop", "gone"])
def test_data_through_a_link_that_leads_nowhere_is_named_for_what_it_is(tmp_path, link) -> None:
    if link == "loop":
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        source, what = tmp_path / "a", "a loop of symbolic links"
    else:
        (tmp_path / "a").symlink_to(tmp_path / "nothing")
        source, what = tmp_path / "a", f"a dangling link to {tmp_path / 'nothing'}"

    with pytest.raises(DataError, match=rf"^{source}: {what}, so no data is there$"):
        load_items(DataSpec(source=str(source), n=1))


@pytest.mark.parametrize("option", ["--pricer-charts", "--pricer-save-runs", "--pricer-baselines"])
def test_a_folder_option_through_a_loop_of_links_is_a_usage_error(pytester, option) -> None:
    (pytester.path / "a").symlink_to(pytester.path / "b")
    (pytester.path / "b").symlink_to(pytester.path / "a")

    line = usage_error(pytester, option, "a/runs")

    assert line.endswith(f"{option}: '{pytester.path / 'a' / 'runs'}' is inside {pytester.path / 'a'}, which is a "
                         "loop of symbolic links, not a folder")


@pytest.mark.parametrize("command", [["compare", "{loop}", "{run}"], ["compare", "{run}", "{loop}"], ["power", "{loop}"],
                                     ["ladder", "{loop}"], ["history", "--accuracy-history", "{loop}", "--no-chart"],
                                     ["history", "--benchmark-storage", "{loop}", "--no-chart"]],
                         ids=["compare-baseline", "compare-run", "power", "ladder", "accuracy-history", "benchmarks"])
def test_a_command_given_a_loop_of_links_names_the_loop(tmp_path, capsys, monkeypatch, command) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    run = stored(tmp_path / "run.json")

    line = refused([arg.format(loop=tmp_path / "a", run=run) for arg in command], capsys)

    assert line.startswith(f"pricer: error: {tmp_path / 'a'}: a loop of symbolic links")



def test_an_error_pricer_raises_inside_an_eval_test_is_its_one_line_not_a_traceback(pytester) -> None:
    pytester.makeini("[pytest]\n")
    data_folder(pytester.path)
    pytester.makepyfile(test_items="import pytest\n\npytestmark = pytest.mark.eval\n\n\n"
                                   "def test_items(pricer_session):\n    assert pricer_session.items\n")

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", "constant",
                                          "--pricer-data=pricer-data", "--pricer-split", "nope")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["_* test_items *_", "pricer-data: unknown split 'nope'; it has test, train",
                                 "=* short test summary info =*"])
    assert "raise DataError" not in result.stdout.str()
