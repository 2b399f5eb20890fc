"""``byzstress claims``: read the claims and the studies' records, write the decided
comparisons (``PREFIX.csv``, ``PREFIX.md``) and print the cells whose seeds split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from .claims import (
    aggregate_shift,
    evaluate,
    load,
    paired_companions,
    read_runs,
    split_cells,
    split_slices,
)
from .forest import forest_plot
from .outputs import write_text
from .scorecard import results_markdown

__all__ = ["claims_cmd", "read_results"]

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
        f"Where the attacked shift grows from {_beta_text(b0)} to {_beta_text(b1)} while the "
        "defense still lets it through, the larger perturbation went undetected.",
        "",
        f"| defense | contrast | no attack, {_beta_text(b0)} | attack, {_beta_text(b0)} | "
        f"no attack, {_beta_text(b1)} | attack, {_beta_text(b1)} |",
        "|---|---|---|---|---|---|",
    ]
    for r in shift.to_dict("records"):
        vals = [r[f"none {b0}"], r[f"attack {b0}"], r[f"none {b1}"], r[f"attack {b1}"]]
        lines.append(
            f"| {r['defense']} | {r['contrast']} | " + " | ".join(f"{v:.2f}" for v in vals) + " |"
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
        split = paired_companions(split_cells(frames[slices_for], settings), claims, slices_for)
        wanted = split_slices(split, settings)
        study = config["definitions"][slices_for]
        todo = new_slices(slices_for, study, config, wanted)
        print(yaml.safe_dump({"slices": todo}, sort_keys=False, allow_unicode=True), end="")
        return
    results = evaluate(claims, frames, settings)
    extra = {
        cid: _shift_lines(frames[c["study"]], c)
        for cid, c in claims.items()
        if c["estimand"] == "heterogeneity_effect" and c["study"] in frames
    }
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
        split = split_cells(df, settings)
        if len(split):
            print(
                f"{study}: cells whose first {settings.min_seeds} seeds split "
                f"(give them seeds {settings.min_seeds}..{settings.split_seeds_to - 1}):"
            )
            print(split.to_string(index=False))
