"""Scale out with pytest-xdist: `-n 2` gates like a serial run, each width loads once in one worker, results reach
the controller (summary, history, ladder) even when a worker dies, and CI jobs' saved runs merge into one ladder.

Runs through pytester; the LLM runs gate a slice of the default model (2 items, 16 and 32 bits) and need
$PRICER_DATA. Worker start-up imports torch, so the runs are few and shared by the tests that read them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import shutil
import sys
import types
from pathlib import Path

import pytest

from pricer.engines import cpu_threads
from pricer.engines.evaluate import score_run
from pricer.engines.predict import Prediction
from pricer.gate.ladder import read_saved_runs
from pricer.plugin import workers
from pricer.store.fingerprint import Fingerprint
from pricer.task.items import DataSpec, Item

pytest.importorskip("xdist", reason="pytest-xdist is not installed (pip install -e '.[test]')")

# Before the first in-process run: what the plugin imports late (see conftest.py), what xdist's controller does, and
# torch: the history records the GPU.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("late_imports")]
MORE_LATE_IMPORTS = ("xdist.dsession", "execnet", "torch")
EVAL_FILE = "test_price_gate"
# tests/test_eval.py as a user's repo has it: the gate per width and the ladder with the 32-bit run.
EVAL_TEST = (Path(__file__).parents[1] / "test_eval.py").read_text(encoding="utf-8")
GATED_N = 250
LLM_N = 2  # two items per width: enough to compare predictions, seconds per width on a CPU
LLM_BITS = (16, 32)  # no bitsandbytes: the fastest widths to load


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(**{EVAL_FILE: EVAL_TEST})
    return pytester


def gate(pytester: pytest.Pytester, data: Path, *args: str) -> pytest.RunResult:
    """`pytest -m eval` of the constant predictor on the course's 250 items, in process."""
    return pytester.runpytest("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", "constant",
                              "--pricer-n", str(GATED_N), f"--pricer-data={data}", *args)


def section(result: pytest.RunResult, name: str) -> list[str]:
    """The lines of one `=== name ===` section of the terminal summary."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if re.fullmatch(rf"=+ {name} =+", line))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=")), len(lines))
    return lines[start + 1:end]


def history(path: Path) -> list[dict]:
    """The accuracy history's entries, each without its date (two runs never share one)."""
    return [{k: v for k, v in json.loads(line).items() if k != "date"}
            for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- classic predictor: serial vs -n 2


@pytest.fixture(scope="module")
def stored_baselines(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The constant predictor's baseline on the 250 items, written once through the plugin's session."""
    from pricer.errors import BaselineError
    from pricer.plugin.session import EvalSession, EvalSettings

    root = tmp_path_factory.mktemp("classic")
    settings = EvalSettings(data=DataSpec(source=str(data_dir), n=GATED_N), predictor="constant",
                            baselines=Path("baselines"), update=True, reason="made by tests/e2e/test_xdist.py")
    with pytest.raises(BaselineError, match="a rewrite never gates green"):
        EvalSession(settings, root=root).gates.check("constant")
    return root / "baselines"


@pytest.fixture
def baselined(project: pytest.Pytester, stored_baselines: Path) -> pytest.Pytester:
    shutil.copytree(stored_baselines, project.path / "baselines")
    return project


def test_two_workers_give_the_serial_verdict_summary_and_history_lines(baselined, data_dir):
    serial = gate(baselined, data_dir, "--pricer-history", "serial.jsonl")
    spread = gate(baselined, data_dir, "--pricer-history", "xdist.jsonl", "-n", "2")

    serial.assert_outcomes(passed=1, skipped=1)  # the ladder: no widths with a classic predictor
    spread.assert_outcomes(passed=1, skipped=1)
    assert section(spread, "pricer gate") == section(serial, "pricer gate")
    assert section(spread, "pricer gate")[0].startswith("constant: ok Error $149.54 -> $149.54 (tested +0.00")
    assert history(baselined.path / "xdist.jsonl") == history(baselined.path / "serial.jsonl")
    assert [(e["width"], e["passed"]) for e in history(baselined.path / "xdist.jsonl")] == [("constant", True)]


def test_two_workers_append_the_summary_once_from_the_controller_and_junit_gets_the_properties(baselined, data_dir):
    import xml.etree.ElementTree as ET

    result = gate(baselined, data_dir, "--pricer-summary", "summary.md", "--junitxml", "junit.xml", "-n", "2")

    result.assert_outcomes(passed=1, skipped=1)
    lines = (baselined.path / "summary.md").read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line.startswith("## ")] == ["## pricer gate: constant: passed"]  # not per worker
    assert [line for line in lines if line.startswith("### ")] == ["### constant: passed"]
    assert any(line.startswith("| Error | \\$149.54 | \\$149.54 |") and line.endswith("| ok |") for line in lines)
    properties = {p.get("name"): p.get("value") for p in ET.parse(baselined.path / "junit.xml").iter("property")}
    assert properties["pricer.verdict"] == "passed" and properties["pricer.error.verdict"] == "ok"


def test_the_controller_puts_every_workers_summary_block_in_one_document_in_width_order(tmp_path):
    from pricer.plugin.session import EvalSession, EvalSettings
    from pricer.plugin.summary import session_document

    settings = EvalSettings(data=DataSpec(source="unused"), bits=(8, 32))
    session = EvalSession(settings, root=tmp_path)
    blocks: dict[str, str] = {}
    controller = workers.Controller(session=lambda: session, verdicts={}, settings=settings, summaries=blocks)
    for worker, width in (("gw1", "32bit"), ("gw0", "8bit")):  # arriving out of width order
        controller.receive({"worker": worker, "summaries": {width: f"### {width}: passed"},
                            "outcomes": [[width, str(tmp_path / f"{width}.json"), f"{width}: ok", True]]})
    controller.finish(session)

    text = session_document(model=settings.model_name, widths=settings.widths, outcomes=session.gates.outcomes,
                            blocks=blocks)

    assert text == "## pricer gate: smollm2-135m-instruct: passed\n\n### 8bit: passed\n\n### 32bit: passed\n"


KILLER = """
import os
import signal

import pytest

pytestmark = pytest.mark.eval


def test_zz_worker_dies_after_the_gate(pricer_width):
    os.kill(os.getpid(), signal.SIGKILL)  # the same width's group: the worker that has just gated
"""


def test_a_killed_worker_leaves_whole_history_lines_and_its_relayed_verdict(baselined, data_dir):
    baselined.makepyfile(test_zz_killer=KILLER)

    result = gate(baselined, data_dir, "--pricer-history", "history.jsonl", "-n", "2", "--max-worker-restart", "0")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running*test_zz_worker_dies_after_the_gate*"])
    text = (baselined.path / "history.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n") and len(text.splitlines()) == 1  # one whole line: the verdict relayed before the kill
    assert [(e["width"], e["passed"]) for e in history(baselined.path / "history.jsonl")] == [("constant", True)]
    assert section(result, "pricer gate")[0].startswith("constant: ok Error $149.54")


def test_benchmarks_under_xdist_warn_that_pytest_benchmark_switched_itself_off(pytester):
    items = pytester.getitems("import pytest\n\n\n@pytest.mark.benchmark\ndef test_speed():\n    pass\n")
    first_worker = types.SimpleNamespace(workerinput={"workerid": "gw0"}, getvalue=lambda name: True)

    with pytest.warns(UserWarning, match=r"^pytest-benchmark switches itself off under xdist: these benchmarks ran "
                      r"once, untimed; run `pytest -m benchmark` without -n$"):
        workers.warn_about_distribution(first_worker, items)


# ---------------------------------------------------------------- the default model: two workers, two widths


@pytest.fixture(scope="module")
def llm_runs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory, one_torch_thread) -> types.SimpleNamespace:
    """Serial runs of each width (as two CI jobs would: baselines and --pricer-save-runs folders), then the gate
    with -n 2 against those baselines."""
    from pricer.errors import BaselineError
    from pricer.plugin.session import EvalSession, EvalSettings

    root = tmp_path_factory.mktemp("llm")
    baselines = {}
    env = pytest.MonkeyPatch()
    # Pinned, so that workers and this process decode alike: the compute dtype is otherwise chosen by timing
    # matmuls, which a busy machine can sway, and one thread per process (the workers' share of 2 cores).
    env.setenv("PRICER_COMPUTE_DTYPE", "float32")
    env.setenv("OMP_NUM_THREADS", "1")
    try:
        for bits in LLM_BITS:
            settings = EvalSettings(data=DataSpec(source=str(data_dir), n=LLM_N), bits=(bits,),
                                    baselines=Path("baselines"), update=True, reason="serial job")
            job = EvalSession(settings, root=root)
            with pytest.raises(BaselineError, match="a rewrite never gates green"):
                job.gates.check(f"{bits}bit")
            job.save_run(root / "jobs" / f"{bits}bit", f"{bits}bit")
            baselines[f"{bits}bit"] = job.home.path(f"{bits}bit")
            job.models.clear()
        (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        (root / f"{EVAL_FILE}.py").write_text(EVAL_TEST, encoding="utf-8")
        spread = _run_subprocess(root, "-p", "no:cacheprovider", "-m", "eval", "-v", "-n", "2",
                                 f"--pricer-data={data_dir}", "--pricer-n", str(LLM_N),
                                 "--pricer-bits", ",".join(map(str, LLM_BITS)),
                                 "--pricer-history", "history.jsonl", "--pricer-save-runs", "runs",
                                 "--pricer-summary", "summary.md")
    finally:
        env.undo()
    return types.SimpleNamespace(root=root, spread=spread, baselines=baselines)


def _run_subprocess(root: Path, *args: str) -> types.SimpleNamespace:
    """pytest in a fresh process in root (torch is imported once per process; in-process runs would forget it)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=root, capture_output=True, text=True,
                          timeout=600)
    return types.SimpleNamespace(ret=done.returncode, lines=done.stdout.splitlines(), text=done.stdout + done.stderr)


def _section(lines: list[str], name: str) -> list[str]:
    start = next(i for i, line in enumerate(lines) if re.fullmatch(rf"=+ {name} =+", line))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=")), len(lines))
    return lines[start + 1:end]


def test_two_workers_reproduce_the_serial_predictions_of_each_width(llm_runs):
    spread = llm_runs.spread
    assert spread.ret == 0, spread.text
    gate_lines = _section(spread.lines, "pricer gate")
    for bits in LLM_BITS:  # paired against the serial baseline: not one item moved
        assert any(line.startswith(f"{bits}bit: ok Error $") and "(tested +0.00, CI [+0.00, +0.00], p=1.000; mean +0.00)" in line
                   for line in gate_lines), gate_lines
    # The ladder test skips in its worker: the controller gates the ladder at the end.
    assert any(re.search(r"SKIPPED .*test_quantization_ladder_within_bound\[32bit\]@pricer-32bit", line)
               for line in spread.lines), spread.text


def test_each_width_loads_once_in_exactly_one_worker(llm_runs):
    loads = next(line for line in _section(llm_runs.spread.lines, "pricer gate") if line.startswith("models loaded:"))
    match = re.fullmatch(r"models loaded: 2 \((gw\d): (\w+); (gw\d): (\w+)\)", loads)
    assert match, loads
    assert match[1] != match[3] and {match[2], match[4]} == {f"{b}bit" for b in LLM_BITS}


def test_the_controller_appends_one_history_line_per_width_with_the_serial_errors(llm_runs):
    entries = history(llm_runs.root / "history.jsonl")

    assert [(e["width"], e["passed"], e["n"]) for e in entries] == [(f"{b}bit", True, LLM_N) for b in LLM_BITS]
    for entry in entries:
        stored = json.loads(llm_runs.baselines[entry["width"]].read_text(encoding="utf-8"))
        assert entry["item_errors"] == [round(abs(i["guess"] - i["truth"]), 4) for i in stored["items"]]


def test_the_controller_appends_one_summary_with_every_workers_width_and_the_ladder(llm_runs):
    lines = (llm_runs.root / "summary.md").read_text(encoding="utf-8").splitlines()

    assert [line for line in lines if line.startswith("## ")] == ["## pricer gate: smollm2-135m-instruct: passed"]
    assert [line for line in lines if line.startswith("### ")] == [
        *(f"### {bits}bit: passed" for bits in LLM_BITS), "### quantization ladder against 32bit"]
    assert [line for line in lines if line.startswith("- 16bit: Error")], lines


def test_two_matrix_jobs_merge_into_the_ladder_the_workers_gave(llm_runs, capsys):
    from pricer.cli.main import main

    code = main(["ladder", *(str(llm_runs.root / "jobs" / f"{b}bit") for b in LLM_BITS)])

    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    ladder = _section(llm_runs.spread.lines, "pricer gate")
    start = ladder.index("quantization ladder against 32bit:")
    assert printed[-2:] == ladder[start:start + 2]
    assert printed[-1].startswith("  16bit: Error $")


# ---------------------------------------------------------------- the ladder from saved runs


def _saved_run(folder: Path, *, bits: int, guesses: list[float], prices: list[float]) -> Path:
    """A run stored as --pricer-save-runs stores it, with chosen guesses."""
    from pricer.store.baselines import write_baseline

    items = [Item(index=i + 1, prompt=f"item {i}", price=p, title=f"item {i}") for i, p in enumerate(prices)]
    run = score_run(f"model {bits}bit", items, [Prediction(guess=g) for g in guesses])
    fingerprint = Fingerprint(decisive={"model": "m", "bits": bits, "data_sha256": "d" * 64, "n": len(items)})
    path = folder / f"{bits}bit.json"
    write_baseline(path, run=run, fingerprint=fingerprint, reason="test", previous=None)
    return path


def test_ladder_of_saved_runs_is_each_widths_paired_error_change_against_32bit(tmp_path, capsys):
    from pricer.cli.main import main

    prices = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
    _saved_run(tmp_path / "job-a", bits=32, guesses=[110, 190, 300, 420, 480, 600], prices=prices)  # Error 10
    _saved_run(tmp_path / "job-b", bits=8, guesses=[130, 170, 330, 430, 470, 630], prices=prices)  # Error 30

    code = main(["ladder", str(tmp_path / "job-a"), str(tmp_path / "job-b"), "--max-tax", "50%"])

    printed = capsys.readouterr().out.splitlines()
    assert code == 1  # the tax, +$10 to +$30 on every item, is surely past 50% of $10
    assert printed[0] == f"8bit: {tmp_path / 'job-b' / '8bit.json'}"
    assert printed[2] == "quantization ladder against 32bit:"
    assert printed[3].startswith("  8bit: Error $30.00 vs 32bit $10.00: tax +20.00 (+200.0%), 95.0% CI [")
    assert printed[-1] == "quantization tax past --pricer-max-tax: 8bit"


def test_ladder_refuses_saved_runs_of_other_items_naming_the_field(tmp_path):
    from pricer.errors import BaselineError

    _saved_run(tmp_path, bits=32, guesses=[1.0, 2.0], prices=[1.0, 2.0])
    other = tmp_path / "other"
    path = _saved_run(other, bits=8, guesses=[1.0, 2.0, 3.0], prices=[1.0, 2.0, 3.0])

    refusal = rf"^{re.escape(str(path))}: not a run of the model and items of .*: n is 3, not 2$"
    with pytest.raises(BaselineError, match=refusal):
        read_saved_runs([tmp_path])


def test_the_controller_orders_relayed_widths_and_fails_the_run_on_a_ladder_past_the_max_tax(pytester, tmp_path):
    from pricer.plugin.outcome import Outcome
    from pricer.plugin.session import EvalSession
    from pricer.plugin.settings import EvalSettings

    prices = [100.0, 200.0, 300.0, 400.0]
    items = [Item(index=i + 1, prompt=f"item {i}", price=p, title=f"item {i}") for i, p in enumerate(prices)]
    settings = EvalSettings(data=DataSpec(source="unused"), bits=(8, 32), max_tax_share=0.5)
    session = EvalSession(settings, root=tmp_path)
    config = pytester.parseconfig("-p", "no:cacheprovider")
    verdicts: dict[str, bool] = {}
    controller = workers.Controller(session=lambda: session, verdicts=verdicts, settings=settings)
    config.pluginmanager.register(controller, "pricer-controller")
    for worker, width, guesses in (("gw1", "32bit", [110, 190, 310, 390]), ("gw0", "8bit", [150, 240, 360, 440])):
        run = score_run(width, items, [Prediction(guess=g) for g in guesses])
        outcome = Outcome(width=width, path=tmp_path / f"{width}.json", text=f"{width}: ok", passed=True)
        controller.receive({"worker": worker, "loads": {width: 1}, "verdicts": {width: True},
                            "runs": {width: workers.run_payload(run, Fingerprint(decisive={"bits": int(width[:-3])}))},
                            "outcomes": [[outcome.width, str(outcome.path), outcome.text, outcome.passed]]})

    failed = workers.finish(config, session)

    assert failed  # no test gates the ladder under xdist: the controller fails the run
    assert [o.text for o in session.gates.outcomes] == ["8bit: ok", "32bit: ok"]  # width order, as a serial run lists
    assert list(verdicts) == ["8bit", "32bit"] and session.runs["8bit"].metrics.error == 47.5
    assert [line for line, _ in workers.summary_lines(config)][-1] == "quantization tax past --pricer-max-tax: 8bit"
    assert workers.loads_line(config, session) == "models loaded: 2 (gw0: 8bit; gw1: 32bit)"


# ---------------------------------------------------------------- GPUs, threads, --dist


def _worker_config(worker: str, gpus: list[str]) -> types.SimpleNamespace:
    warned: list[Warning] = []
    return types.SimpleNamespace(workerinput={"workerid": worker, workers.GPUS_INPUT: gpus}, warned=warned,
                                 issue_config_time_warning=lambda w, stacklevel: warned.append(w))


def test_worker_k_sees_only_the_kth_of_the_users_visible_gpus():
    gpus = workers.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, count=lambda: 8)
    environ = {"CUDA_VISIBLE_DEVICES": "2,3", "PYTEST_XDIST_WORKER_COUNT": "2"}

    workers.pin_worker(_worker_config("gw1", gpus), environ)

    assert gpus == ["2", "3"] and environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_workers_share_gpus_round_robin_when_they_outnumber_them():
    gpus = workers.visible_gpus({}, count=lambda: 2)

    assert [workers.gpu_for(f"gw{k}", gpus) for k in range(5)] == ["0", "1", "0", "1", "0"]


def test_an_empty_cuda_visible_devices_means_no_gpu_and_no_pinning():
    environ = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "3"}
    gpus = workers.visible_gpus(environ, count=lambda: 8)

    workers.pin_worker(_worker_config("gw0", gpus), environ)

    assert gpus == [] and environ == {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "3"}


def test_torch_threads_are_split_among_workers_unless_the_user_set_them(monkeypatch):
    monkeypatch.setattr(cpu_threads, "available_cpus", lambda: 16)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # else this process's own torch would get 5 threads
    environ = {"PYTEST_XDIST_WORKER": "gw2", "PYTEST_XDIST_WORKER_COUNT": "3"}
    given = {"PYTEST_XDIST_WORKER": "gw2", "PYTEST_XDIST_WORKER_COUNT": "3", "OMP_NUM_THREADS": "3"}

    workers.set_cpu_threads(environ)
    workers.set_cpu_threads(given)

    assert environ["OMP_NUM_THREADS"] == "5" and given["OMP_NUM_THREADS"] == "3"
    assert [cpu_threads.threads_per_worker(2, n) for n in (1, 2, 4)] == [2, 1, 1]


@pytest.mark.parametrize(("given", "dist"), [
    ({"numprocesses": 2, "dist": "no"}, "loadgroup"),
    ({"numprocesses": 2, "dist": "loadscope"}, "loadscope"),
    ({"numprocesses": 0, "dist": "no"}, "no"),
], ids=["only-n", "explicit-dist", "n0"])
def test_only_n_distributes_by_group_and_an_explicit_dist_is_kept(given, dist):
    option = argparse.Namespace(**given)

    workers.default_to_loadgroup(option)

    assert option.dist == dist


# ---------------------------------------------------------------- appends from several processes


def _append_many(path: str, width: str, count: int) -> None:
    from pricer.history.accuracy_history import accuracy_entry, append_accuracy

    items = [Item(index=1, prompt="p", price=10.0, title="t")]
    run = score_run(width, items, [Prediction(guess=12.0)])
    entry = accuracy_entry(model="m", width=width, run=run, fingerprint=Fingerprint(decisive={"n": 1}), passed=True,
                           commit={}, machine={"node": "n", "cpu": "c"}, date="2026-01-01T00:00:00Z")
    for _ in range(count):
        append_accuracy(Path(path), [entry])


def test_history_appends_from_processes_finishing_together_keep_every_line(tmp_path):
    from pricer.history.accuracy_history import read_accuracy

    path = tmp_path / "history.jsonl"
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_append_many, args=(str(path), width, 15)) for width in ("16bit", "32bit")]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)

    assert [p.exitcode for p in processes] == [0, 0]
    widths = [entry.width for entry in read_accuracy(path)]
    assert sorted(widths) == ["16bit"] * 15 + ["32bit"] * 15
