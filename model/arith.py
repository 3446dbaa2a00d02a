"""The arithmetic contract: the one definition of the hardware's number formats.

Everything that computes a network's output (the numpy golden model, the PyTorch fake-quant
trainer, the RTL generator and the testbenches) takes its constants and its requantizers from
here. ``docs/arithmetic.md`` is the prose version of this file.

Weights and biases are Q2.6 codes: a signed 8-bit integer ``q`` (-128..127) standing for
``q / 64`` (narrower weights are Q2.6 codes restricted by ``codes.py``). Pixels enter as Q2.6
codes 0..64. Each hidden layer's output activations have a format of their own (``Fixed``),
Q2.6 by default; ``LayerArithmetic`` is one layer's requantizer from its input's and output's
formats.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import numpy as np

from .errors import InputError


def signed_range(bits: int) -> tuple[int, int]:
    """The lowest and highest value of a ``bits``-bit two's complement number."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


WIDTH = 8  # bits of a weight, bias or activation code
FRAC_BITS = 6  # fraction bits: value = q / 2**FRAC_BITS
SCALE = 1 << FRAC_BITS  # 64
QMIN, QMAX = signed_range(WIDTH)  # -128, 127
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


class FormatError(InputError, ValueError):
    """A number format the hardware cannot have (the message says why)."""


# The most fraction bits an activation may have: the weights' 6. A layer adds its bias, a Q2.6
# code, as b << (input fraction bits), and the compact design does that as the product of b and
# the code 2**frac through a multiplier input of 7 magnitude bits, so 2**frac <= 64.
MAX_ACTIVATION_FRAC = FRAC_BITS
_SPELLING = re.compile(r"(U?)Q(\d+)\.(\d+)")


@dataclass(frozen=True)
class Fixed:
    """A hidden layer's output activation format: ``bits`` stored bits, ``frac`` of them
    fraction bits, so a code ``q`` stands for ``q / 2**frac``.

    Signed (``Q<m>.<frac>``, m = bits - frac integer bits with the sign): the requantizer fits
    the value into ``bits`` signed bits, then ReLU. Unsigned (``UQ<m>.<frac>``): the format
    uses the sign bit as magnitude. It is exactly the signed format of ``bits + 1`` bits, whose
    ReLU output always has a zero sign bit, stored without that bit: saturating to
    -2**bits..2**bits-1 and then ReLU is clipping to 0..2**bits-1; wrapping to bits+1 bits and
    then ReLU is what it computes for wrap (``requant_bits``).
    """

    bits: int = WIDTH
    frac: int = FRAC_BITS
    signed: bool = True

    def __post_init__(self):
        for name in ("bits", "frac"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise FormatError(f"an activation format's {name} must be a whole number, not {value!r}")
        if not isinstance(self.signed, bool):
            raise FormatError(f"an activation format's 'signed' must be true or false, not {self.signed!r}")
        if not 2 <= self.bits <= WIDTH:
            raise FormatError(f"an activation format has 2 to {WIDTH} bits, not {self.bits}")
        if not 0 <= self.frac <= self.bits:
            raise FormatError(f"an activation format of {self.bits} bits has 0 to {self.bits} fraction bits, "
                              f"not {self.frac}")
        if self.frac > MAX_ACTIVATION_FRAC:
            raise FormatError(f"an activation has at most {MAX_ACTIVATION_FRAC} fraction bits, as many as the "
                              f"weights (the bias enters as b << fraction bits through a 7-bit multiplier "
                              f"input), not {self.frac}")
        if not self.signed and self.bits >= WIDTH:
            raise FormatError(f"an unsigned activation format has at most {WIDTH - 1} bits: the datapath "
                              f"carries {WIDTH}-bit signed codes (UQ{self.bits - self.frac}.{self.frac} "
                              f"would be a {WIDTH + 1}-bit signed value)")

    @property
    def requant_bits(self) -> int:
        """The signed width the requantizer fits a value into (ReLU follows)."""
        return self.bits if self.signed else self.bits + 1

    @property
    def low(self) -> int:
        """The requantizer's lowest code (ReLU then makes it 0)."""
        return signed_range(self.requant_bits)[0]

    @property
    def high(self) -> int:
        """The largest code a layer of this format outputs."""
        return signed_range(self.requant_bits)[1]

    @property
    def stored_bits(self) -> int:
        """Bits a memory needs for this format's ReLU outputs: the magnitude bits (the sign bit
        of a ReLU output is 0). Q2.6 keeps its 8, as the designs measured before formats did."""
        return WIDTH if self == Fixed() else self.requant_bits - 1

    def __str__(self) -> str:
        return f"{'' if self.signed else 'U'}Q{self.bits - self.frac}.{self.frac}"

    @classmethod
    def parse(cls, text: str) -> Fixed:
        """``Q2.6`` (signed, 2 integer bits with the sign, 6 fraction bits) or ``UQ2.2``."""
        match = _SPELLING.fullmatch(str(text).strip().upper())
        if not match:
            raise FormatError(f"an activation format is spelled like Q2.6 or UQ2.2 (integer bits . fraction "
                              f"bits; U: unsigned), not {text!r}")
        unsigned, whole, frac = match.group(1), int(match.group(2)), int(match.group(3))
        return cls(whole + frac, frac, signed=not unsigned)

    def to_dict(self) -> dict:
        return {"bits": self.bits, "frac": self.frac, "signed": self.signed}

    @classmethod
    def from_dict(cls, value) -> Fixed:
        if not isinstance(value, dict) or set(value) != {"bits", "frac", "signed"}:
            raise FormatError(f"an activation format is an object with 'bits', 'frac' and 'signed', not {value!r}")
        return cls(value["bits"], value["frac"], value["signed"])


Q2_6 = Fixed()  # the default: every activation, and the pixel codes


@dataclass(frozen=True)
class LayerArithmetic:
    """One layer's arithmetic, from its input's and output's formats (``output`` None: the last
    layer, whose raw accumulators are the logits).

    A product of a weight (6 fraction bits) and an input code (``input.frac``) has
    ``acc_frac = 6 + input.frac`` fraction bits; the bias enters as ``b << input.frac``; the
    requantizer drops ``shift = acc_frac - output.frac`` of them (never negative, as
    ``output.frac`` <= 6), rounds, then saturates or wraps to ``output.requant_bits``, then ReLU.
    """

    rounding: Rounding = Rounding.HALF_UP
    overflow: Overflow = Overflow.SATURATE
    input: Fixed = Q2_6
    output: Fixed | None = Q2_6

    def __post_init__(self):
        object.__setattr__(self, "rounding", Rounding(self.rounding))
        object.__setattr__(self, "overflow", Overflow(self.overflow))

    @property
    def acc_frac(self) -> int:
        return FRAC_BITS + self.input.frac

    @property
    def bias_shift(self) -> int:
        return self.input.frac

    @property
    def shift(self) -> int:
        assert self.output is not None, "the last layer is not requantized"
        return self.acc_frac - self.output.frac

    @property
    def round_offset(self) -> int:
        """The constant added to the accumulator before the arithmetic right shift."""
        return 1 << (self.shift - 1) if self.rounding is Rounding.HALF_UP and self.shift else 0

    @property
    def input_max(self) -> int:
        """The largest input magnitude the accumulators are sized for."""
        return -self.input.low

    def requantize(self, acc) -> np.ndarray:
        """Accumulator (units of 2**-acc_frac) -> output code, before ReLU."""
        y = (np.asarray(acc, dtype=np.int64) + self.round_offset) >> self.shift
        bits = self.output.requant_bits
        return saturate(y, bits) if self.overflow is Overflow.SATURATE else wrap(y, bits)

    def activate(self, acc) -> np.ndarray:
        """Requantize, then ReLU: a hidden layer's output codes."""
        return np.maximum(self.requantize(acc), 0)


@dataclass(frozen=True)
class Arithmetic:
    """The free choices of the contract: rounding, overflow and each hidden layer's output
    format (``activations``, in layer order; empty: Q2.6 everywhere, the default). ``modes``
    gives each hidden layer a rounding and overflow of its own, ``(rounding, overflow)`` in
    layer order (empty: ``rounding`` and ``overflow`` in every layer)."""

    rounding: Rounding = Rounding.HALF_UP
    overflow: Overflow = Overflow.SATURATE
    activations: tuple[Fixed, ...] = ()
    modes: tuple[tuple[Rounding, Overflow], ...] = ()

    def __post_init__(self):
        # Accept the CLI spellings ("half-up", "wrap") as well as the enum members.
        object.__setattr__(self, "rounding", Rounding(self.rounding))
        object.__setattr__(self, "overflow", Overflow(self.overflow))
        formats = tuple(f if isinstance(f, Fixed) else Fixed.parse(f) for f in self.activations)
        # All Q2.6 is the default spelled out: one value for one arithmetic.
        object.__setattr__(self, "activations", () if all(f == Q2_6 for f in formats) else formats)
        try:
            modes = tuple((Rounding(r), Overflow(o)) for r, o in self.modes)
        except (TypeError, ValueError):
            raise FormatError(f"each layer's modes are a rounding ({', '.join(r.value for r in Rounding)}) and an "
                              f"overflow ({', '.join(o.value for o in Overflow)}), not {self.modes!r}") from None
        if modes and len(set(modes)) == 1:  # the same in every layer: the network's own
            (rounding, overflow), modes = modes[0], ()
            object.__setattr__(self, "rounding", rounding)
            object.__setattr__(self, "overflow", overflow)
        object.__setattr__(self, "modes", modes)

    @property
    def uniform(self) -> LayerArithmetic:
        """A Q2.6-in, Q2.6-out layer with this rounding and overflow (an engine on its own)."""
        return LayerArithmetic(self.rounding, self.overflow)

    @property
    def round_offset(self) -> int:
        """The Q2.6 layer's rounding constant."""
        return self.uniform.round_offset

    def requantize(self, acc):
        """Accumulator (units of 1/4096) -> Q2.6 code (units of 1/64), before ReLU: the Q2.6 layer's."""
        return self.uniform.requantize(acc)

    @property
    def wraps(self) -> bool:
        """Does any layer wrap around?"""
        return self.overflow is Overflow.WRAP or any(o is Overflow.WRAP for _, o in self.modes)

    def saturating(self) -> Arithmetic:
        """This arithmetic with every layer saturating (wrap-mode training warms up with it)."""
        return Arithmetic(self.rounding, Overflow.SATURATE, self.activations,
                          tuple((r, Overflow.SATURATE) for r, _ in self.modes))

    def formats(self, network) -> tuple[Fixed, ...]:
        """Every hidden layer's output format (conv layers, then the hidden fully connected ones)."""
        hidden = len(network.layers) - 1
        if not self.activations:
            return (Q2_6,) * hidden
        if len(self.activations) != hidden:
            raise FormatError(f"{len(self.activations)} activation formats for the network {network.spec}, "
                              f"which has {hidden} hidden layers")
        return self.activations

    def layer_modes(self, network) -> tuple[tuple[Rounding, Overflow], ...]:
        """Every hidden layer's (rounding, overflow)."""
        hidden = len(network.layers) - 1
        if not self.modes:
            return ((self.rounding, self.overflow),) * hidden
        if len(self.modes) != hidden:
            raise FormatError(f"{len(self.modes)} layer modes for the network {network.spec}, which has {hidden} "
                              f"hidden layers")
        return self.modes

    def layers(self, network) -> tuple[LayerArithmetic, ...]:
        """Each layer's arithmetic, in order; the last one's output is None (the logits)."""
        formats = self.formats(network)
        modes = (*self.layer_modes(network), (self.rounding, self.overflow))
        inputs, outputs = (Q2_6, *formats), (*formats, None)
        return tuple(LayerArithmetic(r, o, i, out) for (r, o), i, out in zip(modes, inputs, outputs))

    def layer(self, network, name: str) -> LayerArithmetic:
        return self.layers(network)[network.names.index(name)]

    def logit_frac(self, network) -> int:
        """Fraction bits of the logits (the last layer's accumulator): 12 for Q2.6."""
        return self.layers(network)[-1].acc_frac

    def describe(self) -> str:
        formats = "Q2.6" if not self.activations else "activations " + ",".join(map(str, self.activations))
        if self.modes:
            modes = ",".join(f"{r}/{o}" for r, o in self.modes)
            return f"{formats}, rounding/overflow by layer {modes}"
        return f"{formats}, rounding {self.rounding}, overflow {self.overflow}"


def as_layer(arithmetic) -> LayerArithmetic:
    """An engine's arithmetic: a ``LayerArithmetic``, or an ``Arithmetic`` meaning its Q2.6 layer."""
    if isinstance(arithmetic, LayerArithmetic):
        return arithmetic
    if isinstance(arithmetic, Arithmetic):
        if arithmetic.activations or arithmetic.modes:
            raise ValueError("an engine of a network with activation formats takes its layer's arithmetic "
                             "(Arithmetic.layers), not the network's")
        return arithmetic.uniform
    raise TypeError(f"arithmetic must be an arith.Arithmetic or LayerArithmetic, not {arithmetic!r}")


# Every arithmetic the contract allows (rounding outer, overflow inner).
ARITHMETICS = tuple(Arithmetic(r, o) for r in Rounding for o in Overflow)


def quantize_pixels(pixels) -> np.ndarray:
    """Pixel 0..255 -> Q2.6 code 0..64: the nearest code to p/255, ties up. int64 out."""
    p = np.asarray(pixels)
    if p.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8 (0..255), got dtype {p.dtype}")
    return (p.astype(np.int64) * SCALE + PIXEL_MAX // 2) // PIXEL_MAX


def wrap(y, bits: int = WIDTH) -> np.ndarray:
    """Keep the low ``bits`` bits of an integer, read as two's complement."""
    low, _ = signed_range(bits)
    return ((np.asarray(y, dtype=np.int64) - low) & ((1 << bits) - 1)) + low


def saturate(y, bits: int = WIDTH) -> np.ndarray:
    """Clip an integer to ``bits``-bit two's complement."""
    return np.clip(np.asarray(y, dtype=np.int64), *signed_range(bits))


def requantize(acc, rounding=Rounding.HALF_UP, overflow=Overflow.SATURATE) -> np.ndarray:
    """Drop FRAC_BITS fraction bits of a wide accumulator and fit the result into 8 bits: the
    Q2.6-in, Q2.6-out layer's requantizer (``LayerArithmetic.requantize``).

    ``acc`` is an integer array in units of 2**-12 (a sum of Q2.6 x Q2.6 products plus the bias
    shifted left by 6). The shift is arithmetic (floor for negative numbers too).
    """
    return LayerArithmetic(rounding, overflow).requantize(acc)


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
