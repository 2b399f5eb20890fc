"""The README's numbers, built from the studies' published outputs, not typed.

Every number README.md (and each file of ``FILES``) quotes about a study sits in a
*generated block*::

    <!-- begin generated NAME -->
    ...
    <!-- end generated NAME -->

``byzstress readme`` rewrites each block from the committed outputs its generator reads
(``docs/<study>/runs.csv``, themselves built from the published run records,
``docs/<study>/runs.tar.xz``); ``byzstress readme --check`` exits 1 and names the blocks
that differ, and tests/test_readme.py fails the same way. Every block says which
accuracy it shows (max or final) and where its numbers come from.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from byzstress.analysis import paper
from byzstress.analysis.compare import INCONCLUSIVE, decide, welch
from byzstress.analysis.labels import NO_ATTACK, attack_label, is_baseline
from byzstress.analysis.reporting import (
    METRIC_TEXT,
    read_tidy,
    summarise,
    table,
    table_markdown,
)
from byzstress.analysis.verdicts import (
    ALIE8,
    CLAIMS,
    IPM25,
    RIVALS,
    RULE_TEXT,
    VERDICTS,
    Cell,
    below,
    ci_text,
    claims,
    verdict_summary,
)
from byzstress.runs.record import RunRecord
from byzstress.threats.grammar import parse

__all__ = ["BLOCKS", "FILES", "check", "render"]

# the files whose generated blocks `byzstress readme` rebuilds, relative to the root
FILES = (
    "README.md",
    "docs/figure1cpu/README.md",
    "docs/table1cpu/README.md",
    "docs/paper.md",
    "docs/results.md",
    "docs/reproducibility.md",
    "docs/configuration.md",
    "docs/methods.md",
)

SENS = "docs/sensitivity"
DEMO = "docs/demo"
MAX = METRIC_TEXT["max_acc"]
BLOCK = re.compile(
    r"(<!-- begin generated (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated (?P=name) -->)",
    re.S,
)

# the labels the findings below look up, made as the run table makes them (ALIE8, IPM25
# and the rivals come from verdicts)
ALIE8_LOCAL, IPM25_LOCAL = attack_label("alie", 8, "local"), attack_label("ipm", 2.5, "local")
MINMAX, MINSUM = RIVALS


def _pct(x: float) -> str:
    return f"{x:.1f}"


def _main_setting(df: pd.DataFrame) -> tuple[str, str]:
    """The (β, variant) with the most runs: the study's main setting."""
    beta, variant = df.groupby(["beta", "variant"]).size().idxmax()
    return str(beta), str(variant)


def _cell(df: pd.DataFrame, defense: str, label: str, metric: str = "max_acc") -> Cell | None:
    sel = df[(df["defense"] == defense) & (df["attack_label"] == label)]
    if sel.empty:
        return None
    values = {int(s): float(v) * 100 for s, v in zip(sel["seed"], sel[metric], strict=True)}
    return Cell(label, values)


# --------------------------------------------------------------------- sensitivity


def _sens(root: Path) -> pd.DataFrame:
    return read_tidy(root / SENS / "runs.csv")


def verdicts_block(root: Path) -> str:
    """Per claim and setting: in how many defense columns it is supported, contradicted,
    inconclusive (:func:`byzstress.analysis.verdicts.claims`: Welch tests, Holm across columns)."""
    c = claims(_sens(root))
    summ = verdict_summary(c)
    lines = [
        f"| Check (the paper's claim it bears on) | Setting | {' / '.join(VERDICTS)} | columns |",
        "|---|---|---|---|",
    ]
    for claim, text in CLAIMS.items():
        for _, r in summ[summ["claim"] == claim].iterrows():
            n = " / ".join(str(r[v]) for v in VERDICTS)
            lines.append(f"| {text} | {r['setting']} | {n} | {r['where']} |")
    tested = c["verdict"].notna()
    untestable = int((tested & c["p_for"].isna()).sum())
    lines += [
        "",
        f"Accuracy: {MAX}. ✗ contradicted, ? {INCONCLUSIVE}. {untestable} of "
        f"{int(tested.sum())} tested columns have a side with one seed, so no test. "
        f"{RULE_TEXT} Source: `{SENS}/runs.csv` → `{SENS}/sensitivity-claims.md` (every "
        "comparison, its seeds, estimate and interval).",
    ]
    return "\n".join(lines)


def sensitivity_table_block(root: Path) -> str:
    """The main setting's accuracy table: every attack (both knowledge modes) × defense."""
    df = _sens(root)
    beta, variant = _main_setting(df)
    sub = df[(df["beta"] == beta) & (df["variant"] == variant)].assign(variant="")
    md = _markdown(table(sub))
    return md + f" Setting: β = {beta}, {variant or 'default knobs'}. Source: `{SENS}/runs.csv`."


DEFENSE_ORDER = ("RFA(buck)", "CM", "CCLIP", "trMean(NNM)")
FAMILY_ORDER = ("none", "alie", "ipm", "minmax", "minsum")


def _default_label(runs: pd.DataFrame, attack: str) -> str | None:
    """The label of ``attack`` run at its default strength by the omniscient attacker (the
    default's value is in the label, so it is looked up, not typed)."""
    sel = runs[
        (runs["attack"] == attack) & (runs["strength"] == "") & (runs["knowledge"] == "omniscient")
    ]
    return sel["attack_label"].iloc[0] if len(sel) else None


def _markdown(t: pd.DataFrame) -> str:
    """Table 1 with the paper's column order and rows by attack family, knowledge and
    strength (the IID-calibrated default before the grid)."""

    def key(r: pd.Series) -> tuple:
        fam = parse(r["attack"]).name
        strength = -1.0 if pd.isna(r["strength_value"]) else float(r["strength_value"])
        return (
            FAMILY_ORDER.index(fam) if fam in FAMILY_ORDER else len(FAMILY_ORDER),
            r["knowledge"] == "local",
            strength,
            r["attack_label"],
        )

    rows = list(
        dict.fromkeys(r["attack_label"] for _, r in sorted(t.iterrows(), key=lambda x: key(x[1])))
    )
    present = list(dict.fromkeys(t["defense_label"]))
    defenses = [d for d in DEFENSE_ORDER if d in present] + [
        d for d in present if d not in DEFENSE_ORDER
    ]
    return table_markdown(t, rows=rows, defenses=defenses).rstrip("\n")


def _diff(a: Cell | None, b: Cell | None) -> str:
    """``mean(a) − mean(b)`` with its 95 % Welch interval and the seeds per side."""
    if a is None or b is None:
        return "–"
    c = welch(list(a.values.values()), list(b.values.values()))
    if pd.isna(c.ci_low):
        return f"{c.estimate:+.1f} ({c.seeds} seeds, no interval)"
    return f"{ci_text(c)} ({c.seeds} seeds)"


def options_block(root: Path) -> str:
    """The threat-model options' effect, within the seeds both sides ran."""
    df = _sens(root)
    beta, variant = _main_setting(df)
    main = df[(df["beta"] == beta) & (df["variant"] == variant)]
    rows = [
        (
            "baseline: n − f honest senders against n",
            attack_label("none[senders=honest]", None),
            NO_ATTACK,
        ),
        (
            "Min-Sum bound: notebooks' min against the NDSS max",
            attack_label("minsum[bound=min]", None),
            MINSUM,
        ),
        (
            "ALIE default z: Baruch's against Karimireddy's",
            _default_label(main, "alie[zrule=baruch]"),
            _default_label(main, "alie"),
        ),
        ("local attacker against omniscient: ALIE z=8", ALIE8_LOCAL, ALIE8),
        ("local attacker against omniscient: IPM ε=2.5", IPM25_LOCAL, IPM25),
    ]
    present = list(dict.fromkeys(main["defense"]))
    defenses = [d for d in DEFENSE_ORDER if d in present] + [
        d for d in present if d not in DEFENSE_ORDER
    ]
    lines = ["| Option (first against second) | " + " | ".join(defenses) + " |"]
    lines.append("|---|" + "---|" * len(defenses))
    for text, a, b in rows:
        if a is None or b is None:
            continue
        cells = [_diff(_cell(main, d, a), _cell(main, d, b)) for d in defenses]
        if all(c == "–" for c in cells):
            continue
        lines.append(f"| {text} | " + " | ".join(cells) + " |")
    # worker momentum: its own variant
    other = [v for v in dict.fromkeys(df["variant"]) if v != variant]
    for v in other:
        sub = df[(df["beta"] == beta) & (df["variant"] == v)]
        if sub.empty:
            continue
        for label in (NO_ATTACK, ALIE8, IPM25):
            cells = []
            for d in defenses:
                a, b = _cell(sub, d, label), _cell(main, d, label)
                text = _diff(a, b)
                cells.append(text if a is None or b is None else f"{text}; {_pct(a.mean)} %")
            lines.append(f"| {v} against {variant}: {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Differences in accuracy points ({MAX}), first option's mean minus second's, "
        "with the 95 % Welch interval (Welch 1947) and the seeds per side: a description, "
        "not a test. A side with one seed has no interval (the one-seed options: their "
        "noise one seed cannot show; the main setting's two-seed cells have a std over "
        f"seeds of {_std_range(main)} points). β = {beta}. Source: `{SENS}/runs.csv`.",
    ]
    return "\n".join(lines)


def _std_range(df: pd.DataFrame) -> str:
    s = summarise(df)
    std = s.loc[s["seeds"] > 1, "std"]
    return f"{std.median():.1f} (median; {std.min():.1f} to {std.max():.1f})"


def diagnostics_block(root: Path) -> str:
    """Where the Byzantine weight goes, for the paper's two attacks and the baseline."""
    df = _sens(root)
    beta, variant = _main_setting(df)
    main = df[(df["beta"] == beta) & (df["variant"] == variant) & (df["knowledge"] == "omniscient")]
    keep = [NO_ATTACK, ALIE8, IPM25, MINMAX, MINSUM]
    cols = {
        "diag_rel_err": "‖agg−μ_h‖/‖μ_h‖",
        "diag_byz_weight_rows": "Byz. weight in rows",
        "diag_byz_weight_honest_rows": "Byz. weight in honest rows",
        "diag_rule_byz_share": "Byz. share of the rule's output",
        "diag_byz_values_kept": "Byz. values kept / coord.",
    }
    lines = ["| Defense | Attack | acc (%) | " + " | ".join(cols.values()) + " |"]
    lines.append("|---|---|---|" + "---|" * len(cols))
    g = main.groupby(["defense", "attack_label"], sort=False)
    for (defense, label), grp in g:
        if label not in keep:
            continue
        vals = [grp[c].mean() for c in cols]
        text = ["–" if pd.isna(v) else f"{v:.3f}" for v in vals]
        acc = grp["max_acc"].astype(float) * 100
        lines.append(
            f"| {defense} | {label} | {acc.mean():.1f} (n={len(acc)}) | " + " | ".join(text) + " |"
        )
    lines += [
        "",
        f"β = {beta}, {variant}, omniscient. Diagnostics: each run's mean over its "
        "evaluations, then the mean over seeds; rows: the vectors the rule sees after the "
        "pre-aggregators (bucketing, NNM); honest rows: those standing for an honest input "
        f"(NNM only). acc: {MAX}. Source: `{SENS}/runs.csv` (per step: the run JSONs' "
        "`diagnostics`).",
    ]
    return "\n".join(lines)


# the comparisons the README's prose rests on: (defense, a, b) within the main setting
PROSE_COMPARISONS = (
    ("RFA(buck)", ALIE8, MINMAX),
    ("trMean(NNM)", ALIE8, NO_ATTACK),
    ("trMean(NNM)", IPM25, NO_ATTACK),
    ("CM", IPM25, NO_ATTACK),
    ("CM", ALIE8, MINSUM),
    ("CCLIP", MINSUM, ALIE8),
    ("CM", ALIE8_LOCAL, ALIE8),
    ("CCLIP", ALIE8_LOCAL, ALIE8),
)


def comparisons_block(root: Path) -> str:
    """Each comparison the prose names, "a below b": Welch's test of the two cells' seeds,
    Holm across the rows (:func:`byzstress.analysis.compare.decide`)."""
    df = _sens(root)
    beta, variant = _main_setting(df)
    main = df[(df["beta"] == beta) & (df["variant"] == variant)]
    found = []
    for defense, a, b in PROSE_COMPARISONS:
        ca, cb = _cell(main, defense, a), _cell(main, defense, b)
        if ca is not None and cb is not None:
            found.append((defense, below(ca, cb)))
    decided = decide([x.comparison for _, x in found])
    lines = [
        "| Defense | a below b? | b − a (points) [95 % CI] | p (Holm) | outcome |",
        "|---|---|---|---|---|",
    ]
    for (defense, x), c in zip(found, decided, strict=True):
        p = "–" if pd.isna(c.p_for_adj) else f"{c.p_for_adj:.3g}"
        lines.append(
            f"| {defense} | {x.a.label} {x.a.text()} below {x.b.label} {x.b.text()} | "
            f"{ci_text(c)} | {p} | {c.outcome} |"
        )
    lines += [
        "",
        f"β = {beta}, {variant}; {MAX}. Each row: a one-sided Welch t-test (Welch 1947) of "
        "b − a > 0 and its 95 % Welch interval; p and outcome Holm-adjusted (Holm 1979) "
        "across the rows, α = 0.05: supported (a is below b), contradicted (a is above b), "
        "no effect (|b − a| < 3 points, two one-sided tests) or inconclusive "
        f"(`byzstress.analysis.compare`). Source: `{SENS}/runs.csv`.",
    ]
    return "\n".join(lines)


def byzfl_block(root: Path) -> str:
    """The cross-checks against ByzFL (``docs/sensitivity/byzfl_check*.json``): every
    cell, both frameworks, the difference."""
    lines = [
        "| Cell (seed) | byzstress max / final acc (%) | ByzFL max / final acc (%) "
        "| max acc difference |",
        "|---|---|---|---|",
    ]
    notes = []
    for path in sorted((root / SENS).glob("byzfl_check*.json")):
        d = json.loads(path.read_text())
        for r in d["runs"]:
            a, b = r["byzstress"], r["byzfl"]
            ours = f"{a['max_acc'] * 100:.2f} / {a['final_acc'] * 100:.2f}"
            lines.append(
                f"| {r['cell']} ({r['seed']}) | {ours} | "
                f"{b['max_acc'] * 100:.2f} / {b['final_acc'] * 100:.2f} | "
                f"{(a['max_acc'] - b['max_acc']) * 100:+.2f} |"
            )
        s = d["settings"]
        notes.append(
            f"`{SENS}/{path.name}`: {', '.join(r['cell'] for r in d['runs'])}; {s['steps']} "
            f"steps, n = {s['n']}, f = {s['f']}, β = {s['beta']}, on {d['machine']['cpu']}."
        )
    lines += ["", "Same θ0, splits and batches on both sides. Sources: " + " ".join(notes)]
    return "\n".join(lines)


# --------------------------------------------------------------------- demo


def _demo(root: Path) -> pd.DataFrame:
    return read_tidy(root / DEMO / "runs.csv")


def demo_table_block(root: Path) -> str:
    df = _demo(root)
    kernels = _demo_machine(root)
    return _markdown(table(df)) + f" Source: `{DEMO}/runs.csv` ({kernels})."


def _machine(records: Iterable[RunRecord]) -> str:
    """Where run records were computed (from the records themselves)."""
    envs = set()
    for r in records:
        envs.add((r.cpu_model, r.cpu_capability, r.threads, r.torch_version))
    return "; ".join(
        f"{cpu}, torch {torch} (capability {cap}), {t} thread{'s' if t > 1 else ''} per run"
        for cpu, cap, t, torch in sorted(envs, key=str)
    )


def _demo_machine(root: Path) -> str:
    """Where the published demo records were computed."""
    from byzstress.runs.archive import read_records

    return _machine(read_records(root / DEMO / "runs.tar.xz").values())


def demo_findings_block(root: Path) -> str:
    """Each defense's drop per attack, and the gap between its strongest attack and the
    runner-up with its 95 % Welch interval. Descriptive: the pair is chosen by its observed
    means, so a test of it would be a test after selection."""
    df = _demo(root)
    s = summarise(df)
    found = []
    for defense, col in s.groupby("defense", sort=False):
        base = col[is_baseline(col["attack_label"])]
        att = col[~is_baseline(col["attack_label"])].sort_values("mean")
        if base.empty or len(att) < 2:
            continue
        first, second = att.iloc[0], att.iloc[1]
        strongest = _cell(df, defense, first["attack_label"])
        runner_up = _cell(df, defense, second["attack_label"])
        if strongest is None or runner_up is None:
            continue
        found.append((defense, float(base["mean"].iloc[0]), att, below(strongest, runner_up)))
    lines = []
    for defense, clean, att, x in found:
        c = x.comparison
        drops = ", ".join(
            f"{r['attack_label']} {clean - r['mean']:+.1f}" for _, r in att.iterrows()
        )
        lines.append(
            f"- **{defense}**: no attack {_pct(clean)} %; drop per attack (points below it) "
            f"{drops}. Lowest mean: {x.a.label} ({_pct(x.a.mean)} %), below the runner-up "
            f"{x.b.label} by {ci_text(c)}."
        )
    seeds = int(s["seeds"].max())
    lines.append(
        f"\nAccuracy: {MAX}, mean over {seeds} seeds. Lowest against runner-up: the "
        "runner-up's mean minus the lowest's with its 95 % Welch interval "
        "(`byzstress.analysis.compare`). A description, not a test: the two attacks are "
        "picked by their observed means, and a test of a pair chosen that way would overstate "
        f"its evidence. Source: `{DEMO}/runs.csv`."
    )
    return "\n".join(lines)


# The demo's records from a second CPU (an AMD EPYC; docs/demo/README.md), and the Table 1
# that kind of machine gave six days before them (means and stds only: its records were lost)
DEMO_OTHER = "runs-amd-epyc"
DEMO_OTHER_TABLE = "table1-amd-epyc.csv"


def demo_cpus_block(root: Path) -> str:
    """The demo's runs on two CPUs, record by record and cell by cell (how far the means
    move against the seeds' spread), and the second CPU's cells against the table the same
    kind of machine gave earlier."""
    from byzstress.runs.archive import read_records

    here = _demo(root)
    there = read_tidy(root / DEMO / f"{DEMO_OTHER}.csv")
    records_here, records_there = (
        read_records(root / DEMO / f).values() for f in ("runs.tar.xz", f"{DEMO_OTHER}.tar.xz")
    )
    where = _machine(records_there)
    a, b = (
        " and ".join(sorted({_record_cpu(r) for r in rs})) for rs in (records_here, records_there)
    )
    prefix = "results/demo/runs/"
    r = here.merge(there, on="path", suffixes=("", "_o"))
    if not len(r) == len(here) == len(there):
        raise ValueError(f"{DEMO}/{DEMO_OTHER}.csv and {DEMO}/runs.csv hold different runs")
    same = int(((r["max_acc"] == r["max_acc_o"]) & (r["final_acc"] == r["final_acc_o"])).sum())
    r["delta"] = (r["max_acc_o"] - r["max_acc"]).abs() * 100
    w = r.loc[r["delta"].idxmax()]
    records = (
        f"Record by record, {same} of {len(r)} runs have the same max and final accuracy on "
        f"both CPUs; max accuracy differs by {r['delta'].median():.2f} points (median) and at "
        f"most {w['delta']:.2f} (`{w['path'].removeprefix(prefix)}`: "
        f"{w['max_acc'] * 100:.2f} on {a}, {w['max_acc_o'] * 100:.2f} on {b})."
    )
    cells_there = summarise(there)
    m = summarise(here).merge(cells_there, on=["defense", "attack_label"], suffixes=("", "_o"))
    m["delta"] = m["mean"] - m["mean_o"]
    m["spread"] = m[["std", "std_o"]].max(axis=1)
    inside = int((m["delta"].abs() <= m["spread"]).sum())
    strongest = 0
    cols = 0
    for _, col in m[~is_baseline(m["attack_label"])].groupby("defense"):
        cols += 1
        strongest += (
            col.loc[col["mean"].idxmin(), "attack_label"]
            == col.loc[col["mean_o"].idxmin(), "attack_label"]
        )
    c = m.loc[m["delta"].abs().idxmax()]
    cells = (
        f"Cell by cell, the {len(m)} means differ by {m['delta'].abs().median():.2f} points "
        f"(median) and at most {abs(c['delta']):.2f} ({c['attack_label']} against "
        f"{c['defense']}: {c['mean']:.2f} ± {c['std']:.2f} on {a}, {c['mean_o']:.2f} ± "
        f"{c['std_o']:.2f} on {b}); {inside} of {len(m)} differences are within the larger of "
        f"the two seed stds, and the strongest attack is the same in {strongest} of {cols} "
        "columns."
    )
    old = pd.read_csv(root / DEMO / DEMO_OTHER_TABLE)
    k = cells_there.merge(old, on=["defense", "attack_label"], suffixes=("", "_t"))
    agree = sum(
        f"{m1:.2f}" == f"{m2:.2f}" and f"{s1:.2f}" == f"{s2:.2f}"
        for m1, m2, s1, s2 in zip(k["mean"], k["mean_t"], k["std"], k["std_t"], strict=True)
    )
    earlier = (
        f"Against the table computed on {b} before (`{DEMO}/{DEMO_OTHER_TABLE}`, "
        f"means and stds to two decimals), {agree} of {len(k)} cells agree in mean and std."
    )
    return (
        f"The second CPU: {where}. {records} {cells} {earlier} Source: `{DEMO}/runs.csv` against "
        f"`{DEMO}/{DEMO_OTHER}.csv` (records: `{DEMO}/{DEMO_OTHER}.tar.xz`; {MAX})."
    )


def _record_cpu(record: RunRecord) -> str:
    """The CPU model a run record names (its ``kernels``)."""
    return record.cpu_model or "unknown CPU"


def shared_cells_block(root: Path) -> str:
    """The cells the sensitivity and figure1cpu studies both publish, trained twice: once
    for the sensitivity study, once again for figure1cpu (the sensitivity records were not
    kept), on the CPU each figure1cpu record names. Same machine kind: same numbers?"""
    from byzstress.runs.archive import read_records

    records = read_records(root / "docs/figure1cpu/runs.tar.xz")
    prefix = "results/sensitivity/runs/"
    m = _sens(root).merge(
        read_tidy(root / "docs/figure1cpu/runs.csv"), on="path", suffixes=("_s", "_f")
    )
    m["cpu"] = [_record_cpu(records[p.removeprefix(prefix)]) for p in m["path"]]
    m["same"] = (m["max_acc_s"] == m["max_acc_f"]) & (m["final_acc_s"] == m["final_acc_f"])
    m["delta"] = (m["max_acc_f"] - m["max_acc_s"]).abs() * 100
    parts = []
    for cpu, g in m.groupby("cpu"):
        same = int(g["same"].sum())
        text = (
            f"of those trained again on {cpu}, {same} of {len(g)} have the same max and "
            "final accuracy"
        )
        if not g["same"].all():
            w = g.loc[g["delta"].idxmax()]
            text += (
                f" (max accuracy: median difference {g['delta'].median():.2f} points, at most "
                f"{w['delta']:.2f}: `{w['path'].removeprefix(prefix)}`, "
                f"{w['max_acc_s'] * 100:.2f} → {w['max_acc_f'] * 100:.2f})"
            )
        parts.append(text)
    found = "; ".join(parts)
    return (
        f"The sensitivity study and `figure1cpu` share {len(m)} published runs (a cell and a "
        "seed each), trained once per study: for the sensitivity study on a 2-core AMD EPYC "
        f"(`{SENS}/README.md`). {found[:1].upper()}{found[1:]}. Source: "
        f"`{SENS}/runs.csv` against `docs/figure1cpu/runs.csv`, the CPU from each "
        "`figure1cpu` record (`docs/figure1cpu/runs.tar.xz`)."
    )


def demo_verify_block(root: Path) -> str:
    """The committed ``byzstress verify`` reports of demo records: same kernels, other ones."""
    lines = [
        "| record | retrained with | result | max acc recorded → retrained "
        "| seed std of the cell |",
        "|---|---|---|---|---|",
    ]
    for path in sorted((root / DEMO).glob("verify-*.json")):
        for rep in json.loads(path.read_text()):
            env = rep["retrained_on"]
            kernels = f"capability {env.get('cpu_capability')}, {env.get('threads')} thread"
            q = rep["quantities"]["max_acc"]
            spread = rep["seed_spread"]["max_acc"]["std"]
            lines.append(
                f"| `{rep['run']}` | {kernels} | "
                f"{'bit-identical' if rep['identical'] else 'differs'} | "
                f"{q['recorded'] * 100:.2f} → {q['retrained'] * 100:.2f} | "
                f"{'–' if spread is None else f'{spread * 100:.2f}'} |"
            )
    lines += [
        "",
        f"Records computed with capability AVX512 on the Xeon; `ATEN_CPU_CAPABILITY=avx2` "
        f"retrains with other kernels on the same machine. Source: `{DEMO}/verify-*.json` "
        f"(`byzstress verify`, commands in `{DEMO}/README.md`); accuracies in %, {MAX}.",
    ]
    return "\n".join(lines)


def _config(root: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((root / "config.yaml").read_text())


def _study_records(root: Path, study: str) -> dict[str, RunRecord]:
    """A study's published records by archive name (none before its first sitting)."""
    from byzstress.runs.archive import read_records

    path = root / f"docs/{study}/runs.tar.xz"
    return read_records(path) if path.exists() else {}


def figure1cpu_status_block(root: Path) -> str:
    """How much of the figure1cpu study its published archive holds, per β, and on which
    CPUs those records were computed (a record is reproducible bit for bit only on a
    machine that computes as its own did)."""
    from byzstress.runs.study import expand_study

    config = _config(root)
    runs = expand_study("figure1cpu", config["definitions"]["figure1cpu"], config)
    have = _study_records(root, "figure1cpu")

    def cpu(record: RunRecord) -> str:
        capability = record.cpu_capability or "?"
        return f"{_record_cpu(record)} ({capability})"

    lines = ["| β | runs trained / in the study | computed on (records) |", "|---|---|---|"]
    for beta in dict.fromkeys(r.beta for r in runs):
        mine = [have[f"{r.key}.json"] for r in runs if r.beta == beta and f"{r.key}.json" in have]
        n = len([r for r in runs if r.beta == beta])
        where = Counter(cpu(rec) for rec in mine)
        on = ", ".join(f"{c}: {k}" for c, k in sorted(where.items())) or "–"
        lines.append(f"| {beta} | {len(mine)} / {n} | {on} |")
    total = sum(f"{r.key}.json" in have for r in runs)
    lines += [
        "",
        f"{total} of {len(runs)} runs. Source: `docs/figure1cpu/runs.tar.xz` against the "
        "`figure1cpu` study of `config.yaml`; the CPU and ATen capability are each record's "
        "own (`kernels`).",
    ]
    return "\n".join(lines)


def figure1cpu_claim_block(root: Path) -> str:
    """Claim C1 per defense and contrast, as ``byzstress claims`` decided it
    (``docs/claims-results.csv``, estimand ``heterogeneity_effect``)."""
    from byzstress.analysis.claims import load
    from byzstress.analysis.report import read_results
    from byzstress.analysis.scorecard import outcome_counts

    settings, all_claims = load(root / "claims.yaml")
    claim = all_claims["C1"]
    b1, b0 = str(claim["beta"]), str(claim["reference_beta"])
    results = read_results(root / "docs" / "claims-results.csv")
    rows = results[(results["claim"] == "C1") & (results["family"] == "primary")]
    if rows.empty:
        return "Untested: `docs/claims-results.csv` has no row of claim C1 yet."

    def num(x: float, digits: int = 1) -> str:
        return "–" if pd.isna(x) else f"{x:.{digits}f}"

    lines = [
        f"| Defense | contrast | seeds (β = {b1} v {b0}) | Δ (points) [95 % CI] "
        f"| p (Holm) | outcome | collapsed, β = {b1} | collapsed, {b0} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in rows.iterrows():
        est = f"{num(r['estimate'])} [{num(r['ci_low'])}, {num(r['ci_high'])}]"
        lines.append(
            f"| {r['defense']} | {r['contrast']} | {r['seeds']} | {est} | "
            f"{num(r['p_for_adj'], 3)} | {r['outcome']} | {r['collapse_a']} | "
            f"{r['collapse_b']} |"
        )
    lines += [
        "",
        f"{outcome_counts(rows)} of {len(rows)} comparisons. Δ: the drop below the same "
        f"seed's no-attack accuracy at β = {b1} minus the drop under {b0}, mean over seeds "
        f"(accuracy: {MAX}); the claim says Δ > 0. Its 95 % Welch interval and a one-sided Welch "
        f"t-test (Welch 1947), Holm-adjusted (Holm 1979) across the {len(rows)} "
        f"comparisons, α = {settings.alpha:g}: supported, contradicted, no effect (|Δ| < "
        f"{settings.equivalence_bound:g} points, two one-sided tests) or inconclusive "
        "(claims.yaml, docs/claims.md). Collapsed: runs that diverged or ended at or below "
        f"{100 * settings.collapse_final_acc:g} % accuracy, with the exact 95 % interval of "
        "the rate. Source: `docs/claims-results.csv` (`byzstress claims`, from "
        "`docs/figure1cpu/runs.csv`); per-strength detection in "
        "`docs/figure1cpu/detection.md`.",
    ]
    return "\n".join(lines)


def splits_block(root: Path) -> str:
    """Do the claims' conclusions change with the kind of split? (the splits study)."""
    from byzstress.analysis.split_effect import (
        CHANGES,
        SAME,
        accuracy_table,
        claim_table,
        diff_text,
        heterogeneity,
        summary_line,
    )

    path = root / "docs/splits/runs.csv"
    if not path.exists():
        return "Not run yet: `docs/splits/runs.csv` is missing."
    df = read_tidy(path)
    ct, acc, het = claim_table(df), accuracy_table(df), heterogeneity(df)
    splits = [c.removeprefix("split:") for c in ct.columns if c.startswith("split:")]
    lines = [
        "| split | label TV (mean) | size CV |",
        "|---|---|---|",
        *(
            f"| {r['split']} | {r['het_label_tv_mean']:.2f} | {r['het_size_cv']:.2f} |"
            for _, r in het.iterrows()
        ),
        "",
        "| Claim | Defense | " + " | ".join(splits) + " | conclusion |",
        "|---|---|" + "---|" * len(splits) + "---|",
    ]
    for _, r in ct.iterrows():
        cells = " | ".join(str(r[f"split:{s}"]) for s in splits)
        claim = " = ".join(f"`{c}`" for c in r["claim"].split("+"))
        lines.append(f"| {claim} | {r['defense']} | {cells} | {r['change']} |")
    by_defense = []
    for word in (SAME, CHANGES, INCONCLUSIVE):
        ds = list(dict.fromkeys(ct.loc[ct["change"] == word, "defense"]))
        if ds:
            by_defense.append(f"{word}: {', '.join(ds)}")
    names = dict.fromkeys(c for claim in ct["claim"] for c in claim.split("+"))
    legend = "; ".join(f"`{c}`: {CLAIMS[c]}" for c in names)
    lines += [
        "",
        f"Claims: {legend}. Conclusion per defense (any of its claims) — "
        + "; ".join(by_defense)
        + ".",
    ]
    compared = acc[acc["outcome"].notna()] if "outcome" in acc else acc[:0]
    moved = compared[compared["outcome"].isin(["higher", "lower"])]
    largest = compared.loc[compared["diff"].abs().nlargest(3).index]
    seeds = int(acc["seeds"].max()) if len(acc) else 0
    lines += [
        "",
        summary_line(ct)
        + f" Of {len(compared)} cells compared with the {splits[0]} split, {len(moved)} "
        "moved (Holm-adjusted two-sided Welch test, α = 0.05); the largest differences: "
        + "; ".join(
            f"{r['defense']} {r['attack_label']} under {r['split']} {diff_text(r)}"
            for _, r in largest.iterrows()
        )
        + f". At most {seeds} seed{'s' if seeds > 1 else ''} per cell: a side with fewer "
        "than two seeds has no test, so its verdicts and comparisons are inconclusive. "
        f"{RULE_TEXT} Accuracy: {MAX}. Source: `docs/splits/runs.csv`; every cell in "
        "`docs/splits/split-effect.md`.",
    ]
    return "\n".join(lines)


def studies_block(root: Path) -> str:
    """Each study's size, counted from ``config.yaml`` (:func:`docgen.sizes.study_sizes`):
    its runs and steps, the runs folder it trains into, and the runs it shares there."""
    from docgen.sizes import study_sizes

    lines = [
        "| study | runs | steps per run | runs folder | runs another study of the folder "
        "also defines (trained once) |",
        "|---|---|---|---|---|",
    ]
    for s in study_sizes(_config(root)):
        steps = ", ".join(f"{n:,}" for n in s.steps)
        shared = ", ".join(f"{n} with `{o}`" for o, n in s.shared.items() if n) or "–"
        lines.append(f"| `{s.name}` | {s.runs:,} | {steps} | `{s.folder}` | {shared} |")
    lines += ["", "Counted from `config.yaml` (`byzstress runs STUDY` lists them)."]
    return "\n".join(lines)


def slices_block(root: Path, study: str, other: str | None = None) -> str:
    """A study's slices (:func:`docgen.sizes.slice_sizes`): the runs each adds, how many of
    them the published archive holds, how many remain, and (with ``other``) how many
    ``other`` defines too (trained once, in its folder)."""
    from docgen.sizes import slice_sizes

    have = {k.removesuffix(".json") for k in _study_records(root, study)}
    rows = slice_sizes(_config(root), study, have, other=other)
    also = f" also a `{other}` run |" if other else ""
    lines = [
        f"| slice | runs it adds | trained (`runs.tar.xz`) | to train |{also}",
        "|---|---|---|---|" + ("---|" if other else ""),
    ]
    for r in rows:
        shared = f" {r.shared} |" if other else ""
        lines.append(f"| `{r.name}` | {r.new} | {r.trained} | {r.new - r.trained} |{shared}")
    total = [sum(getattr(r, f) for r in rows) for f in ("new", "trained", "shared")]
    shared = f" {total[2]} |" if other else ""
    lines.append(f"| all | {total[0]} | {total[1]} | {total[0] - total[1]} |{shared}")
    again = [r for r in rows if r.new < r.runs]
    note = ""
    if again:
        note = (
            " A run an earlier slice defines too counts there: "
            + ", ".join(f"`{r.name}` defines {r.runs}" for r in again)
            + "."
        )
    lines += [
        "",
        f"Counted from `config.yaml` and `runs.tar.xz` (`byzstress runs {study} --slice "
        f"NAME` lists a slice's runs).{note}",
    ]
    return "\n".join(lines)


def figure1cpu_times_block(root: Path) -> str:
    """A run's wall time (the record's ``wall_time_s``: set-up, training and evaluation) per
    CPU the figure1cpu records were computed on: median and range."""
    records = _study_records(root, "figure1cpu").values()
    by_cpu: dict[str, list[float]] = {}
    for rec in records:
        if rec.wall_time_s:
            by_cpu.setdefault(_record_cpu(rec), []).append(float(rec.wall_time_s))
    lines = [
        "| CPU | records | median wall time (s) | fastest – slowest (s) |",
        "|---|---|---|---|",
    ]
    for cpu, w in sorted(by_cpu.items()):
        lines.append(
            f"| {cpu} | {len(w)} | {statistics.median(w):.0f} | {min(w):.0f} – {max(w):.0f} |"
        )
    lines += [
        "",
        "One thread per run, two runs at a time on 2 cores; a run resumed from its checkpoint "
        "adds the time its checkpoint recorded (not the steps lost after it). Source: each "
        "record of `runs.tar.xz` (`wall_time_s`, `kernels.cpu_model`).",
    ]
    return "\n".join(lines)


def paper_table1_block(root: Path) -> str:
    """The seed paper's Table 1 as :mod:`byzstress.analysis.paper` holds it (CIFAR-10,
    n = 17, b = 3)."""
    from byzstress.analysis.paper import PAPER_COLUMNS, TABLE1

    betas = sorted({b for b, _, _ in TABLE1})
    rows = list(dict.fromkeys(r for _, r, _ in TABLE1))
    head = ["attack", *(f"{c} (β = {b:g})" for b in betas for c in PAPER_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            f"{m:.2f} ± {s:.2f}"
            for b in betas
            for c in PAPER_COLUMNS
            for m, s in [TABLE1[(b, r, c)]]
        ]
        lines.append("| " + " | ".join([r, *cells]) + " |")
    return "\n".join(lines)


def scorecard_block(root: Path) -> str:
    """One row per claim of the paper, from ``docs/claims-results.csv`` (``byzstress
    claims``) and the pre-specified ``claims.yaml``."""
    from byzstress.analysis.claims import load
    from byzstress.analysis.report import read_results
    from byzstress.analysis.scorecard import scorecard_markdown

    settings, claims = load(root / "claims.yaml")
    results = read_results(root / "docs" / "claims-results.csv")
    return scorecard_markdown(results, claims, settings, _config(root))


def claims_where_block(root: Path) -> str:
    """Per claim, the comparisons each outcome holds (:func:`byzstress.analysis.scorecard.
    where_markdown`), from ``docs/claims-results.csv``."""
    from byzstress.analysis.claims import load
    from byzstress.analysis.report import read_results
    from byzstress.analysis.scorecard import where_markdown

    _, claims = load(root / "claims.yaml")
    results = read_results(root / "docs" / "claims-results.csv")
    return where_markdown(results, claims, _config(root))


def after_rule_block(root: Path) -> str:
    """Per claim whose rule was written after some of its records had been published
    (``seen_before`` in ``claims.yaml``): its outcome on the later records alone, and
    whether the same comparisons are supported (:func:`byzstress.analysis.report.after_rule`)."""
    from byzstress.analysis.claims import load, read_runs
    from byzstress.analysis.report import after_rule
    from byzstress.analysis.scorecard import outcome_counts, seed_range

    settings, claims = load(root / "claims.yaml")
    lines = []
    for cid, claim in claims.items():
        runs = root / "docs" / claim["study"] / "runs.csv"
        if not claim.get("seen_before") or not runs.exists():
            continue
        seen = read_runs(root / claim["seen_before"])
        r = after_rule(cid, claim, read_runs(runs), seen, settings)
        if r.after.empty:
            lines.append(
                f"- **{cid}**: its rule was written after {r.seen} of the {r.total} records "
                "it reads had been published; none of the others has been trained yet."
            )
            continue
        if not r.all_only and not r.after_only:
            agree = "the comparisons it supports are the same as on all records"
        else:
            agree = (
                f"supported on all records but not on these: {len(r.all_only)}; on these "
                f"but not on all records: {len(r.after_only)}"
            )
        lines.append(
            f"- **{cid} on the records trained after its rule alone** ({r.total - r.seen} of "
            f"the {r.total} it reads; {seed_range(r.after)} seeds per side, a check, not the "
            f"pre-specified test): {outcome_counts(r.after)} of {len(r.after)}; {agree} "
            f"([details](docs/claims-results.md#{cid.lower()}))."
        )
    return "\n".join(lines) or "No claim's rule was written after its records were seen."


def records_block(root: Path) -> str:
    """Per study that decides a claim: its published records against the runs it defines,
    and the CPUs they were computed on (from the records themselves)."""
    from byzstress.analysis.claims import load
    from byzstress.runs.study import expand_study

    _, claims = load(root / "claims.yaml")
    config = _config(root)
    lines = ["| study | decides | records published / defined | computed on |", "|---|---|---|---|"]
    for study in dict.fromkeys(c["study"] for c in claims.values()):
        runs = expand_study(study, config["definitions"][study], config)
        have = _study_records(root, study)
        mine = [have[f"{r.key}.json"] for r in runs if f"{r.key}.json" in have]
        where = Counter(_record_cpu(rec) for rec in mine)
        on = ", ".join(f"{c} ({k})" for c, k in sorted(where.items())) or "–"
        decides = ", ".join(cid for cid, c in claims.items() if c["study"] == study)
        lines.append(f"| `{study}` | {decides} | {len(mine)} / {len(runs)} | {on} |")
    lines += ["", "Source: `docs/STUDY/runs.tar.xz` against the study in `config.yaml`."]
    return "\n".join(lines)


def _first_paragraph(cls: type) -> str:
    text = (cls.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(text.split()).replace("|", "\\|")


def methods_block(root: Path) -> str:
    """Every registered attack, aggregation rule and pre-aggregator: its names, what it
    does and its source (the first paragraph of its docstring) and its parameters with
    their defaults, read from the registries."""
    from byzstress.threats.attacks import ATTACKS
    from byzstress.threats.defenses import PRE_AGGREGATORS, RULES

    out = []
    for title, registry in (
        ("Attacks", ATTACKS),
        ("Aggregation rules", RULES),
        ("Pre-aggregators (in parentheses, left to right)", PRE_AGGREGATORS),
    ):
        out += [
            f"**{title}**",
            "",
            "| name | what it does, and its source | parameters (defaults) |",
            "|---|---|---|",
        ]
        for cls in dict.fromkeys(registry.values()):
            params = dict(getattr(cls, "defaults", {}))
            if getattr(cls, "has_strength", False):
                params = {"strength": "auto" if cls.supports_auto else "a number", **params}
            shown = ", ".join(f"`{k}={v}`" for k, v in params.items()) or "–"
            names = ", ".join(f"`{n}`" for n in cls.names)
            out.append(f"| {names} | {_first_paragraph(cls)} | {shown} |")
        out.append("")
    return "\n".join(out)


def _with_every_paper_cell(t: pd.DataFrame) -> pd.DataFrame:
    """``t`` (a :func:`table` with the paper's numbers) with a row, ours empty, for each of the
    paper's cells at its β and defenses that has no run yet, so that a study published in
    parts still shows every number of the paper beside it."""
    have = set(zip(t["beta"], t["defense"], t["attack_label"], strict=True))
    defenses = t.drop_duplicates("defense")[["dataset", "defense", "defense_label"]]
    extra = [
        {
            **d,
            "beta": b,
            "attack_label": row,
            "variant": "",
            "mean": math.nan,
            "std": math.nan,
            "seeds": 0,
            "diverged": 0,
            "strongest": False,
            "paper_mean": cell[0] if cell else math.nan,
            "paper_std": cell[1] if cell else math.nan,
        }
        for b in dict.fromkeys(t["beta"])
        for d in defenses.to_dict("records")
        for row in paper.PAPER_ROWS
        if (b, d["defense"], row) not in have
        for cell in [paper.paper_value(float(b), row, d["defense"])]
    ]
    return pd.concat([t, pd.DataFrame(extra)], ignore_index=True) if extra else t


def table1cpu_table_block(root: Path) -> str:
    """The table1cpu study's Table 1 with the paper's numbers beside ours (labelled: the
    paper's are CIFAR-10 at 8000 steps)."""
    path = root / "docs" / "table1cpu" / "runs.csv"
    if not path.exists():
        return (
            "Not yet trained: no `table1cpu` records are published "
            "(`docs/table1cpu/runs.tar.xz`); the paper's own numbers are in "
            "[paper.md](paper.md#table-1-the-papers-numbers)."
        )
    t = _with_every_paper_cell(table(read_tidy(path), with_paper=True))
    # the paper's order, whatever has trained so far
    columns = list(paper.PAPER_COLUMNS)

    def place(defense: str) -> int:
        col = paper.paper_column(defense)
        return columns.index(col) if col else len(columns)

    cols = t.drop_duplicates("defense_label").sort_values("defense", key=lambda d: d.map(place))
    rows = [attack_label("none", None), *paper.PAPER_ROWS]
    md = table_markdown(t, with_paper=True, rows=rows, defenses=list(cols["defense_label"]))
    return md.rstrip() + (
        " The paper's columns are CIFAR-10 at T = 8000 steps, ours Fashion-MNIST at 500: "
        "another dataset and scale, shown beside ours for the ranking of the attacks, not "
        "compared by a test. Source: `docs/table1cpu/runs.csv`."
    )


BLOCKS: dict[str, Callable[[Path], str]] = {
    "scorecard": scorecard_block,
    "claims-where": claims_where_block,
    "claims-after-rule": after_rule_block,
    "table1cpu-table": table1cpu_table_block,
    "methods": methods_block,
    "records": records_block,
    "paper-table1": paper_table1_block,
    "verdicts": verdicts_block,
    "sensitivity-table": sensitivity_table_block,
    "sensitivity-options": options_block,
    "sensitivity-diagnostics": diagnostics_block,
    "sensitivity-comparisons": comparisons_block,
    "byzfl-check": byzfl_block,
    "demo-table": demo_table_block,
    "demo-findings": demo_findings_block,
    "demo-cpus": demo_cpus_block,
    "demo-verify": demo_verify_block,
    "shared-cells": shared_cells_block,
    "figure1cpu-status": figure1cpu_status_block,
    "figure1cpu-claim": figure1cpu_claim_block,
    "splits": splits_block,
    "studies": studies_block,
    "figure1cpu-slices": lambda root: slices_block(root, "figure1cpu", other="sensitivity"),
    "table1cpu-slices": lambda root: slices_block(root, "table1cpu"),
    "figure1cpu-times": figure1cpu_times_block,
}


def render(text: str, root: Path) -> str:
    """``text`` with every generated block rebuilt; an unknown block name is an error."""

    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in BLOCKS:
            raise ValueError(
                f"README: unknown generated block {name!r}; valid: {', '.join(BLOCKS)}"
            )
        return f"{m.group(1)}{BLOCKS[name](root).rstrip()}\n{m.group(4)}"

    return BLOCK.sub(sub, text)


def check(text: str, root: Path) -> list[str]:
    """The names of the blocks whose text differs from what the outputs give."""
    want = {m.group("name"): m.group("body") for m in BLOCK.finditer(render(text, root))}
    have = {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}
    return [name for name in have if have[name] != want.get(name)]


def readme_cmd(readme: Path, root: Path, check_only: bool) -> int:
    text = readme.read_text()
    if check_only:
        stale = check(text, root)
        if stale:
            print(f"{readme}: generated blocks out of date: {', '.join(stale)}")
            return 1
        print(f"{readme}: every generated block matches the outputs")
        return 0
    new = render(text, root)
    if new != text:
        readme.write_text(new)
    print(f"{readme}: {len(BLOCK.findall(new))} generated blocks written")
    return 0
