#!/usr/bin/env bash
# Quick start (a): the published results rebuilt from the published run records, with no
# training (about a minute after setup). Everything goes under results/rebuild/, apart from
# the folders training uses, so that it neither feeds nor clashes with the demo's runs:
#   1. each study's records (docs/STUDY/runs.tar.xz) are restored, checksums checked, and
#      collected into a table, compared with the published docs/STUDY/runs.csv;
#   2. its Table 1 and Figure 1 are built from them; Table 1 is compared with the published
#      one where there is one;
#   3. the paper's claims are decided again from the rebuilt tables (byzstress claims) and
#      compared with docs/claims-results.csv;
#   4. every generated block of the README and docs/ is checked against the outputs.
# Exits 1 if anything differs from what is published.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
. .venv/bin/activate
cli="python workflow/scripts/byzstress.py"
out=results/rebuild
root=$out/records                 # the restored records, as results/ holds them for training
mkdir -p "$out"
sed "s#^results: .*#results: $root#" config.yaml > "$out/config.yaml"
differ=0
same() {  # same REBUILT PUBLISHED: whether two files have the same bytes
  if cmp -s "$1" "$2"; then echo "  same as $2"; else echo "  DIFFERS from $2"; differ=1; fi
}
runs_args=()
for archive in docs/*/runs.tar.xz; do
  study=$(basename "$(dirname "$archive")")
  runs=$($cli runs "$study" --runs-dir --config "$out/config.yaml")
  echo "== $study: $archive -> $runs"
  $cli restore "$archive" --runs "$runs" | tail -1
  mapfile -t have < <($cli runs "$study" --config "$out/config.yaml" \
    | while read -r f; do [ -f "$f" ] && echo "$f"; done)
  mkdir -p "$out/$study"
  $cli collect "${have[@]}" --out "$out/$study/raw.csv" > /dev/null
  # the table names each record's file: the published one under results/, ours under $root
  sed "s#$root/#results/#g" "$out/$study/raw.csv" > "$out/$study/runs.csv"
  echo "  ${#have[@]} records -> $out/$study/runs.csv"
  same "$out/$study/runs.csv" "docs/$study/runs.csv"
  runs_args+=(--runs "$study=$out/$study/runs.csv")
  paper=$(python -c "import sys, yaml; d = yaml.safe_load(open('config.yaml'))['definitions'][sys.argv[1]]; print('--paper' if d.get('report', {}).get('paper') else '')" "$study")
  $cli table "$out/$study/runs.csv" --out-prefix "$out/$study/table1" --metric max_acc $paper > /dev/null
  $cli figure "$out/$study/runs.csv" --out-prefix "$out/$study/figure1" --metric max_acc > /dev/null
  if [ -f "docs/$study/table1.md" ]; then same "$out/$study/table1.md" "docs/$study/table1.md"; fi
  echo "  figure: $out/$study/figure1.png"
done
echo "== the paper's claims (claims.yaml) from the rebuilt tables"
$cli claims "${runs_args[@]}" --out-prefix "$out/claims-results"
same "$out/claims-results.csv" docs/claims-results.csv
echo "== the generated blocks of the README and docs/"
$cli readme --check || differ=1
if [ "$differ" = 0 ]; then
  echo "rebuilt: every published run table, Table 1, claim and generated block matches the records"
else
  echo "rebuilt, but something differs from the published outputs (above)"
fi
exit "$differ"
