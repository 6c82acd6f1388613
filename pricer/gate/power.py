"""`pricer power`: how many items a gate needs. What each measure can detect with a baseline's items, and the n that
would detect a chosen worsening, scaled from the gate's own `detectable` (no statistics of its own)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pricer.gate.verdict import SMALL_N, GateConfig, course_measures, detectable
from pricer.report.tester import format_table
from pricer.store.baselines import Baseline


@dataclass(frozen=True, slots=True, kw_only=True)
class Need:
    """One measure: what it detects now, the worsening asked about, and the items that would detect it."""

    measure: str
    detectable: str  # at the baseline's n, as the gate prints it
    target: str  # the worsening asked about, in the measure's unit
    items: int | None  # None: below the measure's tolerance, which no n makes fail
    note: str = ""
    asked: bool = True  # about the worsening asked (Error, log error), not a share's tolerance


def needs(baseline: Baseline, config: GateConfig, *, worse: float) -> list[Need]:
    """Per measure: a continuous one (Error, log error) asked about `worse` of its level, whose detectable change
    shrinks as 1/sqrt(n); a share of items (Hits, unparsed) asked about its tolerance, detectable as k/n."""
    n = len(baseline.items)
    found = []
    for measure, seen in zip(course_measures(baseline.items, baseline.items, config), detectable(baseline, config)):
        seen_text = seen.text if math.isfinite(seen.amount) else "unknown"
        level = math.fsum(measure.before) / n
        if seen.share is not None:  # a continuous measure
            target = worse * level
            tolerance = measure.tolerance / level if level else math.inf
            if worse <= tolerance:
                found.append(Need(measure=measure.name, detectable=seen_text, target=f"{worse:.0%}", items=None,
                                  note=f"within its tolerance ({tolerance:.0%}): passes at any n"))
                continue
            # The normal rule of thumb flatters tiny samples; below SMALL_N the gate itself warns it is too coarse.
            items = _scaled(n, seen.amount, target, power=2)
            found.append(Need(measure=measure.name, detectable=seen_text,
                              target=f"{worse:.0%} ({measure.amount(target)})",
                              items=None if items is None else max(SMALL_N, items), note=_unknown(items, n)))
        else:  # k items all moving one way: amount = k / n
            target = measure.tolerance
            items = _scaled(n, seen.amount, target, power=1) if target else None
            found.append(Need(measure=measure.name, detectable=seen_text,
                              target=f"{measure.amount(target, signed=False)} (its tolerance)", items=items,
                              note=_unknown(items, n) if target else "", asked=False))
    return found


def _scaled(n: int, amount: float, target: float, *, power: int) -> int | None:
    """n * (amount / target) ** power items, or None where that is no number (a single item's spread is unknown, so
    what it detects is infinite; a target so small the count overflows)."""
    try:
        items = n * (amount / target) ** power
    except (OverflowError, ZeroDivisionError):
        return None
    return math.ceil(items) if math.isfinite(items) else None


def _unknown(items: int | None, n: int) -> str:
    """Why no count of items is given, when none is."""
    if items is not None:
        return ""
    if n < 2:
        return f"unknown: {n} item has no spread to scale from; store a baseline of at least {SMALL_N} items"
    return "more than any data set holds: the worsening asked about is too small to detect"


def within(baseline: Baseline, config: GateConfig, *, items: int) -> str:
    """What `items` items (all a test split holds) detect, scaled from the baseline's as the needs are."""
    n = len(baseline.items)
    found = []
    for seen in detectable(baseline, config):
        scale = math.sqrt(n / items) if seen.share is not None else n / items
        found.append(f"{seen.measure} {seen.share * scale:.0%}" if seen.share is not None
                     else f"{seen.measure} {100 * seen.amount * scale:.1f} pts")
    return ", ".join(found)


def split_line(baseline: Baseline, config: GateConfig, *, worse: float, split: tuple[str, int] | str) -> str:
    """How many items the test split holds, what all of them detect, and whether the items needed fit in it."""
    if isinstance(split, str):
        return f"the items needed count against the split the gate reads: {split}"
    where, held = split
    asked = [need for need in needs(baseline, config, worse=worse) if need.asked and need.items]
    short = [need for need in asked if need.items > held]
    fits = ("" if not asked else f"; it holds the {max(n.items for n in asked):,} items needed" if not short else
            "; " + ", ".join(f"{need.measure} needs {need.items:,}" for need in short) + f" to see {worse:.0%}, more "
            f"than it holds: no gate of this split sees that; gate all {held:,} (--pricer-n {held}) for what they "
            "detect, or add items to it")
    return (f"{where} holds {held:,} items (this baseline prices {len(baseline.items):,}); all {held:,} detect at 80% "
            f"power a worsening of {within(baseline, config, items=held)}{fits}")


def power_lines(baseline: Baseline, config: GateConfig, *, worse: float,
                split: tuple[str, int] | str | None = None) -> list[str]:
    """The report of `pricer power`: a heading, one row per measure, how to read it, and the test split's size."""
    n = len(baseline.items)
    rows = [[need.measure, need.detectable, need.target,
             need.note or (f"{need.items:,}" + (" (have enough)" if need.items <= n else ""))]
            for need in needs(baseline, config, worse=worse)]
    tail = [] if split is None else [split_line(baseline, config, worse=worse, split=split)]
    return [f"{baseline.path}: {n} item{'' if n == 1 else 's'}, Error ${baseline.metrics['error']:,.2f}",
            format_table(["measure", f"detectable at n={n}", "to detect", "items needed"], rows),
            "detectable: the smallest worsening the gate finds 80% of the time (after Holm's correction); a change "
            "must also pass its tolerance to fail. Items needed scale from the same rule (Error and log error as "
            f"1/sqrt(n), Hits and unparsed as 1/n; never below {SMALL_N}, where the gate warns it is too coarse); gate "
            "that many with --pricer-n.", *tail]
