"""Tests of pricer.engines.cpu_threads: OpenMP's wait policy and torch's thread count, set before torch loads unless the user
set them, and recorded in every LLM run's fingerprint context."""

from __future__ import annotations

import importlib.util
import os
import sys
import types

import pytest

from pricer.cli import main as cli
from pricer.engines import cpu_threads
from pricer.store.fingerprint import DECISIVE


def _torch_imported_already() -> types.SimpleNamespace:
    """Stands for a torch module already imported: records set_num_threads calls."""
    calls: list[int] = []
    return types.SimpleNamespace(calls=calls, set_num_threads=calls.append)


def test_pricer_makes_waiting_threads_sleep_where_the_user_set_no_wait_policy():
    environ: dict[str, str] = {}

    chosen = cpu_threads.apply(environ)

    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}  # a serial run leaves torch's thread count to torch
    assert chosen.wait_policy == "PASSIVE" and "pricer's default" in chosen.wait_reason
    assert chosen.threads is None and chosen.threads_reason == "one per core, torch's own choice"


@pytest.mark.parametrize("given", ["ACTIVE", "active", "PASSIVE"])
def test_a_wait_policy_the_user_set_is_kept_and_recorded_as_theirs(given):
    environ = {"OMP_WAIT_POLICY": given}

    chosen = cpu_threads.apply(environ)

    assert environ == {"OMP_WAIT_POLICY": given}
    assert chosen.wait_policy == given.upper() and chosen.wait_reason == "$OMP_WAIT_POLICY was set"


def test_nothing_is_set_once_torch_is_imported_and_the_runtime_default_is_recorded():
    environ: dict[str, str] = {}

    chosen = cpu_threads.apply(environ, torch=_torch_imported_already())

    # Its OpenMP runtime has read the environment already: setting the policy now would record a false one.
    assert environ == {} and chosen.wait_policy == "default"
    assert "torch was imported before pricer could set $OMP_WAIT_POLICY" in chosen.wait_reason


def test_an_xdist_worker_gets_its_share_of_the_cores():
    environ: dict[str, str] = {}

    chosen = cpu_threads.apply(environ, workers=3, cpus=16)

    assert environ == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "5"}
    assert chosen.threads == 5 and chosen.threads_reason == "16 cores shared by 3 xdist workers"


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_a_torch_thread_count_the_user_set_is_kept_in_workers(name):
    environ = {name: "2"}
    torch = _torch_imported_already()

    chosen = cpu_threads.apply(environ, workers=2, cpus=16, torch=torch)

    assert environ == {name: "2"} and torch.calls == []
    assert chosen.threads == 2 and chosen.threads_reason == f"${name} was set"


def test_a_worker_whose_torch_was_imported_first_sets_its_threads_through_torch():
    torch = _torch_imported_already()

    cpu_threads.apply({}, workers=2, cpus=4, torch=torch)

    assert torch.calls == [2]  # torch reads OMP_NUM_THREADS only when it starts


def test_the_cli_sets_the_wait_policy_before_any_command_runs(monkeypatch, capsys):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as in a fresh `pricer` process

    assert cli.main(["ladder", "no-such-folder"]) == 2
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_the_wait_policy_is_recorded_as_context_never_decisive():
    # Context differences only add noise to a verdict: baselines made before pricer set the policy stay comparable.
    assert "omp_wait_policy" not in DECISIVE
    assert cpu_threads.wait_policy({}) == "default"
    assert cpu_threads.wait_policy({"OMP_WAIT_POLICY": " passive"}) == "PASSIVE"


CONFTEST = """
import os

import pytest

SEEN = os.environ.get("OMP_WAIT_POLICY")  # a conftest is where a project would import torch first


@pytest.fixture
def seen_by_conftest():
    return SEEN
"""
TEST = """
import os


def test_torch_loads_with_waiting_threads_that_sleep(seen_by_conftest, capfd):
    capfd.readouterr()
    import torch  # OMP_DISPLAY_ENV: its OpenMP runtime prints the settings it read as it loads

    err = capfd.readouterr().err
    assert seen_by_conftest == "PASSIVE"
    assert "GOMP_SPINCOUNT = '0'" in err or "OMP_WAIT_POLICY = 'PASSIVE'" in err  # libgomp, or another runtime
    assert os.environ.get("OMP_NUM_THREADS") == {threads!r}
"""


@pytest.mark.e2e  # a pytest subprocess, one under xdist: `pytest -m e2e`
@pytest.mark.parametrize("workers", [None, 2], ids=["serial", "xdist"])
def test_the_plugin_sets_the_wait_policy_before_a_conftest_or_test_imports_torch(pytester, monkeypatch, workers):
    if importlib.util.find_spec("torch") is None:  # not imported here: pytester would unload it, and torch segfaults
        pytest.skip("needs torch")                 # when imported twice
    for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_DISPLAY_ENV", "VERBOSE")
    threads = None if workers is None else str(cpu_threads.threads_per_worker(cpu_threads.available_cpus(), workers))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_torch_load=TEST.format(threads=threads))

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *(["-n", str(workers)] if workers else []))

    result.assert_outcomes(passed=1)
    if workers is None:
        result.stdout.fnmatch_lines(["pricer: OpenMP wait policy PASSIVE (pricer's default*"])
