"""A design clock faster than the board's oscillator: the ECP5 PLL (EHXPLLL).

The ULX3S has a 25 MHz oscillator, but the streaming accelerator closes timing well above that;
``lenet-fpga build --clock-mhz F`` runs the design from a PLL at F. The divider search is the one
Yosys' ``ecppll`` tool does: the closest output frequency, then the VCO nearest 600 MHz.
nextpnr derives the PLL output's timing constraint from the oscillator's, so the report checks the
design against F.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from ..model.errors import InputError

VCO_HZ = (400e6, 800e6)
PFD_MIN_HZ = 3.125e6  # phase detector input
OUTPUT_HZ = (10e6, 400e6)  # what lenet-fpga accepts; the PLL goes lower, the design does not need it
VCO_PREFERRED_HZ = 600e6


@dataclass(frozen=True)
class PLLSetting:
    input_hz: float
    input_div: int  # CLKI_DIV
    feedback_div: int  # CLKFB_DIV, feedback from CLKOP
    output_div: int  # CLKOP_DIV

    @property
    def output_hz(self) -> float:
        return self.input_hz / self.input_div * self.feedback_div

    @property
    def vco_hz(self) -> float:
        return self.output_hz * self.output_div


def ecp5_pll(input_hz: float, output_hz: float) -> PLLSetting:
    """The EHXPLLL dividers whose output is nearest ``output_hz``."""
    if not OUTPUT_HZ[0] <= output_hz <= OUTPUT_HZ[1]:
        raise InputError(f"clock {output_hz / 1e6:g} MHz: the ECP5 PLL output here must lie in "
                         f"{OUTPUT_HZ[0] / 1e6:g}..{OUTPUT_HZ[1] / 1e6:g} MHz")
    best, best_key = None, None
    for input_div in range(1, 129):
        if input_hz / input_div < PFD_MIN_HZ:
            break
        for feedback_div in range(1, 81):
            for output_div in range(1, 129):
                setting = PLLSetting(input_hz, input_div, feedback_div, output_div)
                if not VCO_HZ[0] <= setting.vco_hz <= VCO_HZ[1]:
                    continue
                key = (abs(setting.output_hz - output_hz), abs(setting.vco_hz - VCO_PREFERRED_HZ))
                if best_key is None or key < best_key:
                    best, best_key = setting, key
    assert best is not None, "some divider always fits 10..400 MHz"
    return best


class ECP5PLLDomain(Elaboratable):
    """Drives the ``sync`` clock at ``setting.output_hz`` from the board's oscillator, and holds
    ``sync`` in reset until the PLL locks. The parent defines the domain."""

    def __init__(self, setting: PLLSetting):
        self.setting = setting

    def elaborate(self, platform):
        m = Module()
        s = self.setting
        clk_in = platform.request(platform.default_clk, dir="-")
        m.submodules.oscillator = oscillator = io.Buffer("i", clk_in)
        locked = Signal()
        mhz = lambda hz: f"{hz / 1e6:.6g}"  # noqa: E731
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=mhz(s.input_hz), a_FREQUENCY_PIN_CLKOP=mhz(s.output_hz),
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=s.input_div, p_CLKFB_DIV=s.feedback_div, p_FEEDBK_PATH="CLKOP",
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=s.output_div, p_CLKOP_CPHASE=s.output_div - 1,
            p_CLKOP_FPHASE=0,
            i_RST=0, i_STDBY=0, i_CLKI=oscillator.i, i_CLKFB=ClockSignal("sync"),
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=ClockSignal("sync"), o_LOCK=locked,
        )
        m.submodules.reset = ResetSynchronizer(~locked, domain="sync")
        return m

