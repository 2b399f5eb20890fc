"""Writing a study's outputs: text, CSV tables and figures, each atomically (a reader never
sees half a file, and a killed writer leaves the previous version), through
:func:`byzstress.runs.storage.atomic_write`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..runs.storage import atomic_write

__all__ = ["save_figure", "write_csv", "write_text"]


def write_text(path: Path, text: str) -> None:
    """``text`` into ``path`` (UTF-8), atomically."""
    atomic_write(path, lambda fh: fh.write(text.encode()))


def write_csv(path: Path, df: pd.DataFrame, float_format: str | None = None) -> None:
    """``df`` as CSV without its index into ``path``, atomically."""
    write_text(path, df.to_csv(index=False, float_format=float_format))


def save_figure(fig: Any, paths: list[Path], dpi: int = 150) -> None:
    """A matplotlib figure into each of ``paths``, in the format its suffix names."""
    for p in paths:
        suffix = p.suffix.lstrip(".")

        def write(fh, fmt=suffix):
            fig.savefig(fh, format=fmt, bbox_inches="tight", dpi=dpi)

        atomic_write(p, write)
