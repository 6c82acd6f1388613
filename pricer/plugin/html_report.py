"""--pricer-html: the gate's HTML report. Each width's view is made where its verdict is (an xdist worker relays it
as plain values); the page is written once, at the session's end, with the accuracy and latency histories."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pricer.errors import PricerError
from pricer.gate.references import anchor_label
from pricer.gate.report_views import baseline_marks, items_of, problem_view, width_view
from pricer.report.html_view import Page, WidthView

if TYPE_CHECKING:
    from pricer.gate.verdict import Verdict
    from pricer.plugin.session import EvalSession


def judged(session: EvalSession, width: str, verdict: Verdict, *, accept: str = "") -> dict[str, Any]:
    """A judged width's view, as plain values: its run against the baseline and each reference the verdict holds."""
    baseline = session.gates.baseline(width)
    references = []
    if baseline.anchor is not None:
        references.append((anchor_label(baseline.anchor), f"the anchor kept in {baseline.path}", baseline.anchor.items))
    if session.settings.against and verdict.references:
        from pricer.store.git_refs import baseline_at

        try:  # read again (git show): the gate kept only its verdict
            committed = baseline_at(session.settings.against, session.home.path(width))
        except PricerError:
            pass
        else:
            references.append((committed.label, f"{baseline.path} at {committed.label}", committed.baseline.items))
    view = width_view(width, verdict, items=items_of(session.run(width)), baseline=baseline, references=references,
                      accept=accept)
    return view.to_dict()


def problem(session: EvalSession, width: str, text: str) -> dict[str, Any]:
    """A width that ended without a verdict: its message, and its run's items where the run was made."""
    return problem_view(width, text, run=session.runs.get(width)).to_dict()


def write_report(session: EvalSession, path: Path, views: Mapping[str, Mapping[str, Any]], *,
                 history: Path | None) -> str:
    """Write the page of every width gated (in width order) and the histories; the line the terminal prints."""
    from pricer.report.html_page import write_page

    order = {w: i for i, w in enumerate(session.settings.widths)}
    widths = tuple(WidthView.from_dict(views[w]) for w in sorted(views, key=lambda w: (order.get(w, len(order)), w)))
    marks = []
    for width in views:
        try:
            marks += baseline_marks(width, session.gates.baseline(width))
        except PricerError:
            pass  # a damaged baseline: its width's section says so
    lines, note, sources = _history(session.root, history)
    page = Page(title=f"pricer gate: {session.settings.model_name}", passed=all(w.passed for w in widths),
                lines=(_gated(len(widths), session.home.machine_class), *sources),
                widths=widths, history=lines, marks=tuple(marks), history_note=note)
    size = write_page(path, page)
    return f"HTML report written to {path} ({size / 2**20:.1f} MiB)"


def _gated(count: int, hardware: str | None) -> str:
    return f"{count} width{'' if count == 1 else 's'} gated" + (f" on hardware class {hardware}" if hardware else "")


def _history(root: Path, accuracy: Path | None) -> tuple[tuple, str, tuple[str, ...]]:
    """The histories `pricer history` would show here: this run's --pricer-history (else the default file) and the
    saved benchmark runs, when there are any."""
    from pricer.errors import HistoryError
    from pricer.history.accuracy_history import DEFAULT_ACCURACY
    from pricer.history.benchmark_runs import DEFAULT_STORAGE
    from pricer.history.report import history_lines
    from pricer.history.series import load_history

    accuracy = accuracy if accuracy is not None else root / DEFAULT_ACCURACY
    storage = root / DEFAULT_STORAGE
    if not accuracy.exists() and not storage.is_dir():
        return (), ("No history recorded: append one with --pricer-history PATH (accuracy) and "
                    "`pytest -m benchmark --benchmark-autosave` (latency)."), ()
    try:
        found = load_history(storage=storage if storage.is_dir() else None,
                             accuracy=accuracy if accuracy.exists() else [])
    except HistoryError as exc:
        return (), f"No history shown: {exc}", ()
    return history_lines(found), "", tuple(f"history: {s}" for s in found.sources)
