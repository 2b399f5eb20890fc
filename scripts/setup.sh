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

# the interpreter: $PYTHON, else the first of python3.11, 3.12, 3.13 and python3 that is
# 3.11 to 3.13 (pyproject.toml's requires-python)
ok_version() { "$1" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null; }
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null && ok_version "$candidate"; then PY=$candidate; break; fi
  done
fi
if [ -z "$PY" ] || ! ok_version "$PY"; then
  echo "error: byzstress needs Python 3.11, 3.12 or 3.13 (set PYTHON=...); found ${PY:-none}" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    # Debian and Ubuntu ship venv's ensurepip apart: python3.X-venv
    venv_pkg="python$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get install -y -qq --no-install-recommends "$venv_pkg"
      rm -rf .venv
      "$PY" -m venv .venv
    else
      echo "error: '$PY -m venv' failed; install $venv_pkg (sudo apt-get install $venv_pkg)" >&2
      exit 1
    fi
  fi
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
echo "byzstress installed in .venv ($(.venv/bin/python -c 'import byzstress; print(byzstress.__version__)'))"
