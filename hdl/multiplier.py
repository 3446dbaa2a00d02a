"""Multipliers with a register on each side, as the conv and linear engines use them.

    operands -> register -> multiply -> register -> the product's parts    (two cycles)

On an ECP5 a DSP multiplier is a MULT18X18D whose own input and output registers are these two
registers. The DSP blocks stand in fixed rows, often far from the logic that feeds them; with
fabric registers a path still ran register -> long route -> multiplier -> long route ->
register, and that set the clock. With the DSP's registers each long route is a path of its
own. Everywhere else (simulation, other FPGAs, multipliers built from logic) the registers are
flip-flops and the product is Amaranth's ``*`` or ``datapath.soft_product_parts``; both forms take
the same two cycles and give the same bits.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, Value, signed

from ..model import arith
from . import datapath

# MULT18X18D operand width: 8-bit codes are sign-extended to it.
DSP_OPERAND_BITS = 18


def uses_ecp5_dsp_registers(platform, soft: bool) -> bool:
    """Whether ``registered_product_parts`` instantiates MULT18X18D blocks for this platform."""
    return not soft and getattr(platform, "family", None) == "ecp5"


def registered_product_parts(m: Module, platform, xs, ws, *, soft: bool, nonnegative: bool,
                             name: str) -> list[list[Signal]]:
    """Element-wise products ``xs[t] * ws[t]`` (Q2.6 codes), each as the registered parts whose
    sum it is (``datapath.product_parts``), two cycles after ``xs`` and ``ws``."""
    assert len(xs) == len(ws)
    if uses_ecp5_dsp_registers(platform, soft):
        return [[_ecp5_registered_product(m, datapath.multiplier_operand(x, nonnegative), w.as_signed(),
                                          f"{name}_dsp{t}")] for t, (x, w) in enumerate(zip(xs, ws))]
    x_regs = [Signal(signed(arith.WIDTH), name=f"{name}_x{t}") for t in range(len(xs))]
    w_regs = [Signal(signed(len(w)), name=f"{name}_w{t}") for t, w in enumerate(ws)]
    m.d.sync += [reg.eq(v) for reg, v in zip(x_regs + w_regs, list(xs) + list(ws))]
    parts = datapath.product_parts(x_regs, w_regs, soft=soft, nonnegative=nonnegative)
    part_regs = [[Signal(v.shape(), name=f"{name}_part{t}_{n}") for n, v in enumerate(product)]
                 for t, product in enumerate(parts)]
    m.d.sync += [reg.eq(v) for regs, product in zip(part_regs, parts) for reg, v in zip(regs, product)]
    return part_regs


def _ecp5_registered_product(m: Module, x: Value, w: Value, name: str) -> Signal:
    """``ecp5_registered_wide_product`` of two 8-bit codes: P[15:0], their signed product."""
    return ecp5_registered_wide_product(m, x, w, name, 2 * arith.WIDTH)


def ecp5_registered_wide_product(m: Module, x: Value, w: Value, name: str, width: int) -> Signal:
    """One MULT18X18D with its A, B and output registers on the ``sync`` clock, no clock enable
    and no reset (the engines never stall, and a product's value matters only when its valid
    flag, kept in logic, says so); the low ``width`` bits of the signed product of ``x`` and
    ``w`` (each at most 18 bits, sign-extended)."""
    product = Signal(signed(width), name=name)
    p = Signal(2 * DSP_OPERAND_BITS, name=f"{name}_p")
    a = Signal(signed(DSP_OPERAND_BITS), name=f"{name}_a")
    b = Signal(signed(DSP_OPERAND_BITS), name=f"{name}_b")
    m.d.comb += [a.eq(x), b.eq(w)]  # sign-extended: SIGNEDA and SIGNEDB are set
    ports = {f"i_A{i}": a[i] for i in range(DSP_OPERAND_BITS)}
    ports |= {f"i_B{i}": b[i] for i in range(DSP_OPERAND_BITS)}
    ports |= {f"i_C{i}": Const(0, 1) for i in range(DSP_OPERAND_BITS)}
    ports |= {f"o_P{i}": p[i] for i in range(2 * DSP_OPERAND_BITS)}
    m.submodules[name] = Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_OUTPUT_CLK="CLK0",
        p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
        i_CLK0=ClockSignal("sync"), i_CE0=Const(1, 1), i_RST0=Const(0, 1),
        i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
        **ports,
    )
    m.d.comb += product.eq(p[:width].as_signed())
    return product



class ECP5Target:
    """Stands in for an ECP5 board platform where the accelerator is generated on its own: for
    out-of-context synthesis, and to simulate the MULT18X18D form (``sim.ecp5_models``). Only
    ``family`` is looked at."""

    family = "ecp5"
