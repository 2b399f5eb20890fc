"""Verdicts per claim of the paper, on hand-made accuracies (no training)."""

from __future__ import annotations

import pandas as pd
import pytest

from byzstress.reporting import attack_label
from byzstress.verdicts import claims, claims_markdown, diagnostics_table

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
    return sel["holds"].iloc[0]


OMNI = "β=0.1, momentum=0.9 ema, omniscient"
LOCAL = "β=0.1, momentum=0.9 ema, local"


def test_claims_hold_where_the_numbers_say_so():
    c = claims(tidy())
    # A: ALIE 41 ± 1.4 far below IPM 61 (margin 2 x 1.4); IPM second of four
    assert verdict(c, "alie_far_below", OMNI, "A") is True
    assert verdict(c, "alie_strongest", OMNI, "A") is True
    assert verdict(c, "ipm_runner_up", OMNI, "A") is True
    assert verdict(c, "strength", OMNI, "A") is True  # 41 < 79 and 61 < 78
    # B: IPM 51 is the strongest; ALIE z=8 (78) is within 1 point of its default z (79)
    assert verdict(c, "alie_far_below", OMNI, "B") is False
    assert verdict(c, "alie_strongest", OMNI, "B") is False
    assert verdict(c, "ipm_runner_up", OMNI, "B") is False
    assert verdict(c, "strength", OMNI, "B") is False


def test_a_setting_without_the_runs_is_untested_not_failed():
    c = claims(tidy())
    # local knowledge has ALIE and IPM only: ALIE (77) vs IPM (79) can be ranked, but the
    # IID-calibrated strengths and MinMax/MinSum are missing
    assert verdict(c, "strength", LOCAL, "A") is None
    assert verdict(c, "alie_strongest", LOCAL, "A") is True
    assert verdict(c, "alie_far_below", LOCAL, "A") is True  # 77 vs 79: margin 1 point
    assert verdict(c, "ipm_runner_up", LOCAL, "A") is None  # needs three rivals
    md = claims_markdown(c)
    assert "| ALIE (z=8) is the strongest attack" in md and "1/1" in md
    assert f"| {OMNI} | 1/2 | A, B ✗ |" in md


def test_margin_grows_with_seed_noise():
    df = tidy()
    ipm = (df["attack"] == "ipm") & (df["strength"] == "2.5") & (df["knowledge"] == "omniscient")
    noisy = df[(df["defense"] == "A") & ipm]
    df.loc[noisy.index, "max_acc"] = [0.30, 0.80]  # IPM 55 ± 35: nothing beats it clearly
    c = claims(df)
    assert verdict(c, "alie_far_below", OMNI, "A") is False
    assert verdict(c, "alie_strongest", OMNI, "A") is True  # the lowest mean still


def test_diagnostics_table_averages_over_seeds():
    t = diagnostics_table(tidy())
    row = t[(t["defense"] == "A") & (t["attack_label"] == "ALIE (z=8)") & (t["setting"] == OMNI)]
    assert row["diag_rel_err"].iloc[0] == pytest.approx(0.15)
    assert row["acc_mean"].iloc[0] == pytest.approx(41.0)
