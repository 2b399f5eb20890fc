"""Verdicts per claim of the paper (Welch tests, an intersection-union test per column, Holm
across columns), on hand-made accuracies with known answers (no training)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from byzstress.analysis.compare import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    decide,
    holm,
    welch,
)
from byzstress.analysis.labels import attack_label
from byzstress.analysis.verdicts import (
    CLAIMS,
    Cell,
    below,
    claims,
    claims_markdown,
    diagnostics_table,
    intersection_union,
    verdict_of,
)

SPREAD = (-1.0, 0.0, 1.0)  # three seeds around each cell's mean: sd 1 point


def column(
    alie8=40.0, alie_default=79.0, ipm25=60.0, ipm01=78.0, minmax=70.0, minsum=72.0
) -> dict[tuple[str, str], tuple[float, ...]]:
    """One defense's cells, (attack, strength) -> the accuracy (%) of seeds 0, 1, 2: a
    number is a mean with :data:`SPREAD` around it, a tuple is the seeds' values."""
    means = {
        ("none", ""): 80.0,
        ("alie", "8"): alie8,
        ("alie", ""): alie_default,
        ("ipm", "2.5"): ipm25,
        ("ipm", "0.1"): ipm01,
        ("minmax", ""): minmax,
        ("minsum", ""): minsum,
    }
    return {
        k: tuple(v) if isinstance(v, tuple) else tuple(v + d for d in SPREAD)
        for k, v in means.items()
        if v is not None
    }


def tidy(columns: dict[str, dict], knowledge: str = "omniscient") -> pd.DataFrame:
    rows = []
    for defense, cells in columns.items():
        for (attack, strength), accs in cells.items():
            default = 0.157 if (attack, strength) == ("alie", "") else None
            know = "omniscient" if attack == "none" else knowledge
            for seed, acc in enumerate(accs):
                rows.append(
                    {
                        "dataset": "fmnist",
                        "beta": "0.1",
                        "defense": defense,
                        "variant": "",
                        "attack": attack,
                        "strength": strength,
                        "knowledge": know,
                        "attack_label": attack_label(
                            attack, float(strength) if strength else None, know, default
                        ),
                        "seed": seed,
                        "max_acc": acc / 100,
                        "status": "ok",
                        "strength_value": float(strength) if strength else float("nan"),
                        "momentum": 0.9,
                        "momentum_form": "ema",
                        "diag_rel_err": 0.1 * (seed + 1),
                        "path": f"{defense}/{attack}{strength}{know}/{seed}",
                    }
                )
    return pd.DataFrame(rows)


OMNI = "β=0.1, momentum=0.9 ema, omniscient"
LOCAL = "β=0.1, momentum=0.9 ema, local"
CLEAR = {d: column() for d in "ABCD"}


def row(c: pd.DataFrame, claim: str, defense: str, setting: str = OMNI) -> pd.Series:
    sel = c[(c["claim"] == claim) & (c["setting"] == setting) & (c["defense"] == defense)]
    assert len(sel) == 1, (claim, setting, defense)
    return sel.iloc[0]


def verdict(c: pd.DataFrame, claim: str, defense: str, setting: str = OMNI):
    v = row(c, claim, defense, setting)["verdict"]
    return None if pd.isna(v) else v


def test_clear_comparisons_support_the_claims_in_every_column():
    c = claims(tidy(CLEAR))
    assert set(c["claim"]) == set(CLAIMS)  # no ipm_runner_up: the paper does not claim it
    for claim in CLAIMS:
        for d in "ABCD":
            assert verdict(c, claim, d) == SUPPORTED, (claim, d)
    r = row(c, "alie_strongest", "A")
    # C3 is an intersection-union test of two comparisons: ALIE below MinMax and MinSum
    assert r["comparisons"] == 2
    assert r["seeds"] == "ALIE (z=8): 3, MinMax: 3, MinSum: 3"
    # "especially ALIE" compares it with every other attack, IPM (ε=2.5) among them
    r = row(c, "alie_lowest", "A")
    assert "IPM (ε=2.5): 3" in r["seeds"]
    # each comparison's estimate (b − a) and 95 % Welch interval: IPM 60 − ALIE 40 = +20
    ci = stats.ttest_ind([59, 60, 61], [39, 40, 41], equal_var=False).confidence_interval()
    assert (
        f"below IPM (ε=2.5) 60.0±1.0 (n=3): +20.0 [{ci.low:+.1f}, {ci.high:+.1f}]"
        in (r["evidence"])
    )
    # the column's p for the claim is the largest of its comparisons' (MinMax, 30 points, is
    # not the weakest: IPM, 20 points, is), Holm-adjusted across the four columns
    p_ipm = welch([59, 60, 61], [39, 40, 41]).p_for
    assert r["p_for"] == pytest.approx(p_ipm)
    assert r["p_for_adj"] == pytest.approx(min(1.0, 4 * p_ipm))


def test_a_noisy_column_of_three_seeds_is_inconclusive():
    cols = {**CLEAR, "B": column(alie8=(20.0, 60.0, 80.0))}  # ALIE 53 ± 31 over 3 seeds
    c = claims(tidy(cols))
    assert verdict(c, "strength_alie", "B") == INCONCLUSIVE  # 79 − 53: within the noise
    assert verdict(c, "alie_strongest", "B") == INCONCLUSIVE
    assert verdict(c, "strength_ipm", "B") == SUPPORTED  # B's IPM cells are clear
    for d in "ACD":
        assert verdict(c, "strength_alie", d) == SUPPORTED


def test_holm_across_columns_makes_a_borderline_column_inconclusive():
    # IPM ε=2.5 (60, 62, 64) below ε=0.1 (64, 66, 68): one-sided Welch p ≈ 0.035
    borderline = column(ipm25=62.0, ipm01=66.0)
    borderline[("ipm", "2.5")] = (60.0, 62.0, 64.0)
    borderline[("ipm", "0.1")] = (64.0, 66.0, 68.0)
    raw = welch([64, 66, 68], [60, 62, 64]).p_for
    assert 0.025 < raw < 0.05
    alone = claims(tidy({"A": borderline}))
    assert verdict(alone, "strength_ipm", "A") == SUPPORTED
    assert row(alone, "strength_ipm", "A")["p_for_adj"] == pytest.approx(raw)
    # two such columns: Holm multiplies the smaller p by 2, and both fail to pass
    both = claims(tidy({"A": borderline, "B": borderline}))
    assert row(both, "strength_ipm", "A")["p_for_adj"] == pytest.approx(2 * raw)
    assert verdict(both, "strength_ipm", "A") == INCONCLUSIVE
    assert verdict(both, "strength_ipm", "B") == INCONCLUSIVE
    # another claim's columns are another family: strength_alie stays supported in both
    assert verdict(both, "strength_alie", "A") == SUPPORTED


def test_one_needed_comparison_failing_means_not_supported():
    # A: MinSum as low as ALIE (one of the two comparisons of alie_strongest is a tie)
    # B: MinSum 20 points below ALIE (that comparison goes against the claim)
    cols = {**CLEAR, "A": column(minsum=40.0), "B": column(minsum=20.0)}
    c = claims(tidy(cols))
    assert verdict(c, "alie_strongest", "A") == INCONCLUSIVE
    assert verdict(c, "alie_lowest", "A") == INCONCLUSIVE
    r = row(c, "alie_strongest", "A")
    assert r["p_for"] == pytest.approx(0.5)  # the tie's p, the larger of the two
    assert verdict(c, "alie_strongest", "B") == CONTRADICTED
    r = row(c, "alie_strongest", "B")
    p_against = welch([19, 20, 21], [39, 40, 41]).p_against
    assert r["p_against"] == pytest.approx(2 * p_against)  # Bonferroni over 2 comparisons
    assert verdict(c, "alie_strongest", "C") == SUPPORTED  # the other columns unharmed


def test_a_one_seed_side_makes_its_column_inconclusive():
    cols = {**CLEAR, "A": column(alie_default=(79.0,))}  # ALIE at its default z: seed 0 only
    c = claims(tidy(cols))
    r = row(c, "strength_alie", "A")
    assert r["verdict"] == INCONCLUSIVE and math.isnan(r["p_for"])
    assert "ALIE (z=0.16 default): 1" in r["seeds"] and "ALIE (z=8): 3" in r["seeds"]
    assert "no interval" in r["evidence"]
    # in Holm's family it counts as p = 1: the other three columns' p are multiplied by 4
    # (the smallest), 3 and 2 as with four testable ones, and still pass
    other = row(c, "strength_alie", "B")
    assert other["p_for_adj"] == pytest.approx(4 * other["p_for"])
    for d in "BCD":
        assert verdict(c, "strength_alie", d) == SUPPORTED


def test_a_setting_without_the_runs_is_untested_not_failed():
    two = {k: v for k, v in column().items() if k in {("alie", "8"), ("ipm", "2.5")}}
    local = tidy({"A": two}, knowledge="local")
    assert set(local["attack_label"]) == {"ALIE (z=8), local", "IPM (ε=2.5), local"}
    c = claims(pd.concat([tidy(CLEAR), local], ignore_index=True))
    # local knowledge has ALIE and IPM only: the IID-calibrated strengths are missing
    assert verdict(c, "strength_alie", "A", LOCAL) is None
    # ... and C3's rivals, MinMax and MinSum
    assert verdict(c, "alie_strongest", "A", LOCAL) is None
    assert verdict(c, "alie_lowest", "A", LOCAL) == SUPPORTED  # 40 below 60, 3 seeds
    md = claims_markdown(c)
    assert "| supported / contradicted / inconclusive |" in md
    assert f"| {CLAIMS['alie_lowest']} | {LOCAL} | 1 / 0 / 0 | A |" in md
    assert f"| {CLAIMS['alie_strongest']} | {OMNI} | 4 / 0 / 0 | A, B, C, D |" in md
    assert "Welch" in md and "Holm" in md and "intersection-union" in md


def test_the_summary_marks_contradicted_and_inconclusive_columns():
    cols = {**CLEAR, "B": column(minsum=20.0), "C": column(minsum=40.0)}
    md = claims_markdown(claims(tidy(cols)))
    assert f"| {CLAIMS['alie_strongest']} | {OMNI} | 2 / 1 / 1 | A, B ✗, C ?, D |" in md


def test_below_is_welch_of_b_against_a():
    a, b = Cell("a", {0: 40.0, 1: 41.0, 2: 42.0}), Cell("b", {0: 50.0, 1: 52.0, 2: 54.0})
    x = below(a, b).comparison
    ref = welch([50.0, 52.0, 54.0], [40.0, 41.0, 42.0])
    assert x.estimate == pytest.approx(11.0) and x.p_for == pytest.approx(ref.p_for)
    assert (x.ci_low, x.ci_high) == pytest.approx((ref.ci_low, ref.ci_high))
    # seeds are independent replicates: no pairing, so other seed numbers change nothing
    shifted = Cell("b", {7: 50.0, 8: 52.0, 9: 54.0})
    assert below(a, shifted).comparison.p_for == pytest.approx(ref.p_for)


def test_intersection_union_and_the_verdict_rule():
    rng = np.random.default_rng(0)
    base = welch(rng.normal(0, 1, 4), rng.normal(0, 1, 4))

    def with_p(p_for: float, p_against: float):
        return type(base)(**{**base.__dict__, "p_for": p_for, "p_against": p_against})

    p_for, p_against = intersection_union([with_p(0.01, 0.3), with_p(0.04, 0.2)])
    assert (p_for, p_against) == pytest.approx((0.04, 0.4))  # max; 2 × min
    assert intersection_union([with_p(0.01, 0.6), with_p(0.02, 0.7)])[1] == 1.0  # capped
    assert all(math.isnan(p) for p in intersection_union([with_p(0.01, 0.3), welch([1], [2])]))
    assert all(math.isnan(p) for p in intersection_union([]))
    assert verdict_of(0.01, 0.01) == SUPPORTED  # the rule tries "for" first
    assert verdict_of(0.2, 0.01) == CONTRADICTED
    assert verdict_of(0.2, 0.2) == INCONCLUSIVE
    assert verdict_of(math.nan, math.nan) == INCONCLUSIVE


def test_holm_is_the_adjustment_decide_applies():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # Holm (1979) by hand: nan counts as 1; sorted 0.005, 0.01, 0.03, 0.04, 1 times 5..1
    assert holm(p).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.025, 1.0])
    rng = np.random.default_rng(3)
    family = [welch(rng.normal(0, 1, 4), rng.normal(0, 1, 4)) for _ in p]
    family = [type(c)(**{**c.__dict__, "p_for": x}) for c, x in zip(family, p, strict=True)]
    assert [c.p_for_adj for c in decide(family)] == pytest.approx(holm(p).tolist())


def test_a_seed_fixes_split_theta0_and_batches_across_attacks(fmnist_root):
    """What claim C1's per-seed drops (byzstress.analysis.claims) rest on: two attacks of
    one seed train from the same split and θ0 and, when the same clients draw batches, on
    the same batches; an attack whose own clients draw batches too (none, local knowledge,
    LF) shares the split, θ0 and only the first step's honest batches."""
    from byzstress.sim.spec import RunSpec
    from byzstress.sim.training import Simulator

    def sim(**kw):
        base = {"data_root": str(fmnist_root), "device": "cpu", "beta": 0.1, "seed": 3}
        return Simulator(RunSpec.from_dict({**base, "defense": "cm", **kw}))

    alie, ipm = sim(attack="alie", strength=8.0), sim(attack="ipm", strength=2.5, defense="cclip")
    local = sim(attack="alie", strength=8.0, knowledge="local")
    assert torch.equal(alie.model.theta, ipm.model.theta)
    assert torch.equal(alie.model.theta, local.model.theta)
    h = alie.h
    assert torch.equal(alie.shares.table, ipm.shares.table)
    assert torch.equal(local.shares.table[:h, : alie.shares.table.shape[1]], alie.shares.table)
    for step in range(3):
        xa, ya = alie.batches()
        xi, yi = ipm.batches()
        xl, _ = local.batches()
        assert torch.equal(xa, xi) and torch.equal(ya, yi)
        assert torch.equal(xl[:h], xa) is (step == 0)
    assert sim(attack="alie", strength=8.0, seed=4).model.theta.ne(alie.model.theta).any()


def test_diagnostics_table_averages_over_seeds():
    t = diagnostics_table(tidy(CLEAR))
    r = t[(t["defense"] == "A") & (t["attack_label"] == "ALIE (z=8)") & (t["setting"] == OMNI)]
    assert r["diag_rel_err"].iloc[0] == pytest.approx(0.2)
    assert r["acc_mean"].iloc[0] == pytest.approx(40.0)
