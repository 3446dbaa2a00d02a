"""The Q2.6 arithmetic contract: the one definition of the hardware's number format.

Everything that computes a LeNet-5 output (the numpy golden model, the PyTorch fake-quant
trainer, the RTL generator and the testbenches) takes its constants and its requantizer from
here. ``docs/arithmetic.md`` is the prose version of this file.

A Q2.6 code ``q`` is a signed 8-bit integer (-128..127) standing for ``q / 64``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

WIDTH = 8  # bits of a weight, bias or activation code
FRAC_BITS = 6  # fraction bits: value = q / 2**FRAC_BITS
SCALE = 1 << FRAC_BITS  # 64
QMIN = -(1 << (WIDTH - 1))  # -128
QMAX = (1 << (WIDTH - 1)) - 1  # 127
PIXEL_MAX = 255


class Rounding(str, enum.Enum):
    """How the requantizer drops the 6 extra fraction bits of a product sum."""

    HALF_UP = "half-up"  # (acc + 32) >> 6
    FLOOR = "floor"  # acc >> 6

    def __str__(self) -> str:
        return self.value


class Overflow(str, enum.Enum):
    """What the requantizer does with a result outside -128..127."""

    SATURATE = "saturate"  # clip to -128..127
    WRAP = "wrap"  # keep the low 8 bits (two's complement), as the original hand-written RTL

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Arithmetic:
    """The two free choices of the contract. Everything else is fixed by Q2.6."""

    rounding: Rounding = Rounding.HALF_UP
    overflow: Overflow = Overflow.SATURATE

    def __post_init__(self):
        # Accept the CLI spellings ("half-up", "wrap") as well as the enum members.
        object.__setattr__(self, "rounding", Rounding(self.rounding))
        object.__setattr__(self, "overflow", Overflow(self.overflow))

    @property
    def round_offset(self) -> int:
        """The constant added to the accumulator before the arithmetic right shift."""
        return 1 << (FRAC_BITS - 1) if self.rounding is Rounding.HALF_UP else 0

    def requantize(self, acc):
        """Accumulator (units of 1/4096) -> Q2.6 code (units of 1/64), before ReLU."""
        return requantize(acc, self.rounding, self.overflow)

    def describe(self) -> str:
        return f"Q2.6, rounding {self.rounding}, overflow {self.overflow}"


# Every arithmetic the contract allows (rounding outer, overflow inner).
ARITHMETICS = tuple(Arithmetic(r, o) for r in Rounding for o in Overflow)


def quantize_pixels(pixels) -> np.ndarray:
    """Pixel 0..255 -> Q2.6 code 0..64: the nearest code to p/255, ties up. int64 out."""
    p = np.asarray(pixels)
    if p.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8 (0..255), got dtype {p.dtype}")
    return (p.astype(np.int64) * SCALE + PIXEL_MAX // 2) // PIXEL_MAX


def wrap(y) -> np.ndarray:
    """Keep the low WIDTH bits of an integer, read as two's complement."""
    y = np.asarray(y, dtype=np.int64)
    return ((y - QMIN) & ((1 << WIDTH) - 1)) + QMIN


def saturate(y) -> np.ndarray:
    return np.clip(np.asarray(y, dtype=np.int64), QMIN, QMAX)


def requantize(acc, rounding=Rounding.HALF_UP, overflow=Overflow.SATURATE) -> np.ndarray:
    """Drop FRAC_BITS fraction bits of a wide accumulator and fit the result into 8 bits.

    ``acc`` is an integer array in units of 2**-12 (a sum of Q2.6 x Q2.6 products plus the bias
    shifted left by 6). The shift is arithmetic (floor for negative numbers too).
    """
    acc = np.asarray(acc, dtype=np.int64)
    offset = 1 << (FRAC_BITS - 1) if Rounding(rounding) is Rounding.HALF_UP else 0
    y = (acc + offset) >> FRAC_BITS
    return saturate(y) if Overflow(overflow) is Overflow.SATURATE else wrap(y)


def quantize_weights(w) -> np.ndarray:
    """Float weight or bias -> Q2.6 code: nearest code (ties to even), clipped. int8 out.

    Used once, when a trained float tensor is frozen into the integer weights; the trainer's
    fake-quant applies the same rule so training sees exactly the exported codes.
    """
    return np.clip(_nearest_codes(w), QMIN, QMAX).astype(np.int8)


def clipped_by_quantize(w) -> int:
    """How many values of ``w`` ``quantize_weights`` clips: their nearest code is past QMIN..QMAX."""
    codes = _nearest_codes(w)
    return int(np.count_nonzero((codes < QMIN) | (codes > QMAX)))


def _nearest_codes(w) -> np.ndarray:
    """``w`` in code units, rounded to the nearest (ties to even), not yet clipped."""
    return np.rint(np.asarray(w, dtype=np.float64) * SCALE)


def accumulator_bound(n_terms: int, input_max: int = -QMIN) -> int:
    """Largest |acc| of ``n_terms`` products of |x| <= input_max and |w| <= 128, plus the bias.

    The RTL sizes its accumulators from this, so the bound lives with the arithmetic.
    """
    return n_terms * input_max * (-QMIN) + (-QMIN << FRAC_BITS) + (1 << (FRAC_BITS - 1))


def signed_width(bound: int) -> int:
    """Bits of a two's complement signal that holds -bound..bound."""
    return (bound).bit_length() + 1
