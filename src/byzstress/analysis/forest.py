"""The decided comparisons as a picture: one panel per claim, each comparison's estimate
with its 95 % Welch interval against the claim's threshold, coloured by its outcome (a
forest plot), so that a reader sees what each verdict rests on."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .compare import OUTCOMES
from .outputs import save_figure

__all__ = ["forest_plot"]

#: one colour per outcome, in the order of compare.OUTCOMES
COLOURS = dict(zip(OUTCOMES, ("#1b7837", "#b2182b", "#2166ac", "#7f7f7f"), strict=True))


def forest_plot(results: pd.DataFrame, path: Path) -> None:
    """Write ``path`` (PNG): every primary comparison of every claim in ``results``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results[results["family"] == "primary"]
    claims = list(dict.fromkeys(rows["claim"]))
    if not claims:
        return
    heights = [max(2.0, 0.28 * (rows["claim"] == c).sum() + 1.0) for c in claims]
    fig, axes = plt.subplots(
        len(claims), 1, figsize=(8, sum(heights)), gridspec_kw={"height_ratios": heights}
    )
    axes = [axes] if len(claims) == 1 else list(axes)
    for ax, cid in zip(axes, claims, strict=True):
        sub = rows[rows["claim"] == cid].reset_index(drop=True)
        y = list(range(len(sub)))[::-1]
        for yi, r in zip(y, sub.itertuples(), strict=True):
            colour = COLOURS.get(r.outcome, "#7f7f7f")
            if not (math.isnan(r.ci_low) or math.isnan(r.ci_high)):
                ax.plot([r.ci_low, r.ci_high], [yi, yi], color=colour, lw=2)
            ax.plot([r.estimate], [yi], "o", color=colour, ms=4)
        ax.axvline(float(sub["threshold"].iloc[0]), color="black", lw=0.8, ls="--")
        ax.axvline(0.0, color="grey", lw=0.5)
        ax.set_yticks(y)
        ax.set_yticklabels(
            [f"{r.defense}, {r.contrast} (β {r.beta}; {r.seeds})" for r in sub.itertuples()],
            fontsize=7,
        )
        ax.set_title(f"{cid}: estimate and 95 % Welch interval (points)", fontsize=9)
    handles = [plt.Line2D([], [], color=c, lw=2, label=o) for o, c in COLOURS.items()]
    axes[0].legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()

    save_figure(fig, [path], dpi=120)
    plt.close(fig)
