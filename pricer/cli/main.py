"""The `pricer` command line: parse options, delegate to the library, print the course's report."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pricer.cli.judge_commands import run_accept, run_compare, run_ladder, run_power
from pricer.cli.html_command import run_report
from pricer.cli.report_commands import run_history, run_results
from pricer.cli.run_commands import run_eval, run_finetune
from pricer.engines import cpu_threads
from pricer.errors import PricerError
from pricer.options import parsers as options
from pricer.options.arguments import arguments
from pricer.options.option import CLI
from pricer.options.table import OPTIONS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pricer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (_eval_command, _history_command, _finetune_command, _results_command, _compare_command,
                        _accept_command, _power_command, _ladder_command, _report_command):
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
    _add_options(power, "power")  # --data: how many items its test split holds, to say what they can detect
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


def _report_command(commands: argparse._SubParsersAction) -> None:
    rep = commands.add_parser(
        "report",
        help="the gate's HTML report from saved runs: every item, both answers, the charts and the history",
        description="Judge each saved run (pytest --pricer-save-runs DIR, pricer eval --save-run PATH) against the "
        "stored baseline at the same place under --baselines (the anchor kept in it too, and with --against the "
        "baseline at a git ref), and write one self-contained HTML file that opens offline: per run and comparison "
        "the verdict, the measures and what changed; every item's answers, sortable and filterable; interactive "
        "charts; the accuracy and latency histories. Exit 0: every run passed; 1: one did not; 2: bad input.",
    )
    rep.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                     help="saved runs: files, or folders searched for *.json (placed as under the baselines folder)")
    _add_options(rep, "report")
    _add_gate_settings(rep)
    rep.set_defaults(run=run_report)


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


if __name__ == "__main__":
    sys.exit(main())
