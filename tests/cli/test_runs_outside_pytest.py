"""Runs outside pytest: `pricer eval --save-run` stores one, `pricer compare` judges it, `pricer accept` makes it the
baseline with a reason, and `pricer power` says how many items a gate needs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from pricer.cli.main import main
from pricer.gate.compare import compare_files
from pricer.gate.verdict import GateConfig
from pricer.store.baselines import read_baseline

BASELINE = Path(__file__).resolve().parents[2] / "baselines/smollm2-135m-instruct/cpu-bfloat16/32bit.json"


def test_power_prints_each_measures_detectable_change_and_the_items_a_chosen_one_needs(capsys) -> None:
    code = main(["power", str(BASELINE), "--worse", "10%"])

    out = capsys.readouterr().out
    assert code == 0
    # Error detects 10.6% of its level at n=250; 10% needs (10.6/10)^2 as many items.
    error_row = next(line for line in out.splitlines() if line.startswith("Error"))
    assert re.search(r"\$46\.07 \(11% of Error\) +10% \(\+\$43\.45\) +282$", error_row), error_row
    assert "within its tolerance (12%): passes at any n" in out  # log error: 10% never fails


def test_power_never_asks_for_fewer_items_than_the_gate_trusts(capsys) -> None:
    main(["power", str(BASELINE), "--worse", "90%"])

    error_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Error"))
    assert error_row.endswith(" 50 (have enough)")


def test_power_says_how_many_items_the_test_split_holds_and_what_they_detect(tmp_path, capsys) -> None:
    data = tmp_path / "test.jsonl"
    data.write_text("".join(f'{{"text": "item {i}\\n\\nPrice is $", "price": {10 + i}}}\n' for i in range(160)))
    tuned = BASELINE.parent.parent.parent / "smollm2-135m-instruct-smollm2-135m-pricer/cpu-float32/32bit.json"

    code = main(["power", str(tuned), "--worse", "10%", "--data", str(data)])

    last = capsys.readouterr().out.splitlines()[-1]
    assert code == 0
    assert last.startswith(f"{data} holds 160 items (this baseline prices 250); all 160 detect at 80% power a "
                           "worsening of Error 27%, log error 19%, Hits 4.4 pts, unparsed 4.4 pts; Error needs 1,195 "
                           "to see 10%, more than it holds: no gate of this split sees that; gate all 160"), last


def test_compare_advises_pricer_accept_with_a_reason_not_a_copy(tmp_path) -> None:
    run = shutil.copyfile(BASELINE, tmp_path / "run.json")

    comparison = compare_files(BASELINE, run, GateConfig())

    assert comparison.accept == f"pricer accept {BASELINE} {run} --reason why"


def test_accept_replaces_the_baseline_keeping_the_old_one_in_its_history(tmp_path, capsys) -> None:
    baseline = shutil.copyfile(BASELINE, tmp_path / "32bit.json")
    before = read_baseline(baseline)
    other = Path(str(BASELINE).replace("smollm2-135m-instruct/", "smollm2-135m-instruct-smollm2-135m-pricer/"))
    run = shutil.copyfile(other, tmp_path / "run.json")

    code = main(["accept", str(baseline), str(run), "--reason", "fine-tuned adapter"])

    after = read_baseline(baseline)
    assert code == 0, capsys.readouterr().err
    assert after.reason == "fine-tuned adapter" and after.metrics == read_baseline(run).metrics
    assert after.history[-1].reason == before.reason and after.history[-1].metrics == before.metrics


def test_accept_judges_first_refusing_a_worse_run_unless_the_trade_off_is_named(tmp_path, capsys) -> None:
    tuned = Path(str(BASELINE).replace("smollm2-135m-instruct/", "smollm2-135m-instruct-smollm2-135m-pricer/"))
    baseline = shutil.copyfile(tuned, tmp_path / "32bit.json")
    run = shutil.copyfile(BASELINE, tmp_path / "base.json")  # the base model: far worse than the fine-tuned one
    before = baseline.read_bytes()

    refused = main(["accept", str(baseline), str(run), "--reason", "no adapter"])

    err = capsys.readouterr().err
    assert refused == 2 and baseline.read_bytes() == before
    assert f"{baseline}: not replaced: {run} is WORSE than it:" in err
    assert "--reason 'no adapter' --accept-worse 'what it buys'" in err

    accepted = main(["accept", str(baseline), str(run), "--reason", "no adapter", "--accept-worse", "one model less"])

    assert accepted == 0
    stored = read_baseline(baseline)
    assert stored.trade_off == "one model less" and stored.verdict.startswith("WORSE (")


def test_accept_refuses_guesses_without_a_fingerprint(tmp_path, capsys) -> None:
    baseline = shutil.copyfile(BASELINE, tmp_path / "32bit.json")
    run = tmp_path / "guesses.jsonl"
    run.write_text('{"index": 1, "guess": 5.0}\n', encoding="utf-8")

    code = main(["accept", str(baseline), str(run), "--reason", "x"])

    assert code == 2
    assert "has no fingerprint, so it cannot become a baseline" in capsys.readouterr().err


def test_eval_saves_its_run_for_compare_and_accept(tmp_path, capsys, data_dir) -> None:
    saved = tmp_path / "run.json"

    code = main(["eval", "--predictor", "constant", f"--data={data_dir}", "--n", "30", "--quiet", "--no-charts",
                 "--save-run", str(saved)])

    assert code == 0, capsys.readouterr().err
    run = read_baseline(saved)
    assert len(run.items) == 30 and {**run.fingerprint.decisive, **run.fingerprint.context}["predictor"] == "constant"
    assert main(["compare", str(saved), str(saved)]) == 0
