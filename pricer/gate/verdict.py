"""The gate: a run against its baseline on every course measure (paired, Holm-corrected), and each bit width
against 32 bits -> Verdict."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pricer.engines.evaluate import RunResult
from pricer.gate.measures import (CONFIDENCE, ERROR_TRIM, ROW_HEADERS, Judgement, McNemar, Measure, PairedMean, judge,
                                  moved_most, p_text)
from pricer.gate.tail import (BUDGET, CROSS_CLASS_BUDGET, FACTOR, LargeMoves, TailCheck, TailRule, answers_absurdly,
                              check_tail, error_word, large_moves, why_passed)
from pricer.store.baselines import Baseline, BaselineItem
from pricer.store.fingerprint import FieldChange, Fingerprint, differences, unrecorded_text
from pricer.store.hardware import class_of_fingerprint
from pricer.task.metrics import Metrics, score_item

ALPHA = 0.05
WORST_SHOWN = 5
SMALL_N = 50  # fewer items than this and the gate warns that it is too coarse to protect anything


@dataclass(frozen=True, slots=True, kw_only=True)
class GateConfig:
    """When a run counts as worse: a measure significant at `alpha` after Holm's correction AND worse by more
    than its tolerance. Defaults measured by benchmarks/planted_regressions.py (see docs/gate.md)."""

    # The tolerances are the smallest on a grid (Error 5/8/10%, log error 8/10/12/15%, Hits 3/4/5 pts) with no
    # false alarm in 320 simulated no-change reruns of the 8 stored baselines (15-40% of guesses flipped as
    # the H100 reruns flipped them; benchmarks/planted_regressions.py). Significant changes there reached
    # Error +2.1%, log error +10.1% (base 32bit; +7.1% fine-tuned 16bit) and Hits -3.2 pts.
    # Error, of the baseline's Error: at 5%, 20% of guesses tripled (fine-tuned) was past it in 5 runs of 12 and
    # significant in 2; at 8% every run past it was caught.
    tolerance_share: float = 0.08
    tolerance_dollars: float = 0.0  # Error: the larger of the two tolerances wins
    log_tolerance: float = 0.12  # of the baseline's mean |log(guess+1) - log(truth+1)|
    hits_tolerance: float = 0.04  # points: 10 of 250 items that stopped being hits
    unparsed_tolerance: float = 0.01  # share of items: 3 of 250 completions that stopped containing a price
    # Where the baseline answers absurdly itself (the base model), Error's test averages the per-item changes after
    # cutting this share from each tail (see ERROR_TRIM); the log error still sees them. Where it does not (the
    # fine-tuned model), no flip turns an answer absurd, and Error is tested on its plain mean: the trimmed mean
    # passed 12 of 250 answers at $999 (+27.5% plain Error) there; the plain mean raised no alarm in 246 no-change
    # runs of that model (benchmarks/planted_regressions.py).
    error_trim: float = ERROR_TRIM
    # The tail rule (pricer/gate/tail.py): answers above tail_factor x the baseline's answer for their item and 3x
    # their truth are absurd; more than tail_budget of them (plus what the run's improvements allow) fail, however
    # few, since the tests above cannot see a handful. None: off. tail_repertoire (the cross-class rule): only
    # answers above the baseline's largest count.
    tail_factor: float = FACTOR
    tail_budget: int | None = BUDGET
    tail_repertoire: bool = False
    alpha: float = ALPHA
    max_error: float | None = None
    min_hits: float | None = None
    max_unparsed: float | None = None  # share of items

    def tolerance(self, baseline_error: float) -> float:
        """The larger of the dollar and the relative tolerance of Error."""
        return max(self.tolerance_dollars, self.tolerance_share * baseline_error)

    @property
    def tail(self) -> TailRule:
        return TailRule(factor=self.tail_factor, budget=self.tail_budget, repertoire=self.tail_repertoire)

    def across_classes(self) -> GateConfig:
        """The cross-class rule: this config with its trimming and tolerances raised to at least CROSS_CLASS's."""
        floor = CROSS_CLASS
        return dataclasses.replace(
            self, error_trim=max(self.error_trim, floor.error_trim),
            tolerance_share=max(self.tolerance_share, floor.tolerance_share),
            log_tolerance=max(self.log_tolerance, floor.log_tolerance),
            hits_tolerance=max(self.hits_tolerance, floor.hits_tolerance),
            unparsed_tolerance=max(self.unparsed_tolerance, floor.unparsed_tolerance),
            tail_budget=None if self.tail_budget is None else max(self.tail_budget, floor.tail_budget or 0),
            tail_repertoire=True,
        )


# Gating on purpose against a baseline of another hardware class (another device or compute dtype). Measured on
# the 8 real H100 reruns against the CPU (AVX512-BF16) baselines, 0-104 of 250 guesses differing:
# - base 8bit: Error $429.97 -> $1,335.68 from a handful of new absurd completions, yet its 5%-trimmed per-item
#   change is +$1.47 (+0.3%), p=0.11: the trimmed mean tests the typical item, not the few absurd ones;
# - base 8bit: log error +6.2% (p=0.008, Holm 0.03), the largest log change of the 8; fine-tuned at most +2.3%;
# - Hits moved at most 1.2 points; unparsed stayed 0 everywhere (a lost price is no hardware's noise).
# The same-class tolerances already pass all 8, and the cpu-float32 base 4bit baseline (fp32 compute on an AVX2
# CPU; Error $1,098.70 -> $264.48) moved trimmed Error -1.6%, log error -0.1%, Hits +0.4 pts. One rerun per
# width and class is all we have, so the cross-class rule keeps a margin:
# Error 10%, log error 15% (2.4x the largest seen), Hits 5 points. It still catches the large planted kinds
# (completions without a price, guesses misaligned with their items, prices cut short): see the table in docs/gate.md.
# Its tail rule counts only answers above the baseline's largest: the base model's 4-bit fp32 baseline against the
# bf16 classes got 11 answers of $12,000-$12,500 for $150-$540 items where it answered $12 (its Error x4.2), all
# within the model's own repertoire; no real or simulated cross-class run put more than one above it.
CROSS_CLASS = GateConfig(error_trim=0.05, tolerance_share=0.10, log_tolerance=0.15, hits_tolerance=0.05,
                         unparsed_tolerance=0.01, tail_budget=CROSS_CLASS_BUDGET)


@dataclass(frozen=True, slots=True, kw_only=True)
class PairedDelta:
    """Mean per-item change in absolute error (now - before) with its bootstrap CI and one-sided p."""

    mean: float
    ci: tuple[float, float]
    p_worse: float  # H0: no worse on average; H1: worse
    confidence: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WorseItem:
    index: int
    title: str
    truth: float
    before: float  # guess
    now: float  # guess
    change: float  # in the measure's unit, positive = worse
    measure: str = "Error"
    amount: str = ""  # the change as the measure prints it


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    passed: bool
    name: str
    reasons: tuple[str, ...]
    not_comparable: tuple[FieldChange, ...] = ()
    changes: tuple[FieldChange, ...] = ()  # what changed since the baseline: what the verdict judges
    unrecorded: tuple[str, ...] = ()  # fields this run records that the baseline predates (files hashed since)
    baseline_error: float = math.nan
    now_error: float = math.nan
    delta: PairedDelta | None = None  # Error's test, as the summary line prints it
    tolerance: float = math.nan  # Error's, in dollars
    mde: float = math.nan  # Error's detectable worsening, in dollars
    rows: tuple[tuple[str, ...], ...] = ()
    worst: tuple[WorseItem, ...] = field(default_factory=tuple)
    judgements: tuple[Judgement, ...] = ()
    tail: TailCheck | None = None
    large: LargeMoves | None = None  # the large-moves rule, on a baseline without absurd answers of its own
    cross_class: str | None = None  # "baseline cpu-bfloat16, now cuda-bfloat16" when gated across classes
    better: tuple[str, ...] = ()  # the measures significantly better than the baseline's (Holm), on a passing run
    why_passed: str = ""  # why a passing run's plain Error change beyond its tolerance does not count
    # The same run judged against other references: the target branch's baseline, the anchor drift is measured from.
    references: tuple[tuple[str, Verdict], ...] = ()

    def summary_line(self, width: str) -> str:
        """One line for the end-of-run summary: status, Error tested and plain, the other measures, the tail."""
        d = self.delta
        if d is None:
            return f"{width}: {self.reasons[0]} ({', '.join(c.field for c in self.not_comparable)})"
        status = self.status()
        others = "; ".join(f"{j.measure.name} {j.measure.amount(j.worsening)} (p={j.p_holm:.3f})"
                           for j in self.judgements[1:])
        mean = round(self.judgements[0].mean_change, 2) + 0.0 if self.judgements else math.nan  # never "-0.00"
        tail = f"; absurd answers {len(self.tail.items)}" if self.tail else ""
        return (f"{width}: {status} Error ${self.baseline_error:,.2f} -> ${self.now_error:,.2f} "
                f"(tested {d.mean:+,.2f}, CI [{d.ci[0]:+,.2f}, {d.ci[1]:+,.2f}], p={d.p_worse:.3f}; mean {mean:+,.2f}); "
                f"{others}{tail}; detectable ${self.mde:,.2f}, tolerance ${self.tolerance:,.2f}"
                + "".join(f"; against {label}: {v.status()}" for label, v in self.references))

    @property
    def worse(self) -> bool:
        """Judged and failed: not comparable is another matter."""
        return not self.passed and not self.not_comparable

    def status(self) -> str:
        """A word or so: ok, BETTER (the measures), WORSE (the failing rules) or not comparable (the fields)."""
        if self.not_comparable:
            return f"not comparable ({', '.join(c.field for c in self.not_comparable)})"
        failed = ([j.measure.name for j in self.judgements if j.failed] + (["tail"] if self.tail and self.tail.failed else [])
                  + (["large moves"] if self.large and self.large.failed else [])
                  + [f"against {label}" for label, v in self.references if v.worse])
        return (f"WORSE ({', '.join(failed) or 'a plain limit'})" if not self.passed
                else f"BETTER ({', '.join(self.better)})" if self.better else "ok")

    def _pass_text(self) -> str:
        """A passing run's first words: which measures are significantly better, and why a plain change counts not."""
        better = [j for j in self.judgements if j.measure.name in self.better]
        text = ("better: " + ", ".join(f"{j.measure.name} {j.measure.amount(j.worsening)} ("
                                      f"{j.relative.strip(' ()') + ', ' if j.relative else ''}"
                                      f"Holm p={p_text(j.p_holm_better)})" for j in better)
                if better else "not measurably worse")
        text = "; ".join([text, *filter(None, (j.not_better_text() for j in self.judgements))])
        return f"{text}; {self.why_passed}" if self.why_passed else text

    def message(self, *, accept: str = "") -> str:
        """The failure text: what, how much, how sure, which items, and how to accept it."""
        from pricer.report.tester import format_table

        lines = [f"{self.name}: {'passed' if self.passed else 'FAILED'}: {'; '.join(self.reasons) or self._pass_text()}"]
        if self.cross_class:
            lines.append(f"across hardware classes ({self.cross_class}): the cross-class rule applies (wider "
                         "tolerances, as greedy decodes differ between devices and compute dtypes)")
        if self.not_comparable:
            lines.append("not comparable: the baseline prices other items, or at another width:")
            lines += [f"  {c.field}: baseline {c.baseline!r}, now {c.now!r}" for c in self.not_comparable]
        if self.changes:
            judged = "" if self.not_comparable else " (judged by the verdict)"
            lines.append(f"what changed since the baseline{judged}:")
            lines += [f"  {c.field}: baseline {c.baseline!r}, now {c.now!r}" for c in self.changes]
        lines += [unrecorded_text(self.unrecorded)] if self.unrecorded else []
        if self.rows:
            rows = [*self.rows, self.tail.row()] if self.tail else self.rows  # rows end with the large moves' own
            lines.append(format_table(ROW_HEADERS, rows))
        if self.judgements:
            lines.append(f"each measure fails when Holm p < {self.judgements[0].alpha} (corrected for "
                         f"{len(self.judgements)} measures) and its change is beyond its tolerance; "
                         + "; ".join(f"{j.measure.name}: {j.measure.test.label}" for j in self.judgements)
                         + "; change (mean) is the plain mean per-item change, shown whatever the test")
        if self.tail and self.tail.items:
            budget = "off" if self.tail.rule.budget is None else self.tail.rule.budget
            lines.append(f"absurd answers (tail budget {budget}):")
            lines += self.tail.lines()
        if self.worst:
            lines.append(f"items whose {self.worst[0].measure} got worse most:")
            lines += [
                f"  #{w.index} {w.title}: truth ${w.truth:,.2f}, baseline guess ${w.before:,.2f}, "
                f"now ${w.now:,.2f} ({w.measure} {w.amount})"
                for w in self.worst
            ]
        for label, reference in self.references:
            lines.append(f"against {label}:")
            lines += [f"  {line}" for line in reference.message().splitlines()]
        if not self.passed and accept:
            lines.append(f"if this change is intended, accept it with: {accept}")
        return "\n".join(lines)


def paired_delta(before: Sequence[float], now: Sequence[float], *, confidence: float = CONFIDENCE) -> PairedDelta:
    """The mean per-item change (now - before) with its one-sided p and CI, as the ladder and the history print it:
    the same sign-flip permutation test and BCa bootstrap as the gate's measures (measures.PairedMean)."""
    test = PairedMean()
    worse = [n - b for b, n in zip(before, now)]
    tested = test.run(worse)
    return PairedDelta(mean=tested.worsening, ci=test.interval(worse, confidence=confidence), p_worse=tested.p_worse,
                       confidence=confidence)


def course_measures(before: Sequence[BaselineItem], now: Sequence[BaselineItem], config: GateConfig) -> list[Measure]:
    """The course's four measures on the same items, each with its test and its tolerance from `config`."""
    b_scores = [score_item(b.guess, b.truth) for b in before]
    n_scores = [score_item(x.guess, x.truth) for x in now]
    errors = tuple(s.error for s in b_scores)
    logs = tuple(abs(math.log1p(b.guess) - math.log1p(b.truth)) for b in before)
    base_error, base_log = math.fsum(errors) / len(errors), math.fsum(logs) / len(logs)
    trim = config.error_trim if trimmed(before, config) else 0.0
    return [
        Measure(name="Error", before=errors, now=tuple(s.error for s in n_scores),
                test=PairedMean(trim=trim), tolerance=config.tolerance(base_error), unit="$"),
        Measure(name="log error", before=logs, now=tuple(abs(math.log1p(x.guess) - math.log1p(x.truth)) for x in now),
                test=PairedMean(), tolerance=config.log_tolerance * base_log),
        Measure(name="Hits", before=tuple(float(s.color == "green") for s in b_scores),
                now=tuple(float(s.color == "green") for s in n_scores), test=McNemar(),
                tolerance=config.hits_tolerance, higher_is_worse=False, unit="%"),
        Measure(name="unparsed", before=tuple(float(not b.parsed) for b in before),
                now=tuple(float(not x.parsed) for x in now), test=McNemar(), tolerance=config.unparsed_tolerance,
                unit="%"),
    ]


def trimmed(before: Sequence[BaselineItem], config: GateConfig) -> bool:
    """Whether Error is judged on its trimmed mean against this baseline: where it answers absurdly itself."""
    return answers_absurdly([b.guess for b in before], [b.truth for b in before], factor=config.tail_factor)


@dataclass(frozen=True, slots=True, kw_only=True)
class Detectable:
    """The smallest worsening of one measure the gate sees at 80% power (Holm's strictest threshold)."""

    measure: str
    amount: float  # in the measure's unit
    text: str  # "$47.38 (4% of Error)", "2.8 pts"
    share: float | None  # of the baseline's level; None for measures that are shares of items


def detectable(baseline: Baseline, config: GateConfig) -> tuple[Detectable, ...]:
    """Per course measure, before gating: the worsening detectable with this baseline's n and spread."""
    measures = course_measures(baseline.items, baseline.items, config)
    strictest = config.alpha / len(measures)
    found = []
    for m in measures:
        amount = m.test.detectable(m.before, alpha=strictest)
        level = math.fsum(m.before) / len(m.before)
        share = None if m.unit == "%" else (amount / level if level else math.inf)
        text = m.amount(amount if m.higher_is_worse else -amount, signed=False)
        found.append(Detectable(measure=m.name, amount=amount, share=share,
                                text=f"{text} ({share:.0%} of {m.name})" if share is not None else text))
    return tuple(found)


def compare(baseline: Baseline, run: RunResult, fingerprint: Fingerprint, config: GateConfig, *,
            cross_class: bool = False, classes: tuple[str, str] | None = None, intervals: bool = True) -> Verdict:
    """Fail when the run is not comparable, breaks a plain limit, or is measurably worse than its baseline on
    any course measure. `cross_class`: the baseline was made on purpose on another hardware class. `intervals`:
    False skips the bootstrap CIs, which never change a verdict."""
    refused, changes, lacking = differences(baseline.fingerprint, fingerprint)
    mismatched = [
        i for i, (b, item) in enumerate(zip(baseline.items, run.items)) if b.index != item.index or b.truth != item.price
    ]
    if len(baseline.items) != len(run.items) or mismatched:
        refused.append(FieldChange(field="items", baseline=f"{len(baseline.items)} items",
                                   now=f"{len(run.items)} items, {len(mismatched)} with another index or price"))
    if refused:
        return Verdict(passed=False, name=run.name, reasons=("not comparable with the baseline",),
                       not_comparable=tuple(refused), changes=tuple(changes), unrecorded=lacking)

    if cross_class:
        config = config.across_classes()
    now_items = [BaselineItem(index=item.index, title=item.title, truth=item.price, guess=p.guess,
                              completion=p.completion, parsed=p.parsed) for item, p in zip(run.items, run.predictions)]
    judgements = judge(course_measures(baseline.items, now_items, config), alpha=config.alpha,
                       confidence=CONFIDENCE if intervals else None)
    failed = sorted((j for j in judgements if j.failed), key=lambda j: j.p_holm)
    reasons = [j.reason() for j in failed]
    error = judgements[0]
    large = None if trimmed(baseline.items, config) else large_moves(
        before=error.measure.before, now=error.measure.now, tolerance=error.measure.tolerance, alpha=config.alpha)
    if large and large.failed and not error.failed:
        reasons.append(large.reason())
    tail = check_tail(config.tail, indices=[b.index for b in baseline.items], titles=[b.title for b in baseline.items],
                      truths=[b.truth for b in baseline.items], before=[b.guess for b in baseline.items],
                      now=[x.guess for x in now_items])
    if tail.failed:
        reasons.insert(0, tail.reason())

    broken, limits = plain_limits(run.metrics, config)
    reasons += broken
    rows = [j.row(limit) for j, limit in zip(judgements, limits)] + ([large.row()] if large else [])
    rows[0] = (*rows[0][:-1], error_word(error, tail, large))

    worst = worst_items((failed or [error])[0].measure, baseline.items, now_items)
    # The callers know the classes (a folder's name); a fingerprint's device and dtype are the width's, which
    # at 8 and 32 bits are not the class's.
    classes = classes or (class_of_fingerprint(baseline.fingerprint), class_of_fingerprint(fingerprint))
    return Verdict(
        passed=not reasons, name=run.name, reasons=tuple(reasons), changes=tuple(changes), unrecorded=lacking,
        baseline_error=math.fsum(error.measure.before) / len(error.measure.before), now_error=run.metrics.error,
        delta=PairedDelta(mean=error.worsening, ci=error.ci, p_worse=error.p_worse, confidence=CONFIDENCE),
        tolerance=error.measure.tolerance, mde=error.detectable, rows=tuple(rows), worst=tuple(worst),
        judgements=judgements, tail=tail, large=large,
        cross_class=f"baseline {classes[0]}, now {classes[1]}" if cross_class else None,
        better=tuple(j.measure.name for j in judgements if j.better) if not reasons else (),
        why_passed="" if reasons else why_passed(error, large, baseline.items),
    )


def plain_limits(m: Metrics, config: GateConfig) -> tuple[list[str], tuple[str, ...]]:
    """The plain limits a run breaks (reasons), and each measure's limit as the table shows it."""
    reasons = []
    unparsed_share = m.unparsed / m.n
    if config.max_error is not None and m.error > config.max_error:
        reasons.append(f"Error ${m.error:,.2f} is above the limit ${config.max_error:,.2f}")
    if config.min_hits is not None and m.hits < config.min_hits:
        reasons.append(f"Hits {m.hits:.1%} is below the limit {config.min_hits:.1%}")
    if config.max_unparsed is not None and unparsed_share > config.max_unparsed:
        reasons.append(f"{unparsed_share:.1%} of completions had no price, above the limit {config.max_unparsed:.1%}")
    limits = (
        f"<= ${config.max_error:,.2f}" if config.max_error is not None else "-",
        "-",
        f">= {config.min_hits:.1%}" if config.min_hits is not None else "-",
        f"<= {config.max_unparsed:.1%}" if config.max_unparsed is not None else "-",
    )
    return reasons, limits


def worst_items(measure: Measure, before: Sequence[BaselineItem], now: Sequence[BaselineItem]) -> list[WorseItem]:
    """The items whose measure got worse most, worst first, as the failure message lists them."""
    return [
        WorseItem(index=b.index, title=b.title, truth=b.truth, before=b.guess, now=x.guess, change=measure.worse[i],
                  measure=measure.name, amount=measure.item_change(measure.worse[i]))
        for i in moved_most(measure, count=WORST_SHOWN)
        for b, x in [(before[i], now[i])]
    ]
