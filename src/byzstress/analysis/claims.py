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

from .compare import (
    Comparison,
    Rate,
    collapse_difference,
    collapsed,
    decide,
    holm,
    rate,
    welch,
)

__all__ = [
    "Cell",
    "Settings",
    "aggregate_shift",
    "evaluate",
    "fmt",
    "load",
    "paired_companions",
    "read_runs",
    "record_keys",
    "records_read",
    "seeds_required",
    "split_cells",
    "split_slices",
    "used_cells",
    "without_seen",
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
    return collapsed(df["status"], df["final_acc"], settings.collapse_final_acc)


def _paper_model(df: pd.DataFrame) -> pd.Series:
    """The runs of the paper's threat model: an omniscient attacker, no method variant."""
    sel = pd.Series(True, index=df.index)
    if "knowledge" in df:
        sel &= df["knowledge"].fillna("omniscient") == "omniscient"
    if "variant" in df:
        sel &= df["variant"].isna()
    return sel


def _runs(
    df: pd.DataFrame, beta: str, defense: str, attack: str, strength: float | None
) -> pd.DataFrame:
    """One cell's runs, one row per seed (the paper's threat model: omniscient, no variant)."""
    sel = (df["beta"] == beta) & (df["defense"] == defense) & (df["attack"] == attack)
    sel &= _paper_model(df)
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


#: one cell of a study: (β, defense, attack, strength or None)
Cell = tuple[str, str, str, float | None]


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
    #: the cells (β, defense, attack, strength) either side reads, and whether a cell of
    #: side a / side b splits (:func:`split_cells`), which raises the seeds that side needs
    cells: tuple[Cell, ...]
    split_a: bool
    split_b: bool


def _strength_text(x: float | None) -> str:
    """A strength as records and cells are matched on: ``:g`` text, empty when unset."""
    return "" if x is None or pd.isna(x) else f"{float(x):g}"


def _key(beta: str, defense: str, attack: str, strength: float | None) -> Cell:
    text = _strength_text(strength)
    return (str(beta), defense, attack, float(text) if text else None)


def _splits(cell: pd.DataFrame, settings: Settings) -> dict[str, Any] | None:
    """The split rule on one cell's runs (indexed by seed): among its first ``min_seeds``
    seeds, some collapsed and some did not, or their accuracy spans more than
    ``split_range`` points. None where the cell does not split or lacks one of those seeds
    (the rule never reads later seeds, so adding seeds cannot call for more)."""
    first = cell[cell.index < settings.min_seeds]
    if first.index.nunique() < settings.min_seeds:
        return None
    acc = _points(first, settings.metric)
    span = float(acc.max() - acc.min())
    gone = int(_collapsed(first, settings).sum())
    mixed = 0 < gone < len(first)
    return {"span": span, "mixed": mixed} if mixed or span > settings.split_range else None


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
            drops, attacked, used, split = {}, {}, [], {}
            for beta in (str(claim["beta"]), str(claim["reference_beta"])):
                base_cell = _runs(df, beta, defense, "none", None)
                base = _points(base_cell, s.metric)
                cells = [_runs(df, beta, defense, con["attack"], x) for x in con["strengths"]]
                used += [_key(beta, defense, "none", None)]
                used += [_key(beta, defense, con["attack"], x) for x in con["strengths"]]
                split[beta] = any(_splits(c, s) is not None for c in [base_cell, *cells])
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
                    tuple(used),
                    split[b1],
                    split[b0],
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
                used = (_key(beta, defense, *a_of(con)), _key(beta, defense, *b_of(con)))
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
                        used,
                        _splits(ca, s) is not None,
                        _splits(cb, s) is not None,
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
    "split",
    "detectable",
    "collapse_a",
    "collapse_b",
    "collapse_p",
    "collapse_p_adj",
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
            family_rows = [
                _row(cid, p, c, settings)
                for p, c in zip(mine, decide(raw, settings.alpha, settings.power), strict=True)
            ]
            # the collapse comparisons are a family of their own, Holm-adjusted like the rest
            fisher = [r["collapse_p"] for r in family_rows]
            for r, adj in zip(family_rows, holm(fisher, settings.alpha), strict=True):
                r["collapse_p_adj"] = math.nan if math.isnan(r["collapse_p"]) else float(adj)
            rows += family_rows
    return pd.DataFrame(rows, columns=COLUMNS)


def seeds_required(split: bool, settings: Settings) -> int:
    """The seeds the rule asks of one side of a comparison: ``min_seeds``, or
    ``split_seeds_to`` where a cell that side reads splits (docs/claims.md, "Seeds")."""
    return settings.split_seeds_to if split else settings.min_seeds


def _row(cid: str, p: _Pair, c: Comparison, settings: Settings) -> dict[str, Any]:
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
        "provisional": c.n_a < seeds_required(p.split_a, settings)
        or c.n_b < seeds_required(p.split_b, settings),
        "split": " v ".join("split" if x else "–" for x in (p.split_a, p.split_b)),
        "detectable": c.detectable,
        "collapse_a": str(p.collapse_a),
        "collapse_b": str(p.collapse_b),
        "collapse_p": collapse_difference(p.collapse_a, p.collapse_b),
    }


def used_cells(
    df: pd.DataFrame, claims: dict[str, dict[str, Any]], study: str, settings: Settings
) -> set[Cell]:
    """The cells of ``study`` that the estimands of ``claims`` read."""
    out: set[Cell] = set()
    for claim in claims.values():
        if claim["study"] == study:
            pairs = ESTIMANDS[claim["estimand"]](df, claim, settings)
            out.update(cell for p in pairs for cell in p.cells)
    return out


def split_cells(
    df: pd.DataFrame, settings: Settings, cells: set[Cell] | None = None
) -> pd.DataFrame:
    """The cells whose seeds split (:func:`_splits`, docs/claims.md), among ``cells`` (every
    cell of ``df`` when None; :func:`used_cells` gives those an estimand reads)."""
    keys = ["beta", "defense", "attack", "strength"]
    rows = []
    for key, cell in df[_paper_model(df)].groupby(keys, dropna=False):
        beta, defense, attack, strength = key
        strength = None if pd.isna(strength) else float(strength)
        if cells is not None and _key(beta, defense, attack, strength) not in cells:
            continue
        if cell["seed"].duplicated().any():
            raise ClaimsError(f"{key}: a seed appears twice in the records")
        got = _splits(cell.set_index("seed"), settings)
        if got is not None:
            rows.append({**dict(zip(keys, key, strict=True)), **got})
    return pd.DataFrame(rows, columns=[*keys, "span", "mixed"])


def record_keys(df: pd.DataFrame) -> pd.Series:
    """Each record's (β, defense, attack, strength, seed): what names a run of a study in
    the paper's threat model, as text (an unset strength is empty)."""
    strength = df["strength"].map(_strength_text)
    return (
        df["beta"].astype(str)
        + "|" + df["defense"] + "|" + df["attack"] + "|" + strength
        + "|" + df["seed"].astype(int).astype(str)
    )  # fmt: skip


def records_read(df: pd.DataFrame, cells: Iterable[Cell]) -> int:
    """How many of ``df``'s records the ``cells`` (:func:`used_cells`) hold."""
    return sum(len(_runs(df, *cell)) for cell in cells)


def without_seen(df: pd.DataFrame, seen: pd.DataFrame) -> pd.DataFrame:
    """``df`` without the records of the paper's threat model that ``seen`` names
    (:func:`record_keys`): the records trained after a rule was written, where ``seen``
    lists those published before it."""
    return df[~(_paper_model(df) & record_keys(df).isin(set(record_keys(seen))))]


def fmt(x: float, digits: int = 1) -> str:
    """A number for a table (``–`` for nan)."""
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def aggregate_shift(df: pd.DataFrame, claim: dict[str, Any]) -> pd.DataFrame:
    """How far the defense's output sits from the honest clients' mean, per β, defense and
    single-strength contrast: the mean over seeds of the records' ``diag_rel_err``
    (‖aggregate − honest mean‖ / ‖honest mean‖ averaged over training), and per β the
    attack's excess over no attack (``excess``, with its 95 % Welch interval
    ``excess_low``/``excess_high``): heterogeneity moves the output without an attack too,
    so the excess is what the attack adds. A description of what "undetected" can mean for
    C1, not a test."""
    rows = []
    betas = [str(claim["beta"]), str(claim["reference_beta"])]
    for defense in claim["defenses"]:
        for con in claim["contrasts"]:
            if len(con["strengths"]) != 1:
                continue
            row: dict[str, Any] = {"defense": defense, "contrast": con["label"]}
            values: dict[str, list[float]] = {}
            for beta in betas:
                for name, attack, strength in (
                    ("none", "none", None),
                    ("attack", con["attack"], con["strengths"][0]),
                ):
                    cell = _runs(df, beta, defense, attack, strength)
                    row[f"{name} {beta}"] = float(cell["diag_rel_err"].mean())
                    values[name] = cell["diag_rel_err"].astype(float).tolist()
                excess = welch(values["attack"], values["none"], bound=None)
                row[f"excess {beta}"] = excess.estimate
                row[f"excess_low {beta}"] = excess.ci_low
                row[f"excess_high {beta}"] = excess.ci_high
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
