"""Tests of pricer.history.changes on made-up runs: a latency change counts past --min-change and the earlier runs' spread,
conservatively with too few of them; an Error change by the paired CI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pricer.history.accuracy_history import AccuracyEntry
from pricer.history.benchmark_runs import BenchPoint
from pricer.history.changes import FEW_RUNS_FACTOR, LATENCY_MIN_CHANGE, error_change, latency_change, spread_multiple
from pricer.store.machines import Machine


def point(median: float, *, spread: float = 0.02, minute: int = 0, probe: float | None = None) -> BenchPoint:
    """A run whose rounds lie within ±spread of its median."""
    return BenchPoint(file=Path(f"{minute:04d}.json"), machine=Machine(node="vm", cpu="AMD EPYC", gpu=None),
                      when=dt.datetime(2026, 11, 25, 4, minute, tzinfo=dt.timezone.utc), commit=None, dirty=None,
                      name="t", width="4bit", device="cpu", mean=median, stddev=median * spread, median=median,
                      iqr=median * spread, fastest=median * (1 - spread), slowest=median * (1 + spread), rounds=9,
                      probe=probe, tokens_per_s=None, peak_memory_bytes=None)


def runs(*medians: float) -> list[BenchPoint]:
    return [point(m, minute=i) for i, m in enumerate(medians)]


def entry(errors: tuple[float, ...], *, minute: int = 0) -> AccuracyEntry:
    mean = sum(errors) / len(errors)
    return AccuracyEntry(date=f"2026-11-25T05:{minute:02d}:00Z", model="m", width="4bit", n=len(errors), error=mean,
                         error_ci=(mean - 15, mean + 15), rmsle=0.9, hits=0.25, unparsed=0, item_errors=errors,
                         data_sha256="abc", inputs={}, passed=True, commit=None, dirty=None,
                         machine={"node": "vm", "cpu": "AMD EPYC", "gpu": None})


# ---------------------------------------------------------------- latency


def test_a_slowdown_past_min_change_and_the_earlier_runs_spread_is_significant():
    found = latency_change(runs(1.00, 1.02, 0.98, 1.01, 0.99), point(1.3))

    assert (round(found.change, 3), found.significant, found.earlier_runs) == (0.3, True, 5)
    assert LATENCY_MIN_CHANGE <= found.limit < 0.3


def test_a_slowdown_within_what_earlier_runs_did_is_not_significant_though_past_min_change():
    found = latency_change(runs(1.0, 1.3, 0.8, 1.2, 0.9), point(1.35))

    assert found.change > LATENCY_MIN_CHANGE and found.significant is False
    assert found.limit > 0.35, "the bar follows the machine's run-to-run spread"


def test_a_drift_below_min_change_is_not_significant_however_steady_the_earlier_runs():
    steady = runs(1.0, 1.0, 1.0, 1.0, 1.0)

    assert latency_change(steady, point(1.05)).significant is False
    assert latency_change(steady, point(1.12)).significant is True


def test_a_speedup_past_the_bar_is_significant_too():
    found = latency_change(runs(1.00, 1.02, 0.98, 1.01, 0.99), point(0.7))

    assert round(found.change, 3) == -0.3 and found.significant is True


def test_one_wild_earlier_run_neither_hides_a_slowdown_nor_raises_a_false_alarm():
    earlier = runs(1.0, 1.01, 0.99, 1.0, 2.5)

    assert latency_change(earlier, point(1.3)).significant is True
    assert latency_change(earlier, point(1.03)).significant is False


def test_with_too_few_earlier_runs_a_change_needs_twice_min_change_and_no_overlapping_round():
    earlier = [point(1.0, spread=0.05)]
    bar = FEW_RUNS_FACTOR * LATENCY_MIN_CHANGE

    below = latency_change(earlier, point(1 + bar - 0.05, spread=0.01))
    apart = latency_change(earlier, point(1.3, spread=0.01))
    overlapping = latency_change(earlier, point(1.3, spread=0.25))

    assert (below.significant, apart.significant, overlapping.significant) == (False, True, False)
    assert apart.spread is None and apart.rule == "few runs" and apart.limit == pytest.approx(bar)


def test_a_machine_slowed_as_a_whole_is_no_change_where_runs_timed_the_speed_probe():
    # A neighbour's load comes and goes: seconds scatter by ±30%, the probe with them.
    earlier = [point(s, probe=s / 20, minute=i) for i, s in enumerate((1.0, 1.3, 0.8, 1.2, 0.9))]
    busy = point(1.5, probe=0.075, minute=9)  # slowed as a whole: 20 probe times, as before
    slower_code = point(1.3, probe=0.05, minute=9)  # 26 probe times

    assert latency_change(earlier, busy).significant is False
    assert latency_change(earlier, slower_code).significant is True
    assert latency_change(earlier, busy).relative_to_probe is True


def test_where_the_probe_scatters_more_than_the_seconds_seconds_are_compared():
    # CPU time on a busy machine: the benchmark's medians steady, the short probe's times not.
    earlier = [point(1.0 + d, probe=p, minute=i) for i, (d, p) in enumerate(
        [(0.0, 0.05), (0.01, 0.06), (-0.01, 0.04), (0.02, 0.055), (-0.02, 0.045)])]

    found = latency_change(earlier, point(1.3, probe=0.065, minute=9))

    assert (found.relative_to_probe, found.significant) == (False, True)


def test_with_too_few_earlier_runs_a_change_must_show_in_seconds_and_in_probe_times():
    earlier = [point(1.0, probe=0.05, spread=0.01)]

    assert latency_change(earlier, point(1.5, probe=0.075, spread=0.01)).significant is False  # busy machine
    assert latency_change(earlier, point(1.5, probe=0.05, spread=0.01)).significant is True


def test_without_a_probe_in_every_run_compared_seconds_are_compared():
    earlier = [point(1.0, probe=0.05, minute=i) for i in range(4)] + [point(1.0, minute=4)]

    found = latency_change(earlier, point(1.5, probe=0.075, minute=9))

    assert (found.relative_to_probe, found.significant) == (False, True)


def test_only_the_last_ten_earlier_runs_set_the_reference():
    found = latency_change(runs(*[2.0] * 10, *[1.0] * 10), point(1.0))

    assert (found.reference, found.change, found.significant) == (1.0, 0.0, False)


def test_the_bar_is_higher_the_fewer_earlier_runs_there_are():
    multiples = [spread_multiple(n) for n in (3, 5, 10)]

    assert multiples == sorted(multiples, reverse=True)
    assert multiples[-1] > 2.33, "never below the normal distribution's 99% quantile"


def test_latency_change_without_an_earlier_run_is_refused():
    with pytest.raises(ValueError, match="at least one earlier run"):
        latency_change([], point(1.0))


# ---------------------------------------------------------------- Error


def test_error_worse_on_every_item_is_significant_though_the_cis_overlap():
    before = entry(tuple(float(10 + i % 17) for i in range(60)))
    after = entry(tuple(e + 1.0 + i % 2 for i, e in enumerate(before.item_errors)), minute=1)

    assert before.error_ci[1] > after.error_ci[0]
    assert error_change(before, after)[1] is True


def test_identical_errors_are_no_change():
    errors = (10.0, 20.0, 30.0, 40.0)

    assert error_change(entry(errors), entry(errors, minute=1)) == (0.0, False)
