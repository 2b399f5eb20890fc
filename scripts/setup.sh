#!/usr/bin/env bash
# Set up byzstress on a fresh Debian/Ubuntu machine: the Fashion-MNIST package (when we
# may use apt) and a virtualenv in .venv with the package and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends dataset-fashion-mnist
  else
    echo "note: Fashion-MNIST package missing; run 'sudo apt-get install dataset-fashion-mnist'," \
      "or, without root, '.venv/bin/byzstress download fmnist --data-root data' (needs the internet)" >&2
  fi
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
echo "byzstress installed in .venv ($(.venv/bin/python -c 'import byzstress; print(byzstress.__version__)'))"
