"""Detection per strength (byzstress.analysis.detection), a description, on hand-made
diagnostics."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from byzstress.analysis.detection import KEPT_THRESHOLD, detection, strength_table

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


def test_the_strength_table_averages_each_cell_over_seeds():
    df = runs()
    # β = 0.1, z = 8: seeds at 40 and 44 %, their Byzantine shares 0.16 and 0.06
    cell = (df["beta"] == "0.1") & (df["strength_value"] == 8.0)
    df.loc[cell, "max_acc"] = [0.40, 0.44]
    df.loc[cell, "diag_rule_byz_share"] = [0.16, 0.06]
    t = strength_table(df)
    assert len(t) == 9 and (t["seeds"] == 2).all()
    assert set(t["attack_name"]) == {"ALIE"}  # the baseline is not a strength
    r = t[(t["beta"] == "0.1") & (t["strength_value"] == 8.0)].iloc[0]
    assert r["acc"] == pytest.approx(42.0) and r["acc_std"] == pytest.approx(8**0.5)
    assert r["kept"] == pytest.approx(0.55)  # mean share 0.11 over f/n = 0.2
    assert not r["detected"]  # at or above the threshold 0.5
    r = t[(t["beta"] == "iid") & (t["strength_value"] == 8.0)].iloc[0]
    assert r["detected"] and r["shift"] == pytest.approx(0.5)


def test_the_command_writes_the_descriptive_table_only(tmp_path):
    import subprocess
    import sys

    from byzstress.analysis.detection import detection_markdown

    csv = tmp_path / "runs.csv"
    runs().to_csv(csv, index=False)
    cli = [sys.executable, "-m", "byzstress", "detection", str(csv)]
    r = subprocess.run(
        [*cli, "--out-prefix", str(tmp_path / "det")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    written = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("det"))
    assert written == ["det.csv", "det.md", "det.pdf", "det.png"]  # no det-claim.*
    md = (tmp_path / "det.md").read_text()
    assert md == detection_markdown(strength_table(runs()))
    assert "| 0.1 | A | ALIE | 8 | 40.0 | 2 | 0.750 | +0.500 | no |" in md
    assert "A description, not a test" in md and "byzstress claims" in md
    # the retired options of the margin rule are gone
    for retired in (["--noise-from", str(csv)], ["--decisive-seeds", "1,2"]):
        r = subprocess.run(
            [*cli, "--out-prefix", str(tmp_path / "x"), *retired], capture_output=True, text=True
        )
        assert r.returncode == 2 and "unrecognized arguments" in r.stderr, retired


def test_the_retired_claim_machinery_is_gone():
    import byzstress.analysis.detection as det

    for name in (
        "heterogeneity_claim",
        "CENSORED",
        "reference_noise",
        "decisive_cells",
        "decisive_slices",
        "complete_betas",
        "claim_markdown",
    ):
        assert not hasattr(det, name), name
