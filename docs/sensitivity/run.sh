#!/usr/bin/env bash
# The sensitivity study, slice by slice in order of importance (the cells that decide a
# verdict first), then its tables and figures; copies the small outputs into docs/sensitivity/.
# Snakemake resumes: rerunning this script trains only what is missing.
#   bash docs/sensitivity/run.sh            # about 2 h on 2 CPU cores (one thread per job)
set -euo pipefail
cd "$(dirname "$0")/../.."
CORES=${CORES:-2}
for slice in core local options strengths alie2 momentum0 mild; do
  mapfile -t runs < <(python workflow/scripts/byzstress.py runs sensitivity --slice "$slice")
  snakemake --cores "$CORES" --config 'studies=[sensitivity]' -- "${runs[@]}"
done
snakemake --cores "$CORES" --config 'studies=[sensitivity]'
out=results/sensitivity
cp "$out"/{runs.csv,table1.md,table1.csv,leaderboard.md,leaderboard.csv,leaderboard.png,curves.png} \
  "$out"/sensitivity-* docs/sensitivity/
