"""pricer's pytest plugin: options, markers, the per-width fixtures and the end-of-run summary."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pricer import options

MARKERS = {
    "eval": "accuracy gate: runs a model over the test items and compares with stored baselines",
    "benchmark": "timing with pytest-benchmark; run with -m benchmark",
    "gpu": "needs a CUDA GPU; skipped without one",
}
# (option, ini name, parser or None for text, default, metavar, help)
OPTIONS: list[tuple[str, str, Callable[[str], Any] | None, Any, str, str]] = [
    ("--pricer-data", "pricer_data", None, None, "SOURCE",
     "dataset id, folder or .jsonl/.csv/.parquet file. Default: $PRICER_DATA, else ed-donner/pricer-data"),
    ("--pricer-split", "pricer_split", None, "test", "NAME", "split to score. Default: %(default)r"),
    ("--pricer-n", "pricer_n", options.positive_int("--pricer-n"), 250, "N",
     "score the first N items. Default: %(default)r"),
    ("--pricer-template", "pricer_template", None, None, "TEMPLATE", "prompt template over the data's columns. "
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
    ("--pricer-batch-size", "pricer_batch_size", options.positive_int("--pricer-batch-size"), 8, "N",
     "prompts per generate call. Default: %(default)r"),
    ("--pricer-baselines", "pricer_baselines", None, "baselines", "DIR",
     "folder of stored baselines, relative to the rootdir. Default: %(default)r"),
    ("--pricer-reason", "pricer_reason", None, None, "TEXT", "why baselines are rewritten (with --update-baselines)"),
    ("--pricer-tolerance", "pricer_tolerance", options.share("--pricer-tolerance"), 0.05, "SHARE",
     "worsening of Error tolerated even when significant, as 0.05 or 5%%. Default: %(default)r"),
    ("--pricer-tolerance-dollars", "pricer_tolerance_dollars", options.non_negative_float(
     "--pricer-tolerance-dollars"), 0.0, "DOLLARS", "worsening tolerated in dollars; the larger tolerance wins. "
     "Default: %(default)r"),
    ("--pricer-alpha", "pricer_alpha", options.share("--pricer-alpha"), 0.05, "P",
     "significance level of the paired test. Default: %(default)r"),
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
    ("--pricer-bench-items", "pricer_bench_items", options.positive_int("--pricer-bench-items"), 8, "N",
     "benchmarks time the first N items' prompts as one batch. Default: %(default)r"),
    ("--pricer-bench-rounds", "pricer_bench_rounds", options.positive_int("--pricer-bench-rounds"), 5, "N",
     "timed rounds per benchmark, after one warm-up round. Default: %(default)r"),
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


@pytest.hookimpl(optionalhook=True)  # pytest-benchmark's hook; absent under `-p no:benchmark`
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Saved benchmark runs also record the GPU (name, memory) and the CPU features pricer fingerprints."""
    from pricer.history import add_machine_details

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
    return EvalSettings(
        data=DataSpec(source=resolve_source(v["pricer_data"]), split=v["pricer_split"], n=v["pricer_n"],
                      template=v["pricer_template"]),
        model=v["pricer_model"], predictor=v["pricer_predictor"], bits=v["pricer_bits"],
        adapter=v["pricer_adapter"], device=v["pricer_device"], batch_size=v["pricer_batch_size"],
        baselines=Path(v["pricer_baselines"]), update=update, reason=v["pricer_reason"],
        gate=GateConfig(tolerance_share=v["pricer_tolerance"], tolerance_dollars=v["pricer_tolerance_dollars"],
                        alpha=v["pricer_alpha"], max_error=v["pricer_max_error"], min_hits=v["pricer_min_hits"],
                        max_unparsed=v["pricer_max_unparsed"]),
        max_tax_share=v["pricer_max_tax"],
        rerun_args=_rerun_args(config.invocation_params.args),
    )


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


def eval_session(config: pytest.Config):  # -> pricer.session.EvalSession
    """The session's one EvalSession, made on first use so plain test runs never build it."""
    if SESSION_KEY not in config.stash:
        from pricer.session import SMALL_N, EvalSession

        settings = config.stash[SETTINGS_KEY]
        if settings.data.n is not None and settings.data.n < SMALL_N:
            warnings.warn(f"--pricer-n {settings.data.n} is small: the gate can only catch large regressions",
                          UserWarning, stacklevel=1)
        # Baselines are relative to the project's ini file (else where pytest was started), not the rootdir:
        # pytest guesses the rootdir before plugin options are known, so `--pricer-data DIR` can move it.
        root = config.inipath.parent if config.inipath else config.invocation_params.dir
        config.stash[SESSION_KEY] = EvalSession(settings, root=root)
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
def pricer_bench_rounds(request: pytest.FixtureRequest) -> int:
    """Timed rounds per benchmark (--pricer-bench-rounds)."""
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
            mde, share, too_coarse = self.session.detectability(self.width)
        except BaselineError:
            return  # check() reports it and records it for the summary
        note = f"{self.width}: this gate detects a worsening of ${mde:,.2f} ({share:.0%} of Error) at 80% power"
        print(note)
        if too_coarse:
            warnings.warn(f"{note}: {too_coarse}", UserWarning, stacklevel=3)


@pytest.fixture
def pricer_gate(request: pytest.FixtureRequest, pricer_session, pricer_width: str) -> Gate:
    """The gate for this width: compare its run with the stored baseline."""
    return Gate(pricer_session, pricer_width, verdicts=request.config.stash[VERDICTS_KEY])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With --pricer-history, append every gated width's metrics; a bad history file fails the run."""
    config = session.config
    path = _option(config, "pricer_history")
    if not path or SESSION_KEY not in config.stash or not config.stash[VERDICTS_KEY]:
        return
    from pricer.errors import PricerError
    from pricer.history import record_session

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
    folder = session.baseline_path("x").parent.parent
    unused = unused_baselines(folder, session.used_baselines)
    if unused and not session.settings.predictor:
        terminalreporter.line(f"{len(unused)} stored baselines were not compared in this run:")
        for path in unused:
            terminalreporter.line(f"  {path}")
    terminalreporter.line(f"models loaded: {session.models.loads}")
