"""The gate: a paired comparison of a run with its baseline, and of each bit width with 32 bits -> Verdict."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pricer.baselines import Baseline
from pricer.evaluate import RunResult
from pricer.fingerprint import FieldChange, Fingerprint, differences
from pricer.metrics import score_item

ALPHA = 0.05
POWER = 0.80  # the minimum detectable effect is quoted at the usual 80% power
RESAMPLES = 9999
SEED = 0  # resampling is seeded so a verdict never flips between two runs of the same predictions
WORST_SHOWN = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class GateConfig:
    """When a run counts as worse: significant at `alpha` AND worse by more than the tolerance."""

    tolerance_share: float = 0.05  # of the baseline's Error
    tolerance_dollars: float = 0.0
    alpha: float = ALPHA
    max_error: float | None = None
    min_hits: float | None = None
    max_unparsed: float | None = None  # share of items

    def tolerance(self, baseline_error: float) -> float:
        """The larger of the dollar and the relative tolerance."""
        return max(self.tolerance_dollars, self.tolerance_share * baseline_error)


@dataclass(frozen=True, slots=True, kw_only=True)
class PairedDelta:
    """Mean per-item change in absolute error (now - before) with its bootstrap CI and one-sided p."""

    mean: float
    ci: tuple[float, float]
    p_worse: float  # H0: no worse on average; H1: worse
    confidence: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WorseItem:
    index: int
    title: str
    truth: float
    before: float
    now: float
    change: float  # in absolute error, dollars


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    passed: bool
    name: str
    reasons: tuple[str, ...]
    not_comparable: tuple[FieldChange, ...] = ()
    noise: tuple[FieldChange, ...] = ()
    baseline_error: float = math.nan
    now_error: float = math.nan
    delta: PairedDelta | None = None
    tolerance: float = math.nan
    mde: float = math.nan
    rows: tuple[tuple[str, str, str, str, str], ...] = ()
    worst: tuple[WorseItem, ...] = field(default_factory=tuple)

    def message(self, *, accept: str = "") -> str:
        """The failure text: what, how much, how sure, which items, and how to accept it."""
        from pricer.report import format_table

        lines = [f"{self.name}: {'passed' if self.passed else 'FAILED'}: {'; '.join(self.reasons) or 'not measurably worse'}"]
        if self.not_comparable:
            lines.append("not comparable: the baseline was made from other inputs:")
            lines += [f"  {c.field}: baseline {c.baseline!r}, now {c.now!r}" for c in self.not_comparable]
        if self.noise:
            lines.append("context differs (adds noise; the statistics decide):")
            lines += [f"  {c.field}: baseline {c.baseline!r}, now {c.now!r}" for c in self.noise]
        if self.delta:
            d = self.delta
            pct = 100 * d.mean / self.baseline_error if self.baseline_error else math.nan
            lines.append(
                f"Error ${self.baseline_error:,.2f} -> ${self.now_error:,.2f}: {d.mean:+,.2f} ({pct:+.1f}%), "
                f"{d.confidence:.0%} CI [{d.ci[0]:+,.2f}, {d.ci[1]:+,.2f}], one-sided p={d.p_worse:.4f}; "
                f"tolerance ${self.tolerance:,.2f}, detectable at 80% power ${self.mde:,.2f}"
            )
        if self.rows:
            lines.append(format_table(["metric", "baseline", "now", "delta", "limit"], self.rows))
        if self.worst:
            lines.append("items that got worse most:")
            lines += [
                f"  #{w.index} {w.title}: truth ${w.truth:,.2f}, baseline guess ${w.before:,.2f}, "
                f"now ${w.now:,.2f} (error {w.change:+,.2f})"
                for w in self.worst
            ]
        if not self.passed and accept:
            lines.append(f"if this change is intended, accept it with: {accept}")
        return "\n".join(lines)


def paired_delta(before: Sequence[float], now: Sequence[float], *, confidence: float = 0.95) -> PairedDelta:
    """Paired comparison of per-item errors: sign-flip permutation p-value and BCa bootstrap CI of the mean."""
    import numpy as np
    from scipy import stats

    diffs = np.asarray(now, dtype=float) - np.asarray(before, dtype=float)
    # Baselines store guesses to 6 decimals; smaller differences are storage rounding, not change.
    diffs[np.abs(diffs) < 1e-5] = 0.0
    mean = float(diffs.mean())
    if not np.any(diffs):
        return PairedDelta(mean=0.0, ci=(0.0, 0.0), p_worse=1.0, confidence=confidence)
    rng = np.random.default_rng(SEED)
    p = stats.permutation_test(
        (diffs,), np.mean, permutation_type="samples", alternative="greater", n_resamples=RESAMPLES, rng=rng
    ).pvalue
    ci = stats.bootstrap((diffs,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES, method="BCa", rng=rng)
    low, high = ci.confidence_interval
    if not (math.isfinite(low) and math.isfinite(high)):  # BCa degenerates when few items changed
        low, high = stats.bootstrap((diffs,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES,
                                    method="percentile", rng=rng).confidence_interval
    return PairedDelta(mean=mean, ci=(float(low), float(high)), p_worse=float(p), confidence=confidence)


def minimum_detectable_effect(errors: Sequence[float], *, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest mean worsening a one-sided paired test finds with this power, if per-item changes
    spread as widely as the baseline's errors do (a rule of thumb, printed before gating)."""
    import numpy as np
    from scipy import stats

    data = np.asarray(errors, dtype=float)
    if len(data) < 2:
        return math.inf
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)
    return float(z * data.std(ddof=1) / math.sqrt(len(data)))


def compare(baseline: Baseline, run: RunResult, fingerprint: Fingerprint, config: GateConfig) -> Verdict:
    """Fail when the run is not comparable, breaks a plain limit, or is measurably worse than its baseline."""
    decisive, noise = differences(baseline.fingerprint, fingerprint)
    mismatched = [
        i for i, (b, item) in enumerate(zip(baseline.items, run.items)) if b.index != item.index or b.truth != item.price
    ]
    if len(baseline.items) != len(run.items) or mismatched:
        decisive.append(FieldChange(field="items", baseline=f"{len(baseline.items)} items",
                                    now=f"{len(run.items)} items, {len(mismatched)} with another index or price"))
    if decisive:
        return Verdict(passed=False, name=run.name, reasons=("not comparable with the baseline",),
                       not_comparable=tuple(decisive), noise=tuple(noise))

    before = [score_item(b.guess, b.truth).error for b in baseline.items]
    now = [s.error for s in run.scores]
    base_error = math.fsum(before) / len(before)
    delta = paired_delta(before, now)
    tolerance = config.tolerance(base_error)
    reasons = []
    if delta.p_worse < config.alpha and delta.mean > tolerance:
        reasons.append(
            f"Error is worse by ${delta.mean:,.2f} ({100 * delta.mean / base_error:+.1f}%), "
            f"more than the tolerance ${tolerance:,.2f}, p={delta.p_worse:.4f} < {config.alpha}"
        )
    m, b = run.metrics, baseline.metrics
    unparsed_share = m.unparsed / m.n
    rows = [
        ("Error", f"${b['error']:,.2f}", f"${m.error:,.2f}", f"{m.error - b['error']:+,.2f}",
         f"<= ${config.max_error:,.2f}" if config.max_error is not None else f"+${tolerance:,.2f} if significant"),
        ("RMSLE", f"{b['rmsle']:.3f}", f"{m.rmsle:.3f}", f"{m.rmsle - b['rmsle']:+.3f}", "-"),
        ("Hits", f"{b['hits']:.1%}", f"{m.hits:.1%}", f"{100 * (m.hits - b['hits']):+.1f} pts",
         f">= {config.min_hits:.1%}" if config.min_hits is not None else "-"),
        ("unparsed", f"{b['unparsed']}", f"{m.unparsed}", f"{m.unparsed - b['unparsed']:+d}",
         f"<= {config.max_unparsed:.1%}" if config.max_unparsed is not None else "-"),
    ]
    if config.max_error is not None and m.error > config.max_error:
        reasons.append(f"Error ${m.error:,.2f} is above the limit ${config.max_error:,.2f}")
    if config.min_hits is not None and m.hits < config.min_hits:
        reasons.append(f"Hits {m.hits:.1%} is below the limit {config.min_hits:.1%}")
    if config.max_unparsed is not None and unparsed_share > config.max_unparsed:
        reasons.append(f"{unparsed_share:.1%} of completions had no price, above the limit {config.max_unparsed:.1%}")
    changes = sorted(
        (WorseItem(index=bi.index, title=bi.title, truth=bi.truth, before=bi.guess, now=s.guess, change=n - o)
         for bi, s, o, n in zip(baseline.items, run.scores, before, now) if n - o >= 0.01),
        key=lambda w: -w.change,
    )
    return Verdict(
        passed=not reasons, name=run.name, reasons=tuple(reasons), noise=tuple(noise),
        baseline_error=base_error, now_error=m.error, delta=delta, tolerance=tolerance,
        mde=minimum_detectable_effect(before, alpha=config.alpha), rows=tuple(rows), worst=tuple(changes[:WORST_SHOWN]),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Tax:
    """What a bit width costs in Error against the 32-bit run of the same session."""

    label: str
    error: float
    reference_error: float
    delta: PairedDelta
    bound: float | None  # dollars

    @property
    def exceeded(self) -> bool:
        # Only a tax surely past the bound fails: the whole corrected CI lies above it.
        return self.bound is not None and self.delta.ci[0] > self.bound

    def line(self) -> str:
        d = self.delta
        pct = 100 * d.mean / self.reference_error
        bound = f"; bound ${self.bound:,.2f}" if self.bound is not None else ""
        return (f"{self.label}: Error ${self.error:,.2f} vs 32bit ${self.reference_error:,.2f}: tax {d.mean:+,.2f} "
                f"({pct:+.1f}%), {d.confidence:.1%} CI [{d.ci[0]:+,.2f}, {d.ci[1]:+,.2f}]{bound}")


def quantization_ladder(
    reference: RunResult, runs: Mapping[str, RunResult], *, max_tax_share: float | None, alpha: float = ALPHA
) -> list[Tax]:
    """Each width against 32 bits, paired, with Bonferroni-corrected CIs for the several comparisons."""
    confidence = 1 - alpha / max(len(runs), 1)
    ref = [s.error for s in reference.scores]
    taxes = []
    for label, run in runs.items():
        delta = paired_delta(ref, [s.error for s in run.scores], confidence=confidence)
        bound = None if max_tax_share is None else max_tax_share * reference.metrics.error
        taxes.append(Tax(label=label, error=run.metrics.error, reference_error=reference.metrics.error, delta=delta, bound=bound))
    return taxes
