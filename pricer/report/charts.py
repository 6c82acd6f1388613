"""Charts of a run: the course's truth-against-guess scatter, a grid of them, the running error with its band, and
what moved against a baseline.

Each chart is rendered to memory and then written atomically, so a failed render never leaves half a file.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pricer.errors import OptionError
from pricer.files import atomic_write_bytes
from pricer.task.metrics import GREEN_DOLLARS, GREEN_SHARE, ORANGE_DOLLARS, ORANGE_SHARE

if TYPE_CHECKING:
    from pricer.store.baselines import BaselineItem

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
DEFAULT_FORMAT = "png"  # for a path without a suffix
# matplotlib stamps its version or the time into these keys by default; leaving them out keeps re-runs byte-equal.
_QUIET_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}
# SVG element ids are hashed from this salt; a fixed one stops them changing on every run.
_RC = {"svg.hashsalt": "pricer"}

LINE_COLOR = "deepskyblue"  # the course's y = x line
# The band's coverage. A Student-t interval, as pricer.task.metrics gives the Error, so the chart's final "± $X" is
# the report's; the 2025 course used 1.96, which differs by under 1% past 40 items but is too narrow early on.
CONFIDENCE = 0.95
SCATTER_SIZE = (12, 8)  # inches, the course's figsize
PANEL_SIZE = 5  # inches per square panel of a grid
POINT_AREA = 12  # points^2; the course's 3 is hard to see on a 1200x800 image
MOVED_SIZE = (9, 9)  # inches: square, as both axes are guesses on one scale
MOVED_DOLLARS = 1e-5  # baselines store guesses to 6 decimals; smaller changes are storage rounding
# Past this ratio of the largest value to the smallest positive one, linear axes crowd most points into one corner
# (the course's prices run $0.50-$999, and a bad guess can be $100,000): the scatter goes logarithmic.
LOG_SPAN = 100.0
TITLE_CHARACTERS_PER_INCH = 9  # at the default 12-point title; a grid's titles wrap to their panel's width
# The course's colours, by how far a guess is from its truth (pricer.task.metrics.color_for).
COLOR_MEANINGS = (("green", f"hit: within ${GREEN_DOLLARS:.0f} or {GREEN_SHARE:.0%}"),
                  ("orange", f"within ${ORANGE_DOLLARS:.0f} or {ORANGE_SHARE:.0%}"),
                  ("red", "farther"))


def chart_format(path: Path) -> str:
    """The file format named by the path's suffix (.png, .svg, .pdf; none means PNG); OptionError otherwise."""
    suffix = Path(path).suffix.lower()
    if not suffix:
        return DEFAULT_FORMAT
    if suffix not in FORMATS:
        raise OptionError(f"{path}: cannot write a chart as {suffix!r}; use one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


def scatter_chart(
    path: Path, *, truths: Sequence[float], guesses: Sequence[float], colors: Sequence[str], title: str
) -> None:
    """The course's chart: each item's guess against its true price, coloured by how close it came."""
    fmt = chart_format(path)
    _check_points("scatter_chart", truths=truths, guesses=guesses, colors=colors)
    figure = _figure(SCATTER_SIZE)
    axes = figure.add_subplot()
    _draw_scatter(axes, truths=truths, guesses=guesses, colors=colors, limit=_limit(truths, guesses), title=title,
                  log=_spans_decades(truths, guesses), width=SCATTER_SIZE[0])
    axes.legend(handles=_color_handles(), loc="upper left", title="guess")
    _save(figure, path, fmt)


def scatter_grid(path: Path, *, panels: Sequence[tuple[str, Sequence[float], Sequence[float], Sequence[str]]]) -> None:
    """Several scatters side by side, e.g. one per bit width, on the same axes so they compare at a glance."""
    fmt = chart_format(path)
    if not panels:
        raise OptionError(f"{path}: scatter_grid needs at least one panel")
    for title, truths, guesses, colors in panels:
        _check_points(f"scatter_grid panel {title!r}", truths=truths, guesses=guesses, colors=colors)
    # One limit for all panels: with separate limits the y = x lines would sit at different scales.
    limit = max(_limit(truths, guesses) for _, truths, guesses, _ in panels)
    log = any(_spans_decades(truths, guesses) for _, truths, guesses, _ in panels)  # one scale for all panels
    figure = _figure((PANEL_SIZE * len(panels), PANEL_SIZE))
    for number, (title, truths, guesses, colors) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), number)
        _draw_scatter(axes, truths=truths, guesses=guesses, colors=colors, limit=limit, title=title, log=log,
                      width=PANEL_SIZE)
        axes.set_aspect("equal")
        if number > 1:
            axes.set_ylabel("")
        else:  # one legend: a figure legend outside the square panels made constrained layout cut their titles
            axes.legend(handles=_color_handles(), loc="upper left", title="guess", fontsize="small")
    _save(figure, path, fmt)


def running_error_chart(path: Path, *, errors: Sequence[float], title: str) -> None:
    """The 2025 course's chart: mean absolute error over the first k items, k = 1..n, with its confidence band."""
    import numpy as np

    fmt = chart_format(path)
    values = np.asarray(errors, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise OptionError(f"{path}: running_error_chart needs at least one error")
    if not np.all(np.isfinite(values)):
        raise OptionError(f"{path}: errors must be finite numbers")
    means, half_widths = running_mean_band(values)
    counts = np.arange(1, values.size + 1)

    figure = _figure(SCATTER_SIZE)
    axes = figure.add_subplot()
    axes.fill_between(counts, means - half_widths, means + half_widths, color=LINE_COLOR, alpha=0.25, label=f"{CONFIDENCE:.0%} interval")
    axes.plot(counts, means, color="navy", lw=2, label="running mean absolute error")
    axes.set_xlim(1, max(values.size, 2))
    axes.set_ylim(bottom=0)
    axes.set_xlabel("Items", parse_math=False)
    axes.set_ylabel("Mean absolute error ($)", parse_math=False)
    axes.set_title(_with_band(title, means[-1], half_widths[-1]), parse_math=False)
    axes.legend(loc="upper right")
    axes.grid(alpha=0.3)
    _save(figure, path, fmt)


def moved_chart(path: Path, *, items: Sequence[BaselineItem], guesses: Sequence[float], labelled: Sequence[int],
                title: str) -> None:
    """What moved against a baseline: each item's baseline guess (x) against its new guess (y) on log axes; on the
    diagonal nothing moved. A moved item's truth is marked above its baseline guess, so the distance from it tells
    the new error; items now farther from their truth are red and joined to it, `labelled` ones (item indices)
    carry their index. `items` are the baseline's (index, truth, guess), in the order of `guesses`."""
    fmt = chart_format(path)
    if len(items) != len(guesses) or not len(items):
        raise OptionError(f"{path}: moved_chart needs one new guess per baseline item ({len(items)} items, "
                          f"{len(guesses)} guesses)")
    before = [item.guess for item in items]
    truths = [item.truth for item in items]
    if not all(math.isfinite(v) and v >= 0 for v in (*before, *guesses, *truths)):
        raise OptionError(f"{path}: guesses and truths must be finite numbers >= 0")
    moved = [abs(n - b) > MOVED_DOLLARS for b, n in zip(before, guesses)]
    worse = [m and abs(n - t) > abs(b - t) for m, b, n, t in zip(moved, before, guesses, truths)]
    kinds = (("unchanged", "silver", [not m for m in moved]),
             ("closer to the truth", "green", [m and not w for m, w in zip(moved, worse)]),
             ("farther from the truth", "red", worse))
    limit = max(*before, *guesses, *truths, 1.0) * 1.5

    figure = _figure(MOVED_SIZE)
    axes = figure.add_subplot()
    axes.plot([0, limit], [0, limit], color=LINE_COLOR, lw=2, alpha=0.6, label="unchanged guess (y = x)")
    shown = [i for i, m in enumerate(moved) if m]
    if shown:
        axes.scatter([before[i] for i in shown], [truths[i] for i in shown], marker="_", s=60, color="black",
                     lw=1, label="truth, at the baseline guess")
    for i in (i for i, w in enumerate(worse) if w):  # how far the new guess is from its truth
        axes.plot([before[i], before[i]], [truths[i], guesses[i]], color="red", lw=0.6, alpha=0.4)
    for label, color, chosen in kinds:
        picked = [i for i, c in enumerate(chosen) if c]
        if picked:
            axes.scatter([before[i] for i in picked], [guesses[i] for i in picked], c=color, alpha=0.7, zorder=3,
                         s=POINT_AREA * (3 if color == "red" else 1), label=f"{label} ({len(picked)})")
    position = {item.index: i for i, item in enumerate(items)}
    spots: dict[tuple[float, float], list[int]] = {}  # guesses are often round numbers: items share a point
    for index in dict.fromkeys(labelled):
        if index in position:
            spots.setdefault((before[position[index]], guesses[position[index]]), []).append(index)
    for (x, y), indices in spots.items():
        axes.scatter([x], [y], s=POINT_AREA * 8, facecolors="none", edgecolors="black", lw=1, zorder=4)
        axes.annotate(", ".join(f"#{i}" for i in indices), (x, y), xytext=(8, 6), textcoords="offset points",
                      fontsize=9, color="darkred", annotation_clip=False)
    # symlog: linear below $1, logarithmic above, so an unparsed guess of $0 stays on the chart.
    for scale in (axes.set_xscale, axes.set_yscale):
        scale("symlog", linthresh=1.0)
    axes.set_xlim(0, limit)
    axes.set_ylim(0, limit)
    axes.set_aspect("equal")
    axes.set_xlabel("Baseline guess ($)", parse_math=False)
    axes.set_ylabel("New guess ($)", parse_math=False)
    axes.set_title(f"{title}: {sum(worse)} of {len(items)} items farther from the truth, "
                   f"{sum(moved) - sum(worse)} closer", parse_math=False)
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    _save(figure, path, fmt)


def running_mean_band(errors: Sequence[float]):  # -> (means, half_widths), numpy arrays of len(errors)
    """Running mean of the errors and the half-width of its Student-t interval at CONFIDENCE (0 while k = 1)."""
    import numpy as np
    from scipy import stats

    values = np.asarray(errors, dtype=float)
    counts = np.arange(1, values.size + 1)
    means = np.cumsum(values) / counts
    # Sample variance from running sums; clipped at 0 because rounding can make it a hair negative.
    squares = np.cumsum(values * values)
    variances = np.clip((squares - counts * means * means) / np.maximum(counts - 1, 1), 0.0, None)
    quantiles = stats.t.ppf((1 + CONFIDENCE) / 2, np.maximum(counts - 1, 1))
    half_widths = np.where(counts > 1, quantiles * np.sqrt(variances / counts), 0.0)
    return means, half_widths


def _check_points(what: str, *, truths: Sequence[float], guesses: Sequence[float], colors: Sequence[str]) -> None:
    if not len(truths) == len(guesses) == len(colors):
        raise OptionError(
            f"{what}: {len(truths)} truths, {len(guesses)} guesses and {len(colors)} colors; give one of each per item"
        )
    if len(truths) == 0:  # len, not truth value: numpy arrays are welcome
        raise OptionError(f"{what}: no items to plot")
    if not all(math.isfinite(value) for value in (*truths, *guesses)):
        raise OptionError(f"{what}: truths and guesses must be finite numbers")


def _limit(truths: Sequence[float], guesses: Sequence[float]) -> float:
    # The course's axes run from 0 to the largest value; 1 keeps a chart of all-zero values drawable.
    return max(max(truths), max(guesses), 1.0)


def _wrapped(title: str, width: int) -> str:
    """A title that fits `width` characters a line: the course's metrics ("Error=...") start a line of their own."""
    import textwrap

    if len(title) <= width:
        return title
    name, sep, metrics = title.partition(" Error=")
    lines = [name, "Error=" + metrics] if sep else [title]
    return "\n".join(textwrap.fill(line, width=width) for line in lines)


def _spans_decades(truths: Sequence[float], guesses: Sequence[float]) -> bool:
    positive = [v for v in (*truths, *guesses) if v > 0]
    return bool(positive) and max(positive) / min(positive) >= LOG_SPAN


def _with_band(title: str, mean: float, half_width: float) -> str:
    """The title with the final Error and its interval: in place of the title's own `Error=$X`, never beside it."""
    import re

    band = f"Error=${mean:,.2f} ± ${half_width:,.2f}"
    return re.sub(r"Error=\$[\d,.]+", lambda _: band, title, count=1) if "Error=$" in title else f"{title} {band}"


def _color_handles() -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], marker="o", linestyle="", color=color, label=label) for color, label in COLOR_MEANINGS]


def _figure(size: tuple[float, float]):  # -> matplotlib.figure.Figure
    # A Figure on its own Agg canvas, not pyplot: no global figure list to leak into, no GUI backend to pick.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _draw_scatter(axes, *, truths: Sequence[float], guesses: Sequence[float], colors: Sequence[str], limit: float,
                  title: str, log: bool = False, width: float = SCATTER_SIZE[0]) -> None:
    # A margin past the largest value, so no point sits half outside the frame: a factor on log axes.
    top = limit * 1.5 if log else limit * 1.05
    axes.plot([0, top], [0, top], color=LINE_COLOR, lw=2, alpha=0.6)
    axes.scatter(truths, guesses, s=POINT_AREA, c=list(colors), clip_on=False)  # a $0 guess sits on the frame
    if log:  # symlog: linear below $1, so an unparsed guess of $0 stays on the chart
        for scale in (axes.set_xscale, axes.set_yscale):
            scale("symlog", linthresh=1.0)
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_xlabel("Ground Truth ($, log scale)" if log else "Ground Truth ($)", parse_math=False)
    axes.set_ylabel("Model Estimate ($, log scale)" if log else "Model Estimate ($)", parse_math=False)
    # Titles hold dollar amounts; two "$" would otherwise be read as mathtext and mangle or reject the title.
    axes.set_title(_wrapped(title, int(width * TITLE_CHARACTERS_PER_INCH)), parse_math=False)


def _save(figure, path: Path, fmt: str) -> None:
    import matplotlib

    _refuse_foreign(Path(path), fmt)
    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        figure.savefig(buffer, format=fmt, metadata=_QUIET_METADATA[fmt])
    atomic_write_bytes(Path(path), buffer.getvalue())


# How a file of each format begins: a chart replaces such a file (an earlier chart), never another one.
_MAGIC = {"png": (b"\x89PNG",), "svg": (b"<?xml", b"<svg"), "pdf": (b"%PDF",)}


def _refuse_foreign(path: Path, fmt: str) -> None:
    """OutputError when `path` is an existing file that is not an image of the chart's format (notes.png holding text,
    a data file given the chart's name by mistake): it is kept, not replaced."""
    from pricer.errors import OutputError
    from pricer.files import existing_head

    head = (existing_head(path, 16) or b"").lstrip()
    if head and not head.startswith(_MAGIC[fmt]):
        raise OutputError(f"{path}: an existing file that is not a {fmt.upper()} image; a chart replaces only an "
                          "image: name a new file, or remove this one first")
