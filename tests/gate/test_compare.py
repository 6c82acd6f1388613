"""`pricer compare BASELINE RUN`: the gate's verdict on stored guesses, through the command line, no model."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from pricer.cli.main import main
from pricer.engines.evaluate import score_run
from pricer.engines.predict import Prediction
from pricer.store.baselines import read_baseline, write_baseline
from pricer.store.fingerprint import Fingerprint
from pricer.task.items import Item

BASELINES = Path(__file__).resolve().parents[2] / "baselines"
FINE_TUNED = "smollm2-135m-instruct-smollm2-135m-pricer"


def committed(model: str, width: str) -> Path:
    """A stored CPU baseline: baselines/<model>/cpu-bfloat16/<width>.json, or where it was before classes."""
    for path in (BASELINES / model / "cpu-bfloat16" / f"{width}.json", BASELINES / model / f"{width}.json"):
        if path.exists():
            return path
    pytest.fail(f"no committed baseline of {model} at {width} under {BASELINES}")


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def rows_of(baseline_path: Path) -> list[dict]:
    return [{"index": b.index, "guess": b.guess, "completion": b.completion, "parsed": b.parsed}
            for b in read_baseline(baseline_path).items]


def as_class(source: Path, target: Path, *, device: str, compute_dtype: str) -> Path:
    """The same predictions stored as a baseline of another hardware class."""
    baseline = read_baseline(source)
    items = [Item(index=b.index, prompt="", price=b.truth, title=b.title) for b in baseline.items]
    run = score_run(baseline.name, items, [Prediction(guess=b.guess, completion=b.completion, parsed=b.parsed)
                                           for b in baseline.items])
    fingerprint = Fingerprint(decisive=baseline.fingerprint.decisive,
                              context={**baseline.fingerprint.context, "device": device, "compute_dtype": compute_dtype})
    write_baseline(target, run=run, fingerprint=fingerprint, reason="another class", previous=None)
    return target


def test_identical_baseline_passes_with_exit_0(tmp_path, capsys):
    baseline = committed(FINE_TUNED, "4bit")
    copy = shutil.copyfile(baseline, tmp_path / "rerun.json")

    code = main(["compare", str(baseline), str(copy)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{baseline}: " in out and ": passed: not measurably worse" in out
    assert "log error" in out and "Hits" in out and "unparsed" in out


def test_json_lines_with_completions_losing_their_price_fails_with_exit_1_naming_the_measure(tmp_path, capsys):
    baseline = committed(FINE_TUNED, "8bit")
    rows = rows_of(baseline)
    for row in random.Random(1).sample(rows, 25):
        row.update(guess=0.0, completion="I cannot tell", parsed=None)  # parsed omitted below: the text decides
    for row in rows:
        if row["parsed"] is None:
            del row["parsed"]

    code = main(["compare", str(baseline), str(write_rows(tmp_path / "run.jsonl", rows))])

    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: unparsed is worse by 10.0 pts, beyond the tolerance 1.0 pts, Holm-adjusted p=" in out
    assert "items whose unparsed got worse most:" in out and "(unparsed no -> yes)" in out
    assert "Holm-adjusted p=<0.0001" in out  # 25 of 25 changed items one way: p = 0.5**25, never printed as 0


def test_rows_with_only_index_and_guess_are_matched_by_index_in_any_order(tmp_path, capsys):
    baseline = committed(FINE_TUNED, "16bit")
    rows = [{"index": row["index"], "guess": row["guess"]} for row in rows_of(baseline)]
    random.Random(2).shuffle(rows)

    code = main(["compare", str(baseline), str(write_rows(tmp_path / "run.jsonl", rows))])

    assert code == 0, capsys.readouterr().out


def test_run_missing_items_is_not_comparable_with_exit_1(tmp_path, capsys):
    baseline = committed(FINE_TUNED, "32bit")
    rows = rows_of(baseline)[:-3]

    code = main(["compare", str(baseline), str(write_rows(tmp_path / "run.jsonl", rows))])

    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED: not comparable with the baseline" in out
    assert "items: baseline '250 items', now '247 items: 3 (#248, #249, #250) missing, none not in the baseline'" in out


@pytest.mark.parametrize(("line", "error"), [
    ('{"index": 3, "guess": "abc"}', "run.jsonl:3: field 'guess': 'abc' is not a non-negative number"),
    ('{"index": 0, "guess": 1.0}', "run.jsonl:3: field 'index': 0 is not a positive whole number"),
    ('{"index": 3, "guess": 1.0, "parsed": "yes"}', "run.jsonl:3: field 'parsed': 'yes' is not true or false"),
    ('{"index": 3, "guess": 1.0', "run.jsonl:3: not valid JSON"),
    ('{"index": 1, "guess": 1.0}', "run.jsonl:3: field 'index': 1 appears twice"),
], ids=["guess", "index", "parsed", "json", "duplicate"])
def test_bad_run_line_is_exit_2_with_one_line_naming_file_line_and_field(tmp_path, capsys, line, error):
    path = tmp_path / "run.jsonl"
    path.write_text('{"index": 1, "guess": 10.0}\n{"index": 2, "guess": 20.0}\n' + line + "\n", encoding="utf-8")

    code = main(["compare", str(committed(FINE_TUNED, "4bit")), str(path)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"pricer: error: {tmp_path / error.split(':')[0]}:")
    assert error.split(":", 1)[1] in err


def test_damaged_baseline_is_exit_2_naming_it(tmp_path, capsys):
    damaged = tmp_path / "4bit.json"
    text = committed(FINE_TUNED, "4bit").read_text(encoding="utf-8")
    damaged.write_text(text.replace('"guess": ', '"guess": 1', 1), encoding="utf-8")

    code = main(["compare", str(damaged), str(committed(FINE_TUNED, "4bit"))])

    assert code == 2
    assert f"pricer: error: {damaged}: checksum mismatch" in capsys.readouterr().err


def test_two_baselines_of_different_hardware_classes_use_the_cross_class_rule_and_say_so(tmp_path, capsys):
    baseline = committed(FINE_TUNED, "4bit")
    gpu = as_class(baseline, tmp_path / "cuda" / "4bit.json", device="cuda", compute_dtype="bfloat16")

    code = main(["compare", str(baseline), str(gpu)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "hardware classes differ (baseline cpu-bfloat16, run cuda-bfloat16): the cross-class rule applies" in out
    assert "across hardware classes (baseline cpu-bfloat16, now cuda-bfloat16): the cross-class rule applies" in out


def test_cross_class_flag_applies_the_rule_to_json_lines(tmp_path, capsys):
    baseline = committed(FINE_TUNED, "4bit")

    code = main(["compare", "--cross-class", str(baseline), str(write_rows(tmp_path / "run.jsonl", rows_of(baseline)))])

    out = capsys.readouterr().out
    assert code == 0
    assert "across hardware classes (baseline cpu-bfloat16, now cpu-bfloat16): the cross-class rule applies" in out


def test_tolerance_options_decide_whether_a_worsening_fails(tmp_path, capsys):
    baseline = committed(FINE_TUNED, "4bit")
    rows = rows_of(baseline)
    for row in random.Random(3).sample(rows, 75):  # 30% of guesses halved
        row["guess"] /= 2
    run = str(write_rows(tmp_path / "run.jsonl", rows))

    strict = main(["compare", str(baseline), run])
    loose = main(["compare", "--tolerance", "100%", "--log-tolerance", "100%", "--hits-tolerance", "100%",
                  str(baseline), run])

    assert (strict, loose) == (1, 0), capsys.readouterr().out


def test_bad_option_value_names_the_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--hits-tolerance", "lots", "a.json", "b.jsonl"])

    assert exit_info.value.code == 2
    assert "--hits-tolerance: 'lots' is not a number" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", FINE_TUNED], ids=["base", "fine-tuned"])
def test_real_h100_rerun_passes_against_the_cpu_baseline_under_the_cross_class_rule(capsys, model):
    # 8 bits moved most: the base model's Error $429.97 -> $1,335.68 and its log error +6.2% on the H100.
    gpu = BASELINES / model / "cuda-bfloat16" / "8bit.json"
    if not gpu.exists():
        pytest.skip(f"{gpu} is not committed")

    code = main(["compare", str(committed(model, "8bit")), str(gpu)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "hardware classes differ (baseline cpu-bfloat16, run cuda-bfloat16): the cross-class rule applies" in out


def test_summary_and_chart_of_a_failing_compare_show_the_failing_measure(tmp_path, capsys):
    baseline = committed(FINE_TUNED, "8bit")
    rows = rows_of(baseline)
    for row in rows[::2]:
        row["guess"] *= 8
    summary, chart = tmp_path / "summary.md", tmp_path / "moved.png"
    summary.write_text("## an earlier step", encoding="utf-8")  # as $GITHUB_STEP_SUMMARY may hold

    code = main(["compare", str(baseline), str(write_rows(tmp_path / "run.jsonl", rows)),
                 "--summary", str(summary), "--chart", str(chart)])

    out = capsys.readouterr().out
    assert code == 1
    assert f"chart of what moved: {chart}\nsummary appended to {summary}\n" in out
    lines = summary.read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["## an earlier step", "", lines[2]] and lines[2].startswith("## pricer compare: ")
    assert "### run: FAILED" in lines and f"Chart of what moved: `{chart}`" in lines
    assert any(line.startswith("- Error is worse by ") for line in lines)
    assert any(line.startswith("| Error |") and line.endswith("| WORSE |") for line in lines)
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_change_whose_whole_ci_is_better_says_why_it_is_not_called_better(tmp_path, capsys):
    baseline = committed("smollm2-135m-instruct-smollm2-135m-pricer", "32bit")
    items = read_baseline(baseline).items
    exact = {b.index for b in sorted(items, key=lambda b: -abs(b.guess - b.truth))[:3]}  # three answered exactly
    run = write_rows(tmp_path / "run.jsonl", [{"index": b.index, "guess": b.truth if b.index in exact else b.guess}
                                              for b in items])

    code = main(["compare", str(baseline), str(run)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert ("passed: not measurably worse; Error's 95% CI [-$" in out and "] lies wholly on the better side, yet it "
            "is not called better: that needs Holm p < 0.05 over the sign-flip permutation test of every measure, and "
            "here Holm p=0.5000 (p=0.1250, 3 items changed)" in out)
