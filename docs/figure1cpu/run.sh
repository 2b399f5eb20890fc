#!/usr/bin/env bash
# The figure1cpu study in parts, across sittings. It shares the sensitivity study's runs
# folder (runs_of: sensitivity), so the cells both define train once. Each sitting:
#   1. restores the published records (docs/figure1cpu/runs.tar.xz) into that folder,
#   2. trains what is missing, slice by slice, packing the archive after each slice,
#   3. builds the tables and figures and copies the small outputs here.
# Stop it at any time (Ctrl-C): what finished is in the archive after the next slice,
# and a killed run resumes from its checkpoint. Commit docs/figure1cpu/ afterwards.
#   bash docs/figure1cpu/run.sh            # CORES=2 by default; one thread per job
#   SLICES="grid-iid" bash docs/figure1cpu/run.sh
# By default every slice of the study, in config.yaml's order (a slice already trained
# costs nothing), so a slice appended to config.yaml is trained by the next sitting.
set -euo pipefail
cd "$(dirname "$0")/../.."
CORES=${CORES:-2}
docs=docs/figure1cpu
runs=results/sensitivity/runs
cli="python workflow/scripts/byzstress.py"
SLICES=${SLICES:-$($cli runs figure1cpu --slices)}
if [ -f "$docs/runs.tar.xz" ]; then
  $cli restore "$docs/runs.tar.xz" --runs "$runs"
fi
set -f  # slice names such as gamma[gamma=0.2] are words, not file patterns
for slice in $SLICES; do
  set +f
  # a slice that does not expand is an error here, not an empty target list (with none,
  # snakemake would build the default study instead)
  paths=$($cli runs figure1cpu --slice "$slice")
  mapfile -t todo < <(while read -r f; do [ -f "$f" ] || echo "$f"; done <<<"$paths")
  # a slice whose records are all restored costs neither a snakemake start nor a pack
  [ "${#todo[@]}" -gt 0 ] || continue
  snakemake --cores "$CORES" --config 'studies=[figure1cpu]' --keep-going -- "${todo[@]}" || true
  $cli pack "$runs" --study figure1cpu --out "$docs/runs.tar.xz"
done
mapfile -t have < <($cli runs figure1cpu | while read -r f; do [ -f "$f" ] && echo "$f"; done)
echo "figure1cpu: ${#have[@]} of $($cli runs figure1cpu | wc -l) runs trained"
# outputs of what is there (a partial study shows its finished part)
if [ "${#have[@]}" -gt 0 ]; then
  $cli collect "${have[@]}" --out "$docs/runs.csv"
  $cli table "$docs/runs.csv" --out-prefix "$docs/table1" --metric max_acc
  $cli figure "$docs/runs.csv" --out-prefix "$docs/figure1" --metric max_acc
  $cli calibration "$docs/runs.csv" --out-prefix "$docs/calibration" --metric max_acc
  $cli detection "$docs/runs.csv" --out-prefix "$docs/detection" --metric max_acc
fi
