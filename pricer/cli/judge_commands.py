"""`pricer compare`, `accept`, `power` and `ladder`: the gate's verdict on saved runs and baselines, without a model:
judge a run, make it the baseline, size a gate, and judge the widths against each other."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pricer.errors import OptionError, OutputError
from pricer.options.table import OPTIONS

OUTPUT_BROKEN = 3  # `pricer compare`: the verdict passed and was printed, but its chart or summary was not written


def run_compare(args: argparse.Namespace) -> int:
    from pricer.gate.compare import compare_files

    comparison = compare_files(args.baseline, args.run_file, _gate_config(args), cross_class=args.cross_class)
    for note in comparison.notes:
        print(note)
    verdict = comparison.verdict
    print(f"{args.baseline}: {verdict.message(accept=comparison.accept)}")
    chart = args.chart if args.chart and verdict.judgements else None  # no judgements: the items do not pair
    try:
        _compare_outputs(args, comparison, chart)
    except OutputError as exc:  # after the verdict: a broken output exits 3, a worse run still 1
        print(f"pricer: error: {exc}", file=sys.stderr)
        return comparison.exit_code or OUTPUT_BROKEN
    return comparison.exit_code


def _compare_outputs(args: argparse.Namespace, comparison, chart: Path | None) -> None:
    """`pricer compare`'s chart and summary, written once the verdict is printed."""
    verdict = comparison.verdict
    if chart:
        from pricer.gate.compare import read_run
        from pricer.report.charts import moved_chart
        from pricer.store.baselines import read_baseline

        items, run = read_baseline(args.baseline).items, read_run(args.run_file)
        moved_chart(chart, items=items, guesses=[run.predictions[b.index].guess for b in items],
                    labelled=[w.index for w in verdict.worst], title=verdict.name)
        print(f"chart of what moved: {chart}")
    if args.summary:
        from pricer.plugin.summary import append_document, document, markdown_text, verdict_block

        block = verdict_block(verdict, title=verdict.name, baseline=args.baseline, accept=comparison.accept,
                              chart=chart, notes=comparison.notes)
        append_document(args.summary, document([block], heading=f"pricer compare: {markdown_text(args.run_file)}"))
        print(f"summary appended to {args.summary}")


def _gate_config(args: argparse.Namespace):  # -> pricer.gate.verdict.GateConfig
    """The gate's settings from the options `pricer compare` (and `pricer power`) take."""
    from pricer.gate.verdict import GateConfig

    return GateConfig(**{o.gate: getattr(args, o.name) for o in OPTIONS if o.gate and "compare" in o.commands})


def run_accept(args: argparse.Namespace) -> int:
    from pricer.gate.compare import accept_run
    from pricer.gate.references import verdict_word

    from pricer.options.parsers import placeholder_problem

    if not args.reason.strip():
        raise OptionError("--reason: say why the baseline moves; it is kept in the baseline's history")
    for option, value, example in (("--reason", args.reason, "prompt names the brand first"),
                                   ("--accept-worse", args.accept_worse, "4-bit to halve memory")):
        if problem := placeholder_problem(option, value, example=example):
            raise OptionError(problem)
    previous, judged = accept_run(args.baseline, args.run_file, reason=args.reason, config=_gate_config(args),
                                  trade_off=args.accept_worse or "")
    from pricer.store.baselines import read_baseline

    how = "" if judged.not_comparable else f", judged {verdict_word(judged)}"
    anchored = "" if read_baseline(previous.path).anchor else "; drift is measured from this run on (the anchor)"
    print(f"{previous.path}: baseline replaced by {args.run_file} (Error ${previous.metrics['error']:,.2f} before"
          f"{how}), reason: {args.reason.strip()}{anchored}; commit it")
    return 0


def run_power(args: argparse.Namespace) -> int:
    from pricer.gate.power import power_lines
    from pricer.store.baselines import read_baseline

    baseline = read_baseline(args.baseline)
    for line in power_lines(baseline, _gate_config(args), worse=args.worse, split=_split_size(baseline, args.data)):
        print(line)
    return 0


def _split_size(baseline, data: str | None) -> tuple[str, int] | str:
    """(where, rows) of the split the baseline was scored on, read from --data or $PRICER_DATA; else why not."""
    import os

    from pricer.errors import PricerError
    from pricer.task.items import DATA_ENV, DEFAULT_SPLIT
    from pricer.task.sources import read_rows

    source = data or os.environ.get(DATA_ENV)
    split = str(baseline.fingerprint.context.get("split") or DEFAULT_SPLIT)
    if not source:
        return f"pass --data (or set ${DATA_ENV}) to learn how many items its {split} split holds"
    try:
        rows, where = read_rows(source, split)
    except PricerError as exc:
        return f"its {split} split could not be read ({exc})"
    return where, len(rows)

def run_ladder(args: argparse.Namespace) -> int:
    from pricer.gate.ladder import REFERENCE, ladder, ladder_lines, read_saved_runs

    saved = read_saved_runs(args.runs)
    for run in saved.values():
        print(f"{run.width}: {run.path}")
    if REFERENCE not in saved or len(saved) < 2:
        raise OptionError(f"a ladder needs a {REFERENCE} run and another width; found {', '.join(saved)}")
    lines = ladder_lines(ladder({w: run.run for w, run in saved.items()}, max_tax_share=args.max_tax, alpha=args.alpha))
    for line, _ in lines:
        print(line)
    return 1 if any(failed for _, failed in lines) else 0
