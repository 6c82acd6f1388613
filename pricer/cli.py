"""The `pricer` command line: parse options, delegate to the library, print the course's report."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pricer import cpu_threads, options
from pricer.data import DEFAULT_N, DEFAULT_SPLIT, DataSpec, load_items, resolve_source, single_file
from pricer.errors import OptionError, PricerError
from pricer.evaluate import RunResult, evaluate
from pricer.report import METRICS_HEADERS, format_table, metrics_row, print_report

CLASSIC = ("constant", "linear", "bow", "random-forest")
DEFAULT_BITS = (32,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pricer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = commands.add_parser(
        "eval",
        help="price the test items with a model and print the course's report",
        description="Price the test items with a classic predictor or an LLM at one or more bit widths, "
        "print one coloured line per item and the title line, and write the charts.",
    )
    data = ev.add_argument_group("data")
    data.add_argument("--data", metavar="SOURCE", help="Hugging Face dataset id, or a local folder / .jsonl / "
                      ".csv / .parquet file. Default: $PRICER_DATA, else ed-donner/pricer-data")
    data.add_argument("--split", metavar="NAME", help=f"split of a dataset folder or hub id to score (a single file "
                      f"is one split and takes none). Default: {DEFAULT_SPLIT!r}")
    data.add_argument("--n", type=options.positive_int("--n"), default=DEFAULT_N, metavar="N",
                      help="score the first N items of the split, in order. Default: %(default)r")
    data.add_argument("--template", type=options.template("--template"), metavar="TEMPLATE",
                      help="build prompts from other columns (not price), e.g. 'How much does this cost to the "
                      "nearest dollar?\\n\\n{title}\\n{description}\\n\\nPrice is $'; \\n and \\t are a newline "
                      "and a tab. Default: the rows' text column")
    data.add_argument("--train-split", default="train", metavar="NAME",
                      help="split the classic predictors train on. Default: %(default)r")

    what = ev.add_argument_group("predictor").add_mutually_exclusive_group(required=True)
    what.add_argument("--predictor", type=options.choice("--predictor", CLASSIC), metavar="NAME",
                      help=f"a classic predictor: {', '.join(CLASSIC)}")
    what.add_argument("--model", metavar="ID_OR_PATH",
                      help="a causal LM: 'default' (the bundled SmolLM2-135M-Instruct), a Hugging Face id or a local folder")
    llm = ev.add_argument_group("LLM")
    # LLM options default to None so that one given with --predictor, which would ignore it, can be refused.
    llm.add_argument("--bits", type=options.bits_list("--bits"), metavar="B[,B...]",
                     help="bit widths to run one after another: 4 (NF4), 8 (LLM.int8), 16, 32. Default: 32")
    llm.add_argument("--adapter", type=options.existing_path("--adapter"), metavar="DIR",
                     help="a LoRA adapter folder (peft) to apply to the model. Default: none")
    llm.add_argument("--device", type=options.choice("--device", ("cpu", "cuda")), metavar="DEVICE",
                     help="cpu or cuda. Default: cuda when available, else cpu")
    llm.add_argument("--batch-size", type=options.positive_int("--batch-size"), metavar="N",
                     help="fixed batches of N prompts in input order (part of the recorded batching policy). "
                          "Default: a token budget")
    llm.add_argument("--token-budget", type=options.positive_int("--token-budget"), metavar="TOKENS",
                     help="prompts sorted by length fill each batch up to TOKENS padded tokens. "
                          "Default: 1536 on CPU, 32768 on CUDA")

    out = ev.add_argument_group("output")
    out.add_argument("--charts-dir", type=options.folder("--charts-dir"), default="charts", metavar="DIR",
                     help="folder for the scatter and running-error charts. Default: %(default)s")
    out.add_argument("--no-charts", action="store_true", help="write no charts")
    out.add_argument("--quiet", action="store_true", help="print only the title lines and the table")
    ev.set_defaults(run=run_eval)

    hist = commands.add_parser(
        "history",
        help="latency and Error per bit width over saved runs: a table and a chart",
        description="Read the saved pytest-benchmark runs and the accuracy history, print per machine and bit width "
        "each run's latency and Error with its change from earlier runs (* marks significant changes; latency is "
        "judged against the run-to-run spread of earlier runs on the same machine), and draw both on one time "
        "axis. Machines are shown apart.",
    )
    hist.add_argument("--benchmark-storage", metavar="DIR", help="pytest-benchmark's storage folder (or file://DIR). "
                      "Default: .benchmarks, if it exists")
    hist.add_argument("--accuracy-history", type=Path, nargs="+", action="extend", metavar="PATH",
                      help="JSON Lines written by `pytest -m eval --pricer-history PATH`; several files (the jobs of a "
                      "CI matrix, one width each) are read as one history, the widths of one commit on one machine "
                      "as one run. Default: the project's pricer_history ini key, else "
                      ".benchmarks/pricer-accuracy.jsonl, if it exists; the project is the folder of the pytest ini "
                      "file (pyproject.toml, pytest.ini...) at or above the current one, as for the plugin")
    hist.add_argument("--chart", type=options.output_file("--chart"), default="charts/history.png", metavar="PATH",
                      help="where to write the chart (.png, .svg, .pdf). Default: %(default)s")
    hist.add_argument("--no-chart", action="store_true", help="print the table only")
    hist.add_argument("--min-change", type=options.share("--min-change"), default=0.10, metavar="SHARE",
                      help="smallest latency change (0.1 or 10%%) that can count as significant; it must also pass "
                      "the run-to-run spread of earlier runs on the machine. Default: 10%%")
    hist.set_defaults(run=run_history)

    from pricer import finetune as ft  # light: its torch and peft imports are inside its functions

    tune = commands.add_parser(
        "finetune",
        help="QLoRA: train a LoRA adapter on the train split, loss on the price only",
        description="Train a LoRA adapter (peft) on the model loaded at --bits, on the train split, learning only "
        "the price after 'Price is $' (rounded to whole dollars, as the course does). Seeded and resumable: "
        "checkpoints go to OUT/checkpoint, and a run started again on the same OUT continues from there.",
    )
    tune.add_argument("--model", default="default", metavar="ID_OR_PATH", help="base model. Default: %(default)r")
    tune.add_argument("--bits", type=options.choice("--bits", tuple(map(str, ft.TRAIN_BITS))), default="4", metavar="B",
                      help="width of the frozen base: 4 (QLoRA), 16 or 32. Default: %(default)r")
    tune.add_argument("--out", type=options.folder("--out"), required=True, metavar="DIR",
                      help="folder for the adapter and checkpoints")
    tune.add_argument("--steps", type=options.positive_int("--steps"), default=ft.DEFAULT_STEPS, metavar="N",
                      help="optimizer steps. Default: %(default)r (minutes on a CPU; 125 steps of 8 is one epoch of 998 items)")
    tune.add_argument("--lr", type=options.positive_float("--lr"), default=ft.DEFAULT_LR, metavar="X",
                      help="peak learning rate. Default: %(default)r")
    tune.add_argument("--batch-size", type=options.positive_int("--batch-size"), default=ft.DEFAULT_BATCH_SIZE,
                      metavar="N", help="items per step. Default: %(default)r")
    tune.add_argument("--rank", type=options.positive_int("--rank"), default=ft.DEFAULT_RANK, metavar="R",
                      help="LoRA rank on every linear layer; alpha is 2R. Default: %(default)r")
    tune.add_argument("--seed", type=int, default=ft.DEFAULT_SEED, metavar="S", help="Default: %(default)r")
    tune.add_argument("--checkpoint-every", type=options.positive_int("--checkpoint-every"),
                      default=ft.DEFAULT_CHECKPOINT_EVERY, metavar="N", help="Default: %(default)r steps")
    tune.add_argument("--compute-dtype", type=options.choice("--compute-dtype", ("float32", "bfloat16", "float16")),
                      metavar="DTYPE", help="matmul dtype. Default: float32 on CPU, the GPU's half type on CUDA")
    tune.add_argument("--device", type=options.choice("--device", ("cpu", "cuda")), metavar="DEVICE",
                      help="cpu or cuda. Default: cuda when available, else cpu")
    tune.add_argument("--resume", action="store_true", help="fail unless OUT/checkpoint exists (a run on an OUT "
                      "with a checkpoint resumes it anyway)")
    tune.add_argument("--data", metavar="SOURCE", help="dataset id or folder. Default: $PRICER_DATA, else "
                      "ed-donner/pricer-data")
    tune.add_argument("--split", default="train", metavar="NAME", help="split to train on. Default: %(default)r")
    tune.set_defaults(run=run_finetune)

    res = commands.add_parser(
        "results",
        help="Error of classic predictors, the base and the fine-tuned model at each width: a table and a chart",
        description="Train and score the classic predictors, read the stored baselines of the model and of the "
        "model with the adapter at every width, and compare them with the course's published figures.",
    )
    res.add_argument("--data", metavar="SOURCE", help="Default: $PRICER_DATA, else ed-donner/pricer-data")
    res.add_argument("--n", type=options.positive_int("--n"), default=DEFAULT_N, metavar="N",
                     help="test items the classic predictors are scored on. Default: %(default)r")
    res.add_argument("--model", default="default", metavar="ID_OR_PATH", help="Default: %(default)r")
    res.add_argument("--adapter", type=options.existing_path("--adapter"), default=Path("adapters/smollm2-135m-pricer"),
                     metavar="DIR",
                     help="the fine-tuned adapter whose baselines to show. Default: %(default)s")
    res.add_argument("--baselines", type=options.folder("--baselines"), metavar="DIR",
                     help="Default: baselines in the project (the folder of the pytest ini file at or above the "
                     "current one, where the plugin reads them)")
    res.add_argument("--hardware-class", metavar="CLASS", help="the class folder of the stored baselines to show, e.g. "
                     "cpu-bfloat16. Default: the only one stored, else this machine's")
    res.add_argument("--course", type=Path, metavar="PATH", help="the course's published table (a README.md). "
                     "Default: course-2024-tester-outputs/README.md beside the data folder, if there")
    res.add_argument("--chart", type=options.output_file("--chart"), default="charts/results.png", metavar="PATH",
                     help="Default: %(default)s")
    res.add_argument("--no-chart", action="store_true", help="print the table only")
    res.set_defaults(run=run_results)

    cmp = commands.add_parser(
        "compare",
        help="the gate's verdict on predictions made anywhere, against a stored baseline, without a model",
        description="Pair RUN's guesses with BASELINE's items by index and give the gate's verdict on every course "
        "measure (Error, log error, Hits, unparsed). RUN is a baseline-format file or JSON Lines of "
        '{"index": 1, "guess": 12.99, "completion": "12.99", "parsed": true} rows (completion and parsed optional). '
        "Two baselines of different hardware classes (device, compute dtype) are compared with the cross-class "
        "rule. Exit 0: not measurably worse; 1: worse or not comparable; 2: bad input.",
    )
    cmp.add_argument("baseline", type=Path, metavar="BASELINE", help="a stored baseline file")
    cmp.add_argument("run_file", type=Path, metavar="RUN", help="a baseline-format file or JSON Lines of guesses")
    from pricer.gate import GateConfig

    gate = GateConfig()
    cmp.add_argument("--tolerance", type=options.share("--tolerance"), default=gate.tolerance_share, metavar="SHARE",
                     help="worsening of Error tolerated even when significant, as 0.05 or 5%%. Default: %(default)r")
    cmp.add_argument("--tolerance-dollars", type=options.non_negative_float("--tolerance-dollars"),
                     default=gate.tolerance_dollars, metavar="DOLLARS",
                     help="worsening of Error tolerated in dollars; the larger tolerance wins. Default: %(default)r")
    cmp.add_argument("--log-tolerance", type=options.share("--log-tolerance"), default=gate.log_tolerance,
                     metavar="SHARE", help="worsening of the mean log error tolerated, as a share of the baseline's. "
                     "Default: %(default)r")
    cmp.add_argument("--hits-tolerance", type=options.share("--hits-tolerance"), default=gate.hits_tolerance,
                     metavar="POINTS", help="drop of Hits tolerated, in points (0.03 or 3%%). Default: %(default)r")
    cmp.add_argument("--unparsed-tolerance", type=options.share("--unparsed-tolerance"),
                     default=gate.unparsed_tolerance, metavar="SHARE",
                     help="rise of unparsed completions tolerated, as a share of the items. Default: %(default)r")
    cmp.add_argument("--tail-budget", type=options.budget("--tail-budget"), default=gate.tail_budget, metavar="N",
                     help="absurd answers (above --tail-factor x both their truth and the baseline's largest answer) "
                     "a run may add and pass; 'off' turns the tail rule off. Default: %(default)r")
    cmp.add_argument("--tail-factor", type=options.factor("--tail-factor"), default=gate.tail_factor, metavar="X",
                     help="how far above the baseline's largest answer, and the item's truth, an answer is absurd. "
                     "Default: %(default)r")
    cmp.add_argument("--alpha", type=options.significance("--alpha"), default=gate.alpha, metavar="P",
                     help="significance level, Holm-corrected over the measures. Default: %(default)r")
    cmp.add_argument("--cross-class", action="store_true", help="RUN was made on another hardware class on "
                     "purpose: use the cross-class rule (found by itself when RUN is a baseline of another class)")
    cmp.add_argument("--summary", type=options.output_file("--summary"), metavar="PATH",
                     help="append the verdict as Markdown to this file, e.g. \"$GITHUB_STEP_SUMMARY\". Default: none")
    cmp.add_argument("--chart", type=options.output_file("--chart"), metavar="PATH",
                     help="draw what moved, each item's baseline guess against RUN's (.png, .svg, .pdf). Default: none")
    cmp.set_defaults(run=run_compare)

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
    lad.add_argument("--max-tax", type=options.share("--max-tax"), metavar="SHARE", help="fail when a width's Error "
                     "exceeds the 32-bit Error by surely more than this share, as 0.5 or 50%%. Default: report only")
    lad.add_argument("--alpha", type=options.significance("--alpha"), default=GateConfig().alpha, metavar="P",
                     help="significance level, Bonferroni-corrected over the widths. Default: %(default)r")
    lad.set_defaults(run=run_ladder)
    return parser


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
        print(f"pricer: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2


def run_history(args: argparse.Namespace) -> int:
    from pricer.accuracy_history import DEFAULT_ACCURACY
    from pricer.benchmark_runs import DEFAULT_STORAGE
    from pricer.history import load_history
    from pricer.history_report import format_history, history_chart
    from pricer.project import ini_file, ini_value

    # Defaults are the project's, as the plugin writes them, wherever in the project this runs.
    ini = ini_file(Path.cwd())
    root = ini.parent if ini else Path.cwd()
    storage, accuracy = args.benchmark_storage, args.accuracy_history
    if storage is None and (root / DEFAULT_STORAGE).is_dir():
        storage = str(root / DEFAULT_STORAGE)
    if accuracy is None:
        pinned = ini_value(ini, "pricer_history")
        accuracy = root / pinned if pinned else (root / DEFAULT_ACCURACY if (root / DEFAULT_ACCURACY).exists() else None)
    history = load_history(storage=storage, accuracy=accuracy, min_change=args.min_change)
    print(format_history(history, min_change=args.min_change))
    if not args.no_chart:
        history_chart(args.chart, history)
        print(f"wrote {args.chart}")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from pricer.finetune import FinetuneConfig, describe, finetune

    config = FinetuneConfig(model=args.model, bits=int(args.bits), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            rank=args.rank, seed=args.seed, checkpoint_every=args.checkpoint_every,
                            device=args.device, compute_dtype=args.compute_dtype)
    source = resolve_source(args.data)
    items = load_items(DataSpec(source=source, split=args.split, n=None))
    result = finetune(config, items, out=args.out, resume=args.resume, data_source=source)
    print("\n".join(describe(result)))
    return 0


def run_results(args: argparse.Namespace) -> int:
    from pricer.project import project_root
    from pricer.results import check_class, collect_results, format_results, results_chart

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
    from pricer.workers import REFERENCE, ladder, ladder_lines, read_saved_runs

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
    from pricer.compare import compare_files
    from pricer.gate import GateConfig

    config = GateConfig(tolerance_share=args.tolerance, tolerance_dollars=args.tolerance_dollars,
                        log_tolerance=args.log_tolerance, hits_tolerance=args.hits_tolerance,
                        unparsed_tolerance=args.unparsed_tolerance, alpha=args.alpha,
                        tail_budget=args.tail_budget, tail_factor=args.tail_factor)
    comparison = compare_files(args.baseline, args.run_file, config, cross_class=args.cross_class)
    for note in comparison.notes:
        print(note)
    verdict = comparison.verdict
    print(f"{args.baseline}: {verdict.message(accept=comparison.accept)}")
    chart = args.chart if args.chart and verdict.judgements else None  # no judgements: the items do not pair
    if chart:
        from pricer.baselines import read_baseline
        from pricer.charts import moved_chart
        from pricer.compare import read_run

        items, run = read_baseline(args.baseline).items, read_run(args.run_file)
        moved_chart(chart, items=items, guesses=[run.predictions[b.index].guess for b in items],
                    labelled=[w.index for w in verdict.worst], title=verdict.name)
        print(f"chart of what moved: {chart}")
    if args.summary:
        from pricer.summary import append_document, document, markdown_text, verdict_block

        block = verdict_block(verdict, title=verdict.name, baseline=args.baseline, accept=comparison.accept,
                              chart=chart, notes=comparison.notes)
        append_document(args.summary, document([block], heading=f"pricer compare: {markdown_text(args.run_file)}"))
        print(f"summary appended to {args.summary}")
    return comparison.exit_code


def run_eval(args: argparse.Namespace) -> int:
    source = resolve_source(args.data)
    _refuse_ignored(args, source)
    items = load_items(DataSpec(source=source, split=args.split or DEFAULT_SPLIT, n=args.n, template=args.template))
    if args.predictor:
        from pricer.classic import train_classic

        if Path(source).is_file():
            raise OptionError(f"--predictor {args.predictor}: {source} is a single file, so it has no "
                              f"{args.train_split!r} split to train on; point --data at a folder or dataset with both")
        train = load_items(DataSpec(source=source, split=args.train_split, n=None, template=args.template))
        results = [evaluate(train_classic(args.predictor, train), items)]
        _show(results[0], args)
    else:
        results = [_run_llm(args, bits, items) for bits in args.bits or DEFAULT_BITS]
    if len(results) > 1:
        print()
        print(format_table(METRICS_HEADERS + ["s/item"], [metrics_row(r.name, r.metrics) + [f"{r.seconds_per_item:.3f}"] for r in results]))
        if not args.no_charts:
            from pricer.charts import scatter_grid

            path = args.charts_dir / "bits-scatter.png"
            scatter_grid(path, panels=[(r.metrics.title(r.name), [s.truth for s in r.scores],
                                        [s.guess for s in r.scores], [s.color for s in r.scores]) for r in results])
            print(f"wrote {path}")
    return 0


def _refuse_ignored(args: argparse.Namespace, source: str) -> None:
    """Options this run would ignore are errors: a user who gives them means something the run would not do."""
    if args.predictor:
        given = [flag for flag, value in (("--bits", args.bits), ("--adapter", args.adapter), ("--device", args.device),
                                          ("--batch-size", args.batch_size), ("--token-budget", args.token_budget))
                 if value is not None]
        if given:
            raise OptionError(f"{given[0]} applies to --model; --predictor {args.predictor} has no bits, adapter, "
                              "device or batching")
    if args.split is not None and single_file(source):
        raise OptionError(f"--split {args.split}: {source} is a single file, which is one split; --split picks a "
                          "split of a dataset folder (train.jsonl, test.jsonl) or of a hub dataset")


def _run_llm(args: argparse.Namespace, bits: int, items) -> RunResult:
    from pricer.models import load_model
    from pricer.predict import LLMPredictor

    loaded = load_model(args.model, bits=bits, adapter=args.adapter, device=args.device)
    try:
        result = evaluate(LLMPredictor(loaded, batch_size=args.batch_size, token_budget=args.token_budget), items)
    finally:
        loaded.close()
    _show(result, args)
    return result


def _show(result: RunResult, args: argparse.Namespace) -> None:
    if args.quiet:
        print(result.metrics.title(result.name))
    else:
        print_report(result.name, result.items, result.scores, result.metrics, stream=sys.stdout)
    if args.no_charts:
        return
    from pricer.charts import running_error_chart, scatter_chart

    stem = args.charts_dir / result.name.replace(" ", "-").replace("/", "_")
    title = result.metrics.title(result.name)
    scatter_chart(stem.with_name(stem.name + "-scatter.png"), truths=[s.truth for s in result.scores],
                  guesses=[s.guess for s in result.scores], colors=[s.color for s in result.scores], title=title)
    running_error_chart(stem.with_name(stem.name + "-error.png"), errors=[s.error for s in result.scores], title=title)
    print(f"wrote {stem}-scatter.png and {stem}-error.png")


if __name__ == "__main__":
    sys.exit(main())
