#!/usr/bin/env bash
# Quick start 1: set up, then run the demo study on real Fashion-MNIST (CPU, 13-21 min on
# 2 cores, setup included) and build its report. Outputs land in results/demo/ and report.html.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
snakemake --cores "${CORES:-2}" "$@"
snakemake --cores 1 --report report.html "$@"
echo "done: results/demo/table1.md, results/demo/figure1.png, report.html"
