"""Does a claim's conclusion change with the kind of split? On hand-made accuracies with
known answers (Welch tests, Holm across the study's columns and cells)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from byzstress.analysis.compare import CONTRADICTED, INCONCLUSIVE, NO_EFFECT, SUPPORTED, holm, welch
from byzstress.analysis.labels import attack_label
from byzstress.analysis.split_effect import accuracy_table, claim_table, split_of

SPREAD = (-1.0, 0.0, 1.0)  # three seeds around a cell's mean: sd 1 point
STILL = (-0.1, 0.0, 0.1)  # a cell that does not move: sd 0.1
# (split, defense, attack, strength) -> accuracy (%) of seeds 0, 1, 2 (mean, spread)
ACC = {
    ("dirichlet", "A", "none", ""): (80, SPREAD),
    ("dirichlet", "A", "alie", "8"): (40, SPREAD),
    ("dirichlet", "A", "ipm", "2.5"): (70, SPREAD),
    # A under shards: IPM far below ALIE, so "ALIE strongest" is contradicted here
    ("shards[k=3]", "A", "none", ""): (78, SPREAD),
    ("shards[k=3]", "A", "alie", "8"): (60, SPREAD),
    ("shards[k=3]", "A", "ipm", "2.5"): (30, SPREAD),
    ("dirichlet", "B", "none", ""): (80, STILL),
    ("dirichlet", "B", "alie", "8"): (50, SPREAD),
    ("dirichlet", "B", "ipm", "2.5"): (70, STILL),
    # B under shards: ALIE still 17 points below IPM, and 3 points above dirichlet's
    ("shards[k=3]", "B", "none", ""): (80, STILL),
    ("shards[k=3]", "B", "alie", "8"): (53, SPREAD),
    ("shards[k=3]", "B", "ipm", "2.5"): (70, STILL),
}
HET = {"dirichlet": (0.70, 0.9), "shards[k=3]": (0.69, 0.0)}


def tidy(acc: dict = ACC, seeds: int = 3) -> pd.DataFrame:
    rows = []
    for (split, defense, attack, strength), (mean, spread) in acc.items():
        for seed, d in enumerate(spread[:seeds]):
            rows.append(
                {
                    "dataset": "fmnist",
                    "beta": "0.1",
                    "defense": defense,
                    "variant": f"split={split}",
                    "split": split,
                    "attack": attack,
                    "strength": strength,
                    "knowledge": "omniscient",
                    "attack_label": attack_label(attack, float(strength) if strength else None),
                    "seed": seed,
                    "max_acc": (mean + d) / 100,
                    "status": "ok",
                    "strength_value": float(strength) if strength else float("nan"),
                    "momentum": 0.9,
                    "momentum_form": "ema",
                    "het_label_tv_mean": HET[split][0],
                    "het_size_cv": HET[split][1],
                    "path": f"{split}/{defense}/{attack}{strength}/{seed}",
                }
            )
    return pd.DataFrame(rows)


def test_split_of_reads_the_variant():
    assert split_of("momentum=0, split=shards[k=3]") == "shards[k=3]"
    assert split_of("momentum=0") == "dirichlet"  # the default split
    assert split_of("") == "dirichlet"


# with only ALIE and IPM, "especially ALIE" is one comparison, and C3 (against MinMax and
# MinSum) is untested
BOTH = "alie_lowest"


def test_a_claim_supported_under_one_split_and_contradicted_under_another_changes():
    t = claim_table(tidy())
    assert set(t["claim"]) == {BOTH} and len(t) == 2  # one row per defense
    row = t[(t["claim"] == BOTH) & (t["defense"] == "A")].iloc[0]
    assert row["split:dirichlet"] == SUPPORTED  # ALIE 40 below IPM 70
    assert row["split:shards[k=3]"] == CONTRADICTED  # ALIE 60 above IPM 30
    assert row["change"] == "changes"
    row = t[(t["claim"] == BOTH) & (t["defense"] == "B")].iloc[0]
    assert row["split:dirichlet"] == row["split:shards[k=3]"] == SUPPORTED
    assert row["change"] == "same"
    assert row["setting"] == "β=0.1, momentum=0.9 ema, omniscient"  # no split in it
    assert list(t.columns[3:5]) == ["split:dirichlet", "split:shards[k=3]"]  # default first


def test_one_seed_per_cell_decides_nothing():
    # the published splits study's case: the same gaps, seed 0 only
    t = claim_table(tidy(seeds=1))
    assert (t[["split:dirichlet", "split:shards[k=3]"]] == INCONCLUSIVE).all().all()
    assert (t["change"] == INCONCLUSIVE).all()
    acc = accuracy_table(tidy(seeds=1))
    moved = acc[acc["split"] == "shards[k=3]"]
    assert (moved["outcome"] == INCONCLUSIVE).all() and moved["ci_low"].isna().all()
    assert moved["diff"].notna().all()  # the difference is shown, not tested


def test_cells_move_by_welch_tests_holm_adjusted_across_the_study():
    acc = accuracy_table(tidy())
    shards = acc[acc["split"] == "shards[k=3]"].set_index(["defense", "attack_label"])
    assert acc.loc[acc["split"] == "dirichlet", "outcome"].isna().all()  # the reference
    assert shards.loc[("A", "ALIE (z=8)"), "outcome"] == "higher"  # +20 points
    assert shards.loc[("A", "IPM (ε=2.5)"), "outcome"] == "lower"  # −40 points
    # B's unmoved cells (sd 0.1): equivalent within 3 points, after Holm
    assert shards.loc[("B", "No attack"), "outcome"] == NO_EFFECT
    assert shards.loc[("B", "IPM (ε=2.5)"), "outcome"] == NO_EFFECT
    # B's ALIE moves +3 with sd 1: two-sided p ≈ 0.02 alone, but Holm across the six
    # compared cells multiplies it by 4: inconclusive
    b = shards.loc[("B", "ALIE (z=8)")]
    ref = welch([52.0, 53.0, 54.0], [49.0, 50.0, 51.0])
    assert b["diff"] == pytest.approx(3.0)
    assert (b["ci_low"], b["ci_high"]) == pytest.approx((ref.ci_low, ref.ci_high))
    assert b["p"] == pytest.approx(2 * ref.p_for) and b["p"] < 0.05
    assert b["p_adj"] == pytest.approx(holm(shards["p"].tolist())[list(shards.index).index(b.name)])
    assert b["p_adj"] > 0.05 and b["outcome"] == INCONCLUSIVE


def test_the_cli_writes_the_tables_and_refuses_a_study_without_splits(tmp_path):
    csv = tmp_path / "runs.csv"
    tidy().to_csv(csv, index=False)
    cli = [sys.executable, "-m", "byzstress", "split-effect"]
    r = subprocess.run(
        [*cli, str(csv), "--out-prefix", str(tmp_path / "se")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "se.md").read_text()
    assert "changes with the split in 1" in md  # A's (merged) claims
    assert "| shards[k=3] | 0.690 | 0.000 |" in md
    assert (tmp_path / "se-claims.csv").exists() and (tmp_path / "se-accuracy.csv").exists()
    assert "Welch" in md and "Holm" in md
    r = subprocess.run(
        [*cli, str(csv), "--out-prefix", str(tmp_path / "x"), "--noise-from", str(csv)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "unrecognized arguments: --noise-from" in r.stderr
    one = tidy()
    one[one["split"] != "dirichlet"].assign(split="gamma[gamma=0.2]").pipe(
        lambda d: pd.concat([d, tidy()[tidy()["split"] == "shards[k=3]"]])
    ).to_csv(csv, index=False)
    r = subprocess.run(
        [*cli, str(csv), "--out-prefix", str(tmp_path / "x")], capture_output=True, text=True
    )
    assert r.returncode == 2 and "no run of the default split 'dirichlet'" in r.stderr
    one[one["split"] == "dirichlet"].to_csv(csv, index=False)
    r = subprocess.run(
        [*cli, str(csv), "--out-prefix", str(tmp_path / "x")], capture_output=True, text=True
    )
    assert r.returncode == 2 and "'split'" in r.stderr


def test_a_claim_tested_under_one_split_only_is_untested_not_the_same():
    from byzstress.analysis.split_effect import _change

    assert _change([SUPPORTED, None, None]) == "untested"
    assert _change([SUPPORTED, SUPPORTED, None]) == "same"
    assert _change([CONTRADICTED, CONTRADICTED]) == "same"
    assert _change([SUPPORTED, CONTRADICTED, None]) == "changes"
    assert _change([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert _change([INCONCLUSIVE, INCONCLUSIVE]) == INCONCLUSIVE


def test_another_axis_beside_the_split_keeps_its_cells_apart():
    a = tidy().assign(momentum=0.9, variant=lambda d: "momentum=0.9, " + d["variant"])
    b = a.assign(momentum=0.0, max_acc=a["max_acc"] - 0.1)
    b["variant"] = b["variant"].str.replace("momentum=0.9", "momentum=0")
    acc = accuracy_table(pd.concat([a, b]))
    assert len(acc) == 2 * len(accuracy_table(tidy()))
    assert set(acc["setting"]) == {"momentum=0.9", "momentum=0"}
