"""Is an attack detected? Figure 1's claim, measured from the diagnostics every run records.

The seed paper's first claim is that under heterogeneity ALIE and IPM can use far larger
strengths than the IID literature assumed "and still go undetected". Accuracy alone cannot
tell an attack the defense filtered out from one it let through and that did no harm, so
two quantities from each run's diagnostics (:func:`byzstress.training.diagnostics`, means
over the run's evaluations) measure detection:

``kept``
    ``rule_byz_share / (f/n)``: the share of the defense's output the Byzantine vectors
    carry (traced through the pre-aggregators: bucketing, NNM), relative to their share of
    the inputs. 1: the defense treats them like any input; 0: it removes them.
``shift``
    ``rel_err − rel_err(no attack)`` with ``rel_err = ‖agg − μ_h‖ / ‖μ_h‖``: how much further
    from the honest mean the attack moves the aggregate than heterogeneity alone does (the
    no-attack run of the same β, defense and seed; its f "Byzantine" clients send their own
    honest momenta).

An attack is **detected** when ``kept < 0.5`` (:data:`KEPT_THRESHOLD`): the defense gives
the Byzantine vectors less than half of their share. This is the selection view of
detection that Baruch et al. (2019, "A little is enough") use when they count how often
Krum or Bulyan select the attackers' vectors, generalised to rules that weight rather than
select. The threshold is a choice, written in ``docs/threat-model.md``; ``kept`` is in every
table so that a reader can apply another.

Claim 1, in these terms: the most damaging strength, and the largest strength that stays
undetected, grow as β falls (IID → 0.5 → 0.1), beyond the IID-calibrated defaults
(Karimireddy's and Baruch's z, IPM ε = 0.1). One seed per strength cannot name "the" most
damaging strength when its neighbours are within seed noise, so it is decided on ranges
(:func:`heterogeneity_claim`; ``docs/threat-model.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .reporting import (
    METRIC_TEXT,
    NO_ATTACK,
    _order,
    _save_fig,
    _write_csv,
    _write_text,
    read_tidy,
    same_training,
    strength_grid,
)
from .verdicts import UNDECIDED

__all__ = [
    "CENSORED",
    "KEPT_THRESHOLD",
    "complete_betas",
    "decisive_cells",
    "decisive_slices",
    "detection",
    "heterogeneity_claim",
    "reference_noise",
    "strength_table",
]

KEPT_THRESHOLD = 0.5
SWEPT = ("ALIE", "IPM")


def _beta_order(betas: list[str]) -> list[str]:
    """IID first, then β from mild to severe heterogeneity (large to small)."""
    num = sorted((b for b in betas if b != "iid"), key=float, reverse=True)
    return (["iid"] if "iid" in betas else []) + num


def detection(df: pd.DataFrame) -> pd.DataFrame:
    """Per run: ``kept``, ``shift`` and ``detected`` (``None`` for the no-attack runs)."""
    d = df.copy()
    d["kept"] = d["diag_rule_byz_share"].astype(float) / (d["f"] / d["n"])
    base = d[d["attack_name"] == NO_ATTACK].set_index(["beta", "variant", "defense", "seed"])
    key = list(zip(d["beta"], d["variant"], d["defense"], d["seed"], strict=True))
    ref = [base["diag_rel_err"].get(k, math.nan) if k in base.index else math.nan for k in key]
    d["shift"] = d["diag_rel_err"].astype(float) - np.asarray(ref, dtype=float)
    d["detected"] = [
        None if a == NO_ATTACK or math.isnan(k) else bool(k < KEPT_THRESHOLD)
        for a, k in zip(d["attack_name"], d["kept"], strict=True)
    ]
    return d


def strength_table(df: pd.DataFrame, metric: str = "max_acc") -> pd.DataFrame:
    """Per (β, defense, attack, strength): accuracy (%), ``kept`` and ``shift`` averaged
    over seeds, the seeds, and ``detected`` (mean ``kept`` below the threshold)."""
    d = detection(df)
    d = d[d["attack_name"].isin(SWEPT) & (d["strength"] != "auto")]
    d = d.assign(acc=d[metric].astype(float) * 100)
    keys = ["beta", "variant", "defense", "attack_name", "strength_value", "attack_label"]
    g = d.groupby(keys, sort=False)
    t = g.agg(
        acc=("acc", "mean"),
        acc_std=("acc", lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else math.nan),
        seeds=("acc", "size"),
        kept=("kept", "mean"),
        shift=("shift", "mean"),
    ).reset_index()
    t["detected"] = t["kept"] < KEPT_THRESHOLD
    return t.sort_values(["beta", "defense", "attack_name", "strength_value"]).reset_index(
        drop=True
    )


def _noise(
    t: pd.DataFrame, clean: pd.DataFrame, reference: Mapping[tuple[str, str, str], float]
) -> dict[tuple[str, str, str], float]:
    """(β, defense, attack) -> the std over seeds (points) a one-seed comparison of that
    panel's strengths is taken against: the largest of its own cells' stds (two or more
    seeds), the no-attack cell's at that β and defense, and ``reference``'s."""
    out: dict[tuple[str, str, str], float] = {}
    base = clean.groupby(["beta", "defense"])["acc"].agg(
        lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    )
    for (beta, defense, attack), g in t.groupby(["beta", "defense", "attack_name"], sort=False):
        own = g.loc[g["seeds"] >= 2, "acc_std"].max()  # NaN where no cell has 2 seeds
        out[(beta, defense, attack)] = float(
            np.nanmax(
                [
                    0.0,
                    own,
                    base.get((beta, defense), 0.0),
                    reference.get((beta, defense, attack), 0.0),
                ]
            )
        )
    return out


CENSORED = f"{UNDECIDED[:-1]}; the grid's end)"


def _grows(lo_a: float, hi_a: float, lo_b: float, hi_b: float, top: float) -> str | None:
    """Does the range [lo_b, hi_b] lie above [lo_a, hi_a]? ``holds`` when all of it does,
    ``fails`` when none of it can (hi_b ≤ lo_a) and hi_b is below the grid's ``top`` (a
    range reaching the top may go on beyond it); else undecided, :data:`CENSORED` when the
    grid's end is why."""
    if any(math.isnan(x) for x in (lo_a, hi_a, lo_b, hi_b)):
        return None
    if lo_b > hi_a:
        return "holds"
    if hi_b <= lo_a:
        return "fails" if hi_b < top else CENSORED
    return CENSORED if hi_a >= top else UNDECIDED


def _more(a: float, b: float, margin: float) -> str | None:
    """Is ``b`` larger than ``a``? ``holds`` beyond ``margin``, ``fails`` when smaller by
    more than it, else undecided (within seed noise)."""
    if any(math.isnan(x) for x in (a, b, margin)):
        return None
    if b - a > margin:
        return "holds"
    if a - b > margin:
        return "fails"
    return UNDECIDED


def complete_betas(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The runs of the β whose strength grid is complete for every defense and attack (as
    many strengths, and as many panels, as the fullest β has), and the β left out: a
    partial grid has no most damaging strength yet."""
    att = df[df["attack_name"].isin(SWEPT)]
    if att.empty:
        return df, []
    n = att.groupby(["beta", "defense", "attack_name"])["strength_value"].nunique()
    full = n.groupby(level=[1, 2]).transform("max")
    done = n.eq(full).groupby(level=0).all()
    pairs = att.drop_duplicates(["beta", "defense", "attack_name"]).groupby("beta").size()
    keep = [b for b in done.index if done[b] and pairs[b] == pairs.max()]
    return df[df["beta"].isin(keep)], sorted(set(df["beta"]) - set(keep))


def heterogeneity_claim(
    df: pd.DataFrame,
    metric: str = "max_acc",
    reference: Mapping[tuple[str, str, str], float] | None = None,
    k: float = 2.0,
    min_points: float = 1.0,
) -> pd.DataFrame:
    """Per (defense, attack) and β: the most damaging strength and its accuracy, the
    strengths within seed noise of it, the largest strength that stays undetected, the
    accuracy at the IID-calibrated default, and whether claim 1 holds for the pair.

    Seed noise: ``margin = max(min_points, k · s)`` with ``s`` from :func:`_noise`
    (``reference``: (β, defense, attack) -> std from another study). The *damaging range*
    is every strength whose accuracy is within the margin of the lowest. Claim 1, per
    (defense, attack), compares IID with the most heterogeneous β (the β between are
    shown): ``damaging_grows`` holds when the whole damaging range there lies above IID's,
    fails when none of it can (its top at or below IID's bottom, and below the grid's
    largest strength), and is undecided otherwise (:data:`CENSORED` where a range reaches
    the grid's largest strength, beyond which the grid cannot see); ``undetected_grows``
    does the same with the largest undetected strength. ``damage_grows`` asks what the
    paper's premise does: is the attack's damage, the drop of its most damaging strength
    below the same β's no-attack accuracy (``drop_at_most_damaging``, so that a defense's
    own cost of heterogeneity is not counted), larger there than under IID by more than
    the larger of the two margins? It speaks of the grid's strengths only: where IID's
    damaging range reaches the grid's top, a larger strength might do more damage under IID
    too. ``provisional``: a cell of either damaging range has
    fewer than 3 seeds; ``damage_provisional``: a most damaging cell has."""
    reference = reference or {}
    t = strength_table(df, metric)
    clean = df[df["attack_name"] == NO_ATTACK].assign(acc=lambda x: x[metric].astype(float) * 100)
    clean_acc = clean.groupby(["beta", "defense"])["acc"].mean()
    noise = _noise(t, clean, reference)
    rows: list[dict[str, Any]] = []
    for (defense, attack), grp in t.groupby(["defense", "attack_name"], sort=False):
        per_beta = []
        for beta in _beta_order(_order(grp["beta"])):
            b = grp[grp["beta"] == beta]
            worst = b.loc[b["acc"].idxmin()]
            s = noise[(beta, defense, attack)]
            margin = max(min_points, k * s)
            near = b[b["acc"] <= worst["acc"] + margin]
            undetected = b[~b["detected"]]
            # the IID-calibrated default: ALIE without a strength (its default z), IPM 0.1
            is_default = b["attack_label"].str.contains("default") | np.isclose(
                b["strength_value"], 0.1
            )
            default = b[is_default].iloc[0] if is_default.any() else b.iloc[0]
            per_beta.append(
                {
                    "defense": defense,
                    "attack": attack,
                    "beta": beta,
                    "no_attack_acc": clean_acc.get((beta, defense), math.nan),
                    "iid_default_strength": default["strength_value"],
                    "acc_at_iid_default": default["acc"],
                    "most_damaging_strength": worst["strength_value"],
                    "acc_at_most_damaging": worst["acc"],
                    "drop_at_most_damaging": clean_acc.get((beta, defense), math.nan)
                    - worst["acc"],
                    "seeds_at_most_damaging": int(worst["seeds"]),
                    "noise_std": s,
                    "margin": margin,
                    "damaging_lo": near["strength_value"].min(),
                    "damaging_hi": near["strength_value"].max(),
                    "min_seeds_in_range": int(near["seeds"].min()),
                    "largest_undetected_strength": undetected["strength_value"].max()
                    if len(undetected)
                    else math.nan,
                    "seeds_at_largest_undetected": int(
                        undetected.loc[undetected["strength_value"].idxmax(), "seeds"]
                    )
                    if len(undetected)
                    else 0,
                    "strengths": len(b),
                }
            )
        first, last = per_beta[0], per_beta[-1]
        damaging = undetected_v = None
        top = float(grp["strength_value"].max())
        if len(per_beta) >= 2 and first["beta"] == "iid":
            damaging = _grows(
                first["damaging_lo"],
                first["damaging_hi"],
                last["damaging_lo"],
                last["damaging_hi"],
                top,
            )
            u0, u1 = first["largest_undetected_strength"], last["largest_undetected_strength"]
            if not (math.isnan(u0) or math.isnan(u1)):
                undetected_v = _grows(u0, u0, u1, u1, top)
        provisional = min(first["min_seeds_in_range"], last["min_seeds_in_range"]) < 3
        damage = None
        if len(per_beta) >= 2 and first["beta"] == "iid":
            damage = _more(
                first["drop_at_most_damaging"],
                last["drop_at_most_damaging"],
                max(first["margin"], last["margin"]),
            )
        for r in per_beta:
            r["damaging_grows"] = damaging
            r["damage_grows"] = damage
            r["damage_provisional"] = (
                min(first["seeds_at_most_damaging"], last["seeds_at_most_damaging"]) < 3
            )
            r["undetected_grows"] = undetected_v
            r["provisional"] = provisional
            r["undetected_provisional"] = (
                min(first["seeds_at_largest_undetected"], last["seeds_at_largest_undetected"]) < 3
            )
            rows.append(r)
    return pd.DataFrame(rows)


def decisive_cells(
    df: pd.DataFrame,
    metric: str = "max_acc",
    reference: Mapping[tuple[str, str, str], float] | None = None,
) -> dict[tuple[str, str, str], list]:
    """The cells a claim-1 verdict turns on, for more seeds, as ``{(beta, defense, attack):
    [strength, ...]}`` (strengths as the grid spells them: ``None`` for ALIE's default z).
    Per (β, defense, attack): the most damaging strength and its neighbours on the grid;
    at the β that :func:`heterogeneity_claim` compares (IID and the most heterogeneous),
    also every strength of the damaging range and the largest undetected strength, since
    a verdict stays provisional while any of those has fewer than 3 seeds."""
    t = strength_table(df, metric)
    claim = heterogeneity_claim(df, metric, reference).set_index(["beta", "defense", "attack"])
    compared = {}  # (defense, attack) -> the two β its verdicts compare
    for pair, g in claim.groupby(level=["defense", "attack"], sort=False):
        order = _beta_order(list(g.index.get_level_values("beta")))
        compared[pair] = {order[0], order[-1]}
    out: dict[tuple[str, str, str], list] = {}
    for (beta, defense, attack), grp in t.groupby(["beta", "defense", "attack_name"], sort=False):
        grp = grp.sort_values("strength_value").reset_index(drop=True)
        i = int(grp["acc"].idxmin())
        picked = set(range(max(0, i - 1), min(len(grp), i + 2)))
        if beta in compared.get((defense, attack), set()):
            r = claim.loc[(beta, defense, attack)]
            v = grp["strength_value"]
            picked |= set(grp.index[(v >= r["damaging_lo"]) & (v <= r["damaging_hi"])])
            picked |= set(grp.index[np.isclose(v, r["largest_undetected_strength"])])
        rows = grp.loc[sorted(picked)]
        out[(beta, defense, attack)] = [
            None if "default" in label else float(v)
            for v, label in zip(rows["strength_value"], rows["attack_label"], strict=True)
        ]
    return out


def decisive_slices(cells: dict[tuple[str, str, str], list], seeds: list[int]) -> list[dict]:
    """``config.yaml`` slices that add ``seeds`` to :func:`decisive_cells`' cells: one slice
    per (β, defense), its attacks the strengths picked there. The β that claim 1 compares
    (IID and the most heterogeneous, :func:`heterogeneity_claim`) come first, a defense's
    two slices together, then the β between: a sitting stopped early has completed whole
    (defense, attack) verdicts rather than one side of many."""
    order = _beta_order(list(dict.fromkeys(b for b, _, _ in cells)))
    compared = {order[0], order[-1]} if order else set()
    defenses = list(dict.fromkeys(d for _, d, _ in cells))

    def priority(pair: tuple[str, str]) -> tuple[int, int, int]:
        b, d = order.index(pair[0]), defenses.index(pair[1])
        return (0, d, b) if pair[0] in compared else (1, b, d)

    slices = []
    for beta, defense in sorted(dict.fromkeys((b, d) for b, d, _ in cells), key=priority):
        attacks = []
        for (b, d, attack), strengths in cells.items():
            if (b, d) == (beta, defense):
                # spelled as in config.yaml: 8, not 8.0 (the same run, the same flags)
                grid = [
                    "default" if s is None else int(s) if float(s).is_integer() else s
                    for s in strengths
                ]
                attacks.append({"name": attack.lower(), "strengths": grid})
        slices.append(
            {
                "name": f"decisive-{beta}-{defense}",
                "betas": [beta if beta == "iid" else float(beta)],
                "defenses": [defense],
                "seeds": list(seeds),
                "attacks": attacks,
            }
        )
    return slices


def _g(x: float) -> str:
    # three significant digits, as the IID default's column: ALIE's default z is 0.157
    return "–" if pd.isna(x) else f"{x:.3g}"


def reference_noise(
    ref: pd.DataFrame, like: pd.DataFrame | None = None, metric: str = "max_acc"
) -> dict[tuple[str, str, str], float]:
    """(β, defense, attack) -> the largest std over seeds (points) of ``ref``'s cells of
    that attack with two or more seeds, omniscient, trained as the runs ``like`` are
    (:func:`byzstress.reporting.same_training`; without ``like``, ``ref``'s cells without a
    ``variant``): the seed noise another study measured for one-seed cells."""
    d = same_training(ref, like) if like is not None else ref[ref["variant"] == ""]
    d = d[d["knowledge"] == "omniscient"]
    d = d[d["attack_name"].isin(SWEPT)].assign(acc=lambda x: x[metric].astype(float) * 100)
    g = d.groupby(["beta", "defense", "attack_name", "attack_label"])["acc"]
    sd = g.std(ddof=1)[g.size() >= 2]
    return {
        (str(b), str(dfn), str(a)): float(v)
        for (b, dfn, a), v in sd.groupby(level=[0, 1, 2]).max().items()
    }


def verdict_text(v: Any, provisional: bool) -> str:
    """A claim verdict as the tables print it: ``untested`` where there is none, marked
    ``provisional`` where a deciding cell has fewer than 3 seeds."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "untested"
    return f"{v}, provisional" if provisional else str(v)


def claim_markdown(c: pd.DataFrame, metric: str = "max_acc") -> str:
    lines = [
        "| Defense | Attack | β | no attack | IID default (acc) | most damaging (acc, seeds) "
        "| within noise of it (margin) | largest undetected | damaging grows as β falls "
        "| undetected grows as β falls | drop below no attack | damage grows as β falls "
        "(over the grid) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    for _, r in c.iterrows():
        lines.append(
            f"| {r['defense']} | {r['attack']} | {r['beta']} | {r['no_attack_acc']:.1f} | "
            f"{r['iid_default_strength']:.3g} ({r['acc_at_iid_default']:.1f}) | "
            f"{_g(r['most_damaging_strength'])} ({r['acc_at_most_damaging']:.1f}, "
            f"{r['seeds_at_most_damaging']}) | {_g(r['damaging_lo'])}–{_g(r['damaging_hi'])} "
            f"(±{r['margin']:.1f}) | {_g(r['largest_undetected_strength'])} | "
            f"{verdict_text(r['damaging_grows'], r['provisional'])} | "
            f"{verdict_text(r['undetected_grows'], r['undetected_provisional'])} | "
            f"{r['drop_at_most_damaging']:.1f} | "
            f"{verdict_text(r['damage_grows'], r['damage_provisional'])} |"
        )
    lines += [
        "",
        f"Accuracy (%): {METRIC_TEXT.get(metric, metric)}, mean over seeds. Within noise: "
        "the strengths whose accuracy is within the margin max(1, 2 s) of the lowest, s the "
        "largest seed std of the panel's cells, its no-attack cell and the reference study. "
        f"Undetected: the Byzantine vectors keep at least {KEPT_THRESHOLD:g} of their share "
        "f/n of the defense's output (`kept`, docs/threat-model.md). 'grows' compares the "
        "most heterogeneous β with IID: holds when the whole within-noise range lies above "
        "IID's, fails when none of it can; 'the grid's end': a range reaches the largest "
        "strength of the grid, beyond which it cannot see. Drop: the no-attack accuracy "
        "minus the most damaging strength's; 'damage grows' holds when the drop at the most "
        "heterogeneous β exceeds IID's by more than the larger margin, fails when it is "
        "smaller by more; it compares the grid's strengths only (beyond the grid's top IID "
        "might lose more). Provisional: a deciding cell has fewer than 3 seeds.",
    ]
    return "\n".join(lines) + "\n"


def detection_figure(t: pd.DataFrame):
    """``kept`` against strength (log axis), a line per defense, a panel per β and attack;
    dashed: the detection threshold."""
    import matplotlib

    matplotlib.use("Agg")

    g = strength_grid(t, "strength_value", "kept", _beta_order(_order(t["beta"])))
    for ax in g.axes.flat:
        ax.axhline(KEPT_THRESHOLD, ls="--", lw=1, color="grey")
    g.set_axis_labels("attack strength (ALIE z, IPM ε)", "Byzantine share kept / (f/n)")
    g.figure.suptitle(
        f"Detection: below the dashed line ({KEPT_THRESHOLD:g}) the defense removes the attack",
        y=1.02,
    )
    return g.figure


def detection_cmd(csv: Path, prefix: Path, metric: str, noise_from: Path | None = None) -> None:
    """Write ``PREFIX.{csv,md,png,pdf}`` (per strength) and ``PREFIX-claim.{csv,md}``;
    ``noise_from``: a runs.csv whose multi-seed cells give :func:`reference_noise`."""
    df = read_tidy(csv)
    ref = reference_noise(read_tidy(noise_from), df, metric) if noise_from else None
    t = strength_table(df, metric)
    _write_csv(Path(f"{prefix}.csv"), t)
    lines = [
        "| β | Defense | Attack | strength | acc (%) | seeds | kept | shift | detected |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in t.iterrows():
        lines.append(
            f"| {r['beta']} | {r['defense']} | {r['attack_name']} | {r['strength_value']:.3g} | "
            f"{r['acc']:.1f} | {r['seeds']} | {r['kept']:.3f} | {r['shift']:+.3f} | "
            f"{'yes' if r['detected'] else 'no'} |"
        )
    _write_text(Path(f"{prefix}.md"), "\n".join(lines) + "\n")
    _save_fig(detection_figure(t), [Path(f"{prefix}.png"), Path(f"{prefix}.pdf")])
    complete, _ = complete_betas(df)
    c = heterogeneity_claim(complete, metric, reference=ref)
    _write_csv(Path(f"{prefix}-claim.csv"), c)
    _write_text(Path(f"{prefix}-claim.md"), claim_markdown(c, metric))
