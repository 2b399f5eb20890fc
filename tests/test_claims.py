"""The claims of claims.yaml decided on hand-made records with known answers (no training),
and the published outcomes rebuilt from the published records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from byzstress.analysis import claims as C
from byzstress.analysis.compare import CONTRADICTED, INCONCLUSIVE, NO_EFFECT, SUPPORTED
from byzstress.analysis.report import FLOAT_FORMAT, read_results

ROOT = Path(__file__).resolve().parents[1]
DEFENSES = ["RFA(buck)", "CM", "CCLIP", "trMean(NNM)"]


def _row(beta, defense, attack, strength, seed, acc, status="ok", final=None):
    return {
        "beta": beta,
        "defense": defense,
        "attack": attack,
        "strength": strength,
        "seed": seed,
        "max_acc": acc / 100,
        "final_acc": (acc if final is None else final) / 100,
        "status": status,
        "knowledge": "omniscient",
        "variant": np.nan,
        "diag_rel_err": 0.5,
    }


def _c1_records(rng, seeds=5):
    """At β = 0.1 every attack costs RFA(buck) 30 points, under IID nothing; the other
    defenses lose 10 points at both β (no heterogeneity effect, but noisy)."""
    rows = []
    for beta in ("0.1", "iid"):
        for d in DEFENSES:
            for seed in range(seeds):
                rows.append(_row(beta, d, "none", np.nan, seed, 85 + rng.normal(0, 0.5)))
                for attack, strengths in (("alie", [2, 4, 8, 16]), ("ipm", [2.5, 5, 10])):
                    for s in strengths:
                        cost = 30 if (d == "RFA(buck)" and beta == "0.1") else 10
                        noise = rng.normal(0, 0.5 if d == "RFA(buck)" else 6)
                        rows.append(_row(beta, d, attack, s, seed, 85 - cost + noise))
    return pd.DataFrame(rows)


def _table1_records(rng, seeds=5):
    """ALIE takes every defense to 25 % (above the collapse level, so no cell splits), IPM
    costs 5 points, Min-Max and Min-Sum 15."""
    cost = {"none": 0, "alie": 60, "ipm": 5, "minmax": 15, "minsum": 15, "sf": 8}
    strength = {"alie": 8, "ipm": 2.5}
    rows = []
    for beta in ("0.3", "0.5"):
        for d in DEFENSES:
            for seed in range(seeds):
                for attack, c in cost.items():
                    acc = 85 - c + rng.normal(0, 0.5)
                    rows.append(_row(beta, d, attack, strength.get(attack, np.nan), seed, acc))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def loaded():
    return C.load(ROOT / "claims.yaml")


def test_claims_yaml_names_the_papers_four_claims(loaded):
    from byzstress.analysis import compare

    settings, claims = loaded
    assert list(claims) == ["C1", "C2", "C3", "C4"]
    assert settings.min_seeds >= 5 and settings.alpha == 0.05
    # the claims and every study's comparisons (demo, sensitivity, splits) use one rule
    assert settings.alpha == compare.ALPHA
    assert settings.equivalence_bound == compare.EQUIVALENCE_BOUND
    assert settings.collapse_final_acc == compare.COLLAPSE_FINAL_ACC
    # the abstract as docs/paper.md quotes it, one line of words
    text = (ROOT / "docs" / "paper.md").read_text()
    paper = " ".join(line.lstrip("> ").strip() for line in text.splitlines())
    for claim in claims.values():
        # each claim quotes the paper's own words: every part between ellipses is there
        for part in claim["quote"].split("[...]"):
            words = " ".join(part.split()).strip(" ,.")
            assert words in paper, words


def test_c1_supported_where_heterogeneity_adds_damage_only(loaded):
    settings, claims = loaded
    out = C.evaluate(
        {"C1": claims["C1"]}, {"figure1cpu": _c1_records(np.random.default_rng(0))}, settings
    )
    assert len(out) == 16
    rfa = out[out["defense"] == "RFA(buck)"]
    assert set(rfa["outcome"]) == {SUPPORTED}
    # 30 points lost at β = 0.1 against 10 under IID
    assert rfa["estimate"].between(18, 22).all()
    # the others lose the same 10 points at both β: never supported
    assert SUPPORTED not in set(out[out["defense"] != "RFA(buck)"]["outcome"])
    assert set(out["seeds"]) == {"5 v 5"}


def test_c1_pairs_seeds_and_drops_one_without_every_strength(loaded):
    settings, claims = loaded
    df = _c1_records(np.random.default_rng(1))
    gone = (
        (df["beta"] == "iid")
        & (df["attack"] == "alie")
        & (df["strength"] == 16)
        & (df["seed"] == 4)
    )
    out = C.evaluate({"C1": claims["C1"]}, {"figure1cpu": df[~gone]}, settings)
    mean_alie = out[out["contrast"].str.startswith("ALIE z ≥")]
    assert set(mean_alie["seeds"]) == {"5 v 4"}
    paper_alie = out[out["contrast"].str.startswith("ALIE z = 8")]
    assert set(paper_alie["seeds"]) == {"5 v 5"}


def test_c2_to_c4_on_a_known_table(loaded):
    settings, claims = loaded
    runs = {"table1cpu": _table1_records(np.random.default_rng(2))}
    out = C.evaluate({k: claims[k] for k in ("C2", "C3", "C4")}, runs, settings)
    c2 = out[out["claim"] == "C2"]
    # ALIE's 60-point drop is severe (> 10); IPM's 5 points are significantly less
    assert set(c2[c2["contrast"] == "ALIE z = 8"]["outcome"]) == {SUPPORTED}
    assert set(c2[c2["contrast"] == "IPM ε = 2.5"]["outcome"]) == {CONTRADICTED}
    c3 = out[(out["claim"] == "C3") & (out["family"] == "primary")]
    assert len(c3) == 16 and set(c3["outcome"]) == {SUPPORTED}
    # IPM costs less than either rival: the secondary family goes the other way
    c3b = out[(out["claim"] == "C3") & (out["family"] == "secondary")]
    assert len(c3b) == 16 and set(c3b["outcome"]) == {CONTRADICTED}
    c4 = out[out["claim"] == "C4"]
    # 25 % is below half of 85 % (by 17.5 points): every defense fails dramatically
    assert len(c4) == 8 and set(c4["outcome"]) == {SUPPORTED}
    assert c4["estimate"].between(15, 20).all()


def test_collapse_is_counted_beside_the_accuracy(loaded):
    settings, claims = loaded
    df = _table1_records(np.random.default_rng(3))
    alie = (df["attack"] == "alie") & (df["beta"] == "0.3") & (df["defense"] == "CM")
    df.loc[alie, "final_acc"] = 0.10
    df.loc[alie & (df["seed"] == 0), "status"] = "diverged"
    out = C.evaluate({"C2": claims["C2"]}, {"table1cpu": df}, settings)
    row = out[(out["beta"] == "0.3") & (out["defense"] == "CM") & (out["contrast"] == "ALIE z = 8")]
    assert row["collapse_b"].item().startswith("5/5")
    assert row["collapse_a"].item().startswith("0/5")
    assert row["collapse_p"].item() < 0.01
    # Holm across C2's 16 comparisons: the only difference is multiplied by 16 (the other
    # fifteen, with no collapse on either side, have Fisher p = 1)
    assert (out["collapse_p"] == 1.0).sum() == 15
    assert row["collapse_p_adj"].item() == pytest.approx(min(1.0, 16 * row["collapse_p"].item()))


def test_too_few_seeds_are_inconclusive_and_say_so(loaded):
    settings, claims = loaded
    df = _table1_records(np.random.default_rng(4), seeds=1)
    out = C.evaluate({"C4": claims["C4"]}, {"table1cpu": df}, settings)
    assert set(out["outcome"]) == {INCONCLUSIVE}
    assert set(out["seeds"]) == {"1 v 1"}


def test_split_cells_follow_the_stated_rule(loaded):
    settings, _ = loaded
    rows = []
    for seed in range(7):
        rows.append(_row("0.1", "CM", "ipm", 5, seed, 60 + seed))  # tight
        # some seeds collapse, others do not
        rows.append(_row("0.1", "CM", "ipm", 10, seed, 60, final=10 if seed < 2 else 60))
        rows.append(_row("0.1", "CM", "alie", 8, seed, 40 + 6 * seed))  # 24-point span
        # a wide spread only among seeds 5 and 6: the rule reads the first five only
        rows.append(_row("0.1", "CM", "alie", 4, seed, 60 if seed < 5 else 20))
    rows.append(_row("0.1", "RFA(buck)", "alie", 8, 0, 10))  # one seed: not judged
    split = C.split_cells(pd.DataFrame(rows), settings)
    got = {(r.attack, r.strength, r.mixed) for r in split.itertuples()}
    assert got == {("ipm", 10, True), ("alie", 8, False)}


def test_a_bad_estimand_is_a_clear_error(tmp_path):
    raw = yaml.safe_load((ROOT / "claims.yaml").read_text())
    raw["claims"]["C1"]["estimand"] = "biggest"
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        C.ClaimsError, match=r"claims\.C1\.estimand: 'biggest'.*heterogeneity_effect"
    ):
        C.load(path)


def test_the_published_outcomes_rebuild_from_the_published_records(loaded):
    """docs/claims-results.csv is what the rule gives on the committed runs.csv files."""
    settings, claims = loaded
    runs = {}
    for study in {c["study"] for c in claims.values()}:
        path = ROOT / "docs" / study / "runs.csv"
        if path.exists():
            runs[study] = C.read_runs(path)
    fresh = C.evaluate(claims, runs, settings).to_csv(index=False, float_format=FLOAT_FORMAT)
    assert fresh == (ROOT / "docs" / "claims-results.csv").read_text()
    published = read_results(ROOT / "docs" / "claims-results.csv")
    assert set(published["claim"]) <= set(claims)


def test_the_claims_command_writes_the_table_the_page_and_the_picture(tmp_path):
    """`byzstress claims` on hand-made records: the CSV holds every comparison, the page
    shows each claim's outcome and links the forest plot it writes."""
    from byzstress.cli import main

    rng = np.random.default_rng(5)
    _c1_records(rng).to_csv(tmp_path / "f1.csv", index=False)
    _table1_records(rng).to_csv(tmp_path / "t1.csv", index=False)
    prefix = tmp_path / "out" / "claims"
    rc = main(
        [
            "claims",
            "--claims", str(ROOT / "claims.yaml"),
            "--config", str(ROOT / "config.yaml"),
            "--runs", f"figure1cpu={tmp_path / 'f1.csv'}",
            "--runs", f"table1cpu={tmp_path / 't1.csv'}",
            "--out-prefix", str(prefix),
        ]
    )  # fmt: skip
    assert rc in (0, None)
    table = read_results(prefix.with_suffix(".csv"))
    assert len(table) == 16 + 16 + 32 + 8
    page = prefix.with_suffix(".md").read_text()
    for cid in ("C1", "C2", "C3", "C4"):
        assert f"## {cid}" in page
    assert "](claims.png)" in page
    assert prefix.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # beside the paper's Table 1 (C2-C4) CM is named for the CMLS column it computes;
    # C1's setting (Figure 1) has no such column
    c1, rest = page.split("## C2", 1)
    assert "| CM (CMLS unavailable) |" in rest and "| CM |" not in rest
    assert "| CM |" in c1 and "CMLS" not in c1


def test_split_cells_become_the_slices_that_add_their_seeds(tmp_path, capsys, loaded):
    settings, _ = loaded
    rows = []
    for seed in range(5):
        # (cells config.yaml's own split-* slices do not cover)
        rows.append(_row("iid", "CM", "ipm", 10, seed, 60, final=10 if seed < 2 else 60))
        rows.append(_row("iid", "RFA(buck)", "alie", 16, seed, 30 + 10 * seed))  # 40 points
        rows.append(_row("iid", "RFA(buck)", "none", np.nan, seed, 85))  # tight
    df = pd.DataFrame(rows)
    slices = C.split_slices(C.split_cells(df, settings), settings)
    # one slice per β and defense, in split_cells' (sorted) order
    assert slices == [
        {
            "name": "split-iid-CM",
            "betas": ["iid"],
            "defenses": ["CM"],
            "seeds": [5, 6, 7, 8, 9],
            "attacks": [{"name": "ipm", "strengths": [10]}],
        },
        {
            "name": "split-iid-RFA(buck)",
            "betas": ["iid"],
            "defenses": ["RFA(buck)"],
            "seeds": [5, 6, 7, 8, 9],
            "attacks": [{"name": "alie", "strengths": [16]}],
        },
    ]
    # the command prints them as config.yaml slices the figure1cpu study lacks
    from byzstress.cli import main

    df.to_csv(tmp_path / "f1.csv", index=False)
    main(["claims", "--claims", str(ROOT / "claims.yaml"), "--config",
          str(ROOT / "config.yaml"), "--runs", f"figure1cpu={tmp_path / 'f1.csv'}",
          "--slices", "figure1cpu"])  # fmt: skip
    printed = yaml.safe_load(capsys.readouterr().out)["slices"]
    assert {s["name"] for s in printed} == {"split-iid-CM", "split-iid-RFA(buck)"}
    assert all(s["seeds"] == [5, 6, 7, 8, 9] for s in printed)


def test_c1_counts_a_collapse_per_seed_not_per_run(loaded):
    settings, claims = loaded
    df = _c1_records(np.random.default_rng(6))
    # seeds 0 and 1 of CM collapse under every large ALIE strength at β = 0.1: 8 runs, 2 seeds
    sel = (df["beta"] == "0.1") & (df["defense"] == "CM") & (df["attack"] == "alie")
    df.loc[sel & df["seed"].isin([0, 1]), "final_acc"] = 0.1
    out = C.evaluate({"C1": claims["C1"]}, {"figure1cpu": df}, settings)
    row = out[(out["defense"] == "CM") & out["contrast"].str.startswith("ALIE z ≥")]
    assert row["collapse_a"].item().startswith("2/5")
    row = out[(out["defense"] == "CM") & out["contrast"].str.startswith("ALIE z = 8")]
    assert row["collapse_a"].item().startswith("2/5")


def test_no_equivalence_test_where_zero_means_nothing(loaded):
    """C4's zero (exactly half the no-attack accuracy) and C2's (threshold 10) are no
    'no effect': those claims have no equivalence test, so they cannot end in 'no effect'
    even where the estimate sits at zero with tight seeds."""
    settings, claims = loaded
    rng = np.random.default_rng(7)
    df = _table1_records(rng, seeds=10)
    # ALIE leaves every defense at exactly half of its no-attack accuracy
    alie = df["attack"] == "alie"
    df.loc[alie, "max_acc"] = 0.425 + rng.normal(0, 0.001, alie.sum())
    out = C.evaluate({"C4": claims["C4"]}, {"table1cpu": df}, settings)
    assert (out["p_equivalent_adj"] == 1.0).all()
    assert NO_EFFECT not in set(out["outcome"])
    # while C1 and C3 keep it
    assert claims["C1"].get("equivalence", True) and claims["C3"].get("equivalence", True)


def test_fewer_seeds_than_the_rule_asks_are_provisional(loaded):
    settings, claims = loaded
    full = C.evaluate(
        {"C2": claims["C2"]}, {"table1cpu": _table1_records(np.random.default_rng(8))}, settings
    )
    three = _table1_records(np.random.default_rng(8), seeds=3)
    few = C.evaluate({"C2": claims["C2"]}, {"table1cpu": three}, settings)
    assert not full["provisional"].any()
    assert few["provisional"].all()


def test_a_split_c1_cell_brings_the_cells_it_pairs_with(loaded):
    _, claims = loaded
    split = pd.DataFrame([{"beta": "0.1", "defense": "CM", "attack": "ipm", "strength": 5.0}])
    out = C.paired_companions(split, claims, "figure1cpu")
    got = {(r.attack, None if pd.isna(r.strength) else r.strength) for r in out.itertuples()}
    # the same β and defense's baseline and every strength of C1's IPM contrasts
    assert got == {("ipm", 5.0), ("none", None), ("ipm", 2.5), ("ipm", 10.0)}
    assert set(out["beta"]) == {"0.1"} and set(out["defense"]) == {"CM"}
    # a study no C1 contrast uses brings nothing more
    assert len(C.paired_companions(split, claims, "table1cpu")) == 1


def test_a_side_whose_cells_split_is_provisional_until_it_has_the_extra_seeds(loaded):
    """The split rule asks 10 seeds of a side whose cell splits: with 5 that side's
    comparisons stay provisional, with 10 they are not; the other side needs 5."""
    settings, claims = loaded
    df = _table1_records(np.random.default_rng(9), seeds=settings.split_seeds_to)
    # CM's ALIE cell at β = 0.3 splits: among its first five seeds, two collapse
    cell = (df["beta"] == "0.3") & (df["defense"] == "CM") & (df["attack"] == "alie")
    df.loc[cell & df["seed"].isin([0, 1]), "final_acc"] = 0.1
    five = df[df["seed"] < settings.min_seeds]

    def flags(records):
        out = C.evaluate({"C2": claims["C2"]}, {"table1cpu": records}, settings)
        out = out.set_index(["beta", "defense", "contrast"])
        return out["provisional"], out["split"]

    provisional, split = flags(five)
    assert provisional[("0.3", "CM", "ALIE z = 8")] and split[("0.3", "CM", "ALIE z = 8")] == (
        "– v split"
    )
    assert provisional.sum() == 1  # no other cell splits
    # seeds 5-9 for the split cell only: its side has ten, the no-attack side needs five
    extra = df[cell & (df["seed"] >= settings.min_seeds)]
    provisional, _ = flags(pd.concat([five, extra]))
    assert not provisional.any()
    out = C.evaluate({"C2": claims["C2"]}, {"table1cpu": pd.concat([five, extra])}, settings)
    row = out[(out["beta"] == "0.3") & (out["defense"] == "CM") & (out["contrast"] == "ALIE z = 8")]
    assert row["seeds"].item() == "5 v 10"
    # only cells an estimand reads are judged: SF splits too, but no claim reads it
    sf = (df["defense"] == "CM") & (df["attack"] == "sf")
    df.loc[sf & df["seed"].isin([0, 1]), "final_acc"] = 0.1
    used = C.used_cells(df, claims, "table1cpu", settings)
    judged = C.split_cells(df, settings, used)
    assert set(zip(judged["beta"], judged["attack"], strict=True)) == {("0.3", "alie")}
    assert "sf" in set(C.split_cells(df, settings)["attack"])


def test_c1_is_decided_again_on_the_records_trained_after_the_rule(tmp_path):
    """claims.yaml's seen_before lists records published before the rule: the command
    decides C1 again without them and says how many records each decision reads."""
    from byzstress.cli import main

    df = _c1_records(np.random.default_rng(10))
    df.to_csv(tmp_path / "f1.csv", index=False)
    seen = df[df["seed"] < 3]
    assert len(C.without_seen(df, seen)) == len(df) - len(seen)
    assert set(C.without_seen(df, seen)["seed"]) == {3, 4}
    seen[["beta", "defense", "attack", "strength", "seed"]].to_csv(
        tmp_path / "seen.csv", index=False
    )
    raw = yaml.safe_load((ROOT / "claims.yaml").read_text())
    raw["claims"] = {"C1": {**raw["claims"]["C1"], "seen_before": "seen.csv"}}
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    prefix = tmp_path / "out" / "claims"
    main(["claims", "--claims", str(tmp_path / "claims.yaml"), "--config",
          str(ROOT / "config.yaml"), "--runs", f"figure1cpu={tmp_path / 'f1.csv'}",
          "--out-prefix", str(prefix)])  # fmt: skip
    page = prefix.with_suffix(".md").read_text()
    # 4 defenses x 2 betas x (no attack + 7 strengths) x 5 seeds; seeds 0-2 seen
    assert "after 192 of the 320 records C1 reads" in page
    # with nothing trained after the rule, the page says so (no empty table)
    seen_all = df[["beta", "defense", "attack", "strength", "seed"]]
    seen_all.to_csv(tmp_path / "seen.csv", index=False)
    main(["claims", "--claims", str(tmp_path / "claims.yaml"), "--config",
          str(ROOT / "config.yaml"), "--runs", f"figure1cpu={tmp_path / 'f1.csv'}",
          "--out-prefix", str(tmp_path / "all-seen")])  # fmt: skip
    assert "None of the others has been trained yet." in (tmp_path / "all-seen.md").read_text()
    assert "Decided on the other 128 alone" in page
    # only RFA(buck) has an effect (20 points): on two seeds per side, what is supported is
    # RFA(buck)'s and at least its four-strength ALIE mean (the least noisy) stays so
    line = next(x for x in page.splitlines() if x.startswith("**Records trained after"))
    assert "2 seeds per side" in line
    both = line.split("Supported on both: ")[1].split(". Supported on all")[0].split("; ")
    assert "RFA(buck) ALIE z ≥ 2 (mean of 2, 4, 8, 16)" in both
    assert all(x.startswith("RFA(buck) ") for x in both)
    assert line.endswith("On the later records only: none.")


def test_the_aggregate_shift_reports_the_attacks_excess_over_no_attack(loaded):
    """Heterogeneity moves the output without an attack: the excess column subtracts the
    no-attack shift at the same β, with a Welch interval that covers the known excess."""
    _, claims = loaded
    rng = np.random.default_rng(11)
    df = _c1_records(rng)
    noise = rng.normal(0, 0.01, len(df))
    attacked = df["attack"] != "none"
    # no attack: 0.5 under IID, 1.0 at β = 0.1; the attack adds 0.3 under IID, 0.1 at 0.1
    base = np.where(df["beta"] == "iid", 0.5, 1.0)
    add = np.where(df["beta"] == "iid", 0.3, 0.1) * attacked
    df["diag_rel_err"] = base + add + noise
    shift = C.aggregate_shift(df, claims["C1"]).set_index(["defense", "contrast"])
    row = shift.loc[("CM", "ALIE z = 8 (the paper's)")]
    assert row["none 0.1"] == pytest.approx(1.0, abs=0.05)
    assert row["excess iid"] == pytest.approx(0.3, abs=0.03)
    assert row["excess 0.1"] == pytest.approx(0.1, abs=0.03)
    assert row["excess_low iid"] < 0.3 < row["excess_high iid"]
    assert row["excess_high 0.1"] < row["excess_low iid"]  # the excess shrank with β


def test_the_readme_names_the_comparisons_behind_each_outcome(loaded):
    """where_markdown: each outcome but inconclusive names its comparisons (with the β they
    hold at, CM named for the paper's CMLS column beside Table 1), inconclusive is counted."""
    from byzstress.analysis.scorecard import where_markdown

    settings, claims = loaded
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    rng = np.random.default_rng(2)
    runs = {"figure1cpu": _c1_records(rng), "table1cpu": _table1_records(rng)}
    out = C.evaluate(claims, runs, settings)
    lines = dict(line.split("** ", 1) for line in where_markdown(out, claims, config).splitlines())
    # C1: heterogeneity adds damage to RFA(buck) only; the noisy others are inconclusive
    c1 = lines["- **C1"]
    assert c1.startswith("supported (4): RFA(buck) ALIE z = 8 (the paper's); RFA(buck)")
    assert "inconclusive: the other 12." in c1 and "CM " not in c1 and " at β" not in c1
    # C2: ALIE's drop is severe at both β, IPM's is not; CM carries the paper's column name
    c2 = lines["- **C2"]
    assert "supported (8): " in c2 and "contradicted (8): " in c2
    assert "CM (CMLS unavailable) ALIE z = 8 at β 0.3 and 0.5" in c2
    assert "inconclusive" not in c2 and "provisional" not in c2
