"""Rules for the few items the paired tests cannot see (a test of k changed items reaches p = 1/2**k at best): the tail
rule counts absurd answers against a budget, and the large-moves rule fails a plain Error change past twice its
tolerance whose large moves all went one way."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pricer.gate.measures import ERROR_TRIM, p_text

# Measured on the committed baselines of both models, every width and class (benchmarks/planted_regressions.py):
# no real rerun on another class, both ways round, gave an answer above 10x the baseline's largest; 55 of 2,400
# simulated hardware-flip reruns gave one, none two. A factor of 5 would have given up to 4 in those reruns.
FACTOR = 10.0
BUDGET = 1  # absurd answers a same-class rerun may add and still pass
CROSS_CLASS_BUDGET = 2  # across classes greedy decodes flip more; the largest seen added none, the sims one


@dataclass(frozen=True, slots=True, kw_only=True)
class TailRule:
    """An answer is absurd when it is more than `factor` times both its item's truth and the largest answer in the
    baseline; more than `budget` of them fails the gate (`budget=None`: the rule is off)."""

    factor: float = FACTOR
    budget: int | None = BUDGET

    def threshold(self, baseline_guesses: Sequence[float]) -> float:
        return self.factor * max(baseline_guesses, default=0.0)

    def is_absurd(self, guess: float, truth: float, *, threshold: float) -> bool:
        return guess > threshold and guess > self.factor * truth


@dataclass(frozen=True, slots=True, kw_only=True)
class AbsurdItem:
    index: int
    title: str
    truth: float
    before: float  # the baseline's guess
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TailCheck:
    """The tail rule applied to one run: which answers are new and absurd, against which threshold and budget."""

    rule: TailRule
    threshold: float  # dollars: an answer above it (and above factor x its truth) is absurd
    baseline_largest: float
    items: tuple[AbsurdItem, ...]

    @property
    def failed(self) -> bool:
        return self.rule.budget is not None and len(self.items) > self.rule.budget

    def reason(self) -> str:
        return (f"{len(self.items)} absurd answers (above ${self.threshold:,.2f}, {self.rule.factor:g}x the "
                f"baseline's largest answer ${self.baseline_largest:,.2f}, and {self.rule.factor:g}x their truth), "
                f"more than the tail budget of {self.rule.budget}")

    def row(self) -> tuple[str, ...]:
        """The tail's line under the measures table: threshold, count, budget, verdict."""
        budget = "off" if self.rule.budget is None else str(self.rule.budget)
        count = f"+{len(self.items)}"
        return (f"absurd answers (> ${self.threshold:,.0f})", "0", str(len(self.items)), count, count, "-", "-", "-",
                budget, "1 item", "-", "WORSE" if self.failed else "ok")

    def lines(self) -> list[str]:
        """The absurd items, for the failure message: truth, baseline guess, now."""
        return [f"  #{a.index} {a.title}: truth ${a.truth:,.2f}, baseline guess ${a.before:,.2f}, now ${a.now:,.2f}"
                for a in self.items]


def check_tail(rule: TailRule, *, indices: Sequence[int], titles: Sequence[str], truths: Sequence[float],
               before: Sequence[float], now: Sequence[float]) -> TailCheck:
    """New absurd answers of a run against its baseline, item by item (the same items, in the same order)."""
    threshold = rule.threshold(before)
    items = tuple(
        AbsurdItem(index=i, title=title, truth=t, before=b, now=n)
        for i, title, t, b, n in zip(indices, titles, truths, before, now)
        if rule.is_absurd(n, t, threshold=threshold) and not rule.is_absurd(b, t, threshold=threshold)
    )
    return TailCheck(rule=rule, threshold=threshold, baseline_largest=max(before, default=0.0), items=items)


def answers_absurdly(guesses: Sequence[float], truths: Sequence[float], *, factor: float = FACTOR) -> bool:
    """Whether a baseline already gives absurd answers of its own: one above `factor` x the largest truth. Such a
    baseline (the base model's $100,000) flips absurd answers in and out between reruns, so its Error is judged
    on a trimmed mean; one without (the fine-tuned model, up to $1,200 for truths up to $998) on the plain mean."""
    return bool(guesses) and max(guesses) > factor * max(truths, default=0.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class LargeMoves:
    """The large-moves rule, on a baseline without absurd answers of its own: an item's Error moved "large" when by
    more than the baseline's whole Error; the run fails when its plain mean Error is worse by more than twice the
    tolerance AND its large moves went worse more often than a fair coin allows (one-sided sign test p < alpha).
    Five large moves, all worse, are enough (1/2**5 < 0.05), where Holm over four measures needs seven."""

    threshold: float  # dollars of per-item Error change: the baseline's Error
    limit: float  # dollars of plain mean Error change: twice Error's tolerance
    mean_change: float  # the run's plain mean Error change, dollars, positive = worse
    worse: tuple[int, ...]  # positions of the items whose Error grew by more than the threshold
    better: tuple[int, ...]  # ... and of those whose Error fell by more than it
    p_worse: float
    alpha: float

    @property
    def failed(self) -> bool:
        return self.mean_change > self.limit and self.p_worse < self.alpha

    def reason(self) -> str:
        return (f"Error's plain mean is worse by ${self.mean_change:,.2f}, beyond twice its tolerance "
                f"(${self.limit:,.2f}), and its large moves (Error changed by more than ${self.threshold:,.2f}) "
                f"went one way: {len(self.worse)} worse, {len(self.better)} better, sign test p={p_text(self.p_worse)} "
                f"< {self.alpha}")

    def row(self) -> tuple[str, ...]:
        """The rule's line under the measures table."""
        net = len(self.worse) - len(self.better)
        return (f"large moves (> ${self.threshold:,.0f})", "-", f"{len(self.worse)} worse, {len(self.better)} better",
                f"{net:+d}", f"+${self.mean_change:,.2f}" if self.mean_change >= 0 else f"-${-self.mean_change:,.2f}",
                "-", p_text(self.p_worse), "-", f"+${self.limit:,.2f}", "5 items", "-", "WORSE" if self.failed else "ok")


def large_moves(*, before: Sequence[float], now: Sequence[float], tolerance: float, alpha: float) -> LargeMoves:
    """The large-moves rule on per-item absolute errors before and now (the same items, in the same order)."""
    from scipy import stats

    threshold = math.fsum(before) / len(before) if before else 0.0
    changes = [n - b for b, n in zip(before, now)]
    worse = tuple(i for i, c in enumerate(changes) if c > threshold)
    better = tuple(i for i, c in enumerate(changes) if c < -threshold)
    moved = len(worse) + len(better)
    p = float(stats.binomtest(len(worse), moved, 0.5, alternative="greater").pvalue) if moved else 1.0
    return LargeMoves(threshold=threshold, limit=2 * tolerance, mean_change=math.fsum(changes) / max(len(changes), 1),
                      worse=worse, better=better, p_worse=p, alpha=alpha)


def visibility(rule: TailRule, *, guesses: Sequence[float], truths: Sequence[float], trim: float = ERROR_TRIM) -> str:
    """Before gating: what the tail rule sees with this baseline, and what it cannot (a baseline that already
    answers absurdly, like a base model's $100,000, lifts the threshold out of reach of most catastrophes); then
    which Error rule applies to this baseline."""
    return f"{_tail_text(rule, guesses=guesses, truths=truths)}; {error_rule(guesses, truths, factor=rule.factor, trim=trim)}"


def error_rule(guesses: Sequence[float], truths: Sequence[float], *, factor: float = FACTOR, trim: float = ERROR_TRIM) -> str:
    """Which Error rule applies to a baseline, as the line before gating says it."""
    if answers_absurdly(guesses, truths, factor=factor):
        return (f"Error is judged on its {trim:.0%}-trimmed mean, as this baseline answers absurdly itself "
                f"(up to ${max(guesses):,.0f}, above {factor:g}x the largest truth)")
    return (f"Error is judged on its plain mean, and a plain change past twice its tolerance whose large moves went "
            f"one way fails, as this baseline answers at most ${max(guesses, default=0.0):,.0f} "
            f"(under {factor:g}x the largest truth)")


def _tail_text(rule: TailRule, *, guesses: Sequence[float], truths: Sequence[float]) -> str:
    if rule.budget is None or not guesses:
        return "tail rule off"
    threshold = rule.threshold(guesses)
    text = (f"tail rule: answers above ${threshold:,.0f} ({rule.factor:g}x this baseline's largest, "
            f"${max(guesses):,.0f}) and {rule.factor:g}x their truth are absurd; more than {rule.budget} fail")
    largest_truth = max(truths, default=0.0)
    if max(guesses) > rule.factor * largest_truth:
        median = sorted(guesses)[len(guesses) // 2]
        text += (f"; this baseline already answers up to ${max(guesses):,.0f} ({max(guesses) / max(median, 1.0):,.0f}x "
                 f"its median answer, {max(guesses) / largest_truth:,.0f}x the largest truth), so new answers below "
                 f"${threshold:,.0f} are left to the log error")
    return text if math.isfinite(threshold) else "tail rule: no finite threshold"
