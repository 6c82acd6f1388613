"""Tests of the history stores, their grouping and `pricer history`: both stores read back, bad or foreign files
refused untouched, a slowdown flagged by pytest-benchmark's compare-fail and by the history, machines kept apart,
the widths of a CI matrix shown as one run. The statistics themselves: test_changes.py."""

from __future__ import annotations

import copy
import json
import os
import random
import re
from pathlib import Path

import pytest

from pricer.cli.main import main
from pricer.errors import HistoryError
from pricer.history.accuracy_history import ACCURACY_FORMAT, AccuracyEntry, append_accuracy, read_accuracy
from pricer.history.benchmark_runs import read_benchmarks
from pricer.history.report import format_history
from pricer.history.series import accuracy_runs, build_history

MACHINE_ID = "Linux-CPython-3.11-64bit"  # pytest-benchmark's folder name: the same on every Linux box
# Before the first in-process run: what the plugin imports late (see conftest.py), and torch: the history records
# the GPU.
pytestmark = pytest.mark.usefixtures("late_imports")
MORE_LATE_IMPORTS = ("torch",)

# A saved run as pytest-benchmark 5.3 writes it with pricer's plugin (trimmed from a real
# `pytest -m benchmark --benchmark-autosave --pricer-bits 32 --pricer-bench-items 2` on this repo).
REAL_RUN = {
    "machine_info": {
        "node": "vm", "processor": "", "machine": "x86_64", "python_compiler": "GCC 12.2.0",
        "python_implementation": "CPython", "python_implementation_version": "3.11.7", "python_version": "3.11.7",
        "python_build": ["main", "May  9 2026 07:35:25"], "release": "6.18.44-fc-v669", "system": "Linux",
        "cpu": {"arch": "X86_64", "bits": 64, "count": 2, "brand_raw": "AMD EPYC", "vendor_id_raw": "AuthenticAMD",
                "flags": ["avx", "avx2", "avx512_bf16", "avx512f"]},
        "gpu": None, "cpu_features": "avx2,avx512f,avx512_bf16",
    },
    "commit_info": {"id": "c93efcd253ffefa9e22c517275f07d34179c4472", "time": "2026-11-25T04:22:48+00:00",
                    "author_time": "2026-11-25T04:22:48+00:00", "dirty": True, "project": "main", "branch": "main"},
    "benchmarks": [{
        "group": "32bit", "name": "test_prediction_of_a_batch_of_real_prompts[32bit]",
        "fullname": "tests/history/test_bench.py::test_prediction_of_a_batch_of_real_prompts[32bit]",
        "params": {"pricer_width": "32bit"}, "param": "32bit",
        "extra_info": {"width": "32bit", "bits": 32, "quantization": "none", "model": "smollm2-135m-instruct",
                       "batch_size": 8, "items": 2, "max_new_tokens": 8, "device": "cpu", "gpu": None,
                       "dtype": "float32", "load_dtype": "float32", "prompt_tokens": 407, "new_tokens": 16,
                       "peak_memory_bytes": 1154363392, "peak_memory": "process peak RSS", "tokens_per_s": 36.8,
                       "new_tokens_per_s": 1.4},
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "max_time": 1.0,
                    "min_time": 5e-06, "precision": None, "confidence": None, "warmup": False},
        "stats": {"min": 10.637, "max": 12.325, "mean": 11.481, "stddev": 1.193, "rounds": 2, "median": 11.481,
                  "iqr": 1.688, "q1": 10.637, "q3": 12.325, "iqr_outliers": 0, "stddev_outliers": 0,
                  "outliers": "0;0", "ld15iqr": 10.637, "hd15iqr": 12.325, "ops": 0.0871, "total": 22.962,
                  "iterations": 1},
    }],
    "datetime": "2026-11-25T04:22:54.123456+00:00",
    "version": "5.3.1",
}


def saved_run(storage: Path, number: int, *, means: dict[str, float], stddev: float = 0.05, rounds: int = 5,
              node: str = "vm", gpu: str | None = None, hour: int = 4, spread: float = 0.02) -> Path:
    """Write a run shaped like REAL_RUN with one benchmark per width; returns its path."""
    run = copy.deepcopy(REAL_RUN)
    run["machine_info"]["node"] = node
    run["machine_info"]["gpu"] = {"name": gpu, "memory_bytes": 80 * 2**30} if gpu else None
    run["datetime"] = f"2026-11-25T{hour:02d}:{number:02d}:00+00:00"
    template = run["benchmarks"].pop()
    for width, mean in means.items():
        bench = copy.deepcopy(template)
        bench.update(group=width, name=f"test_prediction_of_a_batch_of_real_prompts[{width}]",
                     params={"pricer_width": width}, param=width)
        bench["extra_info"].update(width=width, tokens_per_s=round(423 / mean, 1))
        bench["stats"].update(mean=mean, median=mean, stddev=stddev, rounds=rounds, iqr=mean * spread,
                              min=mean * (1 - spread), max=mean * (1 + spread))
        run["benchmarks"].append(bench)
    path = storage / MACHINE_ID / f"{number:04d}_{run['commit_info']['id']}_20261125_0{hour}{number:02d}00.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=4), encoding="utf-8")
    return path


def entry(*, width: str = "4bit", errors: tuple[float, ...] = (10.0, 20.0, 30.0, 40.0), minute: int = 0,
          node: str = "vm", data: str = "abc", commit: str = "c93efcd253ffefa9e22c517275f07d34179c4472") -> AccuracyEntry:
    mean = sum(errors) / len(errors)
    return AccuracyEntry(
        date=f"2026-11-25T05:{minute:02d}:00Z", model="smollm2-135m-instruct", width=width, n=len(errors), error=mean,
        error_ci=(mean - 15, mean + 15), rmsle=0.9, hits=0.25, unparsed=0, item_errors=errors, data_sha256=data,
        inputs={"bits": int(width.removesuffix("bit")), "data_sha256": data}, passed=True,
        commit=commit, dirty=False,
        machine={"node": node, "cpu": "AMD EPYC", "cpu_features": "avx2", "python": "3.11.7",
                 "platform": "Linux", "gpu": None},
    )


def files_in(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- reading both stores


def test_saved_benchmark_runs_read_back_per_width_with_machine_commit_and_tokens_per_s(tmp_path):
    saved_run(tmp_path, 1, means={"4bit": 2.0, "32bit": 1.0})
    saved_run(tmp_path, 2, means={"4bit": 2.1, "32bit": 1.0})

    points = read_benchmarks(tmp_path)

    assert [(p.width, p.mean, p.when.minute) for p in points] == [("4bit", 2.0, 1), ("32bit", 1.0, 1),
                                                                  ("4bit", 2.1, 2), ("32bit", 1.0, 2)]
    first = points[0]
    assert (first.name, first.device, first.rounds, first.tokens_per_s) == (
        "test_prediction_of_a_batch_of_real_prompts", "cpu", 5, 211.5)
    assert (first.commit, first.dirty) == ("c93efcd253ffefa9e22c517275f07d34179c4472", True)
    assert first.machine.label == "vm / AMD EPYC / no GPU"


def test_storage_given_as_a_file_uri_reads_the_same_folder(tmp_path):
    saved_run(tmp_path, 1, means={"8bit": 1.5})

    assert [p.mean for p in read_benchmarks(f"file://{tmp_path}")] == [1.5]


def test_accuracy_entries_read_back_as_appended(tmp_path):
    path = tmp_path / "history.jsonl"
    first, second = entry(minute=0), entry(width="8bit", minute=1)

    append_accuracy(path, [first])
    append_accuracy(path, [second])

    assert read_accuracy(path) == [first, second]
    assert all(json.loads(line)["format"] == ACCURACY_FORMAT for line in path.read_text().splitlines())


def test_appending_keeps_the_earlier_entries_byte_for_byte(tmp_path):
    path = tmp_path / "history.jsonl"
    append_accuracy(path, [entry(minute=0)])
    before = path.read_bytes()

    append_accuracy(path, [entry(minute=1), entry(width="16bit", minute=1)])

    after = path.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 3
    assert list(tmp_path.iterdir()) == [path], "the atomic write left a temporary file behind"


# ---------------------------------------------------------------- bad or foreign files


def test_a_truncated_accuracy_history_fails_naming_file_and_line_and_is_left_untouched(tmp_path):
    path = tmp_path / "history.jsonl"
    append_accuracy(path, [entry()])
    path.write_bytes(path.read_bytes() + b'{"format": "pricer-accuracy/1", "date": "2026-')
    before = path.read_bytes()

    with pytest.raises(HistoryError, match=rf"^{path}:2: not valid JSON \(.*\); the line may be truncated"):
        append_accuracy(path, [entry(minute=5)])

    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_a_foreign_jsonl_file_is_refused_as_accuracy_history_and_left_untouched(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "login", "user": 1}\n', encoding="utf-8")

    with pytest.raises(HistoryError, match=rf"^{path}:1: not a pricer accuracy entry \(no \"format\""):
        append_accuracy(path, [entry()])

    assert path.read_text(encoding="utf-8") == '{"event": "login", "user": 1}\n'


def test_an_accuracy_entry_with_a_wrongly_typed_field_names_line_and_field(tmp_path):
    path = tmp_path / "history.jsonl"
    raw = entry().to_dict() | {"n": "250"}
    path.write_text(json.dumps(raw) + "\n", encoding="utf-8")

    with pytest.raises(HistoryError, match=rf"^{path}:1: field 'n': '250' is not int$"):
        read_accuracy(path)


def test_a_foreign_json_file_in_the_benchmark_storage_fails_naming_the_file(tmp_path):
    saved_run(tmp_path, 1, means={"4bit": 2.0})
    foreign = tmp_path / MACHINE_ID / "package.json"
    foreign.write_text('{"name": "left-pad", "version": "1.3.0"}', encoding="utf-8")

    with pytest.raises(HistoryError, match=rf"^{foreign}: not a pytest-benchmark run \(no 'benchmarks' list\); "
                                           rf"move it out of {tmp_path}$"):
        read_benchmarks(tmp_path)


def test_a_truncated_benchmark_run_fails_naming_file_and_line(tmp_path):
    path = saved_run(tmp_path, 1, means={"4bit": 2.0})
    path.write_text(path.read_text(encoding="utf-8")[:300], encoding="utf-8")

    with pytest.raises(HistoryError, match=rf"^{path}:\d+: not valid JSON .*; the file may be truncated"):
        read_benchmarks(tmp_path)


def test_a_benchmark_with_a_bad_mean_names_the_benchmark(tmp_path):
    path = saved_run(tmp_path, 1, means={"4bit": 2.0})
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["benchmarks"][0]["stats"]["mean"] = "fast"
    path.write_text(json.dumps(raw), encoding="utf-8")

    with pytest.raises(HistoryError, match=rf"^{path}: benchmarks\[0\]\.stats\.mean: 'fast' is not a non-negative"):
        read_benchmarks(tmp_path)


def test_pricer_history_on_a_bad_file_prints_the_error_and_writes_no_chart(tmp_path, capsys):
    saved_run(tmp_path / "store", 1, means={"4bit": 2.0})
    (tmp_path / "store" / MACHINE_ID / "notes.json").write_text("[1, 2]", encoding="utf-8")
    chart = tmp_path / "history.png"
    chart.write_bytes(b"the previous chart")

    code = main(["history", "--benchmark-storage", str(tmp_path / "store"), "--chart", str(chart)])

    assert code == 2
    assert capsys.readouterr().err.startswith(f"pricer: error: {tmp_path / 'store' / MACHINE_ID / 'notes.json'}: "
                                              "expected a JSON object, found list")
    assert chart.read_bytes() == b"the previous chart"


def test_a_missing_storage_given_explicitly_fails_with_the_command_that_fills_it(tmp_path, capsys):
    code = main(["history", "--benchmark-storage", str(tmp_path / "none"), "--no-chart"])

    assert code == 2
    assert "no pytest-benchmark storage here; save runs with `pytest -m benchmark --benchmark-autosave`" in (
        capsys.readouterr().err)


# ---------------------------------------------------------------- machines and the command


def test_two_machines_are_kept_apart_in_sections_and_never_compared(tmp_path):
    saved_run(tmp_path, 1, means={"4bit": 1.0}, node="laptop")
    saved_run(tmp_path, 2, means={"4bit": 5.0}, node="ci-runner", gpu="NVIDIA H100 80GB HBM3")

    history = build_history(read_benchmarks(tmp_path), [entry(node="laptop")])
    text = format_history(history)

    assert [m.machine.label for m in history.machines] == ["laptop / AMD EPYC / no GPU",
                                                           "ci-runner / AMD EPYC / NVIDIA H100 80GB HBM3 80 GiB"]
    assert all(step.change is None for m in history.machines for s in m.series for step in s.steps)
    assert "2 machines: each is shown apart" in text
    assert text.count("\nmachine ") == 2
    laptop, runner = text.split("\nmachine ")[1:]
    assert "1.000 s" in laptop and "$25.00" in laptop and "5.000 s" not in laptop
    assert "5.000 s" in runner and "$25.00" not in runner


def test_pricer_history_prints_the_table_and_writes_the_png(tmp_path, capsys):
    store, accuracy, chart = tmp_path / "store", tmp_path / "acc.jsonl", tmp_path / "out" / "history.png"
    saved_run(store, 1, means={"4bit": 2.0, "8bit": 3.0, "16bit": 1.2, "32bit": 1.0})
    saved_run(store, 2, means={"4bit": 2.6, "8bit": 3.0, "16bit": 1.2, "32bit": 1.0})
    append_accuracy(accuracy, [entry(width="4bit"), entry(width="32bit")])

    code = main(["history", "--benchmark-storage", str(store), "--accuracy-history", str(accuracy),
                 "--chart", str(chart)])

    out = capsys.readouterr().out
    assert code == 0
    assert f"benchmarks: 2 saved runs in {store}" in out and f"accuracy: 2 entries in {accuracy}" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("series"))
    assert lines[header].split() == ["series", "run", "(UTC)", "commit", "latency", "change", "counts", "from",
                                     "tokens/s", "Error", "95%", "CI", "change"]
    assert [line.split()[0] for line in lines[header + 2: header + 11]] == ["4bit"] * 3 + ["8bit"] * 2 + [
        "16bit"] * 2 + ["32bit"] * 2
    assert re.search(r" \+30\.0% \*\s+±20\.0% \?", out) and re.search(r" \+0\.0%\s+±20\.0% \?", out)
    assert "? fewer than 3 earlier runs, their spread unknown" in out
    assert f"wrote {chart}" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_identical_runs_on_a_noisy_machine_are_never_flagged_and_a_planted_slowdown_always_is(tmp_path):
    noise = random.Random(11)
    flags, caught = 0, 0
    for trial in range(20):
        store = tmp_path / f"trial{trial}"
        # Medians of identical runs scatter by 2.5% (lognormal), as CPU time did on a busy 2-core machine; the sixth
        # run is 30% slower.
        medians = [noise.lognormvariate(0, 0.025) for _ in range(6)]
        for number, median in enumerate(medians, start=1):
            saved_run(store, number, means={"32bit": median * (1.3 if number == 6 else 1.0)}, spread=0.05)
        (series,) = build_history(read_benchmarks(store), []).machines[0].series
        flags += sum(step.significant for step in series.steps[:5])
        caught += series.steps[5].significant

    assert (flags, caught) == (0, 20)


def test_the_widths_of_one_commit_from_several_matrix_jobs_show_as_one_run(tmp_path, capsys):
    job4, job8 = tmp_path / "job-4bit.jsonl", tmp_path / "job-8bit.jsonl"
    first, second = "a" * 40, "b" * 40
    append_accuracy(job4, [entry(width="4bit", minute=0, commit=first), entry(width="4bit", minute=20, commit=second)])
    append_accuracy(job8, [entry(width="8bit", minute=3, commit=first),
                           entry(width="8bit", errors=(22.0, 31.0, 41.0, 46.0), minute=24, commit=second)])

    code = main(["history", "--accuracy-history", str(job4), str(job8), "--no-chart"])

    out = capsys.readouterr().out
    assert code == 0
    assert f"accuracy: 2 entries in {job4}" in out and f"accuracy: 2 entries in {job8}" in out
    assert "2 accuracy runs (4 entries)" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("4bit ", "8bit "))]
    assert [(row[0], row[2], row[3][:8]) for row in rows] == [
        ("4bit", "05:00", "aaaaaaaa"), ("4bit", "05:20", "bbbbbbbb"),
        ("8bit", "05:00", "aaaaaaaa"), ("8bit", "05:20", "bbbbbbbb")], "each width shows its run's time"
    assert rows[3][-2:] == ["+40.0%", "*"], "the second commit's 8bit Error is compared with the first's"


def test_a_width_gated_again_on_the_same_commit_starts_a_new_run_and_a_file_read_twice_counts_once():
    once = [entry(width="4bit", minute=0), entry(width="8bit", minute=1)]
    again = [entry(width="4bit", minute=5)]

    runs = accuracy_runs([*once, *once, *again])

    assert [[(e.width, e.when.minute) for e in run.entries] for run in runs] == [[("4bit", 0), ("8bit", 1)],
                                                                                  [("4bit", 5)]]


def test_pricer_history_with_nothing_saved_says_how_to_save(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert main(["history", "--no-chart"]) == 2
    err = capsys.readouterr().err
    assert "nothing to show" in err and "--benchmark-autosave" in err and "--pricer-history" in err


# ---------------------------------------------------------------- through pytest and pytest-benchmark

SLEEPER = """
import os
import time


def test_sleep(benchmark):
    benchmark.group = "4bit"
    benchmark.pedantic(time.sleep, args=(float(os.environ["PRICER_TEST_DELAY"]),), rounds=5, warmup_rounds=1)
"""


def test_compare_fail_flags_a_slowdown_and_the_history_marks_it(pytester, monkeypatch):
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_sleeper=SLEEPER)
    store = pytester.path / "store"
    args = ("-p", "no:cacheprovider", "--benchmark-storage", str(store), "--benchmark-autosave")
    monkeypatch.setenv("PRICER_TEST_DELAY", "0.01")
    pytester.runpytest(*args).assert_outcomes(passed=1)
    monkeypatch.setenv("PRICER_TEST_DELAY", "0.03")

    slower = pytester.runpytest(*args, "--benchmark-compare", "--benchmark-compare-fail=mean:10%")

    assert slower.ret != 0
    slower.stderr.fnmatch_lines(["Performance has regressed:", "*test_sleep (0001_*) - Field 'mean' has failed "
                                 "PercentageRegressionCheck: * > 10.000000000"])
    runs = sorted((store / os.listdir(store)[0]).glob("*.json"))
    assert len(runs) == 2
    machine_info = json.loads(runs[0].read_text(encoding="utf-8"))["machine_info"]
    assert "gpu" in machine_info and "cpu_features" in machine_info
    history = build_history(read_benchmarks(store), [])
    (series,) = history.machines[0].series
    assert [step.significant for step in series.steps] == [False, True]


def test_gated_widths_are_appended_to_the_accuracy_history_and_a_corrupt_one_fails_the_run(pytester, data_dir):
    source = str(data_dir)
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_price_gate="""
import pytest

pytestmark = pytest.mark.eval


def test_accuracy_holds_against_baseline(pricer_gate):
    pricer_gate.check()
""")
    args = ("-p", "no:cacheprovider", "-m", "eval", "--pricer-predictor", "constant", "--pricer-n", "50",
            "--pricer-data", source, "--pricer-history", "acc/history.jsonl", "-W", "ignore::UserWarning")
    rewrite = pytester.runpytest(*args, "--update-baselines", "--pricer-reason", "first")
    rewrite.assert_outcomes(failed=1)
    rewrite.stdout.fnmatch_lines(["*baseline rewritten, reason: first*"])
    history = pytester.path / "acc" / "history.jsonl"
    assert not history.exists(), "a baseline rewrite is no gated run"

    pytester.runpytest(*args).assert_outcomes(passed=1)
    pytester.runpytest(*args).assert_outcomes(passed=1)

    entries = read_accuracy(history)
    assert [(e.model, e.width, e.n, e.passed) for e in entries] == [("constant", "constant", 50, True)] * 2
    assert entries[0].item_errors == entries[1].item_errors
    history.write_bytes(history.read_bytes() + b"{not json\n")
    before = history.read_bytes()

    broken = pytester.runpytest(*args)

    assert broken.ret == pytest.ExitCode.TESTS_FAILED
    broken.stdout.fnmatch_lines([f"{history}:3: not valid JSON (*); the line may be truncated or hand-edited*"])
    assert history.read_bytes() == before
