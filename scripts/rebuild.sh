#!/usr/bin/env bash
# Quick start (a): every published result rebuilt from the published run records, no
# training (about a minute after setup). For each study with records in
# docs/STUDY/runs.tar.xz it restores them (checksums checked), collects them into a table
# and builds Table 1 and Figure 1 under results/rebuild/STUDY/, then decides the paper's
# claims (byzstress claims) and checks every generated block of the README and docs/.
# Each rebuilt table is compared with the published one; the script exits 1 if any differs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
. .venv/bin/activate
cli="python workflow/scripts/byzstress.py"
out=results/rebuild
mkdir -p "$out"
differ=0
same() {  # same REBUILT PUBLISHED: say whether two files have the same bytes
  if cmp -s "$1" "$2"; then echo "  same as $2"; else echo "  DIFFERS from $2"; differ=1; fi
}
for archive in docs/*/runs.tar.xz; do
  study=$(basename "$(dirname "$archive")")
  runs=$($cli runs "$study" --runs-dir)
  echo "== $study: restoring $archive into $runs"
  $cli restore "$archive" --runs "$runs" | tail -1
  mapfile -t have < <($cli runs "$study" | while read -r f; do [ -f "$f" ] && echo "$f"; done)
  mkdir -p "$out/$study"
  $cli collect "${have[@]}" --out "$out/$study/runs.csv" > /dev/null
  echo "  ${#have[@]} records -> $out/$study/runs.csv"
  same "$out/$study/runs.csv" "docs/$study/runs.csv"
  paper=$(python -c "import yaml,sys; d=yaml.safe_load(open('config.yaml'))['definitions'][sys.argv[1]]; print('--paper' if d.get('report',{}).get('paper') else '')" "$study")
  $cli table "$out/$study/runs.csv" --out-prefix "$out/$study/table1" --metric max_acc $paper > /dev/null
  $cli figure "$out/$study/runs.csv" --out-prefix "$out/$study/figure1" --metric max_acc > /dev/null
  [ -f "docs/$study/table1.md" ] && same "$out/$study/table1.md" "docs/$study/table1.md"
  echo "  figure: $out/$study/figure1.png"
done
echo "== the paper's claims (claims.yaml) from docs/*/runs.csv"
$cli claims --out-prefix "$out/claims-results" | tail -1
same "$out/claims-results.csv" docs/claims-results.csv
echo "== the generated blocks of the README and docs/"
$cli readme --check || differ=1
if [ "$differ" = 0 ]; then
  echo "rebuilt: every published table, claim and generated block matches the records"
else
  echo "rebuilt, but something differs from the published outputs (above)"
fi
exit "$differ"
