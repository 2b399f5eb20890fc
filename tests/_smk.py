"""The Snakemake command line shared by the workflow and Slurm tests."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def snakemake_cmd(workdir: Path, *extra: str) -> list[str]:
    """Run this repository's Snakefile in ``workdir`` with ``workdir/config.yaml``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        *extra,
    ]
