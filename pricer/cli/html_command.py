"""`pricer report`: the gate's HTML report made again from saved runs (pytest --pricer-save-runs, pricer eval
--save-run), each judged against the stored baseline at its place, as the gate's --pricer-html writes it."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from pricer.engines.widths import ORDER
from pricer.errors import OptionError, PricerError
from pricer.report.html_view import Mark, WidthView

TEXT_COLUMN = "text column"  # the fingerprint's "prompt" when prompts came from the rows' text, not a template


def saved_runs(paths: Sequence[Path]) -> list[tuple[Path, Path]]:
    """(file, its place under the baselines folder) of every saved run: a folder's *.json by their path under it
    (narrowest width first), a file by its last three parts (model/class/width.json)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(path.rglob("*.json"), key=lambda f: (f.parent, ORDER.get(f.stem, len(ORDER)), f.stem))
            found += [(file, file.relative_to(path)) for file in files]
        elif path.is_file():
            found.append((path, Path(*path.parts[-3:])))
        else:
            raise OptionError(f"{path}: no such file or folder")
    if not found:
        raise OptionError(f"no saved runs (*.json) under {', '.join(map(str, paths))}; save them with "
                          "`pytest -m eval --pricer-save-runs DIR`")
    return found


def baseline_for(place: Path, baselines: Path, *, hardware_class: str | None) -> Path:
    """The stored baseline a run at `place` is judged against: the same place under the baselines folder (another
    class folder with `hardware_class`); a file named by its last parts is looked for from three parts down."""
    parts = place.parts
    if hardware_class and len(parts) >= 3:
        parts = (*parts[:-2], hardware_class, parts[-1])
    for start in range(len(parts) - 1):
        candidate = baselines.joinpath(*parts[start:])
        if candidate.exists():
            return candidate
    return baselines.joinpath(*parts)


def judge_run(file: Path, place: Path, args: argparse.Namespace, config) -> tuple[WidthView, tuple[Mark, ...]]:
    """One saved run's view: against its baseline, the anchor kept in it and, with --against, the baseline at that
    ref; a run with no baseline shows its items alone."""
    from pricer.gate.compare import compare_run, read_run
    from pricer.gate.references import anchor_label, with_references
    from pricer.gate.report_views import baseline_marks, items_of, own_verdict, problem_view, width_view
    from pricer.store.baselines import read_baseline

    label = place.with_suffix("").as_posix()
    run = read_baseline(file)
    items = _with_prompts(items_of(None, items=run.items), run, args.data)
    path = baseline_for(place, args.baselines, hardware_class=args.baseline_class)
    if not path.exists():
        view = problem_view(label, f"{path}: no baseline to judge {file} against; the run's items are shown alone",
                            items=run.items)
        return dataclasses.replace(view, name=run.name, items=items), ()
    baseline = read_baseline(path)
    comparison = compare_run(baseline, read_run(file), config, cross_class=bool(args.baseline_class))
    verdict, references = comparison.verdict, []
    if baseline.anchor is not None:
        references.append((anchor_label(baseline.anchor), f"the anchor kept in {path}", baseline.anchor.items))
    if args.against:
        from pricer.store.git_refs import baseline_at

        committed = baseline_at(args.against, path)
        if not committed.unchanged:
            judged = compare_run(committed.baseline, read_run(file), config, cross_class=bool(args.baseline_class))
            verdict = with_references(own_verdict(verdict), [*verdict.references,
                                                            (committed.label, own_verdict(judged.verdict))])
            references.append((committed.label, f"{path} at {committed.label}", committed.baseline.items))
    view = width_view(label, verdict, items=items, baseline=baseline, references=references, accept=comparison.accept)
    return view, baseline_marks(_width(run), baseline)


def _width(run) -> str:
    """The width a run's history series is named by: 4bit... or a classic predictor's name."""
    decisive = run.fingerprint.decisive
    return f"{decisive['bits']}bit" if decisive.get("bits") else str(decisive.get("predictor") or run.path.stem)


def _with_prompts(items, run, data: str | None):
    """The items with their prompts from the data the run was made from (--data), matched by index and title."""
    if not data:
        return items
    from pricer.task.items import DataSpec
    from pricer.task.load import load_items

    decisive = run.fingerprint.decisive
    template = decisive.get("prompt")
    spec = DataSpec(source=data, split=str(run.fingerprint.context.get("split", decisive.get("split", "test"))),
                    n=None, template=None if template in (None, TEXT_COLUMN) else str(template))
    prompts = {(i.index, i.title): i.prompt for i in load_items(spec)}
    return tuple(dataclasses.replace(i, prompt=prompts.get((i.index, i.title))) for i in items)


def run_report(args: argparse.Namespace) -> int:
    """Write the report; exit 0 when every run passed against its baseline, else 1."""
    from pricer.cli.judge_commands import _gate_config
    from pricer.cli.report_commands import history_sources
    from pricer.history.report import history_lines
    from pricer.history.series import load_history
    from pricer.report.html_page import write_page
    from pricer.report.html_view import Page

    from pricer.options.project import project_root

    config = _gate_config(args)
    if args.baselines is None:  # where the plugin reads them
        args.baselines = project_root(Path.cwd()) / "baselines"
    views, marks = [], []
    for file, place in saved_runs(args.runs):
        view, found = judge_run(file, place, args, config)
        views.append(view)
        marks += found
    storage, accuracy = history_sources(args)
    history, note, sources = (), "", ()
    if storage is None and accuracy is None:
        note = ("No history given: pass --accuracy-history PATH (written by `pytest -m eval --pricer-history PATH`) "
                "or --benchmark-storage DIR.")
    else:
        try:
            found_history = load_history(storage=storage, accuracy=accuracy, min_change=args.min_change)
        except PricerError as exc:
            note = f"No history shown: {exc}"
        else:
            history, sources = history_lines(found_history), found_history.sources
    passed = all(v.passed for v in views)
    page = Page(title="pricer report", passed=passed, lines=(f"{len(views)} saved runs", *sources),
                widths=tuple(views), history=history, marks=tuple(marks), history_note=note)
    size = write_page(args.out, page)
    for view in views:
        print(f"{view.width}: {'passed' if view.passed else 'FAILED'}"
              + "".join(f"; against {c.label}: {c.status}" for c in view.comparisons))
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB)")
    return 0 if passed else 1
