"""Inputs that used to hang a command (issue 28, item 4) are refused in one line with exit 2.

Each command runs in a subprocess with a time-out, so that a regression fails the test instead of
hanging the suite: reading a FIFO blocks until something writes to it, and nothing does here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import lenet_fpga as lf
from lenet_fpga.model.errors import InputError

CLI = [sys.executable, "-c", "import sys; from lenet_fpga.cli import main; sys.exit(main())"]


def refused_in_time(argv, message, timeout=120):
    try:
        done = subprocess.run(CLI + argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"lenet-fpga {' '.join(argv)} still ran after {timeout} s")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_import_of_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "model.pt")
    refused_in_time(["import", str(tmp_path / "model.pt"), "--out", str(tmp_path / "w.npz")],
                    "is a FIFO (named pipe), not a regular file")
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]


def test_train_network_of_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "net.json")
    refused_in_time(["train", "--network", str(tmp_path / "net.json"), "--out", str(tmp_path / "w.npz")],
                    "is a FIFO (named pipe), not a regular file")


def test_verilog_lanes_beyond_any_layer(tmp_path):
    refused_in_time(["verilog", "--lanes", "99999", "-o", str(tmp_path / "x.v")], "at most 256")
    assert not (tmp_path / "x.v").exists()


def test_lanes_are_bounded_by_each_layers_inputs():
    """The shipped 6,16:120,84 network: 28 - 5 + 1 = 24, pooled to 12; 12 - 5 + 1 = 8, pooled to
    4; so fc1 reads 16 * 4 * 4 = 256 inputs, fc2 120 and fc3 84."""
    ws = lf.load_weights()
    assert [layer.in_features for layer in ws.network.linear_layers] == [256, 120, 84]
    assert lf.design_config(ws, lf.GeneratorOptions(lanes=(256,))).linear_lanes == 256  # one value: the widest
    with pytest.raises(InputError, match="lanes 257: more than the 256 inputs of fc1"):
        lf.design_config(ws, lf.GeneratorOptions(lanes=(257,)))
    assert lf.design_config(ws, lf.GeneratorOptions(lanes=(256, 120, 84))).linear_lanes == (256, 120, 84)
    with pytest.raises(InputError, match="lanes 85 for fc3: more than its 84 inputs"):
        lf.design_config(ws, lf.GeneratorOptions(lanes=(256, 120, 85)))
