"""The HTML report's interactive charts as Plotly figures (plain dicts the page hands to plotly.js): truth against
guess, baseline guess against now, and each width's Error and latency over runs with its baseline's marks."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from pricer.report.html_view import ComparisonView, HistoryLine, ItemView, Mark
from pricer.task.metrics import score_item

COLORS = {"green": "#2ca02c", "orange": "#ff7f0e", "red": "#d62728"}  # the course's, as the PNG charts draw them
BASELINE_COLOR, LINE_COLOR, SAME_COLOR = "#9e9e9e", "deepskyblue", "#9e9e9e"
ERROR_COLOR, LATENCY_COLOR, MARK_COLORS = "#ff7f0e", "#1f77b4", {"trade-off": "#d62728", "anchor": "#9467bd",
                                                                   "rewrite": "#7f7f7f"}
MOVED_CENTS = 0.005  # dollars: an item's Error that moved less than a cent did not move (storage rounding)
TITLE_SHOWN = 80  # characters of an item's title in a hover label
FLOOR = 0.5  # dollars: where a guess of $0 (no price) is drawn on a logarithmic axis


def _name(item: ItemView) -> str:
    title = item.title if len(item.title) <= TITLE_SHOWN else item.title[: TITLE_SHOWN - 1] + "…"
    return f"#{item.index} {html.escape(title)}"


def _drawn(value: float) -> float:
    return value if value >= FLOOR else FLOOR


def _hover(item: ItemView, before: float | None) -> str:
    shown = [_name(item), f"truth ${item.truth:,.2f}"]
    if before is not None:
        shown.append(f"baseline ${before:,.2f}")
    shown.append(f"now ${item.now.guess:,.2f}" + ("" if item.now.parsed else " (no price)"))
    return "<br>".join(shown)


def _layout(title: str, x: str, y: str, *, log: bool = True) -> dict[str, Any]:
    kind = "log" if log else "linear"
    return {"title": {"text": html.escape(title)}, "height": 460, "margin": {"l": 70, "r": 20, "t": 50, "b": 60},
            "xaxis": {"title": {"text": x}, "type": kind}, "yaxis": {"title": {"text": y}, "type": kind},
            "hovermode": "closest", "legend": {"orientation": "h", "y": -0.18}}


def _diagonal(values: Sequence[float]) -> dict[str, Any]:
    top = max([FLOOR * 2, *values])
    return {"type": "scatter", "mode": "lines", "x": [FLOOR, top], "y": [FLOOR, top], "name": "y = x",
            "line": {"color": LINE_COLOR, "width": 1}, "hoverinfo": "skip"}


def truth_figure(items: Sequence[ItemView], comparison: ComparisonView | None, *, table: str) -> dict[str, Any]:
    """Each item's guess against its truth, now in the course's colours, the reference's in grey behind."""
    before = comparison.before if comparison is not None and comparison.before else None
    positions = list(range(len(items)))
    traces = []
    if before is not None:
        traces.append({"type": "scatter", "mode": "markers", "name": comparison.label,
                       "x": [i.truth for i in items], "y": [_drawn(b.guess) for b in before],
                       "text": [_hover(i, b.guess) for i, b in zip(items, before)], "customdata": positions,
                       "hoverinfo": "text", "marker": {"color": BASELINE_COLOR, "size": 5, "opacity": 0.5}})
    traces.append({"type": "scatter", "mode": "markers", "name": "now",
                   "x": [i.truth for i in items], "y": [_drawn(i.now.guess) for i in items],
                   "text": [_hover(i, before[n].guess if before else None) for n, i in enumerate(items)],
                   "customdata": positions, "hoverinfo": "text",
                   "marker": {"size": 6, "color": [COLORS[score_item(i.now.guess, i.truth).color] for i in items]}})
    values = [i.truth for i in items] + [i.now.guess for i in items]
    return {"data": [_diagonal(values), *traces], "table": table,
            "layout": _layout("Guess against truth (green: a hit; $0 drawn at $0.50)", "truth ($)", "guess ($)")}


def moved_figure(items: Sequence[ItemView], comparison: ComparisonView, *, table: str) -> dict[str, Any]:
    """Each item's guess now against the reference's: off the diagonal, it moved; red where its Error grew."""
    error = next((m for m in comparison.measures if m.unit == "$"), None)
    groups = {"Error grew": ([], "#d62728"), "Error fell": ([], "#2ca02c"), "unchanged": ([], SAME_COLOR)}
    for n, item in enumerate(items):
        worse = error.worse[n] if error is not None else 0.0
        key = "Error grew" if worse > MOVED_CENTS else "Error fell" if worse < -MOVED_CENTS else "unchanged"
        groups[key][0].append(n)
    before = comparison.before
    traces = [{"type": "scatter", "mode": "markers", "name": f"{name} ({len(chosen)})",
               "x": [_drawn(before[n].guess) for n in chosen], "y": [_drawn(items[n].now.guess) for n in chosen],
               "text": [_hover(items[n], before[n].guess) for n in chosen], "customdata": chosen,
               "hoverinfo": "text", "marker": {"color": color, "size": 6}}
              for name, (chosen, color) in groups.items() if chosen]
    values = [b.guess for b in before] + [i.now.guess for i in items]
    return {"data": [_diagonal(values), *traces], "table": table,
            "layout": _layout(f"Guess now against {comparison.label}'s", f"{comparison.label} guess ($)",
                              "guess now ($)")}


def history_figure(width: str, lines: Sequence[HistoryLine], marks: Sequence[Mark]) -> dict[str, Any]:
    """Error (left axis, 95% CI) and latency (right axis, fastest to slowest round) over runs at one width; the
    baseline's moves as dashed lines, hover naming each; significant changes ringed in red."""
    traces: list[dict[str, Any]] = []
    for line in lines:
        error = line.kind == "error"
        points = line.points
        traces.append({
            "type": "scatter", "mode": "lines+markers", "yaxis": "y" if error else "y2",
            "name": f"{'Error' if error else 'latency'} {line.label} ({line.machine})",
            "x": [p.when for p in points], "y": [p.value for p in points],
            "error_y": {"type": "data", "symmetric": False, "array": [p.high - p.value for p in points],
                        "arrayminus": [p.value - p.low for p in points]},
            "text": [html.escape(f"{p.commit}: " + (f"${p.value:,.2f} [{p.low:,.2f}, {p.high:,.2f}]" if error
                                                    else f"{p.value:.3f} s [{p.low:.3f}, {p.high:.3f}]")
                                 + (f"; {p.note}" if p.note else "")) for p in points],
            "hoverinfo": "text+name",
            "marker": {"symbol": "square" if error else "circle", "size": 8,
                       "color": ERROR_COLOR if error else LATENCY_COLOR,
                       "line": {"color": ["red" if p.significant else "rgba(0,0,0,0)" for p in points], "width": 2}},
        })
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": m.date, "x1": m.date, "y0": 0, "y1": 1,
               "line": {"color": MARK_COLORS.get(m.kind, "#7f7f7f"), "dash": "dash", "width": 1}} for m in marks]
    if marks:
        traces.append({"type": "scatter", "mode": "markers", "name": "the baseline moved", "yaxis": "y3",
                       "x": [m.date for m in marks], "y": [1.0] * len(marks),
                       "text": [html.escape(m.text) for m in marks], "hoverinfo": "text+x",
                       "marker": {"symbol": "triangle-down", "size": 12,
                                  "color": [MARK_COLORS.get(m.kind, "#7f7f7f") for m in marks]}})
    return {"data": traces, "layout": {
        "title": {"text": f"{html.escape(width)}: Error and latency over runs"}, "height": 420,
        "margin": {"l": 70, "r": 70, "t": 50, "b": 60}, "hovermode": "closest", "shapes": shapes,
        "xaxis": {"type": "date"}, "yaxis": {"title": {"text": "Error ($)"}, "rangemode": "tozero"},
        "yaxis2": {"title": {"text": "latency (s)"}, "overlaying": "y", "side": "right", "rangemode": "tozero"},
        "yaxis3": {"overlaying": "y", "range": [0, 1.05], "visible": False},
        "legend": {"orientation": "h", "y": -0.2}}}
