"""Each statistic of pricer.gate.measures against scipy (or against the count by hand) on small hand-made cases."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from scipy import stats

from pricer.gate.measures import RESAMPLES, ROW_HEADERS, SEED, McNemar, Measure, PairedMean, holm, judge, moved_most


def test_paired_mean_p_is_the_exact_sign_flip_count_when_few_items_changed():
    worse = [3.0, -1.0, 2.0, 0.0, 0.0]
    # By hand: of the 8 sign patterns of (3, 1, 2), sums 6 and 4 reach the observed 4.
    flips = [sum(s * abs(x) for s, x in zip(signs, (3, 1, 2))) for signs in itertools.product((1, -1), repeat=3)]
    assert sum(total >= 4 for total in flips) / len(flips) == 0.25

    tested = PairedMean().run(worse)

    assert tested.p_worse == pytest.approx(0.25)
    scipy_p = stats.permutation_test((np.array(worse),), np.mean, permutation_type="samples",
                                     alternative="greater").pvalue  # exact: 2**5 < its resamples
    assert tested.p_worse == pytest.approx(scipy_p)
    assert tested.worsening == pytest.approx(0.8)


def test_paired_mean_p_matches_scipys_permutation_test_on_all_items():
    rng = random.Random(5)
    worse = [rng.gauss(0.3, 2.0) if rng.random() < 0.4 else 0.0 for _ in range(120)]

    tested = PairedMean().run(worse)

    scipy_p = stats.permutation_test((np.array(worse),), np.mean, permutation_type="samples", alternative="greater",
                                     n_resamples=RESAMPLES, rng=np.random.default_rng(SEED)).pvalue
    # Two Monte Carlo estimates of one p-value (different draws): within 3 standard errors of 9,999 resamples.
    assert abs(tested.p_worse - scipy_p) < 3 * math.sqrt(scipy_p * (1 - scipy_p) / RESAMPLES) + 1e-4
    assert tested.worsening == pytest.approx(np.mean(worse))


def test_paired_mean_interval_is_scipys_bca_bootstrap():
    worse = [1.0, 2.5, -0.5, 0.0, 3.0, 1.5, -1.0, 0.0, 2.0, 0.5]

    low, high = PairedMean().interval(worse, confidence=0.95)

    expected = stats.bootstrap((np.array(worse),), np.mean, confidence_level=0.95, n_resamples=RESAMPLES, method="BCa",
                               rng=np.random.default_rng(SEED)).confidence_interval
    assert (low, high) == pytest.approx((expected.low, expected.high))


def test_trimmed_mean_drops_the_tails_before_testing():
    worse = [500.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -900.0]
    test = PairedMean(trim=0.05)

    tested = test.run(worse)

    assert tested.worsening == pytest.approx(stats.trim_mean(worse, 0.05)) == pytest.approx(16 / 18)
    scipy_p = stats.permutation_test((np.array(worse),), lambda x, axis: stats.trim_mean(x, 0.05, axis=axis),
                                     permutation_type="samples", alternative="greater", n_resamples=RESAMPLES,
                                     rng=np.random.default_rng(SEED)).pvalue
    assert tested.p_worse == pytest.approx(scipy_p)
    plain = PairedMean().run(worse)
    assert plain.worsening < 0 < tested.worsening and tested.p_worse < plain.p_worse  # the mean is the -900's


def test_mcnemar_p_is_the_exact_binomial_tail_of_the_discordant_items():
    # 5 items got worse, 1 better, 2 unchanged: P(X >= 5 | 6, 1/2) = (6 + 1) / 64 by hand.
    worse = [1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 0.0, 0.0]

    tested = McNemar().run(worse)

    assert tested.p_worse == pytest.approx(7 / 64)
    assert tested.p_worse == pytest.approx(stats.binomtest(5, 6, 0.5, alternative="greater").pvalue)
    assert tested.worsening == pytest.approx(4 / 8)


def test_mcnemar_interval_is_clopper_pearson_on_the_change_scale():
    worse = [1.0] * 7 + [-1.0] * 2 + [0.0] * 11

    low, high = McNemar().interval(worse, confidence=0.95)

    # Clopper-Pearson bounds of 7 worse of 9 changed, from the beta distribution.
    p_low, p_high = stats.beta.ppf(0.025, 7, 3), stats.beta.ppf(0.975, 8, 2)
    assert (low, high) == pytest.approx(((2 * p_low - 1) * 9 / 20, (2 * p_high - 1) * 9 / 20))


def test_mcnemar_detects_seven_items_moving_one_way_after_holm_over_four_measures():
    values = [0.0] * 250

    assert McNemar().detectable(values, alpha=0.05 / 4) == pytest.approx(7 / 250)  # 0.5**7 = 0.0078 < 0.0125
    assert McNemar().run([1.0] * 7 + [0.0] * 243).p_worse == pytest.approx(0.5**7)


def test_holm_multiplies_the_smallest_p_by_m_and_never_decreases():
    # By hand: 0.01 x 4 = 0.04; 0.03 x 3 = 0.09; 0.04 x 2 = 0.08, raised to 0.09; 0.5 x 1.
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.9, 0.3]) == pytest.approx([0.9, 0.6])


def measure(name: str, before: list[float], now: list[float], tolerance: float) -> Measure:
    return Measure(name=name, before=tuple(before), now=tuple(now), test=PairedMean(), tolerance=tolerance, unit="$")


def test_a_measure_fails_only_when_significant_after_holm_and_beyond_its_tolerance():
    before = [10.0] * 39
    now = [10.0 + 2.0 + (i % 3) for i in range(39)]  # every item worse by 2-4 dollars: surely worse, by $3
    quiet = measure("quiet", before, before, 0.0)

    within, beyond = judge([measure("within", before, now, 5.0), quiet], alpha=0.05)[0], judge(
        [measure("beyond", before, now, 1.0), quiet], alpha=0.05)[0]

    assert within.significant and not within.failed
    assert beyond.failed and beyond.p_holm == pytest.approx(2 * beyond.p_worse)
    assert "beyond is worse by $3.00 (+30.0%), beyond the tolerance $1.00, Holm-adjusted p=" in beyond.reason()


def test_hits_read_as_a_drop_in_points():
    hits = Measure(name="Hits", before=(1.0, 1.0, 0.0, 1.0), now=(0.0, 1.0, 0.0, 0.0), test=McNemar(), tolerance=0.03,
                   higher_is_worse=False, unit="%")

    row = judge([hits], alpha=0.05)[0].row()

    assert row[:5] == ("Hits", "75.0%", "25.0%", "-50.0 pts", "-50.0 pts")  # tested and plain mean agree
    assert row[ROW_HEADERS.index("tolerance")] == "-3.0 pts"


def test_items_that_moved_most_come_worst_first_and_skip_improvements():
    m = measure("Error", [5.0, 5.0, 5.0, 5.0], [9.0, 4.0, 15.0, 5.0], 0.0)

    assert moved_most(m, count=5) == [2, 0]
