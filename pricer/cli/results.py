"""The course's results table and chart: classic predictors, the base and fine-tuned LLM at each width, course figures.

LLM rows come from the stored baselines (no model is run); classic rows are trained and scored here in seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pricer.engines.widths import NAMES
from pricer.errors import BaselineError, OptionError

COURSE_FOLDER = "course-2024-tester-outputs"  # beside the data folder; see its README for where the rows came from
COURSE_README = "README.md"
KIND_COLORS = {"classic": "#999999", "base": "#1f77b4", "fine-tuned": "#2ca02c"}
# The course's rows drawn as reference lines: the best frontier model, the fine-tuned ones, the classic best.
LOG_AXIS_FROM = 20  # dollars: left of every course figure and classic Error, so each bar shows its length
COURSE_LINES = ("gpt_4o_frontier", "llama31_8b_qlora_improved_predict", "gpt_fine_tuned", "random_forest_pricer",
                "constant_pricer")
REFERENCE_COLORS = ("#d62728", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")  # one per COURSE_LINES entry
DOLLAR_TICKS = (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
_COURSE_ROW = re.compile(r"^\|\s*([A-Za-z0-9_]+)\s*\|\s*\$([\d,]+\.\d+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)%\s*\|\s*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultRow:
    """One predictor's scores on the test items."""

    name: str
    kind: str  # classic, base, fine-tuned or course
    error: float
    error_ci: tuple[float, float] | None  # None for the course's figures, which were published without one
    rmsle: float
    hits: float  # 0..1
    n: int | None
    unparsed: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Results:
    """Our rows, the course's published rows, and what could not be shown."""

    rows: tuple[ResultRow, ...]
    course: tuple[ResultRow, ...]
    missing: tuple[str, ...]  # e.g. a baseline file not found, with the command that makes it


def read_course_table(path: Path) -> tuple[ResultRow, ...]:
    """The `| predictor | Error | RMSLE | Hits |` rows of the course README; BaselineError when it has none."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BaselineError(f"{path}: cannot be read ({exc.strerror})") from None
    rows = []
    for line in lines:
        match = _COURSE_ROW.match(line.strip())
        if match:
            name, error, rmsle, hits = match.groups()
            rows.append(ResultRow(name=name, kind="course", error=float(error.replace(",", "")), error_ci=None,
                                  rmsle=float(rmsle), hits=float(hits) / 100, n=None))
    if not rows:
        raise BaselineError(f"{path}: no '| predictor | $Error | RMSLE | Hits% |' rows found")
    return tuple(rows)


def default_course_path(data: str) -> Path | None:
    """course-2024-tester-outputs/README.md beside a local data folder or file, when it is there."""
    source = Path(data).expanduser()
    if not source.exists():
        return None
    candidate = source.resolve().parent / COURSE_FOLDER / COURSE_README
    return candidate if candidate.is_file() else None


def stored_class(*, baselines: Path, model_name: str, hardware_class: str | None = None) -> str | None:
    """The hardware class folder to read a model's baselines from: the one asked for, the only one stored, or this
    machine's when several are; None for baselines stored without class folders."""
    if hardware_class:
        return hardware_class
    classes = stored_classes(baselines=baselines, model_name=model_name)
    if len(classes) <= 1:
        return classes[0] if classes else None
    from pricer.store.hardware import this_class  # probes the compute dtype: only when there is a choice to make

    return this_class()


def stored_classes(*, baselines: Path, model_name: str) -> list[str]:
    """The hardware class folders (cpu-bfloat16, cuda-bfloat16...) a model's baselines are stored in."""
    from pricer.store.baselines import baseline_path
    from pricer.store.hardware import stored_classes as in_folder

    return in_folder(baseline_path(baselines, model_name, "any").parent)


def stored_rows(*, baselines: Path, model_name: str, kind: str,
                hardware_class: str | None = None) -> tuple[list[ResultRow], list[str]]:
    """One row per width whose baseline is stored (in the hardware class folder), and a note per width that is not."""
    from pricer.store.baselines import baseline_path, read_baseline

    rows, missing = [], []
    chosen = stored_class(baselines=baselines, model_name=model_name, hardware_class=hardware_class)
    classes = stored_classes(baselines=baselines, model_name=model_name)
    if chosen and classes and chosen not in classes:
        folder = baseline_path(baselines, model_name, "any").parent
        return [], [f"{folder}: no baselines of class {chosen}; it has {', '.join(classes)} (pass --hardware-class)"]
    for width in NAMES:
        path = baseline_path(baselines, model_name, width, hardware_class=chosen)
        if not path.exists():
            missing.append(f"{path}: not found")
            continue
        stored = read_baseline(path)
        m = stored.metrics
        rows.append(ResultRow(name=f"{model_name} {width}", kind=kind, error=m["error"], error_ci=tuple(m["error_ci"]),
                              rmsle=m["rmsle"], hits=m["hits"], n=m["n"], unparsed=m["unparsed"]))
    return rows, missing


def classic_rows(*, data: str, n: int) -> list[ResultRow]:
    """Each classic predictor trained on the train split and scored on the first n test items."""
    from pricer.engines.classic import CLASSIC_NAMES, train_classic
    from pricer.engines.evaluate import evaluate
    from pricer.task.items import DataSpec, refuse_single_file
    from pricer.task.load import load_items

    refuse_single_file(data, option="--data", data_option="--data")
    train = load_items(DataSpec(source=data, split="train", n=None))
    test = load_items(DataSpec(source=data, split="test", n=n))
    rows = []
    for name in CLASSIC_NAMES:
        m = evaluate(train_classic(name, train), test).metrics
        rows.append(ResultRow(name=name, kind="classic", error=m.error, error_ci=m.error_ci, rmsle=m.rmsle,
                              hits=m.hits, n=m.n, unparsed=m.unparsed))
    return rows


def _model_names(*, model: str, adapter: Path | None) -> list[tuple[str, str]]:
    """(kind, baseline folder name) of the base model and, with an adapter, the fine-tuned one."""
    from pricer.plugin.settings import EvalSettings
    from pricer.task.items import DataSpec

    names = [("base", EvalSettings(data=DataSpec(), model=model).model_name)]
    if adapter is not None:
        names.append(("fine-tuned", EvalSettings(data=DataSpec(), model=model, adapter=Path(adapter)).model_name))
    return names


def check_class(*, baselines: Path, model: str, adapter: Path | None, hardware_class: str) -> None:
    """OptionError naming the class asked for and the classes stored, when neither model has baselines of it."""
    stored = sorted({c for _, name in _model_names(model=model, adapter=adapter)
                     for c in stored_classes(baselines=baselines, model_name=name)})
    if stored and hardware_class not in stored:
        raise OptionError(f"--hardware-class {hardware_class}: no stored baselines of that class under {baselines}; "
                          f"the classes stored are {', '.join(stored)}")


def collect_results(*, data: str, n: int, model: str, adapter: Path | None, baselines: Path,
                    course: Path | None, hardware_class: str | None = None) -> Results:
    """Classic rows, stored base and fine-tuned rows at each width, and the course's table."""
    rows = classic_rows(data=data, n=n)
    missing: list[str] = []
    for kind, name in _model_names(model=model, adapter=adapter):
        found, absent = stored_rows(baselines=baselines, model_name=name, kind=kind, hardware_class=hardware_class)
        rows += found
        missing += absent
    course_path = course or default_course_path(data)
    course_rows = read_course_table(course_path) if course_path else ()
    if course_path is None:
        missing.append(f"the course's table: no {COURSE_FOLDER}/{COURSE_README} beside the data; pass --course PATH")
    return Results(rows=tuple(rows), course=course_rows, missing=tuple(missing))


def format_results(results: Results) -> str:
    """Our rows, then the course's, as one aligned table; notes on what is missing below it."""
    from pricer.report.tester import format_table

    def cells(row: ResultRow) -> list[str]:
        ci = f"[{row.error_ci[0]:,.2f}, {row.error_ci[1]:,.2f}]" if row.error_ci else ""
        return [row.name, row.kind, f"${row.error:,.2f}", ci, f"{row.rmsle:.2f}", f"{row.hits * 100:.1f}%",
                "" if row.n is None else str(row.n), "" if row.unparsed is None else str(row.unparsed)]

    table = format_table(["predictor", "kind", "Error", "95% CI", "RMSLE", "Hits", "n", "unparsed"],
                         [cells(r) for r in (*results.rows, *results.course)])
    notes = [f"not shown: {m}" for m in results.missing]
    return "\n".join([table, *notes])


def results_chart(path: Path, results: Results) -> None:
    """Horizontal bars of Error (log scale) with 95% CIs, and the course's figures as labelled vertical lines."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import NullFormatter

    # The chart module's own figure and atomic save: same Agg canvas, same byte-stable metadata.
    from pricer.report.charts import _figure, _save, chart_format

    fmt = chart_format(path)
    rows = list(results.rows)
    if not rows:
        raise OptionError(f"{path}: no results to draw")
    figure = _figure((12, 0.45 * len(rows) + 2.5))
    axes = figure.add_subplot()
    positions = list(range(len(rows)))[::-1]  # first row on top
    errors = [r.error for r in rows]
    spans = [[r.error - r.error_ci[0] if r.error_ci else 0 for r in rows],
             [r.error_ci[1] - r.error if r.error_ci else 0 for r in rows]]
    axes.barh(positions, errors, xerr=spans, color=[KIND_COLORS[r.kind] for r in rows], capsize=3, alpha=0.9)
    for y, row in zip(positions, rows):
        axes.text(row.error * 1.03, y + 0.2, f"${row.error:,.0f}", va="center", fontsize=8, parse_math=False)
    axes.set_yticks(positions, [r.name for r in rows])
    axes.set_xscale("log")  # the base model's $1,000 and GPT-4o's $76 on one linear axis would hide the middle
    # Labels written on the lines collide where the course's figures sit close ($76-$97): a legend names them.
    references = [r for r in results.course if r.name in COURSE_LINES]
    lines = [axes.axvline(ref.error, color=color, ls="--", lw=1.5, label=f"course: {ref.name} ${ref.error:,.2f}")
             for ref, color in zip(references, REFERENCE_COLORS)]
    axes.set_xlim(LOG_AXIS_FROM, max(max(r.error_ci[1] if r.error_ci else r.error for r in rows) * 1.3, 200))
    ticks = [t for t in DOLLAR_TICKS if LOG_AXIS_FROM <= t <= axes.get_xlim()[1]]
    axes.set_xticks(ticks, [f"${t:,}" for t in ticks])
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("Error: mean absolute error on the test items, $ (log scale; bars: 95% CI)", parse_math=False)
    sizes = sorted({r.n for r in rows if r.n})
    axes.set_title(f"Price is Right, {' / '.join(map(str, sizes))} test items: classic, base and fine-tuned at each width",
                   parse_math=False)
    axes.grid(axis="x", alpha=0.3, which="both")
    present = dict.fromkeys(r.kind for r in rows)
    axes.legend(handles=[Patch(color=KIND_COLORS[k], label=k) for k in present] + lines, loc="lower right",
                fontsize=8, framealpha=0.95)
    _save(figure, Path(path), fmt)
