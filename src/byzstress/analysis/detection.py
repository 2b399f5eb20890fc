"""Is an attack detected? Per strength, from the diagnostics every run records.

The seed paper says that under heterogeneity stronger perturbations "go undetected".
Accuracy alone cannot tell an attack the defense filtered out from one it let through and
that did no harm, so two quantities from each run's diagnostics
(:func:`byzstress.sim.training.diagnostics`, means over the run's evaluations) describe what
the defense did with the Byzantine vectors:

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

These tables describe; they decide nothing. The paper's first claim (heterogeneity lets
ALIE and IPM apply stronger perturbations) is decided by ``byzstress claims``
(:mod:`byzstress.analysis.claims`, estimand ``heterogeneity_effect``, docs/claims.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .labels import NO_ATTACK
from .outputs import save_figure, write_csv, write_text
from .reporting import METRIC_TEXT, in_order, read_tidy, strength_grid

__all__ = [
    "KEPT_THRESHOLD",
    "detection",
    "detection_cmd",
    "detection_markdown",
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


def detection_figure(t: pd.DataFrame):
    """``kept`` against strength (log axis), a line per defense, a panel per β and attack;
    dashed: the detection threshold."""
    import matplotlib

    matplotlib.use("Agg")

    g = strength_grid(t, "strength_value", "kept", _beta_order(in_order(t["beta"])))
    for ax in g.axes.flat:
        ax.axhline(KEPT_THRESHOLD, ls="--", lw=1, color="grey")
    g.set_axis_labels("attack strength (ALIE z, IPM ε)", "Byzantine share kept / (f/n)")
    g.figure.suptitle(
        f"Detection: below the dashed line ({KEPT_THRESHOLD:g}) the defense removes the attack",
        y=1.02,
    )
    return g.figure


def detection_markdown(t: pd.DataFrame, metric: str = "max_acc") -> str:
    """:func:`strength_table` as markdown, with what its columns mean."""
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
    lines += [
        "",
        f"acc: {METRIC_TEXT.get(metric, metric)}, mean over seeds. kept: the Byzantine "
        "vectors' share of the defense's output over their share f/n of its inputs; shift: "
        "‖agg − μ_h‖/‖μ_h‖ minus the same seed's no-attack value; both means over each run's "
        f"evaluations, then over seeds. Detected: kept < {KEPT_THRESHOLD:g} "
        "(docs/threat-model.md). A description, not a test: claim 1 is decided by "
        "`byzstress claims` (docs/claims-results.md).",
    ]
    return "\n".join(lines) + "\n"


def detection_cmd(csv: Path, prefix: Path, metric: str) -> None:
    """Write ``PREFIX.{csv,md,png,pdf}``: accuracy, ``kept``, ``shift`` and ``detected`` per
    β, defense, attack and strength."""
    df = read_tidy(csv)
    t = strength_table(df, metric)
    write_csv(Path(f"{prefix}.csv"), t)
    write_text(Path(f"{prefix}.md"), detection_markdown(t, metric))
    save_figure(detection_figure(t), [Path(f"{prefix}.png"), Path(f"{prefix}.pdf")])
