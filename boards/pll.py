"""A design clock faster than the board's oscillator: the ECP5 PLL (EHXPLLL) and the iCE40 PLL
(SB_PLL40_PAD).

The ULX3S has a 25 MHz oscillator and the iCEBreaker a 12 MHz one, but both accelerators close
timing above that; ``lenet-fpga build --clock-mhz F`` runs the design from a PLL at F. Each
family's divider search is the one of the vendor-independent tool Yosys/icestorm ship for it
(``ecppll``, ``icepll``): the closest output frequency, then (ECP5) the VCO nearest 600 MHz.
nextpnr derives the PLL output's timing constraint from the oscillator's, so the report checks the
design against F. Each setting makes its own clock domain (``setting.domain()``).
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

    def domain(self) -> "ECP5PLLDomain":
        return ECP5PLLDomain(self)


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


class PLLDomain(Elaboratable):
    """Drives the ``sync`` clock at ``setting.output_hz`` from the board's oscillator, and holds
    ``sync`` in reset until the PLL locks. The parent defines the domain; each family's subclass
    makes its PLL (``pll``)."""

    def __init__(self, setting):
        self.setting = setting

    def pll(self, m: Module, clk_in, locked: Signal):
        """Add the PLL to ``m``: ``clk_in`` the oscillator's raw port, ``locked`` its lock output."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        self.pll(m, platform.request(platform.default_clk, dir="-"), locked)
        m.submodules.reset = ResetSynchronizer(~locked, domain="sync")
        return m


class ECP5PLLDomain(PLLDomain):
    """An EHXPLLL fed from the oscillator through an input buffer."""

    def pll(self, m, clk_in, locked):
        s = self.setting
        m.submodules.oscillator = oscillator = io.Buffer("i", clk_in)
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


# The iCE40 PLL (iCE40 LP/HX/UltraPlus sysCLOCK PLL, as icepll checks it): the phase detector
# runs at input / (DIVR + 1), the VCO at that times DIVF + 1, the output is the VCO / 2**DIVQ.
ICE40_PFD_HZ = (10e6, 133e6)
ICE40_VCO_HZ = (533e6, 1066e6)
ICE40_OUTPUT_HZ = (16e6, 275e6)
# The loop filter's range follows the phase detector's frequency (icepll's table): range 1 below
# 17 MHz, 2 below 26, 3 below 44, 4 below 66, 5 below 101, else 6.
ICE40_FILTER_STEPS_HZ = (17e6, 26e6, 44e6, 66e6, 101e6)


@dataclass(frozen=True)
class ICE40PLLSetting:
    input_hz: float
    divr: int  # 0..15
    divf: int  # 0..127
    divq: int  # 1..6

    @property
    def pfd_hz(self) -> float:
        return self.input_hz / (self.divr + 1)

    @property
    def vco_hz(self) -> float:
        return self.pfd_hz * (self.divf + 1)

    @property
    def output_hz(self) -> float:
        return self.vco_hz / 2 ** self.divq

    @property
    def filter_range(self) -> int:
        return 1 + sum(self.pfd_hz >= step for step in ICE40_FILTER_STEPS_HZ)

    def domain(self) -> "ICE40PLLDomain":
        return ICE40PLLDomain(self)


def ice40_pll(input_hz: float, output_hz: float) -> ICE40PLLSetting:
    """The SB_PLL40 dividers whose output is nearest ``output_hz`` (the first found on a tie,
    searching DIVR, then DIVF, then DIVQ upwards, as icepll does)."""
    if not ICE40_OUTPUT_HZ[0] <= output_hz <= ICE40_OUTPUT_HZ[1]:
        raise InputError(f"clock {output_hz / 1e6:g} MHz: the iCE40 PLL output must lie in "
                         f"{ICE40_OUTPUT_HZ[0] / 1e6:g}..{ICE40_OUTPUT_HZ[1] / 1e6:g} MHz")
    best, best_error = None, None
    for divr in range(16):
        for divf in range(128):
            for divq in range(1, 7):
                setting = ICE40PLLSetting(input_hz, divr, divf, divq)
                if not (ICE40_PFD_HZ[0] <= setting.pfd_hz <= ICE40_PFD_HZ[1]
                        and ICE40_VCO_HZ[0] <= setting.vco_hz <= ICE40_VCO_HZ[1]):
                    continue
                error = abs(setting.output_hz - output_hz)
                if best_error is None or error < best_error:
                    best, best_error = setting, error
    if best is None:
        raise InputError(f"the iCE40 PLL cannot make {output_hz / 1e6:g} MHz from {input_hz / 1e6:g} MHz")
    return best


class ICE40PLLDomain(PLLDomain):
    """An SB_PLL40_PAD on the oscillator's pad (the iCEBreaker's 12 MHz clock pin is a PLL input
    pad)."""

    def pll(self, m, clk_in, locked):
        s = self.setting
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
            p_DIVR=s.divr, p_DIVF=s.divf, p_DIVQ=s.divq, p_FILTER_RANGE=s.filter_range,
            i_PACKAGEPIN=clk_in.io, i_RESETB=1, i_BYPASS=0,
            o_PLLOUTGLOBAL=ClockSignal("sync"), o_LOCK=locked,
        )
