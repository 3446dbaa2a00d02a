"""Restricted weight codes: per layer, which of the 256 Q2.6 codes a layer's weights may use.

A restriction never changes the arithmetic. Weights stay int8 Q2.6 codes (``arith``), the golden
model computes with them as before, and a restricted layer is simply one whose codes all come
from a smaller set, the restriction's ``levels``. What a restriction buys is in the hardware:
fewer bits per stored weight (``bits``), and multipliers that only ever see these levels (a
narrow multiplier and a shift, a sign and a constant, or a shift alone).

Three kinds, each a frozen dataclass:

``Uniform(bits, shift)``
    ``c * 2**shift`` with ``c`` a signed ``bits``-bit integer (-2**(bits-1) .. 2**(bits-1)-1).
    ``Uniform(8, 0)`` is every code: the plain 8-bit layer (``PLAIN``).
``Ternary(scale)``
    ``{-scale, 0, scale}``.
``PowerOfTwo(exponents)``
    ``{0} and {+-2**e for e in exponents}``, exponents in 0..6 (2**7 = 128 is no Q2.6 code). With
    ``bits`` stored bits a layer has up to ``2**(bits-1) - 1`` exponents (one stored index means zero).

Every restriction answers the same questions:

``levels``          the allowed codes, ascending (int64)
``allows(codes)``   a bool mask: which codes are allowed
``project(values)`` the nearest allowed code of each value (values in code units: ``w * 64``)
``bits``            bits of one stored weight
``stored(codes)``   the stored index of each code (unsigned, ``bits`` wide)
``decode_table``    the code of each stored index, ``2**bits`` entries (int64)
``to_dict()`` / ``from_dict()``  the manifest form

Stored indices:

* ``Uniform``: ``c`` as a ``bits``-bit two's complement number; the code is ``c << shift``.
* ``Ternary`` and ``PowerOfTwo``: sign and magnitude. The top bit is the sign, the low
  ``bits - 1`` bits a magnitude index: 0 is zero, ``i`` is ``scale`` (ternary) or
  ``2**exponents[i-1]`` (power of two, exponents ascending). The index "minus zero" (sign set,
  magnitude 0) is never stored and decodes to 0. A ternary weight is therefore the 2-bit two's
  complement number -1, 0 or 1 times ``scale``.

The manifest's ``codes`` object maps a layer name to ``to_dict()``; a layer it does not name is
``PLAIN``. Biases are never restricted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from . import arith
from .errors import InputError

MAX_EXPONENT = arith.WIDTH - 2  # 2**6 = 64 is the largest power of two with a positive Q2.6 code


class CodesError(InputError, ValueError):
    """A restriction that cannot be (the message says why)."""


def _whole(label: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise CodesError(f"{label} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise CodesError(f"{label} must be {low}..{high}, not {value}")
    return int(value)


class Restriction:
    """What every restriction provides (see the module docstring); subclasses fill in
    ``kind``, ``bits``, ``levels``, ``stored``, ``decode_table``, ``describe``, ``to_dict``."""

    kind: str

    @property
    def bits(self) -> int:
        raise NotImplementedError

    @property
    def levels(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def decode_table(self) -> np.ndarray:
        raise NotImplementedError

    def stored(self, codes) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    def project(self, values) -> np.ndarray:
        raise NotImplementedError

    def allows(self, codes) -> np.ndarray:
        """True where a code is one of ``levels`` (a non-integer value never is)."""
        codes = np.asarray(codes)
        return np.isin(codes, self.levels)

    @property
    def max_magnitude(self) -> int:
        """The largest |code|: with the input width, it sets the width of a product."""
        return int(np.abs(self.levels).max())

    @property
    def power_of_two_levels(self) -> bool:
        """Every nonzero level is +-2**e: a multiplier can be a shift and a negation."""
        magnitudes = np.abs(self.levels[self.levels != 0])
        return bool(np.all((magnitudes & (magnitudes - 1)) == 0))

    def error(self, values) -> float:
        """Squared distance of ``values`` (code units) from their projections."""
        values = np.asarray(values, np.float64)
        return float(np.sum((self.project(values) - values) ** 2))

    def __str__(self) -> str:
        return self.describe()

    def _check_allowed(self, codes) -> np.ndarray:
        codes = np.asarray(codes)
        bad = ~self.allows(codes)
        if bad.any():
            raise CodesError(f"code {codes[bad].flat[0]} is not allowed by {self.describe()}")
        return codes.astype(np.int64)


@dataclass(frozen=True)
class Uniform(Restriction):
    """``c * 2**shift``, ``c`` a signed ``bits``-bit integer; ``bits + shift <= 8`` keeps every
    level an int8 code."""

    bits: int = arith.WIDTH
    shift: int = 0
    kind = "uniform"

    def __post_init__(self):
        object.__setattr__(self, "bits", _whole("uniform bits", self.bits, 2, arith.WIDTH))
        object.__setattr__(self, "shift", _whole(f"the shift of {self.bits}-bit codes", self.shift, 0,
                                                 arith.WIDTH - self.bits))

    @property
    def c_min(self) -> int:
        return arith.signed_range(self.bits)[0]

    @property
    def c_max(self) -> int:
        return arith.signed_range(self.bits)[1]

    @property
    def levels(self) -> np.ndarray:
        return np.arange(self.c_min, self.c_max + 1, dtype=np.int64) << self.shift

    def project(self, values) -> np.ndarray:
        """``clip(rint(v / 2**shift)) << shift``; ties to even, as ``arith.quantize_weights``."""
        values = np.asarray(values, np.float64)
        return (np.clip(np.rint(values / (1 << self.shift)), self.c_min, self.c_max).astype(np.int64)
                << self.shift).astype(np.int8)

    def stored(self, codes) -> np.ndarray:
        codes = self._check_allowed(codes)
        return ((codes >> self.shift) & ((1 << self.bits) - 1)).astype(np.uint8)

    @property
    def decode_table(self) -> np.ndarray:
        index = np.arange(1 << self.bits, dtype=np.int64)
        signed = np.where(index > self.c_max, index - (1 << self.bits), index)
        return signed << self.shift

    def describe(self) -> str:
        if self.bits == arith.WIDTH:
            return "8-bit codes (every code)"
        step = f"*{1 << self.shift}" if self.shift else ""
        return f"{self.bits}-bit codes c{step} (c in {self.c_min}..{self.c_max})"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "bits": self.bits, "shift": self.shift}

    @classmethod
    def fit(cls, values, bits: int) -> "Uniform":
        """The shift whose projection is closest to ``values`` (least squares; ties: the smaller)."""
        candidates = [cls(bits, shift) for shift in range(arith.WIDTH - bits + 1)]
        errors = [c.error(values) for c in candidates]
        return candidates[int(np.argmin(errors))]


class _SignMagnitude(Restriction):
    """Levels symmetric around zero: ``{0} and {+-m for m in magnitudes}``, stored as a sign bit
    over a magnitude index (0 = zero)."""

    @property
    def magnitudes(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def bits(self) -> int:
        return 1 + math.ceil(math.log2(len(self.magnitudes) + 1))

    @property
    def levels(self) -> np.ndarray:
        m = np.array(self.magnitudes, np.int64)
        return np.concatenate([-m[::-1], [0], m])

    def project(self, values) -> np.ndarray:
        """The nearest level; a value exactly between two levels goes to the smaller magnitude."""
        values = np.asarray(values, np.float64)
        m = np.array((0, *self.magnitudes), np.float64)
        index = np.searchsorted((m[:-1] + m[1:]) / 2, np.abs(values), side="left")
        return (np.sign(values) * m[index]).astype(np.int8)

    def stored(self, codes) -> np.ndarray:
        codes = self._check_allowed(codes)
        index = np.searchsorted(np.array((0, *self.magnitudes)), np.abs(codes))
        return (((codes < 0).astype(np.int64) << (self.bits - 1)) | index).astype(np.uint8)

    @property
    def decode_table(self) -> np.ndarray:
        m = np.zeros(1 << (self.bits - 1), np.int64)
        m[1 : len(self.magnitudes) + 1] = self.magnitudes
        return np.concatenate([m, -m])


@dataclass(frozen=True)
class Ternary(_SignMagnitude):
    """``{-scale, 0, scale}``: two bits per weight."""

    scale: int = 1
    kind = "ternary"

    def __post_init__(self):
        object.__setattr__(self, "scale", _whole("the ternary scale", self.scale, 1, arith.QMAX))

    @property
    def magnitudes(self) -> tuple[int, ...]:
        return (self.scale,)

    def describe(self) -> str:
        return f"ternary codes {{-{self.scale}, 0, {self.scale}}}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "scale": self.scale}

    @classmethod
    def fit(cls, values) -> "Ternary":
        """The scale whose projection is closest to ``values`` (least squares; ties: the smaller)."""
        values = np.abs(np.asarray(values, np.float64)).reshape(-1)
        scales = np.arange(1, arith.QMAX + 1, dtype=np.float64)[:, None]
        errors = np.where(values > scales / 2, (values - scales) ** 2, values**2).sum(axis=1)
        return cls(int(np.argmin(errors)) + 1)


@dataclass(frozen=True)
class PowerOfTwo(_SignMagnitude):
    """``{0} and {+-2**e for e in exponents}``: multipliers become shifts."""

    exponents: tuple[int, ...] = (0,)
    kind = "power-of-two"

    def __post_init__(self):
        exponents = self.exponents
        if isinstance(exponents, (str, bytes)) or not hasattr(exponents, "__iter__"):
            raise CodesError(f"power-of-two exponents must be a list of whole numbers, not {exponents!r}")
        exponents = tuple(_whole("a power-of-two exponent", e, 0, MAX_EXPONENT) for e in exponents)
        if not exponents:
            raise CodesError("a power-of-two restriction needs at least one exponent")
        if list(exponents) != sorted(set(exponents)):
            raise CodesError(f"power-of-two exponents must be ascending without repeats, not {list(exponents)}")
        object.__setattr__(self, "exponents", exponents)

    @property
    def magnitudes(self) -> tuple[int, ...]:
        return tuple(1 << e for e in self.exponents)

    def describe(self) -> str:
        return "power-of-two codes {0, " + ", ".join(f"+-{m}" for m in self.magnitudes) + "}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "exponents": list(self.exponents)}

    @classmethod
    def fit(cls, values, bits: int, iterations: int = 100) -> "PowerOfTwo":
        """Exponents by k-means on log2|v|: ``2**(bits-1) - 1`` clusters of the values that are
        not zero as 8-bit codes (|v| >= 1/2), each centre rounded to the nearest exponent in
        0..6 (ties to even); centres that round alike merge, so there may be fewer."""
        count = max_exponents(bits)
        values = np.abs(np.asarray(values, np.float64)).reshape(-1)
        logs = np.sort(np.log2(values[values >= 0.5]))
        if logs.size == 0:
            return cls((0,))
        centres = kmeans_1d(logs, count, iterations)
        return cls(tuple(sorted(set(int(e) for e in np.clip(np.rint(centres), 0, MAX_EXPONENT)))))


def max_exponents(bits: int) -> int:
    """Exponents a power-of-two layer can have with ``bits`` stored bits (one index is zero)."""
    _whole("power-of-two bits", bits, 2, 4)
    return min((1 << (bits - 1)) - 1, MAX_EXPONENT + 1)


def kmeans_1d(data: np.ndarray, k: int, iterations: int = 100) -> np.ndarray:
    """Lloyd's k-means on 1-D data, deterministic: centres start at the (i + 1/2)/k quantiles,
    a point between two centres joins the lower one, an empty cluster keeps its centre."""
    data = np.sort(np.asarray(data, np.float64).reshape(-1))
    centres = np.quantile(data, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        bounds = (centres[:-1] + centres[1:]) / 2
        cluster = np.searchsorted(bounds, data, side="left")
        new = np.array([data[cluster == j].mean() if np.any(cluster == j) else centres[j] for j in range(k)])
        if np.array_equal(new, centres):
            break
        centres = new
    return centres


PLAIN = Uniform(arith.WIDTH, 0)

KINDS = {"uniform": Uniform, "ternary": Ternary, "power-of-two": PowerOfTwo}
_FIELDS = {"uniform": {"bits", "shift"}, "ternary": {"scale"}, "power-of-two": {"exponents"}}


def from_dict(value) -> Restriction:
    """A restriction from its manifest form (``to_dict``); anything malformed is a CodesError."""
    if not isinstance(value, dict):
        raise CodesError(f"a restriction must be an object with a 'kind', not {value!r}")
    kind = value.get("kind")
    if kind not in KINDS:
        raise CodesError(f"restriction kind must be one of {', '.join(KINDS)}, not {kind!r}")
    fields = set(value) - {"kind"}
    if fields != _FIELDS[kind]:
        raise CodesError(f"a {kind} restriction has the field(s) {', '.join(sorted(_FIELDS[kind]))}, "
                         f"not {', '.join(sorted(fields)) or 'none'}")
    if kind == "power-of-two" and not isinstance(value["exponents"], list):
        raise CodesError(f"power-of-two exponents must be a list, not {value['exponents']!r}")
    return KINDS[kind](**{name: value[name] for name in fields})


# ---- per-layer recipes: what a user asks for before the parameters are fitted ----

@dataclass(frozen=True)
class Recipe:
    """A restriction without its parameters: ``Uniform`` of some bits, ``Ternary``, or
    ``PowerOfTwo`` of some bits. ``fit`` chooses the parameters from a layer's weights.

    Spelled ``K`` (K-bit uniform, 2..8), ``t`` (ternary) or ``pK`` (power of two in K bits, 2..4).
    """

    kind: str
    bits: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise CodesError(f"restriction kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "uniform":
            _whole("uniform bits", self.bits, 2, arith.WIDTH)
        elif self.kind == "ternary" and self.bits != 2:
            raise CodesError("ternary codes take 2 bits")
        elif self.kind == "power-of-two":
            _whole("power-of-two bits", self.bits, 2, 4)

    @classmethod
    def parse(cls, text: str) -> "Recipe":
        match = re.fullmatch(r"\s*(?:(?P<uniform>\d+)|(?P<ternary>t|ternary)|p(?P<pow2>\d+))\s*", str(text))
        if match is None:
            raise CodesError(f"cannot read the restriction {text!r}: use K (K-bit codes, 2..8), t (ternary) "
                             f"or pK (power of two in K bits, 2..4)")
        if match["uniform"]:
            return cls("uniform", int(match["uniform"]))
        if match["ternary"]:
            return cls("ternary", 2)
        return cls("power-of-two", int(match["pow2"]))

    @property
    def spec(self) -> str:
        return {"uniform": str(self.bits), "ternary": "t", "power-of-two": f"p{self.bits}"}[self.kind]

    def __str__(self) -> str:
        return self.spec

    def fit(self, values) -> Restriction:
        """The restriction of this recipe that best fits ``values`` (code units, ``w * 64``)."""
        if self.kind == "uniform":
            return Uniform.fit(values, self.bits)
        if self.kind == "ternary":
            return Ternary.fit(values)
        return PowerOfTwo.fit(values, self.bits)


# ---- per-network views ----

def codes_from_manifest(value, network) -> dict[str, Restriction]:
    """The manifest's ``codes`` object, checked against ``network``'s layer names."""
    if not isinstance(value, dict):
        raise CodesError(f"'codes' must be an object mapping layer names to restrictions, not {value!r}")
    codes = {}
    for name, item in value.items():
        if name not in network.names:
            raise CodesError(f"'codes' names the layer {name!r}; the network {network.spec} has "
                             f"{', '.join(network.names)}")
        try:
            codes[name] = from_dict(item)
        except CodesError as e:
            raise CodesError(f"codes of {name}: {e}") from None
    return codes


def codes_to_manifest(codes: dict[str, Restriction]) -> dict:
    return {name: restriction.to_dict() for name, restriction in codes.items()}


def layer_codes(codes: dict[str, Restriction], network) -> dict[str, Restriction]:
    """Every layer of ``network`` with its restriction (``PLAIN`` where ``codes`` names none)."""
    return {name: codes.get(name, PLAIN) for name in network.names}


def check_codes(params: dict, codes: dict[str, Restriction]) -> None:
    """Every weight code of a restricted layer obeys its restriction (CodesError naming the
    layer, the first bad code and where it is, and the rule)."""
    for name, restriction in codes.items():
        weight = np.asarray(params[f"{name}.weight"])
        bad = ~restriction.allows(weight)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise CodesError(f"{name}.weight{list(where)} is {weight[where]}, which {name}'s restriction "
                             f"({restriction.describe()}) does not allow ({int(bad.sum())} such code(s))")


def weight_bits(network, codes: dict[str, Restriction]) -> int:
    """Bits of all stored weight codes: each layer's weights times its bits per code (biases,
    8 bits each, not counted)."""
    full = layer_codes(codes, network)
    return sum(int(np.prod(layer.weight_shape)) * full[layer.name].bits for layer in network.layers)
