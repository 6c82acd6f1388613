"""`pricer history` shown: per machine a table of every run's latency and Error with its change, and one chart of
both on a shared time axis (a panel per machine and width), significant changes marked."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pricer.files import atomic_write_bytes
from pricer.history.benchmark_runs import BenchPoint
from pricer.history.changes import ERROR_CONFIDENCE, LATENCY_MIN_CHANGE, MIN_SPREAD_RUNS, SPREAD_RUNS
from pricer.history.series import History, MachineHistory, Series, Step
from pricer.report.html_view import HistoryLine, HistoryPoint

LATENCY_COLOR, ERROR_COLOR, CHANGE_COLOR = "tab:blue", "tab:orange", "red"
PANEL_SIZE = (4.8, 3.4)  # inches per (width, machine) panel


HEADERS = ["series", "run (UTC)", "commit", "latency", "change", "counts from", "tokens/s", "Error", "95% CI",
           "change"]


def format_history(history: History, *, min_change: float = LATENCY_MIN_CHANGE) -> str:
    """One section per machine: a row per run and series, in time order within each width."""
    from pricer.report.tester import format_table

    lines = [*history.sources]
    if len(history.machines) > 1:
        lines.append(f"{len(history.machines)} machines: each is shown apart; runs are only compared on one machine")
    for mh in history.machines:
        lines += ["", f"machine {mh.machine.label}",
                  f"  {_count(mh.benchmark_runs, 'benchmark run')}, {_count(mh.accuracy_runs, 'accuracy run')} "
                  f"({_count(mh.accuracy_entries, 'entry')})"]
        rows = []
        for width in mh.widths:
            steps = [(s, step) for s in mh.series if s.width == width for step in s.steps]
            for series, step in sorted(steps, key=lambda pair: (pair[1].when, pair[0].kind != "latency")):
                rows.append(_row(series, step))
        lines.append(format_table(HEADERS, rows))
    few = any(step.few_runs for mh in history.machines for s in mh.series for step in s.steps)
    lines += ["", f"latency: the median round. change: against the median of the last {SPREAD_RUNS} earlier runs on "
              "this machine, in seconds", "  or in speed-probe times (where all timed the probe), whichever they "
              "scatter less in;",
              f"  significant (*) past {min_change:.0%} and past what their run-to-run spread allows (counts from)",
              f"Error: change from the previous run; significant (*) when the paired {ERROR_CONFIDENCE:.0%} CI of the "
              "per-item change",
              "  excludes 0 (same items), else when the two runs' CIs do not overlap"]
    if few:
        lines += [f"? fewer than {MIN_SPREAD_RUNS} earlier runs, their spread unknown: a change counts past twice "
                  f"{min_change:.0%}", "  with no round overlapping an earlier run's, in seconds and in probe times; "
                  "save more runs"]
    lines.append("+ after a commit: the run had uncommitted changes")
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


def _row(series: Series, step: Step) -> list[str]:
    run = step.run
    commit = (run.commit or "?")[:8] + ("+" if run.dirty else " ")  # the space keeps the hashes aligned
    change = "" if step.change is None else f"{step.change:+.1%}" + (" *" if step.significant else "  ")
    when = step.when.strftime("%Y-%m-%d %H:%M")
    if isinstance(run, BenchPoint):
        tokens = f"{run.tokens_per_s:,.1f}" if run.tokens_per_s is not None else "-"
        limit = "" if step.limit is None else f"±{step.limit:.1%}" + (" ?" if step.few_runs else "  ")
        return [series.label, when, commit, f"{run.median:.3f} s", change, limit, tokens, "", "", ""]
    low, high = run.error_ci
    return [series.label, when, commit, "", "", "", "", f"${run.error:,.2f}", f"[{low:,.2f}, {high:,.2f}]", change]


def history_lines(history: History) -> tuple[HistoryLine, ...]:
    """Every series as the HTML report draws it: per machine and width, Error with its 95% CI and latency with its
    fastest and slowest rounds, significant changes flagged."""
    lines = []
    for mh in history.machines:
        for series in mh.series:
            points = []
            for step in series.steps:
                run, commit = step.run, (step.run.commit or "?")[:8] + ("+" if step.run.dirty else "")
                change = "" if step.change is None else f"{step.change:+.1%} from the earlier runs"
                if isinstance(run, BenchPoint):
                    value, low, high = run.median, run.fastest, run.slowest
                else:
                    value, (low, high) = run.error, run.error_ci
                    if run.passed is not None:
                        change += f"{'; ' if change else ''}gate {'passed' if run.passed else 'FAILED'}"
                points.append(HistoryPoint(when=step.when.isoformat(), value=value, low=low, high=high, commit=commit,
                                           significant=step.significant, note=change))
            lines.append(HistoryLine(kind=series.kind, width=series.width, label=series.label,
                                     machine=mh.machine.label, points=tuple(points)))
    return tuple(lines)


# ---------------------------------------------------------------- the chart


def history_chart(path: Path, history: History) -> None:
    """A panel per machine (row) and width (column): latency (left axis) and Error (right axis) on one time axis,
    significant changes ringed in red."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from pricer.report.charts import chart_format

    fmt = chart_format(path)
    columns = max(len(mh.widths) for mh in history.machines)
    rows = len(history.machines)
    # A Figure on its own canvas, not pyplot: no global figure list, no GUI backend (as pricer.report.charts).
    legend_rows = 1 if columns > 1 else 3  # one panel is too narrow for the three entries side by side
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + 0.3 + 0.3 * legend_rows),
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, sharex=True, squeeze=False)
    for row, mh in enumerate(history.machines):
        for column in range(columns):
            ax = axes[row][column]
            if column >= len(mh.widths):
                ax.set_visible(False)
                continue
            _panel(ax, mh, mh.widths[column])
    figure.legend(handles=[
        Line2D([], [], color=LATENCY_COLOR, marker="o", label="latency (s), median, fastest to slowest round"),
        Line2D([], [], color=ERROR_COLOR, marker="s", label="Error ($), 95% CI"),
        Line2D([], [], color=CHANGE_COLOR, marker="o", markerfacecolor="none", linestyle="none", markersize=12,
               label="significant change from the earlier runs"),
    ], loc="outside lower center", ncols=3 // legend_rows)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "pricer"}):
        figure.savefig(buffer, format=fmt, metadata={"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                                                     "pdf": {"CreationDate": None, "Creator": None,
                                                             "Producer": None}}[fmt])
    atomic_write_bytes(Path(path), buffer.getvalue())


def _panel(ax: Any, mh: MachineHistory, width: str) -> None:
    import matplotlib.dates as mdates

    twin = ax.twinx()
    styles = ("-", "--", ":", "-.")
    latency = [s for s in mh.series if s.width == width and s.kind == "latency"]
    errors = [s for s in mh.series if s.width == width and s.kind == "error"]
    for number, series in enumerate(latency):
        x = [step.when for step in series.steps]
        y = [step.run.median for step in series.steps]
        spread = [[step.run.median - step.run.fastest for step in series.steps],
                  [step.run.slowest - step.run.median for step in series.steps]]
        ax.errorbar(x, y, yerr=spread, color=LATENCY_COLOR, marker="o", linestyle=styles[number % len(styles)],
                    capsize=3, label=series.label)
        _ring(ax, series)
    for number, series in enumerate(errors):
        x = [step.when for step in series.steps]
        y = [step.run.error for step in series.steps]
        spread = [[step.run.error - step.run.error_ci[0] for step in series.steps],
                  [step.run.error_ci[1] - step.run.error for step in series.steps]]
        twin.errorbar(x, y, yerr=spread, color=ERROR_COLOR, marker="s", linestyle=styles[number % len(styles)],
                      capsize=3, label=series.label)
        _ring(twin, series)
    # From 0, with room above the highest bar: a slowdown should look as large as it is, no larger.
    if latency:
        ax.set_ylim(0, 1.15 * max(st.run.slowest for s in latency for st in s.steps) or 1)
    else:
        ax.set_yticks([])
    if errors:
        twin.set_ylim(0, 1.15 * max(st.run.error_ci[1] for s in errors for st in s.steps) or 1)
    else:
        twin.set_yticks([])  # no Error recorded at this width on this machine: no empty scale
    ax.set_ylabel("latency (s)" if latency else "", color=LATENCY_COLOR)
    twin.set_ylabel("Error ($)" if errors else "", color=ERROR_COLOR)
    ax.set_title(f"{width} on {mh.machine.label}", fontsize=8, parse_math=False)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)


def _ring(ax: Any, series: Series) -> None:
    marked = [step for step in series.steps if step.significant]
    if marked:
        values = [step.run.median if series.kind == "latency" else step.run.error for step in marked]
        ax.scatter([step.when for step in marked], values, s=180, facecolors="none", edgecolors=CHANGE_COLOR,
                   linewidths=2, zorder=5)
