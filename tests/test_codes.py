"""Restricted weight codes (model/codes.py): levels, projection, stored indices and decode tables,
the fitted parameters (shift, ternary scale, k-means exponents), manifest forms and the checks on
weight files. Every expectation is worked out by hand in the test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lenet_fpga.model import arith, codes, network, weights
from lenet_fpga.model.codes import PLAIN, PowerOfTwo, Recipe, Ternary, Uniform
from lenet_fpga.model.errors import InputError

# --------------------------------------------------------------------------------------------
# Uniform: c * 2**shift, c a signed k-bit integer


def test_uniform_levels_are_k_bit_integers_times_the_step():
    # c in -8..7, times 2
    assert Uniform(4, 1).levels.tolist() == [-16, -14, -12, -10, -8, -6, -4, -2, 0, 2, 4, 6, 8, 10, 12, 14]
    # c in -2..1, times 64: the extremes of int8 exactly
    assert Uniform(2, 6).levels.tolist() == [-128, -64, 0, 64]
    assert PLAIN.levels.tolist() == list(range(-128, 128))
    assert PLAIN == Uniform(8, 0) and PLAIN.bits == 8


def test_uniform_allows():
    allowed = Uniform(4, 1).allows(np.array([-16, 14, 15, -18, 0, 16]))
    # 15 is odd, -18 is below -8*2, 16 is above 7*2
    assert allowed.tolist() == [True, True, False, False, True, False]
    assert Uniform(4, 1).allows(np.array([4.0, 4.5])).tolist() == [True, False]


def test_uniform_project_rounds_to_even_steps_and_clips():
    # v / 2 = 1.5 -> 2 (tie to even) -> 4;  2.5 -> 2 -> 4;  0.5 -> 0;  1.45 -> 1 -> 2;
    # -100 / 2 = -50 -> clipped to -8 -> -16;  100 -> 7 -> 14
    values = [3.0, 5.0, 1.0, 2.9, -100.0, 100.0]
    assert Uniform(4, 1).project(values).tolist() == [4, 4, 0, 2, -16, 14]


def test_eight_bit_projection_is_the_exporters_rounding():
    rng = np.random.default_rng(0)
    w = np.concatenate([rng.normal(0, 0.6, 1000), np.arange(-260, 260) / 128])  # half-codes: ties
    assert np.array_equal(PLAIN.project(w * arith.SCALE), arith.quantize_weights(w))


def test_uniform_stored_is_twos_complement_of_c():
    u = Uniform(3, 2)  # c in -4..3, codes -16..12 step 4
    # c = -4 -> 100b = 4, c = -1 -> 111b = 7, c = 0 -> 0, c = 3 -> 011b = 3
    assert u.stored(np.array([-16, -4, 0, 12])).tolist() == [4, 7, 0, 3]
    assert u.decode_table.tolist() == [0, 4, 8, 12, -16, -12, -8, -4]
    assert u.bits == 3


@pytest.mark.parametrize(("bits", "shift"), [(1, 0), (9, 0), (4, 5), (2, 7), (4, -1)])
def test_uniform_refuses_levels_outside_int8(bits, shift):
    with pytest.raises(codes.CodesError):
        Uniform(bits, shift)


def test_uniform_fit_picks_the_shift_of_least_squared_error():
    # values 0 and 40, 4 bits (c in -8..7):
    #   shift 0: 40 -> 7      error 33**2 = 1089
    #   shift 1: 20 -> 7 = 14 error 26**2 = 676
    #   shift 2: 10 -> 7 = 28 error 12**2 = 144
    #   shift 3:  5      = 40 error 0
    #   shift 4: 2.5 -> 2 = 32 error 8**2 = 64
    assert Uniform.fit([0.0, 40.0], 4) == Uniform(4, 3)


# --------------------------------------------------------------------------------------------
# Ternary and power of two: sign and magnitude


def test_ternary_levels_projection_and_ties():
    t = Ternary(12)
    assert t.levels.tolist() == [-12, 0, 12] and t.bits == 2
    # the midpoint 6 goes to the smaller magnitude, 0; beyond 12 stays 12
    assert t.project([6.0, 6.01, -6.0, -6.01, 200.0, 0.0]).tolist() == [0, 12, 0, -12, 12, 0]


def test_ternary_stored_is_a_two_bit_sign_and_magnitude():
    t = Ternary(12)
    assert t.stored(np.array([0, 12, -12])).tolist() == [0b00, 0b01, 0b11]
    assert t.decode_table.tolist() == [0, 12, 0, -12]  # 0b10, "minus zero", is never stored


def test_ternary_fit():
    # values 4 and 8; scale s costs (v - s)**2 for v > s/2 and v**2 otherwise:
    #   s = 5: 1 + 9 = 10   s = 6: 4 + 4 = 8   s = 7: 9 + 1 = 10   s = 8: (4 <= 4: 16) + 0 = 16
    assert Ternary.fit([4.0, -8.0]) == Ternary(6)
    assert Ternary.fit(np.r_[np.full(10, 10.0), np.zeros(10)]) == Ternary(10)


def test_power_of_two_levels_projection_and_ties():
    p = PowerOfTwo((0, 2, 4))  # magnitudes 1, 4, 16
    assert p.levels.tolist() == [-16, -4, -1, 0, 1, 4, 16]
    # 3 exponents + zero = 4 magnitudes: 2 bits, and a sign bit
    assert p.bits == 3
    # midpoints 0.5, 2.5, 10: ties go to the smaller magnitude
    values = [0.5, 0.51, 2.5, 2.51, 10.0, 10.01, 1000.0, -3.0, -0.4]
    assert p.project(values).tolist() == [0, 1, 1, 4, 4, 16, 16, -4, 0]
    assert p.power_of_two_levels


def test_power_of_two_stored_and_decode_table():
    p = PowerOfTwo((0, 2, 4))
    # sign in bit 2, magnitude index in bits 0-1 (1 -> 2**0, 2 -> 2**2, 3 -> 2**4)
    assert p.stored(np.array([0, 1, 4, 16, -1, -4, -16])).tolist() == [0, 1, 2, 3, 5, 6, 7]
    assert p.decode_table.tolist() == [0, 1, 4, 16, 0, -1, -4, -16]


@pytest.mark.parametrize(("count", "bits"), [(1, 2), (2, 3), (3, 3), (4, 4), (7, 4)])
def test_power_of_two_bits(count, bits):
    # 1 + ceil(log2(count + 1)): the magnitude index counts zero too
    assert PowerOfTwo(tuple(range(count))).bits == bits


@pytest.mark.parametrize("exponents", [(), (7,), (-1,), (2, 1), (1, 1), "12", 3])
def test_power_of_two_refuses_bad_exponents(exponents):
    with pytest.raises(codes.CodesError):
        PowerOfTwo(exponents)


@pytest.mark.parametrize("restriction", [Uniform(4, 1), Uniform(2, 0), PLAIN, Ternary(5), Ternary(127),
                                         PowerOfTwo((1,)), PowerOfTwo((0, 3, 6)), PowerOfTwo(tuple(range(7)))])
def test_decode_of_stored_gives_every_level_back(restriction):
    stored = restriction.stored(restriction.levels)
    assert stored.max() < 1 << restriction.bits
    assert len(restriction.decode_table) == 1 << restriction.bits
    assert np.array_equal(restriction.decode_table[stored], restriction.levels)
    assert len(set(stored.tolist())) == len(restriction.levels)


def test_stored_refuses_a_code_outside_the_restriction():
    with pytest.raises(codes.CodesError, match="code 3 is not allowed"):
        Ternary(2).stored(np.array([2, 3]))


def test_power_of_two_levels_flag():
    assert Uniform(2, 3).power_of_two_levels  # -16, -8, 0, 8
    assert not Uniform(3, 0).power_of_two_levels  # 3 is no power of two
    assert Ternary(8).power_of_two_levels and not Ternary(12).power_of_two_levels


# --------------------------------------------------------------------------------------------
# k-means exponent sets


def test_kmeans_exponents_of_three_clear_clusters():
    # log2 of 1, 8, 64 is 0, 3, 6. Three clusters (3 bits: up to 3 exponents). The start centres
    # are the 1/6, 1/2 and 5/6 quantiles of [0,0,0,3,3,3,6,6]: 0, 3, 5.5; the boundaries 1.5
    # and 4.25 split the data into {0,0,0}, {3,3,3}, {6,6}, whose means 0, 3, 6 are final.
    values = np.array([1, 1, 1, 8, 8, 8, 64, 64], float)
    assert codes.kmeans_1d(np.log2(values), 3).tolist() == [0.0, 3.0, 6.0]
    assert PowerOfTwo.fit(values, 3) == PowerOfTwo((0, 3, 6))
    assert PowerOfTwo.fit(-values, 3) == PowerOfTwo((0, 3, 6))  # the sign does not matter


def test_kmeans_one_cluster_is_the_mean_and_rounds_to_even():
    # 2 bits: one exponent. log2 of 2 and 8 is 1 and 3: the centre is 2.
    assert PowerOfTwo.fit([2.0, -8.0], 2) == PowerOfTwo((2,))
    # log2 of 4 and 8 is 2 and 3: centre 2.5, rounded to even: 2
    assert PowerOfTwo.fit([4.0, 8.0], 2) == PowerOfTwo((2,))


def test_kmeans_ignores_values_that_are_zero_codes_and_clips_large_ones():
    # 0.1 and 0.2 round to code 0: not counted; 8 alone gives exponent 3
    assert PowerOfTwo.fit([0.1, 0.2, 8.0], 2) == PowerOfTwo((3,))
    # log2(1000) = 9.97: above the largest exponent, 6
    assert PowerOfTwo.fit([1000.0], 2) == PowerOfTwo((6,))
    assert PowerOfTwo.fit([0.0, 0.3], 3) == PowerOfTwo((0,))  # nothing to cluster


def test_kmeans_centres_that_round_alike_merge():
    # log2 values 2, 2.3, 2.4, 5 in 3 clusters. Start centres, the 1/6, 1/2, 5/6 quantiles
    # (positions 0.5, 1.5, 2.5 of the sorted data): 2.15, 2.35, 3.7; boundaries 2.25 and 3.025
    # give {2}, {2.3, 2.4}, {5}; means 2, 2.35, 5, boundaries 2.175, 3.675: the same clusters.
    # 2 and 2.35 both round to exponent 2, so two exponents remain: 2 and 5.
    logs = np.array([2, 2.3, 2.4, 5])
    assert np.allclose(codes.kmeans_1d(logs, 3), [2, 2.35, 5])
    assert PowerOfTwo.fit(2.0**logs, 3) == PowerOfTwo((2, 5))


# --------------------------------------------------------------------------------------------
# Manifest forms and recipes


@pytest.mark.parametrize("restriction", [Uniform(4, 1), PLAIN, Ternary(7), PowerOfTwo((0, 3, 5))])
def test_to_dict_from_dict_round_trip(restriction):
    value = json.loads(json.dumps(restriction.to_dict()))
    assert codes.from_dict(value) == restriction


@pytest.mark.parametrize(("value", "message"), [
    ({"kind": "binary"}, "kind must be one of"),
    ({"kind": "uniform", "bits": 4}, "has the field"),
    ({"kind": "uniform", "bits": 4, "shift": 0, "scale": 3}, "has the field"),
    ({"kind": "uniform", "bits": 12, "shift": 0}, "bits must be 2..8"),
    ({"kind": "uniform", "bits": 4, "shift": 5}, "must be 0..4"),
    ({"kind": "uniform", "bits": 4.0, "shift": 0}, "whole number"),
    ({"kind": "ternary", "scale": 0}, "scale must be 1..127"),
    ({"kind": "ternary", "scale": True}, "whole number"),
    ({"kind": "power-of-two", "exponents": [3, 1]}, "ascending"),
    ({"kind": "power-of-two", "exponents": 3}, "must be a list"),
    ({"kind": "power-of-two", "exponents": [7]}, "must be 0..6"),
    ([4], "must be an object"),
])
def test_from_dict_refuses_bad_restrictions(value, message):
    with pytest.raises(codes.CodesError, match=message):
        codes.from_dict(value)


@pytest.mark.parametrize(("text", "recipe", "bits"), [
    ("8", Recipe("uniform", 8), 8), ("3", Recipe("uniform", 3), 3), ("t", Recipe("ternary", 2), 2),
    ("ternary", Recipe("ternary", 2), 2), ("p3", Recipe("power-of-two", 3), 3), ("p4", Recipe("power-of-two", 4), 4),
])
def test_recipe_parse(text, recipe, bits):
    assert Recipe.parse(text) == recipe and recipe.bits == bits
    assert Recipe.parse(recipe.spec) == recipe


@pytest.mark.parametrize("text", ["9", "1", "p1", "p5", "x", "", "4b"])
def test_recipe_parse_refuses(text):
    with pytest.raises(codes.CodesError):
        Recipe.parse(text)


def test_recipe_fit_gives_its_kind():
    values = np.array([1, 1, 1, 8, 8, 8, 64, 64], float)
    assert Recipe.parse("p3").fit(values) == PowerOfTwo((0, 3, 6))
    assert Recipe.parse("4").fit([0.0, 40.0]) == Uniform(4, 3)
    assert Recipe.parse("t").fit([4.0, 8.0]) == Ternary(6)


def test_weight_bits_of_lenet5_with_a_four_bit_fc1():
    # 44,190 weights at 8 bits, but fc1's 120 x 256 = 30,720 at 4: 353,520 - 30,720 * 4 = 230,640
    assert codes.weight_bits(network.LENET5, {}) == 353_520
    assert codes.weight_bits(network.LENET5, {"fc1": Uniform(4, 1)}) == 230_640


# --------------------------------------------------------------------------------------------
# Weight files with restricted codes


def restricted_params(random_params, restrictions):
    params = random_params(np.random.default_rng(1), 127)
    rng = np.random.default_rng(2)
    for name, restriction in restrictions.items():
        shape = params[f"{name}.weight"].shape
        params[f"{name}.weight"] = rng.choice(restriction.levels, size=shape).astype(np.int8)
    return params


RESTRICTIONS = {"conv2": Uniform(4, 2), "fc1": Ternary(9), "fc2": PowerOfTwo((1, 4))}


def test_manifest_round_trip_with_codes(tmp_path, random_params):
    params = restricted_params(random_params, RESTRICTIONS)
    manifest = weights.make_manifest(arith.Arithmetic(), codes=codes.codes_to_manifest(RESTRICTIONS))
    ws = weights.load(weights.save(tmp_path / "w.npz", params, manifest))
    assert ws.codes == {"conv1": PLAIN, "conv2": Uniform(4, 2), "fc1": Ternary(9), "fc2": PowerOfTwo((1, 4)),
                        "fc3": PLAIN}
    for name, value in params.items():
        assert np.array_equal(ws[name], value)


def test_a_file_without_codes_is_plain_everywhere():
    assert set(weights.load().codes.values()) == {PLAIN}


def test_load_refuses_a_code_its_restriction_does_not_allow(tmp_path, random_params):
    params = restricted_params(random_params, RESTRICTIONS)
    manifest = weights.make_manifest(arith.Arithmetic(), codes=codes.codes_to_manifest(RESTRICTIONS))
    path = weights.save(tmp_path / "w.npz", params, manifest)
    params["fc1.weight"][3, 17] = 5  # ternary {-9, 0, 9}
    with open(path, "wb") as f:
        np.savez(f, **params)
    with pytest.raises(InputError, match=r"w\.json: fc1\.weight\[3, 17\] is 5, which fc1's restriction "
                                         r"\(ternary codes \{-9, 0, 9\}\) does not allow \(1 such code"):
        weights.load(path)


def test_save_refuses_a_code_its_restriction_does_not_allow(tmp_path, random_params):
    params = restricted_params(random_params, RESTRICTIONS)
    params["conv2.weight"][0, 0, 0, 0] = 6  # 4-bit codes step 4
    manifest = weights.make_manifest(arith.Arithmetic(), codes=codes.codes_to_manifest(RESTRICTIONS))
    with pytest.raises(InputError, match=r"conv2\.weight\[0, 0, 0, 0\] is 6"):
        weights.save(tmp_path / "w.npz", params, manifest)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("value", "message"), [
    ({"fc9": {"kind": "ternary", "scale": 3}}, "names the layer 'fc9'"),
    ({"fc1": {"kind": "binary"}}, "codes of fc1: restriction kind"),
    ({"fc1": {"kind": "uniform", "bits": 4, "shift": 9}}, "codes of fc1: the shift"),
    ([1, 2], "field 'codes' must be a object"),
])
def test_load_refuses_a_bad_codes_object(tmp_path, random_params, value, message):
    path = weights.save(tmp_path / "w.npz", random_params(np.random.default_rng(0), 127),
                        weights.make_manifest(arith.Arithmetic()))
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest["codes"] = value
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=message):
        weights.load(path)
