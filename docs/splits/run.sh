#!/usr/bin/env bash
# The splits study: does a claim's conclusion change with the kind of split? It shares the
# sensitivity study's runs folder (runs_of: sensitivity), so its Dirichlet cells are the
# figure1cpu study's β = 0.1 cells of the same attacks, trained once.
#   1. restores the published records (docs/splits/runs.tar.xz) into that folder,
#   2. trains what is missing, then packs the study's records (and only its own),
#   3. builds the outputs and copies them here.
#   bash docs/splits/run.sh            # CORES=2 by default; one thread per job
set -euo pipefail
cd "$(dirname "$0")/../.."
CORES=${CORES:-2}
docs=docs/splits
runs=results/sensitivity/runs
cli="python workflow/scripts/byzstress.py"
if [ -f "$docs/runs.tar.xz" ]; then
  $cli restore "$docs/runs.tar.xz" --runs "$runs"
fi
mapfile -t todo < <($cli runs splits)
snakemake --cores "$CORES" --config 'studies=[splits]' --keep-going -- "${todo[@]}" || true
$cli pack "$runs" --study splits --out "$docs/runs.tar.xz"
mapfile -t have < <(for f in "${todo[@]}"; do [ -f "$f" ] && echo "$f"; done)
echo "splits: ${#have[@]} of ${#todo[@]} runs trained"
$cli collect "${have[@]}" --out "$docs/runs.csv"
$cli table "$docs/runs.csv" --out-prefix "$docs/table1" --metric max_acc
$cli split-effect "$docs/runs.csv" --out-prefix "$docs/split-effect" --metric max_acc
