"""Do a study's conclusions change with the kind of split?

A study with a ``split`` axis (``docs/heterogeneity.md``) trains the same cells under
several splits of about the same measured label skew. Its conclusions are the seed
paper's claims per defense (:mod:`byzstress.analysis.verdicts`: Welch tests, an intersection-union
test per column, Holm across the claim's columns, which here are every split's). A claim's
conclusion *changes with the split* when it is supported under one split and contradicted
under another; it is *the same* when every split reaches the same supported or contradicted
verdict; otherwise the splits leave it *inconclusive*.

The accuracy of each cell under each split is compared with the default split's by the same
primitive (:func:`byzstress.analysis.compare.welch`): the difference of means with its 95 %
Welch interval, a two-sided p-value (twice the smaller one-sided p) and the equivalence
test of |difference| < 3 points (two one-sided tests), each family Holm-adjusted across the
study's cells. A cell *moved* (``higher`` or ``lower``) where its adjusted two-sided p is
below α = 0.05; it shows *no effect* where its adjusted equivalence p is; otherwise it is
*inconclusive*. A cell with fewer than two seeds under a split has no test: with one seed
per cell, a study shows its differences but cannot decide them.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .compare import (
    ALPHA,
    CONTRADICTED,
    EQUIVALENCE_BOUND,
    INCONCLUSIVE,
    NO_EFFECT,
    SUPPORTED,
    holm,
    welch,
)
from .outputs import write_csv, write_text
from .reporting import DEFAULTS, METRIC_TEXT, read_tidy
from .verdicts import CLAIMS, RULE_TEXT, claims, verdict_text

__all__ = [
    "accuracy_table",
    "claim_table",
    "heterogeneity",
    "split_effect_cmd",
    "split_of",
    "summary_line",
]

SAME, CHANGES, UNTESTED = "same", "changes", "untested"
HIGHER, LOWER = "higher", "lower"


def split_of(variant: str) -> str:
    """The split a run's ``variant`` names (``split=shards[k=3], ...`` -> ``shards[k=3]``);
    the default split where the variant does not name one."""
    for part in str(variant).split(", "):
        if part.startswith("split="):
            return part.removeprefix("split=")
    return str(DEFAULTS["split"])


def _splits(df: pd.DataFrame) -> list[str]:
    """The study's splits, the default first."""
    found = list(dict.fromkeys(df["split"].astype(str)))
    default = str(DEFAULTS["split"])
    return sorted(found, key=lambda s: s != default)


def _change(verdicts: list[str | None]) -> str:
    """``changes``, ``same`` or ``inconclusive``; ``untested`` when fewer than two splits
    test the claim."""
    tested = [v for v in verdicts if v is not None]
    if len(tested) < 2:
        return UNTESTED
    if SUPPORTED in tested and CONTRADICTED in tested:
        return CHANGES
    if all(v == tested[0] for v in tested) and tested[0] != INCONCLUSIVE:
        return SAME
    return INCONCLUSIVE


def _rest(variant: str) -> str:
    """The variant without its split: the other knobs a study varies."""
    return ", ".join(p for p in str(variant).split(", ") if p and not p.startswith("split="))


def _check(df: pd.DataFrame) -> None:
    if "split" not in df or df["split"].nunique() < 2:
        raise ValueError("split: the runs do not vary 'split' (a study axis)")
    default = str(DEFAULTS["split"])
    if default not in set(df["split"].astype(str)):
        raise ValueError(
            f"split: no run of the default split {default!r}, which the other splits are "
            f"compared with; the runs have {', '.join(_splits(df))}"
        )


def claim_table(df: pd.DataFrame, metric: str = "max_acc") -> pd.DataFrame:
    """One row per (claim, β, knowledge, defense): the verdict under each split (columns
    ``split:<name>``) and whether it ``changes`` with the split, is the ``same`` or is
    ``inconclusive``."""
    splits = _splits(df)
    empty = pd.DataFrame(
        columns=["claim", "setting", "defense", *(f"split:{s}" for s in splits), "change"]
    )
    c = claims(df, metric)
    c = c[c["verdict"].notna()].copy()
    if c.empty:
        return empty
    # the setting without its split: "β=0.1, momentum=0.9 ema, split=gamma[...], omniscient"
    parts = c["setting"].str.split(", ")
    c["split"] = [split_of(", ".join(ps)) for ps in parts]
    c["base"] = [", ".join(p for p in ps if not p.startswith("split=")) for ps in parts]
    rows: dict[tuple, dict] = {}
    for (claim, base, defense), g in c.groupby(["claim", "base", "defense"], sort=False):
        by = dict(zip(g["split"], g["verdict"], strict=True))
        evidence = dict(zip(g["split"], g["evidence"], strict=True))
        # two claims that rest on the same comparisons under every split are one finding
        # (with only ALIE and IPM, "far below the others" and "strongest" are one test)
        key = (base, defense, tuple(evidence.get(s) for s in splits))
        if key in rows:
            rows[key]["claim"] += f"+{claim}"
            continue
        row = {"claim": claim, "setting": base, "defense": defense}
        row |= {f"split:{s}": verdict_text(by.get(s)) for s in splits}
        row["change"] = _change([by.get(s) for s in splits])
        rows[key] = row
    return pd.DataFrame(list(rows.values()), columns=empty.columns)


def claim_text(claim: str) -> str:
    """``alie_lowest+alie_strongest`` -> both claims' texts."""
    return " = ".join(CLAIMS[c] for c in claim.split("+"))


def _moved(p_two: float, p_eq: float, estimate: float, alpha: float) -> str:
    if p_two < alpha:
        return HIGHER if estimate > 0 else LOWER
    if p_eq < alpha:
        return NO_EFFECT
    return INCONCLUSIVE


def accuracy_table(df: pd.DataFrame, metric: str = "max_acc", alpha: float = ALPHA) -> pd.DataFrame:
    """Per (β, knowledge, defense, attack) and split: mean accuracy (%) over seeds and, for
    every split but the default, its difference from the default split's with the 95 %
    Welch interval, the Holm-adjusted two-sided and equivalence p-values and the
    ``outcome`` (``higher``, ``lower``, ``no effect``, ``inconclusive``; the module's
    docstring)."""
    d = df.assign(split=df["split"].astype(str))
    splits = _splits(df)
    default = splits[0]
    rows = []
    d["setting"] = [_rest(v) for v in d["variant"]]
    keys = ["beta", "setting", "knowledge", "defense", "attack_label"]
    for key, g in d.groupby(keys, sort=False):
        values = {
            s: (100 * gs[metric].dropna().astype(float)).tolist()
            for s, gs in g.groupby("split", sort=False)
            if gs[metric].notna().any()
        }
        for s in splits:
            if s not in values:
                continue
            v = values[s]
            row = dict(zip(keys, key, strict=True)) | {
                "split": s,
                "mean": sum(v) / len(v),
                "seeds": len(v),
            }
            if s != default and default in values:
                c = welch(v, values[default])
                # two-sided p from the one-sided ones; nan (no test) stays nan
                one = min(c.p_for, c.p_against)
                p_two = math.nan if math.isnan(one) else min(1.0, 2 * one)
                row |= {
                    "diff": c.estimate,
                    "ci_low": c.ci_low,
                    "ci_high": c.ci_high,
                    "p": p_two,
                    "p_equivalent": c.p_equivalent,
                }
            rows.append(row)
    out = pd.DataFrame(rows)
    if "diff" not in out:
        return out
    compared = out.index[out["diff"].notna()]
    out.loc[compared, "p_adj"] = holm(out.loc[compared, "p"].tolist(), alpha)
    out.loc[compared, "p_equivalent_adj"] = holm(out.loc[compared, "p_equivalent"].tolist(), alpha)
    out.loc[compared, "outcome"] = [
        _moved(p, e, x, alpha)
        for p, e, x in zip(
            out.loc[compared, "p_adj"],
            out.loc[compared, "p_equivalent_adj"],
            out.loc[compared, "diff"],
            strict=True,
        )
    ]
    return out


def heterogeneity(df: pd.DataFrame) -> pd.DataFrame:
    """Per split: the measured label skew (mean TV distance) and size spread (CV) of the
    honest clients' shares, averaged over the study's runs."""
    d = df.assign(split=df["split"].astype(str))
    cols = [c for c in ("het_label_tv_mean", "het_size_cv") if c in d]
    return d.groupby("split", sort=False)[cols].mean().reindex(_splits(df)).reset_index()


def summary_line(claims_t: pd.DataFrame) -> str:
    """How many (claim, defense) pairs keep their conclusion under every split."""
    n = claims_t["change"].value_counts()
    return (
        f"Of {len(claims_t)} (claim, defense) pairs tested, the conclusion is the {SAME} under "
        f"every split in {n.get(SAME, 0)}, {CHANGES} with the split in {n.get(CHANGES, 0)}, "
        f"and is {INCONCLUSIVE} in {n.get(INCONCLUSIVE, 0)}."
    )


def _fmt(x: float, signed: bool = False) -> str:
    return "" if pd.isna(x) else (f"{x:+.1f}" if signed else f"{x:.1f}")


def diff_text(r: pd.Series) -> str:
    """``+3.0 [−1.2, +7.2]`` (a split's difference from the default, its 95 % interval)."""
    if pd.isna(r.get("ci_low", math.nan)):
        return _fmt(r["diff"], True)
    return f"{_fmt(r['diff'], True)} [{_fmt(r['ci_low'], True)}, {_fmt(r['ci_high'], True)}]"


def markdown(claims_t: pd.DataFrame, acc: pd.DataFrame, het: pd.DataFrame, metric: str) -> str:
    """The claim table, the accuracy table and the splits' measured heterogeneity."""
    splits = list(het["split"])
    lines = [
        summary_line(claims_t),
        "",
        "| claim | setting | defense | " + " | ".join(splits) + " | conclusion |",
        "|---|---|---|" + "---|" * len(splits) + "---|",
    ]
    for _, r in claims_t.iterrows():
        cells = " | ".join(str(r[f"split:{s}"]) for s in splits)
        lines.append(
            f"| {claim_text(r['claim'])} | {r['setting']} | {r['defense']} | {cells} | "
            f"{r['change']} |"
        )
    lines += [
        "",
        RULE_TEXT,
        "",
        "| split | label TV (mean) | size CV |",
        "|---|---|---|",
        *(
            f"| {r['split']} | {r.get('het_label_tv_mean', float('nan')):.3f} | "
            f"{r.get('het_size_cv', float('nan')):.3f} |"
            for _, r in het.iterrows()
        ),
        "",
        f"| β | defense | attack | {' | '.join(splits)} | moved (Holm, α = {ALPHA:g}) |",
        "|---|---|---|" + "---|" * len(splits) + "---|",
    ]
    for (beta, setting, _, defense, label), g in acc.groupby(
        ["beta", "setting", "knowledge", "defense", "attack_label"], sort=False
    ):
        by = {r["split"]: r for _, r in g.iterrows()}
        cells = []
        for s in splits:
            r = by.get(s)
            if r is None:
                cells.append("")
            elif pd.isna(r.get("diff", float("nan"))):
                cells.append(_fmt(r["mean"]))
            else:
                cells.append(f"{_fmt(r['mean'])} ({diff_text(r)})")
        moved = [
            f"{s} {by[s]['outcome']}"
            for s in splits
            if s in by and not pd.isna(by[s].get("outcome", math.nan))
        ]
        where = f"{defense} [{setting}]" if setting else defense
        lines.append(
            f"| {beta} | {where} | {label} | {' | '.join(cells)} | {', '.join(moved) or '–'} |"
        )
    seeds = int(acc["seeds"].max()) if len(acc) else 0
    lines += [
        "",
        f"Accuracies: {METRIC_TEXT[metric]}, mean over seeds (%; at most {seeds} per cell). "
        f"In brackets: the difference from the {splits[0]} split [its 95 % Welch interval, "
        "where both sides have two or more seeds]. Last column, per split: higher or lower "
        "where the Holm-adjusted two-sided Welch p is below "
        f"{ALPHA:g}, no effect where the Holm-adjusted equivalence test of |difference| < "
        f"{EQUIVALENCE_BOUND:g} points is, else inconclusive (always, with one seed per cell).",
    ]
    return "\n".join(lines) + "\n"


def split_effect_cmd(csv: Path, prefix: Path, metric: str = "max_acc") -> None:
    """Write ``PREFIX-claims.csv``, ``PREFIX-accuracy.csv`` and ``PREFIX.md``."""
    df = read_tidy(csv)
    try:
        _check(df)
    except ValueError as err:
        raise ValueError(f"{str(csv)!r}: {err}") from err
    ct = claim_table(df, metric)
    acc = accuracy_table(df, metric)
    write_csv(Path(f"{prefix}-claims.csv"), ct)
    write_csv(Path(f"{prefix}-accuracy.csv"), acc)
    write_text(Path(f"{prefix}.md"), markdown(ct, acc, heterogeneity(df), metric))
