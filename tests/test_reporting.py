"""Figure 1 (byzstress.analysis.reporting.figure) on hand-made runs: what its seed bands show."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection

from byzstress.analysis.reporting import figure

# strength -> max accuracy of seeds 0, 1, 2; at z = 8 one seed survives, two do not, so
# mean ± sd (44.7 ± 48.9) would run below 0 %
ALIE = {1.0: (0.80, 0.78, 0.82), 8.0: (0.10, 0.12, 0.92)}


def runs() -> pd.DataFrame:
    rows = []
    for seed in range(3):
        base = {"dataset": "fmnist", "beta": "0.1", "defense": "CM", "seed": seed}
        rows.append(
            {
                **base,
                "attack_name": "No attack",
                "attack_label": "No attack",
                "strength": "",
                "strength_value": math.nan,
                "max_acc": 0.85,
            }
        )
        for z, accs in ALIE.items():
            rows.append(
                {
                    **base,
                    "attack_name": "ALIE",
                    "attack_label": f"ALIE (z={z:g})",
                    "strength": f"{z:g}",
                    "strength_value": z,
                    "max_acc": accs[seed],
                }
            )
    return pd.DataFrame(rows)


def test_seed_band_is_the_range_over_seeds():
    fig = figure(runs())
    bands = [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1, "one band: one defense, one attack"
    xy = np.concatenate([p.vertices for p in bands[0].get_paths()])
    for z, accs in ALIE.items():
        # at each strength the band spans that strength's seeds, from the lowest to the highest
        ys = xy[np.isclose(xy[:, 0], z), 1]
        assert len(ys), z
        assert math.isclose(ys.min(), 100 * min(accs), abs_tol=1e-6), z
        assert math.isclose(ys.max(), 100 * max(accs), abs_tol=1e-6), z
    lines = [ln for ax in fig.axes for ln in ax.get_lines()]
    line = next(ln for ln in lines if list(ln.get_xdata()) == list(ALIE))
    means = [100 * sum(a) / 3 for a in ALIE.values()]
    np.testing.assert_allclose(line.get_ydata(), means)


def test_table_marks_the_seeds_that_collapsed_beside_the_mean():
    """Max accuracy hides a run that learned, then collapsed: the table says how many seeds
    collapsed (diverged, or ended at or below 20 %) where the mean counts them."""
    from byzstress.analysis.reporting import table, table_latex, table_markdown

    rows = []
    # seed 2 reached 80 % and ended at 10 %; seed 1 diverged; none of "No attack" collapsed
    finals = {"No attack": (0.84, 0.85, 0.83), "ALIE (z=8)": (0.70, math.nan, 0.10)}
    status = {"No attack": ("ok", "ok", "ok"), "ALIE (z=8)": ("ok", "diverged", "ok")}
    for label, ends in finals.items():
        for seed, end in enumerate(ends):
            rows.append(
                {
                    "dataset": "fmnist",
                    "beta": "0.1",
                    "defense": "CM",
                    "variant": "",
                    "attack": "none" if label == "No attack" else "alie",
                    "strength": "" if label == "No attack" else "8",
                    "strength_value": math.nan if label == "No attack" else 8.0,
                    "knowledge": "omniscient",
                    "attack_label": label,
                    "seed": seed,
                    "status": status[label][seed],
                    "max_acc": 0.85 if label == "No attack" else 0.80,
                    "final_acc": end,
                }
            )
    t = table(pd.DataFrame(rows))
    assert dict(zip(t["attack_label"], t["collapsed"], strict=True)) == {
        "No attack": 0,
        "ALIE (z=8)": 2,
    }
    md = table_markdown(t)
    assert "| **80.00 ± 0.00 †1/3 ‡2/3** |" in md and "| 85.00 ± 0.00 |" in md
    assert "‡ k/n: k of the n seeds collapsed" in md
    assert r"$^\ddagger$2/3" in table_latex(t)
    # without a collapse there is no mark and no note
    assert "‡" not in table_markdown(table(pd.DataFrame(rows[:3])))
