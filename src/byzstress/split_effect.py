"""Do a study's conclusions change with the kind of split?

A study with a ``split`` axis (``docs/heterogeneity.md``) trains the same cells under
several splits of about the same measured label skew. Its conclusions are the seed
paper's claims per defense (:mod:`byzstress.verdicts`): a claim's conclusion *changes with
the split* when it holds under one split and fails under another; it is *the same* when
every split decides it the same way; otherwise the splits leave it *undecided* (within
seed noise).

Such a slice has one seed per cell, so its comparisons are differences of means. Their
margin is ``max(1 point, 2 s)``, with ``s`` a std over seeds of the same cell measured in a
reference study of the default split (:func:`byzstress.verdicts.seed_noise`; e.g. the
sensitivity study's two-seed Dirichlet cells). The accuracy of each cell under each split
is compared with the default split's in the same way.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .reporting import DEFAULTS, METRIC_TEXT, _write_csv, _write_text, read_tidy
from .verdicts import CLAIMS, UNDECIDED, Cell, claims, compare, seed_noise, verdict_text

__all__ = [
    "accuracy_table",
    "claim_table",
    "heterogeneity",
    "reference_noise",
    "split_effect_cmd",
    "split_of",
    "summary_line",
]

SAME, CHANGES, UNTESTED = "same", "changes", "untested"


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
    """``changes``, ``same`` or undecided; ``untested`` when fewer than two splits test
    the claim."""
    tested = [v for v in verdicts if v is not None]
    if len(tested) < 2:
        return UNTESTED
    if "holds" in tested and "fails" in tested:
        return CHANGES
    if all(v == tested[0] for v in tested) and tested[0] != UNDECIDED:
        return SAME
    return UNDECIDED


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


def claim_table(
    df: pd.DataFrame, noise: dict | None = None, metric: str = "max_acc"
) -> pd.DataFrame:
    """One row per (claim, β, knowledge, defense): the verdict under each split (columns
    ``split:<name>``) and whether it ``changes`` with the split, is the ``same`` or is
    undecided."""
    splits = _splits(df)
    empty = pd.DataFrame(
        columns=["claim", "setting", "defense", *(f"split:{s}" for s in splits), "change"]
    )
    c = claims(df, metric, noise=noise)
    if c.empty or "verdict" not in c:
        return empty
    c = c[c["verdict"].notna()].copy()
    if c.empty:
        return empty
    # the setting without its split: "β=0.1, momentum=0.9 ema, split=gamma[...], omniscient"
    parts = c["setting"].str.split(", ")
    c["split"] = [split_of(", ".join(ps)) for ps in parts]
    c["base"] = [", ".join(p for p in ps if not p.startswith("split=")) for ps in parts]
    c["text"] = [
        verdict_text(v, bool(p)) for v, p in zip(c["verdict"], c["provisional"], strict=True)
    ]
    rows: dict[tuple, dict] = {}
    for (claim, base, defense), g in c.groupby(["claim", "base", "defense"], sort=False):
        by = dict(zip(g["split"], g["verdict"], strict=True))
        text = dict(zip(g["split"], g["text"], strict=True))
        evidence = dict(zip(g["split"], g["evidence"], strict=True))
        # two claims that rest on the same comparisons under every split are one finding
        # (with only ALIE and IPM, "far below the others" and "strongest" are one test)
        key = (base, defense, tuple(evidence.get(s) for s in splits))
        if key in rows:
            rows[key]["claim"] += f"+{claim}"
            continue
        row = {"claim": claim, "setting": base, "defense": defense}
        row |= {f"split:{s}": text.get(s, UNTESTED) for s in splits}
        row["change"] = _change([by.get(s) for s in splits])
        rows[key] = row
    return pd.DataFrame(list(rows.values()))


def claim_text(claim: str) -> str:
    """``alie_far_below+alie_strongest`` -> both claims' texts."""
    return " = ".join(CLAIMS[c] for c in claim.split("+"))


def accuracy_table(
    df: pd.DataFrame, noise: dict | None = None, metric: str = "max_acc"
) -> pd.DataFrame:
    """Per (β, knowledge, defense, attack) and split: mean accuracy (%) over seeds and its
    difference from the default split's, with the margin and outcome of
    :func:`byzstress.verdicts.compare` (``lower``, ``higher``, ``undecided``)."""
    noise = noise or {}
    d = df.assign(split=df["split"].astype(str))
    splits = _splits(df)
    default = splits[0]
    rows = []
    d["setting"] = [_rest(v) for v in d["variant"]]
    keys = ["beta", "setting", "knowledge", "defense", "attack_label"]
    for key, g in d.groupby(keys, sort=False):
        cells = {
            s: Cell(
                s, {int(k): float(v) * 100 for k, v in zip(gs["seed"], gs[metric], strict=True)}
            )
            for s, gs in g.groupby("split", sort=False)
            if gs[metric].notna().any()
        }
        _, setting, knowledge, defense, label = key
        # the reference measured the default training: it speaks for the other knobs' cells
        # only where the study varies nothing else
        base = label.removesuffix(", local")
        extra = 0.0 if setting else noise.get((defense, knowledge, base), 0.0)
        for s in splits:
            if s not in cells:
                continue
            row = dict(zip(keys, key, strict=True)) | {
                "split": s,
                "mean": cells[s].mean,
                "seeds": cells[s].seeds,
            }
            if s != default and default in cells:
                cmp = compare(cells[s], cells[default], noise=extra)
                row |= {"diff": cmp.diff, "margin": cmp.margin, "outcome": cmp.outcome}
            rows.append(row)
    return pd.DataFrame(rows)


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
        f"and is left undecided in {n.get(UNDECIDED, 0)}."
    )


def _fmt(x: float, signed: bool = False) -> str:
    return "" if pd.isna(x) else (f"{x:+.1f}" if signed else f"{x:.1f}")


def markdown(
    claims_t: pd.DataFrame, acc: pd.DataFrame, het: pd.DataFrame, metric: str, noise_from: str
) -> str:
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
        "| split | label TV (mean) | size CV |",
        "|---|---|---|",
        *(
            f"| {r['split']} | {r.get('het_label_tv_mean', float('nan')):.3f} | "
            f"{r.get('het_size_cv', float('nan')):.3f} |"
            for _, r in het.iterrows()
        ),
        "",
        f"| β | defense | attack | {' | '.join(splits)} | moved beyond seed noise |",
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
                cells.append(f"{_fmt(r['mean'])} ({_fmt(r['diff'], True)} ± {r['margin']:.1f})")
        moved = [s for s in splits if s in by and by[s].get("outcome") in ("lower", "higher")]
        where = f"{defense} [{setting}]" if setting else defense
        lines.append(
            f"| {beta} | {where} | {label} | {' | '.join(cells)} | {', '.join(moved) or 'none'} |"
        )
    lines += [
        "",
        f"Accuracies: {METRIC_TEXT[metric]}, mean over seeds (%). In brackets: the difference "
        f"from the {splits[0]} split ± its margin max(1, 2 s), s the larger of the cells' "
        f"stds over seeds and the reference std of the cell in {noise_from} (its two-seed "
        "cells of the default split). Between two one-seed cells of std s the difference "
        "has std √2·s, so 2 s is about 1.4 of its standard deviations: a cell 'moved' at "
        "that margin is a screen, not a test. A claim's verdicts use the same margins "
        "(byzstress.verdicts); provisional: a one-seed side.",
    ]
    return "\n".join(lines) + "\n"


def reference_noise(
    ref: pd.DataFrame, df: pd.DataFrame, metric: str = "max_acc"
) -> dict[tuple[str, str, str], float]:
    """The seed noise of ``df``'s cells from ``ref``: its multi-seed cells at ``df``'s β,
    trained as ``df``'s runs of the default split are (same knobs, that split)."""
    _check(df)
    default = df[df["split"].astype(str) == str(DEFAULTS["split"])]
    return seed_noise(ref, metric, betas=set(df["beta"].astype(str)), like=default)


def split_effect_cmd(
    csv: Path, prefix: Path, noise_from: Path | None = None, metric: str = "max_acc"
) -> None:
    """Write ``PREFIX-claims.csv``, ``PREFIX-accuracy.csv`` and ``PREFIX.md``."""
    df = read_tidy(csv)
    try:
        _check(df)
    except ValueError as err:
        raise ValueError(f"{str(csv)!r}: {err}") from err
    noise = None
    if noise_from is not None:
        noise = reference_noise(read_tidy(noise_from), df, metric)
    ct = claim_table(df, noise, metric)
    acc = accuracy_table(df, noise, metric)
    _write_csv(Path(f"{prefix}-claims.csv"), ct)
    _write_csv(Path(f"{prefix}-accuracy.csv"), acc)
    ref = str(noise_from) if noise_from is not None else "no reference study"
    _write_text(Path(f"{prefix}.md"), markdown(ct, acc, heterogeneity(df), metric, ref))
