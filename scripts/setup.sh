#!/usr/bin/env bash
# One-time set-up, run by `make` before anything else: a virtualenv with lenet-fpga and its
# tools, and Icarus Verilog from the OS. Idempotent; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

python=""
for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    echo "setup: lenet-fpga needs Python 3.11 (python3.11 or python3 on PATH)" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $python"
    "$python" -m venv "$VENV"
fi
# torch first and exactly: it is pinned to the CPU build; a looser request pulls CUDA packages.
"$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==2.13.0"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e ".[train,sim,boards,explore,dev]"

if ! command -v iverilog >/dev/null; then
    echo "setup: installing Icarus Verilog (Debian package iverilog)"
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then sudo=sudo; else
            echo "setup: please install Icarus Verilog (apt-get install iverilog) and run again" >&2
            exit 1
        fi
    fi
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq iverilog >/dev/null
fi
echo "setup: done ($("$VENV/bin/lenet-fpga" --version 2>/dev/null || echo lenet-fpga))"
