"""Whether a run changed: its latency against the run-to-run spread of the earlier runs of its series on the same
machine, its Error against the previous run's, item by item."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pricer.history.accuracy_history import AccuracyEntry
from pricer.history.benchmark_runs import BenchPoint

# A latency change counts when it passes --min-change *and* what identical runs on this machine do. Two back-to-back
# identical runs on an H100 moved 8-bit, 16-bit and 32-bit medians by +22% to +65%, and three 30-round runs of
# 16 bits gave means of 0.316 / 0.383 / 0.233 s: the rounds of one run say nothing about the next, so Welch's
# test over them flagged all three as significant. What a run may do is learned from earlier runs instead.
LATENCY_MIN_CHANGE = 0.10  # below this nobody acts on a latency change, however sure
SPREAD_RUNS = 10  # compared with the median of the last 10 runs: recent enough to follow a drifting machine
MIN_SPREAD_RUNS = 3  # a spread needs 3 runs; with fewer the conservative rule below decides
# Prediction bound for the next identical run, two-sided 98%: robust spread (MAD) times Student's t at 0.99, times
# sqrt(1 + 1/n), as for a new draw from the same distribution; t's heavy tails for small n make it conservative.
# Simulated (medians scattering by 2.5% lognormal, a median's own noise 2%): a false alarm at run 4 or 5 in 0.02%
# of tries; a 30% slowdown after 5 runs caught 98% of the time (83% at 4% scatter, where 0.995 gave 72%).
SPREAD_QUANTILE = 0.99
MAD_TO_SD = 1.4826  # MAD of a normal distribution times this is its standard deviation
# Croux & Rousseeuw (1992), small-sample factors that make the MAD unbiased for n = 3..9 (1 beyond).
MAD_SMALL_SAMPLE = {3: 1.495, 4: 1.363, 5: 1.206, 6: 1.200, 7: 1.140, 8: 1.129, 9: 1.107}
# With 1 or 2 earlier runs the spread is unknown: a change must pass FEW_RUNS_FACTOR x --min-change and no round of
# the new run may overlap the rounds of an earlier one (every round slower than every earlier round, or faster).
FEW_RUNS_FACTOR = 2.0
ERROR_CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencyChange:
    """A run's median against the earlier runs of its series: the change, the smallest change that counts, the rule."""

    change: float  # now / reference - 1
    significant: bool
    reference: float  # the median of the earlier runs' medians: seconds, or probe times where relative_to_probe
    limit: float  # the smallest slowdown that counts (a speedup counts past 1 / (1 + limit) - 1)
    earlier_runs: int  # how many earlier runs the reference and spread come from
    spread: float | None  # run-to-run spread of the earlier runs (standard deviation of log medians); None: too few
    relative_to_probe: bool  # medians divided by each run's speed probe (all runs compared recorded one)

    @property
    def rule(self) -> str:
        return "spread" if self.spread is not None else "few runs"


def latency_change(earlier: Sequence[BenchPoint], now: BenchPoint, *,
                   min_change: float = LATENCY_MIN_CHANGE) -> LatencyChange:
    """`now` against the last SPREAD_RUNS of `earlier` (in time order, same machine and series)."""
    window = list(earlier)[-SPREAD_RUNS:]
    if not window:
        raise ValueError("latency_change needs at least one earlier run")
    # Medians count in seconds or, where every run compared timed the speed probe between its rounds, in probe
    # times (a machine slowed as a whole slows both alike): whichever the earlier runs scatter less in. Measured on
    # a 2-core machine at load 6-10: wall-time medians of identical runs 2.4-7.8 s, in probe times within 67%;
    # CPU time within 7%, in probe times 12% (a short probe is noisier than a long benchmark).
    units = [False, True] if all(p.probe for p in [*window, now]) else [False]
    if len(window) < MIN_SPREAD_RUNS:  # the spread is unknown: a change must show in every unit
        found = [_few_runs_change(window, now, probed=probed, min_change=min_change) for probed in units]
        return min(found, key=lambda f: (f.significant, abs(f.change)))
    logs = {probed: [_log(p, p.median, probed=probed) for p in window] for probed in units}
    probed = min(units, key=lambda u: run_to_run_spread(logs[u]))
    centre = statistics.median(logs[probed])
    shift = _log(now, now.median, probed=probed) - centre
    # Never below the noise each median has from its own rounds: three runs can agree closely by chance.
    spread = max(run_to_run_spread(logs[probed]), statistics.median(median_noise(p) for p in window))
    bound = max(math.log1p(min_change), spread_multiple(len(window)) * spread)
    return LatencyChange(change=math.expm1(shift), significant=abs(shift) >= bound, reference=math.exp(centre),
                         limit=math.expm1(bound), earlier_runs=len(window), spread=spread, relative_to_probe=probed)


def _few_runs_change(window: Sequence[BenchPoint], now: BenchPoint, *, probed: bool,
                     min_change: float) -> LatencyChange:
    """With 1 or 2 earlier runs: past FEW_RUNS_FACTOR x min_change, and no round overlapping theirs."""
    centre = statistics.median(_log(p, p.median, probed=probed) for p in window)
    shift = _log(now, now.median, probed=probed) - centre
    limit = FEW_RUNS_FACTOR * min_change
    apart = (_log(now, now.fastest, probed=probed) > max(_log(p, p.slowest, probed=probed) for p in window)
             if shift > 0 else
             _log(now, now.slowest, probed=probed) < min(_log(p, p.fastest, probed=probed) for p in window))
    return LatencyChange(change=math.expm1(shift), significant=abs(shift) >= math.log1p(limit) and apart,
                         reference=math.exp(centre), limit=limit, earlier_runs=len(window), spread=None,
                         relative_to_probe=probed)


def _log(point: BenchPoint, seconds: float, *, probed: bool) -> float:
    """log of a time, in seconds or in the run's probe times: relative, so 10% is 10% at 1 s and at 10 ms."""
    return math.log(max(seconds / point.probe if probed else seconds, 1e-12))


def run_to_run_spread(logs: Sequence[float]) -> float:
    """A robust standard deviation of runs' log medians: the scaled MAD, unbiased for small samples."""
    centre = statistics.median(logs)
    mad = statistics.median(abs(x - centre) for x in logs)
    return MAD_TO_SD * MAD_SMALL_SAMPLE.get(len(logs), 1.0) * mad


def median_noise(point: BenchPoint) -> float:
    """The relative noise of a run's median from its rounds alone: 1.2533 sigma / sqrt(rounds), sigma from the IQR."""
    if point.rounds < 2 or point.median <= 0:
        return 0.0
    return 1.2533 * point.iqr / 1.349 / math.sqrt(point.rounds) / point.median


def spread_multiple(runs: int) -> float:
    """How many run-to-run spreads a change from the median of `runs` earlier runs must pass to count."""
    from scipy import stats

    return float(stats.t.ppf(SPREAD_QUANTILE, runs - 1)) * math.sqrt(1 + 1 / runs)


def error_change(before: AccuracyEntry, now: AccuracyEntry) -> tuple[float, bool]:
    """(relative change of Error, significant): on the same items the paired 95% CI of the per-item change
    excludes 0 (as the gate computes it); otherwise the two runs' 95% CIs do not overlap."""
    change = now.error / before.error - 1 if before.error else math.inf
    paired = (before.data_sha256 is not None and before.data_sha256 == now.data_sha256
              and len(before.item_errors) == len(now.item_errors) > 1)
    if paired:
        from pricer.gate.verdict import paired_delta

        low, high = paired_delta(before.item_errors, now.item_errors, confidence=ERROR_CONFIDENCE).ci
        return change, low > 0 or high < 0
    return change, now.error_ci[0] > before.error_ci[1] or now.error_ci[1] < before.error_ci[0]
