# The two commands of the README. Both set everything up on first use.
#   make demo   run the shipped LeNet-5 on the sample digits: golden model and RTL simulation
#   make test   run the test suite (what CI runs)
#   make smoke PY=3.12   another Python (3.11, 3.12, 3.13) in its own virtualenv, .venv-3.12,
#               without PyTorch: the demo and a few RTL, board and arithmetic tests (CI: 3.12, 3.13)
VENV ?= .venv
PY ?=
BIN := $(VENV)/bin

.PHONY: demo test test-slow setup smoke
setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml scripts/setup.sh
	VENV=$(VENV) PY=$(PY) bash scripts/setup.sh
	touch $@

demo: setup
	$(BIN)/lenet-fpga demo

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=40

test-slow: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m slow

# Quick tests of the smoke run: arithmetic and golden model (their torch tests skip, saying why),
# the UART's RTL on Icarus (the demo runs the whole network on Verilator), the flash and
# timing-report code of the board flow.
SMOKE_TESTS := tests/test_arith.py tests/test_golden.py tests/test_uart_rtl.py \
	tests/test_board_flash.py tests/test_build_timing.py

smoke:
	@test -n "$(PY)" || { echo "usage: make smoke PY=3.12 (3.11, 3.12 or 3.13)" >&2; exit 2; }
	$(MAKE) --no-print-directory setup VENV=.venv-$(PY) PY=$(PY)
	.venv-$(PY)/bin/lenet-fpga demo --plots build/demo-$(PY)
	.venv-$(PY)/bin/python -m pytest -n 2 -q $(SMOKE_TESTS)
