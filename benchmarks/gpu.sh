#!/usr/bin/env bash
# One GPU session, in the order that matters most if time runs out: the CUDA correctness
# tests, coordinate-wise statistics, the table1 study estimate (one run at a time and
# batched; R runs per process; K processes sharing the GPU; a profile), then the step
# benchmark of bench_step.py. Every result lands in OUTDIR (default bench-gpu/).
#
#   bash benchmarks/gpu.sh [OUTDIR]
#   STUDY_SECTIONS=estimate,batch STEP=0 COORD=0 bash benchmarks/gpu.sh   # a part only
#
# Needs python3 with a CUDA build of torch, torchvision, pyyaml, pandas, pytest and
# hypothesis (the project's own venv will do); ByzFL 0.0.11 is optional (its baseline is
# recorded as skipped without it). Fashion-MNIST comes from BYZSTRESS_FMNIST_DIR or the
# Debian package; CIFAR-10 from $BYZSTRESS_DATA, else random CIFAR-shaped tensors.
set -uo pipefail
out=${1:-bench-gpu}
mkdir -p "$out"
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export BYZSTRESS_DATA=${BYZSTRESS_DATA:-/tmp/bench-data}
py=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
    --format=csv | tee "$out/gpu.txt"
"$py" -c 'import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())' \
    | tee -a "$out/gpu.txt"

echo "== CUDA correctness tests"
"$py" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider >"$out/test-gpu.log" 2>&1
echo "pytest exit $?"
tail -5 "$out/test-gpu.log"

if [ "${COORD:-1}" = 1 ]; then
    echo "== coordinate-wise statistics"
    "$py" benchmarks/bench_coordinatewise.py --device cuda | tee "$out/coordinatewise.txt"
fi

echo "== table1: ${STUDY_SECTIONS:=estimate,batch,share,profile}"
"$py" benchmarks/bench_study.py --study table1 --device cuda --steps 20 \
    --sections "$STUDY_SECTIONS" --share 1,2,4,8 --share-window 10 \
    --out "$out/table1-cuda.json" 2>"$out/table1-cuda.err"
echo "bench_study exit $?"

if [ "${STEP:-1}" = 1 ]; then
    echo "== step benchmark"
    "$py" benchmarks/bench_step.py --device cuda --steps 20 --repeats 20 --budget 15 \
        --out "$out/bench-cuda.json" 2>"$out/bench-cuda.err"
    echo "bench_step exit $?"
fi
