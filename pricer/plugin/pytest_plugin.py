"""pricer's pytest plugin: its hooks (options, markers, settings checked at configure, xdist grouping), the
fixtures it provides and its end-of-run hooks, each imported here so that pytest registers them with the plugin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pricer.history.benchmark_runs import absent_storage, remove_unused_storage
from pricer.options.arguments import arguments
from pricer.options.option import PLUGIN
from pricer.plugin import workers
# pytest finds a plugin's hooks and fixtures among its module's attributes: imported here, they are the plugin's.
from pricer.plugin.fixtures import (SESSION_KEY, SETTINGS_KEY, SUMMARIES_KEY, VERDICTS_KEY, VIEWS_KEY,  # noqa: F401
                                    eval_session,
                                    pricer_bench_items, pricer_bench_rounds, pricer_gate, pricer_items, pricer_model,
                                    pricer_run, pricer_session, pricer_width, pytest_generate_tests)
from pricer.plugin.option_values import OPTIONS, _option, _project_root, _settings
from pricer.plugin.session_end import pytest_sessionfinish, pytest_terminal_summary  # noqa: F401

MARKERS = {
    "eval": "accuracy gate: runs a model over the test items and compares with stored baselines",
    "benchmark": "timing with pytest-benchmark; run with -m benchmark",
    "gpu": "needs a CUDA GPU; skipped without one",
}
CPU_THREADS_KEY = pytest.StashKey["CpuThreads"]()  # how torch's CPU threads wait, and how many
BENCH_STORAGE_KEY = pytest.StashKey["Path | None"]()  # pytest-benchmark's folder, while it did not exist yet


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pricer", "pricer: accuracy gate for price-predicting LLMs")
    for option in OPTIONS:
        group.addoption(option.plugin, **arguments(option, PLUGIN))
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
    config.stash[VIEWS_KEY] = {}
    # Under xdist, workers relay their results to the controller; --pricer-save-runs stores runs for `pricer ladder`.
    save_runs = _option(config, "pricer_save_runs")
    workers.register(config, session=lambda: config.stash.get(SESSION_KEY, None),
                     new_session=lambda: eval_session(config, warn=False), verdicts=config.stash[VERDICTS_KEY],
                     settings=config.stash[SETTINGS_KEY],
                     save_runs=_project_root(config) / save_runs if save_runs else None,
                     summaries=config.stash[SUMMARIES_KEY], views=config.stash[VIEWS_KEY])


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    # An error pricer raises on purpose names the file, option or field and its fix: a test that meets one (say
    # pricer_session.ladder() over a split that does not exist) shows that line, as pricer_gate.check() does, not
    # pytest's long traceback ending in it.
    from pricer.errors import PricerError

    report = yield
    if report.failed and call.excinfo is not None and isinstance(call.excinfo.value, PricerError):
        report.longrepr = str(call.excinfo.value)
    return report


def pytest_collection_finish(session: pytest.Session) -> None:
    workers.warn_about_distribution(session.config, session.items)


@pytest.hookimpl(optionalhook=True)  # pytest-benchmark's hook; absent under `-p no:benchmark`
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Saved benchmark runs also record the GPU (name, memory) and the CPU features pricer fingerprints."""
    from pricer.store.machines import add_machine_details

    add_machine_details(machine_info)
