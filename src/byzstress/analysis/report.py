"""``byzstress claims``: read the claims and the studies' records, write the decided
comparisons (``PREFIX.csv``, ``PREFIX.md``) and print the cells whose seeds split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from .claims import (
    Settings,
    aggregate_shift,
    evaluate,
    fmt,
    load,
    paired_companions,
    read_runs,
    records_read,
    split_cells,
    split_slices,
    used_cells,
    without_seen,
)
from .compare import SUPPORTED
from .forest import forest_plot
from .outputs import write_text
from .scorecard import outcome_counts, results_markdown, seed_range

__all__ = ["AfterRule", "after_rule", "claims_cmd", "read_results"]

#: how the results table's floats are written (the README and tests read them back)
FLOAT_FORMAT = "%.6g"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)


def read_results(path: str | Path) -> pd.DataFrame:
    """The results table ``byzstress claims`` wrote (β and seeds as text)."""
    return pd.read_csv(
        path, dtype={"beta": str, "seeds": str}, keep_default_na=False, na_values=[""]
    )


def _beta_text(beta: str) -> str:
    return "IID" if beta == "iid" else f"β = {beta}"


def _shift_lines(df: pd.DataFrame, claim: dict) -> list[str]:
    shift = aggregate_shift(df, claim)
    b1, b0 = str(claim["beta"]), str(claim["reference_beta"])
    lines = [
        "How far each defense's output sits from the honest clients' mean (the records' "
        "`diag_rel_err`, ‖aggregate − honest mean‖ / ‖honest mean‖ over training, mean "
        'over seeds): a description of what "undetected" can mean here, not a test. '
        "Heterogeneity moves the output without an attack too, so the last two columns "
        "give what the attack adds: its excess over no attack at each β (95 % Welch "
        f"interval). Where that excess grows from {_beta_text(b0)} to {_beta_text(b1)} "
        "while the defense still lets the attack through, the larger perturbation went "
        "undetected.",
        "",
        f"| defense | contrast | no attack, {_beta_text(b0)} | attack, {_beta_text(b0)} | "
        f"no attack, {_beta_text(b1)} | attack, {_beta_text(b1)} | excess, "
        f"{_beta_text(b0)} | excess, {_beta_text(b1)} |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def excess(r: dict, beta: str) -> str:
        x, lo, hi = (r[f"{k} {beta}"] for k in ("excess", "excess_low", "excess_high"))
        return f"{'–' if pd.isna(x) else f'{x:+.2f}'} [{fmt(lo, 2)}, {fmt(hi, 2)}]"

    for r in shift.to_dict("records"):
        vals = [r[f"none {b0}"], r[f"attack {b0}"], r[f"none {b1}"], r[f"attack {b1}"]]
        lines.append(
            f"| {r['defense']} | {r['contrast']} | "
            + " | ".join(f"{v:.2f}" for v in vals)
            + f" | {excess(r, b0)} | {excess(r, b1)} |"
        )
    return [*lines, ""]


@dataclass(frozen=True)
class AfterRule:
    """A claim decided again on the records trained after its rule was written."""

    seen: int  # records the claim reads that were published before the rule
    total: int  # records the claim reads
    after: pd.DataFrame  # the primary family's comparisons on the later records alone
    same: list[str]  # comparisons supported on all records and on the later ones
    all_only: list[str]  # supported on all records only
    after_only: list[str]  # supported on the later records only


def after_rule(
    cid: str, claim: dict, df: pd.DataFrame, seen: pd.DataFrame, settings: Settings
) -> AfterRule:
    """``claim`` decided on ``df`` and on ``df`` without the records ``seen`` lists (those
    published before the rule): a check that the records seen first do not decide it."""
    fresh = without_seen(df, seen)
    cells = used_cells(df, {cid: claim}, claim["study"], settings)
    both = evaluate({cid: claim}, {claim["study"]: df}, settings)
    after = evaluate({cid: claim}, {claim["study"]: fresh}, settings)
    both, after = (x[x["family"] == "primary"] for x in (both, after))
    names = [f"{d} {c}" for d, c in both[["defense", "contrast"]].to_numpy()]

    def supported(x: pd.DataFrame) -> set[str]:
        return {
            f"{d} {c}"
            for d, c in x.loc[x["outcome"] == SUPPORTED, ["defense", "contrast"]].to_numpy()
        }

    a, b = supported(both), supported(after)
    return AfterRule(
        records_read(df, cells) - records_read(fresh, cells),
        records_read(df, cells),
        after,
        [n for n in names if n in a & b],
        [n for n in names if n in a - b],
        [n for n in names if n in b - a],
    )


def _unseen_lines(
    cid: str, claim: dict, df: pd.DataFrame, seen: pd.DataFrame, settings: Settings
) -> list[str]:
    """:func:`after_rule` as a paragraph and a table of the claim's page."""
    r = after_rule(cid, claim, df, seen, settings)

    def listing(names: list[str]) -> str:
        return "; ".join(names) or "none"

    head = (
        f"**Records trained after the rule only.** The rule was written after {r.seen} of "
        f"the {r.total} records {cid} reads had been published (`{claim['seen_before']}` "
        f"lists the records published before the rule, {r.seen} of them ones {cid} reads)."
    )
    if r.after.empty:
        return [f"{head} None of the others has been trained yet.", ""]
    lines = [
        f"{head} Decided on the other {r.total - r.seen} alone, by the same rule (a "
        f"check with fewer seeds, not the pre-specified test): {outcome_counts(r.after)} of "
        f"{len(r.after)}; {seed_range(r.after)} seeds per side. Supported on both: "
        f"{listing(r.same)}. Supported on all records only: {listing(r.all_only)}. On the "
        f"later records only: {listing(r.after_only)}.",
        "",
        "| defense | contrast | seeds | estimate [95 % CI] | outcome |",
        "|---|---|---|---|---|",
    ]
    for x in r.after.itertuples():
        lines.append(
            f"| {x.defense} | {x.contrast} | {x.seeds} | {fmt(x.estimate)} "
            f"[{fmt(x.ci_low)}, {fmt(x.ci_high)}] | {x.outcome} |"
        )
    return [*lines, ""]


def claims_cmd(
    claims_path: Path,
    config_path: Path,
    runs: dict[str, Path],
    out_prefix: Path,
    slices_for: str | None = None,
) -> None:
    """Decide every claim whose study has records; write ``out_prefix``.csv, .md and .png.
    With ``slices_for`` (a study), print instead the ``config.yaml`` slices that give its
    split cells their extra seeds, only what the study does not define yet."""
    settings, claims = load(claims_path)
    config = yaml.safe_load(Path(config_path).read_text())
    frames = {}
    for study in dict.fromkeys(c["study"] for c in claims.values()):
        path = runs.get(study, Path("docs") / study / "runs.csv")
        if Path(path).exists():
            frames[study] = read_runs(path)
    if slices_for is not None:
        from ..runs.study import new_slices

        if slices_for not in frames:
            raise ValueError(f"--slices: no records of study {slices_for!r} (docs/STUDY/runs.csv)")
        df = frames[slices_for]
        used = used_cells(df, claims, slices_for, settings)
        split = paired_companions(split_cells(df, settings, used), claims, slices_for)
        wanted = split_slices(split, settings)
        study = config["definitions"][slices_for]
        todo = new_slices(slices_for, study, config, wanted)
        print(yaml.safe_dump({"slices": todo}, sort_keys=False, allow_unicode=True), end="")
        return
    results = evaluate(claims, frames, settings)
    extra: dict[str, list[str]] = {cid: [] for cid in claims}
    for cid, c in claims.items():
        if c["study"] not in frames:
            continue
        if c.get("seen_before"):
            seen = read_runs(Path(claims_path).parent / c["seen_before"])
            extra[cid] += _unseen_lines(cid, c, frames[c["study"]], seen, settings)
        if c["estimand"] == "heterogeneity_effect":
            extra[cid] += _shift_lines(frames[c["study"]], c)
    _write(out_prefix.with_suffix(".csv"), results.to_csv(index=False, float_format=FLOAT_FORMAT))
    # the page and the picture show what the table holds, rounded once (the README's
    # blocks read the same table)
    results = read_results(out_prefix.with_suffix(".csv"))
    _write(
        out_prefix.with_suffix(".md"),
        results_markdown(results, claims, settings, config, extra, out_prefix.name),
    )
    forest_plot(results, out_prefix.with_suffix(".png"))
    print(f"wrote {out_prefix}.csv, .md and .png ({len(results)} comparisons)")
    for study, df in frames.items():
        split = split_cells(df, settings, used_cells(df, claims, study, settings))
        if len(split):
            print(
                f"{study}: cells whose first {settings.min_seeds} seeds split "
                f"(give them seeds {settings.min_seeds}..{settings.split_seeds_to - 1}):"
            )
            print(split.to_string(index=False))
