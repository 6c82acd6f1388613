"""Edges, round two: inputs that used to end in a traceback, pass silently or name the wrong cause now stop with one
line naming the option, file or row at fault, and the happy path prints no warning it does not deserve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pricer.cli.main import main
from pricer.engines.evaluate import score_run
from pricer.engines.predict import Prediction
from pricer.errors import BaselineError, DataError, OptionError
from pricer.plugin.session import EvalSession, EvalSettings
from pricer.store.baselines import write_baseline
from pricer.store.fingerprint import Fingerprint
from pricer.task.items import DataSpec, Item
from pricer.task.load import load_items
from pricer.task.prompts import PRICE_PREFIX, QUESTION

PROJECT_TOML = "[tool.pytest.ini_options]\n"

# Before the first in-process run: what the plugin imports late (see conftest.py).
pytestmark = pytest.mark.usefixtures("late_imports")


def data_folder(root: Path, *, test: int = 4) -> Path:
    """A small dataset folder with train and test splits of course-style prompts."""
    folder = root / "pricer-data"
    folder.mkdir(parents=True)
    for split, count in (("train", 12), ("test", test)):
        rows = [{"text": f"{QUESTION}\n\nWidget {split} {i}\nA widget numbered {i}\n\n{PRICE_PREFIX}",
                 "price": 10.0 + 7 * i} for i in range(count)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def stored(path: Path, *, bits: int = 32, model: str = "m", guesses: tuple[float, ...] = (110, 190, 300, 420),
           context: dict | None = None) -> Path:
    """A run in the baseline format (a baseline, or a run saved by --pricer-save-runs)."""
    items = [Item(index=i + 1, prompt=f"item {i}", price=100.0 * (i + 1), title=f"item {i}")
             for i in range(len(guesses))]
    run = score_run(f"{model} {bits}bit", items, [Prediction(guess=g, completion=str(g)) for g in guesses])
    fingerprint = Fingerprint(decisive={"model": model, "bits": bits, "data_sha256": "d" * 64, "n": len(items)},
                              context=context or {})
    write_baseline(path, run=run, fingerprint=fingerprint, reason="test", previous=None)
    return path


def guesses_file(path: Path, guesses: tuple[float, ...] = (110, 190, 300, 420)) -> Path:
    path.write_text("".join(json.dumps({"index": i + 1, "guess": g}) + "\n" for i, g in enumerate(guesses)))
    return path


def refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI, expect exit status 2, and return its one-line error (argparse's usage lines dropped)."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse refuses a bad option value this way
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error:" in line][-1]


def usage_error(pytester: pytest.Pytester, *args: str, toml: str | None = None) -> str:
    """Run pytest in a project (a pyproject.toml of `toml`, else an empty pytest.ini); expect a usage error and return
    its line."""
    if toml is None:
        pytester.makeini("[pytest]\n")
    else:
        pytester.makepyprojecttoml(PROJECT_TOML + toml)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert "Traceback" not in output and "INTERNALERROR" not in output
    return next(line for line in result.stderr.lines if line.startswith("ERROR: ") or ": error: argument " in line)


# ---------------------------------------------------------------- the plugin's options and ini keys


@pytest.mark.parametrize("how", ["serial", "-n 2", "ini"])
def test_save_runs_naming_a_file_is_a_usage_error(pytester: pytest.Pytester, how: str) -> None:
    if how == "-n 2":
        pytest.importorskip("xdist", reason="pytest-xdist is not installed")
    (pytester.path / "runs.txt").write_text("not a folder\n")
    if how == "ini":
        line = usage_error(pytester, toml='pricer_save_runs = "runs.txt"\n')
    else:
        line = usage_error(pytester, "--pricer-save-runs", "runs.txt", *(["-n", "2"] if how == "-n 2" else []))
    assert line == f"ERROR: --pricer-save-runs: '{pytester.path / 'runs.txt'}' is a file, not a folder"


def test_bits_pinned_as_a_toml_list_are_gated(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(PROJECT_TOML + 'pricer_bits = ["4", "8"]\n')
    pytester.makepyfile(test_widths="def test_widths(pricer_session):\n"
                                    "    assert pricer_session.settings.widths == ('4bit', '8bit')\n")

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)


def test_a_toml_list_for_a_single_value_key_is_a_usage_error(pytester: pytest.Pytester) -> None:
    # pytest 9 warns plugin authors of a list in a text key; the user gets pricer's error
    line = usage_error(pytester, "-W", "ignore:Passing a value that is not a string", toml='pricer_n = ["4", "8"]\n')
    assert line == (f"ERROR: {pytester.path / 'pyproject.toml'}: ini pricer_n = ['4', '8'] is a TOML array; pricer_n "
                    "takes a number, e.g. pricer_n = 250")


def test_a_switch_for_a_path_key_is_a_usage_error_not_a_file_named_true(pytester: pytest.Pytester) -> None:
    line = usage_error(pytester, toml="pricer_history = true\n")
    assert line == (f"ERROR: {pytester.path / 'pyproject.toml'}: ini pricer_history = true is a TOML boolean; "
                    'pricer_history takes text in quotes, e.g. pricer_history = ".benchmarks/pricer-accuracy.jsonl"')
    assert not (pytester.path / "True").exists()


def test_a_mistyped_pricer_ini_key_is_a_usage_error_naming_the_closest_key(pytester: pytest.Pytester) -> None:
    line = usage_error(pytester, toml='pricer_tolernce = "0.5"\n')
    assert line == (f"ERROR: {pytester.path / 'pyproject.toml'}: unknown ini key 'pricer_tolernce'; "
                    "did you mean pricer_tolerance?")


def test_baseline_class_with_a_classic_predictor_is_a_usage_error(pytester: pytest.Pytester) -> None:
    line = usage_error(pytester, "--pricer-predictor", "constant", "--pricer-baseline-class", "cuda-bfloat16")
    assert line.startswith("ERROR: --pricer-baseline-class applies to an LLM; --pricer-predictor constant is the same "
                           "on every machine")


def test_data_given_with_a_space_that_hides_the_projects_ini_file_is_a_usage_error(
        pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> None:
    data = tmp_path_factory.mktemp("outside-data")  # outside the project: pytest would look for its ini file there

    line = usage_error(pytester, "--pricer-data", str(data), toml='pricer_n = "4"\n')

    assert line == (f"ERROR: --pricer-data {data}: pytest took {data} for a test path while looking for its ini "
                    f"file, so it read no ini file, not {pytester.path / 'pyproject.toml'}; write --pricer-data={data}")
    joined = pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--pricer-data={data}")
    assert joined.ret == pytest.ExitCode.NO_TESTS_COLLECTED  # the form that cannot be misread is accepted


@pytest.mark.e2e  # xdist workers: `pytest -m e2e`
def test_two_workers_print_neither_the_dist_warning_nor_pytest_benchmarks_for_a_deselected_benchmark(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is not installed")
    # Plugins in a fixed order, pricer's first: which of two tryfirst hooks runs first follows the order plugins were
    # registered in, which otherwise depends on the environment's install order.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins = ("-p", "pricer.plugin.pytest_plugin", "-p", "xdist.plugin", "-p", "pytest_benchmark.plugin")
    pytester.makeini("[pytest]\n")
    data_folder(pytester.path, test=2)
    pytester.makepyfile(test_gate="import pytest\n\npytestmark = pytest.mark.eval\n\n\n"
                                  "def test_items_are_priced(pricer_run):\n    assert pricer_run.metrics.n == 2\n",
                        test_speed="import pytest\n\n\n@pytest.mark.benchmark\n"
                                   "def test_speed(benchmark):\n    benchmark(lambda: None)\n")

    result = pytester.runpytest_subprocess(*plugins, "-p", "no:cacheprovider", "-m", "eval", "-n", "2",
                                           "--pricer-predictor", "constant", "--pricer-n", "2",
                                           "--pricer-data=pricer-data")

    result.assert_outcomes(passed=1)
    output = result.stdout.str() + result.stderr.str()
    assert "ignores xdist_group marks" not in output  # pricer chose loadgroup, whatever order plugins load in
    assert "Benchmarks are automatically disabled" not in output


# ---------------------------------------------------------------- baselines of a hardware class


def llm_session(root: Path, monkeypatch: pytest.MonkeyPatch, **settings) -> EvalSession:
    """An LLM session on a machine of class cpu-float32 (no model is loaded before these checks)."""
    monkeypatch.setattr("pricer.store.hardware.this_class", lambda device=None: "cpu-float32")
    return EvalSession(EvalSettings(data=DataSpec(source=str(root / "no-data")), **settings), root=root)


def test_update_baselines_for_another_hardware_class_is_refused_naming_both(tmp_path, monkeypatch) -> None:
    session = llm_session(tmp_path, monkeypatch, baseline_class="cuda-float16", update=True, reason="x")

    with pytest.raises(OptionError, match=r"--pricer-baseline-class cuda-float16: this machine's hardware class is "
                                          r"cpu-float32, and a baseline is written only for the class it is made on"):
        session.gates.check("4bit")
    assert not (tmp_path / "baselines").exists()


def test_missing_baseline_of_another_class_never_prints_a_command_naming_that_class(tmp_path, monkeypatch) -> None:
    session = llm_session(tmp_path, monkeypatch, baseline_class="cuda-float16",
                          rerun_args=("-m", "eval", "--pricer-baseline-class", "cuda-float16", "--pricer-n", "4"))

    with pytest.raises(BaselineError) as raised:
        session.gates.check("4bit")

    first, command = str(raised.value).splitlines()[:2]
    assert first.endswith("cuda-float16/4bit.json: baseline not found; a cuda-float16 baseline is made on a "
                          "cuda-float16 machine, with:")
    assert command == ("  pytest -m eval --pricer-n 4 --pricer-bits=4 --update-baselines --pricer-reason "
                       "'first baseline'")


def test_a_rewrite_with_fewer_items_than_the_stored_baseline_says_so_loudly(tmp_path) -> None:
    data = data_folder(tmp_path)

    def rewrite(n: int) -> str:
        settings = EvalSettings(data=DataSpec(source=str(data), n=n), predictor="constant", update=True, reason="x")
        with pytest.raises(BaselineError, match="a rewrite never gates green") as raised:
            EvalSession(settings, root=tmp_path).gates.check("constant")
        return str(raised.value)

    assert "WARNING" not in rewrite(4)
    assert "; WARNING: 2 items replace 4, so later gates see only 2" in rewrite(2)


# ---------------------------------------------------------------- option values


def test_a_template_without_the_price_prefix_is_refused(capsys) -> None:
    line = refused(["eval", "--model", "default", "--template", r"{title}\n{description}"], capsys)
    assert line.endswith(r"--template: template '{title}\n{description}' does not contain 'Price is $': a prompt "
                         "ends there, where the model writes the price; end it with that")


def test_a_width_given_twice_is_refused(capsys) -> None:
    line = refused(["eval", "--model", "default", "--bits", "4,4"], capsys)
    assert line.endswith("--bits: 4 is given twice")


def test_finetune_out_naming_a_file_is_refused_before_training(tmp_path, capsys) -> None:
    taken = tmp_path / "adapter"
    taken.write_text("not a folder\n")
    line = refused(["finetune", "--out", str(taken), "--data", str(tmp_path / "nowhere")], capsys)
    assert line.endswith(f"--out: '{taken}' is a file, not a folder")


def test_results_with_an_adapter_folder_that_does_not_exist_is_refused(tmp_path, capsys) -> None:
    missing = tmp_path / "adapters" / "nope"
    line = refused(["results", "--adapter", str(missing), "--data", str(tmp_path), "--no-chart"], capsys)
    assert line.endswith(f"--adapter: '{missing}' does not exist")


def test_results_for_a_class_not_stored_names_it_and_the_classes_stored(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text(PROJECT_TOML)
    stored(tmp_path / "baselines" / "smollm2-135m-instruct" / "cpu-bfloat16" / "4bit.json", bits=4)
    monkeypatch.chdir(tmp_path)

    line = refused(["results", "--data", str(data_folder(tmp_path)), "--no-chart", "--hardware-class", "tpu-int4"],
                   capsys)

    assert line == (f"pricer: error: --hardware-class tpu-int4: no stored baselines of that class under "
                    f"{tmp_path / 'baselines'}; the classes stored are cpu-bfloat16")


# ---------------------------------------------------------------- data files


def test_a_price_of_nan_as_text_is_not_a_positive_number(tmp_path) -> None:
    path = tmp_path / "items.jsonl"
    rows = [{"text": f"Lamp\n\n{PRICE_PREFIX}", "price": 3}, {"text": f"Chair\n\n{PRICE_PREFIX}", "price": "NaN"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    with pytest.raises(DataError, match=r"items.jsonl: row 2: column 'price': 'NaN' is not a positive number$"):
        load_items(DataSpec(source=str(path), n=2))


def test_a_json_object_holding_the_rows_is_named_as_an_object_not_too_few_rows(tmp_path) -> None:
    path = tmp_path / "items.json"
    rows = [{"text": f"Lamp {i}\n\n{PRICE_PREFIX}", "price": 3 + i} for i in range(2)]
    path.write_text(json.dumps({"rows": rows}))

    with pytest.raises(DataError, match=r"items.json: a JSON object \(keys 'rows'\), not rows; its rows seem to be "
                                        r"under 'rows'"):
        load_items(DataSpec(source=str(path), n=2))


def test_a_split_in_two_formats_is_refused_naming_both_files(tmp_path) -> None:
    folder = data_folder(tmp_path)
    (folder / "test.csv").write_text(f'text,price\n"Lamp {PRICE_PREFIX}",4\n')

    with pytest.raises(DataError, match=r"pricer-data: test.csv and test.jsonl both hold split 'test'; pricer would "
                                        r"read only one of them"):
        load_items(DataSpec(source=str(folder), n=1))


# ---------------------------------------------------------------- pricer compare, ladder, history


def test_compare_with_its_arguments_swapped_says_so(tmp_path, capsys) -> None:
    baseline = stored(tmp_path / "4bit.json", bits=4)
    run = guesses_file(tmp_path / "run.jsonl")

    line = refused(["compare", str(run), str(baseline)], capsys)

    assert line == (f"pricer: error: {run} is JSON Lines of guesses and {baseline} is a baseline: the arguments look "
                    f"swapped; the baseline comes first: pricer compare {baseline} {run}")


def test_ladder_given_json_lines_says_it_is_not_a_baseline(tmp_path, capsys) -> None:
    stored(tmp_path / "32bit.json")
    run = guesses_file(tmp_path / "guesses.jsonl")

    line = refused(["ladder", str(tmp_path / "32bit.json"), str(run)], capsys)

    assert line.startswith(f"pricer: error: {run}: JSON Lines (one object per line, as guesses for `pricer compare "
                           "RUN` are), not a baseline")


def test_ladder_refuses_runs_of_different_hardware_classes(tmp_path, capsys) -> None:
    cpu = stored(tmp_path / "runs" / "m" / "cpu-float32" / "32bit.json")
    cuda = stored(tmp_path / "runs" / "m" / "cuda-bfloat16" / "4bit.json", bits=4, guesses=(150, 250, 350, 450))

    line = refused(["ladder", str(tmp_path / "runs")], capsys)

    assert line.startswith(f"pricer: error: {cuda}: a run of hardware class cuda-bfloat16, but {cpu} is of "
                           "cpu-float32; a ladder compares the widths of one hardware class")


def test_compare_reads_files_that_start_with_a_utf8_byte_order_mark(tmp_path, capsys) -> None:
    baseline = stored(tmp_path / "4bit.json", bits=4)
    baseline.write_bytes(b"\xef\xbb\xbf" + baseline.read_bytes())
    run = guesses_file(tmp_path / "run.jsonl")
    run.write_bytes(b"\xef\xbb\xbf" + run.read_bytes())

    code = main(["compare", str(baseline), str(run)])

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert ": passed: not measurably worse" in captured.out


def test_compare_of_a_run_at_another_width_suggests_no_copy_over_the_baseline(tmp_path, capsys) -> None:
    baseline = stored(tmp_path / "a" / "4bit.json", bits=4, model="a")
    other = stored(tmp_path / "a" / "8bit.json", bits=8, model="a")

    code = main(["compare", str(baseline), str(other)])

    out = capsys.readouterr().out
    assert code == 1
    assert "not comparable" in out and "bits: baseline 4, now 8" in out
    assert "cp " not in out and "accept it with" not in out


def test_compare_of_another_models_run_judges_the_model_as_a_change(tmp_path, capsys) -> None:
    baseline = stored(tmp_path / "a" / "4bit.json", bits=4, model="a")
    other = stored(tmp_path / "b" / "4bit.json", bits=4, model="b")

    code = main(["compare", str(baseline), str(other)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "what changed since the baseline (judged by the verdict):\n  model: baseline 'a', now 'b'" in out
    assert "not comparable" not in out


def test_history_given_a_pytest_benchmark_file_says_what_it_is(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text(PROJECT_TOML)
    run = tmp_path / "ci-benchmarks" / "Linux-CPython-3.11-64bit" / "0001_run.json"
    run.parent.mkdir(parents=True)
    run.write_text(json.dumps({"machine_info": {"node": "ci"}, "commit_info": {}, "benchmarks": [],
                               "datetime": "2026-01-01T00:00:00", "version": "5.3.1"}, indent=4))
    monkeypatch.chdir(tmp_path)

    line = refused(["history", "--accuracy-history", str(run), "--no-chart"], capsys)

    assert line.startswith(f"pricer: error: {run}: a pytest-benchmark run, not an accuracy history; read it with "
                           f"--benchmark-storage {tmp_path / 'ci-benchmarks'}")
    assert "delete" not in line


def test_a_pyproject_that_is_not_valid_toml_is_named_with_its_error(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options\npricer_history = 'h.jsonl'\n")
    monkeypatch.chdir(tmp_path)

    line = refused(["history", "--no-chart"], capsys)

    assert line.startswith(f"pricer: error: {tmp_path / 'pyproject.toml'}: not valid TOML (")
