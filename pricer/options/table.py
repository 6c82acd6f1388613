"""Every option of the `pricer` command and of the pytest plugin, declared once: its flag in each, ini key, parser,
default and help. Both entry points build their parsers from this table."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pricer.engines.classic import CLASSIC_NAMES
from pricer.engines.device import DTYPES
from pricer.engines.endpoint.config import DEFAULT_CONCURRENCY, DEFAULT_DEADLINE, DEFAULT_READ_TIMEOUT, endpoint_urls
from pricer.engines.finetune.config import TRAIN_BITS, FinetuneConfig
from pricer.engines.predict import CPU_TOKEN_BUDGET, GPU_TOKEN_BUDGET
from pricer.engines.transformers.default_model import DEFAULT_MODEL
from pricer.engines.widths import BITS, REFERENCE, bits_of
from pricer.gate.tail import CROSS_CLASS_BUDGET
from pricer.gate.verdict import GateConfig
from pricer.history.accuracy_history import DEFAULT_ACCURACY
from pricer.history.benchmark_runs import DEFAULT_STORAGE
from pricer.history.changes import LATENCY_MIN_CHANGE
from pricer.options import parsers as options
from pricer.options.option import Factory, Option
from pricer.task.items import DATA_ENV, DEFAULT_DATASET, DEFAULT_N, DEFAULT_SPLIT

# Where a failing width's chart of what moved goes without --pricer-charts, beside the ini file; the folder ignores
# itself in git (a .gitignore of `*`), as .pytest_cache does.
DEFAULT_CHARTS = ".pricer/charts"
DEVICES = ("cpu", "cuda")


def _one_of(*choices: str) -> Factory:
    return lambda flag: options.choice(flag, choices)


def _gate(field: str, **row: Any) -> Option:
    """A row setting a GateConfig field, whose default it takes: the tolerances are measured there."""
    return Option(gate=field, default=_GATE[field], **row)


_GATE = {f.name: f.default for f in dataclasses.fields(GateConfig)}
_TUNE = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}
_TRIM = f"{_GATE['error_trim']:.0%}"

# In the order each help lists them. A row taken by several `pricer` commands means the same in each; where a flag
# means something else in another command (finetune's --bits), that is another row.
OPTIONS: tuple[Option, ...] = (
    Option(name="data", cli="--data", commands=("eval", "results", "finetune", "power"), group="data", plugin="--pricer-data",
           metavar="SOURCE", shown=f"${DATA_ENV}, else {DEFAULT_DATASET}", example="data",
           help="Hugging Face dataset id, or a local folder / .jsonl / .csv / .parquet file"),
    Option(name="split", cli="--split", commands=("eval",), group="data", plugin="--pricer-split", metavar="NAME",
           default=DEFAULT_SPLIT, help="split of a dataset folder or hub id to score (a single file is one split and "
           "takes none)"),
    Option(name="n", cli="--n", commands=("eval", "results"), group="data", plugin="--pricer-n", metavar="N",
           parse=options.positive_int, default=DEFAULT_N, help="score the first N items of the split, in order"),
    Option(name="template", cli="--template", commands=("eval",), group="data", plugin="--pricer-template",
           metavar="TEMPLATE", parse=options.template, shown="the rows' text column",
           help="build prompts from other columns (not price), e.g. 'How much does this cost to the nearest dollar?"
           "\\n\\n{{title}}\\n{{description}}\\n\\nPrice is $'; \\n and \\t are a newline and a tab"),
    Option(name="train_split", cli="--train-split", commands=("eval",), group="data", metavar="NAME",
           default="train", help="split the classic predictors train on"),
    Option(name="predictor", cli="--predictor", commands=("eval",), group="predictor", plugin="--pricer-predictor",
           metavar="NAME", parse=_one_of(*CLASSIC_NAMES),
           help=f"a classic predictor instead of an LLM: {', '.join(CLASSIC_NAMES)}"),
    Option(name="model", cli="--model", commands=("eval", "results", "finetune"), group="predictor",
           plugin="--pricer-model", metavar="ID_OR_PATH", default=DEFAULT_MODEL,
           help="a causal LM: 'default' (the bundled SmolLM2-135M-Instruct), a Hugging Face id or a local folder"),
    Option(name="bits", cli="--bits", commands=("eval",), group="LLM", plugin="--pricer-bits", metavar="B[,B...]",
           parse=options.bits_list, default=BITS, lacks="bits", ini_list=True,
           cli_default=(bits_of(REFERENCE),),  # a look at one model: the reference width; the gate compares them all
           help="bit widths, one after another: 4 (NF4), 8 (LLM.int8), 16, 32"),
    Option(name="adapter", cli="--adapter", commands=("eval",), group="LLM", plugin="--pricer-adapter",
           metavar="DIR", parse=options.existing_path, lacks="adapter",
           help="a LoRA adapter folder (peft) to apply to the model"),
    Option(name="device", cli="--device", commands=("eval", "finetune"), group="LLM", plugin="--pricer-device",
           metavar="DEVICE", parse=_one_of(*DEVICES), lacks="device", shown="cuda when available, else cpu",
           help=" or ".join(DEVICES)),
    # `pricer eval` has no baseline whose batching it could reuse.
    Option(name="batch_size", cli="--batch-size", commands=("eval",), group="LLM", plugin="--pricer-batch-size",
           metavar="N", parse=options.positive_int, lacks="batching",
           shown="the batching the width's baseline was made with, else a token budget", cli_shown="a token budget",
           help="fixed batches of N prompts in input order (part of the recorded batching policy)"),
    Option(name="token_budget", cli="--token-budget", commands=("eval",), group="LLM",
           plugin="--pricer-token-budget", metavar="TOKENS", parse=options.positive_int, lacks="batching",
           shown=f"the baseline's batching, else {CPU_TOKEN_BUDGET} on CPU, {GPU_TOKEN_BUDGET} on CUDA",
           cli_shown=f"{CPU_TOKEN_BUDGET} on CPU, {GPU_TOKEN_BUDGET} on CUDA",
           help="prompts sorted by length fill each batch up to TOKENS padded tokens"),
    # Served models (pricer.engines.endpoint, docs/engines.md).
    Option(name="endpoint", cli="--endpoint", commands=("eval",), group="predictor", plugin="--pricer-endpoint",
           metavar="[WIDTH=]URL", parse=endpoint_urls, nargs="+", ini_list=True, shown="the model is loaded here",
           help="ask a served model's OpenAI-compatible /v1/completions (vLLM, SGLang, TGI, llama.cpp, transformers "
           "serve) instead of loading it: WIDTH=URL names the width the server holds (4bit=http://host:8000/v1), a "
           "bare URL is gated as 32bit; give it again for a ladder over several servers"),
    Option(name="endpoint_model", cli="--endpoint-model", commands=("eval",), group="endpoint",
           plugin="--pricer-endpoint-model", metavar="ID", shown="the one model the server serves",
           help="the model id the server must serve, checked against its /v1/models before the first request"),
    Option(name="concurrency", cli="--concurrency", commands=("eval",), group="endpoint",
           plugin="--pricer-concurrency", metavar="N", parse=options.positive_int, default=DEFAULT_CONCURRENCY,
           help="requests in flight at once to a served model (recorded in the fingerprint)"),
    Option(name="endpoint_timeout", plugin="--pricer-endpoint-timeout", metavar="SECONDS",
           parse=options.positive_float, default=DEFAULT_READ_TIMEOUT,
           help="seconds to wait for one answer before asking again (a connection gets 10 s)"),
    Option(name="endpoint_deadline", plugin="--pricer-endpoint-deadline", metavar="SECONDS",
           parse=options.positive_float, default=DEFAULT_DEADLINE, help="seconds for a served width's whole run, its "
           "health and identity checks included; items still unanswered then count as no answer, which fails the run"),
    Option(name="endpoint_deterministic", plugin="--pricer-endpoint-deterministic",
           help="declare that the server runs batch-invariant (VLLM_BATCH_INVARIANT=1, SGLang "
           "--enable-deterministic-inference); recorded in the fingerprint"),
    Option(name="endpoint_recheck", plugin="--pricer-endpoint-recheck", metavar="N", parse=options.positive_int,
           shown="off", help="ask the first N items of a served model again at the end under another batch mix, and "
           "report how many answers changed"),
    Option(name="baseline_class", plugin="--pricer-baseline-class", metavar="CLASS", parse=options.hardware_class,
           shown="this machine's class", help="gate against the baselines of another hardware class (e.g. "
           "cuda-bfloat16) with the cross-class rule"),
    Option(name="baselines", plugin="--pricer-baselines", metavar="DIR", parse=options.folder, relative=True,
           default="baselines", example="baselines",
           help="folder of stored baselines, relative to the ini file"),
    Option(name="baseline_name", plugin="--pricer-baseline-name", metavar="NAME", parse=options.baseline_name,
           shown="the model's folder name, then '-' and the adapter's", example="price-model",
           help="the folder under the baselines folder this model's baselines live in: keep it when a merge changes "
           "the model, adapter or prompt, so the change is judged against the baseline it replaces"),
    Option(name="reason", plugin="--pricer-reason", metavar="TEXT",
           help="why the baselines are rewritten (with --update-baselines)"),
    Option(name="accept_worse", plugin="--pricer-accept-worse", metavar="TRADE-OFF",
           help="with --update-baselines: store a run the gate judges WORSE than the baseline it replaces, naming "
           "the trade-off (e.g. '4-bit to halve memory'); it is kept in the baseline beside the reason, and later "
           "drift is measured from this run"),
    Option(name="against", plugin="--pricer-against", metavar="REF", parse=options.git_ref,
           help="also judge each width against its baseline as committed at this git ref (e.g. origin/main), so a "
           "change that rewrites its own baseline is still judged against the target branch's"),
    _gate("tolerance_share", name="tolerance", cli="--tolerance", commands=("compare",), plugin="--pricer-tolerance",
          metavar="SHARE", parse=options.share,
          help=f"worsening of Error (its {_TRIM}-trimmed mean per-item change) tolerated even when significant, as a "
          "share of the baseline's Error"),
    _gate("tolerance_dollars", name="tolerance_dollars", cli="--tolerance-dollars", commands=("compare",),
          plugin="--pricer-tolerance-dollars", metavar="DOLLARS", parse=options.non_negative_float,
          help="worsening of Error tolerated in dollars; the larger tolerance wins"),
    _gate("log_tolerance", name="log_tolerance", cli="--log-tolerance", commands=("compare",),
          plugin="--pricer-log-tolerance", metavar="SHARE", parse=options.share,
          help="worsening of the mean log error |log(guess+1) - log(truth+1)| tolerated even when significant, as "
          "a share of the baseline's"),
    _gate("hits_tolerance", name="hits_tolerance", cli="--hits-tolerance", commands=("compare",),
          plugin="--pricer-hits-tolerance", metavar="POINTS", parse=options.share,
          help="drop of Hits tolerated even when significant, in points"),
    _gate("unparsed_tolerance", name="unparsed_tolerance", cli="--unparsed-tolerance", commands=("compare",),
          plugin="--pricer-unparsed-tolerance", metavar="SHARE", parse=options.share,
          help="rise of completions without a price tolerated even when significant, as a share of the items"),
    _gate("tail_budget", name="tail_budget", cli="--tail-budget", commands=("compare",),
          plugin="--pricer-tail-budget", metavar="N", parse=options.budget,
          help="absurd answers (above {tail_factor} x the baseline's answer for their item and twice their truth) a "
          "run may add and pass, plus one per few answers that got better; 'off' turns the tail rule off (across "
          f"classes at least {CROSS_CLASS_BUDGET})"),
    _gate("tail_factor", name="tail_factor", cli="--tail-factor", commands=("compare",),
          plugin="--pricer-tail-factor", metavar="X", parse=options.factor,
          help="how many times the baseline's answer for its item an answer must be to be absurd"),
    _gate("alpha", name="alpha", cli="--alpha", commands=("compare",), plugin="--pricer-alpha", metavar="P",
          parse=options.significance, help="significance level of the paired tests, Holm-corrected over the measures"),
    _gate("max_error", name="max_error", plugin="--pricer-max-error", metavar="DOLLARS",
          parse=options.non_negative_float, shown="no limit", help="fail when Error is above this"),
    _gate("min_hits", name="min_hits", plugin="--pricer-min-hits", metavar="SHARE", parse=options.share,
          shown="no limit", help="fail when Hits is below this"),
    _gate("max_unparsed", name="max_unparsed", plugin="--pricer-max-unparsed", metavar="SHARE", parse=options.share,
          shown="no limit", help="fail when more completions than this have no price"),
    Option(name="max_tax", cli="--max-tax", commands=("ladder",), plugin="--pricer-max-tax", metavar="SHARE",
           parse=options.share, shown="report only", example=0.5,
           help="fail when a width's Error exceeds the 32-bit Error by surely more than this share"),
    Option(name="history", plugin="--pricer-history", metavar="PATH", parse=options.output_file, relative=True,
           example=str(DEFAULT_ACCURACY), help="append each gated width's metrics, commit and machine to this JSON "
           "Lines file (relative to the ini file), read by `pricer history`"),
    Option(name="save_runs", plugin="--pricer-save-runs", metavar="DIR", parse=options.folder, relative=True,
           example="runs", help="store each width's run in DIR (relative to the ini file; the baseline format) for "
           "`pricer ladder DIR...` over CI jobs that gate one width each"),
    Option(name="summary", plugin="--pricer-summary", metavar="PATH", parse=options.summary_file, relative=True,
           help="append the gate's verdicts as Markdown to this file (relative to the ini file), e.g. "
           "\"$GITHUB_STEP_SUMMARY\": per width the measures, the items that moved most, the chart and the accepting "
           "command"),
    Option(name="html", plugin="--pricer-html", metavar="PATH", parse=options.html_file, relative=True,
           example="pricer-report.html", help="write the gate's report as one self-contained HTML file (relative to "
           "the ini file) that opens offline: per width and comparison the verdict, the measures and what changed; "
           "every item's prompt and both answers, sortable and filterable; interactive charts; the histories"),
    Option(name="charts", plugin="--pricer-charts", metavar="DIR", parse=options.folder, relative=True,
           shown=f"only failing widths', in {DEFAULT_CHARTS}", help="draw every width's chart of what moved "
           "(baseline guess against new guess per item) in DIR (relative to the ini file)"),
    Option(name="bench_items", plugin="--pricer-bench-items", metavar="N", parse=options.positive_int, default=8,
           help="benchmarks time the first N items' prompts as one batch"),
    Option(name="bench_rounds", plugin="--pricer-bench-rounds", metavar="N", parse=options.positive_int,
           shown="as pytest-benchmark picks them, at least --benchmark-min-rounds (5), more to fill "
           "--benchmark-max-time", help="timed rounds per benchmark, after warming up until the rounds settle"),
    Option(name="update_baselines", plugin="--update-baselines",
           help="rewrite the baselines from this run (needs --pricer-reason); the run still fails"),
    # `pricer` only, by command.
    Option(name="charts_dir", cli="--charts-dir", commands=("eval",), group="output", metavar="DIR",
           parse=options.folder, default="charts", help="folder for the scatter and running-error charts"),
    Option(name="no_charts", cli="--no-charts", commands=("eval",), group="output", help="write no charts"),
    Option(name="quiet", cli="--quiet", commands=("eval",), group="output",
           help="print only the title lines and the table"),
    Option(name="save_run", cli="--save-run", commands=("eval",), group="output", metavar="PATH",
           parse=options.run_file, help="store the run in the baseline format, for `pricer compare BASELINE PATH` "
           "and `pricer accept`; with several --bits, each width's run goes to PATH with -4bit... before its suffix"),
    Option(name="benchmark_storage", cli="--benchmark-storage", commands=("history", "report"), metavar="DIR",
           shown=f"{DEFAULT_STORAGE}, if it exists", help="pytest-benchmark's storage folder (or file://DIR)"),
    Option(name="accuracy_history", cli="--accuracy-history", commands=("history", "report"), metavar="PATH",
           parse=lambda flag: Path, nargs="+",
           shown=f"the project's pricer_history ini key, else {DEFAULT_ACCURACY}, if it exists; the project is the "
           "folder of the pytest ini file (pyproject.toml, pytest.ini...) at or above the current one, as for the "
           "plugin",
           help="JSON Lines written by `pytest -m eval --pricer-history PATH`; several files (the jobs of a CI matrix, "
           "one width each) are read as one history, the widths of one commit on one machine as one run"),
    Option(name="history_chart", cli="--chart", commands=("history",), metavar="PATH", parse=options.output_file,
           default="charts/history.png", help="where to write the chart (.png, .svg, .pdf)"),
    Option(name="min_change", cli="--min-change", commands=("history", "report"), metavar="SHARE", parse=options.share,
           default=LATENCY_MIN_CHANGE, help="smallest latency change that can count as significant; it must also "
           "pass the run-to-run spread of earlier runs on the machine"),
    Option(name="train_bits", cli="--bits", commands=("finetune",), metavar="B",
           parse=_one_of(*map(str, TRAIN_BITS)), default=str(_TUNE["bits"]),
           help="width of the frozen base: 4 (QLoRA), 16 or 32"),
    Option(name="out", cli="--out", commands=("finetune",), metavar="DIR", parse=options.folder, required=True,
           help="folder for the adapter and checkpoints"),
    Option(name="steps", cli="--steps", commands=("finetune",), metavar="N", parse=options.positive_int,
           default=_TUNE["steps"], help="optimizer steps (minutes on a CPU; 125 steps of 8 is one epoch of 998 items)"),
    Option(name="lr", cli="--lr", commands=("finetune",), metavar="X", parse=options.positive_float,
           default=_TUNE["lr"], help="peak learning rate"),
    Option(name="train_batch_size", cli="--batch-size", commands=("finetune",), metavar="N",
           parse=options.positive_int, default=_TUNE["batch_size"], help="items per step"),
    Option(name="rank", cli="--rank", commands=("finetune",), metavar="R", parse=options.positive_int,
           default=_TUNE["rank"], help="LoRA rank on every linear layer; alpha is 2R"),
    Option(name="seed", cli="--seed", commands=("finetune",), metavar="S", parse=lambda flag: int,
           default=_TUNE["seed"], help="seed of the initial adapter weights and the order of the items"),
    Option(name="checkpoint_every", cli="--checkpoint-every", commands=("finetune",), metavar="N",
           parse=options.positive_int, default=_TUNE["checkpoint_every"], help="steps between checkpoints"),
    Option(name="compute_dtype", cli="--compute-dtype", commands=("finetune",), metavar="DTYPE",
           parse=_one_of(*DTYPES), shown="float32 on CPU, the GPU's half type on CUDA", help="matmul dtype"),
    Option(name="resume", cli="--resume", commands=("finetune",),
           help="fail unless OUT/checkpoint exists (a run on an OUT with a checkpoint resumes it anyway)"),
    Option(name="train_data_split", cli="--split", commands=("finetune",), metavar="NAME", default="train",
           help="split to train on"),
    Option(name="results_adapter", cli="--adapter", commands=("results",), metavar="DIR",
           parse=options.existing_path, default=Path("adapters/smollm2-135m-pricer"),
           help="the fine-tuned adapter whose baselines to show"),
    Option(name="results_baselines", cli="--baselines", commands=("results", "report"), metavar="DIR",
           parse=options.folder,
           shown="baselines in the project (the folder of the pytest ini file at or above the current one, where the "
           "plugin reads them)", help="folder of stored baselines"),
    Option(name="hardware_class", cli="--hardware-class", commands=("results",), metavar="CLASS",
           shown="the only one stored, else this machine's",
           help="the class folder of the stored baselines to show, e.g. cpu-bfloat16"),
    Option(name="course", cli="--course", commands=("results",), metavar="PATH", parse=lambda flag: Path,
           shown="course-2024-tester-outputs/README.md beside the data folder, if there",
           help="the course's published table (a README.md)"),
    Option(name="results_chart", cli="--chart", commands=("results",), metavar="PATH", parse=options.output_file,
           default="charts/results.png", help="where to write the chart (.png, .svg, .pdf)"),
    Option(name="no_chart", cli="--no-chart", commands=("history", "results"), help="print the table only"),
    Option(name="cross_class", cli="--cross-class", commands=("compare",), help="RUN was made on another hardware "
           "class on purpose: use the cross-class rule (found by itself when RUN is a baseline of another class)"),
    Option(name="compare_summary", cli="--summary", commands=("compare",), metavar="PATH", parse=options.summary_file,
           help="append the verdict as Markdown to this file, e.g. \"$GITHUB_STEP_SUMMARY\""),
    Option(name="compare_chart", cli="--chart", commands=("compare",), metavar="PATH", parse=options.output_file,
           help="draw what moved, each item's baseline guess against RUN's (.png, .svg, .pdf)"),
    Option(name="report_out", cli="--out", commands=("report",), metavar="PATH", parse=options.html_file,
           default="pricer-report.html", help="the HTML file to write (a new one, or a report pricer wrote)"),
    Option(name="report_class", cli="--baseline-class", commands=("report",), metavar="CLASS",
           parse=options.hardware_class, shown="the run's own class folder",
           help="judge the runs against the baselines of this hardware class (e.g. cuda-bfloat16), with the "
           "cross-class rule"),
    Option(name="report_against", cli="--against", commands=("report",), metavar="REF", parse=options.git_ref,
           help="also judge each run against its baseline as committed at this git ref (e.g. origin/main)"),
    Option(name="report_data", cli="--data", commands=("report",), metavar="SOURCE",
           shown="none: a saved run keeps no prompt", help="the local data folder or file the runs were made from: "
           "each item's prompt is put back in the report"),
    Option(name="ladder_alpha", cli="--alpha", commands=("ladder",), metavar="P", parse=options.significance,
           default=_GATE["alpha"], help="significance level, Bonferroni-corrected over the widths"),
)
OPTION = {option.name: option for option in OPTIONS}
