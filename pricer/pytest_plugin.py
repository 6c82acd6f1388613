"""pricer's pytest plugin: options, markers, the per-width fixtures and the end-of-run summary."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pricer import options, workers

MARKERS = {
    "eval": "accuracy gate: runs a model over the test items and compares with stored baselines",
    "benchmark": "timing with pytest-benchmark; run with -m benchmark",
    "gpu": "needs a CUDA GPU; skipped without one",
}
# (option, ini name, parser or None for text, default, metavar, help)
OPTIONS: list[tuple[str, str, Callable[[str], Any] | None, Any, str, str]] = [
    ("--pricer-data", "pricer_data", None, None, "SOURCE",
     "dataset id, folder or .jsonl/.csv/.parquet file. Default: $PRICER_DATA, else ed-donner/pricer-data"),
    ("--pricer-split", "pricer_split", None, "test", "NAME", "split of a dataset folder to score (a single file "
     "is one split and takes none). Default: %(default)r"),
    ("--pricer-n", "pricer_n", options.positive_int("--pricer-n"), 250, "N",
     "score the first N items. Default: %(default)r"),
    ("--pricer-template", "pricer_template", options.template("--pricer-template"), None, "TEMPLATE",
     "prompt template over the data's columns, not price; \\n and \\t are a newline and a tab. "
     "Default: the text column"),
    ("--pricer-model", "pricer_model", None, "default", "ID_OR_PATH", "causal LM to gate. Default: %(default)r"),
    ("--pricer-predictor", "pricer_predictor", options.choice("--pricer-predictor", ("constant", "linear", "bow",
     "random-forest")), None, "NAME", "gate a classic predictor instead of an LLM. Default: none"),
    ("--pricer-bits", "pricer_bits", options.bits_list("--pricer-bits"), (4, 8, 16, 32), "B[,B...]",
     "bit widths to gate. Default: 4,8,16,32"),
    ("--pricer-adapter", "pricer_adapter", options.existing_path("--pricer-adapter"), None, "DIR",
     "LoRA adapter folder applied to the model. Default: none"),
    ("--pricer-device", "pricer_device", options.choice("--pricer-device", ("cpu", "cuda")), None, "DEVICE",
     "cpu or cuda. Default: cuda when available"),
    ("--pricer-batch-size", "pricer_batch_size", options.positive_int("--pricer-batch-size"), None, "N",
     "fixed batches of N prompts in input order. Default: the batching the width's baseline was made with, "
     "else a token budget"),
    ("--pricer-token-budget", "pricer_token_budget", options.positive_int("--pricer-token-budget"), None, "TOKENS",
     "prompts sorted by length fill each batch up to TOKENS padded tokens. Default: the baseline's batching, else "
     "1536 on CPU, 32768 on CUDA"),
    ("--pricer-baseline-class", "pricer_baseline_class", options.hardware_class("--pricer-baseline-class"), None,
     "CLASS", "gate against the baselines of another hardware class (e.g. cuda-bfloat16) with the cross-class "
     "rule. Default: this machine's class"),
    ("--pricer-baselines", "pricer_baselines", None, "baselines", "DIR",
     "folder of stored baselines, relative to the rootdir. Default: %(default)r"),
    ("--pricer-reason", "pricer_reason", None, None, "TEXT", "why baselines are rewritten (with --update-baselines)"),
    ("--pricer-tolerance", "pricer_tolerance", options.share("--pricer-tolerance"), 0.08, "SHARE",
     "worsening of Error (its 5%%-trimmed mean per-item change) tolerated even when significant, as a share of "
     "the baseline's Error (0.08 or 8%%). Default: %(default)r"),
    ("--pricer-tolerance-dollars", "pricer_tolerance_dollars", options.non_negative_float(
     "--pricer-tolerance-dollars"), 0.0, "DOLLARS", "worsening tolerated in dollars; the larger tolerance wins. "
     "Default: %(default)r"),
    ("--pricer-log-tolerance", "pricer_log_tolerance", options.share("--pricer-log-tolerance"), 0.12, "SHARE",
     "worsening of the mean log error |log(guess+1) - log(truth+1)| tolerated even when significant, as a share "
     "of the baseline's (0.12 or 12%%). Default: %(default)r"),
    ("--pricer-hits-tolerance", "pricer_hits_tolerance", options.share("--pricer-hits-tolerance"), 0.04, "POINTS",
     "drop of Hits tolerated even when significant, in points (0.04 or 4%%). Default: %(default)r"),
    ("--pricer-unparsed-tolerance", "pricer_unparsed_tolerance", options.share("--pricer-unparsed-tolerance"), 0.01,
     "SHARE", "rise of completions without a price tolerated even when significant, as a share of the items. "
     "Default: %(default)r"),
    ("--pricer-alpha", "pricer_alpha", options.significance("--pricer-alpha"), 0.05, "P",
     "significance level of the paired tests, Holm-corrected over the measures. Default: %(default)r"),
    ("--pricer-max-error", "pricer_max_error", options.non_negative_float("--pricer-max-error"), None, "DOLLARS",
     "fail when Error is above this. Default: no limit"),
    ("--pricer-min-hits", "pricer_min_hits", options.share("--pricer-min-hits"), None, "SHARE",
     "fail when Hits is below this. Default: no limit"),
    ("--pricer-max-unparsed", "pricer_max_unparsed", options.share("--pricer-max-unparsed"), None, "SHARE",
     "fail when more completions than this have no price. Default: no limit"),
    ("--pricer-max-tax", "pricer_max_tax", options.share("--pricer-max-tax"), None, "SHARE",
     "fail when a width's Error exceeds the 32-bit Error by surely more than this share. Default: report only"),
    ("--pricer-history", "pricer_history", None, None, "PATH", "append each gated width's metrics, commit and "
     "machine to this JSON Lines file (relative to the ini file), read by `pricer history`. Default: none"),
    ("--pricer-save-runs", "pricer_save_runs", None, None, "DIR", "store each width's run in DIR (relative to the "
     "ini file; the baseline format) for `pricer ladder DIR...` over CI jobs that gate one width each. Default: none"),
    ("--pricer-bench-items", "pricer_bench_items", options.positive_int("--pricer-bench-items"), 8, "N",
     "benchmarks time the first N items' prompts as one batch. Default: %(default)r"),
    ("--pricer-bench-rounds", "pricer_bench_rounds", options.positive_int("--pricer-bench-rounds"), None, "N",
     "timed rounds per benchmark, after warming up until the rounds settle. Default: as pytest-benchmark picks "
     "them, at least --benchmark-min-rounds (5), more to fill --benchmark-max-time"),
]
SETTINGS_KEY = pytest.StashKey["EvalSettings"]()
SESSION_KEY = pytest.StashKey["EvalSession"]()
VERDICTS_KEY = pytest.StashKey[dict[str, bool]]()  # width -> gate passed, for the accuracy history
HISTORY_NOTE_KEY = pytest.StashKey[tuple[str, bool]]()  # (line for the summary, whether it is an error)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pricer", "pricer: accuracy gate for price-predicting LLMs")
    for flag, ini, parse, default, metavar, help_text in OPTIONS:
        group.addoption(flag, dest=ini, type=parse, default=None, metavar=metavar,
                        help=help_text.replace("%(default)r", repr(default)))
        parser.addini(ini, help=f"as {flag}", default=None)
    group.addoption("--update-baselines", action="store_true", default=False,
                    help="rewrite the baselines from this run (needs --pricer-reason); the run still fails")


def pytest_configure(config: pytest.Config) -> None:
    for name, help_text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")
    # Checked now: a usage error raised during collection would show as a collection error with a traceback.
    config.stash[SETTINGS_KEY] = _settings(config)
    config.stash[VERDICTS_KEY] = {}
    # Under xdist, workers relay their results to the controller; --pricer-save-runs stores runs for `pricer ladder`.
    save_runs = _option(config, "pricer_save_runs")
    workers.register(config, session=lambda: config.stash.get(SESSION_KEY, None),
                     new_session=lambda: eval_session(config, warn=False), verdicts=config.stash[VERDICTS_KEY],
                     settings=config.stash[SETTINGS_KEY],
                     save_runs=_project_root(config) / save_runs if save_runs else None)


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which turns a missing --dist into "load"
def pytest_cmdline_main(config: pytest.Config) -> None:
    workers.default_to_loadgroup(config.option)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Iterator[None]:
    workers.group_by_width(config, items)  # before xdist's hook, which adds each test's group to its node id
    yield
    workers.repair_group_ids(config, items)


def pytest_collection_finish(session: pytest.Session) -> None:
    workers.warn_about_distribution(session.config, session.items)


@pytest.hookimpl(optionalhook=True)  # pytest-benchmark's hook; absent under `-p no:benchmark`
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Saved benchmark runs also record the GPU (name, memory) and the CPU features pricer fingerprints."""
    from pricer.machines import add_machine_details

    add_machine_details(machine_info)


def _option(config: pytest.Config, ini: str) -> Any:
    """One option's value (already checked by _settings at configure)."""
    flag, _, parse, default, _, _ = next(row for row in OPTIONS if row[1] == ini)
    return _value(config, flag, ini, parse, default)


def _value(config: pytest.Config, flag: str, ini: str, parse: Callable[[str], Any] | None, default: Any) -> Any:
    """Command line first, then the ini file, then the default; ini values pass the same parser."""
    value = config.getoption(ini)
    if value is not None:
        return value
    raw = config.getini(ini)
    if raw in (None, ""):
        return default
    try:
        return parse(raw) if parse else raw
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini {ini}: {exc}") from None


def _settings(config: pytest.Config):  # -> pricer.session.EvalSettings
    """Every option's value, checked: bad values stop the run before collection with a one-line usage error."""
    from pricer.data import DataSpec, resolve_source
    from pricer.gate import GateConfig
    from pricer.session import EvalSettings

    v = {ini: _value(config, flag, ini, parse, default) for flag, ini, parse, default, _, _ in OPTIONS}
    update = config.getoption("update_baselines")
    if update and not (v["pricer_reason"] or "").strip():
        raise pytest.UsageError("--update-baselines needs --pricer-reason 'why the baselines move'")
    _refuse_ignored(config, v)
    return EvalSettings(
        data=DataSpec(source=resolve_source(v["pricer_data"]), split=v["pricer_split"], n=v["pricer_n"],
                      template=v["pricer_template"]),
        model=v["pricer_model"], predictor=v["pricer_predictor"], bits=v["pricer_bits"],
        adapter=v["pricer_adapter"], device=v["pricer_device"], batch_size=v["pricer_batch_size"],
        token_budget=v["pricer_token_budget"], baseline_class=v["pricer_baseline_class"],
        baselines=Path(v["pricer_baselines"]), update=update, reason=v["pricer_reason"],
        gate=GateConfig(tolerance_share=v["pricer_tolerance"], tolerance_dollars=v["pricer_tolerance_dollars"],
                        log_tolerance=v["pricer_log_tolerance"], hits_tolerance=v["pricer_hits_tolerance"],
                        unparsed_tolerance=v["pricer_unparsed_tolerance"],
                        alpha=v["pricer_alpha"], max_error=v["pricer_max_error"], min_hits=v["pricer_min_hits"],
                        max_unparsed=v["pricer_max_unparsed"]),
        max_tax_share=v["pricer_max_tax"],
        rerun_args=_rerun_args(config.invocation_params.args),
    )


def _project_root(config: pytest.Config) -> Path:
    # Baselines are relative to the project's ini file (else where pytest was started), not the rootdir:
    # pytest guesses the rootdir before plugin options are known, so `--pricer-data DIR` can move it.
    return config.inipath.parent if config.inipath else config.invocation_params.dir


def _refuse_ignored(config: pytest.Config, v: dict[str, Any]) -> None:
    """Paths that cannot be used and options the run would ignore: usage errors now, not tracebacks at the end."""
    from pricer.data import resolve_source, single_file

    root = _project_root(config)
    checks = [(options.folder("--pricer-baselines"), v["pricer_baselines"])]
    if v["pricer_history"]:
        checks.append((options.output_file("--pricer-history"), v["pricer_history"]))
    for parse, value in checks:
        try:
            parse(str(root / Path(value).expanduser()))
        except argparse.ArgumentTypeError as exc:
            raise pytest.UsageError(str(exc)) from None
    if v["pricer_predictor"]:
        given = [flag for flag, ini in (("--pricer-bits", "pricer_bits"), ("--pricer-adapter", "pricer_adapter"))
                 if config.getoption(ini) is not None]  # an ini pin of bits may serve other runs: only the command line
        if given:
            raise pytest.UsageError(f"{given[0]} applies to an LLM; --pricer-predictor {v['pricer_predictor']} "
                                    "has no bits or adapter")
    split_given = config.getoption("pricer_split") is not None or config.getini("pricer_split") not in (None, "")
    if split_given and single_file(resolve_source(v["pricer_data"])):
        raise pytest.UsageError(f"--pricer-split {v['pricer_split']}: {resolve_source(v['pricer_data'])} is a single "
                                "file, which is one split; --pricer-split picks a split of a dataset folder")


def _rerun_args(args: Sequence[str]) -> tuple[str, ...]:
    """This run's arguments without the update options, to print a command that accepts its results."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--pricer-reason":
            skip = True
        elif arg != "--update-baselines" and not arg.startswith("--pricer-reason="):
            kept.append(arg)
    return tuple(kept)


def eval_session(config: pytest.Config, *, warn: bool = True):  # -> pricer.session.EvalSession
    """The session's one EvalSession, made on first use so plain test runs never build it (the xdist controller's
    is made with warn=False: its workers warn)."""
    if SESSION_KEY not in config.stash:
        from pricer.session import SMALL_N, EvalSession

        settings = config.stash[SETTINGS_KEY]
        if warn and settings.data.n is not None and settings.data.n < SMALL_N:
            warnings.warn(f"--pricer-n {settings.data.n} is small: the gate can only catch large regressions",
                          UserWarning, stacklevel=1)
        config.stash[SESSION_KEY] = EvalSession(settings, root=_project_root(config))
    return config.stash[SESSION_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # One session-scoped parameter per width: pytest groups tests by it, so each width loads once.
    if "pricer_width" in metafunc.fixturenames:
        widths = eval_session(metafunc.config).settings.widths
        metafunc.parametrize("pricer_width", widths, ids=widths, indirect=True, scope="session")


@pytest.fixture(scope="session")
def pricer_session(request: pytest.FixtureRequest):
    """The EvalSession: settings, items, models and runs of this pytest session."""
    return eval_session(request.config)


@pytest.fixture(scope="session")
def pricer_width(request: pytest.FixtureRequest, pricer_session) -> Iterator[str]:
    """The width under test ("4bit"... or a classic predictor's name); its model is freed after its tests."""
    yield request.param
    pricer_session.release(request.param)


@pytest.fixture(scope="session")
def pricer_items(pricer_session):
    """The scored items, loaded once."""
    return pricer_session.items


@pytest.fixture(scope="session")
def pricer_model(pricer_session, pricer_width: str):
    """The width's loaded model (loaded once per session)."""
    if pricer_session.settings.predictor:
        pytest.skip("a classic predictor has no model to load")
    return pricer_session.model(pricer_width)


@pytest.fixture(scope="session")
def pricer_bench_items(request: pytest.FixtureRequest, pricer_items) -> list:
    """The items whose prompts a benchmark times as one batch: the first --pricer-bench-items."""
    return pricer_items[: _option(request.config, "pricer_bench_items")]


@pytest.fixture(scope="session")
def pricer_bench_rounds(request: pytest.FixtureRequest) -> int | None:
    """Timed rounds per benchmark (--pricer-bench-rounds); None: pytest-benchmark's own options decide."""
    return _option(request.config, "pricer_bench_rounds")


@pytest.fixture(scope="session")
def pricer_run(pricer_session, pricer_width: str):
    """The width's predictions and scores, computed once and shared by every test of that width."""
    from pricer.errors import PricerError

    try:
        return pricer_session.run(pricer_width)
    except PricerError as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


class Gate:
    """What an eval test calls: `pricer_gate.check()` fails the test with the verdict's message."""

    def __init__(self, session, width: str, *, verdicts: dict[str, bool] | None = None) -> None:
        self.session, self.width = session, width
        self.verdicts = {} if verdicts is None else verdicts  # width -> passed, for --pricer-history

    def check(self) -> None:
        __tracebackhide__ = True
        from pricer.errors import PricerError

        try:
            self._note_detectability()
            verdict = self.session.check(self.width)
        except PricerError as exc:
            problem = str(exc)
        else:
            self.verdicts[self.width] = verdict.passed
            if verdict.passed:
                print(verdict.message())
                return
            accept = self.session.accept_command(self.width, reason="why")
            problem = f"{self.session.baseline_path(self.width)}: {verdict.message(accept=accept)}"
        pytest.fail(problem, pytrace=False)

    def _note_detectability(self) -> None:
        """Before gating: the smallest worsening this n and this baseline can reveal."""
        from pricer.errors import BaselineError

        if self.session.settings.update or not self.session.baseline_path(self.width).exists():
            return
        try:
            found = self.session.detectability(self.width)
        except BaselineError:
            return  # check() reports it and records it for the summary
        note = (f"{self.width}: this gate detects at 80% power a worsening of "
                + ", ".join(f"{d.measure} {d.text}" for d in found.measures))
        print(note)
        if found.note:
            print(f"{self.width}: {found.note}")
        if found.too_coarse:
            warnings.warn(f"{note}: {found.too_coarse}", UserWarning, stacklevel=3)


@pytest.fixture
def pricer_gate(request: pytest.FixtureRequest, pricer_session, pricer_width: str) -> Gate:
    """The gate for this width: compare its run with the stored baseline."""
    return Gate(pricer_session, pricer_width, verdicts=request.config.stash[VERDICTS_KEY])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The ladder of this session's runs (under xdist, of every worker's); with --pricer-history, append every gated
    width's metrics; a bad history file fails the run."""
    config = session.config
    if SESSION_KEY in config.stash and workers.finish(config, config.stash[SESSION_KEY]):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # under xdist no test gates the ladder: the controller does
    path = _option(config, "pricer_history")
    # Under xdist the controller appends every worker's widths at once: workers never write the history.
    if not path or workers.worker_id(config) or SESSION_KEY not in config.stash or not config.stash[VERDICTS_KEY]:
        return
    from pricer.errors import PricerError
    from pricer.accuracy_history import record_session

    eval_run = config.stash[SESSION_KEY]
    try:
        config.stash[HISTORY_NOTE_KEY] = (record_session(eval_run.root / path, eval_run, config.stash[VERDICTS_KEY]), False)
    except PricerError as exc:
        config.stash[HISTORY_NOTE_KEY] = (str(exc), True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if HISTORY_NOTE_KEY in config.stash:
        note, failed = config.stash[HISTORY_NOTE_KEY]
        terminalreporter.section("pricer history")
        terminalreporter.line(note, red=failed)
    if SESSION_KEY not in config.stash:
        return
    session = config.stash[SESSION_KEY]
    if not session.outcomes:
        return
    from pricer.baselines import unused_baselines

    terminalreporter.section("pricer gate")
    for outcome in session.outcomes:
        terminalreporter.line(outcome.text, red=not outcome.passed, green=outcome.passed)
    for line, failed in workers.summary_lines(config):
        terminalreporter.line(line, red=failed)
    folder = session.baseline_path("x").parent  # this model's baselines of this hardware class
    unused = unused_baselines(folder, session.used_baselines)
    if unused and not session.settings.predictor:
        terminalreporter.line(f"{len(unused)} stored baselines were not compared in this run:")
        for path in unused:
            terminalreporter.line(f"  {path}")
    terminalreporter.line(workers.loads_line(config, session))
