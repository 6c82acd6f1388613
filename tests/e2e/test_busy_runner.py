"""Tests of benchmarks/busy_runner.py's environments and ratios with made-up timings. No timing here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # a server, a second process or a wheel: `pytest -m e2e`

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "busy_runner.py"


@pytest.fixture(scope="module")
def busy_runner():
    spec = importlib.util.spec_from_file_location("busy_runner_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_after_leaves_the_policy_to_pricer_and_before_restores_the_runtimes_spin(busy_runner):
    base = {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "7", "PRICER_DATA": "data"}

    after = busy_runner.environment("after", before="default", base=base)
    before = busy_runner.environment("before", before="default", base=base)
    active = busy_runner.environment("before", before="active", base=base)

    assert after == {"PATH": "/bin", "PRICER_DATA": "data", "NO_COLOR": "1"}
    assert before == {**after, "GOMP_SPINCOUNT": "300000"}
    assert active == {**after, "OMP_WAIT_POLICY": "ACTIVE"}


def test_ratios_are_busy_over_idle_per_policy_and_after_over_before_pair_by_pair(busy_runner):
    walls = {(0, "before"): [10, 12], (0, "after"): [9, 12], (1, "before"): [30, 40], (1, "after"): [12, 16]}
    runs = [{"round": r, "busy": busy, "policy": policy, "wall_s": wall, "cpu_s": 1.0, "predictions": "same",
             "exit_code": 0}
            for (busy, policy), values in walls.items() for r, wall in enumerate(values)]

    summary = busy_runner.summarize(runs, [0, 1])

    assert summary["busy_over_idle"] == {"before": {"1": 3.182}, "after": {"1": 1.333}}  # 35/11, 14/10.5
    assert summary["after_over_before"]["1"] == {"median": 0.4, "min": 0.4, "max": 0.4}
    assert summary["after_over_before"]["0"] == {"median": 0.95, "min": 0.9, "max": 1.0}
    assert summary["same_predictions"] is True
