"""Does a claim's conclusion change with the kind of split? On hand-made accuracies."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from byzstress.reporting import attack_label
from byzstress.split_effect import accuracy_table, claim_table, split_of
from byzstress.verdicts import UNDECIDED, Cell, compare, seed_noise

# (split, defense, attack, strength) -> accuracy (%), seed 0
ACC = {
    ("dirichlet", "A", "none", ""): 80,
    ("dirichlet", "A", "alie", "8"): 40,
    ("dirichlet", "A", "ipm", "2.5"): 70,
    # A under shards: IPM far below ALIE, so "ALIE strongest" fails here
    ("shards[k=3]", "A", "none", ""): 78,
    ("shards[k=3]", "A", "alie", "8"): 60,
    ("shards[k=3]", "A", "ipm", "2.5"): 30,
    ("dirichlet", "B", "none", ""): 80,
    ("dirichlet", "B", "alie", "8"): 50,
    ("dirichlet", "B", "ipm", "2.5"): 70,
    # B under shards: ALIE still 17 points below IPM, and 3 points above dirichlet's
    ("shards[k=3]", "B", "none", ""): 80,
    ("shards[k=3]", "B", "alie", "8"): 53,
    ("shards[k=3]", "B", "ipm", "2.5"): 70,
}
HET = {"dirichlet": (0.70, 0.9), "shards[k=3]": (0.69, 0.0)}


def tidy(acc: dict = ACC) -> pd.DataFrame:
    rows = []
    for (split, defense, attack, strength), a in acc.items():
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
                "seed": 0,
                "max_acc": a / 100,
                "status": "ok",
                "strength_value": float(strength) if strength else float("nan"),
                "momentum": 0.9,
                "momentum_form": "ema",
                "het_label_tv_mean": HET[split][0],
                "het_size_cv": HET[split][1],
                "path": f"{split}/{defense}/{attack}{strength}",
            }
        )
    return pd.DataFrame(rows)


def alie8_row(defense: str, seed: int, acc: float, **knobs) -> dict:
    """One reference run of ALIE z=8 at β = 0.1 with accuracy ``acc`` (%)."""
    return {
        "dataset": "fmnist",
        "beta": "0.1",
        "defense": defense,
        "attack": "alie",
        "strength": "8",
        "knowledge": "omniscient",
        "attack_label": "ALIE (z=8)",
        "seed": seed,
        "max_acc": acc / 100,
        "status": "ok",
        "strength_value": 8.0,
        **knobs,
    }


def test_split_of_reads_the_variant():
    assert split_of("momentum=0, split=shards[k=3]") == "shards[k=3]"
    assert split_of("momentum=0") == "dirichlet"  # the default split
    assert split_of("") == "dirichlet"


BOTH = "alie_far_below+alie_strongest"  # with only ALIE and IPM: one comparison, one row


def test_a_claim_that_holds_under_one_split_and_fails_under_another_changes():
    t = claim_table(tidy())
    assert set(t["claim"]) == {BOTH} and len(t) == 2  # the two claims merged, per defense
    row = t[(t["claim"] == BOTH) & (t["defense"] == "A")].iloc[0]
    assert row["split:dirichlet"].startswith("holds")
    assert row["split:shards[k=3]"].startswith("fails")
    assert row["change"] == "changes"
    row = t[(t["claim"] == BOTH) & (t["defense"] == "B")].iloc[0]
    assert row["change"] == "same"
    assert row["setting"] == "β=0.1, momentum=0.9 ema, omniscient"  # no split in it
    assert list(t.columns[3:5]) == ["split:dirichlet", "split:shards[k=3]"]  # default first


def test_the_reference_noise_widens_the_margin_of_one_seed_cells():
    # B's ALIE moves 3 points: beyond the 1-point floor, inside 2 x a 2-point seed std
    acc = accuracy_table(tidy())
    b = acc[(acc["defense"] == "B") & (acc["attack_label"] == "ALIE (z=8)")]
    shards = b[b["split"] == "shards[k=3]"].iloc[0]
    assert shards["diff"] == pytest.approx(3.0) and shards["outcome"] == "higher"
    assert shards["margin"] == pytest.approx(1.0)
    noisy = accuracy_table(tidy(), noise={("B", "omniscient", "ALIE (z=8)"): 2.0})
    b = noisy[(noisy["defense"] == "B") & (noisy["attack_label"] == "ALIE (z=8)")]
    shards = b[b["split"] == "shards[k=3]"].iloc[0]
    assert shards["margin"] == pytest.approx(4.0) and shards["outcome"] == "undecided"
    # and in the claims: a noise larger than A's gaps leaves A's verdicts undecided
    big = {("A", "omniscient", lab): 20.0 for lab in ("ALIE (z=8)", "IPM (ε=2.5)")}
    t = claim_table(tidy(), noise=big)
    row = t[(t["claim"] == BOTH) & (t["defense"] == "A")].iloc[0]
    assert row["split:dirichlet"].startswith(UNDECIDED) and row["change"] == UNDECIDED


def test_compare_takes_the_larger_of_own_and_reference_std():
    a, b = Cell("a", {0: 50.0}), Cell("b", {0: 55.0, 1: 57.0})  # b's std 1.41
    assert compare(a, b).margin == pytest.approx(2 * 2**0.5)
    assert compare(a, b, noise=3.0).margin == pytest.approx(6.0)
    # within seeds (two common seeds each) the reference plays no part
    c = Cell("c", {0: 40.0, 1: 41.0})
    assert compare(c, b, noise=30.0).margin == pytest.approx(2 * 0.5**0.5)  # 2 sd(-15, -16)


def test_seed_noise_uses_only_multi_seed_cells_of_the_default_training():
    rows = []
    for variant, accs in (("", (40, 44)), ("momentum=0", (10, 90))):
        for seed, a in enumerate(accs):
            rows.append(alie8_row("A", seed, a, variant=variant))
    df = pd.DataFrame(rows)
    one = df.iloc[[0]].assign(attack_label="IPM (ε=2.5)", attack="ipm")
    noise = seed_noise(pd.concat([df, one]))
    assert noise == {("A", "omniscient", "ALIE (z=8)"): pytest.approx(2 * 2**0.5)}
    assert seed_noise(df, betas={"0.5"}) == {}


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


def test_the_reference_cells_are_those_trained_as_the_study_is():
    """A reference whose variant names a knob it varies (momentum=0.9 beside momentum=0)
    gives the std of its cells trained like the study's default-split runs."""
    from byzstress.split_effect import reference_noise

    rows = []
    for momentum, accs in ((0.9, (40, 44)), (0.0, (10, 90))):
        for seed, a in enumerate(accs):
            rows.append(
                alie8_row(
                    "B",
                    seed,
                    a,
                    variant=f"momentum={momentum:g}",
                    momentum=momentum,
                    split="dirichlet",
                )
            )
    noise = reference_noise(pd.DataFrame(rows), tidy())  # the study: momentum 0.9
    assert noise == {("B", "omniscient", "ALIE (z=8)"): pytest.approx(8**0.5)}
    acc = accuracy_table(tidy(), noise)
    row = acc[(acc["defense"] == "B") & (acc["split"] == "shards[k=3]")]
    row = row[row["attack_label"] == "ALIE (z=8)"].iloc[0]
    assert row["margin"] == pytest.approx(2 * 8**0.5) and row["outcome"] == "undecided"


def test_a_claim_tested_under_one_split_only_is_untested_not_the_same():
    from byzstress.split_effect import _change

    assert _change(["holds", None, None]) == "untested"
    assert _change(["holds", "holds", None]) == "same"
    assert _change(["holds", "fails", None]) == "changes"
    assert _change([UNDECIDED, UNDECIDED]) == UNDECIDED


def test_another_axis_beside_the_split_keeps_its_cells_apart():
    a = tidy().assign(momentum=0.9, variant=lambda d: "momentum=0.9, " + d["variant"])
    b = a.assign(momentum=0.0, max_acc=a["max_acc"] - 0.1)
    b["variant"] = b["variant"].str.replace("momentum=0.9", "momentum=0")
    acc = accuracy_table(pd.concat([a, b]))
    assert len(acc) == 2 * len(accuracy_table(tidy()))
    assert set(acc["setting"]) == {"momentum=0.9", "momentum=0"}
