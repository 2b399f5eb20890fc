"""The comparison primitive on hand-made samples with known answers (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from byzstress.analysis.compare import (
    CONTRADICTED,
    INCONCLUSIVE,
    NO_EFFECT,
    SUPPORTED,
    collapse_difference,
    decide,
    rate,
    welch,
)


def _one(a, b, **kw):
    return decide([welch(a, b, **kw)])[0]


def test_a_clear_effect_is_supported():
    rng = np.random.default_rng(0)
    c = _one(70 + rng.normal(0, 1, 5), 40 + rng.normal(0, 1, 5))
    assert c.outcome == SUPPORTED
    assert 25 < c.ci_low < c.estimate < c.ci_high < 35


def test_a_clear_effect_the_other_way_is_contradicted():
    rng = np.random.default_rng(1)
    c = _one(40 + rng.normal(0, 1, 5), 70 + rng.normal(0, 1, 5))
    assert c.outcome == CONTRADICTED
    assert c.ci_high < 0


def test_identical_distributions_with_enough_seeds_give_no_effect():
    rng = np.random.default_rng(2)
    # the same distribution on both sides; 30 seeds make the interval narrower than ±3
    c = _one(rng.normal(60, 1.5, 30), rng.normal(60, 1.5, 30))
    assert c.outcome == NO_EFFECT
    assert c.ci_low > -3 and c.ci_high < 3


def test_a_noisy_three_seed_difference_is_inconclusive():
    # 5 points apart in mean, 10 points of spread within each side
    c = _one([50.0, 70.0, 60.0], [55.0, 45.0, 65.0])
    assert c.outcome == INCONCLUSIVE
    assert c.ci_low < 0 < c.ci_high
    # too few seeds to tell 5 points from equivalence within 3 either
    assert c.detectable > 10


def test_a_one_seed_side_cannot_be_decided():
    c = _one([50.0], [10.0, 11.0, 12.0])
    assert c.outcome == INCONCLUSIVE
    assert math.isnan(c.ci_low) and math.isnan(c.p_for)


def test_the_interval_is_welchs():
    # the textbook formula: Welch–Satterthwaite degrees of freedom and the t quantile
    a = np.array([71.0, 74.5, 69.0, 72.2, 70.1])
    b = np.array([60.0, 66.0, 58.5])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    c = welch(a, b)
    diff = a.mean() - b.mean()
    assert c.estimate == pytest.approx(diff)
    assert (c.ci_low, c.ci_high) == pytest.approx((diff - half, diff + half))


def test_a_threshold_moves_the_null():
    # a drop of about 12 points, tight: beyond a threshold of 0 and of 10, not of 20
    a, b = [80.0, 80.5, 79.5, 80.2, 79.8], [68.0, 68.4, 67.6, 68.1, 67.9]
    assert _one(a, b, threshold=0.0).outcome == SUPPORTED
    assert _one(a, b, threshold=10.0).outcome == SUPPORTED
    assert _one(a, b, threshold=20.0).outcome == CONTRADICTED


def test_holm_matches_the_step_down_definition():
    # Holm (1979): sort p ascending, multiply the i-th smallest by (m − i + 1), take the
    # running maximum, cap at 1; here by hand for four p-values
    p = [0.01, 0.04, 0.03, 0.005]
    expected = [0.03, 0.06, 0.06, 0.02]
    rng = np.random.default_rng(3)
    family = [welch(rng.normal(0, 1, 4), rng.normal(0, 1, 4)) for _ in p]
    family = [type(c)(**{**c.__dict__, "p_for": x}) for c, x in zip(family, p, strict=True)]
    assert [c.p_for_adj for c in decide(family)] == pytest.approx(expected)


def test_holm_keeps_an_untestable_comparison_in_the_family():
    rng = np.random.default_rng(4)
    strong = welch(70 + rng.normal(0, 1, 5), 40 + rng.normal(0, 1, 5))
    alone = decide([strong])[0].p_for_adj
    with_nan = decide([strong, welch([1.0], [2.0, 3.0])])[0].p_for_adj
    assert with_nan == pytest.approx(min(1.0, 2 * alone))


def test_more_comparisons_make_each_harder_to_pass():
    # a borderline effect passes alone and fails among 20 Holm-corrected comparisons
    a, b = [60.0, 63.0, 61.0, 64.0, 62.0], [58.0, 60.0, 57.0, 61.0, 59.0]
    single = decide([welch(a, b)])[0]
    assert single.outcome == SUPPORTED
    crowd = decide([welch(a, b)] + [welch([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])] * 19)[0]
    assert crowd.outcome != SUPPORTED
    assert crowd.detectable > single.detectable


def test_a_collapse_difference_is_found_by_the_exact_test():
    none, most = rate(0, 10), rate(9, 10)
    assert collapse_difference(none, most) < 0.01
    assert collapse_difference(rate(1, 5), rate(2, 5)) > 0.5
    # the interval is Clopper–Pearson's: beta quantiles
    r = rate(3, 10)
    assert r.low == pytest.approx(stats.beta.ppf(0.025, 3, 8))
    assert r.high == pytest.approx(stats.beta.ppf(0.975, 4, 7))
    assert str(rate(0, 0)) == "–"
    assert math.isnan(collapse_difference(rate(0, 0), r))
