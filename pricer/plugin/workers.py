"""Scale out: one width per pytest-xdist worker (its group, GPU and share of the CPU), each worker's results relayed
to the controller, which orders them and computes the quantization ladder (pricer.gate.ladder) as a serial run does."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pricer.engines.cpu_threads import CpuThreads
    from pricer.engines.evaluate import RunResult
    from pricer.plugin.session import EvalSession
    from pricer.plugin.settings import EvalSettings
    from pricer.store.fingerprint import Fingerprint

GROUP_PREFIX = "pricer-"  # xdist_group names, e.g. "pricer-4bit": a user's own groups keep their names
# A worker's results ride on its test reports: pytest sends a report's extra attributes to the xdist controller,
# and unlike user_properties they stay out of --junitxml files.
RELAY = "pricer_relay"
GPUS_INPUT = "pricer_gpus"  # workerinput keys: the GPUs the controller found, shared out among workers,
LOADGROUP_INPUT = "pricer_loadgroup"  # and whether it distributes by group
CUDA_ENV = "CUDA_VISIBLE_DEVICES"
WORKER_ENV, WORKER_COUNT_ENV = "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"  # set in each worker by xdist
LADDER_KEY = pytest.StashKey[tuple[tuple[str, bool], ...]]()  # (summary line, whether it reports a failure)


# ---------------------------------------------------------------- where this process stands


def worker_id(config: pytest.Config) -> str | None:
    """'gw0', 'gw1'... in an xdist worker; None in a serial run or the controller."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput.get("workerid") if workerinput else None


def is_controller(config: pytest.Config) -> bool:
    """Whether this process hands the tests to xdist workers instead of running them."""
    option = config.option
    return (worker_id(config) is None and getattr(option, "dist", "no") != "no" and bool(getattr(option, "tx", None))
            and not option.collectonly)


def worker_index(worker: str) -> int:
    """gw3 -> 3."""
    return int(worker.removeprefix("gw"))


# ---------------------------------------------------------------- distribution


def default_to_loadgroup(option: Any) -> None:
    """With -n and no --dist, pick loadgroup: xdist's own default (load) spreads one width's tests over workers,
    each loading that model. Must run before xdist's pytest_cmdline_main turns "no" into "load"."""
    if getattr(option, "numprocesses", None) and getattr(option, "dist", "no") == "no":
        option.dist = "loadgroup"


def group_by_width(config: pytest.Config, items: Iterable[pytest.Item]) -> None:
    """On a worker, put every test using pricer_width in its width's xdist_group (xdist registers the mark there)."""
    if worker_id(config) is None:
        return
    for item in items:
        width = width_of(item)
        if width is not None:
            item.add_marker(pytest.mark.xdist_group(name=GROUP_PREFIX + width))


def repair_group_ids(config: pytest.Config, items: Iterable[pytest.Item]) -> None:
    """After xdist's hook: give each grouped test the '@group' node id suffix the controller schedules by, where
    xdist's own renaming did nothing. Workaround for pytest's structured node ids (9.2), which ignore the attribute
    xdist 3.8 sets, so loadgroup silently spreads a group: https://github.com/pytest-dev/pytest-xdist/issues/1386"""
    if worker_id(config) is None or not config.getvalue("loadgroup"):
        return
    for item in items:
        marks = item.iter_markers("xdist_group")
        names = {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in marks}
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(item.nodeid + suffix)


def width_of(item: pytest.Item) -> str | None:
    """The pricer_width a test is parametrized with, if any."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("pricer_width") if callspec is not None else None


def warn_about_distribution(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """Once per run (from gw0, which collects what every worker does): benchmarks and a --dist ignoring groups."""
    if worker_id(config) != "gw0":
        return
    benchmarks = any(item.get_closest_marker("benchmark") or "benchmark" in getattr(item, "fixturenames", ())
                     for item in items)
    benchmark_session = getattr(config, "_benchmarksession", None)
    if not benchmarks and hasattr(benchmark_session, "xdist_benchmark_found"):
        # pytest-benchmark (5.x) notes a benchmark test before `-m eval` deselects it, then warns at exit that
        # benchmarks are off under xdist in a run that has none; the warning below says so when one does run.
        benchmark_session.xdist_benchmark_found = False
    if benchmarks:
        warnings.warn("pytest-benchmark switches itself off under xdist: these benchmarks ran once, untimed; "
                      "run `pytest -m benchmark` without -n", UserWarning, stacklevel=1)
    if not config.getvalue("loadgroup") and any(width_of(item) for item in items):
        warnings.warn("this --dist mode ignores xdist_group marks, so one width's tests can run in several workers, "
                      "each loading its model; use --dist loadgroup (pricer's choice when only -n is given)",
                      UserWarning, stacklevel=1)


# ---------------------------------------------------------------- GPUs and CPU threads


def visible_gpus(environ: Mapping[str, str], *, count: Callable[[], int]) -> list[str]:
    """The GPUs workers may use: the user's CUDA_VISIBLE_DEVICES when set (empty: none), else 0..count()-1."""
    if CUDA_ENV in environ:
        return [device.strip() for device in environ[CUDA_ENV].split(",") if device.strip()]
    return [str(index) for index in range(count())]


def gpu_for(worker: str, gpus: Sequence[str]) -> str | None:
    """Worker gwK's GPU: the K-th visible one, round robin when workers outnumber GPUs; None without GPUs."""
    return gpus[worker_index(worker) % len(gpus)] if gpus else None


def cuda_device_count() -> int:
    """GPUs torch sees here (0 without torch or CUDA); the controller asks, as it never runs a model itself."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


def pin_worker(config: pytest.Config, environ: MutableMapping[str, str] = os.environ) -> None:
    """In worker gwK, before CUDA initializes: only its GPU is visible (its CPU threads: set_cpu_threads)."""
    worker = worker_id(config)
    gpu = gpu_for(worker, config.workerinput.get(GPUS_INPUT, ()))
    if gpu is not None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            # CUDA_VISIBLE_DEVICES is read once, when CUDA initializes: a conftest or plugin came first.
            config.issue_config_time_warning(UserWarning(
                f"{worker}: CUDA was initialized before pricer could pin this worker to GPU {gpu}; every worker "
                "may share one GPU. Initialize CUDA inside tests or fixtures, not at import"), stacklevel=2)
        else:
            environ[CUDA_ENV] = gpu


def set_cpu_threads(environ: MutableMapping[str, str] = os.environ) -> CpuThreads:
    """Before torch loads: OpenMP's wait policy and, in an xdist worker, its share of the cores (pricer.engines.cpu_threads).
    Read from the environment, which xdist sets in a worker before its plugins load, and workers inherit."""
    from pricer.engines import cpu_threads

    count = int(environ.get(WORKER_COUNT_ENV, "1")) if WORKER_ENV in environ else None
    return cpu_threads.apply(environ, workers=count, torch=sys.modules.get("torch"))


# ---------------------------------------------------------------- relaying results to the controller


class Relay:
    """In a process that runs eval tests: saves each run (--pricer-save-runs) and, in an xdist worker, attaches to
    each report what that test phase added to the session, for the controller."""

    def __init__(self, *, worker: str | None, session: Callable[[], EvalSession | None],
                 verdicts: Mapping[str, bool], save_runs: Path | None,
                 summaries: Mapping[str, str] | None = None, views: Mapping[str, Any] | None = None) -> None:
        self.worker, self._session, self._verdicts, self.save_runs = worker, session, verdicts, save_runs
        self._summaries = {} if summaries is None else summaries  # width -> its Markdown block (--pricer-summary)
        self._views = {} if views is None else views  # width -> its HTML report view (--pricer-html)
        self._sent_summaries: dict[str, str] = {}
        self._sent_views: dict[str, Any] = {}
        self._outcomes = self._used = self._loads = self._problems = 0
        self._runs: set[str] = set()
        self._sent_verdicts: set[str] = set()
        self.problems: list[str] = []  # outputs that could not be written, one line each

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        report = yield
        session = self._session()
        if session is not None:
            payload = self._news(session, width_of(item))
            if payload:
                setattr(report, RELAY, payload)
        return report

    def _news(self, session: EvalSession, width: str | None) -> dict[str, Any]:
        """What this phase added: runs (saved when asked), outcomes, used baselines, verdicts, summary blocks, model
        loads."""
        runs = [w for w in session.runs if w not in self._runs]
        self._runs.update(runs)
        problems = self._save(session, runs)
        if self.worker is None:
            return {}
        problems += session.problems[self._problems:]  # a worker's charts that could not be drawn
        self._problems = len(session.problems)
        payload: dict[str, Any] = {"problems": problems} if problems else {}
        if runs:
            payload["runs"] = {w: run_payload(session.run(w), session.fingerprint(w)) for w in runs}
        if outcomes := session.gates.outcomes[self._outcomes:]:
            payload["outcomes"] = [[o.width, str(o.path), o.text, o.passed, o.worse] for o in outcomes]
        if used := session.gates.used_baselines[self._used:]:
            payload["used"] = [str(p) for p in used]
        if verdicts := {w: p for w, p in self._verdicts.items() if w not in self._sent_verdicts}:
            payload["verdicts"] = verdicts
        if summaries := {w: text for w, text in self._summaries.items() if self._sent_summaries.get(w) != text}:
            payload["summaries"] = summaries
            self._sent_summaries.update(summaries)
        if views := {w: view for w, view in self._views.items() if self._sent_views.get(w) is not view}:
            payload["views"] = views
            self._sent_views.update(views)
        if (loads := session.models.loads - self._loads) and width is not None:
            payload["loads"] = {width: loads}
        self._outcomes, self._used = len(session.gates.outcomes), len(session.gates.used_baselines)
        self._loads = session.models.loads
        self._sent_verdicts.update(verdicts)
        if payload:
            payload["worker"] = self.worker
        return payload

    def _save(self, session: EvalSession, runs: list[str]) -> list[str]:
        """Store the new runs (--pricer-save-runs); a run that cannot be written is one line for the end of the
        session, never a traceback in a hook (an INTERNALERROR under xdist)."""
        from pricer.errors import OutputError

        problems = []
        for w in runs if self.save_runs is not None else ():
            try:
                session.save_run(self.save_runs, w)
            except OutputError as exc:
                problems.append(f"--pricer-save-runs: {exc}")
        self.problems.extend(problems)
        return problems


class Controller:
    """The xdist controller's side: hands each worker the GPUs to pick from, and puts what workers relay into its
    own EvalSession, so the summary, the ladder and --pricer-history work as in a serial run."""

    def __init__(self, *, session: Callable[[], EvalSession], verdicts: MutableMapping[str, bool],
                 settings: EvalSettings, summaries: MutableMapping[str, str] | None = None,
                 views: MutableMapping[str, Any] | None = None) -> None:
        self._session, self.verdicts, self.settings = session, verdicts, settings
        self.summaries = {} if summaries is None else summaries  # width -> the Markdown block its worker rendered
        self.views = {} if views is None else views  # width -> the HTML report view its worker made
        self.loads: dict[str, list[str]] = {}  # worker -> the widths whose models it loaded
        self.problems: list[str] = []  # outputs the workers could not write, one line each
        self._gpus: list[str] | None = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if self._gpus is None:
            # A classic predictor or --pricer-device cpu loads no model on a GPU: skip importing torch here.
            never = self.settings.predictor is not None or self.settings.device == "cpu"
            self._gpus = visible_gpus(os.environ, count=(lambda: 0) if never else cuda_device_count)
        node.workerinput[GPUS_INPUT] = self._gpus
        node.workerinput[LOADGROUP_INPUT] = node.config.option.dist == "loadgroup"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        payload = getattr(report, RELAY, None)
        if payload:
            self.receive(payload)

    def receive(self, payload: Mapping[str, Any]) -> None:
        """Adopt one report's relayed results."""
        from pricer.plugin.outcome import Outcome

        session = self._session()
        for width, raw in payload.get("runs", {}).items():
            session.add_run(width, *run_from_payload(raw))
        session.gates.adopt(outcomes=[Outcome(width=width, path=Path(path), text=text, passed=passed, worse=any(worse))
                                      for width, path, text, passed, *worse in payload.get("outcomes", ())],
                            used=[Path(p) for p in payload.get("used", ())])
        self.verdicts.update(payload.get("verdicts", {}))
        self.problems.extend(payload.get("problems", ()))
        self.summaries.update(payload.get("summaries", {}))
        self.views.update(payload.get("views", {}))
        for width, count in payload.get("loads", {}).items():
            self.loads.setdefault(payload["worker"], []).extend([width] * count)

    def finish(self, session: EvalSession) -> None:
        """Put the relayed outcomes and verdicts in width order, as a serial run lists them."""
        order = {w: i for i, w in enumerate(session.settings.widths)}
        session.gates.order(session.settings.widths)
        # A verdict always arrives with or after its run; one without would make the history run the model here.
        ordered = sorted(((w, p) for w, p in self.verdicts.items() if w in session.runs), key=lambda wp: order[wp[0]])
        self.verdicts.clear()
        self.verdicts.update(ordered)

    def loads_line(self) -> str:
        """'models loaded: 2 (gw0: 16bit; gw1: 32bit)'."""
        total = sum(len(widths) for widths in self.loads.values())
        where = "; ".join(f"{worker}: {', '.join(widths)}"
                          for worker, widths in sorted(self.loads.items(), key=lambda kv: worker_index(kv[0])))
        return f"models loaded: {total}" + (f" ({where})" if where else "")


def run_payload(run: RunResult, fingerprint: Fingerprint) -> dict[str, Any]:
    """A run as plain values for the trip to the controller, floats unrounded (a saved file keeps 6 decimals)."""
    return {
        "name": run.name, "seconds": run.seconds, "fingerprint": fingerprint.to_dict(),
        "items": [[item.index, item.prompt, item.price, item.title] for item in run.items],
        "predictions": [[p.guess, p.completion, p.parsed] for p in run.predictions],
    }


def run_from_payload(raw: Mapping[str, Any]) -> tuple[RunResult, Fingerprint]:
    """The run a worker relayed, scored again here exactly as the worker scored it."""
    from pricer.engines.evaluate import score_run
    from pricer.engines.predict import Prediction
    from pricer.store.fingerprint import Fingerprint
    from pricer.task.items import Item

    items = [Item(index=index, prompt=prompt, price=price, title=title) for index, prompt, price, title in raw["items"]]
    predictions = [Prediction(guess=guess, completion=completion, parsed=parsed)
                   for guess, completion, parsed in raw["predictions"]]
    fingerprint = Fingerprint.from_dict(raw["fingerprint"], where=f"run {raw['name']!r} relayed by an xdist worker")
    return score_run(raw["name"], items, predictions, seconds=raw["seconds"]), fingerprint


# ---------------------------------------------------------------- the plugin's entry points


def register(config: pytest.Config, *, session: Callable[[], EvalSession | None],
             new_session: Callable[[], EvalSession], verdicts: MutableMapping[str, bool],
             settings: EvalSettings, save_runs: Path | None, summaries: MutableMapping[str, str] | None = None,
             views: MutableMapping[str, Any] | None = None) -> None:
    """At configure: a worker pins itself and relays; the controller collects; a serial run saves runs if asked.
    `summaries`: width -> Markdown block, filled by the gate (serially, in a worker) or by the controller."""
    worker = worker_id(config)
    if worker is not None:
        pin_worker(config)
        # A worker parses the command line again and sees no --dist when pricer chose loadgroup for the controller;
        # xdist adds each test's group to its node id, which the controller schedules by, only when this is set.
        if config.workerinput.get(LOADGROUP_INPUT):
            config.option.loadgroup = True
    if is_controller(config):  # its workers save the runs
        config.pluginmanager.register(Controller(session=new_session, verdicts=verdicts, settings=settings,
                                                 summaries=summaries, views=views), "pricer-controller")
    elif worker is not None or save_runs is not None:
        config.pluginmanager.register(Relay(worker=worker, session=session, verdicts=verdicts, save_runs=save_runs,
                                            summaries=summaries, views=views), "pricer-relay")


def finish(config: pytest.Config, session: EvalSession) -> bool:
    """At session end, outside workers: order what workers relayed, then the ladder of this session's runs for the
    summary. True when the controller finds a tax past --pricer-max-tax (under xdist no test gates the ladder)."""
    from pricer.gate.ladder import ladder_lines

    if worker_id(config) is not None:
        return False
    controller = config.pluginmanager.get_plugin("pricer-controller")
    if controller is not None:
        controller.finish(session)
    lines = ladder_lines(session.ladder(run_missing=False))
    config.stash[LADDER_KEY] = lines
    return controller is not None and any(failed for _, failed in lines)


def output_problems(config: pytest.Config, session: EvalSession | None) -> list[str]:
    """Outputs this session could not write (saved runs, charts), in this process or relayed by the workers."""
    if worker_id(config) is not None:
        return []  # relayed to the controller, which reports them
    found = [config.pluginmanager.get_plugin(name) for name in ("pricer-relay", "pricer-controller")]
    return [line for plugin in found if plugin is not None for line in plugin.problems] + (
        session.problems if session is not None else [])


def summary_lines(config: pytest.Config) -> tuple[tuple[str, bool], ...]:
    """The ladder's lines for the 'pricer gate' section, each with whether it reports a failure."""
    return config.stash.get(LADDER_KEY, ())


def loads_line(config: pytest.Config, session: EvalSession) -> str:
    """How many models were loaded, and under xdist by which worker."""
    controller = config.pluginmanager.get_plugin("pricer-controller")
    return controller.loads_line() if controller is not None else f"models loaded: {session.models.loads}"
