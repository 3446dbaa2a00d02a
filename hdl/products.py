"""Products of restricted weight codes (``model.codes``): what a layer's multipliers become.

A layer's weights are stored as their restriction's indices (``Restriction.stored``, ``bits``
wide) and turned back into products here, in one of three forms:

* **multiply** (``Uniform``: codes ``c * 2**s``): a multiplier of the activation by the signed
  ``bits``-wide factor ``c``, as narrow as the codes; the ``2**s`` is applied to the sum of the
  products, a free shift. An 8-bit layer is this form with ``c`` the code and ``s`` 0.
* **packed** (``Uniform`` with ``bits <= 4`` on DSP blocks, two groups sharing the activation):
  one multiplier computes two products, ``x * (c0 + c1 * 2**m)``. With ``x`` a 7-bit unsigned
  activation, ``|x * c0| < 2**(m-1)`` for ``m = 7 + bits``, so the low ``m`` bits of the result,
  read as signed, are ``x * c0``, and the rest plus that field's sign bit is ``x * c1`` (the
  borrow the low field's sign took from it). An ECP5 MULT18X18D holds ``c0 + c1 * 2**11`` (15
  bits) and gives 312 products a cycle from the 85F's 156 blocks.
* **select** (``Ternary`` and ``PowerOfTwo``: codes ``+-m`` or 0 with few magnitudes): no
  multiplier, a choice among the activation shifted by each exponent (ternary: by 0), negated by
  the sign bit; the ternary scale multiplies the sum of the products once.

Every form takes the same two registered cycles as ``multiplier.registered_product_parts``
(operands, then the product's parts), so the MAC pipeline's depth does not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, Value, signed

from ..model import arith
from ..model.codes import PLAIN, PowerOfTwo, Restriction, Ternary, Uniform
from . import datapath
from .multiplier import ecp5_registered_wide_product, registered_product_parts, uses_ecp5_dsp_registers

# The widest factor two products may share a DSP with: ``7 + bits`` low bits for the first
# product, the second's ``8 + bits`` above, within the 18-bit B operand (2 * 4 + 7 = 15 + sign).
PACK_MAX_BITS = 4
X_BITS = arith.WIDTH - 1  # a nonnegative activation code: 0..127


@dataclass(frozen=True)
class WeightForm:
    """How one layer's stored weights multiply (see the module docstring)."""

    restriction: Restriction = PLAIN

    @property
    def bits(self) -> int:
        """Bits of one stored weight (the width of the weight memories' fields)."""
        return self.restriction.bits

    @property
    def kind(self) -> str:
        return "multiply" if isinstance(self.restriction, Uniform) else "select"

    @property
    def scale(self) -> int:
        """What the sum of one group's products is multiplied by."""
        if isinstance(self.restriction, Uniform):
            return 1 << self.restriction.shift
        if isinstance(self.restriction, Ternary):
            return self.restriction.scale
        return 1

    @property
    def exponents(self) -> tuple[int, ...]:
        """The shifts of the select form, by magnitude index 1, 2, ..."""
        if isinstance(self.restriction, PowerOfTwo):
            return tuple(self.restriction.exponents)
        return (0,)  # ternary: the sign and the activation itself

    def packable(self, nonnegative: bool) -> bool:
        """Two products may share a DSP multiplier."""
        return self.kind == "multiply" and nonnegative and self.bits <= PACK_MAX_BITS

    def stored(self, codes) -> np.ndarray:
        """Host side: the stored index of every code (raises if a code breaks the restriction)."""
        return self.restriction.stored(np.asarray(codes))

    def product_bits(self) -> int:
        """Bits of one product before the scale (signed): an 8-bit activation times the factor."""
        if self.kind == "multiply":
            return arith.WIDTH + self.bits
        return arith.WIDTH + max(self.exponents) + 1


def pack_shift(bits: int) -> int:
    """Where the second product sits in a packed multiplier: ``m = 7 + bits``."""
    return X_BITS + bits


def unpack_pair(p: Value, shift: int) -> tuple[Value, Value]:
    """The two products of a packed multiplier's result ``p = x*c0 + x*c1 * 2**shift``."""
    low = p[:shift].as_signed()
    high = p[shift:].as_signed() + p[shift - 1]
    return low, high


def select_product(x: Value, stored: Value, form: WeightForm) -> Value:
    """``+-(x << e)`` or 0 for a sign-and-magnitude stored weight (ternary or power of two)."""
    n = form.bits
    magnitude, negative = stored[: n - 1], stored[n - 1]
    width = form.product_bits()
    choice = Const(0, signed(width))
    for index, exponent in enumerate(form.exponents, 1):
        choice = Mux(magnitude == index, x.as_signed() << exponent, choice)
    return Mux(negative, -choice, choice)


def registered_products(m: Module, platform, xs, stored_groups, form: WeightForm, *, soft: bool,
                        nonnegative: bool, name: str) -> list[list[Value]]:
    """For every group, the products ``xs[t] * code(stored_groups[g][t])`` without the form's
    scale, two registered cycles after ``xs`` and the stored weights, as the values the caller
    registers next (the products)."""
    groups = len(stored_groups)
    if form.kind == "select":
        result = []
        for g, stored in enumerate(stored_groups):
            x_regs = [Signal(signed(arith.WIDTH), name=f"{name}{g}_x{t}") for t in range(len(xs))]
            s_regs = [Signal(form.bits, name=f"{name}{g}_s{t}") for t in range(len(stored))]
            m.d.sync += [reg.eq(v) for reg, v in zip(x_regs + s_regs, list(xs) + list(stored))]
            products = [select_product(datapath.multiplier_operand(x, nonnegative), s, form)
                        for x, s in zip(x_regs, s_regs)]
            regs = [Signal(signed(form.product_bits()), name=f"{name}{g}_select{t}") for t in range(len(products))]
            m.d.sync += [reg.eq(v) for reg, v in zip(regs, products)]
            result.append(list(regs))
        return result
    factors = [[s.as_signed() for s in stored] for stored in stored_groups]
    if not soft and form.packable(nonnegative) and groups % 2 == 0:
        return _packed_products(m, platform, xs, factors, form, name)
    width = form.product_bits()
    result = []
    for g in range(groups):
        label = f"{name}{g}" if groups > 1 else name
        part_regs = registered_product_parts(m, platform, xs, factors[g], soft=soft, nonnegative=nonnegative,
                                             name=label)
        result.append([datapath.join_parts(regs, width) for regs in part_regs])
    return result


def _packed_products(m: Module, platform, xs, factors, form: WeightForm, name: str) -> list[list[Value]]:
    """Groups 2k and 2k+1 share one multiplier per term: ``x * (c0 + c1 << shift)``."""
    shift = pack_shift(form.bits)
    wide = X_BITS + form.bits + shift + 1
    result = [[None] * len(xs) for _ in factors]
    for pair in range(len(factors) // 2):
        c0s, c1s = factors[2 * pair], factors[2 * pair + 1]
        for t, (x, c0, c1) in enumerate(zip(xs, c0s, c1s)):
            operand = datapath.multiplier_operand(x, True)
            packed = c0 + (c1 << shift)
            label = f"{name}{2 * pair}_{2 * pair + 1}_pack{t}"
            if uses_ecp5_dsp_registers(platform, False):
                p = ecp5_registered_wide_product(m, operand, packed, label, wide)
            else:
                a = Signal(signed(arith.WIDTH), name=f"{label}_a")
                b = Signal(signed(form.bits + shift + 1), name=f"{label}_b")
                p = Signal(signed(wide), name=label)
                m.d.sync += [a.eq(operand), b.eq(packed), p.eq(a * b)]
            result[2 * pair][t], result[2 * pair + 1][t] = unpack_pair(p, shift)
    return result


def dsp_blocks(form: WeightForm, groups: int, terms: int, *, soft: bool, nonnegative: bool) -> int:
    """DSP multipliers the products use on an FPGA that maps ``*`` to DSP blocks."""
    if soft or form.kind == "select":
        return 0
    if form.packable(nonnegative) and groups % 2 == 0:
        return groups * terms // 2
    return groups * terms


def scaled(total: Value, form: WeightForm) -> Value:
    """The sum of a group's products times the form's scale (a shift for ``2**s``)."""
    scale = form.scale
    if scale & (scale - 1) == 0:
        return total << (scale.bit_length() - 1)
    return total * scale
