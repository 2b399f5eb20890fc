"""The decided claims as Markdown: the per-claim pages (docs/claims-results.md) and the
README's one-table scorecard, both from the results table of
:func:`byzstress.analysis.claims.evaluate`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pandas as pd

from .claims import Settings, fmt
from .compare import INCONCLUSIVE, OUTCOMES
from .paper import defense_label

__all__ = [
    "outcome_counts",
    "results_markdown",
    "scorecard_markdown",
    "seed_range",
    "setting_text",
    "where_markdown",
]

_DATASETS = {"fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}


def setting_text(study: str, definition: dict[str, Any], betas: str) -> str:
    """A study's training setting in one line, from its config.yaml definition."""
    train = definition.get("train", {})
    n = train.get("n")
    byz = (
        f"f = {train['f']} Byzantine"
        if "f" in train
        else f"δ = {100 * train.get('delta', 0):g} % Byzantine"
    )
    data = _DATASETS.get(definition.get("dataset"), definition.get("dataset"))
    return f"`{study}`: {data}, n = {n}, {byz}, {train.get('steps')} steps, β {betas}"


def _betas(claim: dict[str, Any]) -> str:
    if "reference_beta" in claim:
        return f"{claim['beta']} v {claim['reference_beta']}".replace("iid", "IID")
    return " and ".join(str(b) for b in claim["betas"])


def outcome_counts(rows: pd.DataFrame) -> str:
    """``k supported, k contradicted, ...`` of one family, outcomes in the rule's order."""
    c = Counter(rows["outcome"])
    return ", ".join(f"{c[o]} {o}" for o in OUTCOMES if c[o])


def seed_range(rows: pd.DataFrame) -> str:
    """The fewest to the most seeds per side in ``rows`` (``5`` or ``5–10``)."""
    ns = [int(x) for s in rows["seeds"] for x in s.split(" v ")]
    lo, hi = min(ns), max(ns)
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _seeds(rows: pd.DataFrame, settings: Settings) -> str:
    """The seeds per side, and how many comparisons have fewer than the rule asks."""
    seeds = seed_range(rows)
    k = int(rows["provisional"].astype(bool).sum())
    if not k:
        return f"{seeds} seeds per side"
    return (
        f"{seeds} seeds per side ({k} of {len(rows)} provisional: fewer than "
        f"{settings.min_seeds} seeds, or {settings.split_seeds_to} where a cell's seeds split)"
    )


def scorecard_markdown(
    results: pd.DataFrame,
    claims: dict[str, dict[str, Any]],
    settings: Settings,
    config: dict[str, Any],
) -> str:
    """One row per claim: the paper's evidence, our setting, the outcomes of its
    comparisons with the range of their estimates, and where the details are."""
    lines = [
        "| claim | the paper's evidence | our setting and scale | outcome (Holm, α = "
        f"{settings.alpha:g}) | details |",
        "|---|---|---|---|---|",
    ]
    for cid, claim in claims.items():
        study = claim["study"]
        setting = setting_text(study, config["definitions"][study], _betas(claim))
        rows = results[(results["claim"] == cid) & (results["family"] == "primary")]
        if rows.empty:
            outcome = "not yet trained"
        else:
            est = rows["estimate"].dropna()
            outcome = (
                f"{outcome_counts(rows)} of {len(rows)} comparisons; estimates "
                f"{fmt(est.min())} to {fmt(est.max())} points; {_seeds(rows, settings)}"
            )
        anchor = f"docs/claims-results.md#{cid.lower()}"
        lines.append(
            f"| **{cid}** {claim['title']} | {claim['evidence']} | {setting} | {outcome} | "
            f"[{cid}]({anchor}) |"
        )
    return "\n".join(lines)


def _label(config: dict[str, Any], study: str) -> Callable[[str], str]:
    """How a claim's rows name a defense: beside the paper's Table 1 (the study's
    ``report.paper``), CM is named for the CMLS column it stands in for."""
    beside_paper = config["definitions"][study].get("report", {}).get("paper", False)
    return defense_label if beside_paper else str


def where_markdown(
    results: pd.DataFrame, claims: dict[str, dict[str, Any]], config: dict[str, Any]
) -> str:
    """Per claim, which comparisons came out which way: every outcome but *inconclusive*
    named (defense, contrast, the β it held at), *inconclusive* counted; so that a reader can
    set the outcome beside the figure or the table it summarises."""
    lines = []
    for cid, claim in claims.items():
        rows = results[(results["claim"] == cid) & (results["family"] == "primary")]
        if rows.empty:
            continue
        label = _label(config, claim["study"])
        several_betas = rows["beta"].nunique() > 1
        parts = []
        for outcome in OUTCOMES:
            sel = rows[rows["outcome"] == outcome]
            if sel.empty:
                continue
            if outcome == INCONCLUSIVE:
                parts.append(f"{outcome}: the other {len(sel)}")
                continue
            named = []
            keys = [sel["defense"], sel["contrast"], sel["provisional"].astype(bool)]
            for (defense, contrast, provisional), g in sel.groupby(keys, sort=False):
                at = f" at β {' and '.join(map(str, g['beta']))}" if several_betas else ""
                flag = " (provisional)" if provisional else ""
                named.append(f"{label(defense)} {contrast}{at}{flag}")
            parts.append(f"{outcome} ({len(sel)}): " + "; ".join(named))
        lines.append(f"- **{cid}** " + ". ".join(parts) + ".")
    return "\n".join(lines)


def _table(
    rows: pd.DataFrame, a_side: str, b_side: str, label: Callable[[str], str] = str
) -> list[str]:
    out = [
        "| β | defense | contrast | seeds | estimate [95 % CI] | p (Holm) for / against / "
        f"≈ 0 | outcome | detectable | collapsed: {a_side} | collapsed: {b_side} | Fisher p "
        "(Holm) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples():
        p = " / ".join(fmt(x, 3) for x in (r.p_for_adj, r.p_against_adj, r.p_equivalent_adj))
        out.append(
            f"| {r.beta} | {label(r.defense)} | {r.contrast} | {r.seeds} | {fmt(r.estimate)} "
            f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}] | {p} | **{r.outcome}**"
            f"{' (provisional)' if r.provisional else ''} | "
            f"{fmt(r.detectable)} | {r.collapse_a} | {r.collapse_b} | {fmt(r.collapse_p_adj, 3)} |"
        )
    return out


#: per estimand: what the effect is, and what each side of a comparison holds
_SIDES = {
    "heterogeneity_effect": (
        "Δ = drop below no attack at β = {beta} minus the drop under IID (points)",
        "β = {beta}",
        "IID",
    ),
    "drop": ("no-attack accuracy minus attacked accuracy (points)", "no attack", "attack"),
    "versus": ("the rival's accuracy minus the attack's (points)", "rival", "attack"),
    "failure": (
        "{frac:g} × no-attack accuracy minus the attacked accuracy (points)",
        "no attack",
        "attack",
    ),
}


def results_markdown(
    results: pd.DataFrame,
    claims: dict[str, dict[str, Any]],
    settings: Settings,
    config: dict[str, Any],
    extra: dict[str, list[str]] | None = None,
    prefix: str = "claims-results",
) -> str:
    """docs/claims-results.md: per claim, its sentence, setting, rule and every comparison.
    ``extra`` adds lines under a claim (descriptions that are not tests)."""
    out = [
        "# The paper's claims: outcomes",
        "",
        "Generated by `byzstress claims` from `claims.yaml` (pre-specified, see "
        "[claims.md](claims.md)) and the published records' `runs.csv`; do not edit.",
        "",
        f"Rule: 95 % Welch t-intervals over seeds; one-sided Welch tests for and against "
        f"the claim at its threshold and an equivalence test (|effect| < "
        f"{settings.equivalence_bound:g} points), each Holm-adjusted across the claim's "
        f"comparisons at α = {settings.alpha:g}. *Detectable*: the smallest effect a "
        f"one-sided test at α/m detects with {100 * settings.power:g} % power. *Collapsed*: "
        f"diverged or final accuracy ≤ {100 * settings.collapse_final_acc:g} % (exact 95 % "
        "interval of the rate; Fisher's exact test between the two sides, Holm-adjusted). The 95 % "
        "intervals are not adjusted; outcomes use the Holm-adjusted p-values, so an interval "
        "can exclude the threshold while its comparison stays inconclusive.",
        "",
        f"![Every comparison: estimate, 95 % interval, threshold (dashed), outcome (colour)]"
        f"({prefix}.png)",
        "",
    ]
    for cid, claim in claims.items():
        study = claim["study"]
        what, a_side, b_side = (
            s.format(beta=claim.get("beta"), frac=float(claim.get("failure_fraction", 0)))
            for s in _SIDES[claim["estimand"]]
        )
        out += [
            f"## {cid}",
            "",
            f"**{claim['title']}.** In the paper's words:",
            "",
            f"> {claim['quote'].strip()}",
            "",
            f"The paper's evidence: {claim['evidence']}. Ours: "
            f"{setting_text(study, config['definitions'][study], _betas(claim))} "
            f"([docs/{study}/](./{study}/)). Effect: {what}; the claim says it exceeds "
            f"{float(claim.get('threshold', 0)):g}.",
            "",
        ]
        label = _label(config, study)
        rows = results[results["claim"] == cid]
        if rows.empty:
            out += ["Not yet trained: no records of this study are published.", ""]
            continue
        for family in dict.fromkeys(rows["family"]):
            fam = rows[rows["family"] == family]
            head = "Comparisons" if family == "primary" else "Secondary family (not deciding)"
            out += [
                f"{head}: {outcome_counts(fam)} of {len(fam)}; {_seeds(fam, settings)}.",
                "",
                *_table(fam, a_side, b_side, label),
                "",
            ]
        out += (extra or {}).get(cid, [])
    return "\n".join(out).rstrip() + "\n"
