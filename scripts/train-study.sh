#!/usr/bin/env bash
# Train a study of config.yaml in parts, across sittings, with its records published as one
# archive, docs/STUDY/runs.tar.xz:
#   1. restores that archive into the study's runs folder (a restored run is not retrained),
#   2. trains what is missing, slice by slice in config.yaml's order, packing the archive
#      after each slice (a study without slices is one part),
#   3. writes docs/STUDY/runs.csv from the records there.
# Stop it at any time (Ctrl-C): what finished is in the archive after the next slice, and a
# killed run resumes from its checkpoint. Commit docs/STUDY/ afterwards.
#   bash scripts/train-study.sh table1cpu        # CORES=2 by default; one thread per job
#   SLICES="c1-seeds" bash scripts/train-study.sh figure1cpu
set -euo pipefail
cd "$(dirname "$0")/.."
study=${1:?usage: train-study.sh STUDY}
CORES=${CORES:-2}
docs=docs/$study
cli="python workflow/scripts/byzstress.py"
runs=$($cli runs "$study" --runs-dir)
mkdir -p "$docs"
SLICES=${SLICES:-$($cli runs "$study" --slices)}
if [ -f "$docs/runs.tar.xz" ]; then
  $cli restore "$docs/runs.tar.xz" --runs "$runs"
fi
set -f  # slice names such as gamma[gamma=0.2] are words, not file patterns
for slice in ${SLICES:-all}; do
  set +f
  if [ "$slice" = all ]; then
    paths=$($cli runs "$study")
  else
    # a slice that does not expand is an error here, not an empty target list (with none,
    # snakemake would build the default study instead)
    paths=$($cli runs "$study" --slice "$slice")
  fi
  mapfile -t todo < <(while read -r f; do [ -f "$f" ] || echo "$f"; done <<<"$paths")
  # a slice whose records are all restored costs neither a snakemake start nor a pack
  [ "${#todo[@]}" -gt 0 ] || continue
  snakemake --cores "$CORES" --config "studies=[$study]" --keep-going -- "${todo[@]}" || true
  $cli pack "$runs" --study "$study" --out "$docs/runs.tar.xz"
done
mapfile -t have < <($cli runs "$study" | while read -r f; do [ -f "$f" ] && echo "$f"; done)
echo "$study: ${#have[@]} of $($cli runs "$study" | wc -l) runs trained"
if [ "${#have[@]}" -gt 0 ]; then
  $cli collect "${have[@]}" --out "$docs/runs.csv"
fi
