"""`pricer history` and `pricer results`: tables and charts of what is stored, the runs' latency and Error over
time and the baselines' Error beside the classic predictors' and the course's."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pricer.options.table import OPTION
from pricer.task.items import resolve_source


def history_sources(args: argparse.Namespace) -> tuple[str | None, Path | list[Path] | None]:
    """The benchmark storage and accuracy history to read: as given, else the project's, as the plugin writes them,
    wherever in the project this runs (None: not there)."""
    from pricer.history.accuracy_history import DEFAULT_ACCURACY
    from pricer.history.benchmark_runs import DEFAULT_STORAGE
    from pricer.options.ini_values import ini_text
    from pricer.options.project import ini_file, ini_value

    ini = ini_file(Path.cwd())
    root = ini.parent if ini else Path.cwd()
    storage, accuracy = args.benchmark_storage, args.accuracy_history
    if storage is None and (root / DEFAULT_STORAGE).is_dir():
        storage = str(root / DEFAULT_STORAGE)
    if accuracy is None:
        pinned = ini_text(OPTION["history"], ini_value(ini, "pricer_history"), where=ini)
        accuracy = root / pinned if pinned else (root / DEFAULT_ACCURACY if (root / DEFAULT_ACCURACY).exists() else None)
    return storage, accuracy


def run_history(args: argparse.Namespace) -> int:
    from pricer.history.report import format_history, history_chart
    from pricer.history.series import load_history

    storage, accuracy = history_sources(args)
    history = load_history(storage=storage, accuracy=accuracy, min_change=args.min_change)
    print(format_history(history, min_change=args.min_change))
    if not args.no_chart:
        history_chart(args.chart, history)
        print(f"wrote {args.chart}")
    return 0


def run_results(args: argparse.Namespace) -> int:
    from pricer.cli.results import check_class, collect_results, format_results, results_chart
    from pricer.options.project import project_root

    baselines = args.baselines or project_root(Path.cwd()) / "baselines"
    if args.hardware_class:  # before the classic predictors train: a class not stored would show nothing
        check_class(baselines=baselines, model=args.model, adapter=args.adapter, hardware_class=args.hardware_class)
    results = collect_results(data=resolve_source(args.data), n=args.n, model=args.model, adapter=args.adapter,
                              baselines=baselines, course=args.course, hardware_class=args.hardware_class)
    print(format_results(results))
    if not args.no_chart:
        results_chart(args.chart, results)
        print(f"wrote {args.chart}")
    if not any(row.kind != "classic" for row in results.rows):  # the comparison this command exists for is empty
        print(f"pricer: error: no stored baseline of {args.model!r} under {baselines}; run inside the project or "
              "pass --baselines DIR", file=sys.stderr)
        return 1
    return 0
