"""How runs are named in tables and figures: one place for every attack's display label.

``attack_label("alie", 8)`` is ``ALIE (z=8)``; the analysis, the paper's table
(:mod:`.paper`) and the README generator build the labels they look up through it, never by
typing them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..threats.grammar import parse

__all__ = ["ATTACK_NAMES", "NO_ATTACK", "SYMBOL", "attack_label", "is_baseline", "num_text"]

#: display names of the attacks (the registry's names and aliases)
ATTACK_NAMES = {
    "none": "No attack",
    "noattack": "No attack",
    "alie": "ALIE",
    "ipm": "IPM",
    "sf": "SF",
    "signflip": "SF",
    "lf": "LF",
    "labelflip": "LF",
    "minmax": "MinMax",
    "minsum": "MinSum",
    "mimic": "Mimic",
    "gaussian": "Gaussian",
    "inf": "Inf",
}
#: the symbol of each attack's strength
SYMBOL = {"alie": "z", "ipm": "ε", "gaussian": "σ"}
NO_ATTACK = "No attack"


def num_text(x: float) -> str:
    """A number as labels and paths write it: ``f"{x:g}"``."""
    return f"{x:g}"


def attack_label(
    attack: str, strength: Any, knowledge: str = "omniscient", default: Any = None
) -> str:
    """Human label: ``ALIE (z=8)``, ``IPM (ε=2.5)``, ``ALIE (z=auto)``, ``MinMax [dir=sign]``;
    an unset strength shows the attack's ``default`` as ``ALIE (z=0.18 default)``."""
    spec = parse(attack)
    base = ATTACK_NAMES.get(spec.name, spec.name)
    if spec.params:
        base += " [" + ",".join(f"{k}={v}" for k, v in spec.params.items()) + "]"
    sym = SYMBOL.get(spec.name)
    if sym is not None:
        if strength is None or strength == "":
            s = "default" if default is None else f"{float(default):.2g} default"
        else:
            s = num_text(float(strength)) if isinstance(strength, int | float) else str(strength)
        base += f" ({sym}={s})"
    if knowledge == "local":
        base += ", local"
    return base


def is_baseline(labels: pd.Series) -> pd.Series:
    """The no-attack rows (``No attack`` and its variants such as ``[senders=honest]``)."""
    return labels.str.startswith(NO_ATTACK)
