"""A width's verdicts as the HTML report shows them (pricer.report.html_view): the run's items, and per reference
compared (baseline, target branch, anchor) the verdict's text and each item's answer and change per measure."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pricer.engines.evaluate import RunResult
from pricer.gate.verdict import Verdict
from pricer.report.html_view import Answer, ComparisonView, ItemView, Mark, MeasureChanges, WidthView
from pricer.store.baselines import Baseline, BaselineItem

BASELINE = "baseline"  # the label of the comparison with the width's own stored baseline


def items_of(run: RunResult | None, *, items: Sequence[BaselineItem] = ()) -> tuple[ItemView, ...]:
    """The run's items with their prompts; a saved run (baseline format) keeps no prompt."""
    if run is not None:
        return tuple(ItemView(index=item.index, title=item.title, truth=item.price, prompt=item.prompt or None,
                              now=Answer(guess=p.guess, completion=p.completion, parsed=p.parsed))
                     for item, p in zip(run.items, run.predictions))
    return tuple(ItemView(index=b.index, title=b.title, truth=b.truth, prompt=None,
                          now=Answer(guess=b.guess, completion=b.completion, parsed=b.parsed)) for b in items)


def own_verdict(verdict: Verdict) -> Verdict:
    """The verdict against the baseline alone: without the references that with_references folded into it."""
    if not verdict.references:
        return verdict
    added = tuple(f"against {label}:" for label, _ in verdict.references)
    reasons = tuple(r for r in verdict.reasons if not r.startswith(added))
    passed = not verdict.not_comparable and (verdict.passed or not reasons)
    return dataclasses.replace(verdict, passed=passed, reasons=reasons, references=())


def comparison_view(label: str, verdict: Verdict, *, reference: str, before: Sequence[BaselineItem],
                    order: Sequence[int], accept: str = "") -> ComparisonView:
    """The run against one reference; `order`: the width's item indices, which the per-item values follow."""
    verdict = own_verdict(verdict)
    changes = tuple((c.field, repr(c.baseline), repr(c.now)) for c in verdict.changes)
    refused = tuple((c.field, repr(c.baseline), repr(c.now)) for c in verdict.not_comparable)
    shared = dict(label=label, reference=reference, status=verdict.status(), passed=verdict.passed,
                  text=verdict.message(accept=accept), changes=changes, not_comparable=refused,
                  cross_class=verdict.cross_class)
    position = {b.index: i for i, b in enumerate(before)}
    if verdict.not_comparable or any(index not in position for index in order):
        return ComparisonView(**shared)
    ranks = [position[index] for index in order]
    measures = tuple(MeasureChanges(name=j.measure.name, unit=j.measure.unit, higher_is_worse=j.measure.higher_is_worse,
                                    worse=tuple(j.measure.worse[r] for r in ranks)) for j in verdict.judgements)
    return ComparisonView(**shared, before=tuple(Answer(guess=before[r].guess, completion=before[r].completion,
                                                        parsed=before[r].parsed) for r in ranks),
                          measures=measures, absurd=tuple(a.index for a in verdict.tail.items) if verdict.tail else (),
                          worst=tuple(w.index for w in verdict.worst))


def width_view(width: str, verdict: Verdict, *, items: Sequence[ItemView], baseline: Baseline,
               references: Sequence[tuple[str, str, Sequence[BaselineItem]]] = (), accept: str = "") -> WidthView:
    """A judged width: its own baseline's comparison first, then each reference's that the verdict holds
    (`references`: label, what it is, its items)."""
    order = [item.index for item in items]
    comparisons = [comparison_view(BASELINE, verdict, reference=str(baseline.path), before=baseline.items,
                                   order=order, accept=accept)]
    known = {label: (what, before) for label, what, before in references}
    for label, judged in verdict.references:
        what, before = known.get(label, (label, ()))
        comparisons.append(comparison_view(label, judged, reference=what, before=before, order=order))
    return WidthView(width=width, name=verdict.name, passed=verdict.passed, items=tuple(items),
                     comparisons=tuple(comparisons))


def problem_view(width: str, problem: str, *, run: RunResult | None = None,
                 items: Sequence[BaselineItem] = ()) -> WidthView:
    """A width that ended without a verdict (no baseline, a damaged one, a rewrite): its message, and its run's
    items where it was made."""
    name = run.name if run is not None else width
    return WidthView(width=width, name=name, passed=False, items=items_of(run, items=items), problem=problem)


def baseline_marks(width: str, baseline: Baseline | None) -> tuple[Mark, ...]:
    """When the width's baseline moved: each version stored (with its reason), the trade-offs accepted, the anchor."""
    if baseline is None:
        return ()
    marks = []
    for version in (*baseline.history, baseline):
        if version.trade_off:
            marks.append(Mark(width=width, date=version.date, kind="trade-off",
                              text=f"accepted as a trade-off: {version.trade_off} ({version.reason})"))
        else:
            marks.append(Mark(width=width, date=version.date, kind="rewrite",
                              text=f"baseline stored: {version.reason}"))
    if baseline.anchor is not None:
        marks.append(Mark(width=width, date=baseline.anchor.date, kind="anchor",
                          text=f"anchor, drift measured from here: {baseline.anchor.reason}"))
    return tuple(marks)
