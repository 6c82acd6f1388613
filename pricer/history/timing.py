"""Making a call fit to time with pytest-benchmark: warmed up until its durations settle, rounds chosen as
pytest-benchmark chooses them, garbage collected before and off during each timed call, the GPU synchronized.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

# Warm-up ends when the last WARMUP_WINDOW rounds lie within WARMUP_SPREAD of each other, or when their median is
# no longer WARMUP_SPREAD below the median of the WARMUP_WINDOW before them (the call stopped getting faster: a
# busy machine never reaches the first test). Caches, the allocator and a GPU's clocks settle within a few calls;
# 10% is what a shared CPU's rounds scatter by when nothing is left to warm.
WARMUP_WINDOW = 3
WARMUP_SPREAD = 0.10
WARMUP_MAX_ROUNDS = 12  # a call that keeps drifting is timed anyway, and says so (WarmUp.stable)


@dataclass(frozen=True, slots=True, kw_only=True)
class WarmUp:
    """The untimed rounds run before timing, their durations (seconds) and whether they settled."""

    durations: tuple[float, ...]
    stable: bool

    @property
    def rounds(self) -> int:
        return len(self.durations)

    @property
    def typical(self) -> float:
        """The median of the last window: what one timed round will take."""
        return statistics.median(self.durations[-WARMUP_WINDOW:])


def settled(durations: Sequence[float], *, window: int = WARMUP_WINDOW, spread: float = WARMUP_SPREAD) -> bool:
    """Whether a call whose rounds took `durations` has warmed up: see WARMUP_WINDOW."""
    if len(durations) < window:
        return False
    last = durations[-window:]
    if max(last) <= min(last) * (1 + spread):
        return True
    if len(durations) < 2 * window:
        return False
    before = durations[-2 * window:-window]
    return statistics.median(last) >= statistics.median(before) * (1 - spread)


def warm_up(call: Callable[[], object], *, timer: Callable[[], float] = time.perf_counter,
            window: int = WARMUP_WINDOW, spread: float = WARMUP_SPREAD,
            max_rounds: int = WARMUP_MAX_ROUNDS) -> WarmUp:
    """Run `call` until its durations (by `timer`, as pytest-benchmark's --benchmark-timer) settle."""
    durations: list[float] = []
    while len(durations) < max_rounds:
        start = timer()
        call()
        durations.append(timer() - start)
        if settled(durations, window=window, spread=spread):
            return WarmUp(durations=tuple(durations), stable=True)
    return WarmUp(durations=tuple(durations), stable=False)


def rounds_for(duration: float, *, min_rounds: int, max_time: float) -> int:
    """Timed rounds for a call of `duration` seconds, as pytest-benchmark picks them outside pedantic mode:
    enough to fill --benchmark-max-time, at least --benchmark-min-rounds."""
    if duration <= 0:
        return min_rounds
    return max(min_rounds, math.ceil(max_time / duration))


def timed_call(function: Callable[[], T], *, cuda: bool) -> Callable[[], T]:
    """`function` fit to time: the garbage collector off while it runs (a collection of earlier rounds' garbage
    would land in a random round) and, on CUDA, returning only once the GPU has finished what it queued."""

    def timed() -> T:
        enabled = gc.isenabled()
        gc.disable()
        try:
            result = function()
            if cuda:
                import torch

                torch.cuda.synchronize()  # generate() can return while kernels are still queued: wait, inside the timing
            return result
        finally:
            if enabled:
                gc.enable()

    return timed


def round_setup(*, cuda: bool) -> Callable[[], None]:
    """A pedantic `setup`, untimed: collect the garbage now, and start each round with an idle GPU."""

    def setup() -> None:
        gc.collect()
        if cuda:
            import torch

            torch.cuda.synchronize()

    return setup


def slowed(call: Callable[[], T], *, share: float, timer: Callable[[], float] = time.perf_counter) -> Callable[[], T]:
    """`call` made `share` slower (0.3: +30%) by busy work after it, measured with the benchmark's own timer: a
    planted regression, to prove that a comparison catches one. CPU work, not a sleep, so that a CPU-time timer
    (--benchmark-timer time.process_time) sees it too."""

    def slower() -> T:
        start = timer()
        result = call()
        end = start + (1 + share) * (timer() - start)
        while timer() < end:
            pass
        return result

    return slower


# A fixed matmul timed between rounds, with the benchmark's timer: the machine's speed at that moment. On a shared
# machine a busy neighbour slows probe and benchmark alike (identical runs' CPU-time medians differed by 34% at a
# load of 10 on 2 cores), so a benchmark's median over the probe's moves only when the benchmarked code does.
PROBE_SIZE = {"cpu": 384, "cuda": 4096}  # ~5 ms a product at one CPU thread; ~0.3 ms on an H100 in bf16
PROBE_PRODUCTS = 8


class SpeedProbe:
    """Times `work` (a fixed computation) once per call, keeping the durations; see PROBE_SIZE."""

    def __init__(self, work: Callable[[], object], *, timer: Callable[[], float] = time.perf_counter,
                 description: str = "") -> None:
        self.work, self.timer, self.description = work, timer, description
        self.durations: list[float] = []

    def __call__(self) -> float:
        start = self.timer()
        self.work()
        self.durations.append(self.timer() - start)
        return self.durations[-1]

    @property
    def median(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None


def matmul_probe(*, device: str, dtype: str, timer: Callable[[], float] = time.perf_counter) -> SpeedProbe:
    """A SpeedProbe of PROBE_PRODUCTS square matrix products on `device` in `dtype`, synchronized on CUDA."""
    import torch

    kind = "cuda" if device.startswith("cuda") else "cpu"
    size = PROBE_SIZE[kind]
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=getattr(torch, dtype))

    def work() -> None:
        with torch.inference_mode():
            for _ in range(PROBE_PRODUCTS):
                a @ a
            if kind == "cuda":
                torch.cuda.synchronize()

    return SpeedProbe(work, timer=timer, description=f"{PROBE_PRODUCTS} x {dtype} {size}x{size} matmul on {kind}")
