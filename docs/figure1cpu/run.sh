#!/usr/bin/env bash
# The figure1cpu study in parts, across sittings: scripts/train-study.sh restores the
# published records (docs/figure1cpu/runs.tar.xz) into the sensitivity study's runs folder
# (runs_of: sensitivity), trains what is missing slice by slice, packs the archive after
# each slice and writes runs.csv; then this builds the study's tables and figures from the
# records there. Stop it at any time (Ctrl-C); commit docs/figure1cpu/ afterwards.
#   bash docs/figure1cpu/run.sh                     # every slice, in config order; CORES=2
#   SLICES=c1-seeds bash docs/figure1cpu/run.sh     # the slices named
#   SLICES=" " bash docs/figure1cpu/run.sh          # no training: the outputs of what is there
set -euo pipefail
cd "$(dirname "$0")/../.."
docs=docs/figure1cpu
cli="python workflow/scripts/byzstress.py"
bash scripts/train-study.sh figure1cpu
if [ -f "$docs/runs.csv" ]; then
  $cli table "$docs/runs.csv" --out-prefix "$docs/table1" --metric max_acc
  $cli figure "$docs/runs.csv" --out-prefix "$docs/figure1" --metric max_acc
  $cli calibration "$docs/runs.csv" --out-prefix "$docs/calibration" --metric max_acc
  $cli detection "$docs/runs.csv" --out-prefix "$docs/detection" --metric max_acc
fi
