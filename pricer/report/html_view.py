"""What the HTML report of a gate shows, as plain records: each width's items and the comparisons made of its run
(baseline, target branch, anchor), the histories and the baselines' marks; their JSON for the page and the trip from
an xdist worker."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pricer.errors import PricerError

FORMAT = "pricer-html/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """One completion and the price read from it."""

    guess: float
    completion: str | None
    parsed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemView:
    """An item of the run: what it is, its prompt (None where the run did not keep it) and the run's answer."""

    index: int
    title: str
    truth: float
    prompt: str | None
    now: Answer


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasureChanges:
    """One measure's change per item, in the width's item order, oriented so that a worsening is positive."""

    name: str
    unit: str  # "$", "%" (a yes/no measure) or ""
    higher_is_worse: bool
    worse: tuple[float, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ComparisonView:
    """The run against one reference: its verdict as the terminal prints it, and per item the reference's answer."""

    label: str  # "baseline", "origin/main", "the anchor of 2026-01-31 (first baseline)"
    reference: str  # the file or ref compared against
    status: str  # as the summary line gives it: ok, BETTER (...), WORSE (...), not comparable (...)
    passed: bool
    text: str  # the verdict's message: reasons, the measures table, what changed, the worst items
    changes: tuple[tuple[str, str, str], ...] = ()  # fingerprint field, baseline, now
    not_comparable: tuple[tuple[str, str, str], ...] = ()
    cross_class: str | None = None
    before: tuple[Answer, ...] = ()  # per item; empty when not comparable
    measures: tuple[MeasureChanges, ...] = ()
    absurd: tuple[int, ...] = ()  # item indices the tail rule found absurd
    worst: tuple[int, ...] = ()  # item indices, worst first, as the message lists them


@dataclass(frozen=True, slots=True, kw_only=True)
class WidthView:
    """One width of a gate: its run's items and every comparison made; `problem`, where it ended without one."""

    width: str
    name: str
    passed: bool
    items: tuple[ItemView, ...] = ()
    comparisons: tuple[ComparisonView, ...] = ()
    problem: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain values: for the page, and for an xdist worker's trip to the controller."""
        return {"format": FORMAT, "width": self.width, "name": self.name, "passed": self.passed,
                "problem": self.problem, "items": [_item_dict(i) for i in self.items],
                "comparisons": [_comparison_dict(c) for c in self.comparisons]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> WidthView:
        """The inverse of to_dict; PricerError on anything else."""
        if not isinstance(raw, Mapping) or raw.get("format") != FORMAT:
            raise PricerError(f"not a pricer HTML report view (no format {FORMAT!r}): {str(raw)[:60]!r}")
        try:
            return cls(width=raw["width"], name=raw["name"], passed=raw["passed"], problem=raw["problem"],
                       items=tuple(ItemView(index=i["index"], title=i["title"], truth=i["truth"], prompt=i["prompt"],
                                            now=_answer(i["now"])) for i in raw["items"]),
                       comparisons=tuple(_comparison(c) for c in raw["comparisons"]))
        except (KeyError, TypeError) as exc:
            raise PricerError(f"a damaged pricer HTML report view of {raw.get('width')!r}: {exc!r}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    """A moment a width's baseline moved: rewritten, accepted as a trade-off, or the anchor drift is measured from."""

    width: str
    date: str  # as the baseline stores it (UTC, ISO 8601)
    kind: str  # "rewrite", "trade-off" or "anchor"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryPoint:
    """A run in a history: when, its value (Error in dollars, latency in seconds), its spread and commit."""

    when: str  # ISO 8601
    value: float
    low: float
    high: float
    commit: str
    significant: bool
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryLine:
    """One series of `pricer history` on one machine: Error or latency at a width."""

    kind: str  # "error" or "latency"
    width: str
    label: str
    machine: str
    points: tuple[HistoryPoint, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """Everything one report shows."""

    title: str
    passed: bool
    lines: tuple[str, ...] = ()  # where it came from: the command, the sources of the history
    widths: tuple[WidthView, ...] = ()
    history: tuple[HistoryLine, ...] = ()
    marks: tuple[Mark, ...] = ()
    history_note: str = ""  # why there is no history, where there is none


def _answer(raw: Sequence[Any]) -> Answer:
    guess, completion, parsed = raw
    return Answer(guess=float(guess), completion=completion, parsed=bool(parsed))


def _answer_list(answer: Answer) -> list[Any]:
    return [answer.guess, answer.completion, answer.parsed]


def _item_dict(item: ItemView) -> dict[str, Any]:
    return {"index": item.index, "title": item.title, "truth": item.truth, "prompt": item.prompt,
            "now": _answer_list(item.now)}


def _comparison_dict(c: ComparisonView) -> dict[str, Any]:
    return {"label": c.label, "reference": c.reference, "status": c.status, "passed": c.passed, "text": c.text,
            "changes": [list(x) for x in c.changes], "not_comparable": [list(x) for x in c.not_comparable],
            "cross_class": c.cross_class, "before": [_answer_list(a) for a in c.before],
            "measures": [{"name": m.name, "unit": m.unit, "higher_is_worse": m.higher_is_worse,
                          "worse": [_finite(w) for w in m.worse]} for m in c.measures],
            "absurd": list(c.absurd), "worst": list(c.worst)}


def _comparison(raw: Mapping[str, Any]) -> ComparisonView:
    return ComparisonView(
        label=raw["label"], reference=raw["reference"], status=raw["status"], passed=raw["passed"], text=raw["text"],
        changes=tuple(tuple(x) for x in raw["changes"]), not_comparable=tuple(tuple(x) for x in raw["not_comparable"]),
        cross_class=raw["cross_class"], before=tuple(_answer(a) for a in raw["before"]),
        measures=tuple(MeasureChanges(name=m["name"], unit=m["unit"], higher_is_worse=m["higher_is_worse"],
                                      worse=tuple(math.nan if w is None else float(w) for w in m["worse"]))
                       for m in raw["measures"]),
        absurd=tuple(raw["absurd"]), worst=tuple(raw["worst"]))


def _finite(value: float) -> float | None:
    """JSON has no NaN: a change that cannot be computed is null."""
    return value if math.isfinite(value) else None
