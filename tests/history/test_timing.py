"""Tests of pricer.history.timing with a fake clock: warm-up ends when rounds settle, rounds as pytest-benchmark picks them,
the garbage collector off inside the timed call, a planted slowdown of the asked share."""

from __future__ import annotations

import gc
from collections.abc import Iterable

import pytest

from pricer.history.timing import (WARMUP_MAX_ROUNDS, SpeedProbe, matmul_probe, round_setup, rounds_for, settled,
                                   slowed, timed_call, warm_up)


class FakeClock:
    """A timer that only moves when told: each call of `call` lasts the next of `durations`."""

    def __init__(self, durations: Iterable[float] = ()) -> None:
        self.now = 0.0
        self.durations = iter(durations)
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def call(self) -> str:
        self.calls += 1
        self.now += next(self.durations)
        return "done"


def test_warm_up_stops_once_three_rounds_lie_within_ten_percent():
    clock = FakeClock([5.0, 3.0, 2.0, 1.0, 1.05, 0.98, 7.0])

    warm = warm_up(clock.call, timer=clock)

    assert warm.durations == pytest.approx((5.0, 3.0, 2.0, 1.0, 1.05, 0.98))
    assert (warm.stable, clock.calls, warm.typical) == (True, 6, pytest.approx(1.0))


def test_warm_up_on_a_noisy_machine_stops_when_rounds_no_longer_get_faster():
    noisy = [3.0, 1.2, 1.0, 1.4, 1.1, 1.3]  # never within 10%, but the last three are no faster than the three before

    assert not settled(noisy[:5])
    assert settled(noisy)


def test_warm_up_of_a_call_that_keeps_getting_faster_gives_up_and_says_so():
    clock = FakeClock(10.0 * 0.7 ** i for i in range(100))

    warm = warm_up(clock.call, timer=clock)

    assert (warm.rounds, warm.stable, clock.calls) == (WARMUP_MAX_ROUNDS, False, WARMUP_MAX_ROUNDS)


@pytest.mark.parametrize(("duration", "rounds"), [(2.0, 5), (0.1, 10), (0.01, 100), (0.0, 5)])
def test_rounds_fill_max_time_and_never_fall_below_min_rounds(duration, rounds):
    assert rounds_for(duration, min_rounds=5, max_time=1.0) == rounds


def test_a_planted_slowdown_adds_that_share_of_the_call_by_the_same_timer():
    clock = FakeClock([2.0])
    ticks = iter(range(1000))

    def timer() -> float:  # busy waiting reads the clock: each read moves it 10 ms on
        clock.now += 0.01 if next(ticks) > 1 else 0.0
        return clock.now

    result = slowed(clock.call, share=0.3, timer=timer)()

    assert result == "done"
    assert clock.now == pytest.approx(2.6, abs=0.02)


def test_the_timed_call_runs_with_the_garbage_collector_off_and_restores_it():
    seen = []
    call = timed_call(lambda: seen.append(gc.isenabled()) or len(seen), cuda=False)

    assert gc.isenabled()
    assert call() == 1
    assert seen == [False] and gc.isenabled()


def test_the_round_setup_collects_earlier_garbage_before_the_timing(monkeypatch):
    collected = []
    monkeypatch.setattr(gc, "collect", lambda *a: collected.append(a) or 0)

    round_setup(cuda=False)()

    assert collected == [()]


def test_the_speed_probe_times_its_work_once_per_call_by_the_given_timer():
    clock = FakeClock([0.05, 0.07, 0.06])
    probe = SpeedProbe(clock.call, timer=clock, description="fake")

    assert [probe(), probe(), probe()] == pytest.approx([0.05, 0.07, 0.06])
    assert probe.median == pytest.approx(0.06)


def test_the_matmul_probe_runs_on_cpu_and_is_timed():
    probe = matmul_probe(device="cpu", dtype="float32")

    assert probe() > 0 and probe.median is not None
    assert probe.description.endswith("matmul on cpu")
