"""Does a study reproduce the seed paper's claims, and under which threat model?

A *setting* is one side of every threat-model choice a study varies: β, the training
knobs of the run's ``variant`` (worker momentum, its form, ...) and the attacker's
knowledge. Its no-attack baseline is the ``none`` run of the same β and variant (knowledge
plays no part without an attack). For each setting and defense (a Table-1 *column*) the
claims of the seed paper are checked:

``strength_alie``, ``strength_ipm``
    Figure 1's shape: the paper's strength hurts more than the IID-calibrated one —
    ALIE (z=8) below ALIE at its default z; IPM (ε=2.5) below IPM (ε=0.1).
``alie_far_below``
    Calibrated ALIE (z=8) "drives accuracy far below" the other attacks: below every other
    attack of the setting.
``alie_strongest``
    ALIE (z=8) is the strongest attack of the column, ahead of IPM (ε=2.5), MinMax and
    MinSum where they ran.
``ipm_runner_up``
    IPM (ε=2.5) is the second strongest of ALIE (z=8), IPM (ε=2.5), MinMax and MinSum.

**Statistics.** Two cells are compared within seeds: a seed fixes the Dirichlet split, θ0
and, for runs that draw batches for the same clients, every mini-batch
(tests/test_verdicts.py checks it), so ``d_s = acc_a,s − acc_b,s`` removes the seed's
share of the noise. With two or more common seeds the difference is ``mean_s d_s`` and its
*margin* ``max(min_points, k · sd_s(d_s))``; otherwise (a one-seed side) it is the
difference of the cells' means with the margin ``max(min_points, k · s)``, ``s`` the larger
of the two cells' stds over seeds (0 with one seed each), and the verdict is
*provisional*. ``k`` = 2, ``min_points`` = 1 accuracy point. A comparison is ``lower``
(a below b by more than the margin), ``higher`` or ``undecided`` (within seed noise). A
claim *holds* in a column when every comparison it needs goes its way, *fails* when one
goes against it beyond the margin, and is *undecided (within seed noise)* otherwise;
every row says how many seeds each side had and which accuracy it used.

Where a study's cells have one seed, ``claims(..., noise=seed_noise(reference))`` takes the
seed std that a reference study measured for the same defense and attack into the margin
of a comparison of means, so that a one-seed difference is not read against a 1-point
margin when the seed noise is known to be larger.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .reporting import (
    METRIC_TEXT,
    NO_ATTACK,
    SEED_BAND,
    _save_fig,
    _write_csv,
    _write_text,
    is_baseline,
    read_tidy,
    same_training,
    summarise,
)

__all__ = [
    "CLAIMS",
    "Cell",
    "Comparison",
    "claims",
    "claims_markdown",
    "compare",
    "diagnostics_table",
    "seed_noise",
    "sensitivity_cmd",
]

CLAIMS = {
    "strength_alie": "larger ALIE strength hurts more: z = 8 below its IID-calibrated default z",
    "strength_ipm": "larger IPM strength hurts more: ε = 2.5 below ε = 0.1",
    "alie_far_below": "calibrated ALIE (z=8) drives accuracy far below the other attacks",
    "alie_strongest": "ALIE (z=8) is the strongest attack in every column, ahead of MinMax/MinSum",
    "ipm_runner_up": "IPM (ε=2.5) is the runner-up",
}
ALIE8, IPM25 = "ALIE (z=8)", "IPM (ε=2.5)"
RIVALS = (ALIE8, IPM25, "MinMax", "MinSum")
UNDECIDED = "undecided (within seed noise)"


@dataclass(frozen=True)
class Cell:
    """One attack in one column: its accuracy (%) per seed."""

    label: str
    values: dict[int, float]
    own_rows: bool = False  # the attack's clients draw batches too (none, local, LF)

    @property
    def seeds(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float:
        return statistics.stdev(self.values.values()) if self.seeds > 1 else 0.0

    def text(self) -> str:
        return f"{self.mean:.1f}±{self.std:.1f} (n={self.seeds})"


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: the difference a − b (points), its margin and outcome."""

    a: Cell
    b: Cell
    diff: float
    margin: float
    paired: int  # common seeds the difference was taken within (0: difference of means)
    outcome: str  # "lower" | "higher" | "undecided"

    @property
    def provisional(self) -> bool:
        return min(self.a.seeds, self.b.seeds) < 2

    def text(self) -> str:
        how = f"paired over {self.paired} seeds" if self.paired else "means"
        if self.paired and self.a.own_rows != self.b.own_rows:
            how += ", split and θ0 shared"
        return (
            f"{self.a.label} {self.a.text()} − {self.b.label} {self.b.text()} = "
            f"{self.diff:+.1f} (margin {self.margin:.1f}, {how}): {self.outcome}"
        )


def compare(
    a: Cell, b: Cell, k: float = 2.0, min_points: float = 1.0, noise: float = 0.0
) -> Comparison:
    """Is ``a`` below ``b`` by more than the seed noise? (the module's docstring).

    ``noise`` is a std over seeds (points) measured elsewhere for these cells; where the
    difference is one of means it enters the margin like the cells' own stds."""
    common = sorted(set(a.values) & set(b.values))
    if len(common) >= 2 and min(a.seeds, b.seeds) >= 2:
        d = [a.values[s] - b.values[s] for s in common]
        diff, margin, paired = (
            statistics.fmean(d),
            max(min_points, k * statistics.stdev(d)),
            len(common),
        )
    else:
        s = max(a.std, b.std, noise)
        diff, margin, paired = a.mean - b.mean, max(min_points, k * s), 0
    outcome = "lower" if diff < -margin else "higher" if diff > margin else "undecided"
    return Comparison(a, b, diff, margin, paired, outcome)


def seed_noise(
    ref: pd.DataFrame,
    metric: str = "max_acc",
    betas: set[str] | None = None,
    like: pd.DataFrame | None = None,
) -> dict[tuple[str, str, str], float]:
    """(defense, knowledge, attack label) -> std over seeds (points) of ``ref``'s cells
    with two or more seeds: those trained as the runs ``like`` are
    (:func:`byzstress.reporting.same_training`; without ``like``, ``ref``'s cells without a
    ``variant``) and, with ``betas``, at those β only. The largest std where several cells
    share the key."""
    if like is not None:
        ref = same_training(ref, like).assign(variant="")
    s = summarise(ref, metric)
    s = s[(s["seeds"] >= 2) & (s["variant"] == "")]
    if betas is not None:
        s = s[s["beta"].astype(str).isin(betas)]
    out: dict[tuple[str, str, str], float] = {}
    for _, r in s.iterrows():
        key = (str(r["defense"]), str(r["knowledge"]), _base_label(str(r["attack_label"])))
        out[key] = max(out.get(key, 0.0), float(r["std"]))
    return out


def _verdict(needed: list[Comparison], against: list[Comparison]) -> str:
    """``holds`` when every needed comparison is ``lower``; ``fails`` when one of
    ``against`` is decided the other way; otherwise undecided."""
    if against:
        return "fails"
    return "holds" if needed and all(c.outcome == "lower" for c in needed) else UNDECIDED


def _base_label(label: str) -> str:
    """``ALIE (z=8), local`` -> ``ALIE (z=8)``: the attack without the knowledge suffix."""
    return label.removesuffix(", local")


def _knobs_label(runs: pd.DataFrame, variant: str) -> str:
    """``momentum=0.9 ema`` plus the variant's other knobs (``n=30``), from the runs."""
    parts = []
    if {"momentum", "momentum_form"} <= set(runs.columns) and len(runs):
        first = runs.iloc[0]
        parts.append(f"momentum={float(first['momentum']):g} {first['momentum_form']}")
    parts += [p for p in variant.split(", ") if p and not p.startswith("momentum")]
    return ", ".join(parts)


def settings_frame(df: pd.DataFrame, metric: str = "max_acc") -> pd.DataFrame:
    """The summary over seeds with a ``setting`` and an ``attack_base`` column; each
    setting gets a copy of its baseline rows (``No attack``)."""
    s = summarise(df, metric)
    s["attack_base"] = [_base_label(a) for a in s["attack_label"]]
    out = []
    for (beta, variant), grp in s.groupby(["beta", "variant"], sort=False):
        baseline = is_baseline(grp["attack_label"])
        base, attacked = grp[baseline], grp[~baseline]
        knobs = _knobs_label(df[(df["beta"] == beta) & (df["variant"] == variant)], variant)
        for knowledge, att in attacked.groupby("knowledge", sort=False):
            name = ", ".join(p for p in (f"β={beta}", knobs, knowledge) if p)
            out.append(pd.concat([base, att]).assign(setting=name))
    if not out:
        return s.assign(setting="")[:0]
    return pd.concat(out, ignore_index=True)


def _own_rows(attack: str, knowledge: str) -> bool:
    from .attacks import build

    return bool(build(attack, knowledge=knowledge).uses_own_vectors)


def _cells(df: pd.DataFrame, col: pd.DataFrame, metric: str) -> dict[str, Cell]:
    """The per-seed accuracies (%) of every attack of one summarised column, by its label
    without the knowledge suffix; a seed without an accuracy (diverged before its first
    evaluation) is left out."""
    cells = {}
    for _, r in col.iterrows():
        sel = df[
            (df["dataset"] == r["dataset"])
            & (df["beta"] == r["beta"])
            & (df["variant"] == r["variant"])
            & (df["defense"] == r["defense"])
            & (df["attack_label"] == r["attack_label"])
        ]
        values = {
            int(seed): float(v) * 100
            for seed, v in zip(sel["seed"], sel[metric], strict=True)
            if not pd.isna(v)
        }
        if values:
            own = _own_rows(str(r["attack"]), str(r["knowledge"]))
            cells[r["attack_base"]] = Cell(r["attack_base"], values, own)
    return cells


def _iid_default(col: pd.DataFrame, attack: str) -> str | None:
    """The label of the column's IID-calibrated strength of ``attack``: ALIE at its default
    z (no strength given), IPM at ε = 0.1."""
    for _, r in col.iterrows():
        st = "" if pd.isna(r["strength"]) else str(r["strength"])
        if r["attack"] == attack and st == ("" if attack == "alie" else "0.1"):
            return str(r["attack_base"])
    return None


def _row(
    common: dict[str, Any], claim: str, verdict: str | None, comps: list[Comparison]
) -> dict[str, Any]:
    sides = {c.label: c for x in comps for c in (x.a, x.b)}.values()
    return {
        **common,
        "claim": claim,
        "verdict": verdict,
        "provisional": bool(verdict) and any(x.provisional for x in comps),
        "seeds": ", ".join(f"{c.label}: {c.seeds}" for c in sides),
        "evidence": "; ".join(x.text() for x in comps),
    }


def claims(
    df: pd.DataFrame,
    metric: str = "max_acc",
    k: float = 2.0,
    min_points: float = 1.0,
    noise: Mapping[tuple[str, str, str], float] | None = None,
) -> pd.DataFrame:
    """One row per (claim, setting, defense): its ``verdict`` (``holds``, ``fails``,
    :data:`UNDECIDED`, or ``None`` when the setting lacks the runs to test it), whether it
    is ``provisional`` (a one-seed side), the seeds per side and the comparisons.

    ``noise`` maps (defense, knowledge, attack label) to a std over seeds measured in
    another study (:func:`seed_noise`); a comparison of means takes the larger of its two
    cells' entries into its margin, so one-seed cells are not compared with a 1-point
    margin where the seed noise is known to be larger."""
    s = settings_frame(df, metric)
    rows: list[dict[str, Any]] = []
    noise = noise or {}

    for (setting, defense), col in s.groupby(["setting", "defense"], sort=False):
        attackers = col.loc[~is_baseline(col["attack_label"]), "knowledge"]
        knowledge = str(attackers.iloc[0]) if len(attackers) else ""

        def cmp(a: Cell, b: Cell, defense: str = defense, knowledge: str = knowledge) -> Comparison:
            extra = max(noise.get((defense, knowledge, c.label), 0.0) for c in (a, b))
            return compare(a, b, k, min_points, extra)

        cells = _cells(df, col, metric)
        baseline = set(col.loc[is_baseline(col["attack_label"]), "attack_base"])
        attacked = {n: c for n, c in cells.items() if n not in baseline}
        ranking = " < ".join(
            f"{n} {c.mean:.1f}" for n, c in sorted(attacked.items(), key=lambda x: x[1].mean)
        )
        common = {"setting": setting, "defense": defense, "metric": metric, "ranking": ranking}

        def add(
            claim: str, verdict: str | None, comps: list[Comparison], common: dict = common
        ) -> None:
            rows.append(_row(common, claim, verdict, comps))

        # strength: the paper's strength below the IID-calibrated one of the same attack
        for claim, hi_label, lo_label in (
            ("strength_alie", ALIE8, _iid_default(col, "alie")),
            ("strength_ipm", IPM25, _iid_default(col, "ipm")),
        ):
            hi, lo = attacked.get(hi_label), attacked.get(lo_label) if lo_label else None
            if hi is None or lo is None:
                add(claim, None, [])
                continue
            c = cmp(hi, lo)
            add(claim, _verdict([c], [c] if c.outcome == "higher" else []), [c])

        alie = attacked.get(ALIE8)
        others = [c for n, c in attacked.items() if n != ALIE8]
        if alie is None or not others:
            add("alie_far_below", None, [])
            add("alie_strongest", None, [])
        else:
            comps = [cmp(alie, o) for o in others]
            add(
                "alie_far_below",
                _verdict(comps, [c for c in comps if c.outcome == "higher"]),
                comps,
            )
            rivals = [cmp(alie, attacked[n]) for n in RIVALS[1:] if n in attacked]
            if rivals:
                verdict = _verdict(rivals, [c for c in rivals if c.outcome == "higher"])
                add("alie_strongest", verdict, rivals)
            else:
                add("alie_strongest", None, [])

        ipm = attacked.get(IPM25)
        rivals = [attacked[n] for n in RIVALS if n != IPM25 and n in attacked]
        if ipm is None or len(rivals) < 2:
            add("ipm_runner_up", None, [])
        else:
            comps = [cmp(ipm, r) for r in rivals]
            below = [c for c in comps if c.outcome == "higher"]  # rivals below IPM
            above = [c for c in comps if c.outcome == "lower"]  # rivals above IPM
            if len(below) == 1 and len(above) == len(rivals) - 1:
                verdict = "holds"
            elif len(below) >= 2 or len(above) == len(rivals):
                verdict = "fails"
            else:
                verdict = UNDECIDED
            add("ipm_runner_up", verdict, comps)
    return pd.DataFrame(rows)


def verdict_text(verdict: str | None, provisional: bool) -> str:
    if verdict is None:
        return "untested"
    return f"{verdict}, provisional (a one-seed side)" if provisional else verdict


def _summary(c: pd.DataFrame) -> pd.DataFrame:
    """Per (claim, setting): in how many tested columns the claim holds, fails, is undecided."""
    tested = c[c["verdict"].notna()]
    cols = ["claim", "setting", "holds", "fails", "undecided", "columns", "where"]
    if tested.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for (claim, setting), g in tested.groupby(["claim", "setting"], sort=False):
        marks = {"holds": "", "fails": " ✗", UNDECIDED: " ?"}
        where = ", ".join(
            f"{d}{marks[v]}{'*' if p else ''}"
            for d, v, p in zip(g["defense"], g["verdict"], g["provisional"], strict=True)
        )
        out.append(
            {
                "claim": claim,
                "setting": setting,
                "holds": int((g["verdict"] == "holds").sum()),
                "fails": int((g["verdict"] == "fails").sum()),
                "undecided": int((g["verdict"] == UNDECIDED).sum()),
                "columns": len(g),
                "where": where,
            }
        )
    return pd.DataFrame(out, columns=cols)


def claims_markdown(c: pd.DataFrame, metric: str = "max_acc") -> str:
    summ = _summary(c)
    lines = [
        "| Claim | Setting | holds / fails / undecided "
        "| columns (✗ fails, ? undecided, * provisional) |",
        "|---|---|---|---|",
    ]
    for claim in CLAIMS:
        for _, r in summ[summ["claim"] == claim].iterrows():
            lines.append(
                f"| {CLAIMS[claim]} | {r['setting']} | {r['holds']} / {r['fails']} / "
                f"{r['undecided']} | {r['where']} |"
            )
    lines += [
        "",
        "A column is one defense in one setting. Accuracies: "
        f"{METRIC_TEXT.get(metric, metric)}, mean ± std over seeds (n = seeds per cell). "
        "Two cells are compared within seeds where both have two or more; a difference "
        "counts when it exceeds max(1 point, 2 × its std over seeds), else it is undecided "
        "(within seed noise). Provisional: a side had one seed.",
        "",
        "## Evidence per column",
        "",
        "| Claim | Setting | Defense | verdict | seeds | comparisons | ranking (mean %) |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in c[c["verdict"].notna()].iterrows():
        lines.append(
            f"| {r['claim']} | {r['setting']} | {r['defense']} | "
            f"{verdict_text(r['verdict'], bool(r['provisional']))} | {r['seeds']} | "
            f"{r['evidence']} | {r['ranking']} |"
        )
    return "\n".join(lines) + "\n"


def diagnostics_table(df: pd.DataFrame, metric: str = "max_acc") -> pd.DataFrame:
    """Per (setting, defense, attack): accuracy and the run-mean diagnostics, averaged
    over seeds (see :func:`byzstress.training.diagnostics`)."""
    diag = [c for c in df.columns if c.startswith("diag_")]
    s = settings_frame(df, metric)
    keys = ["beta", "variant", "knowledge", "defense", "attack_label"]
    means = df.groupby(keys, sort=False)[diag].mean().reset_index()
    out = s.merge(means, on=keys, how="left")
    cols = ["setting", "defense", "attack_label", "mean", "std", "seeds", *diag]
    return out[cols].rename(columns={"mean": "acc_mean", "std": "acc_std"})


def diagnostics_markdown(t: pd.DataFrame, metric: str = "max_acc") -> str:
    head = [
        "Setting",
        "Defense",
        "Attack",
        "acc (%)",
        "‖agg−μ_h‖/‖μ_h‖",
        "cos(agg, μ_h)",
        "Byz. weight in rows",
        "Byz. weight in honest rows",
        "Byz. share of the rule's output",
        "Byz. values kept / coord.",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(x: float, spec: str = ".3f") -> str:
        return "–" if pd.isna(x) else format(x, spec)

    for _, r in t.iterrows():
        lines.append(
            f"| {r['setting']} | {r['defense']} | {r['attack_label']} | "
            f"{r['acc_mean']:.1f}±{r['acc_std']:.1f} | {f(r['diag_rel_err'])} | "
            f"{f(r['diag_cos'])} | {f(r['diag_byz_weight_rows'])} | "
            f"{f(r['diag_byz_weight_honest_rows'])} | {f(r['diag_rule_byz_share'])} | "
            f"{f(r['diag_byz_values_kept'], '.2f')} |"
        )
    lines += [
        "",
        f"acc: {METRIC_TEXT.get(metric, metric)}, mean ± std over seeds. Diagnostics: means "
        "over each "
        "run's evaluations, then over seeds. μ_h: the honest clients' mean momentum; rows: "
        "the vectors the rule sees after the pre-aggregators (bucketing, NNM); honest rows: "
        "those that stand for an honest input (NNM only).",
    ]
    return "\n".join(lines) + "\n"


def _diagnostic_curves(runs: list[Path]) -> pd.DataFrame:
    import json

    from .reporting import attack_label

    rows = []
    for p in runs:
        r = json.loads(Path(p).read_text())
        s, d = r["spec"], r.get("diagnostics") or {}
        label = attack_label(s["attack"], s["strength"], s["knowledge"], r["resolved"]["strength"])
        run = {
            "path": str(p),
            "defense": s["defense"],
            "attack": label,
            "beta": str(s["beta"]),
            "momentum": r["resolved"]["momentum"],
        }
        for i, step in enumerate(d.get("step", [])):
            for key in ("rel_err", "cos", "rule_byz_share"):
                v = d[key][i]
                rows.append({**run, "step": step, "diagnostic": key, "value": v})
        for step, acc in zip(r["curve"]["step"], r["curve"]["test_acc"], strict=True):
            rows.append({**run, "step": step, "diagnostic": "test_acc", "value": acc * 100})
    return pd.DataFrame(rows).astype({"value": float})  # None (not applicable) -> NaN


def diagnostics_figure(curves: pd.DataFrame):
    """Test accuracy and the diagnostics over steps: a row per quantity, a column per
    defense, a line per attack (band: the range over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    g = sns.relplot(
        data=curves,
        x="step",
        y="value",
        hue="attack",
        col="defense",
        row="diagnostic",
        row_order=["test_acc", "rel_err", "cos", "rule_byz_share"],
        kind="line",
        errorbar=SEED_BAND,
        height=2.4,
        aspect=1.3,
        facet_kws={"sharey": "row", "margin_titles": True},
    )
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    for ax in g.axes[1]:
        ax.set_yscale("log")
    return g.figure


def baseline_figure(curves: pd.DataFrame):
    """The no-attack runs' test accuracy over steps, a panel per (β, momentum): how close
    training is to a plateau."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    base = curves[(curves["diagnostic"] == "test_acc") & curves["attack"].eq(NO_ATTACK)].copy()
    pairs = zip(base["beta"], base["momentum"], strict=True)
    base["setting"] = [f"β={b}, momentum={m:g}" for b, m in pairs]
    g = sns.relplot(
        data=base,
        x="step",
        y="value",
        hue="defense",
        col="setting",
        kind="line",
        errorbar=SEED_BAND,
        height=2.6,
        aspect=1.2,
    )
    g.set_axis_labels("step", "test accuracy (%), no attack")
    return g.figure


def sensitivity_cmd(csv: Path, runs: list[Path], prefix: Path, metric: str) -> None:
    """Write ``PREFIX-claims.{csv,md}``, ``PREFIX-diagnostics.{csv,md}`` and the figures
    ``PREFIX-diagnostics.png`` (the setting with the most omniscient runs: every attack and
    the baseline over steps) and ``PREFIX-baseline.png`` (no-attack accuracy over steps: has
    training plateaued?). The figures need the run JSONs; without ``runs`` only the tables
    are written (e.g. from a published ``runs.csv`` alone)."""
    df = read_tidy(csv)
    c = claims(df, metric)
    _write_csv(Path(f"{prefix}-claims.csv"), c)
    _write_text(Path(f"{prefix}-claims.md"), claims_markdown(c, metric))
    t = diagnostics_table(df, metric)
    _write_csv(Path(f"{prefix}-diagnostics.csv"), t)
    _write_text(Path(f"{prefix}-diagnostics.md"), diagnostics_markdown(t, metric))
    if not runs:
        return

    curves = _diagnostic_curves(runs)
    # the figure shows the largest (β, variant) group of omniscient runs and its baseline
    omni = df[df["knowledge"] == "omniscient"]
    beta, variant = omni.groupby(["beta", "variant"]).size().idxmax()
    main = omni[(omni["beta"] == beta) & (omni["variant"] == variant)]
    sel = curves[curves["path"].isin(set(main["path"]))]
    _save_fig(diagnostics_figure(sel), [Path(f"{prefix}-diagnostics.png")])
    _save_fig(baseline_figure(curves), [Path(f"{prefix}-baseline.png")])
