"""Gate v3: a handful of absurd answers never passes, a few changed answers never crash, and the report shows the
plain mean beside the statistic it tested (through `pricer compare` on the committed baselines; the plugin path is
in tests/plugin/test_plugin.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pricer.cli.main import main
from pricer.gate.tail import TailRule, check_tail, visibility
from pricer.gate.verdict import GateConfig
from pricer.store.baselines import read_baseline

BASELINES = Path(__file__).resolve().parents[2] / "baselines"
FINE_TUNED = "smollm2-135m-instruct-smollm2-135m-pricer"
BASE = "smollm2-135m-instruct"
CLASSES = ("cpu-bfloat16", "cpu-float32", "cuda-bfloat16")


def stored(model: str, hardware_class: str, width: str = "4bit") -> Path:
    return BASELINES / model / hardware_class / f"{width}.json"


def planted(tmp_path: Path, baseline: Path, change) -> Path:
    """JSON Lines of the baseline's guesses with `change(position, guess)` applied."""
    items = read_baseline(baseline).items
    rows = [{"index": b.index, "guess": change(i, b.guess)} for i, b in enumerate(items)]
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def spread(count: int, total: int = 250) -> set[int]:
    """`count` positions spread over the items, the same on every run."""
    return {round(k * total / count) + 3 for k in range(count)}


@pytest.mark.parametrize("hardware_class", CLASSES)
def test_three_absurd_answers_fail_the_fine_tuned_model_in_every_class(tmp_path, capsys, hardware_class):
    baseline = stored(FINE_TUNED, hardware_class)
    chosen = spread(3)
    run = planted(tmp_path, baseline, lambda i, g: 99_999.0 if i in chosen else g)

    code = main(["compare", str(baseline), str(run)])

    out = capsys.readouterr().out
    assert code == 1, out
    assert ("3 absurd answers (above 10x the baseline's answer for its item and 2x its truth), more than the tail "
            "budget of 1") in out
    assert out.count("now $99,999.00") >= 3  # the absurd items are listed: truth, baseline guess, now


def test_absurd_answers_still_fail_under_the_cross_class_rule(tmp_path, capsys):
    baseline = stored(FINE_TUNED, "cpu-float32")
    chosen = spread(3)
    run = planted(tmp_path, baseline, lambda i, g: 99_999.0 if i in chosen else g)

    code = main(["compare", "--cross-class", str(baseline), str(run)])

    assert code == 1
    assert "more than the tail budget of 2" in capsys.readouterr().out


def test_one_absurd_answer_is_within_the_budget_and_listed(tmp_path, capsys):
    baseline = stored(FINE_TUNED, "cpu-float32")
    run = planted(tmp_path, baseline, lambda i, g: 99_999.0 if i == 10 else g)

    code = main(["compare", str(baseline), str(run)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "absurd answers (tail budget 1):" in out and "now $99,999.00" in out


def test_tail_budget_option_turns_the_rule_off(tmp_path, capsys):
    baseline = stored(FINE_TUNED, "cpu-float32")
    chosen = spread(4)  # four: too few for the large-moves rule's sign test (1/2**4 > 0.05), so only the tail sees them
    run = planted(tmp_path, baseline, lambda i, g: 99_999.0 if i in chosen else g)

    assert main(["compare", "--tail-budget", "off", str(baseline), str(run)]) == 0
    assert main(["compare", "--tail-budget", "4", str(baseline), str(run)]) == 0
    assert main(["compare", "--tail-budget", "3", str(baseline), str(run)]) == 1


def test_five_absurd_answers_fail_the_fine_tuned_model_by_large_moves_with_the_tail_rule_off(tmp_path, capsys):
    baseline = stored(FINE_TUNED, "cpu-float32")
    chosen = spread(5)
    run = planted(tmp_path, baseline, lambda i, g: 99_999.0 if i in chosen else g)

    code = main(["compare", "--tail-budget", "off", str(baseline), str(run)])

    out = capsys.readouterr().out
    assert code == 1, out
    assert "its large moves (Error changed by more than $140.01) went one way: 5 worse, 0 better, sign test p=0.0312" in out


def test_error_row_shows_the_plain_mean_beside_the_trimmed_statistic(tmp_path, capsys):
    baseline = stored(BASE, "cpu-bfloat16")  # answers absurdly itself: its Error is judged on the trimmed mean
    chosen = spread(5)
    run = planted(tmp_path, baseline, lambda i, g: 99_999.0 if i in chosen else g)

    main(["compare", str(baseline), str(run)])

    error_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Error "))
    tested, _, mean, share = error_row.split()[3:7]
    assert tested == "+$0.00"  # the 5%-trimmed mean cuts five items away...
    assert float(mean.lstrip("+$").replace(",", "")) > 1_000  # ...and the plain mean shows them
    assert share.startswith("(+") and share != "(+0.0%)"


@pytest.mark.parametrize("changed", [0, 1, 2, 3])
def test_few_changed_answers_give_a_verdict_without_warnings(tmp_path, capsys, recwarn, changed):
    baseline = stored(FINE_TUNED, "cpu-float32")
    run = planted(tmp_path, baseline, lambda i, g: g + 1 if i < changed else g)

    code = main(["compare", str(baseline), str(run)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "passed: not measurably worse" in out
    assert not [str(w.message) for w in recwarn], "a library warning reached the console"


@pytest.mark.parametrize("changed", [1, 2, 3])
def test_few_answers_made_much_worse_give_exact_p_values(tmp_path, capsys, changed):
    baseline = stored(FINE_TUNED, "cpu-float32")
    items = read_baseline(baseline).items
    close = [i for i, b in enumerate(items) if abs(math.log((b.guess + 1) / (b.truth + 1))) < 0.5][:changed]
    run = planted(tmp_path, baseline, lambda i, g: 5 * items[i].truth if i in close else g)

    assert main(["compare", str(baseline), str(run)]) == 0  # too few to be significant, and no tail
    error_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("log error "))
    # The exact sign-flip p of k items all worse is 1 / 2**k.
    assert f"{0.5 ** changed:.4f}" in error_row


def test_rule_never_counts_an_answer_the_baseline_already_made():
    rule = TailRule()
    tail = check_tail(rule, indices=[1, 2, 3], titles=["a", "b", "c"], truths=[10.0, 20.0, 30.0],
                      before=[12.0, 100.0, 25.0], now=[12.0, 900.0, 2_000.0])

    assert [a.index for a in tail.items] == [3]  # #2 was absurd already, and 900 is not 10x its $100
    assert not tail.failed  # one is within the budget of one


def test_an_answer_near_its_truth_is_never_absurd_however_high():
    tail = check_tail(TailRule(budget=0), indices=[1, 2], titles=["a", "b"], truths=[900.0, 5.0],
                      before=[10.0, 5.0], now=[950.0, 5.0])

    assert tail.items == ()  # 95x the baseline's answer, but not 2x its truth


def test_before_gating_the_rule_says_what_counts_and_what_flips_allow():
    base = read_baseline(stored(BASE, "cpu-bfloat16"))
    fine = read_baseline(stored(FINE_TUNED, "cpu-bfloat16"))
    rule = GateConfig().tail

    base_text = visibility(rule, guesses=[b.guess for b in base.items], truths=[b.truth for b in base.items])
    fine_text = visibility(rule, guesses=[b.guess for b in fine.items], truths=[b.truth for b in fine.items])

    counted = "tail rule: an answer above 10x the baseline's answer for its item and 2x its truth is absurd"
    assert base_text.startswith(counted) and fine_text.startswith(counted)
    assert "plus 1 per 1.5 answers that got better, as this baseline answers absurdly itself" in base_text
    assert "plus 1 per 4 answers that got better (flips go both ways)" in fine_text
    assert "left to the log error" not in base_text  # no blind spot: each answer is judged on its own item


BASE_BASELINES = sorted((BASELINES / BASE).glob("*/*bit.json")) + sorted((BASELINES / f"{BASE}-served").glob("*/*bit.json"))


@pytest.mark.parametrize("baseline", BASE_BASELINES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.stem}")
def test_three_answers_at_99999_fail_on_every_base_model_baseline_whatever_its_own_tail(tmp_path, capsys, baseline):
    items = read_baseline(baseline).items
    # Spread over the items, among those the base model did not already price at $10,000 or more.
    sane = [i for i, b in enumerate(items) if b.guess < 10_000]
    chosen = {sane[k * len(sane) // 3 + 5] for k in range(3)}
    run = planted(tmp_path, baseline, lambda i, g: 99_999.0 if i in chosen else g)

    code = main(["compare", str(baseline), str(run)])

    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAILED: 3 absurd answers (above 10x the baseline's answer for its item" in out
    error_row = next(line for line in out.splitlines() if line.startswith("Error "))
    assert error_row.split()[-1] == "WORSE", error_row  # never "ok" beside a plain Error several times the baseline's


@pytest.mark.parametrize("baseline", BASE_BASELINES[:4], ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_three_answers_made_a_hundred_times_larger_fail_the_base_model(tmp_path, capsys, baseline):
    items = read_baseline(baseline).items
    worse = [i for i, b in enumerate(items) if 100 * b.guess > 3 * b.truth and b.guess < 1_000]
    chosen = {worse[k * len(worse) // 3] for k in range(3)}
    run = planted(tmp_path, baseline, lambda i, g: 100 * g if i in chosen else g)

    assert main(["compare", str(baseline), str(run)]) == 1
    assert "FAILED: 3 absurd answers" in capsys.readouterr().out


def test_the_issues_five_answers_at_99999_fail_the_base_model_at_32_bits(tmp_path, capsys):
    """5 of 250 at $99,999 took Error $434.48 -> $2,427.09 (+458.6%) and passed: the threshold was 10x the baseline's
    largest answer ($125,000), out of reach."""
    baseline = stored(BASE, "cpu-float32", "32bit")
    chosen = spread(5)
    run = planted(tmp_path, baseline, lambda i, g: 99_999.0 if i in chosen else g)

    code = main(["compare", str(baseline), str(run)])

    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAILED: 5 absurd answers" in out and "it does not count" not in out
    assert next(line for line in out.splitlines() if line.startswith("Error ")).split()[-1] == "WORSE"


def test_a_passing_plain_error_beyond_its_tolerance_reads_not_counted_never_ok(tmp_path, capsys):
    baseline = stored(BASE, "cpu-float32", "32bit")
    run = planted(tmp_path, baseline, lambda i, g: 99_999.0 if i == 10 else g)  # one: within the budget

    assert main(["compare", str(baseline), str(run)]) == 0
    error_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Error "))
    assert error_row.endswith("not counted"), error_row


def test_flips_both_ways_buy_an_allowance_a_catastrophe_does_not():
    truths, before = [100.0] * 20, [10.0] * 10 + [300.0] * 10
    only = [2_000.0] * 3 + [10.0] * 7 + [300.0] * 10  # three answers made absurd, nothing else: a catastrophe
    flips = [2_000.0] * 3 + [10.0] * 7 + [100.0] * 8 + [300.0] * 2  # the same three while eight others came closer

    def tail(now):
        return check_tail(TailRule(), indices=range(20), titles=["x"] * 20, truths=truths, before=before, now=now)

    assert (len(tail(only).items), tail(only).budget, tail(only).failed) == (3, 1, True)
    assert (tail(flips).better, tail(flips).budget, tail(flips).failed) == (8, 3, False)  # 1, and 1 per 4 better
    assert tail(flips).budget_text() == "3 (1, and 1 per 4 of the 8 answers that got better)"
