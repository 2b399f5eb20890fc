"""Verdicts per claim of the paper, on hand-made accuracies (no training)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from byzstress.reporting import attack_label
from byzstress.verdicts import (
    UNDECIDED,
    Cell,
    claims,
    claims_markdown,
    compare,
    diagnostics_table,
)

# (defense, attack, strength, knowledge) -> accuracies (%) of seeds 0 and 1
CELLS = {
    ("A", "none", "", "omniscient"): (80, 80),
    ("A", "alie", "8", "omniscient"): (40, 42),
    ("A", "alie", "", "omniscient"): (79, 79),
    ("A", "ipm", "2.5", "omniscient"): (60, 62),
    ("A", "ipm", "0.1", "omniscient"): (78, 78),
    ("A", "minmax", "", "omniscient"): (70, 70),
    ("A", "minsum", "", "omniscient"): (72, 72),
    ("B", "none", "", "omniscient"): (80, 80),
    ("B", "alie", "8", "omniscient"): (78, 78),
    ("B", "alie", "", "omniscient"): (79, 79),
    ("B", "ipm", "2.5", "omniscient"): (50, 52),
    ("B", "ipm", "0.1", "omniscient"): (78, 78),
    ("B", "minmax", "", "omniscient"): (74, 74),
    ("B", "minsum", "", "omniscient"): (76, 76),
    ("A", "alie", "8", "local"): (77, 77),
    ("A", "ipm", "2.5", "local"): (79, 79),
}


def tidy() -> pd.DataFrame:
    rows = []
    for (defense, attack, strength, knowledge), accs in CELLS.items():
        for seed, acc in enumerate(accs):
            default = 0.157 if (attack, strength) == ("alie", "") else None
            rows.append(
                {
                    "dataset": "fmnist",
                    "beta": "0.1",
                    "defense": defense,
                    "variant": "",
                    "attack": attack,
                    "strength": strength,
                    "knowledge": knowledge,
                    "attack_label": attack_label(
                        attack, float(strength) if strength else None, knowledge, default
                    ),
                    "seed": seed,
                    "max_acc": acc / 100,
                    "status": "ok",
                    "strength_value": float(strength) if strength else float("nan"),
                    "momentum": 0.9,
                    "momentum_form": "ema",
                    "diag_rel_err": 0.1 * (seed + 1),
                    "path": f"{defense}/{attack}{strength}{knowledge}/{seed}",
                }
            )
    return pd.DataFrame(rows)


def verdict(c: pd.DataFrame, claim: str, setting: str, defense: str):
    sel = c[(c["claim"] == claim) & (c["setting"] == setting) & (c["defense"] == defense)]
    assert len(sel) == 1, (claim, setting, defense)
    v = sel["verdict"].iloc[0]
    return None if pd.isna(v) else v


OMNI = "β=0.1, momentum=0.9 ema, omniscient"
LOCAL = "β=0.1, momentum=0.9 ema, local"


def test_claims_hold_where_the_numbers_say_so():
    c = claims(tidy())
    # A: ALIE 41 ± 1.4 far below IPM 61 (paired differences -20, -20: margin 1); IPM 2nd
    assert verdict(c, "alie_far_below", OMNI, "A") == "holds"
    assert verdict(c, "alie_strongest", OMNI, "A") == "holds"
    assert verdict(c, "ipm_runner_up", OMNI, "A") == "holds"
    assert verdict(c, "strength_alie", OMNI, "A") == "holds"  # 41 < 79
    assert verdict(c, "strength_ipm", OMNI, "A") == "holds"  # 61 < 78
    # B: IPM 51 is the strongest, ALIE (78) the weakest
    assert verdict(c, "alie_far_below", OMNI, "B") == "fails"
    assert verdict(c, "alie_strongest", OMNI, "B") == "fails"
    assert verdict(c, "ipm_runner_up", OMNI, "B") == "fails"  # it is the strongest
    # ALIE z=8 (78) is 1 point below its default z (79): inside the margin, never "fails"
    assert verdict(c, "strength_alie", OMNI, "B") == UNDECIDED
    assert not c["provisional"].any()  # two seeds on every side


def test_a_setting_without_the_runs_is_untested_not_failed():
    c = claims(tidy())
    # local knowledge has ALIE and IPM only: ALIE (77) vs IPM (79) can be ranked, but the
    # IID-calibrated strengths and MinMax/MinSum are missing
    assert verdict(c, "strength_alie", LOCAL, "A") is None
    assert verdict(c, "alie_strongest", LOCAL, "A") == "holds"
    assert verdict(c, "alie_far_below", LOCAL, "A") == "holds"  # -2 points, margin 1
    assert verdict(c, "ipm_runner_up", LOCAL, "A") is None  # needs two rivals
    md = claims_markdown(c)
    assert "| ALIE (z=8) is the strongest attack" in md and "| 1 / 0 / 0 | A |" in md
    assert f"| {OMNI} | 1 / 1 / 0 | A, B ✗ |" in md
    assert f"| {OMNI} | 1 / 0 / 1 | A, B ? |" in md  # strength_alie: B undecided


def _set(df, defense, attack, strength, values, knowledge="omniscient"):
    sel = df[
        (df["defense"] == defense)
        & (df["attack"] == attack)
        & (df["strength"] == strength)
        & (df["knowledge"] == knowledge)
    ]
    df.loc[sel.index, "max_acc"] = [v / 100 for v in values]


def test_noise_makes_a_comparison_undecided_not_failed():
    df = tidy()
    _set(df, "A", "ipm", "2.5", (30, 80))  # IPM 55 ± 35; ALIE (40, 42): d = 10, -38
    c = claims(df)
    assert verdict(c, "alie_strongest", OMNI, "A") == UNDECIDED  # lowest mean, within noise
    assert verdict(c, "alie_far_below", OMNI, "A") == UNDECIDED
    row = c[(c["claim"] == "alie_strongest") & (c["defense"] == "A") & (c["setting"] == OMNI)]
    assert "paired over 2 seeds" in row["evidence"].iloc[0]


def test_comparisons_are_paired_within_seeds():
    # seed 1 is 20 points easier than seed 0 for every attack: the means' stds (14) hide a
    # consistent 5-point gap that the paired differences (-5, -5) show
    a = Cell("ALIE (z=8)", {0: 40.0, 1: 60.0})
    b = Cell("IPM (ε=2.5)", {0: 45.0, 1: 65.0})
    c = compare(a, b)
    assert c.paired == 2 and c.diff == pytest.approx(-5) and c.margin == pytest.approx(1)
    assert c.outcome == "lower"
    unpaired = compare(a, Cell("IPM (ε=2.5)", {2: 45.0, 3: 65.0}))  # no common seed
    assert unpaired.paired == 0 and unpaired.margin == pytest.approx(2 * 14.142, rel=1e-3)
    assert unpaired.outcome == "undecided"
    assert compare(b, a).outcome == "higher"


def test_a_one_seed_side_makes_the_verdict_provisional():
    df = tidy()
    drop = (
        (df["defense"] == "A")
        & (df["attack"] == "alie")
        & (df["strength"] == "")
        & (df["seed"] == 1)
    )
    c = claims(df[~drop])
    row = c[(c["claim"] == "strength_alie") & (c["defense"] == "A") & (c["setting"] == OMNI)].iloc[
        0
    ]
    assert row["verdict"] == "holds" and bool(row["provisional"])
    assert "ALIE (z=0.16 default): 1" in row["seeds"] and "ALIE (z=8): 2" in row["seeds"]
    assert "(margin 2.8, means)" in row["evidence"]  # ALIE z=8's std 1.4 sets the margin
    other = c[(c["claim"] == "strength_ipm") & (c["defense"] == "A") & (c["setting"] == OMNI)]
    assert not bool(other["provisional"].iloc[0])
    assert "holds, provisional" in claims_markdown(c)


def test_a_seed_fixes_split_theta0_and_batches_across_attacks(fmnist_root):
    """What pairing within a seed rests on: two attacks of one seed train from the same
    split and θ0 and, when the same clients draw batches, on the same batches; an attack
    whose own clients draw batches too (none, local knowledge, LF) shares the split, θ0
    and only the first step's honest batches."""
    from byzstress.spec import RunSpec
    from byzstress.training import Simulator

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
    t = diagnostics_table(tidy())
    row = t[(t["defense"] == "A") & (t["attack_label"] == "ALIE (z=8)") & (t["setting"] == OMNI)]
    assert row["diag_rel_err"].iloc[0] == pytest.approx(0.15)
    assert row["acc_mean"].iloc[0] == pytest.approx(41.0)
