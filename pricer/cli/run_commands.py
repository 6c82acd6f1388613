"""`pricer eval` and `pricer finetune`: load the items, then score a classic predictor, a loaded or a served model on
them (printing the course's report and drawing its charts), or train an adapter on them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pricer.engines.evaluate import RunResult, evaluate
from pricer.errors import OptionError
from pricer.options.ignored import refuse_ignored
from pricer.options.option import CLI
from pricer.options.table import OPTION
from pricer.plugin.session import run_fields
from pricer.report.tester import METRICS_HEADERS, format_table, metrics_row, print_report
from pricer.task.items import DataSpec, refuse_single_file, resolve_source
from pricer.task.load import load_items


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
        results, fields = _run_served(args, given, items)
    else:
        widths = args.bits or OPTION["bits"].default_in(CLI)
        if args.save_run:  # before the models run: a run that could not be saved would be lost
            _refuse_foreign(args.save_run, [f"{bits}bit" for bits in widths])
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
    from pricer.engines.predict import LLMPredictor
    from pricer.engines.transformers.loading import load_model
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
    from pricer.store.baselines import write_run
    from pricer.store.fingerprint import split_fields

    targets = _refuse_foreign(path, [flat.get("width") for flat in fields])  # all of them are stored, or none
    for result, flat, target in zip(results, fields, targets):
        write_run(target, run=result, fingerprint=split_fields({k: v for k, v in flat.items() if k != "width"}),
                  reason="run saved by pricer eval --save-run", previous=None)
        print(f"run saved to {target}")


def _refuse_foreign(path: Path, widths: Sequence[str | None]) -> list[Path]:
    """Where each width's run is saved (PATH itself for one, PATH-<width>.json for several); OptionError naming every
    one that is an existing file other than a run pricer stored."""
    from pricer.store.baselines import foreign_file

    targets = [path if len(widths) == 1 else path.with_name(f"{path.stem}-{width}{path.suffix}") for width in widths]
    foreign = [f"{target}: {problem}" for target in targets if (problem := foreign_file(target))]
    if foreign:
        raise OptionError(f"--save-run: {'; '.join(foreign)}")
    return targets


def _run_served(args: argparse.Namespace, given: Mapping[str, Any],
                items) -> tuple[list[RunResult], list[dict[str, Any]]]:
    """Each width's served model, asked over HTTP (pricer.engines.endpoint): its run and its fingerprint's fields."""
    from pricer.engines.endpoint.config import endpoint_config
    from pricer.engines.endpoint.predictor import EndpointPredictor

    try:
        config = endpoint_config(vars(args), deterministic=False, given=given, flag=lambda name: OPTION[name].cli)
    except argparse.ArgumentTypeError as exc:
        raise OptionError(str(exc)) from None
    predictors = [EndpointPredictor(config, width=width) for width, _ in config.urls]
    results = [evaluate(predictor, items) for predictor in predictors]
    for result in results:
        _show(result, args)
    # After the run: the fields name what the server said it serves. The width names the file of several.
    return results, [{**p.fields(), "width": width} for p, (width, _) in zip(predictors, config.urls)]


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
