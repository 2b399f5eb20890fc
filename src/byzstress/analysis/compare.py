"""One comparison primitive for every verdict: the difference of two groups of seeds.

For samples ``a`` and ``b`` (one value per seed, points of accuracy) the effect is
``mean(a) − mean(b)``. Everything below comes from scipy and statsmodels:

- the 95 % **Welch t-interval** of the effect (Welch 1947; ``scipy.stats.ttest_ind`` with
  ``equal_var=False``),
- one-sided Welch tests at the claim's threshold τ: *for* the claim (H0: effect ≤ τ) and
  *against* it (H0: effect ≥ τ),
- an **equivalence test** (two one-sided tests, Schuirmann 1987;
  ``statsmodels.stats.weightstats.ttost_ind`` with unequal variances) of |effect| < bound,
- **Holm's step-down correction** (Holm 1979; ``statsmodels.stats.multitest.multipletests``)
  of each of those three families of p-values across the comparisons of one claim,
- the **smallest detectable effect**: the excess over the threshold that a one-sided
  two-sample t-test at level α/m (Holm's strictest step) detects with the given power, for
  the seeds per side and their pooled standard deviation (Student's power calculation,
  ``statsmodels.stats.power.TTestIndPower``, the usual approximation for Welch's test),
- **collapse rates** with exact Clopper–Pearson intervals (``scipy.stats.binomtest``) and
  Fisher's exact test of two rates (``scipy.stats.fisher_exact``).

The outcome of a comparison, with the Holm-adjusted p-values: *supported* if the test for
the claim rejects at α; else *contradicted* if the test against it rejects; else *no effect*
if the equivalence test rejects; else *inconclusive*. docs/claims.md states the rule and why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import ttost_ind

__all__ = [
    "ALPHA",
    "COLLAPSE_FINAL_ACC",
    "CONTRADICTED",
    "EQUIVALENCE_BOUND",
    "INCONCLUSIVE",
    "NO_EFFECT",
    "OUTCOMES",
    "SUPPORTED",
    "Comparison",
    "Rate",
    "collapse_difference",
    "collapsed",
    "decide",
    "holm",
    "rate",
    "welch",
]

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NO_EFFECT = "no effect"
INCONCLUSIVE = "inconclusive"
#: in the order the rule tries them
OUTCOMES = (SUPPORTED, CONTRADICTED, NO_EFFECT, INCONCLUSIVE)
#: the rule's family-wise error rate and "no effect" bound (points) in every study; the
#: claims state theirs in claims.yaml, and tests/test_claims.py checks they are these
ALPHA = 0.05
EQUIVALENCE_BOUND = 3.0
#: a run "collapsed" if it diverged or ended at or below this accuracy (a fraction)
COLLAPSE_FINAL_ACC = 0.2


@dataclass(frozen=True)
class Comparison:
    """``mean(a) − mean(b)`` with its interval and raw p-values; :func:`decide` fills in the
    Holm-adjusted p-values, the outcome and the smallest detectable effect of a family."""

    estimate: float
    ci_low: float
    ci_high: float
    n_a: int
    n_b: int
    sd_a: float
    sd_b: float
    threshold: float
    bound: float | None
    p_for: float
    p_against: float
    p_equivalent: float
    p_for_adj: float = math.nan
    p_against_adj: float = math.nan
    p_equivalent_adj: float = math.nan
    outcome: str = INCONCLUSIVE
    detectable: float = math.nan

    @property
    def seeds(self) -> str:
        """Seeds per side, as ``n_a v n_b``."""
        return f"{self.n_a} v {self.n_b}"


def _clean(x: Sequence[float]) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    return arr[np.isfinite(arr)]


def welch(
    a: Sequence[float],
    b: Sequence[float],
    threshold: float = 0.0,
    bound: float | None = EQUIVALENCE_BOUND,
    confidence: float = 0.95,
) -> Comparison:
    """The effect ``mean(a) − mean(b)``, its Welch t-interval at ``confidence`` and the raw
    one-sided p-values for (effect > ``threshold``), against (effect < ``threshold``) and of
    equivalence (|effect| < ``bound``; none where ``bound`` is None, for an estimand
    whose zero means nothing). With fewer than two values on a side, or no spread
    on both, nothing can be said: the interval and p-values are nan (inconclusive)."""
    xa, xb = _clean(a), _clean(b)
    na, nb = len(xa), len(xb)
    sda = float(np.std(xa, ddof=1)) if na > 1 else math.nan
    sdb = float(np.std(xb, ddof=1)) if nb > 1 else math.nan
    est = float(xa.mean() - xb.mean()) if na and nb else math.nan
    nan = math.nan
    if na < 2 or nb < 2 or (sda == 0 and sdb == 0):
        return Comparison(est, nan, nan, na, nb, sda, sdb, threshold, bound, nan, nan, nan)
    two = stats.ttest_ind(xa, xb, equal_var=False)
    ci = two.confidence_interval(confidence_level=confidence)
    # a test of effect > τ is a test of (a − τ) against b
    p_for = stats.ttest_ind(xa - threshold, xb, equal_var=False, alternative="greater").pvalue
    p_against = stats.ttest_ind(xa - threshold, xb, equal_var=False, alternative="less").pvalue
    p_eq = math.nan if bound is None else ttost_ind(xa, xb, -bound, bound, usevar="unequal")[0]
    return Comparison(
        est,
        float(ci.low),
        float(ci.high),
        na,
        nb,
        sda,
        sdb,
        threshold,
        bound,
        float(p_for),
        float(p_against),
        float(p_eq),
    )


def holm(p: Sequence[float], alpha: float = ALPHA) -> np.ndarray:
    """Holm-adjusted p-values; an untestable comparison (nan) counts in the family as p = 1,
    so that it cannot make the others easier to pass."""
    arr = np.asarray([1.0 if math.isnan(x) else x for x in p], dtype=float)
    if not len(arr):
        return arr
    return multipletests(arr, alpha=alpha, method="holm")[1]


def _detectable(c: Comparison, alpha: float, power: float) -> float:
    """The effect (points) a one-sided t-test at ``alpha`` detects with ``power``, for the
    comparison's seeds per side and pooled standard deviation."""
    if c.n_a < 2 or c.n_b < 2 or math.isnan(c.sd_a) or math.isnan(c.sd_b):
        return math.nan
    pooled = math.sqrt(((c.n_a - 1) * c.sd_a**2 + (c.n_b - 1) * c.sd_b**2) / (c.n_a + c.n_b - 2))
    if pooled == 0:
        return 0.0
    d = TTestIndPower().solve_power(
        effect_size=None,
        nobs1=c.n_a,
        alpha=alpha,
        power=power,
        ratio=c.n_b / c.n_a,
        alternative="larger",
    )
    return float(d) * pooled


def decide(
    family: Sequence[Comparison], alpha: float = ALPHA, power: float = 0.8
) -> list[Comparison]:
    """The outcomes of one claim's comparisons: each family of p-values Holm-adjusted across
    ``family`` at family-wise level ``alpha``, then the rule of the module's docstring."""
    if not family:
        return []
    p_for = holm([c.p_for for c in family], alpha)
    p_against = holm([c.p_against for c in family], alpha)
    p_eq = holm([c.p_equivalent for c in family], alpha)
    strictest = alpha / len(family)
    out = []
    for c, pf, pa, pe in zip(family, p_for, p_against, p_eq, strict=True):
        outcome = (
            SUPPORTED
            if pf < alpha
            else CONTRADICTED
            if pa < alpha
            else NO_EFFECT
            if pe < alpha
            else INCONCLUSIVE
        )
        out.append(
            replace(
                c,
                p_for_adj=float(pf),
                p_against_adj=float(pa),
                p_equivalent_adj=float(pe),
                outcome=outcome,
                detectable=_detectable(c, strictest, power),
            )
        )
    return out


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n`` runs, with the exact (Clopper–Pearson) interval of the rate."""

    k: int
    n: int
    low: float
    high: float

    def __str__(self) -> str:
        if not self.n:
            return "–"
        return f"{self.k}/{self.n} [{100 * self.low:.0f}, {100 * self.high:.0f}] %"


def collapsed(
    status: pd.Series, final_acc: pd.Series, at_most: float = COLLAPSE_FINAL_ACC
) -> pd.Series:
    """Per run: did it collapse, i.e. diverge (``status == "diverged"``) or end with
    ``final_acc <= at_most``? The claims' rule (claims.yaml ``collapse``) and the study
    tables' ‡ mark count the same runs."""
    return (status == "diverged") | (final_acc.astype(float) <= at_most)


def rate(k: int, n: int, confidence: float = 0.95) -> Rate:
    """``k`` events in ``n`` runs and the exact binomial interval of their rate."""
    if n == 0:
        return Rate(0, 0, math.nan, math.nan)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return Rate(k, n, float(ci.low), float(ci.high))


def collapse_difference(a: Rate, b: Rate) -> float:
    """Fisher's exact two-sided p-value for two rates being equal (nan with an empty side)."""
    if not a.n or not b.n:
        return math.nan
    table = [[a.k, a.n - a.k], [b.k, b.n - b.k]]
    return float(stats.fisher_exact(table).pvalue)
