"""The planted-regression suite, fast: benchmarks/planted_regressions.py on the committed baselines with one run
per kind and baseline (the README's table is the same script with 100+ runs per row), and no false alarms."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from pricer.gate import GateConfig

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "planted_regressions.py"
UNPARSED = "10% of completions stop containing a price (guess 0, unparsed)"
FAST_WIDTHS = ("4bit", "16bit")  # the widths whose real reruns flipped most; the script covers all four


@pytest.fixture(scope="module")
def planted():
    spec = importlib.util.spec_from_file_location("planted_regressions", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stored(planted):
    found = planted.committed(ROOT / "baselines")
    assert {(s.model, s.width) for s in found} == {(m, f"{b}bit") for m in planted.MODELS for b in (4, 8, 16, 32)}
    return found


@pytest.mark.parametrize("kind", [
    UNPARSED,
    "guesses rotated among items",
    "guesses one place off within each batch of 8 (ours)",
    "30% of guesses collapse to $36",
    "30% of guesses halved",
    "20% of guesses tripled",
    "20% of prices lose their last digit (ours)",
    "every guess x1.15 (drift)",
])
def test_planted_regression_is_caught_wherever_it_moves_a_measure_past_its_tolerance(planted, stored, kind):
    fast = [s for s in stored if s.width in FAST_WIDTHS]

    rows = planted.planted_rows(fast, GateConfig(), runs=1, cross=False, old=False, kinds=(kind,))

    assert [r["runs"] for r in rows] == [2, 2]
    for row in rows:
        assert row["new"] >= row["beyond"], row  # every run past a tolerance is caught
        if kind == UNPARSED:
            assert row["new"] == row["runs"] == row["caught_by"]["unparsed"], row


def test_completions_without_a_price_are_still_caught_under_the_cross_class_rule(planted, stored):
    rows = planted.planted_rows([s for s in stored if s.width in FAST_WIDTHS], GateConfig(), runs=1, old=False,
                                kinds=(UNPARSED,))

    assert [r["cross"] for r in rows] == [r["runs"] for r in rows] == [2, 2]


def test_identical_reruns_and_simulated_hardware_flips_raise_no_alarm(planted, stored):
    rows = planted.quiet_rows(stored, GateConfig(), noise_runs=1, old=False)

    for row in rows:
        assert row["new"] == 0, row
    identical = [r for r in rows if r["kind"] == "identical rerun"]
    assert [r["max_p_holm_below_1"] for r in identical] == [0, 0]  # p = 1 on every measure
    assert sum(r["runs"] for r in rows if r["kind"].startswith("simulated")) == 8
    reruns = [r for r in rows if r["kind"].startswith("real")]
    if not any(r["runs"] for r in reruns):
        pytest.skip("no baselines of a second hardware class are committed (baselines/<model>/<class>/)")
    # The real reruns on another hardware class, both ways round, pass under the cross-class rule.
    assert sum(r["runs"] for r in reruns) == 2 * sum(len(s.classes) - 1 for s in stored)
