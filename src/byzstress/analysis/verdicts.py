"""Does a study reproduce the seed paper's claims, and under which threat model?

A *setting* is one side of every threat-model choice a study varies: β, the training
knobs of the run's ``variant`` (worker momentum, its form, ...) and the attacker's
knowledge. Its no-attack baseline is the ``none`` run of the same β and variant (knowledge
plays no part without an attack). For each setting and defense (a Table-1 *column*) the
claims of the seed paper are checked:

``strength_alie``, ``strength_ipm``
    C1 at one β (docs/claims.md): the paper's strength hurts more than the IID-calibrated
    one — ALIE (z=8) below ALIE at its default z; IPM (ε=2.5) below IPM (ε=0.1). With one
    β this says nothing about heterogeneity, which C1 is about.
``alie_lowest``
    C2's "especially ALIE": ALIE (z=8) below every other attack of the setting (the paper's
    Table 1 has ALIE's row lowest in every column).
``alie_strongest``
    C3: ALIE (z=8) below MinMax and MinSum where they ran.

(The paper does not claim that IPM is the runner-up: docs/claims.md.)

**Statistics**: the rule of docs/claims.md, on :mod:`byzstress.analysis.compare`. A
comparison "a below b" is Welch's unequal-variance t-test of the two cells' seeds (Welch
1947), ``welch(b, a)``: the effect ``mean(b) − mean(a)`` in accuracy points (> 0: a is
lower), its 95 % Welch t-interval, and the one-sided p-values *for* (H0: effect ≤ 0) and
*against* (H0: effect ≥ 0). A claim that needs k comparisons to go its way in a column is
an intersection-union test (Berger 1982): the column's p for the claim is
``max_i p_for,i`` (each comparison at level α, no correction needed), and its p against
the claim, which one comparison going the other way suffices for, is the Bonferroni-adjusted
``min(1, k · min_i p_against,i)``. Each of those two families of p-values is
Holm-adjusted (Holm 1979; ``statsmodels`` ``multipletests(method="holm")``) across the
columns (settings × defenses) of one claim in the study. The verdict is *supported* if the
adjusted p for it is below α = 0.05, else *contradicted* if the adjusted p against it is,
else *inconclusive*. A comparison with a side of fewer than two seeds (or no spread on
either side) has no test: its column is inconclusive and counts in Holm's family as p = 1.
Every row says how many seeds each side had and each comparison's estimate and 95 %
interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..threats.attacks import IPM
from .compare import ALPHA, CONTRADICTED, INCONCLUSIVE, SUPPORTED, Comparison, holm, welch
from .labels import NO_ATTACK, attack_label, is_baseline
from .outputs import save_figure, write_csv, write_text
from .reporting import METRIC_TEXT, SEED_BAND, read_tidy, summarise

__all__ = [
    "ALIE8",
    "CLAIMS",
    "IPM25",
    "RIVALS",
    "VERDICTS",
    "Below",
    "Cell",
    "below",
    "claims",
    "claims_markdown",
    "diagnostics_table",
    "intersection_union",
    "sensitivity_cmd",
    "verdict_of",
    "verdict_summary",
]

CLAIMS = {
    "strength_alie": "C1 at one β: ALIE z = 8 below ALIE at its IID-calibrated default z",
    "strength_ipm": "C1 at one β: IPM ε = 2.5 below IPM ε = 0.1",
    "alie_lowest": "C2's 'especially ALIE': ALIE (z=8) below every other attack",
    "alie_strongest": "C3: ALIE (z=8) below MinMax and MinSum",
}
# the paper's calibrated strengths, labelled as the run table labels them
ALIE8, IPM25 = attack_label("alie", 8), attack_label("ipm", 2.5)
#: the attacks C3 says ALIE outperforms
RIVALS = (attack_label("minmax", None), attack_label("minsum", None))
#: a tested column's verdicts, in the order the rule tries them
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
RULE_TEXT = (
    "Each comparison 'a below b' is a Welch t-test of the two cells' seeds (Welch 1947): "
    "estimate mean(b) − mean(a) in points (> 0: a is lower) with its 95 % Welch interval. "
    "A claim that needs several comparisons in a column is an intersection-union test "
    "(Berger 1982): p for it = the largest of theirs, p against it = k × the smallest "
    "(Bonferroni). Both are Holm-adjusted (Holm 1979) across the claim's columns in the "
    f"study; supported: adjusted p for < {ALPHA:g}; else contradicted: adjusted p against "
    f"< {ALPHA:g}; else inconclusive (also where a side has fewer than 2 seeds)."
)


@dataclass(frozen=True)
class Cell:
    """One attack in one column: its accuracy (%) per seed."""

    label: str
    values: dict[int, float]

    @property
    def seeds(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float:
        return statistics.stdev(self.values.values()) if self.seeds > 1 else math.nan

    def text(self) -> str:
        if self.seeds < 2:
            return f"{self.mean:.1f} (n={self.seeds})"
        return f"{self.mean:.1f}±{self.std:.1f} (n={self.seeds})"


def ci_text(c: Comparison) -> str:
    """``+3.1 [+0.4, +5.8]``: a comparison's estimate and 95 % Welch interval."""
    if math.isnan(c.estimate):
        return "–"
    if math.isnan(c.ci_low):
        return f"{c.estimate:+.1f} [no interval: {c.seeds} seeds]"
    return f"{c.estimate:+.1f} [{c.ci_low:+.1f}, {c.ci_high:+.1f}]"


@dataclass(frozen=True)
class Below:
    """ "``a`` below ``b``": the Welch comparison of ``b``'s seeds with ``a``'s (effect
    ``mean(b) − mean(a)``, > 0 where a is lower)."""

    a: Cell
    b: Cell
    comparison: Comparison

    def text(self) -> str:
        return (
            f"{self.a.label} {self.a.text()} below {self.b.label} {self.b.text()}: "
            f"{ci_text(self.comparison)}"
        )


def below(a: Cell, b: Cell) -> Below:
    """Is ``a`` below ``b``? ``welch(b, a)`` on the cells' seeds (the module's docstring)."""
    return Below(a, b, welch(list(b.values.values()), list(a.values.values())))


def intersection_union(needed: Sequence[Comparison]) -> tuple[float, float]:
    """``(p for, p against)`` of a claim that needs every comparison of ``needed`` to have
    an effect > 0: the largest ``p_for`` (intersection-union test, Berger 1982) and the
    Bonferroni-adjusted smallest ``p_against``, ``min(1, k · min)``. nan (untestable) where
    there is no comparison or one of them has no p-value."""
    pf = [c.p_for for c in needed]
    pa = [c.p_against for c in needed]
    if not needed or any(math.isnan(p) for p in pf + pa):
        return math.nan, math.nan
    return max(pf), min(1.0, len(pa) * min(pa))


def verdict_of(p_for_adj: float, p_against_adj: float, alpha: float = ALPHA) -> str:
    """``supported`` if the adjusted p for the claim is below ``alpha``, else
    ``contradicted`` if the adjusted p against it is, else ``inconclusive``."""
    if p_for_adj < alpha:
        return SUPPORTED
    if p_against_adj < alpha:
        return CONTRADICTED
    return INCONCLUSIVE


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
            cells[r["attack_base"]] = Cell(r["attack_base"], values)
    return cells


def _iid_default(col: pd.DataFrame, attack: str) -> str | None:
    """The label of the column's IID-calibrated strength of ``attack``: ALIE at its default
    z (no strength given: z follows from n and f), IPM at the attack's own default ε
    (:attr:`byzstress.threats.attacks.IPM.DEFAULT_EPS`) given explicitly."""
    want = "" if attack == "alie" else str(IPM.DEFAULT_EPS)
    for _, r in col.iterrows():
        st = "" if pd.isna(r["strength"]) else str(r["strength"])
        if r["attack"] == attack and st == want:
            return str(r["attack_base"])
    return None


#: the columns of :func:`claims`' table
COLUMNS = [
    "setting",
    "defense",
    "metric",
    "ranking",
    "claim",
    "verdict",
    "comparisons",
    "seeds",
    "evidence",
    "p_for",
    "p_against",
    "p_for_adj",
    "p_against_adj",
]


def _row(common: dict[str, Any], claim: str, needed: list[Below] | None) -> dict[str, Any]:
    """One column's claim before Holm's adjustment; ``needed`` None: untested."""
    if not needed:
        nan = math.nan
        empty = {"comparisons": 0, "seeds": "", "evidence": ""}
        return {**common, "claim": claim, "verdict": None, **empty, "p_for": nan} | {
            "p_against": nan,
            "p_for_adj": nan,
            "p_against_adj": nan,
        }
    sides = {c.label: c for x in needed for c in (x.a, x.b)}.values()
    p_for, p_against = intersection_union([x.comparison for x in needed])
    return {
        **common,
        "claim": claim,
        "verdict": INCONCLUSIVE,  # until Holm's adjustment across the claim's columns
        "comparisons": len(needed),
        "seeds": ", ".join(f"{c.label}: {c.seeds}" for c in sides),
        "evidence": "; ".join(x.text() for x in needed),
        "p_for": p_for,
        "p_against": p_against,
        "p_for_adj": math.nan,
        "p_against_adj": math.nan,
    }


def _decide(c: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Holm across each claim's tested columns, then :func:`verdict_of`."""
    c = c.copy()
    for claim in dict.fromkeys(c["claim"]):
        tested = c.index[(c["claim"] == claim) & c["verdict"].notna()]
        if not len(tested):
            continue
        pf = holm(c.loc[tested, "p_for"].tolist(), alpha)
        pa = holm(c.loc[tested, "p_against"].tolist(), alpha)
        c.loc[tested, "p_for_adj"] = pf
        c.loc[tested, "p_against_adj"] = pa
        c.loc[tested, "verdict"] = [verdict_of(f, a, alpha) for f, a in zip(pf, pa, strict=True)]
    return c


def claims(df: pd.DataFrame, metric: str = "max_acc", alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (claim, setting, defense): its ``verdict`` (``supported``,
    ``contradicted``, ``inconclusive``, or ``None`` when the setting lacks the runs to test
    it), the seeds per side, each comparison's estimate and 95 % interval (``evidence``),
    the column's raw p-values for and against the claim and their Holm-adjusted values
    across the claim's columns (the module's docstring)."""
    s = settings_frame(df, metric)
    rows: list[dict[str, Any]] = []

    for (setting, defense), col in s.groupby(["setting", "defense"], sort=False):
        cells = _cells(df, col, metric)
        baseline = set(col.loc[is_baseline(col["attack_label"]), "attack_base"])
        attacked = {n: c for n, c in cells.items() if n not in baseline}
        ranking = " < ".join(
            f"{n} {c.mean:.1f}" for n, c in sorted(attacked.items(), key=lambda x: x[1].mean)
        )
        common = {"setting": setting, "defense": defense, "metric": metric, "ranking": ranking}

        # strength: the paper's strength below the IID-calibrated one of the same attack
        for claim, hi_label, lo_label in (
            ("strength_alie", ALIE8, _iid_default(col, "alie")),
            ("strength_ipm", IPM25, _iid_default(col, "ipm")),
        ):
            hi, lo = attacked.get(hi_label), attacked.get(lo_label) if lo_label else None
            rows.append(_row(common, claim, [below(hi, lo)] if hi and lo else None))

        alie = attacked.get(ALIE8)
        others = [c for n, c in attacked.items() if n != ALIE8]
        rivals = [attacked[n] for n in RIVALS if n in attacked]
        far = [below(alie, o) for o in others] if alie else []
        strongest = [below(alie, r) for r in rivals] if alie else []
        rows.append(_row(common, "alie_lowest", far or None))
        rows.append(_row(common, "alie_strongest", strongest or None))
    return _decide(pd.DataFrame(rows, columns=COLUMNS), alpha)


def verdict_text(verdict: str | None) -> str:
    """A verdict as the tables print it: ``untested`` where the runs are missing."""
    if verdict is None or (isinstance(verdict, float) and math.isnan(verdict)):
        return "untested"
    return str(verdict)


def verdict_summary(c: pd.DataFrame) -> pd.DataFrame:
    """Per (claim, setting): in how many tested columns the claim is supported,
    contradicted, inconclusive, and which (``✗`` contradicted, ``?`` inconclusive)."""
    tested = c[c["verdict"].notna()]
    cols = ["claim", "setting", *VERDICTS, "columns", "where"]
    if tested.empty:
        return pd.DataFrame(columns=cols)
    marks = {SUPPORTED: "", CONTRADICTED: " ✗", INCONCLUSIVE: " ?"}
    out = []
    for (claim, setting), g in tested.groupby(["claim", "setting"], sort=False):
        where = ", ".join(f"{d}{marks[v]}" for d, v in zip(g["defense"], g["verdict"], strict=True))
        counts = {v: int((g["verdict"] == v).sum()) for v in VERDICTS}
        row = {"claim": claim, "setting": setting, **counts}
        out.append({**row, "columns": len(g), "where": where})
    return pd.DataFrame(out, columns=cols)


def _p(x: float) -> str:
    return "–" if pd.isna(x) else f"{x:.3g}"


def claims_markdown(c: pd.DataFrame, metric: str = "max_acc") -> str:
    summ = verdict_summary(c)
    counts = " / ".join(VERDICTS)
    lines = [
        f"| Claim | Setting | {counts} | columns (✗ {CONTRADICTED}, ? {INCONCLUSIVE}) |",
        "|---|---|---|---|",
    ]
    for claim in CLAIMS:
        for _, r in summ[summ["claim"] == claim].iterrows():
            n = " / ".join(str(r[v]) for v in VERDICTS)
            lines.append(f"| {CLAIMS[claim]} | {r['setting']} | {n} | {r['where']} |")
    lines += [
        "",
        "A column is one defense in one setting. Accuracies: "
        f"{METRIC_TEXT.get(metric, metric)}, mean ± std over seeds (n = seeds per cell). "
        + RULE_TEXT,
        "",
        "## Evidence per column",
        "",
        "| Claim | Setting | Defense | verdict | p for / against (Holm) | seeds "
        "| comparisons: b − a [95 % CI] | ranking (mean %) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in c[c["verdict"].notna()].iterrows():
        lines.append(
            f"| {r['claim']} | {r['setting']} | {r['defense']} | {r['verdict']} | "
            f"{_p(r['p_for_adj'])} / {_p(r['p_against_adj'])} | {r['seeds']} | "
            f"{r['evidence']} | {r['ranking']} |"
        )
    return "\n".join(lines) + "\n"


def diagnostics_table(df: pd.DataFrame, metric: str = "max_acc") -> pd.DataFrame:
    """Per (setting, defense, attack): accuracy and the run-mean diagnostics, averaged
    over seeds (see :func:`byzstress.sim.training.diagnostics`)."""
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
    from ..runs.record import RunRecord

    rows = []
    for p in runs:
        r = RunRecord.read(p)
        s = r.spec_obj
        label = attack_label(s.attack, s.strength, s.knowledge, r.strength)
        run = {
            "path": str(p),
            "defense": s.defense,
            "attack": label,
            "beta": str(s.beta),
            "momentum": r.resolved_obj.momentum,
        }
        diagnostics = {key: r.diagnostic(key) for key in ("rel_err", "cos", "rule_byz_share")}
        for i, step in enumerate(r.diagnostic("step")):
            for key, values in diagnostics.items():
                rows.append({**run, "step": step, "diagnostic": key, "value": values[i]})
        for step, acc in r.curve_of("test_acc"):
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
    write_csv(Path(f"{prefix}-claims.csv"), c)
    write_text(Path(f"{prefix}-claims.md"), claims_markdown(c, metric))
    t = diagnostics_table(df, metric)
    write_csv(Path(f"{prefix}-diagnostics.csv"), t)
    write_text(Path(f"{prefix}-diagnostics.md"), diagnostics_markdown(t, metric))
    if not runs:
        return

    curves = _diagnostic_curves(runs)
    # the figure shows the largest (β, variant) group of omniscient runs and its baseline
    omni = df[df["knowledge"] == "omniscient"]
    beta, variant = omni.groupby(["beta", "variant"]).size().idxmax()
    main = omni[(omni["beta"] == beta) & (omni["variant"] == variant)]
    sel = curves[curves["path"].isin(set(main["path"]))]
    save_figure(diagnostics_figure(sel), [Path(f"{prefix}-diagnostics.png")])
    save_figure(baseline_figure(curves), [Path(f"{prefix}-baseline.png")])
