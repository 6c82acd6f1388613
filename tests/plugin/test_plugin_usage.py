"""The plugin's options at their edges, through pytester: a bad path or an option the run would ignore stops the run
at once with one line naming the option, and bad data fails the test naming the file, never with a traceback."""

from __future__ import annotations

import json

import pytest

from pricer.task.prompts import PRICE_PREFIX

RUN_TEST = """
def test_items_are_priced(pricer_run):
    assert pricer_run.metrics.n > 0
"""


# Before the first in-process run: what the plugin imports late (see conftest.py).
pytestmark = pytest.mark.usefixtures("late_imports")


def usage_error(pytester: pytest.Pytester, *args: str) -> str:
    """Run pytest with `args`; expect a usage error and return its line."""
    pytester.makeini("[pytest]\n")  # the project root, against which the plugin resolves paths
    result = pytester.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    # A bad value is reported by argparse ("pytest: error: argument ..."), a later check by pricer ("ERROR: ...").
    return next(line for line in result.stderr.lines if line.startswith("ERROR: --") or ": error: argument " in line)


def test_history_naming_a_folder_is_a_usage_error(pytester: pytest.Pytester) -> None:
    (pytester.path / "history").mkdir()
    line = usage_error(pytester, "--pricer-history", "history")
    assert line == f"ERROR: --pricer-history: '{pytester.path / 'history'}' is a folder; name a file in it"


def test_baselines_naming_a_file_is_a_usage_error_even_when_updating(pytester: pytest.Pytester) -> None:
    (pytester.path / "baselines.txt").write_text("not a folder\n")
    line = usage_error(pytester, "--pricer-baselines", "baselines.txt", "--update-baselines", "--pricer-reason", "x")
    assert line == f"ERROR: --pricer-baselines: '{pytester.path / 'baselines.txt'}' is a file, not a folder"


@pytest.mark.parametrize("alpha", ["0", "100%"])
def test_alpha_outside_zero_to_one_is_a_usage_error(pytester: pytest.Pytester, alpha: str) -> None:
    line = usage_error(pytester, "--pricer-alpha", alpha)
    assert f"--pricer-alpha: '{alpha}' must be above 0 and below 1" in line


def test_template_naming_the_price_is_a_usage_error(pytester: pytest.Pytester) -> None:
    line = usage_error(pytester, "--pricer-template", "{description} Price is ${price}")
    assert "names the 'price' column: every prompt would hold its answer" in line


def test_bits_with_a_classic_predictor_is_a_usage_error(pytester: pytest.Pytester) -> None:
    line = usage_error(pytester, "--pricer-predictor", "constant", "--pricer-bits", "4")
    assert line == "ERROR: --pricer-bits applies to an LLM; --pricer-predictor constant has no bits or adapter"


def test_split_of_a_single_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    data = pytester.path / "items.jsonl"
    data.write_text(json.dumps({"text": f"Lamp\n\n{PRICE_PREFIX}", "price": 5.0}) + "\n")
    line = usage_error(pytester, "--pricer-data", str(data), "--pricer-split", "nosuch")
    assert line.startswith(f"ERROR: --pricer-split nosuch: {data} is a single file, which is one split")


def test_data_that_is_not_utf8_fails_the_test_naming_the_file(pytester: pytest.Pytester) -> None:
    folder = pytester.path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"text": f"Chair\n\n{PRICE_PREFIX}", "price": 9.0}) + "\n")
    (folder / "test.jsonl").write_bytes(b'{"text": "caf\xe9\\n\\nPrice is $", "price": 3}\n')
    pytester.makepyfile(test_priced=RUN_TEST)
    result = pytester.runpytest_inprocess("--pricer-data", str(folder), "--pricer-predictor", "constant",
                                          "--pricer-n", "1", "-W", "ignore::UserWarning")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"{folder / 'test.jsonl'}:1:*: not UTF-8 text (byte 0xe9); save the file as UTF-8"])
    assert "UnicodeDecodeError" not in result.stdout.str()


def test_pytest_help_leaves_no_benchmark_folder_behind(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")

    result = pytester.runpytest("--help")

    assert result.ret == 0
    assert not (pytester.path / ".benchmarks").exists()


def test_a_benchmark_folder_that_was_there_before_stays(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    (pytester.path / ".benchmarks").mkdir()

    pytester.runpytest("--help")

    assert (pytester.path / ".benchmarks").is_dir()
