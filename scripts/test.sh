#!/usr/bin/env bash
# Quick start 2: set up, then run the whole test suite (the Slurm test brings up a
# single-node cluster from Debian packages when run as root; see tests/slurm/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check src tests benchmarks workflow/scripts
python -m pytest "$@"
