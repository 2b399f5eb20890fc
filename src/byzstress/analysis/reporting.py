"""From run JSONs to the study's outputs: a tidy CSV, Table 1 (CSV / Markdown / LaTeX),
Figure 1 (PNG / PDF), accuracy curves, the worst-case leaderboard and the calibration table.

Accuracies are reported in percent. Aggregates over seeds are mean ± sample std (ddof = 1;
0 with one seed). Diverged runs count with the accuracy they reached and are flagged (†);
collapsed runs (diverged, or ended at or below 20 % accuracy: ``compare.collapsed``) are
flagged (‡).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..runs.record import RunRecord
from ..sim.spec import RunSpec, knobs
from ..threats.attacks import alie_default_z
from ..threats.grammar import parse
from . import paper
from .compare import COLLAPSE_FINAL_ACC, collapsed
from .labels import ATTACK_NAMES, NO_ATTACK, attack_label, is_baseline, num_text
from .outputs import save_figure, write_csv, write_text

__all__ = [
    "calibration",
    "collect",
    "leaderboard",
    "summarise",
    "table",
]

METRIC_TEXT = {
    "max_acc": "the maximum over the run's evaluations (Figure 1's metric)",
    "final_acc": "at the last step",
}


def _metric_note(metric: str) -> str:
    return f"Accuracies (%): {METRIC_TEXT.get(metric, metric)}, mean over seeds."


def _beta_label(beta: Any) -> str:
    return beta if isinstance(beta, str) else num_text(float(beta))


# The run table's training-knob columns (declared in the run spec); ``variant`` names those
# that differ.
KNOBS = knobs(column=True)
DEFAULTS = RunSpec().to_dict()
# Per-run means over the evaluations of the diagnostics the run JSON records.
DIAG_COLUMNS = (
    "rel_err",
    "cos",
    "norm_ratio",
    "byz_weight_rows",
    "byz_weight_honest_rows",
    "rule_byz_share",
    "byz_values_kept",
)


def _diag_mean(run: RunRecord, key: str) -> float:
    values = [v for v in run.diagnostic(key) if v is not None]
    return float(np.mean(values)) if values else math.nan


def _variants(df: pd.DataFrame) -> pd.Series:
    """``momentum=0, momentum_form=heavy``: the knobs that vary across the runs, per run
    (empty when none varies)."""
    text = df[[k for k in KNOBS if k in df]].map(_knob_text)
    varying = [k for k in text.columns if text[k].nunique() > 1]
    if not varying:
        return pd.Series([""] * len(df), index=df.index, dtype=str)
    return text[varying].apply(lambda row: ", ".join(f"{k}={v}" for k, v in row.items()), axis=1)


def same_training(ref: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``ref`` trained as every row of ``like`` is: equal in each training knob
    (:data:`KNOBS`, compared as text) that is constant across ``like``; a knob missing
    from either side is not compared."""
    mask = pd.Series(True, index=ref.index)
    for k in KNOBS:
        if k in ref and k in like and len(like):
            values = set(like[k].map(_knob_text))
            if len(values) == 1:
                mask &= ref[k].map(_knob_text) == values.pop()
    return ref[mask]


def _knob_text(value: Any) -> str:
    """``0.9``, ``0`` (not ``0.0``), ``ema``: how a knob's value reads in a label."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def collect(paths: list[Path]) -> pd.DataFrame:
    """One row per run JSON; ``variant`` names the training knobs that vary across them,
    ``diag_*`` are the run's mean diagnostics over its evaluations."""
    rows = []
    for p in paths:
        r = RunRecord.read(p)
        s, res = r.spec_obj, r.resolved_obj
        strength = r.strength
        rows.append(
            {
                # a knob missing from an older record had its default then
                **{k: getattr(res, k) for k in KNOBS},
                "dataset": s.dataset,
                "model": res.model,
                "n": s.n,
                "f": s.f,
                "steps": s.steps,
                "beta": _beta_label(s.beta),
                "attack": s.attack,
                "attack_name": ATTACK_NAMES.get(parse(s.attack).name, s.attack),
                "strength": "" if s.strength is None else str(s.strength),
                "strength_value": float(strength)
                if isinstance(strength, int | float)
                else (r.strength_summary or {}).get("median", math.nan),
                "knowledge": s.knowledge,
                "attack_label": attack_label(s.attack, s.strength, s.knowledge, strength),
                "defense": s.defense,
                "seed": s.seed,
                "status": r.status,
                "max_acc": r.max_acc,
                "final_acc": r.final_acc,
                "steps_done": r.steps_done,
                "wall_time_s": r.wall_time_s,
                "steps_per_sec": r.steps_per_sec,
                "device": r.device,
                **{f"diag_{k}": _diag_mean(r, k) for k in DIAG_COLUMNS},
                # measured heterogeneity of the honest split (absent from older records)
                **{
                    f"het_{k}": (r.heterogeneity or {}).get(k, math.nan)
                    for k in ("label_tv_mean", "size_cv")
                },
                "path": str(p),
            }
        )
    df = pd.DataFrame(rows)
    if not df.empty:
        df.insert(df.columns.get_loc("defense") + 1, "variant", _variants(df))
    return df


def read_tidy(csv: Path) -> pd.DataFrame:
    """Read :func:`collect`'s CSV back with β, strength and variant as text ("iid", "auto",
    "")."""
    df = pd.read_csv(csv, dtype={"beta": str, "strength": str, "variant": str})
    df["strength"] = df["strength"].fillna("")
    df["variant"] = df["variant"].fillna("") if "variant" in df else ""
    return df


def collect_cmd(runs: list[Path], out: Path) -> None:
    write_csv(out, collect(runs))


def in_order(values: pd.Series) -> list:
    """The distinct values in the order they first appear."""
    return list(dict.fromkeys(values))


def summarise(df: pd.DataFrame, metric: str = "max_acc") -> pd.DataFrame:
    """Mean/std (in %) over seeds for each (dataset, β, defense, variant, attack label)."""
    keys = [
        "dataset",
        "beta",
        "defense",
        "variant",
        "attack",
        "strength",
        "knowledge",
        "attack_label",
    ]
    if "variant" not in df:
        df = df.assign(variant="")
    gone = collapsed(df["status"], df["final_acc"]) if "final_acc" in df else False
    g = df.assign(value=df[metric].astype(float) * 100, collapsed=gone).groupby(keys, sort=False)
    out = g.agg(
        mean=("value", "mean"),
        std=("value", lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0),
        seeds=("value", "size"),
        diverged=("status", lambda s: int((s == "diverged").sum())),
        collapsed=("collapsed", "sum"),
        strength_value=("strength_value", "median"),
    )
    return out.reset_index()


def table(df: pd.DataFrame, metric: str = "max_acc", with_paper: bool = False) -> pd.DataFrame:
    """Table 1 in long form: one row per (β, defense, attack) with ours and, optionally, the
    paper's numbers; ``strongest`` marks the attack with the lowest mean in each column."""
    t = summarise(df, metric)
    t["strongest"] = False
    attacked = t[~is_baseline(t["attack_label"])]
    if not attacked.empty:
        column = ["dataset", "beta", "defense", "variant"]
        idx = attacked.groupby(column, sort=False)["mean"].idxmin()
        t.loc[idx.dropna().astype(int), "strongest"] = True
    t["defense_label"] = [
        f"{d} [{v}]" if v else d for d, v in zip(t["defense"], t["variant"], strict=True)
    ]
    if with_paper:
        pv = [
            paper.paper_value(float(b), a, d) if b != "iid" else None
            for b, a, d in zip(t["beta"], t["attack_label"], t["defense"], strict=True)
        ]
        t["paper_mean"] = [v[0] if v else math.nan for v in pv]
        t["paper_std"] = [v[1] if v else math.nan for v in pv]
        stands_in = [paper.defense_label(d) != d for d in t["defense"]]
        t.loc[stands_in, "defense_label"] = paper.CMLS_STANDIN
    return t


def _cell(row: pd.Series, bold: tuple[str, str]) -> str:
    if pd.isna(row["mean"]):
        return "–"
    # one seed has no spread: say so instead of printing ± 0.00
    one = int(row.get("seeds", 2)) == 1
    text = f"{row['mean']:.2f} (1 seed)" if one else f"{row['mean']:.2f} ± {row['std']:.2f}"
    if row["diverged"]:
        text += f" †{row['diverged']}/{row['seeds']}"
    if row.get("collapsed", 0):
        text += f" ‡{int(row['collapsed'])}/{row['seeds']}"
    return f"{bold[0]}{text}{bold[1]}" if row["strongest"] else text


def _grid(
    t: pd.DataFrame,
    bold: tuple[str, str],
    with_paper: bool,
    rows: list[str] | None = None,
    defenses: list[str] | None = None,
):
    """Cells by (β, defense) column and attack row, in ``rows`` / ``defenses`` order when
    given, else in order of first appearance."""
    cols = [(b, d) for b in in_order(t["beta"]) for d in defenses or in_order(t["defense_label"])]
    cols = [c for c in cols if ((t["beta"] == c[0]) & (t["defense_label"] == c[1])).any()]
    if rows is not None:
        return cols, _body(t, bold, with_paper, cols, rows)
    rows = in_order(t["attack_label"])
    rows = [a for a in rows if a.startswith(NO_ATTACK)] + [
        a for a in rows if not a.startswith(NO_ATTACK)
    ]
    return cols, _body(t, bold, with_paper, cols, rows)


def _body(t: pd.DataFrame, bold: tuple[str, str], with_paper: bool, cols: list, rows: list):
    body = []
    for a in rows:
        line = [a]
        for b, d in cols:
            sel = t[(t["beta"] == b) & (t["defense_label"] == d) & (t["attack_label"] == a)]
            line.append(_cell(sel.iloc[0], bold) if len(sel) else "–")
            if with_paper:
                pm = sel["paper_mean"].iloc[0] if len(sel) else math.nan
                ps = sel["paper_std"].iloc[0] if len(sel) else math.nan
                line.append("–" if pd.isna(pm) else f"{pm:.2f} ± {ps:.2f}")
        body.append(line)
    return body


def table_markdown(
    t: pd.DataFrame,
    with_paper: bool = False,
    rows: list[str] | None = None,
    defenses: list[str] | None = None,
) -> str:
    """Table 1 as Markdown; ``rows`` (attack labels) and ``defenses`` fix the order."""
    cols, body = _grid(t, ("**", "**"), with_paper, rows, defenses)
    head = ["Attack"]
    for b, d in cols:
        head.append(f"{d} (β={b})" + (" ours" if with_paper else ""))
        if with_paper:
            head.append(f"{d} (β={b}) paper")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    ds = ", ".join(in_order(t["dataset"]))
    what = METRIC_TEXT.get(str(t.attrs.get("metric", "max_acc")), "accuracy")
    notes = [
        "",
        f"Top-1 test accuracy (%), {what}, mean ± std over seeds ({ds}); bold: the "
        "strongest attack (lowest accuracy) in each column.",
    ]
    if t["diverged"].any():
        notes.append("† k/n: k of the n seeds diverged (NaN loss); their accuracy so far counts.")
    if "collapsed" in t and t["collapsed"].any():
        notes.append(
            f"‡ k/n: k of the n seeds collapsed (diverged, or ended at or below "
            f"{100 * COLLAPSE_FINAL_ACC:g} % accuracy; claims.yaml's rule); the mean counts "
            "them like the others."
        )
    if with_paper:
        notes.append(
            "paper: the seed paper's Table 1. CMLS's weighting is not available to us; "
            f"that column is computed with CM and labelled '{paper.CMLS_STANDIN}'."
        )
    return "\n".join(lines + notes) + "\n"


def _tex(s: str) -> str:
    return (
        s.replace("\\", r"\textbackslash{}")
        .replace("_", r"\_")
        .replace("%", r"\%")
        .replace("&", r"\&")
        .replace("#", r"\#")
        .replace("±", r"$\pm$")
        .replace("ε", r"$\epsilon$")
        .replace("β", r"$\beta$")
        .replace("†", r"$^\dagger$")
        .replace("‡", r"$^\ddagger$")
    )


def table_latex(t: pd.DataFrame, with_paper: bool = False) -> str:
    cols, body = _grid(t, ("\\textbf{", "}"), with_paper)
    per = 2 if with_paper else 1
    head = ["Attack"]
    for b, d in cols:
        head.append(f"{d} ($\\beta$={b})" if not with_paper else f"{d} ($\\beta$={b}) ours")
        if with_paper:
            head.append("paper")
    out = [
        "\\begin{tabular}{l" + "c" * (len(cols) * per) + "}",
        "\\toprule",
        " & ".join(_tex(h) if "$" not in h else h for h in head) + " \\\\",
        "\\midrule",
    ]
    for r in body:
        cells = [
            _tex(c) if not c.startswith("\\textbf{") else "\\textbf{" + _tex(c[8:-1]) + "}"
            for c in r
        ]
        out.append(" & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(out) + "\n"


def table_cmd(csv: Path, prefix: Path, metric: str, with_paper: bool) -> None:
    df = read_tidy(csv)
    t = table(df, metric, with_paper)
    t.attrs["metric"] = metric
    write_csv(Path(f"{prefix}.csv"), t)
    write_text(Path(f"{prefix}.md"), table_markdown(t, with_paper))
    write_text(Path(f"{prefix}.tex"), table_latex(t, with_paper))


# ------------------------------------------------------------------------- figures


# The seed band of every figure: the range over seeds (min to max). With a few seeds that
# can split (one survives an attack, two do not), mean ± sd runs past 0 % or 100 %, and
# below 0 on the diagnostics' log axes.
SEED_BAND = ("pi", 100)


def strength_grid(data: pd.DataFrame, x: str, y: str, betas: list):
    """Figure 1's layout: ``y`` against ``x`` (a log axis for ``strength_value``), a line
    per defense (the mean over seeds; band: their range, min to max), a column per β in
    ``betas``, a row per attack (``SEED_BAND``)."""
    import seaborn as sns
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    g = sns.relplot(
        data=data,
        x=x,
        y=y,
        hue="defense",
        style="defense",
        col="beta",
        row="attack_name",
        kind="line",
        markers=True,
        dashes=False,
        errorbar=SEED_BAND,
        col_order=betas,
        height=3.0,
        aspect=1.2,
        facet_kws={"sharex": False, "margin_titles": True},
    )
    g.set_titles(row_template="{row_name}", col_template="β = {col_name}")
    if x == "strength_value":
        for ax in g.axes.flat:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
    return g


def figure(df: pd.DataFrame, metric: str = "max_acc"):
    """Figure 1: accuracy vs attack strength, one line per defense (the mean over seeds,
    band: their min to max), one column per β, one row per attack; dotted: each defense
    without attack."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    d = df.assign(acc=df[metric].astype(float) * 100)
    swept = d[d["attack_name"].isin(["ALIE", "IPM", "Gaussian"]) & (d["strength"] != "auto")]
    if swept.empty:
        swept = d[d["attack_name"] != NO_ATTACK]
        x = "attack_label"
    else:
        x = "strength_value"
    g = strength_grid(swept, x, "acc", in_order(d["beta"]))
    base = d[d["attack_name"] == NO_ATTACK].groupby(["beta", "defense"])["acc"].mean()
    palette = dict(zip(in_order(swept["defense"]), sns.color_palette(n_colors=32), strict=False))
    for (_, beta), ax in g.axes_dict.items():
        for (b, dfn), v in base.items():
            if b == beta and dfn in palette:
                ax.axhline(v, ls=":", lw=1, color=palette[dfn])
    g.set_axis_labels("attack strength (ALIE z, IPM ε)", f"{metric.replace('_', ' ')} (%)")
    g.figure.suptitle(
        f"{', '.join(in_order(d['dataset']))}: accuracy vs attack strength (dotted: no attack)",
        y=1.02,
    )
    return g.figure


def figure_cmd(csv: Path, prefix: Path, metric: str) -> None:
    df = read_tidy(csv)
    fig = figure(df, metric)
    save_figure(fig, [Path(f"{prefix}.png"), Path(f"{prefix}.pdf")])


def curves_cmd(runs: list[Path], out: Path) -> None:
    """Test accuracy over steps, mean over seeds (band: their range), one panel per
    (β, attack)."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    rows = []
    for p in runs:
        r = RunRecord.read(p)
        s = r.spec_obj
        label = attack_label(s.attack, s.strength, s.knowledge, r.strength)
        for step, acc in r.curve_of("test_acc"):
            rows.append(
                {
                    "step": step,
                    "acc": acc * 100,
                    "defense": s.defense,
                    "beta": _beta_label(s.beta),
                    "attack": label,
                }
            )
    df = pd.DataFrame(rows)
    g = sns.relplot(
        data=df,
        x="step",
        y="acc",
        hue="defense",
        col="attack",
        row="beta",
        kind="line",
        errorbar=SEED_BAND,
        height=2.6,
        aspect=1.2,
        facet_kws={"margin_titles": True},
    )
    g.set_axis_labels("step", "test accuracy (%)")
    save_figure(g.figure, [out])


# ------------------------------------------------------------------------- leaderboard


def leaderboard(df: pd.DataFrame, metric: str = "max_acc") -> pd.DataFrame:
    """Per (dataset, defense, β): the worst-case accuracy over every attack and strength
    (mean over seeds), the attack achieving it, and the no-attack accuracy."""
    s = summarise(df, metric)
    rows = []
    for (ds, dfn, var, b), grp in s.groupby(["dataset", "defense", "variant", "beta"], sort=False):
        clean = grp[grp["attack_label"] == NO_ATTACK]
        att = grp[~is_baseline(grp["attack_label"])]
        worst = att.loc[att["mean"].idxmin()] if not att.empty else None
        rows.append(
            {
                "dataset": ds,
                "defense": f"{dfn} [{var}]" if var else dfn,
                "beta": b,
                "no_attack": clean["mean"].iloc[0] if not clean.empty else math.nan,
                "worst_case": worst["mean"] if worst is not None else math.nan,
                "worst_std": worst["std"] if worst is not None else math.nan,
                "worst_attack": worst["attack_label"] if worst is not None else "",
                "attacks_evaluated": len(att),
            }
        )
    out = pd.DataFrame(rows)
    out["drop"] = out["no_attack"] - out["worst_case"]
    return out.sort_values(["dataset", "beta", "worst_case"], ascending=[True, True, False])


def leaderboard_cmd(csv: Path, prefix: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = read_tidy(csv)
    lb = leaderboard(df, metric)
    write_csv(Path(f"{prefix}.csv"), lb)
    lines = [
        "| Defense | β | worst-case acc (%) | by attack | no attack (%) | drop |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in lb.iterrows():
        lines.append(
            f"| {r['defense']} | {r['beta']} | {r['worst_case']:.2f} ± "
            f"{r['worst_std']:.2f} | {r['worst_attack']} | {r['no_attack']:.2f} | "
            f"{r['drop']:.2f} |"
        )
    lines += ["", _metric_note(metric)]
    write_text(Path(f"{prefix}.md"), "\n".join(lines) + "\n")
    acc = lb.pivot(index="defense", columns="beta", values="worst_case")
    who = lb.pivot(index="defense", columns="beta", values="worst_attack")
    annot = acc.round(1).astype(str) + "\n" + who.astype(str)
    fig, ax = plt.subplots(figsize=(2.2 + 2.0 * acc.shape[1], 0.9 + 0.7 * acc.shape[0]))
    sns.heatmap(
        acc,
        annot=annot,
        fmt="",
        cmap="rocket",
        vmin=0,
        vmax=100,
        ax=ax,
        cbar_kws={"label": "worst-case accuracy (%)"},
        annot_kws={"fontsize": 7},
    )
    ax.set_xlabel("β")
    ax.set_title("Worst-case accuracy over all attacks and strengths")
    save_figure(fig, [Path(f"{prefix}.png")])


def calibration(df: pd.DataFrame, fraction: float = 0.5, metric: str = "max_acc") -> pd.DataFrame:
    """Per (dataset, β, defense, attack ∈ {ALIE, IPM}), a description of the means over
    seeds: the strength of lowest mean accuracy and that accuracy (columns
    ``most_damaging_strength``/``acc_at_most_damaging``, names kept for the published
    CSVs), the breaking strength (smallest strength whose accuracy falls below
    ``fraction`` × no-attack accuracy), the IID-calibrated default (Baruch's z, ε = 0.1)
    and the accuracy there, and the accuracy under ``auto``."""
    s = summarise(df, metric)
    s["name"] = [parse(a).name for a in s["attack"]]
    rows = []
    for (ds, b, dfn), grp in s.groupby(["dataset", "beta", "defense"], sort=False):
        clean = grp[grp["attack_label"] == NO_ATTACK]["mean"]
        base = clean.iloc[0] if len(clean) else math.nan
        nf = df[(df["dataset"] == ds)][["n", "f"]].iloc[0]
        for name in ("alie", "ipm"):
            att = grp[grp["name"] == name]
            if att.empty:
                continue
            numeric = att[att["strength"] != "auto"].sort_values("strength_value")
            auto = att[att["strength"] == "auto"]
            worst = att.loc[att["mean"].idxmin()]
            broken = numeric[numeric["mean"] < fraction * base]
            iid = alie_default_z(int(nf["n"]), int(nf["f"])) if name == "alie" else 0.1
            at_iid = numeric[np.isclose(numeric["strength_value"], iid, rtol=1e-3, atol=1e-3)]
            rows.append(
                {
                    "dataset": ds,
                    "beta": b,
                    "defense": dfn,
                    "attack": ATTACK_NAMES[name],
                    "no_attack": base,
                    "most_damaging_strength": worst["strength"]
                    or num_text(worst["strength_value"]),
                    "acc_at_most_damaging": worst["mean"],
                    "breaking_strength": broken["strength_value"].iloc[0]
                    if len(broken)
                    else math.nan,
                    "iid_default_strength": round(iid, 4),
                    "acc_at_iid_default": at_iid["mean"].iloc[0] if len(at_iid) else math.nan,
                    "acc_at_auto": auto["mean"].iloc[0] if len(auto) else math.nan,
                    "auto_strength_median": auto["strength_value"].iloc[0]
                    if len(auto)
                    else math.nan,
                    "fraction": fraction,
                }
            )
    return pd.DataFrame(rows)


def calibration_cmd(csv: Path, prefix: Path, fraction: float, metric: str) -> None:
    df = read_tidy(csv)
    cal = calibration(df, fraction, metric)
    write_csv(Path(f"{prefix}.csv"), cal)
    lines = [
        "| Dataset | β | Defense | Attack | no attack | lowest mean at (acc) | "
        f"breaking (< {fraction:g}× clean) | IID default (acc) | auto (acc) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in cal.iterrows():
        breaking = "none" if pd.isna(r["breaking_strength"]) else num_text(r["breaking_strength"])
        lines.append(
            f"| {r['dataset']} | {r['beta']} | {r['defense']} | {r['attack']} | "
            f"{r['no_attack']:.2f} | {r['most_damaging_strength']} "
            f"({r['acc_at_most_damaging']:.2f})"
            f" | {breaking} | "
            f"{r['iid_default_strength']:g} ({r['acc_at_iid_default']:.2f}) | "
            f"{r['acc_at_auto']:.2f} |"
        )
    lines += [
        "",
        _metric_note(metric),
        "",
        "*Lowest mean at*: the strength whose mean accuracy "
        "is lowest; *breaking*: the smallest strength whose mean falls below the fraction of "
        "the no-attack mean. Both describe the means (no interval; strengths whose means "
        "differ by less than the seeds' noise are not told apart): they are not tests, and "
        "no claim is decided from them (docs/claims.md).",
    ]
    write_text(Path(f"{prefix}.md"), "\n".join(lines) + "\n")
