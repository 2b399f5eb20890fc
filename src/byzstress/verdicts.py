"""Does a study reproduce the seed paper's claims, and under which threat model?

A *setting* is one side of every threat-model choice a study varies: β, the training
knobs of the run's ``variant`` (worker momentum, its form, ...) and the attacker's
knowledge. Its no-attack baseline is the ``none`` run of the same β and variant (knowledge
plays no part without an attack). For each setting and defense (a Table-1 *column*) the
claims of the seed paper are checked on the summary over seeds (:func:`reporting.summarise`):

``strength``
    Figure 1's shape: the paper's strengths hurt more than the IID-calibrated ones —
    ALIE (z=8) below ALIE at its default z, and IPM (ε=2.5) below IPM (ε=0.1).
``alie_far_below``
    Calibrated ALIE (z=8) "drives accuracy far below" the other attacks: below every other
    attack of the setting by more than the margin.
``alie_strongest``
    ALIE (z=8) is the strongest attack of the column (the lowest mean accuracy), ahead of
    IPM (ε=2.5), MinMax and MinSum where they ran.
``ipm_runner_up``
    IPM (ε=2.5) is the second strongest.

A difference counts when it exceeds the *margin*: ``max(min_points, k · s)`` with ``s``
the larger of the two cells' standard deviations over seeds (``k`` = 2, ``min_points`` = 1
accuracy point). With one seed ``s`` is 0 and only ``min_points`` guards against noise; the
tables say how many seeds each cell had.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .reporting import (
    METRIC_TEXT,
    NO_ATTACK,
    _save_fig,
    _write_csv,
    _write_text,
    is_baseline,
    read_tidy,
    summarise,
)

__all__ = ["CLAIMS", "claims", "claims_markdown", "diagnostics_table", "sensitivity_cmd"]

CLAIMS = {
    "strength": "larger strengths hurt more than IID-calibrated ones (Figure 1's shape)",
    "alie_far_below": "calibrated ALIE (z=8) drives accuracy far below the other attacks",
    "alie_strongest": "ALIE (z=8) is the strongest attack in every column, ahead of MinMax/MinSum",
    "ipm_runner_up": "IPM (ε=2.5) is the runner-up",
}
ALIE8, IPM25 = "ALIE (z=8)", "IPM (ε=2.5)"


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


def _margin(a: pd.Series, b: pd.Series, k: float, min_points: float) -> float:
    return max(min_points, k * max(float(a["std"]), float(b["std"])))


def _lower(a: pd.Series, b: pd.Series, k: float, min_points: float) -> bool:
    """``a`` is below ``b`` by more than the margin."""
    return float(a["mean"]) < float(b["mean"]) - _margin(a, b, k, min_points)


def _cell(col: pd.DataFrame, label: str) -> pd.Series | None:
    sel = col[col["attack_base"] == label]
    return sel.iloc[0] if len(sel) else None


def _fmt(row: pd.Series | None) -> str:
    if row is None:
        return "–"
    return f"{row['mean']:.1f}±{row['std']:.1f} (n={int(row['seeds'])})"


def claims(
    df: pd.DataFrame, metric: str = "max_acc", k: float = 2.0, min_points: float = 1.0
) -> pd.DataFrame:
    """One row per (claim, setting, defense): whether the claim holds in that column
    (``True``/``False``; ``None`` when the setting lacks the runs to test it) and the
    numbers it was decided on."""
    s = settings_frame(df, metric)
    rows: list[dict[str, Any]] = []
    for (setting, defense), col in s.groupby(["setting", "defense"], sort=False):
        attacked = col[~is_baseline(col["attack_label"])].sort_values("mean")
        alie, ipm = _cell(col, ALIE8), _cell(col, IPM25)
        ranking = " < ".join(f"{r['attack_base']} {r['mean']:.1f}" for _, r in attacked.iterrows())
        common = {"setting": setting, "defense": defense, "ranking": ranking}

        # strength: the paper's strength below the IID-calibrated one (ALIE's default z,
        # IPM ε=0.1) of the same attack
        verdicts, evidence = [], []
        for name, small in (("alie", ""), ("ipm", "0.1")):
            hi = _cell(col, ALIE8 if name == "alie" else IPM25)
            lo_rows = col[(col["attack"] == name) & (col["strength"] == small)]
            if hi is None or lo_rows.empty:
                continue
            lo = lo_rows.iloc[0]
            verdicts.append(_lower(hi, lo, k, min_points))
            evidence.append(f"{hi['attack_base']} {_fmt(hi)} vs {lo['attack_base']} {_fmt(lo)}")
        rows.append(
            {
                **common,
                "claim": "strength",
                "holds": all(verdicts) if verdicts else None,
                "evidence": "; ".join(evidence),
            }
        )

        others = attacked[attacked["attack_base"] != ALIE8]
        paper_rivals = others[others["attack_base"].isin([IPM25, "MinMax", "MinSum"])]
        if alie is None or others.empty:
            far = strongest = None
            ev = ""
        else:
            far = all(_lower(alie, o, k, min_points) for _, o in others.iterrows())
            strongest = (
                bool(float(alie["mean"]) < paper_rivals["mean"].min())
                if not paper_rivals.empty
                else None
            )
            nxt = others.iloc[0]
            ev = f"ALIE (z=8) {_fmt(alie)}; next: {nxt['attack_base']} {_fmt(nxt)}"
        rows.append({**common, "claim": "alie_far_below", "holds": far, "evidence": ev})
        rows.append({**common, "claim": "alie_strongest", "holds": strongest, "evidence": ev})

        rivals = attacked[attacked["attack_base"].isin([ALIE8, IPM25, "MinMax", "MinSum"])]
        if ipm is None or len(rivals) < 3:
            runner = None
            ev = ""
        else:
            order = list(rivals["attack_base"])
            runner = order.index(IPM25) == 1
            ev = f"IPM (ε=2.5) {_fmt(ipm)} is #{order.index(IPM25) + 1} of {len(order)}"
        rows.append({**common, "claim": "ipm_runner_up", "holds": runner, "evidence": ev})
    return pd.DataFrame(rows)


def _summary(c: pd.DataFrame) -> pd.DataFrame:
    """Per (claim, setting): in how many of the tested columns the claim holds."""
    tested = c[c["holds"].notna()]
    if tested.empty:
        return pd.DataFrame(columns=["claim", "setting", "holds_in", "columns", "where"])
    g = tested.groupby(["claim", "setting"], sort=False)
    out = g.agg(
        holds_in=("holds", lambda h: int(sum(bool(x) for x in h))),
        columns=("holds", "size"),
        where=(
            "defense",
            lambda d: ", ".join(
                f"{x}{'' if bool(h) else ' ✗'}"
                for x, h in zip(d, tested.loc[d.index, "holds"], strict=True)
            ),
        ),
    )
    return out.reset_index()


def claims_markdown(c: pd.DataFrame, metric: str = "max_acc") -> str:
    summ = _summary(c)
    lines = [
        "| Claim | Setting | holds in | columns (✗: fails) |",
        "|---|---|---|---|",
    ]
    for claim in CLAIMS:
        for _, r in summ[summ["claim"] == claim].iterrows():
            lines.append(
                f"| {CLAIMS[claim]} | {r['setting']} | {r['holds_in']}/{r['columns']} | "
                f"{r['where']} |"
            )
    lines += [
        "",
        "A column is one defense in one setting. Accuracies: "
        f"{METRIC_TEXT.get(metric, metric)}, mean ± std over seeds (n = seeds per cell). "
        "Differences count when they exceed max(1 point, 2 × the larger std over seeds).",
        "",
        "## Evidence per column",
        "",
        "| Claim | Setting | Defense | holds | evidence | ranking (mean %) |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in c[c["holds"].notna()].iterrows():
        mark = "yes" if bool(r["holds"]) else "no"
        lines.append(
            f"| {r['claim']} | {r['setting']} | {r['defense']} | {mark} | {r['evidence']} | "
            f"{r['ranking']} |"
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
    defense, a line per attack (band: ± std over seeds)."""
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
        errorbar="sd",
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
        errorbar="sd",
        height=2.6,
        aspect=1.2,
    )
    g.set_axis_labels("step", "test accuracy (%), no attack")
    return g.figure


def sensitivity_cmd(csv: Path, runs: list[Path], prefix: Path, metric: str) -> None:
    """Write ``PREFIX-claims.{csv,md}``, ``PREFIX-diagnostics.{csv,md}`` and the figures
    ``PREFIX-diagnostics.png`` (the setting with the most omniscient runs: every attack and
    the baseline over steps) and ``PREFIX-baseline.png`` (no-attack accuracy over steps: has
    training plateaued?)."""
    df = read_tidy(csv)
    c = claims(df, metric)
    _write_csv(Path(f"{prefix}-claims.csv"), c)
    _write_text(Path(f"{prefix}-claims.md"), claims_markdown(c, metric))
    t = diagnostics_table(df, metric)
    _write_csv(Path(f"{prefix}-diagnostics.csv"), t)
    _write_text(Path(f"{prefix}-diagnostics.md"), diagnostics_markdown(t, metric))

    curves = _diagnostic_curves(runs)
    # the figure shows the largest (β, variant) group of omniscient runs and its baseline
    omni = df[df["knowledge"] == "omniscient"]
    beta, variant = omni.groupby(["beta", "variant"]).size().idxmax()
    main = omni[(omni["beta"] == beta) & (omni["variant"] == variant)]
    sel = curves[curves["path"].isin(set(main["path"]))]
    _save_fig(diagnostics_figure(sel), [Path(f"{prefix}-diagnostics.png")])
    _save_fig(baseline_figure(curves), [Path(f"{prefix}-baseline.png")])
