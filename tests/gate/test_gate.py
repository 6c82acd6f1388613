"""The verdict on planted regressions and on noise, at the library level, with a fast classic predictor."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from pricer.engines.evaluate import RunResult, score_run
from pricer.engines.predict import Prediction
from pricer.errors import BaselineError
from pricer.gate.ladder import quantization_ladder
from pricer.gate.measures import PairedMean
from pricer.gate.verdict import GateConfig, compare, paired_delta
from pricer.store.baselines import read_baseline, write_baseline
from pricer.store.fingerprint import Fingerprint
from pricer.task.items import DataSpec, Item
from pricer.task.load import load_items

FINGERPRINT = Fingerprint(decisive={"predictor": "random-forest", "items_sha256": "abc", "n": 250},
                          context={"cpu": "one machine"})


@pytest.fixture(scope="module")
def forest(data_dir: Path):
    from pricer.engines.classic import train_classic

    train = load_items(DataSpec(source=str(data_dir), split="train", n=None))
    return train_classic("random-forest", train)


@pytest.fixture(scope="module")
def items(data_dir: Path) -> list[Item]:
    return load_items(DataSpec(source=str(data_dir)))


@pytest.fixture(scope="module")
def clean_run(forest, items) -> RunResult:
    return score_run("random-forest", items, forest.predict(items))


@pytest.fixture
def baseline(clean_run, tmp_path):
    path = tmp_path / "random-forest" / "classic.json"
    write_baseline(path, run=clean_run, fingerprint=FINGERPRINT, reason="first baseline", previous=None)
    return read_baseline(path)


def with_guesses(run: RunResult, guesses: list[float]) -> RunResult:
    return score_run(run.name, run.items, [Prediction(guess=g) for g in guesses])


def test_unchanged_rerun_passes(baseline, clean_run):
    verdict = compare(baseline, clean_run, FINGERPRINT, GateConfig())
    assert verdict.passed, verdict.message()
    assert verdict.delta.mean == 0 and verdict.delta.p_worse == 1.0


def test_another_machine_with_flipped_items_passes(baseline, clean_run):
    # Between two CPUs greedy decoding flips some items to a nearby guess, better or worse by chance.
    rng = random.Random(1)
    guesses = [g * rng.choice((0.8, 1.25)) if rng.random() < 0.22 else g for g in (p.guess for p in clean_run.predictions)]
    other_cpu = Fingerprint(decisive=FINGERPRINT.decisive, context={"cpu": "another machine"})
    verdict = compare(baseline, with_guesses(clean_run, guesses), other_cpu, GateConfig())
    assert verdict.passed, verdict.message()
    assert [c.field for c in verdict.changes] == ["cpu"]
    assert "what changed since the baseline (judged by the verdict):\n  cpu: " in verdict.message()


def test_retrained_with_another_seed_passes(baseline, items, data_dir):
    from pricer.engines.classic import train_classic

    train = load_items(DataSpec(source=str(data_dir), split="train", n=None))
    reseeded = score_run("random-forest", items, train_classic("random-forest", train, seed=7).predict(items))
    verdict = compare(baseline, reseeded, FINGERPRINT, GateConfig())
    assert verdict.passed, verdict.message()


def test_gate_fails_when_guesses_are_pushed_from_the_truth_on_a_share_of_items(baseline, clean_run):
    rng = random.Random(2)
    pushed = [
        (p.guess + 0.6 * i.price if p.guess >= i.price else max(p.guess - 0.6 * i.price, 0.0)) if rng.random() < 0.4 else p.guess
        for p, i in zip(clean_run.predictions, clean_run.items)
    ]
    verdict = compare(baseline, with_guesses(clean_run, pushed), FINGERPRINT, GateConfig())
    assert not verdict.passed
    message = verdict.message(accept="pytest -m eval --update-baselines --pricer-reason 'why'")
    assert "Error is worse by $" in message and "Holm-adjusted p=" in message and "95% CI" in message
    assert "items whose" in message and "got worse most" in message and "--update-baselines" in message


def test_gate_fails_when_texts_are_rotated_among_items(baseline, forest, clean_run):
    # Every guess now belongs to the next product: a misalignment bug the fingerprint cannot see.
    items = list(clean_run.items)
    rotated = [dataclasses.replace(item, prompt=items[(i + 1) % len(items)].prompt) for i, item in enumerate(items)]
    verdict = compare(baseline, score_run("random-forest", items, forest.predict(rotated)), FINGERPRINT, GateConfig())
    assert not verdict.passed
    assert verdict.delta.p_worse < 0.01


def test_gate_fails_when_the_prompt_is_corrupted(baseline, forest, clean_run):
    # A prompt that lost its description: the predictor sees only the question and the answer prefix.
    corrupted = [dataclasses.replace(item, prompt=item.prompt.split("\n")[0] + "\n\nPrice is $") for item in clean_run.items]
    run = score_run("random-forest", clean_run.items, forest.predict(corrupted))
    verdict = compare(baseline, run, FINGERPRINT, GateConfig())
    assert not verdict.passed, verdict.message()


def test_another_bit_width_is_not_comparable(baseline, clean_run):
    stored = dataclasses.replace(baseline, fingerprint=Fingerprint(decisive={**FINGERPRINT.decisive, "bits": 4}))
    loaded_32 = Fingerprint(decisive={**FINGERPRINT.decisive, "bits": 32}, context=FINGERPRINT.context)
    verdict = compare(stored, clean_run, loaded_32, GateConfig())
    assert not verdict.passed
    assert [c.field for c in verdict.not_comparable] == ["bits"]
    assert "not comparable" in verdict.message()


@pytest.mark.parametrize("field", ["quantization", "model", "adapter_sha256", "prompts_sha256", "max_new_tokens"])
def test_another_model_or_prompt_is_a_change_judged_not_refused(baseline, clean_run, field):
    changed = Fingerprint(decisive={**FINGERPRINT.decisive, field: "other"}, context=FINGERPRINT.context)
    verdict = compare(baseline, clean_run, changed, GateConfig())
    assert verdict.passed and not verdict.not_comparable, verdict.message()
    assert [c.field for c in verdict.changes] == [field]
    assert f"what changed since the baseline (judged by the verdict):\n  {field}: baseline None, now 'other'" \
        in verdict.message()


def test_baseline_of_other_items_is_not_comparable(baseline, clean_run):
    other = Fingerprint(decisive={**FINGERPRINT.decisive, "items_sha256": "def"}, context=FINGERPRINT.context)
    verdict = compare(baseline, clean_run, other, GateConfig())
    assert not verdict.passed
    assert "items_sha256: baseline 'abc', now 'def'" in verdict.message()


def test_items_with_other_prices_are_not_comparable(baseline, clean_run):
    items = [dataclasses.replace(clean_run.items[0], price=1.0), *clean_run.items[1:]]
    run = score_run("random-forest", items, clean_run.predictions)
    verdict = compare(baseline, run, FINGERPRINT, GateConfig())
    assert [c.field for c in verdict.not_comparable] == ["items"]


def test_truncated_baseline_fails_naming_the_file(baseline):
    text = baseline.path.read_text()
    baseline.path.write_text(text[: len(text) // 2])
    with pytest.raises(BaselineError, match=rf"{baseline.path}:\d+: not valid JSON .* truncated"):
        read_baseline(baseline.path)


def test_hand_edited_baseline_fails_naming_the_file(baseline):
    raw = json.loads(baseline.path.read_text())
    raw["items"][0]["guess"] = raw["items"][0]["truth"]  # "fixing" an item by hand
    baseline.path.write_text(json.dumps(raw, indent=2, sort_keys=True))
    with pytest.raises(BaselineError, match=rf"{baseline.path}: checksum mismatch"):
        read_baseline(baseline.path)


def test_missing_baseline_fails_naming_the_file(tmp_path):
    with pytest.raises(BaselineError, match="nowhere.json: file not found"):
        read_baseline(tmp_path / "nowhere.json")


def test_rewrite_keeps_previous_metrics_and_reason(baseline, clean_run):
    worse = with_guesses(clean_run, [p.guess * 1.5 for p in clean_run.predictions])
    write_baseline(baseline.path, run=worse, fingerprint=FINGERPRINT, reason="new prompt", previous=baseline)
    rewritten = read_baseline(baseline.path)
    assert rewritten.reason == "new prompt"
    assert [h.reason for h in rewritten.history] == ["first baseline"]
    assert rewritten.history[0].metrics["error"] == pytest.approx(clean_run.metrics.error, abs=1e-6)


def test_rewrite_without_a_reason_is_refused(baseline, clean_run):
    with pytest.raises(BaselineError, match="only with a reason"):
        write_baseline(baseline.path, run=clean_run, fingerprint=FINGERPRINT, reason=" ", previous=baseline)


def test_plain_limits_fail_a_run_that_is_not_worse(baseline, clean_run):
    config = GateConfig(max_error=50.0, min_hits=0.9, max_unparsed=0.0)
    verdict = compare(baseline, clean_run, FINGERPRINT, config)
    assert not verdict.passed
    assert any("above the limit $50.00" in r for r in verdict.reasons)
    assert any("below the limit 90.0%" in r for r in verdict.reasons)


def test_significant_worsening_within_tolerance_passes(baseline, clean_run):
    slightly = with_guesses(clean_run, [p.guess + 2.0 if p.guess >= i.price else max(p.guess - 2.0, 0) for p, i in
                                        zip(clean_run.predictions, clean_run.items)])
    verdict = compare(baseline, slightly, FINGERPRINT, GateConfig(tolerance_share=0.05))
    assert verdict.delta.p_worse < 0.05
    assert verdict.passed, verdict.message()
    assert not compare(baseline, slightly, FINGERPRINT, GateConfig(tolerance_share=0.0)).passed


def test_paired_delta_is_reproducible():
    rng = random.Random(3)
    before = [rng.uniform(0, 100) for _ in range(100)]
    now = [b + rng.gauss(1, 10) for b in before]
    assert paired_delta(before, now) == paired_delta(before, now)


def test_minimum_detectable_effect_shrinks_with_more_items():
    rng = random.Random(4)
    errors = [rng.expovariate(1 / 100) for _ in range(1000)]
    detectable = PairedMean().detectable
    assert detectable(errors[:1000], alpha=0.05) < detectable(errors[:250], alpha=0.05) < detectable(errors[:40], alpha=0.05)


def test_ladder_reports_each_width_against_32_bits_with_corrected_confidence(clean_run):
    worse = with_guesses(clean_run, [p.guess * 2 for p in clean_run.predictions])
    taxes = quantization_ladder(clean_run, {"4bit": worse, "8bit": clean_run}, max_tax_share=0.10)
    assert [t.label for t in taxes] == ["4bit", "8bit"]
    assert taxes[0].delta.confidence == pytest.approx(0.975)
    assert taxes[0].exceeded and not taxes[1].exceeded
    assert "4bit: Error $" in taxes[0].line()


def test_detectability_is_not_made_coarse_by_a_few_absurd_guesses(clean_run, tmp_path):
    from pricer.plugin.session import EvalSession, EvalSettings

    settings = EvalSettings(data=DataSpec(source="unused"), predictor="random-forest", baselines=tmp_path)
    session = EvalSession(settings, root=tmp_path)
    path = session.home.path("random-forest")
    write_baseline(path, run=clean_run, fingerprint=FINGERPRINT, reason="first baseline", previous=None)
    clean = session.gates.detectability("random-forest")
    assert [d.measure for d in clean.measures] == ["Error", "log error", "Hits", "unparsed"]
    assert clean.too_coarse is None and clean.note is None

    # Two absurd completions, as a base model writes ($100,000 for a few-hundred-dollar item): the plain rule of
    # thumb said the gate could not see less than 70% of Error; Error's trimmed test and the log error can.
    absurd = with_guesses(clean_run, [100_000.0, 100_000.0] + [s.guess for s in clean_run.scores[2:]])
    write_baseline(path, run=absurd, fingerprint=FINGERPRINT, reason="absurd guesses", previous=None)
    found = session.gates.detectability("random-forest")

    errors = [s.error for s in absurd.scores]
    assert PairedMean().detectable(errors, alpha=0.05) / absurd.metrics.error > 0.25
    assert all(d.share < 0.25 for d in found.measures[:2])
    assert found.too_coarse is None and found.note is None


def test_detectability_warns_that_a_small_n_is_too_coarse(clean_run, tmp_path):
    from pricer.plugin.session import EvalSession, EvalSettings

    settings = EvalSettings(data=DataSpec(source="unused"), predictor="random-forest", baselines=tmp_path)
    session = EvalSession(settings, root=tmp_path)
    small = score_run("random-forest", clean_run.items[:20], clean_run.predictions[:20])
    write_baseline(session.home.path("random-forest"), run=small, fingerprint=FINGERPRINT, reason="few items",
                   previous=None)

    assert "raise --pricer-n" in session.gates.detectability("random-forest").too_coarse


def test_gate_fails_when_completions_stop_containing_a_price(baseline, clean_run):
    rng = random.Random(6)
    dropped = set(rng.sample(range(len(clean_run.items)), len(clean_run.items) // 10))
    run = score_run("random-forest", clean_run.items, [
        Prediction(guess=0.0, completion="N/A", parsed=False) if i in dropped else p
        for i, p in enumerate(clean_run.predictions)])

    verdict = compare(baseline, run, FINGERPRINT, GateConfig())

    assert not verdict.passed
    assert any(r.startswith("unparsed is worse by 10.0 pts, beyond the tolerance 1.0 pts") for r in verdict.reasons)
    assert verdict.worst and {w.index for w in verdict.worst} <= {clean_run.items[i].index for i in dropped}


def test_gate_fails_on_log_error_when_error_improves(clean_run, tmp_path):
    # A base-model-like baseline with two $100,000 guesses; the run fixes those two but hands every other item
    # its neighbour's guess. Error falls by hundreds of dollars; the log error sees the items are now wrong.
    guesses = [p.guess for p in clean_run.predictions]
    path = tmp_path / "absurd.json"
    write_baseline(path, run=with_guesses(clean_run, [100_000.0, 100_000.0] + guesses[2:]), fingerprint=FINGERPRINT,
                   reason="absurd guesses", previous=None)
    rotated = guesses[:2] + guesses[3:] + guesses[2:3]

    verdict = compare(read_baseline(path), with_guesses(clean_run, rotated), FINGERPRINT, GateConfig())

    assert verdict.now_error < verdict.baseline_error - 500
    assert not verdict.passed
    assert verdict.reasons[0].startswith("log error is worse by")


def moved_away(run: RunResult, factor: float, share: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [(p.guess * factor if p.guess >= i.price else p.guess / factor) if rng.random() < share else p.guess
            for p, i in zip(run.predictions, run.items)]


def test_cross_class_rule_passes_a_moderate_worsening_that_fails_within_a_class(baseline, clean_run):
    # 40% of guesses 15% further from their truths: past the same-class tolerances, inside the cross-class ones.
    run = with_guesses(clean_run, moved_away(clean_run, 1.15, 0.4, seed=7))
    gpu = Fingerprint(decisive=FINGERPRINT.decisive, context={**FINGERPRINT.context, "device": "cuda"})

    within = compare(baseline, run, gpu, GateConfig())
    across = compare(baseline, run, gpu, GateConfig(), cross_class=True)

    assert not within.passed and within.cross_class is None
    assert across.passed, across.message()
    assert "across hardware classes (baseline ?-?, now cuda-?): the cross-class rule applies" in across.message()
    assert all(a.measure.tolerance >= w.measure.tolerance for a, w in zip(across.judgements, within.judgements))


def test_cross_class_rule_still_catches_a_large_regression(baseline, clean_run):
    run = with_guesses(clean_run, moved_away(clean_run, 3.0, 0.3, seed=8))

    verdict = compare(baseline, run, FINGERPRINT, GateConfig(), cross_class=True)

    assert not verdict.passed
    assert {"Error", "log error"} <= {j.measure.name for j in verdict.judgements if j.failed}


def test_verdict_is_the_same_on_every_run_of_the_same_predictions(baseline, clean_run):
    run = with_guesses(clean_run, moved_away(clean_run, 1.1, 0.3, seed=9))

    first, second = (compare(baseline, run, FINGERPRINT, GateConfig()) for _ in range(2))

    assert first.judgements == second.judgements


BASELINES = Path(__file__).resolve().parents[2] / "baselines"
FINE_TUNED_4BIT = BASELINES / "smollm2-135m-instruct-smollm2-135m-pricer" / "cpu-float32" / "4bit.json"
BASE_4BIT = BASELINES / "smollm2-135m-instruct" / "cpu-float32" / "4bit.json"


def guesses_file(tmp_path: Path, baseline: Path, change=lambda i, g: g) -> Path:
    """JSON Lines of a committed baseline's guesses, `change(position, guess)` applied."""
    rows = [{"index": b.index, "guess": change(i, b.guess), "parsed": b.parsed}
            for i, b in enumerate(read_baseline(baseline).items)]
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_fine_tuned_guesses_against_the_base_models_baseline_read_as_better(tmp_path, capsys):
    from pricer.cli.main import main

    code = main(["compare", str(BASE_4BIT), str(guesses_file(tmp_path, FINE_TUNED_4BIT))])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "passed: better: Error -$" in out and "log error -" in out
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.startswith(("Error ", "log error ", "unparsed "))}
    assert rows == {"Error": "better", "log": "better", "unparsed": "ok"}


def test_summary_line_reads_better_with_the_measures_that_improved(tmp_path):
    from pricer.gate.compare import compare_run, read_run

    baseline = read_baseline(BASE_4BIT)
    verdict = compare_run(baseline, read_run(guesses_file(tmp_path, FINE_TUNED_4BIT)), GateConfig(),
                          intervals=False).verdict

    assert verdict.passed and verdict.better == ("Error", "log error", "Hits")
    assert verdict.summary_line("4bit").startswith("4bit: BETTER (Error, log error, Hits) Error $264.48 -> $140.01")


def test_a_passing_plain_change_beyond_its_tolerance_says_which_items_moved_it_and_why_they_do_not_count(tmp_path, capsys):
    from pricer.cli.main import main

    run = guesses_file(tmp_path, FINE_TUNED_4BIT, lambda i, g: 99_999.0 if i == 10 else g)

    assert main(["compare", str(FINE_TUNED_4BIT), str(run)]) == 0
    first = next(line for line in capsys.readouterr().out.splitlines() if ": passed: " in line)
    assert "not measurably worse; Error's plain mean is worse by $" in first
    assert "through 1 item that got worse (#11 +$" in first and "carry 100% of it)" in first
    assert "sign test p=0.5000" in first


def test_a_passing_plain_change_on_a_trimmed_baseline_says_the_trimmed_mean_cuts_it(tmp_path, capsys):
    from pricer.cli.main import main

    run = guesses_file(tmp_path, BASE_4BIT, lambda i, g: 99_999.0 if i == 70 else g)  # one: within the tail budget

    assert main(["compare", str(BASE_4BIT), str(run)]) == 0
    first = next(line for line in capsys.readouterr().out.splitlines() if ": passed: " in line)
    assert "through 1 item that got worse" in first
    assert "this baseline answers absurdly itself (up to $12,500), so Error is judged on its 5%-trimmed mean" in first
