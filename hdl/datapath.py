"""Arithmetic building blocks shared by every engine: the RTL form of ``model.arith``.

These are plain functions that return Amaranth values (combinational logic); the engines decide
where the pipeline registers go. Widths come from ``arith.accumulator_bound``, never by hand.
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Mux, Shape, Value, signed
from amaranth.lib import data

from ..model import arith

CODE = signed(arith.WIDTH)  # a Q2.6 code: weight, bias or activation
# A Memory with these attributes is built from logic, never a block RAM (Yosys' memory mapping
# honours them): for small tables in a design that needs every block RAM.
LOGIC_MEMORY = {"ram_style": "logic", "rom_style": "logic"}


def accumulator_shape(n_terms: int, input_max: int = -arith.QMIN) -> Shape:
    """The signed shape that holds any sum of ``n_terms`` products plus bias and rounding offset."""
    return signed(arith.signed_width(arith.accumulator_bound(n_terms, input_max)))


def code_vector(count: int):
    """The payload of a stream that carries ``count`` codes per transfer (one code: a plain CODE)."""
    return CODE if count == 1 else data.ArrayLayout(CODE, count)


def multiplier_operand(x: Value, nonnegative: bool) -> Value:
    """An activation as a multiplier input. A code known to be >= 0 (a pixel code or a ReLU
    output) has a zero sign bit: saying so makes a logic multiplier about half the size."""
    return Cat(x[: arith.WIDTH - 1], Const(0, 1)).as_signed() if nonnegative else x.as_signed()


def product_parts(xs, ws, soft: bool = False, nonnegative: bool = False) -> list[list[Value]]:
    """Element-wise signed products of 8-bit codes ``xs`` and weights ``ws`` (8-bit codes, or
    narrower factors of restricted codes), each as the parts whose sum it is.

    A DSP product is one part (``*``: Yosys maps it to a DSP block). ``soft`` spells a product
    out as shifted partial products in two halves, which synthesis builds from logic: an FPGA
    has few DSPs. The caller registers the parts and adds them a stage later (``join_parts``), so
    neither the multiplier nor the sum of its halves is a long path.
    """
    assert len(xs) == len(ws)
    xs = [multiplier_operand(x, nonnegative) for x in xs]
    if not soft:
        return [[x * w.as_signed()] for x, w in zip(xs, ws)]
    return [soft_product_parts(x, w.as_signed(), nonnegative) for x, w in zip(xs, ws)]


def join_parts(parts, width: int = 2 * arith.WIDTH) -> Value:
    """A product from its parts: their signed sum, ``width`` bits (16 for two 8-bit codes)."""
    return adder_tree(parts)[:width].as_signed()


def soft_product_parts(x: Value, w: Value, nonnegative: bool = False) -> list[Value]:
    """``x * w`` for a signed code ``x`` and a signed ``len(w)``-bit factor as partial products,
    ``w = -w[n-1] * 2**(n-1) + sum(w[i] * 2**i)``, summed in two halves."""
    if nonnegative:
        return _nonnegative_product_parts(x[: arith.WIDTH - 1], w)
    n = len(w)
    terms = [Mux(w[i], x.as_signed() << i, 0) for i in range(n - 1)]
    terms.append(Mux(w[n - 1], -(x.as_signed() << (n - 1)), 0))
    half = max(1, len(terms) // 2)
    return [adder_tree(terms[:half]), adder_tree(terms[half:])]


def _nonnegative_product_parts(x: Value, w: Value) -> list[Value]:
    """``x * w`` for a 7-bit unsigned ``x`` and a signed n-bit ``w`` as two parts, every adder
    only as wide as its operands (unsigned rows; the sign row subtracted once, at the end). For
    an 8-bit code, ``low + (high << 4)`` with

        low  = x*w0 + x*w1*2 + x*w2*4 + x*w3*8        (< 2**11)
        high = x*w4 + x*w5*2 + x*w6*4 - x*w7*8        (signed)

    About a fifth fewer LUTs than the general form: 135 against 171 LUT4s (a CCU2C counted as
    two) per registered multiplier in synth_ecp5. A narrower factor has fewer rows."""
    n = len(w)
    rows = [Mux(w[i], x, 0) for i in range(n)]
    split = n // 2
    low = _weighted_sum(rows[:split])
    high = -(rows[n - 1] << (n - 1 - split))
    if n - 1 > split:
        high = _weighted_sum(rows[split : n - 1]) + high
    return [low, high << split]


def _weighted_sum(rows) -> Value:
    """``sum(rows[i] << i)`` with each adder only as wide as its operands: the low half plus
    the high half shifted once."""
    if len(rows) == 1:
        return rows[0]
    half = len(rows) // 2
    return _weighted_sum(rows[:half]) + (_weighted_sum(rows[half:]) << half)


def partial_sums(terms, group: int) -> list[Value]:
    """Sums of consecutive groups of ``group`` terms: the first half of a two-stage adder tree."""
    terms = list(terms)
    return [adder_tree(terms[i : i + group]) for i in range(0, len(terms), group)]


def tree_group(n_terms: int) -> int:
    """Group size that splits an ``n_terms`` adder tree into two stages of about equal depth."""
    return math.isqrt(n_terms - 1) + 1  # ceil(sqrt(n_terms))


def adder_tree(terms) -> Value:
    """Sum of ``terms`` as a balanced binary tree: log2(n) adders deep instead of n."""
    terms = list(terms)
    assert terms, "empty sum"
    while len(terms) > 1:
        paired = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            paired.append(terms[-1])
        terms = paired
    return terms[0]


def bias_term(bias: Value, shift: int = arith.FRAC_BITS) -> Value:
    """The bias code in accumulator units: ``b << shift``, the input's fraction bits
    (``LayerArithmetic.bias_shift``; 6 for a Q2.6 input)."""
    return bias.as_signed() << shift


def requantize(acc: Value, arithmetic) -> Value:
    """``LayerArithmetic.requantize`` in logic: round, shift right, saturate or wrap to the output
    format's signed width, as a CODE (``arithmetic``: a ``LayerArithmetic``, or an ``Arithmetic``
    for a Q2.6 layer)."""
    layer = arith.as_layer(arithmetic)
    bits, low, high = layer.output.requant_bits, layer.output.low, layer.output.high
    shifted = (acc + layer.round_offset) >> layer.shift  # arithmetic shift: floor
    code = shifted[:bits].as_signed()
    if layer.overflow is arith.Overflow.WRAP:
        return as_code(code)
    # The value fits when every bit from the format's sign bit up is the same; else it
    # saturates toward its own sign. Two bit tests instead of two comparators (carry chains).
    top = shifted[bits - 1 :]
    fits = (top == 0) | (top == (1 << len(top)) - 1)
    return Mux(fits, as_code(code), Mux(shifted[-1], Const(low, CODE), Const(high, CODE)))


def as_code(value: Value) -> Value:
    """A signed value of at most 8 bits as a CODE (sign-extended)."""
    value = value.as_signed()
    return value if len(value) == arith.WIDTH else Cat(value, value[-1].replicate(arith.WIDTH - len(value))).as_signed()


def relu(code: Value, bits: int = arith.WIDTH) -> Value:
    """``max(code, 0)``; with ``bits`` < 8 (``Fixed.stored_bits`` of a narrow format) the
    result's upper bits are constant zeros, so the registers and memories after it shrink."""
    return narrowed(Mux(code.as_signed() < 0, Const(0, CODE), code.as_signed()), bits)


def narrowed(code: Value, bits: int) -> Value:
    """A nonnegative code that fits ``bits`` bits as a CODE whose upper bits are constant zeros
    (the code itself, signed, at 8 bits)."""
    if bits >= arith.WIDTH:
        return code.as_signed()
    return Cat(code[:bits], Const(0, arith.WIDTH - bits)).as_signed()


def pack_codes(codes, width: int = arith.WIDTH) -> Value:
    """Many codes in one vector, ``width`` bits each, the first in the low bits (the layout of
    a BRAM word). Below 8 bits only nonnegative codes (ReLU outputs of a narrow format) fit."""
    return Cat(*[c[:width] for c in codes])


def unpack_codes(word: Value, count: int, width: int = arith.WIDTH) -> list[Value]:
    """The inverse of ``pack_codes``: ``count`` codes from a wide vector, signed at 8 bits,
    zero-extended (nonnegative) from a narrower ``width``."""
    return [narrowed(word[i * width : (i + 1) * width], width) for i in range(count)]


def pack_words(codes, per_word: int, width: int = arith.WIDTH) -> list[int]:
    """Host side of ``pack_codes``: integers (codes, or ``width``-bit stored weights) -> memory
    word init values, the first in the low bits, zero-padded."""
    codes = [int(c) & ((1 << width) - 1) for c in codes]
    words = []
    for start in range(0, len(codes), per_word):
        word = 0
        for i, code in enumerate(codes[start : start + per_word]):
            word |= code << (i * width)
        words.append(word)
    return words
