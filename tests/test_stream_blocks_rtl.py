"""The small stream stages between the engines, bit for bit in cocotb: ``PixelQuantizer``
against ``arith.quantize_pixels`` on every pixel value, ``Gather`` against a numpy reshape.

Both run with random input bubbles and output back-pressure, after a run without stalls that
checks they sustain one input per cycle.
"""

import os

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment

from lenet_fpga.hdl.gather import Gather, Serialize
from lenet_fpga.hdl.pixels import PixelQuantizer, pixel_table
from lenet_fpga.model import arith
from lenet_fpga.sim import runner

SIMULATOR = os.environ.get("LENET_FPGA_SIMULATOR", "icarus")
TB = "lenet_fpga.sim.tb_pixels"
# (input bubbles, output back-pressure): both; heavy on the input; heavy on the output.
STALLS = [(0.3, 0.3), (0.6, 0.0), (0.0, 0.7)]


def run(component, name: str, inputs: np.ndarray, expected: np.ndarray, groups: int, seed: int, tmp_path_factory):
    """Simulate; check every run's outputs and return (latency, back-to-back period) per group."""
    data = {"inputs": inputs, "expected": expected, "images": groups, "stalls": np.array(STALLS, np.float64),
            "seed": seed, "measure": True}
    result = runner.run(verilog.convert(component, name=name), name, TB, data, simulator=SIMULATOR,
                        build_root=tmp_path_factory.getbasetemp() / "sim")
    np.testing.assert_array_equal(result.outputs["got"], np.concatenate([expected] * len(STALLS)),
                                  err_msg=f"seed {seed}")
    return result.outputs["latency"], np.diff(result.outputs["finish"])


# --------------------------------------------------------------------------------------------
# PixelQuantizer


def test_pixel_table_is_the_contract():
    """Every entry is the nearest code to p/255 in units of 1/64, ties up, computed here with
    exact fractions rather than with the integer formula the table is built from."""
    from fractions import Fraction
    from math import floor

    nearest = [floor(Fraction(p * 64, 255) + Fraction(1, 2)) for p in range(256)]
    assert pixel_table() == nearest
    # By hand: 1/255*64 = 0.25 -> 0; 2 -> 0.502 -> 1; 127 -> 31.87 -> 32; 128 -> 32.13 -> 32; 255 -> 64.
    assert [pixel_table()[p] for p in (0, 1, 2, 127, 128, 255)] == [0, 0, 1, 32, 32, 64]
    quantizer = PixelQuantizer()
    assert quantizer.memory_bits == 256 * 8
    Fragment.get(quantizer, None)  # elaborated, so that its table counts as used


def test_pixel_quantizer(tmp_path_factory):
    seed = 3000
    rng = np.random.default_rng(seed)
    # Every value in order, then every value again in a random order.
    pixels = np.concatenate([np.arange(256), rng.permutation(256)]).astype(np.uint8)
    expected = arith.quantize_pixels(pixels).reshape(-1, 1)
    assert expected.min() == 0 and expected.max() == arith.SCALE
    latency, period = run(PixelQuantizer(), "pixels", pixels, expected, 8, seed, tmp_path_factory)
    assert (latency == 64 + 1).all(), f"latency {latency.tolist()} for 64 pixels"
    assert (period == 64).all(), f"back-to-back period {period.tolist()} for 64 pixels"


# --------------------------------------------------------------------------------------------
# Gather


@pytest.mark.parametrize("count,lanes", [(1, 1), (6, 1), (16, 1), (6, 6), (16, 8), (6, 2)])
def test_gather(count, lanes, tmp_path_factory):
    seed = 4000 + count + 100 * lanes
    vectors = 40
    codes = np.random.default_rng(seed).integers(arith.QMIN, arith.QMAX + 1, size=vectors * count)
    transfers = count // lanes
    latency, period = run(Gather(count, lanes), "gather", codes.reshape(-1, lanes), codes.reshape(vectors, count),
                          vectors, seed, tmp_path_factory)
    # The vector leaves the cycle after its last transfer; the next codes keep coming meanwhile.
    assert (latency == transfers + 1).all(), f"latency {latency.tolist()}"
    assert (period == transfers).all(), f"back-to-back period {period.tolist()}"


@pytest.mark.parametrize("args,error", [((0,), ValueError), ((6.0,), TypeError), ((True,), TypeError),
                                        ((6, 4), ValueError), ((6, 0), ValueError)])
def test_gather_rejects_bad_parameters(args, error):
    with pytest.raises(error):
        Gather(*args)


# --------------------------------------------------------------------------------------------
# Serialize


@pytest.mark.parametrize("count", [1, 3, 8])
def test_serialize(count, tmp_path_factory):
    seed = 4500 + count
    vectors = 30
    codes = np.random.default_rng(seed).integers(arith.QMIN, arith.QMAX + 1, size=vectors * count)
    latency, period = run(Serialize(count), "serialize", codes.reshape(vectors, count), codes.reshape(-1, 1),
                          vectors // 3, seed, tmp_path_factory)
    # Groups of 3 vectors: their codes leave one a cycle, back to back, the first the cycle after.
    assert (period == 3 * count).all(), f"back-to-back period {period.tolist()}"
    assert (latency == 3 * count + 1).all(), f"latency {latency.tolist()}"


@pytest.mark.parametrize("count,error", [(0, ValueError), (2.0, TypeError)])
def test_serialize_rejects_bad_parameters(count, error):
    with pytest.raises(error):
        Serialize(count)


# --------------------------------------------------------------------------------------------
# SkidBuffer


@pytest.mark.parametrize("lanes", [1, 3])
def test_skid_buffer(lanes, tmp_path_factory):
    """In order, nothing lost or doubled under bubbles and back-pressure, full rate without them."""
    from lenet_fpga.hdl.datapath import code_vector
    from lenet_fpga.hdl.skid import SkidBuffer

    seed = 4700 + lanes
    groups, per_group = 12, 16
    codes = np.random.default_rng(seed).integers(arith.QMIN, arith.QMAX + 1, size=(groups * per_group, lanes))
    latency, period = run(SkidBuffer(code_vector(lanes)), "skid", codes, codes, groups, seed, tmp_path_factory)
    assert (period == per_group).all(), f"back-to-back period {period.tolist()}"
    assert (latency == per_group + 1).all(), f"latency {latency.tolist()}"
