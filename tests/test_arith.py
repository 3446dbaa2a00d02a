"""The Q2.6 arithmetic contract (model/arith.py).

Expected values come from three independent places: small tables worked out by hand from the
contract's prose ("(acc + 32) >> 6, floor for negatives, then clip or keep the low 8 bits"),
a pure-Python integer reference, and fxpmath's fixed-point conversion.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from fxpmath import Fxp

try:  # a dev dependency; without it only the property test is skipped
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

from lenet_fpga.model import arith
from lenet_fpga.model.arith import Overflow, Rounding

HALF_UP, FLOOR = Rounding.HALF_UP, Rounding.FLOOR
SATURATE, WRAP = Overflow.SATURATE, Overflow.WRAP
MODES = [(r, o) for r in Rounding for o in Overflow]
MODE_IDS = [f"{r}-{o}" for r, o in MODES]


# --------------------------------------------------------------------------------------------
# Constants


def test_constants_describe_q2_6():
    assert (arith.WIDTH, arith.FRAC_BITS, arith.SCALE) == (8, 6, 64)
    assert (arith.QMIN, arith.QMAX) == (-128, 127)
    assert arith.PIXEL_MAX == 255


# --------------------------------------------------------------------------------------------
# quantize_pixels


def test_quantize_pixels_end_points():
    codes = arith.quantize_pixels(np.array([0, 255], np.uint8))
    assert codes.tolist() == [0, 64]
    assert codes.dtype == np.int64


def test_quantize_pixels_all_256_values_are_nearest_code_ties_up():
    pixels = np.arange(256, dtype=np.uint8)
    codes = arith.quantize_pixels(pixels)
    # Nearest code to 64*p/255, ties up: floor(64p/255 + 1/2), in exact rational arithmetic.
    expected = [int(Fraction(64 * p, 255) + Fraction(1, 2)) for p in range(256)]
    assert codes.tolist() == expected
    # ... which is within half a code of the exact value and never decreases.
    for p, q in enumerate(codes.tolist()):
        assert abs(Fraction(q, 64) - Fraction(p, 255)) <= Fraction(1, 128)
    assert np.all(np.diff(codes) >= 0)


def test_quantize_pixels_keeps_shape():
    images = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28).astype(np.uint8)
    assert arith.quantize_pixels(images).shape == (2, 28, 28)


@pytest.mark.parametrize(
    "pixels",
    [
        np.array([0, 255], np.int64),
        np.array([0, 255], np.int16),
        np.array([0, 127], np.int8),
        np.array([0, 255], np.uint16),
        np.array([0.0, 1.0]),
        np.array([0.0, 255.0], np.float32),
        [0, 255],  # a Python list becomes int64
        np.array([True, False]),
    ],
    ids=["int64", "int16", "int8", "uint16", "float64", "float32", "list", "bool"],
)
def test_quantize_pixels_rejects_non_uint8(pixels):
    with pytest.raises(TypeError, match="uint8"):
        arith.quantize_pixels(pixels)


# --------------------------------------------------------------------------------------------
# requantize: hand-worked tables


def python_requantize(acc: int, rounding: Rounding, overflow: Overflow) -> int:
    """The contract in plain Python integers (``//`` floors for negative numbers too)."""
    y = (acc + (32 if rounding is HALF_UP else 0)) // 64
    if overflow is SATURATE:
        return min(max(y, -128), 127)
    return (y + 128) % 256 - 128


# (acc, half-up result before overflow handling, floor result before overflow handling)
# worked out by hand: half-up = floor(acc/64 + 1/2), floor = floor(acc/64).
HAND = [
    (0, 0, 0),
    (1, 0, 0),
    (31, 0, 0),
    (32, 1, 0),
    (63, 1, 0),
    (64, 1, 1),
    (95, 1, 1),
    (96, 2, 1),
    (-1, 0, -1),
    (-31, 0, -1),
    (-32, 0, -1),  # -0.5 rounds up to 0
    (-33, -1, -1),
    (-64, -1, -1),
    (-65, -1, -2),
    (-96, -1, -2),  # -1.5 rounds up to -1
    (-97, -2, -2),
    # the top edge: 127 = 8128/64, 128 = 8192/64
    (8095, 126, 126),
    (8096, 127, 126),
    (8128, 127, 127),
    (8159, 127, 127),
    (8160, 128, 127),
    (8191, 128, 127),
    (8192, 128, 128),
    (8224, 129, 128),
    # the bottom edge: -128 = -8192/64, -129 = -8256/64
    (-8129, -127, -128),
    (-8160, -127, -128),
    (-8161, -128, -128),
    (-8192, -128, -128),
    (-8193, -128, -129),
    (-8224, -128, -129),
    (-8225, -129, -129),
    (-8256, -129, -129),
    (-8257, -129, -130),
    # far outside
    (200 * 64, 200, 200),
    (-200 * 64, -200, -200),
    (256 * 64, 256, 256),
    (2**40, 2**34, 2**34),
    (2**40 + 5 * 64, 2**34 + 5, 2**34 + 5),
    (-(2**40) - 3 * 64, -(2**34) - 3, -(2**34) - 3),
    (2**40 - 1, 2**34, 2**34 - 1),
    (-(2**60), -(2**54), -(2**54)),
]


def overflow_by_hand(y: int, overflow: Overflow) -> int:
    if overflow is SATURATE:
        return 127 if y > 127 else -128 if y < -128 else y
    # low 8 bits, two's complement, spelled out with bit operations
    low = y & 0xFF
    return low - 256 if low & 0x80 else low


@pytest.mark.parametrize("overflow", list(Overflow), ids=str)
@pytest.mark.parametrize("rounding", list(Rounding), ids=str)
def test_requantize_hand_table(rounding, overflow):
    acc = np.array([row[0] for row in HAND], np.int64)
    column = 1 if rounding is HALF_UP else 2
    expected = [overflow_by_hand(row[column], overflow) for row in HAND]
    got = arith.requantize(acc, rounding, overflow)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    # the same through the Arithmetic object, with the CLI spellings
    assert arith.Arithmetic(str(rounding), str(overflow)).requantize(acc).tolist() == expected


def test_requantize_edges_explicitly():
    # results -129, -128, 127, 128 before overflow handling
    assert arith.requantize([8128, 8192, -8192, -8193], FLOOR, SATURATE).tolist() == [127, 127, -128, -128]
    assert arith.requantize([8128, 8192, -8192, -8193], FLOOR, WRAP).tolist() == [127, -128, -128, 127]
    assert arith.requantize([8096, 8160, -8224, -8225], HALF_UP, SATURATE).tolist() == [127, 127, -128, -128]
    assert arith.requantize([8096, 8160, -8224, -8225], HALF_UP, WRAP).tolist() == [127, -128, -128, 127]
    # huge values
    assert arith.requantize([2**50, -(2**50)], FLOOR, SATURATE).tolist() == [127, -128]
    assert arith.requantize([2**50 + 64 * 7, -(2**50) + 64 * 7], FLOOR, WRAP).tolist() == [7, 7]


def test_requantize_defaults_are_half_up_saturate():
    acc = np.array([32, -33, 8160, -8225])
    assert arith.requantize(acc).tolist() == arith.requantize(acc, HALF_UP, SATURATE).tolist() == [1, -1, 127, -128]


def test_requantize_accepts_scalars_lists_and_keeps_shape():
    assert int(arith.requantize(96)) == 2
    assert arith.requantize([[96, -97]], FLOOR).tolist() == [[1, -2]]
    acc = np.arange(-10000, 10000, 7).reshape(2, -1)
    assert arith.requantize(acc).shape == acc.shape


def test_requantize_dense_range_matches_python_reference():
    acc = list(range(-40000, 40001))
    for rounding, overflow in MODES:
        got = arith.requantize(np.array(acc), rounding, overflow).tolist()
        assert got == [python_requantize(a, rounding, overflow) for a in acc], (rounding, overflow)


@pytest.mark.parametrize("bad", [("round", "saturate"), ("half-up", "clip"), ("HALF_UP", "wrap")])
def test_requantize_rejects_unknown_modes(bad):
    with pytest.raises(ValueError):
        arith.requantize([0], *bad)


# --------------------------------------------------------------------------------------------
# requantize against fxpmath


def fxp_requantize(acc, rounding: Rounding, overflow: Overflow) -> np.ndarray:
    """acc / 4096 as a float, converted by fxpmath to a signed 8-bit number with 6 fraction bits.

    fxpmath has no round-half-up mode ('around' is numpy's half-to-even, 'trunc'/'fix' go to
    zero), so half-up is 'floor' applied to acc/4096 + 1/128. Both sums are exact in float64 for
    |acc| < 2**52.
    """
    value = np.asarray(acc, np.int64) / 4096
    if rounding is HALF_UP:
        value = value + 1 / 128
    x = Fxp(value, signed=True, n_word=8, n_frac=6, rounding="floor", overflow=str(overflow))
    return np.asarray(x.val, np.int64)


def fxp_half_up_from_around(acc, overflow: Overflow) -> np.ndarray:
    """Half-up a second way: fxpmath 'around' (half to even) off ties, 'ceil' on exact ties."""
    acc = np.asarray(acc, np.int64)
    value = acc / 4096
    around = Fxp(value, signed=True, n_word=8, n_frac=6, rounding="around", overflow=str(overflow))
    ceil = Fxp(value, signed=True, n_word=8, n_frac=6, rounding="ceil", overflow=str(overflow))
    tie = acc % 64 == 32
    return np.where(tie, np.asarray(ceil.val, np.int64), np.asarray(around.val, np.int64))


def check_values(seed: int = 0) -> np.ndarray:
    """Every accumulator within +-20000 (both edges, every tie), plus random wide ones."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            np.arange(-20000, 20001),
            rng.integers(-(2**23), 2**23, 20000),  # the real accumulator range
            rng.integers(-(2**50), 2**50, 5000),
            np.array([2**50, -(2**50), 2**40 + 32, -(2**40) - 32, 2**40 + 31, -(2**40) - 33]),
        ]
    ).astype(np.int64)


def fxp_mismatches(requantize, acc, rounding, overflow) -> int:
    return int(np.count_nonzero(requantize(acc, rounding, overflow) != fxp_requantize(acc, rounding, overflow)))


def test_fxpmath_has_no_half_up_mode_so_the_check_builds_one():
    """Documents why fxp_requantize adds 1/128: fxpmath 'around' is half-to-even on ties."""
    acc = np.array([32, 96, -32, -96])  # +-0.5 and +-1.5 codes
    around = Fxp(acc / 4096, signed=True, n_word=8, n_frac=6, rounding="around", overflow="saturate")
    assert np.asarray(around.val).tolist() == [0, 2, 0, -2]  # half to even
    assert arith.requantize(acc, HALF_UP).tolist() == [1, 2, 0, -1]  # half up


@pytest.mark.parametrize(("rounding", "overflow"), MODES, ids=MODE_IDS)
def test_requantize_matches_fxpmath(rounding, overflow):
    acc = check_values()
    assert fxp_mismatches(arith.requantize, acc, rounding, overflow) == 0


@pytest.mark.parametrize("overflow", list(Overflow), ids=str)
def test_half_up_matches_fxpmath_around_plus_ceil_on_ties(overflow):
    acc = check_values(1)
    assert np.array_equal(arith.requantize(acc, HALF_UP, overflow), fxp_half_up_from_around(acc, overflow))


def _shifted(offset_delta):
    def requantize(acc, rounding, overflow):
        acc = np.asarray(acc, np.int64)
        offset = (32 if rounding is HALF_UP else 0) + offset_delta
        y = (acc + offset) >> 6
        return arith.saturate(y) if overflow is SATURATE else arith.wrap(y)

    return requantize


def _truncating(acc, rounding, overflow):  # shift toward zero instead of floor
    acc = np.asarray(acc, np.int64) + (32 if rounding is HALF_UP else 0)
    y = np.sign(acc) * (np.abs(acc) >> 6)
    return arith.saturate(y) if overflow is SATURATE else arith.wrap(y)


def _symmetric_saturation(acc, rounding, overflow):
    y = arith.requantize(acc, rounding, overflow)
    return np.maximum(y, -127) if overflow is SATURATE else y


def _nine_bit_wrap(acc, rounding, overflow):
    y = (np.asarray(acc, np.int64) + (32 if rounding is HALF_UP else 0)) >> 6
    return arith.saturate(y) if overflow is SATURATE else ((y + 256) & 511) - 256


def _sat_at_126(acc, rounding, overflow):
    y = arith.requantize(acc, rounding, overflow)
    return np.minimum(y, 126) if overflow is SATURATE else y


MUTANTS = {
    "offset-1": _shifted(-1),
    "offset+1": _shifted(+1),
    "truncate-toward-zero": _truncating,
    "saturate-at--127": _symmetric_saturation,
    "saturate-at-126": _sat_at_126,
    "wrap-9-bits": _nine_bit_wrap,
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_fxpmath_check_catches_broken_requantizers(name):
    """The cross-check is not vacuous: each plausible mistake differs from fxpmath somewhere."""
    mutant = MUTANTS[name]
    acc = check_values()
    caught = sum(fxp_mismatches(mutant, acc, r, o) for r, o in MODES)
    assert caught > 0, f"fxpmath check did not notice the {name} mutant"
    # and the mutant really is wrong per the plain-Python contract, too
    sample = np.arange(-9000, 9001)
    assert any(
        not np.array_equal(mutant(sample, r, o), [python_requantize(int(a), r, o) for a in sample]) for r, o in MODES
    )


def check_property(acc, rounding, overflow):
    got = arith.requantize(np.array(acc, np.int64), rounding, overflow)
    assert got.tolist() == fxp_requantize(acc, rounding, overflow).tolist()
    assert got.tolist() == [python_requantize(a, rounding, overflow) for a in acc]
    assert all(-128 <= v <= 127 for v in got.tolist())


if given is not None:

    @settings(max_examples=150, deadline=None, database=None)
    @given(
        acc=st.lists(
            st.one_of(st.integers(-9000, 9000), st.integers(-(2**23), 2**23), st.integers(-(2**50), 2**50)),
            min_size=1,
            max_size=64,
        ),
        rounding=st.sampled_from(list(Rounding)),
        overflow=st.sampled_from(list(Overflow)),
    )
    def test_requantize_property_vs_fxpmath_and_python(acc, rounding, overflow):
        check_property(acc, rounding, overflow)

else:  # pragma: no cover

    @pytest.mark.skip(reason="hypothesis is not installed (pip install hypothesis)")
    def test_requantize_property_vs_fxpmath_and_python():
        pass


# --------------------------------------------------------------------------------------------
# wrap and saturate


def test_wrap_keeps_low_8_bits_twos_complement():
    rng = np.random.default_rng(3)
    y = np.concatenate([np.arange(-1000, 1000), rng.integers(-(2**62), 2**62, 10000), [2**63 - 1, -(2**63)]])
    got = arith.wrap(y)
    assert got.dtype == np.int64
    # numpy's narrowing integer cast keeps the low bits
    assert np.array_equal(got, y.astype(np.int64).astype(np.int8))
    assert got.tolist() == [overflow_by_hand(int(v), WRAP) for v in y]


def test_wrap_and_saturate_are_identity_in_range():
    y = np.arange(-128, 128)
    assert np.array_equal(arith.wrap(y), y)
    assert np.array_equal(arith.saturate(y), y)
    assert arith.saturate([-129, 128, -(2**40), 2**40]).tolist() == [-128, 127, -128, 127]
    assert arith.wrap([-129, 128, 255, 256, -256, -257]).tolist() == [127, -128, -1, 0, 0, -1]


# --------------------------------------------------------------------------------------------
# quantize_weights


def test_quantize_weights_ties_go_to_even():
    ties = [0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, -3.5, 125.5, 126.5, -126.5, -127.5]
    codes = arith.quantize_weights(np.array(ties) / 64)
    assert codes.tolist() == [0, 2, 2, 4, 0, -2, -2, -4, 126, 126, -126, -128]
    # every tie in range, against Python's round() (exact, half to even)
    halves = np.arange(-128, 127) + 0.5
    assert arith.quantize_weights(halves / 64).tolist() == [max(-128, min(127, round(h))) for h in halves]


def test_quantize_weights_clips():
    w = [127 / 64, 127.4 / 64, 127.5 / 64, 2.0, 5.0, 1e30, np.inf, -128 / 64, -128.5 / 64, -2.01, -1e30, -np.inf]
    assert arith.quantize_weights(w).tolist() == [127, 127, 127, 127, 127, 127, 127, -128, -128, -128, -128, -128]


def test_quantize_weights_nearest_code_dtype_and_shape():
    rng = np.random.default_rng(4)
    w = rng.uniform(-2.2, 2.2, size=(6, 1, 5, 5)).astype(np.float32)
    codes = arith.quantize_weights(w)
    assert codes.dtype == np.int8 and codes.shape == w.shape
    for value, code in zip(w.ravel().tolist(), codes.ravel().tolist()):
        exact = Fraction(value) * 64
        nearest = max(-128, min(127, round(exact)))  # no ties among these random values
        assert code == nearest


# --------------------------------------------------------------------------------------------
# Arithmetic


def test_arithmetic_accepts_cli_spellings_and_members():
    a = arith.Arithmetic("floor", "wrap")
    assert a.rounding is FLOOR and a.overflow is WRAP
    assert a.round_offset == 0
    b = arith.Arithmetic()
    assert b.rounding is HALF_UP and b.overflow is SATURATE
    assert b.round_offset == 32
    assert a == arith.Arithmetic(FLOOR, WRAP)
    assert str(HALF_UP) == "half-up" and str(WRAP) == "wrap"
    assert "floor" in a.describe() and "wrap" in a.describe() and "Q2.6" in a.describe()


@pytest.mark.parametrize(("rounding", "overflow"), [("nearest", "wrap"), ("floor", "clamp"), (None, "wrap")])
def test_arithmetic_rejects_unknown_modes(rounding, overflow):
    with pytest.raises(ValueError):
        arith.Arithmetic(rounding, overflow)


# --------------------------------------------------------------------------------------------
# accumulator_bound and signed_width


@pytest.mark.parametrize("input_max", [64, 127, 128])
@pytest.mark.parametrize("n_terms", [1, 2, 3, 25, 150, 256])
def test_accumulator_bound_is_the_worst_case(n_terms, input_max):
    # |sum x*w + (b << 6) + offset| over |x| <= input_max, |w| <= 128, |b| <= 128, offset 0 or 32;
    # the sum is linear in each variable, so its extremes sit at the corners.
    worst = max(
        abs(n_terms * x * w + (b << 6) + offset)
        for x in (-input_max, input_max)
        for w in (-128, 128)
        for b in (-128, 128)
        for offset in (0, 32)
    )
    assert arith.accumulator_bound(n_terms, input_max) == worst


def test_accumulator_bound_default_input_is_int8():
    assert arith.accumulator_bound(10) == arith.accumulator_bound(10, 128)


def test_signed_width_is_the_smallest_that_holds_the_range():
    values = list(range(0, 5000)) + [2**k + d for k in range(12, 48) for d in (-1, 0, 1)]
    for bound in values:
        w = arith.signed_width(bound)
        assert -(2 ** (w - 1)) <= -bound and bound <= 2 ** (w - 1) - 1, bound
        if w > 1:  # one bit fewer would not do
            assert not (bound <= 2 ** (w - 2) - 1), bound
    assert [arith.signed_width(b) for b in (1, 127, 128, 255, 256)] == [2, 8, 9, 9, 10]


# --------------------------------------------------------------------------------------------
# The trainer's fake-quant uses the same rules (model/qat.py)


@pytest.mark.torch
def test_qat_quantizers_match_arith():
    import torch

    from lenet_fpga.model.train import qat

    pixels = np.arange(256, dtype=np.uint8)
    assert np.array_equal(
        (qat.quantize_input(torch.from_numpy(pixels)) * 64).numpy().astype(np.int64), arith.quantize_pixels(pixels)
    )

    rng = np.random.default_rng(5)
    w = np.concatenate([(np.arange(-130, 130) + 0.5) / 64, rng.uniform(-2.5, 2.5, 5000)]).astype(np.float32)
    q = qat.quantize_weight(torch.from_numpy(w)) * 64
    assert np.array_equal(q.numpy().astype(np.int64), arith.quantize_weights(w).astype(np.int64))

    acc = np.concatenate([np.arange(-20000, 20001), rng.integers(-(2**23), 2**23, 20000)])
    acc_value = torch.from_numpy(acc.astype(np.float32) / 4096)  # exact: |acc| < 2**24
    for rounding, overflow in MODES:
        a = arith.Arithmetic(rounding, overflow)
        got = (qat.requantize(acc_value, a) * 64).numpy().astype(np.int64)
        assert np.array_equal(got, arith.requantize(acc, rounding, overflow)), a.describe()


def test_clipped_by_quantize_counts_what_quantize_weights_clips():
    """Exactly the values whose nearest code (ties to even) is past -128..127."""
    values = np.array([127.4, 127.5, 128.0, -128.0, -128.5, -128.6, 0.0, 300.0]) / 64
    # 127.5 rounds to 128 (even): clipped; -128.5 rounds to -128 (even): not clipped.
    assert arith.clipped_by_quantize(values) == 4
    codes = arith.quantize_weights(values)
    assert arith.clipped_by_quantize(values) == int(np.count_nonzero(codes != np.rint(values * 64)))
