"""pricer's pytest plugin: options, markers, the per-width fixtures and the end-of-run summary."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pricer.options import table as option_table

from pricer.options import parsers as options

from pricer.plugin import workers
from pricer.history.benchmark_runs import absent_storage, remove_unused_storage
from pricer.errors import OptionError
from pricer.options.table import DEFAULT_CHARTS, PLUGIN, Option

MARKERS = {
    "eval": "accuracy gate: runs a model over the test items and compares with stored baselines",
    "benchmark": "timing with pytest-benchmark; run with -m benchmark",
    "gpu": "needs a CUDA GPU; skipped without one",
}
OPTIONS = tuple(option for option in option_table.OPTIONS if option.plugin)
# Keys naming a file or folder: `pricer_history = true` would otherwise write a file named "True".
PATH_KEYS = tuple(o.ini for o in OPTIONS if o.metavar in ("PATH", "DIR", "SOURCE", "ID_OR_PATH"))
SWITCH_WORDS = ("true", "false", "yes", "no", "on", "off")
SETTINGS_KEY = pytest.StashKey["EvalSettings"]()
SESSION_KEY = pytest.StashKey["EvalSession"]()
VERDICTS_KEY = pytest.StashKey[dict[str, bool]]()  # width -> gate passed, for the accuracy history
HISTORY_NOTE_KEY = pytest.StashKey[tuple[str, bool]]()  # (line for the summary, whether it is an error)
SUMMARIES_KEY = pytest.StashKey[dict[str, str]]()  # width -> its Markdown block, for --pricer-summary
SUMMARY_NOTE_KEY = pytest.StashKey[tuple[str, bool]]()  # (line for the terminal, whether it is an error)
CPU_THREADS_KEY = pytest.StashKey["CpuThreads"]()  # how torch's CPU threads wait, and how many
OUTPUT_NOTES_KEY = pytest.StashKey[list[str]]()  # outputs that could not be written, one line each
# The exit code of a run whose verdicts all passed but whose output (summary, history, saved run) could not be
# written: pytest's 3, not the 1 of a failing verdict.
OUTPUT_BROKEN = pytest.ExitCode.INTERNAL_ERROR
BENCH_STORAGE_KEY = pytest.StashKey["Path | None"]()  # pytest-benchmark's folder, while it did not exist yet


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pricer", "pricer: accuracy gate for price-predicting LLMs")
    for option in OPTIONS:
        group.addoption(option.plugin, **option_table.arguments(option, PLUGIN))
        if option.ini:
            # linelist takes a TOML list as it is and ini text as one line, in pytest 8 and 9 alike.
            parser.addini(option.ini, help=f"as {option.plugin}", default=None,
                          type="linelist" if option.ini_list else None)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # The earliest hook a plugin gets: before conftests and test modules can import torch, whose OpenMP runtime
    # reads its wait policy from the environment once, when it loads. xdist workers inherit the environment.
    early_config.stash[CPU_THREADS_KEY] = workers.set_cpu_threads()
    early_config.stash[BENCH_STORAGE_KEY] = absent_storage(early_config.invocation_params.dir)


def pytest_unconfigure(config: pytest.Config) -> None:
    remove_unused_storage(config.stash.get(BENCH_STORAGE_KEY, None),
                          storage=config.getoption("benchmark_storage", None))


def pytest_report_header(config: pytest.Config) -> str | None:
    threads = config.stash.get(CPU_THREADS_KEY, None)
    return threads.line() if threads is not None else None


def pytest_configure(config: pytest.Config) -> None:
    if CPU_THREADS_KEY not in config.stash:  # registered too late for the early hook (e.g. from a conftest)
        config.stash[CPU_THREADS_KEY] = workers.set_cpu_threads()
    for name, help_text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")
    # Checked now: a usage error raised during collection would show as a collection error with a traceback.
    config.stash[SETTINGS_KEY] = _settings(config)
    config.stash[VERDICTS_KEY] = {}
    config.stash[SUMMARIES_KEY] = {}
    # Under xdist, workers relay their results to the controller; --pricer-save-runs stores runs for `pricer ladder`.
    save_runs = _option(config, "pricer_save_runs")
    workers.register(config, session=lambda: config.stash.get(SESSION_KEY, None),
                     new_session=lambda: eval_session(config, warn=False), verdicts=config.stash[VERDICTS_KEY],
                     settings=config.stash[SETTINGS_KEY],
                     save_runs=_project_root(config) / save_runs if save_runs else None,
                     summaries=config.stash[SUMMARIES_KEY])


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Iterator[None]:
    # A wrapper runs before every plain implementation: xdist's, also tryfirst, turns a missing --dist into "load",
    # and which of two tryfirst hooks runs first depends on the order the plugins were installed in.
    workers.default_to_loadgroup(config.option)
    return (yield)


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
    from pricer.store.machines import add_machine_details

    add_machine_details(machine_info)


def _option(config: pytest.Config, ini: str) -> Any:
    """One option's value (already checked by _settings at configure)."""
    return _value(config, next(option for option in OPTIONS if option.ini == ini))


def _value(config: pytest.Config, option: Option) -> Any:
    """Command line first, then the ini file, then the default; ini values pass the same parser."""
    ini = option.ini
    value = config.getoption(ini)
    if value is not None:
        return value
    try:
        raw = option_table.ini_text(option, _ini_raw(config, ini), where=config.inipath)
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    if raw is None:
        return option.default
    if ini in PATH_KEYS and raw.strip().lower() in SWITCH_WORDS:
        raise pytest.UsageError(f"ini {ini}: {raw!r} is a switch, not a path; name a file or folder "
                                f"(relative to the ini file), e.g. {ini} = \"{option.example or 'NAME'}\"")
    parse = option.parser(PLUGIN)
    try:
        return parse(raw) if parse else raw
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini {ini}: {exc}") from None


def _ini_raw(config: pytest.Config, key: str) -> Any:
    """An ini key's value as written: TOML's own type in a .toml file (pytest turns [tool.pytest.ini_options] values
    into text, so `pricer_summary = 1` would name a file "1"), text in an ini file or -o; None when unset."""
    from pricer.options.project import ini_settings

    for override in reversed(config.getoption("override_ini", None) or ()):
        name, _, value = override.partition("=")
        if name.strip() == key:
            return value
    held = getattr(config, "_inicfg", None)  # pytest 9: key -> ConfigValue; pytest 8: config.inicfg, key -> text
    held = held if held is not None else config.inicfg
    if key not in held:
        return None
    value = getattr(held[key], "value", held[key])
    if getattr(held[key], "mode", None) == "toml":  # pytest 9's [tool.pytest] or pytest.toml: TOML's own types
        return value
    if config.inipath is not None and config.inipath.suffix == ".toml":  # [tool.pytest.ini_options], made text
        return ini_settings(config.inipath).get(key, value)
    return value


def _settings(config: pytest.Config):  # -> pricer.plugin.session.EvalSettings
    """Every option's value, checked: bad values stop the run before collection with a one-line usage error."""
    from pricer.gate.verdict import GateConfig
    from pricer.plugin.settings import EvalSettings
    from pricer.task.items import DataSpec, resolve_source

    _refuse_unknown_keys(config)
    _refuse_misread_paths(config)
    v = {option.name: _value(config, option) for option in OPTIONS if option.ini}
    update = config.getoption("update_baselines")
    if update and not (v["reason"] or "").strip():
        raise pytest.UsageError("--update-baselines needs --pricer-reason 'why the baselines move'")
    if config.getoption("pricer_reason") is not None and not update:
        raise pytest.UsageError("--pricer-reason says why --update-baselines rewrites the baselines; without "
                                "--update-baselines nothing is rewritten: add it, or leave --pricer-reason out")
    if v["against"] and update:
        raise pytest.UsageError(f"--pricer-against {v['against']} judges a gate against a branch's baselines; "
                                "--update-baselines judges the run against the baseline it replaces: give one")
    if v["accept_worse"] is not None and not (update and v["accept_worse"].strip()):
        raise pytest.UsageError("--pricer-accept-worse names the trade-off that lets --update-baselines store a run "
                                "judged worse, e.g. --pricer-accept-worse='4-bit to halve memory'; give it with "
                                "--update-baselines, and not empty")
    _refuse_ignored(config, v)
    endpoint = _endpoint(config, v)
    return EvalSettings(
        data=DataSpec(source=resolve_source(v["data"]), split=v["split"], n=v["n"], template=v["template"]),
        model=v["model"], predictor=v["predictor"], bits=endpoint.widths if endpoint else v["bits"],
        adapter=v["adapter"], device=v["device"], endpoint=endpoint,
        batch_size=v["batch_size"], token_budget=v["token_budget"], baseline_class=v["baseline_class"],
        baselines=Path(v["baselines"]), update=update, reason=v["reason"], baseline_name=v["baseline_name"],
        accept_worse=v["accept_worse"], against=v["against"],
        gate=GateConfig(**{option.gate: v[option.name] for option in OPTIONS if option.gate}),
        max_tax_share=v["max_tax"],
        rerun_args=_rerun_args(config.invocation_params.args),
    )


def _endpoint(config: pytest.Config, v: dict[str, Any]):  # -> pricer.engines.endpoint.config.EndpointConfig | None
    """The served models to ask (--pricer-endpoint), or None; options that only a loaded model takes are refused."""
    from pricer.engines.endpoint.config import endpoint_config

    given = [option.name for option in OPTIONS if option.ini and config.getoption(option.ini) is not None]
    flags = {option.name: option.plugin for option in OPTIONS}
    try:
        return endpoint_config(v, deterministic=config.getoption("pricer_endpoint_deterministic"), given=given,
                               flag=flags.get)
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(str(exc)) from None


def _refuse_unknown_keys(config: pytest.Config) -> None:
    """A mistyped pricer key (pricer_tolernce) would leave its option at the default with only pytest's warning."""
    import difflib

    # pytest's own list of keys no plugin registered (private, in pytest 8 and 9): it only warns about them.
    unknown = getattr(config, "_get_unknown_ini_keys", lambda: ())()
    known = [option.ini for option in OPTIONS if option.ini]
    for key in sorted(k for k in unknown if k.lower().startswith("pricer")):
        close = difflib.get_close_matches(key.lower().replace("-", "_"), known, n=1)
        hint = f"did you mean {close[0]}?" if close else "`pytest --help` lists pricer's keys among the ini-options"
        raise pytest.UsageError(f"{config.inipath}: unknown ini key {key!r}; {hint}")


def _refuse_misread_paths(config: pytest.Config) -> None:
    """`--pricer-data DIR`: pytest picks its ini file before plugins' options are known, so it takes DIR for a test
    path and looks for the ini file from there; when that moves it off the project's, the project's settings (its
    pricer keys, markers, addopts) are silently dropped. `--pricer-data=DIR` cannot be misread."""
    from pricer.errors import PricerError
    from pricer.options.project import ini_file, ini_settings

    if config.getoption("inifilename", None) or config.getoption("rootdir", None):
        return  # the user chose them
    here = config.invocation_params.dir
    args = list(config.invocation_params.args)
    flags = {option.plugin for option in OPTIONS if option.ini in PATH_KEYS}
    misread = [(flag, value) for flag, value in zip(args, args[1:]) if flag in flags and _exists(here / value)]
    if not misread:
        return
    try:
        expected = ini_file(here)
        settings = ini_settings(expected) if expected else {}
    except PricerError:
        return  # a broken ini file: pytest reports it
    found = config.inipath.resolve() if config.inipath else None
    if not settings or found == expected.resolve():
        return  # nothing of the project's was dropped
    flag, value = misread[0]
    raise pytest.UsageError(f"{flag} {value}: pytest took {value} for a test path while looking for its ini file, so "
                            f"it read {found or 'no ini file'}, not {expected}; write {flag}={value}")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long for the file system names nothing pytest could have taken for a path
        return False


def _project_root(config: pytest.Config) -> Path:
    # Baselines are relative to the project's ini file (else where pytest was started), not the rootdir:
    # pytest guesses the rootdir before plugin options are known, so `--pricer-data DIR` can move it.
    return config.inipath.parent if config.inipath else config.invocation_params.dir


def _refuse_ignored(config: pytest.Config, v: dict[str, Any]) -> None:
    """Paths that cannot be used and options the run would ignore: usage errors now, not tracebacks at the end."""
    from pricer.task.items import resolve_source

    root = _project_root(config)
    # An ini pin (of bits, say) may serve other runs: only the command line counts as given, but for a split,
    # which no run on a single file can use.
    given = {option.name: v[option.name] for option in OPTIONS
             if option.ini and config.getoption(option.ini) is not None}
    if _ini_raw(config, "pricer_split") is not None:
        given["split"] = v["split"]
    try:
        for option in OPTIONS:
            if option.relative and v[option.name]:
                option.parse(option.plugin)(str(root / Path(v[option.name]).expanduser()))
        option_table.refuse_ignored(PLUGIN, given=given, predictor=v["predictor"], source=resolve_source(v["data"]))
    except (argparse.ArgumentTypeError, OptionError) as exc:
        raise pytest.UsageError(str(exc)) from None


def _rerun_args(args: Sequence[str]) -> tuple[str, ...]:
    """This run's arguments without the update options, to print a command that accepts its results."""
    return options.without(args, options=("--pricer-reason",), switches=("--update-baselines",))


def eval_session(config: pytest.Config, *, warn: bool = True):  # -> pricer.plugin.session.EvalSession
    """The session's one EvalSession, made on first use so plain test runs never build it (the xdist controller's
    is made with warn=False: its workers warn)."""
    if SESSION_KEY not in config.stash:
        from pricer.gate.verdict import SMALL_N
        from pricer.plugin.session import EvalSession

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

    def __init__(self, session, width: str, *, verdicts: dict[str, bool] | None = None,
                 summaries: dict[str, str] | None = None, properties: list[tuple[str, object]] | None = None,
                 charts: Path | None = None) -> None:
        self.session, self.width = session, width
        self.verdicts = {} if verdicts is None else verdicts  # width -> passed, for --pricer-history
        self.summaries = {} if summaries is None else summaries  # width -> Markdown block, for --pricer-summary
        self.properties = [] if properties is None else properties  # the test's user_properties, for --junitxml
        self.charts = charts  # --pricer-charts: every width's chart goes there; None: failing widths' only

    def check(self) -> None:
        __tracebackhide__ = True
        from pricer.plugin import summary
        from pricer.errors import PricerError

        try:
            self._note_detectability()
            verdict = self.session.gates.check(self.width)
            hardware = self.session.home.machine_class
        except PricerError as exc:
            problem = str(exc)
            self.properties.extend(summary.problem_properties(width=self.width, text=problem,
                                                              hardware=self.session.home.machine_class))
        else:
            self.verdicts[self.width] = verdict.passed
            path = self.session.home.path(self.width)
            # A WORSE run is stored only with the trade-off named (--pricer-accept-worse): the command asks for it.
            accept = "" if verdict.passed else self.session.gates.accept_command(
                self.width, reason="why", trade_off="what it buys" if verdict.worse else None)
            chart, chart_line = self._chart(verdict)
            shown = {"baseline": self._shown(path), "hardware": hardware,
                     "chart": self._shown(chart) if chart else None}
            self.properties.extend(summary.junit_properties(verdict, width=self.width, **shown))
            self.summaries[self.width] = "\n".join(summary.verdict_block(verdict, title=self.width, accept=accept,
                                                                         **shown))
            if verdict.passed:
                print(verdict.message() + chart_line)
                return
            problem = f"{path}: {verdict.message(accept=accept)}{chart_line}"
        pytest.fail(problem, pytrace=False)

    def _chart(self, verdict) -> tuple[Path | None, str]:
        """The chart of what moved, for a failing width or with --pricer-charts: its path and the message's line."""
        from pricer.errors import PricerError

        if not verdict.judgements or (verdict.passed and self.charts is None):
            return None, ""  # no judgements: not comparable, so no items to pair
        from pricer.report.charts import moved_chart
        from pricer.files import ignored_folder

        root = self.session.root
        stored = self.session.home.path(self.width)
        try:  # named as the baseline is under the baselines folder: <model>/<class>/4bit-moved.png
            name = stored.relative_to(self.session.home.folder)
        except ValueError:
            name = Path(stored.name)
        name = name.with_name(f"{name.stem}-moved.png")
        try:
            folder = self.charts or ignored_folder(root / Path(DEFAULT_CHARTS).parent) / Path(DEFAULT_CHARTS).name
            path = folder / name
            moved_chart(path, items=self.session.gates.baseline(self.width).items,
                        guesses=[p.guess for p in self.session.run(self.width).predictions],
                        labelled=[w.index for w in verdict.worst], title=verdict.name)
        except (OSError, PricerError) as exc:  # the verdict stands without its picture
            return None, f"\nchart of what moved: not drawn ({exc})"
        return path, f"\nchart of what moved: {path}"

    def _shown(self, path: Path) -> Path:
        """A path as the summary shows it: relative to the project, where it is inside."""
        try:
            return Path(path).relative_to(self.session.root)
        except ValueError:
            return Path(path)

    def _note_detectability(self) -> None:
        """Before gating: the smallest worsening this n and this baseline can reveal."""
        from pricer.errors import BaselineError

        if self.session.settings.update:
            return
        try:
            found = self.session.gates.detectability(self.width)
        except BaselineError:
            return  # check() reports it and records it for the summary
        if found is None:
            return  # no baseline: check() says how to make one
        note = (f"{self.width}: this gate detects at 80% power a worsening of "
                + ", ".join(f"{d.measure} {d.text}" for d in found.measures))
        print(note)
        print(f"{self.width}: {found.tail}")
        if found.note:
            print(f"{self.width}: {found.note}")
        if found.too_coarse:
            warnings.warn(f"{note}: {found.too_coarse}", UserWarning, stacklevel=3)


@pytest.fixture
def pricer_gate(request: pytest.FixtureRequest, pricer_session, pricer_width: str) -> Gate:
    """The gate for this width: compare its run with the stored baseline; its measures become the test's JUnit
    properties."""
    charts = _option(request.config, "pricer_charts")
    return Gate(pricer_session, pricer_width, verdicts=request.config.stash[VERDICTS_KEY],
                summaries=request.config.stash[SUMMARIES_KEY], properties=request.node.user_properties,
                charts=pricer_session.root / Path(charts).expanduser() if charts else None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The ladder of this session's runs (under xdist, of every worker's); with --pricer-history, append every gated
    width's metrics; a bad history file fails the run."""
    config = session.config
    if SESSION_KEY in config.stash and workers.finish(config, config.stash[SESSION_KEY]):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # under xdist no test gates the ladder: the controller does
    if not _append_summary(config):
        _output_broken(session)
    for line in workers.output_problems(config):  # saved runs that could not be written, here or in a worker
        config.stash.setdefault(OUTPUT_NOTES_KEY, []).append(line)
        _output_broken(session)
    path = _option(config, "pricer_history")
    # Under xdist the controller appends every worker's widths at once: workers never write the history.
    if not path or workers.worker_id(config) or SESSION_KEY not in config.stash or not config.stash[VERDICTS_KEY]:
        return
    from pricer.errors import OutputError, PricerError

    eval_run = config.stash[SESSION_KEY]
    try:
        config.stash[HISTORY_NOTE_KEY] = (eval_run.record_accuracy(eval_run.root / path, config.stash[VERDICTS_KEY]), False)
    except OutputError as exc:  # permissions, a full disk, a read-only file system: the verdicts stand
        config.stash[HISTORY_NOTE_KEY] = (str(exc), True)
        _output_broken(session)
    except PricerError as exc:  # a history that is not ours to append to
        config.stash[HISTORY_NOTE_KEY] = (str(exc), True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _output_broken(session: pytest.Session) -> None:
    """A passing run whose output could not be written exits OUTPUT_BROKEN, not as a failing verdict would."""
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = OUTPUT_BROKEN


def _append_summary(config: pytest.Config) -> bool:
    """With --pricer-summary, append the session's Markdown once: serially, or in the xdist controller from what the
    workers relayed (workers never write it). False when the file cannot be written."""
    path = _option(config, "pricer_summary")
    if not path or workers.worker_id(config) or SESSION_KEY not in config.stash:
        return True
    eval_run = config.stash[SESSION_KEY]
    if not eval_run.gates.outcomes:
        return True  # no width was gated (eval tests deselected): nothing to report
    from pricer.plugin.summary import append_document, session_document

    settings = eval_run.settings
    text = session_document(model=settings.model_name, widths=settings.widths, outcomes=eval_run.gates.outcomes,
                            blocks=config.stash[SUMMARIES_KEY], ladder=workers.summary_lines(config))
    target = eval_run.root / Path(path).expanduser()
    try:
        append_document(target, text)
    except OSError as exc:  # OutputError names the file and the cause
        config.stash[SUMMARY_NOTE_KEY] = (f"cannot append the summary: {exc}", True)
        return False
    config.stash[SUMMARY_NOTE_KEY] = (f"summary appended to {target}", False)
    return True


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if HISTORY_NOTE_KEY in config.stash:
        note, failed = config.stash[HISTORY_NOTE_KEY]
        terminalreporter.write_sep("=", "pricer history")  # not section(): see the "pricer gate" one
        terminalreporter.line(note, red=failed)
    if SESSION_KEY not in config.stash:
        return
    session = config.stash[SESSION_KEY]
    if not session.gates.outcomes:
        return
    from pricer.store.baselines import unused_baselines

    # write_sep, as pytest's own sections: it ends the progress line first. section() leaves that line "open", so
    # pytest closed it with a blank line before its last line, or not when another plugin's section came first.
    terminalreporter.write_sep("=", "pricer gate")
    for outcome in session.gates.outcomes:
        terminalreporter.line(outcome.text, red=not outcome.passed, green=outcome.passed)
    for line, failed in workers.summary_lines(config):
        terminalreporter.line(line, red=failed)
    if accept := session.gates.accept_all():
        terminalreporter.line(f"if these changes are intended, accept every width at once with:\n  {accept}", red=True)
    folder = session.home.path("x").parent  # this model's baselines of this hardware class
    unused = unused_baselines(folder, session.gates.used_baselines)
    if unused and not session.settings.predictor:
        terminalreporter.line(f"{len(unused)} stored baselines were not compared in this run:")
        for path in unused:
            terminalreporter.line(f"  {path}")
    terminalreporter.line(workers.loads_line(config, session))
    if SUMMARY_NOTE_KEY in config.stash:
        note, failed = config.stash[SUMMARY_NOTE_KEY]
        terminalreporter.line(note, red=failed)
    for note in config.stash.get(OUTPUT_NOTES_KEY, ()):
        terminalreporter.line(note, red=True)
