"""The seed paper's Table 1 (CIFAR-10, n = 17, b = 3, T = 8000; top-1 test accuracy in %,
mean ± std over 3 runs), transcribed from the paper (docs/paper.md quotes it) for
side-by-side tables.

The "CMLS" column (most likely coordinate-wise median with linear scalarization, Errami &
Bergou, arXiv:2210.08287) cannot be reproduced: its weighting formula is not available to
us, so byzstress computes that column with plain CM and labels it ``CMLS_STANDIN``.
"""

from __future__ import annotations

from .labels import attack_label

__all__ = [
    "CMLS_STANDIN",
    "PAPER_COLUMNS",
    "PAPER_ROWS",
    "TABLE1",
    "defense_label",
    "paper_column",
    "paper_value",
]

CMLS_STANDIN = "CM (CMLS unavailable)"

#: paper column label -> the defense spec byzstress runs for it
PAPER_COLUMNS = {
    "RFA(buck)": "rfa(buck)",
    "CMLS": "cm",
    "CCLIP": "cclip",
    "trMean(NNM)": "trmean(nnm)",
}

#: the paper's rows (attack, strength), labelled as the run table labels them, in its order
PAPER_ROWS = tuple(
    attack_label(a, s)
    for a, s in (("alie", 8), ("ipm", 2.5), ("minmax", None), ("minsum", None), ("sf", None))
)
_RAW = {
    0.3: (
        ((23.26, 1.39), (21.71, 2.81), (17.89, 5.64), (21.93, 1.49)),
        ((39.30, 0.35), (44.20, 1.16), (50.95, 1.53), (52.29, 0.22)),
        ((37.99, 1.34), (42.96, 0.68), (37.81, 0.95), (49.60, 0.87)),
        ((46.00, 0.50), (43.36, 0.89), (53.33, 0.41), (52.67, 0.50)),
        ((52.76, 1.03), (44.12, 0.43), (63.58, 0.47), (51.58, 2.03)),
    ),
    0.5: (
        ((21.29, 2.15), (19.01, 0.47), (24.07, 1.43), (18.90, 6.39)),
        ((43.80, 1.39), (50.53, 0.18), (51.01, 0.90), (56.55, 0.74)),
        ((44.26, 0.69), (48.92, 2.36), (35.33, 2.28), (53.84, 0.07)),
        ((51.57, 1.14), (49.05, 0.30), (55.58, 0.89), (59.78, 1.36)),
        ((53.37, 0.42), (50.07, 2.24), (64.62, 1.04), (23.93, 9.05)),
    ),
}

#: (beta, attack row label, paper column) -> (mean %, std %)
TABLE1: dict[tuple[float, str, str], tuple[float, float]] = {
    (beta, row, col): cell
    for beta, rows in _RAW.items()
    for row, cells in zip(PAPER_ROWS, rows, strict=True)
    for col, cell in zip(PAPER_COLUMNS, cells, strict=True)
}


def paper_column(defense: str) -> str | None:
    """The paper's column that the defense spec computes (any spelling of it), if any."""
    from ..threats.grammar import parse

    canon = str(parse(defense))
    return next((col for col, spec in PAPER_COLUMNS.items() if str(parse(spec)) == canon), None)


def paper_value(beta: float, attack_label: str, defense: str) -> tuple[float, float] | None:
    """The paper's (mean, std) for our attack label and defense spec, if it has one."""
    col = paper_column(defense)
    return None if col is None else TABLE1.get((beta, attack_label, col))


def defense_label(defense: str) -> str:
    """How a table beside the paper's Table 1 names the defense: the stand-in label for the
    column byzstress cannot compute as the paper did (CMLS), the spec otherwise."""
    return CMLS_STANDIN if paper_column(defense) == "CMLS" else defense
