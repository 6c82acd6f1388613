"""The tail rule: a few absurd answers are no hardware's noise, however few. The paired tests cannot see fewer than
about 7 changed items (and Error's trimmed mean cuts them away), so absurd answers are counted against a budget."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


def visibility(rule: TailRule, *, guesses: Sequence[float], truths: Sequence[float]) -> str:
    """Before gating: what the tail rule sees with this baseline, and what it cannot (a baseline that already
    answers absurdly, like a base model's $100,000, lifts the threshold out of reach of most catastrophes)."""
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
