"""The course's Tester output: one coloured line per item, the title line, and side-by-side tables."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TextIO

from pricer.task.items import Item
from pricer.task.metrics import ItemScore, Metrics

# The course's colours; its "orange" is the terminal's bright yellow.
ANSI = {"green": "\033[92m", "orange": "\033[93m", "red": "\033[91m"}
RESET = "\033[0m"


def use_color(stream: TextIO) -> bool:
    """Colour only a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def item_line(number: int, score: ItemScore, title: str, *, color: bool) -> str:
    """`N: Guess: $G Truth: $T Error: $E SLE: S Item: TITLE`, as the course prints it."""
    line = (
        f"{number}: Guess: ${score.guess:,.2f} Truth: ${score.truth:,.2f} "
        f"Error: ${score.error:,.2f} SLE: {score.sle:,.2f} Item: {title}"
    )
    return f"{ANSI[score.color]}{line}{RESET}" if color else line


def print_report(
    name: str, items: Sequence[Item], scores: Sequence[ItemScore], metrics: Metrics, *, stream: TextIO
) -> None:
    """Every item's line, then the title line."""
    color = use_color(stream)
    for item, score in zip(items, scores):
        print(item_line(item.index, score, item.title, color=color), file=stream)
    print(metrics.title(name), file=stream)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned text table: first column left, the others right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            str(cell).ljust(w) if i == 0 else str(cell).rjust(w) for i, (cell, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(headers), rule, *(fmt(row) for row in rows)])


def metrics_row(name: str, metrics: Metrics) -> list[str]:
    """One row of the side-by-side table: Error with its 95% CI, RMSLE, Hits, unparsed."""
    low, high = metrics.error_ci
    return [
        name,
        f"${metrics.error:,.2f}",
        f"[{low:,.2f}, {high:,.2f}]",
        f"{metrics.rmsle:.2f}",
        f"{metrics.hits * 100:.1f}%",
        f"{metrics.unparsed}",
    ]


METRICS_HEADERS = ["run", "Error", "95% CI", "RMSLE", "Hits", "unparsed"]
