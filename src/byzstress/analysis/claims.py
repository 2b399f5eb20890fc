"""The seed paper's claims decided from run records, by the estimands of ``claims.yaml``.

``claims.yaml`` (at the repository root) names, for each claim, the study whose records
decide it and the comparisons that do; docs/claims.md explains each choice. This module
builds each comparison's two samples of seeds from a study's ``runs.csv`` and hands them to
:mod:`byzstress.analysis.compare`, Holm-correcting across the comparisons of one claim:

- ``heterogeneity_effect`` (C1): seed i's drop at β, d_i(β) = acc(no attack, i) − mean over
  the contrast's strengths of acc(attack, i), compared between ``beta`` and
  ``reference_beta``: Δ = mean d(β) − mean d(reference);
- ``drop`` (C2): acc(no attack) − acc(attack) at one β, against ``threshold``;
- ``versus`` (C3): acc(rival) − acc(attack) at one β;
- ``failure`` (C4): ``failure_fraction`` · acc(no attack) − acc(attack) at one β.

Accuracies are the run's ``metric`` in points. A run *collapsed* if its status is
``diverged`` or its final accuracy is at most ``collapse.final_acc_at_most``; each side's
collapse rate is reported with its exact interval, and Fisher's exact test compares them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .compare import Comparison, Rate, collapse_difference, decide, rate, welch

__all__ = [
    "Settings",
    "evaluate",
    "load",
    "read_runs",
    "split_cells",
]


class ClaimsError(ValueError):
    """``claims.yaml`` names something the records or the code do not have."""


@dataclass(frozen=True)
class Settings:
    """The decision rule's numbers (``claims.yaml``'s top level)."""

    alpha: float
    equivalence_bound: float
    metric: str
    min_seeds: int
    collapse_final_acc: float
    split_range: float
    split_seeds_to: int
    power: float


def load(path: str | Path = "claims.yaml") -> tuple[Settings, dict[str, dict[str, Any]]]:
    """The rule's settings and the claims, by id, from ``claims.yaml``."""
    raw = yaml.safe_load(Path(path).read_text())
    try:
        settings = Settings(
            alpha=float(raw["alpha"]),
            equivalence_bound=float(raw["equivalence_bound"]),
            metric=str(raw["metric"]),
            min_seeds=int(raw["min_seeds"]),
            collapse_final_acc=float(raw["collapse"]["final_acc_at_most"]),
            split_range=float(raw["split"]["range_points"]),
            split_seeds_to=int(raw["split"]["seeds_to"]),
            power=float(raw["power"]),
        )
    except KeyError as err:
        raise ClaimsError(f"{path}: missing key {err}") from err
    claims = raw.get("claims") or {}
    for cid, claim in claims.items():
        if claim.get("estimand") not in ESTIMANDS:
            raise ClaimsError(
                f"{path}: claims.{cid}.estimand: {claim.get('estimand')!r} is not one of "
                f"{', '.join(ESTIMANDS)}"
            )
    return settings, claims


def read_runs(path: str | Path) -> pd.DataFrame:
    """A study's ``runs.csv`` with β as text (``iid``, ``0.1``), whatever pandas guesses."""
    df = pd.read_csv(path, dtype={"beta": str})
    df["beta"] = df["beta"].map(lambda b: b if b == "iid" else f"{float(b):g}")
    return df


def _collapsed(df: pd.DataFrame, settings: Settings) -> pd.Series:
    return (df["status"] == "diverged") | (df["final_acc"] <= settings.collapse_final_acc)


def _runs(
    df: pd.DataFrame, beta: str, defense: str, attack: str, strength: float | None
) -> pd.DataFrame:
    """One cell's runs, one row per seed (the paper's threat model: omniscient, no variant)."""
    sel = (df["beta"] == beta) & (df["defense"] == defense) & (df["attack"] == attack)
    if "knowledge" in df:
        sel &= df["knowledge"].fillna("omniscient") == "omniscient"
    if "variant" in df:
        sel &= df["variant"].isna()
    if strength is not None:
        sel &= np.isclose(df["strength"].astype(float), float(strength))
    cell = df[sel]
    if cell["seed"].duplicated().any():
        raise ClaimsError(
            f"β={beta} {defense} {attack} {strength}: a seed appears twice in the records"
        )
    return cell.set_index("seed")


def _points(cell: pd.DataFrame, metric: str) -> pd.Series:
    return 100.0 * cell[metric].astype(float)


@dataclass(frozen=True)
class _Pair:
    """The two samples of one comparison and the runs whose collapse each side counts."""

    family: str
    beta: str
    defense: str
    contrast: str
    a: list[float]
    b: list[float]
    collapse_a: Rate
    collapse_b: Rate


def _rate(cells: Iterable[pd.DataFrame], settings: Settings) -> Rate:
    frames = [c for c in cells if len(c)]
    if not frames:
        return rate(0, 0)
    runs = pd.concat(frames)
    return rate(int(_collapsed(runs, settings).sum()), len(runs))


def _heterogeneity(df: pd.DataFrame, claim: dict, s: Settings) -> list[_Pair]:
    out = []
    for defense in claim["defenses"]:
        for con in claim["contrasts"]:
            drops, attacked = {}, {}
            for beta in (str(claim["beta"]), str(claim["reference_beta"])):
                base = _points(_runs(df, beta, defense, "none", None), s.metric)
                cells = [_runs(df, beta, defense, con["attack"], x) for x in con["strengths"]]
                acc = pd.concat([_points(c, s.metric) for c in cells], axis=1)
                # a seed counts where it has the baseline and every strength of the contrast
                acc = acc.dropna()
                seeds = acc.index.intersection(base.index)
                drops[beta] = (base[seeds] - acc.loc[seeds].mean(axis=1)).tolist()
                # the unit is the seed: it collapsed if any of its attacked runs did (at
                # ALIE's large z, CM's runs are one run several times over)
                gone = pd.concat(
                    [_collapsed(c.loc[c.index.intersection(seeds)], s) for c in cells], axis=1
                ).any(axis=1)
                attacked[beta] = rate(int(gone.sum()), len(gone))
            b1, b0 = str(claim["beta"]), str(claim["reference_beta"])
            out.append(
                _Pair(
                    "primary",
                    f"{b1} v {b0}",
                    defense,
                    con["label"],
                    drops[b1],
                    drops[b0],
                    attacked[b1],
                    attacked[b0],
                )
            )
    return out


def _two_cells(
    df: pd.DataFrame, claim: dict, s: Settings, a_of, b_of, scale_a: float = 1.0
) -> list[_Pair]:
    """Comparisons of two cells at one β: ``a_of(con)`` and ``b_of(con)`` give each side's
    (attack, strength) for a contrast dict; ``scale_a`` multiplies side a's accuracies."""
    out = []
    for con, family in claim["_contrasts"]:
        for beta in (str(b) for b in claim["betas"]):
            for defense in claim["defenses"]:
                ca = _runs(df, beta, defense, *a_of(con))
                cb = _runs(df, beta, defense, *b_of(con))
                out.append(
                    _Pair(
                        family,
                        beta,
                        defense,
                        con["label"],
                        (scale_a * _points(ca, s.metric)).tolist(),
                        _points(cb, s.metric).tolist(),
                        _rate([ca], s),
                        _rate([cb], s),
                    )
                )
    return out


def _strength(con: dict) -> float | None:
    strengths = con.get("strengths")
    if not strengths:
        return None
    if len(strengths) != 1:
        raise ClaimsError(f"{con.get('label')}: a cell comparison takes one strength")
    return strengths[0]


def _drop(df: pd.DataFrame, claim: dict, s: Settings) -> list[_Pair]:
    claim = {**claim, "_contrasts": [(c, "primary") for c in claim["contrasts"]]}
    return _two_cells(df, claim, s, lambda c: ("none", None), lambda c: (c["attack"], _strength(c)))


def _failure(df: pd.DataFrame, claim: dict, s: Settings) -> list[_Pair]:
    claim = {**claim, "_contrasts": [(c, "primary") for c in claim["contrasts"]]}
    frac = float(claim["failure_fraction"])
    return _two_cells(
        df,
        claim,
        s,
        lambda c: ("none", None),
        lambda c: (c["attack"], _strength(c)),
        scale_a=frac,
    )


def _versus(df: pd.DataFrame, claim: dict, s: Settings) -> list[_Pair]:
    out = []
    sides = [("primary", claim["attack"])]
    if claim.get("secondary"):
        sides.append(("secondary", claim["secondary"]))
    for family, att in sides:
        contrasts = [
            ({**rival, "label": f"{rival['label']} v {att['label']}", "_att": att}, family)
            for rival in claim["rivals"]
        ]
        out += _two_cells(
            df,
            {**claim, "_contrasts": contrasts},
            s,
            lambda c: (c["attack"], _strength(c)),
            lambda c: (c["_att"]["attack"], _strength(c["_att"])),
        )
    return out


ESTIMANDS = {
    "heterogeneity_effect": _heterogeneity,
    "drop": _drop,
    "versus": _versus,
    "failure": _failure,
}

#: the columns of the results table, in order
COLUMNS = [
    "claim",
    "family",
    "beta",
    "defense",
    "contrast",
    "seeds",
    "estimate",
    "ci_low",
    "ci_high",
    "threshold",
    "p_for_adj",
    "p_against_adj",
    "p_equivalent_adj",
    "outcome",
    "provisional",
    "detectable",
    "collapse_a",
    "collapse_b",
    "collapse_p",
]


def evaluate(
    claims: dict[str, dict[str, Any]],
    runs: dict[str, pd.DataFrame],
    settings: Settings,
) -> pd.DataFrame:
    """Every comparison of every claim whose study's records are in ``runs`` (study →
    records), decided per claim and family (COLUMNS). A claim whose study has no records
    is left out."""
    rows = []
    for cid, claim in claims.items():
        df = runs.get(claim["study"])
        if df is None or df.empty:
            continue
        threshold = float(claim.get("threshold", 0.0))
        # "no effect" is tested only where the estimand's zero means "no difference"
        bound = settings.equivalence_bound if claim.get("equivalence", True) else None
        pairs = ESTIMANDS[claim["estimand"]](df, claim, settings)
        if claim.get("direction", "greater") != "greater":
            raise ClaimsError(f"claims.{cid}.direction: only 'greater' (orient the sides)")
        for family in dict.fromkeys(p.family for p in pairs):
            mine = [p for p in pairs if p.family == family]
            raw = [welch(p.a, p.b, threshold=threshold, bound=bound) for p in mine]
            for p, c in zip(mine, decide(raw, settings.alpha, settings.power), strict=True):
                rows.append(_row(cid, p, c, settings.min_seeds))
    return pd.DataFrame(rows, columns=COLUMNS)


def _row(cid: str, p: _Pair, c: Comparison, min_seeds: int) -> dict[str, Any]:
    d = asdict(c)
    return {
        "claim": cid,
        "family": p.family,
        "beta": p.beta,
        "defense": p.defense,
        "contrast": p.contrast,
        "seeds": c.seeds,
        **{k: d[k] for k in ("estimate", "ci_low", "ci_high", "threshold")},
        **{k: d[k] for k in ("p_for_adj", "p_against_adj", "p_equivalent_adj", "outcome")},
        # fewer seeds than the rule asks for: shown, not yet the pre-specified test
        "provisional": min(c.n_a, c.n_b) < min_seeds,
        "detectable": c.detectable,
        "collapse_a": str(p.collapse_a),
        "collapse_b": str(p.collapse_b),
        "collapse_p": collapse_difference(p.collapse_a, p.collapse_b),
    }


def split_cells(df: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The cells whose seeds split (docs/claims.md): among the first ``min_seeds`` seeds,
    some collapsed and some did not, or their accuracy spans more than ``split_range``
    points. Only cells with all of those seeds are judged; the rule never reads later
    seeds, so adding seeds cannot call for more."""
    keys = ["beta", "defense", "attack", "strength"]
    first = df[df["seed"] < settings.min_seeds].copy()
    first["_collapsed"] = _collapsed(first, settings)
    first["_acc"] = 100.0 * first[settings.metric].astype(float)
    rows = []
    for key, cell in first.groupby(keys, dropna=False):
        if cell["seed"].nunique() < settings.min_seeds:
            continue
        span = float(cell["_acc"].max() - cell["_acc"].min())
        mixed = 0 < int(cell["_collapsed"].sum()) < len(cell)
        if mixed or span > settings.split_range:
            rows.append({**dict(zip(keys, key, strict=True)), "span": span, "mixed": mixed})
    return pd.DataFrame(rows, columns=[*keys, "span", "mixed"])


def fmt(x: float, digits: int = 1) -> str:
    """A number for a table (``–`` for nan)."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def aggregate_shift(df: pd.DataFrame, claim: dict[str, Any]) -> pd.DataFrame:
    """How far the defense's output sits from the honest clients' mean, per β, defense and
    single-strength contrast: the mean over seeds of the records' ``diag_rel_err``
    (‖aggregate − honest mean‖ / ‖honest mean‖ averaged over training). A description of
    what "undetected" can mean for C1, not a test."""
    rows = []
    betas = [str(claim["beta"]), str(claim["reference_beta"])]
    for defense in claim["defenses"]:
        for con in claim["contrasts"]:
            if len(con["strengths"]) != 1:
                continue
            row: dict[str, Any] = {"defense": defense, "contrast": con["label"]}
            for beta in betas:
                for name, attack, strength in (
                    ("none", "none", None),
                    ("attack", con["attack"], con["strengths"][0]),
                ):
                    cell = _runs(df, beta, defense, attack, strength)
                    row[f"{name} {beta}"] = float(cell["diag_rel_err"].mean())
            rows.append(row)
    return pd.DataFrame(rows)


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def split_slices(split: pd.DataFrame, settings: Settings) -> list[dict[str, Any]]:
    """``config.yaml`` slices that give the cells of :func:`split_cells` their extra seeds
    (``min_seeds`` .. ``split_seeds_to`` − 1), one slice per β and defense."""
    out = []
    for (beta, defense), cells in split.groupby(["beta", "defense"], sort=False):
        attacks = []
        for attack, rows in cells.groupby("attack", sort=False):
            strengths = sorted(_number(s) for s in rows["strength"].dropna())
            # a cell without a strength is the attack's default (or no attack at all)
            if rows["strength"].isna().any() or not strengths:
                attacks.append({"name": attack})
            if strengths:
                attacks.append({"name": attack, "strengths": strengths})
        out.append(
            {
                "name": f"split-{beta}-{defense}",
                "betas": [beta if beta == "iid" else _number(float(beta))],
                "defenses": [defense],
                "seeds": list(range(settings.min_seeds, settings.split_seeds_to)),
                "attacks": attacks,
            }
        )
    return out


def paired_companions(
    split: pd.DataFrame, claims: dict[str, dict[str, Any]], study: str
) -> pd.DataFrame:
    """``split`` with the cells its extra seeds must pair with: C1 (``heterogeneity_effect``)
    pairs each seed's attacked runs with the same seed's no-attack run and needs every
    strength of a contrast, so where a cell it uses splits, the same β and defense's
    no-attack cell and every strength of the contrasts of that attack get the seeds too."""
    keys = ["beta", "defense", "attack", "strength"]
    rows = split[keys].to_dict("records")
    for claim in claims.values():
        if claim["study"] != study or claim["estimand"] != "heterogeneity_effect":
            continue
        betas = {str(claim["beta"]), str(claim["reference_beta"])}
        for cell in split[keys].to_dict("records"):
            if str(cell["beta"]) not in betas or cell["defense"] not in claim["defenses"]:
                continue
            cons = [c for c in claim["contrasts"] if c["attack"] == cell["attack"]]
            if not any(np.isclose(cell["strength"], x) for c in cons for x in c["strengths"]):
                continue
            rows.append({**cell, "attack": "none", "strength": np.nan})
            for x in sorted({float(x) for c in cons for x in c["strengths"]}):
                rows.append({**cell, "strength": x})
    out = pd.DataFrame(rows, columns=keys)
    return out.drop_duplicates().reset_index(drop=True)
