# The two commands of the README. Both set everything up on first use.
#   make demo   run the shipped LeNet-5 on the sample digits: golden model and RTL simulation
#   make test   run the test suite (what CI runs)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow setup
setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $@

demo: setup
	$(BIN)/lenet-fpga demo

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-slow: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m slow
