"""The `pricer` command line: parse options, delegate to the library, print the course's report."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pricer.engines import cpu_threads

from pricer.engines.evaluate import RunResult, evaluate
from pricer.errors import OptionError, OutputError, PricerError
from pricer.options import parsers as options
from pricer.options.table import CLI, OPTION, OPTIONS, arguments, refuse_ignored
from pricer.plugin.session import run_fields
from pricer.report.tester import METRICS_HEADERS, format_table, metrics_row, print_report
from pricer.task.items import DataSpec, refuse_single_file, resolve_source
from pricer.task.load import load_items


OUTPUT_BROKEN = 3  # `pricer compare`: the verdict passed and was printed, but its chart or summary was not written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pricer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (_eval_command, _history_command, _finetune_command, _results_command, _compare_command,
                        _accept_command, _power_command, _ladder_command):
        add_command(commands)
    return parser


def _add_options(parser: argparse.ArgumentParser, command: str, groups: Mapping[str, Any] | None = None) -> None:
    """The command's options from the table, each in its group of the help where the command has groups."""
    for option in OPTIONS:
        if command in option.commands:
            target = (groups or {}).get(option.group, parser)
            # One of a required pair (--predictor or --model) has no default to show or to take.
            target.add_argument(option.cli, **arguments(option, CLI, choice=getattr(target, "required", False)))


def _eval_command(commands: argparse._SubParsersAction) -> None:
    ev = commands.add_parser(
        "eval",
        help="price the test items with a model and print the course's report",
        description="Price the test items with a classic predictor or an LLM at one or more bit widths, "
        "print one coloured line per item and the title line, and write the charts.",
    )
    groups = {"data": ev.add_argument_group("data"),
              "predictor": ev.add_argument_group("predictor").add_mutually_exclusive_group(required=True),
              "LLM": ev.add_argument_group("LLM"), "endpoint": ev.add_argument_group("endpoint"),
              "output": ev.add_argument_group("output")}
    _add_options(ev, "eval", groups)
    ev.set_defaults(run=run_eval)


def _history_command(commands: argparse._SubParsersAction) -> None:
    hist = commands.add_parser(
        "history",
        help="latency and Error per bit width over saved runs: a table and a chart",
        description="Read the saved pytest-benchmark runs and the accuracy history, print per machine and bit width "
        "each run's latency and Error with its change from earlier runs (* marks significant changes; latency is "
        "judged against the run-to-run spread of earlier runs on the same machine), and draw both on one time "
        "axis. Machines are shown apart.",
    )
    _add_options(hist, "history")
    hist.set_defaults(run=run_history)


def _finetune_command(commands: argparse._SubParsersAction) -> None:
    tune = commands.add_parser(
        "finetune",
        help="QLoRA: train a LoRA adapter on the train split, loss on the price only",
        description="Train a LoRA adapter (peft) on the model loaded at --bits, on the train split, learning only "
        "the price after 'Price is $' (rounded to whole dollars, as the course does). Seeded and resumable: "
        "checkpoints go to OUT/checkpoint, and a run started again on the same OUT continues from there.",
    )
    _add_options(tune, "finetune")
    tune.set_defaults(run=run_finetune)


def _results_command(commands: argparse._SubParsersAction) -> None:
    res = commands.add_parser(
        "results",
        help="Error of classic predictors, the base and the fine-tuned model at each width: a table and a chart",
        description="Train and score the classic predictors, read the stored baselines of the model and of the "
        "model with the adapter at every width, and compare them with the course's published figures.",
    )
    _add_options(res, "results")
    res.set_defaults(run=run_results)


def _compare_command(commands: argparse._SubParsersAction) -> None:
    cmp = commands.add_parser(
        "compare",
        help="the gate's verdict on predictions made anywhere, against a stored baseline, without a model",
        description="Pair RUN's guesses with BASELINE's items by index and give the gate's verdict on every course "
        "measure (Error, log error, Hits, unparsed). RUN is a baseline-format file or JSON Lines of "
        '{"index": 1, "guess": 12.99, "completion": "12.99", "parsed": true} rows (completion and parsed optional). '
        "Two baselines of different hardware classes (device, compute dtype) are compared with the cross-class "
        "rule. Exit 0: not measurably worse; 1: worse or not comparable; 2: bad input; 3: not worse, but the chart "
        "or summary could not be written.",
    )
    cmp.add_argument("baseline", type=Path, metavar="BASELINE", help="a stored baseline file")
    cmp.add_argument("run_file", type=Path, metavar="RUN", help="a baseline-format file or JSON Lines of guesses")
    _add_options(cmp, "compare")
    cmp.set_defaults(run=run_compare)


def _accept_command(commands: argparse._SubParsersAction) -> None:
    acc = commands.add_parser(
        "accept",
        help="make a saved run the baseline, with a reason, keeping the old one in its history",
        description="Replace BASELINE with RUN (a baseline-format file: pytest --pricer-save-runs, pricer eval "
        "--save-run), as --update-baselines does: RUN is judged against BASELINE first (a WORSE run is stored only "
        "with --accept-worse), and the replaced baseline's metrics, date, reason and verdict stay in the history. "
        "Commit the file to make it the new reference.",
    )
    acc.add_argument("baseline", type=Path, metavar="BASELINE", help="the stored baseline to replace")
    acc.add_argument("run_file", type=Path, metavar="RUN", help="a baseline-format run")
    acc.add_argument("--reason", required=True, metavar="TEXT", help="why the baseline moves (kept in its history)")
    acc.add_argument("--accept-worse", metavar="TRADE-OFF", default=None,
                     help="store a run judged WORSE than the baseline it replaces, naming what it buys (kept beside "
                     "the reason)")
    _add_gate_settings(acc)
    acc.set_defaults(run=run_accept)


def _power_command(commands: argparse._SubParsersAction) -> None:
    power = commands.add_parser(
        "power",
        help="how many items do I need? what a baseline's gate can detect, and the n to detect a chosen worsening",
        description="For each measure the gate tests, print the smallest worsening it detects (at 80% power) with "
        "BASELINE's items, and how many items it would need to detect --worse. Computed from the baseline's own "
        "spread, as the gate does before it runs.",
    )
    power.add_argument("baseline", type=Path, metavar="BASELINE", help="a stored baseline file")
    power.add_argument("--worse", type=options.share("--worse"), default=0.10, metavar="SHARE",
                       help="the worsening to detect, as a share of the measure's level: 0.1 or 10%%. Default: 10%%")
    _add_gate_settings(power)
    power.set_defaults(run=run_power)


def _add_gate_settings(parser: argparse.ArgumentParser) -> None:
    """The gate's settings that `pricer compare` takes (not its outputs), for a command that judges as it does."""
    for option in OPTIONS:
        if option.gate and "compare" in option.commands:
            parser.add_argument(option.cli, **arguments(option, CLI))


def _ladder_command(commands: argparse._SubParsersAction) -> None:
    lad = commands.add_parser(
        "ladder",
        help="the quantization ladder from runs saved by separate jobs (pytest --pricer-save-runs)",
        description="Read the runs that `pytest -m eval --pricer-save-runs DIR` stored (one width per CI job; stored "
        "baselines are in the same format), check they are one model on the same items, and print each width "
        "against the 32-bit run, paired, with Bonferroni-corrected CIs, as the gate's summary does. "
        "Exit 0; 1 when a tax is past --max-tax; 2 on bad input.",
    )
    lad.add_argument("runs", nargs="+", type=Path, metavar="PATH",
                     help="saved runs: files, or folders searched for *.json")
    _add_options(lad, "ladder")
    lad.set_defaults(run=run_ladder)


def main(argv: Sequence[str] | None = None) -> int:
    # Before any command imports torch, whose OpenMP runtime reads its wait policy once, when it loads.
    cpu_threads.apply(os.environ, torch=sys.modules.get("torch"))
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except PricerError as exc:
        print(f"pricer: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a chart or file that cannot be written: one line naming it, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"pricer: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


def run_history(args: argparse.Namespace) -> int:
    from pricer.history.accuracy_history import DEFAULT_ACCURACY
    from pricer.history.benchmark_runs import DEFAULT_STORAGE
    from pricer.history.series import load_history
    from pricer.history.report import format_history, history_chart
    from pricer.options.table import ini_text
    from pricer.options.project import ini_file, ini_value

    # Defaults are the project's, as the plugin writes them, wherever in the project this runs.
    ini = ini_file(Path.cwd())
    root = ini.parent if ini else Path.cwd()
    storage, accuracy = args.benchmark_storage, args.accuracy_history
    if storage is None and (root / DEFAULT_STORAGE).is_dir():
        storage = str(root / DEFAULT_STORAGE)
    if accuracy is None:
        pinned = ini_text(OPTION["history"], ini_value(ini, "pricer_history"), where=ini)
        accuracy = root / pinned if pinned else (root / DEFAULT_ACCURACY if (root / DEFAULT_ACCURACY).exists() else None)
    history = load_history(storage=storage, accuracy=accuracy, min_change=args.min_change)
    print(format_history(history, min_change=args.min_change))
    if not args.no_chart:
        history_chart(args.chart, history)
        print(f"wrote {args.chart}")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from pricer.engines.finetune.adapter import describe
    from pricer.engines.finetune.config import FinetuneConfig
    from pricer.engines.finetune.training import finetune

    config = FinetuneConfig(model=args.model, bits=int(args.bits), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            rank=args.rank, seed=args.seed, checkpoint_every=args.checkpoint_every,
                            device=args.device, compute_dtype=args.compute_dtype)
    source = resolve_source(args.data)
    items = load_items(DataSpec(source=source, split=args.split, n=None))
    result = finetune(config, items, out=args.out, resume=args.resume, data_source=source)
    print("\n".join(describe(result)))
    return 0


def run_results(args: argparse.Namespace) -> int:
    from pricer.options.project import project_root
    from pricer.cli.results import check_class, collect_results, format_results, results_chart

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
        from pricer.store.baselines import read_baseline
        from pricer.report.charts import moved_chart
        from pricer.gate.compare import read_run

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

    if not args.reason.strip():
        raise OptionError("--reason: say why the baseline moves; it is kept in the baseline's history")
    previous, judged = accept_run(args.baseline, args.run_file, reason=args.reason, config=_gate_config(args),
                                  trade_off=args.accept_worse or "")
    how = "" if judged.not_comparable else f", judged {verdict_word(judged)}"
    print(f"{previous.path}: baseline replaced by {args.run_file} (Error ${previous.metrics['error']:,.2f} before"
          f"{how}), reason: {args.reason.strip()}; commit it")
    return 0


def run_power(args: argparse.Namespace) -> int:
    from pricer.store.baselines import read_baseline
    from pricer.gate.power import power_lines

    for line in power_lines(read_baseline(args.baseline), _gate_config(args), worse=args.worse):
        print(line)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    source = resolve_source(args.data)
    given = {name: getattr(args, name) for name in CLI.watched if getattr(args, name, None) is not None}
    refuse_ignored(CLI, given=given, predictor=args.predictor, source=source)
    split = args.split or OPTION["split"].default_in(CLI)
    spec = DataSpec(source=source, split=split, n=args.n, template=args.template)
    items = load_items(spec)
    if args.predictor:
        from pricer.engines.classic import train_classic
        from pricer.task.items import items_digest

        refuse_single_file(source, option=f"--predictor {args.predictor}", data_option="--data", split=args.train_split)
        train = load_items(DataSpec(source=source, split=args.train_split, n=None, template=args.template))
        results = [evaluate(train_classic(args.predictor, train), items)]
        fields = [{"predictor": args.predictor, "train_sha256": items_digest(train)}]
        _show(results[0], args)
    elif args.endpoint:
        results = _run_served(args, given, items)
    else:
        widths = args.bits or OPTION["bits"].default_in(CLI)
        runs = [_run_llm(args, bits, items) for bits in widths]
        results = [run for run, _ in runs]
        fields = [{**found, "width": f"{bits}bit"} for (_, found), bits in zip(runs, widths)]
    if args.save_run:
        _save_runs(args.save_run, results, [{**run_fields(items, spec), **own} for own in fields])
    if len(results) > 1:
        print()
        print(format_table(METRICS_HEADERS + ["s/item"], [metrics_row(r.name, r.metrics) + [f"{r.seconds_per_item:.3f}"] for r in results]))
        if not args.no_charts:
            from pricer.report.charts import scatter_grid

            path = args.charts_dir / "bits-scatter.png"
            scatter_grid(path, panels=[(r.metrics.title(r.name), [s.truth for s in r.scores],
                                        [s.guess for s in r.scores], [s.color for s in r.scores]) for r in results])
            print(f"wrote {path}")
    return 0


def _run_llm(args: argparse.Namespace, bits: int, items) -> tuple[RunResult, dict[str, Any]]:
    from pricer.engines.transformers.loading import load_model
    from pricer.engines.predict import LLMPredictor

    from pricer.store.fingerprint import llm_fields

    loaded = load_model(args.model, bits=bits, adapter=args.adapter, device=args.device)
    try:
        predictor = LLMPredictor(loaded, batch_size=args.batch_size, token_budget=args.token_budget)
        result = evaluate(predictor, items)
        fields = llm_fields(loaded, predictor.policy.to_dict())
    finally:
        loaded.close()
    _show(result, args)
    return result, fields


def _save_runs(path: Path, results: Sequence[RunResult], fields: Sequence[Mapping[str, Any]]) -> None:
    """Each run in the baseline format, as pytest --pricer-save-runs stores it; several go to PATH-<width>.json."""
    from pricer.store.baselines import write_baseline
    from pricer.store.fingerprint import split_fields

    for result, flat in zip(results, fields):
        width = flat.pop("width", None)
        target = path if len(results) == 1 else path.with_name(f"{path.stem}-{width}{path.suffix}")
        write_baseline(target, run=result, fingerprint=split_fields(flat), reason="run saved by pricer eval --save-run",
                       previous=None)
        print(f"run saved to {target}")


def _run_served(args: argparse.Namespace, given: Mapping[str, Any], items) -> list[RunResult]:
    """Each width's served model, asked over HTTP (pricer.engines.endpoint)."""
    from pricer.engines.endpoint.config import endpoint_config
    from pricer.engines.endpoint.predictor import EndpointPredictor

    try:
        config = endpoint_config(vars(args), deterministic=False, given=given, flag=lambda name: OPTION[name].cli)
    except argparse.ArgumentTypeError as exc:
        raise OptionError(str(exc)) from None
    results = [evaluate(EndpointPredictor(config, width=width), items) for width, _ in config.urls]
    for result in results:
        _show(result, args)
    return results


def _show(result: RunResult, args: argparse.Namespace) -> None:
    if args.quiet:
        print(result.metrics.title(result.name))
    else:
        print_report(result.name, result.items, result.scores, result.metrics, stream=sys.stdout)
    if args.no_charts:
        return
    from pricer.report.charts import running_error_chart, scatter_chart

    stem = args.charts_dir / result.name.replace(" ", "-").replace("/", "_")
    title = result.metrics.title(result.name)
    scatter_chart(stem.with_name(stem.name + "-scatter.png"), truths=[s.truth for s in result.scores],
                  guesses=[s.guess for s in result.scores], colors=[s.color for s in result.scores], title=title)
    running_error_chart(stem.with_name(stem.name + "-error.png"), errors=[s.error for s in result.scores], title=title)
    print(f"wrote {stem}-scatter.png and {stem}-error.png")


if __name__ == "__main__":
    sys.exit(main())
