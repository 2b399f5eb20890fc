"""Detection and Figure 1's claim (byzstress.detection) on hand-made diagnostics."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from byzstress.detection import (
    CENSORED,
    KEPT_THRESHOLD,
    detection,
    heterogeneity_claim,
    strength_table,
)

# beta -> strength -> (accuracy %, Byzantine share of the rule's output); f/n = 4/20 = 0.2
ALIE = {
    "iid": {0.157: (80, 0.20), 1.0: (70, 0.15), 8.0: (79, 0.00)},  # z=1 hurts, z=8 removed
    "0.5": {0.157: (78, 0.20), 1.0: (70, 0.18), 8.0: (60, 0.12)},
    "0.1": {0.157: (75, 0.20), 1.0: (65, 0.20), 8.0: (40, 0.15)},  # z=8 hurts, kept
}


def runs() -> pd.DataFrame:
    rows = []
    for beta, strengths in ALIE.items():
        for seed in (0, 1):
            base = {"beta": beta, "variant": "", "defense": "A", "seed": seed, "n": 20, "f": 4}
            rows.append(
                {
                    **base,
                    "attack_name": "No attack",
                    "attack_label": "No attack",
                    "strength": "",
                    "strength_value": math.nan,
                    "max_acc": 0.82,
                    "diag_rule_byz_share": 0.2,
                    "diag_rel_err": 1.0 + seed,
                }
            )
            for z, (acc, share) in strengths.items():
                label = "ALIE (z=0.16 default)" if z < 0.2 else f"ALIE (z={z:g})"
                rows.append(
                    {
                        **base,
                        "attack_name": "ALIE",
                        "attack_label": label,
                        "strength": "" if z < 0.2 else str(z),
                        "strength_value": z,
                        "max_acc": acc / 100,
                        "diag_rule_byz_share": share,
                        "diag_rel_err": 1.5 + seed,
                    }
                )
    return pd.DataFrame(rows)


def test_kept_shift_and_detected_per_run():
    d = detection(runs())
    row = d[(d["beta"] == "iid") & (d["strength_value"] == 8.0) & (d["seed"] == 1)].iloc[0]
    assert row["kept"] == pytest.approx(0.0) and row["detected"] is True
    assert row["shift"] == pytest.approx(0.5)  # 2.5 against the same seed's baseline 2.0
    assert d.loc[d["attack_name"] == "No attack", "detected"].isna().all()
    kept = d[(d["beta"] == "0.5") & (d["strength_value"] == 8.0)]["kept"]
    assert kept.tolist() == pytest.approx([0.6, 0.6]) and KEPT_THRESHOLD == 0.5


def test_the_undetected_and_the_most_damaging_strength_grow_as_beta_falls():
    t = strength_table(runs())
    assert len(t) == 9 and (t["seeds"] == 2).all()
    c = heterogeneity_claim(runs()).set_index("beta")
    assert list(c.index) == ["iid", "0.5", "0.1"]  # from IID to the most heterogeneous
    assert c.loc["iid", "most_damaging_strength"] == 1.0
    assert c.loc["iid", "largest_undetected_strength"] == 1.0  # z=8 is removed under IID
    assert c.loc["0.1", "most_damaging_strength"] == 8.0
    assert c.loc["0.1", "largest_undetected_strength"] == 8.0
    assert c.loc["0.1", "acc_at_iid_default"] == pytest.approx(75)
    assert c.loc["0.1", "iid_default_strength"] == pytest.approx(0.157)
    assert c["damaging_grows"].iloc[0] == "holds" and c["undetected_grows"].iloc[0] == "holds"
    assert bool(c["provisional"].iloc[0])  # 2 seeds at the most damaging strength
    # the attack's damage net of the no-attack accuracy (82): 12 points under IID, 42 at 0.1
    assert c.loc["iid", "drop_at_most_damaging"] == pytest.approx(12)
    assert c.loc["0.1", "drop_at_most_damaging"] == pytest.approx(42)
    assert c["damage_grows"].iloc[0] == "holds" and bool(c["damage_provisional"].iloc[0])
    # identical seeds: the margin is the 1-point floor, so each damaging range is one strength
    assert c.loc["iid", "margin"] == pytest.approx(1.0)
    assert (c.loc["iid", "damaging_lo"], c.loc["iid", "damaging_hi"]) == (1.0, 1.0)


def test_a_strength_detected_everywhere_does_not_make_the_claim():
    df = runs()
    z8 = df["strength_value"] == 8.0
    df.loc[z8, "diag_rule_byz_share"] = 0.0  # removed at every β, and so harmless
    df.loc[z8, "max_acc"] = 0.80
    df.loc[(df["beta"] == "0.1") & (df["strength_value"] == 1.0), "max_acc"] = 0.5
    c = heterogeneity_claim(df).set_index("beta")
    assert (c["largest_undetected_strength"] == 1.0).all()
    assert c["undetected_grows"].iloc[0] == "fails"  # the same strength under IID and β=0.1
    assert c["damaging_grows"].iloc[0] == "fails"


def test_seed_noise_widens_the_damaging_range_and_leaves_the_claim_undecided():
    df = runs()
    # IID: z=8 now 72 / 76 over the two seeds (std 2.8): within 2 s of z=1's 70
    sel = (df["beta"] == "iid") & (df["strength_value"] == 8.0)
    df.loc[sel, "max_acc"] = [0.72, 0.76]
    c = heterogeneity_claim(df).set_index("beta")
    assert c.loc["iid", "margin"] == pytest.approx(2 * 8**0.5)
    assert (c.loc["iid", "damaging_lo"], c.loc["iid", "damaging_hi"]) == (1.0, 8.0)
    # β=0.1's range {8} is not above IID's {1, 8}, nor below it; and IID's reaches the
    # grid's top, so no range could lie above it: censored by the grid
    assert c["damaging_grows"].iloc[0] == CENSORED
    # a reference std for β=0.1 alone: its range takes in z=1 (65 within 40 + 2 x 15)
    c = heterogeneity_claim(runs(), reference={("0.1", "A", "ALIE"): 15.0}).set_index("beta")
    assert c.loc["0.1", "margin"] == pytest.approx(30.0)
    assert (c.loc["0.1", "damaging_lo"], c.loc["0.1", "damaging_hi"]) == (1.0, 8.0)
    assert c["damaging_grows"].iloc[0] == "undecided (within seed noise)"


def test_reference_noise_reads_multi_seed_cells_of_the_default_training():
    from byzstress.detection import reference_noise

    df = runs().assign(knowledge="omniscient")
    df.loc[(df["beta"] == "0.1") & (df["strength_value"] == 8.0), "max_acc"] = [0.40, 0.44]
    noise = reference_noise(df)
    assert noise[("0.1", "A", "ALIE")] == pytest.approx(8**0.5)
    assert noise[("iid", "A", "ALIE")] == pytest.approx(0.0)
    assert reference_noise(df.assign(variant="momentum=0")) == {}


def test_decisive_cells_are_the_most_damaging_strength_and_its_neighbours():
    from byzstress.detection import decisive_cells, decisive_slices

    cells = decisive_cells(runs())
    assert cells[("iid", "A", "ALIE")] == [None, 1.0, 8.0]  # worst z=1: both neighbours
    assert cells[("0.1", "A", "ALIE")] == [1.0, 8.0]  # worst z=8, the grid's end
    slices = {s["name"]: s for s in decisive_slices(cells, [1, 2])}
    iid = slices["decisive-iid-A"]
    assert iid["seeds"] == [1, 2] and iid["betas"] == ["iid"] and iid["defenses"] == ["A"]
    assert iid["attacks"] == [{"name": "alie", "strengths": ["default", 1, 8]}]
    assert slices["decisive-0.1-A"]["betas"] == [0.1]
    # the β claim 1 compares first, IID then the most heterogeneous; the β between last
    assert list(slices) == ["decisive-iid-A", "decisive-0.1-A", "decisive-0.5-A"]
    # with two defenses: each defense's compared pair together, so that a sitting stopped
    # early leaves whole verdicts decided; the β between after all of them
    two = {**cells, **{(b, "B", "ALIE"): [8.0] for b in ("iid", "0.5", "0.1")}}
    assert [s["name"] for s in decisive_slices(two, [1])] == [
        "decisive-iid-A",
        "decisive-0.1-A",
        "decisive-iid-B",
        "decisive-0.1-B",
        "decisive-0.5-A",
        "decisive-0.5-B",
    ]


def test_decisive_cells_cover_the_damaging_range_and_the_largest_undetected(monkeypatch):
    """A verdict stays provisional while any cell of a compared β's damaging range, or its
    largest undetected strength, has fewer than 3 seeds: those cells are decisive too."""
    import sys

    from byzstress.detection import decisive_cells

    grid = {b: dict(v) for b, v in ALIE.items()}
    # IID: z=16 within the 1-point margin of z=1's 70 and undetected, beyond z=1's neighbours
    grid["iid"][16.0] = (70.5, 0.20)
    grid["0.5"][16.0] = (62.0, 0.20)
    monkeypatch.setattr(sys.modules[__name__], "ALIE", grid)
    cells = decisive_cells(runs())
    assert cells[("iid", "A", "ALIE")] == [None, 1.0, 8.0, 16.0]
    # β = 0.5 is shown, not compared: the worst strength (z=8, 60) and its neighbours only
    assert cells[("0.5", "A", "ALIE")] == [1.0, 8.0, 16.0]
    grid["0.5"][16.0] = (75.0, 0.20)
    grid["0.5"][0.157] = (76.0, 0.20)
    assert decisive_cells(runs())[("0.5", "A", "ALIE")] == [1.0, 8.0, 16.0]
    grid["0.5"][1.0] = (59.0, 0.18)  # now z=1 the worst: default, 1, 8; z=16 is not needed
    assert decisive_cells(runs())[("0.5", "A", "ALIE")] == [None, 1.0, 8.0]


def test_the_grid_top_cannot_make_the_claim_fail():
    df = runs()
    # z=8 the most damaging under IID and at β=0.1 alike, and never detected: the grid
    # cannot see whether a larger z would do more damage at β=0.1 than under IID
    z8 = df["strength_value"] == 8.0
    df.loc[z8, "max_acc"] = 0.30
    df.loc[z8, "diag_rule_byz_share"] = 0.2
    c = heterogeneity_claim(df).set_index("beta")
    assert (c["most_damaging_strength"] == 8.0).all()
    assert c["damaging_grows"].iloc[0] == CENSORED
    assert c["undetected_grows"].iloc[0] == CENSORED
    assert bool(c["undetected_provisional"].iloc[0])  # 2 seeds < 3


def test_damage_grows_is_the_drop_below_no_attack_not_the_accuracy():
    df = runs()
    # β=0.1's no-attack accuracy falls to 42: its worst accuracy (40) is far below IID's
    # (70), but the attack itself takes only 2 points there against 12 under IID
    clean = (df["beta"] == "0.1") & (df["attack_name"] == "No attack")
    df.loc[clean, "max_acc"] = 0.42
    c = heterogeneity_claim(df).set_index("beta")
    assert c.loc["0.1", "acc_at_most_damaging"] < c.loc["iid", "acc_at_most_damaging"]
    assert c.loc["0.1", "drop_at_most_damaging"] == pytest.approx(2)
    assert c["damage_grows"].iloc[0] == "fails"
    # within the margin: a reference std of 6 points at β=0.1 (margin 12) leaves it open
    df.loc[clean, "max_acc"] = 0.90  # drop 50 against 12: 38 beyond, holds even so
    c = heterogeneity_claim(df, reference={("0.1", "A", "ALIE"): 6.0}).set_index("beta")
    assert c["damage_grows"].iloc[0] == "holds"
    df.loc[clean, "max_acc"] = 0.60  # drop 20 against 12: 8, within the margin of 12
    c = heterogeneity_claim(df, reference={("0.1", "A", "ALIE"): 6.0}).set_index("beta")
    assert c["damage_grows"].iloc[0] == "undecided (within seed noise)"


def test_damage_verdict_is_final_with_three_seeds_and_untested_without_a_baseline():
    df = runs()
    three = pd.concat([df, df[df["seed"] == 0].assign(seed=2)], ignore_index=True)
    c = heterogeneity_claim(three)
    assert c["damage_grows"].iloc[0] == "holds" and not c["damage_provisional"].any()
    # no no-attack run at β = 0.1: no drop there, so nothing to compare
    lost = df[~((df["beta"] == "0.1") & (df["attack_name"] == "No attack"))]
    c = heterogeneity_claim(lost).set_index("beta")
    assert math.isnan(c.loc["0.1", "drop_at_most_damaging"])
    assert c["damage_grows"].iloc[0] is None


def test_the_claim_table_prints_strengths_as_the_default_column_does():
    from byzstress.detection import claim_markdown

    c = heterogeneity_claim(runs())
    c.loc[0, ["iid_default_strength", "damaging_lo"]] = 0.15731  # ALIE's default z, n=20, f=4
    row = claim_markdown(c).splitlines()[2]
    assert "| 0.157 (" in row and "| 0.157–1 (±" in row
    assert "0.1573" not in row
