"""The max-pooling block against ``golden.maxpool``, bit for bit, in cocotb.

Codes cover the whole signed range, and every run has an all-negative image and a narrow-range
image (many equal maxima) besides the full-range ones: a block that compared unsigned, or
started its running maxima at zero, gives different answers, and the test checks that the golden
data shows it. Images run back to back with random input bubbles and output back-pressure; a
first run without stalls measures the cycles per image.
"""

import os

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment

from lenet_fpga.hdl.pool import MaxPool
from lenet_fpga.model import arith, golden
from lenet_fpga.model.network import LENET5
from lenet_fpga.sim import runner

SIMULATOR = os.environ.get("LENET_FPGA_SIMULATOR", "icarus")
TB = "lenet_fpga.sim.tb_pool"
CONV1, CONV2 = LENET5.conv_layers
# (channels, height, width, size)
GEOMETRIES = {
    "pool1": (CONV1.out_channels, CONV1.conv_size, CONV1.conv_size, CONV1.pool),
    "pool2": (CONV2.out_channels, CONV2.conv_size, CONV2.conv_size, CONV2.pool),
    "odd": (3, 7, 5, 2),  # a trailing row and column dropped
    "one-channel": (1, 6, 4, 2),  # the same entry read in consecutive cycles
    "one-block-wide": (1, 5, 3, 2),  # a one-entry row buffer
    "size3": (2, 8, 7, 3),  # 3x3 blocks, two trailing rows and one column dropped
}
# Several channels per transfer, as from a convolution engine computing several filters at once:
# name -> (geometry, lanes).
LANES = {
    "pool1-6-lanes": ("pool1", 6),
    "pool2-8-lanes": ("pool2", 8),
    "odd-3-lanes": ("odd", 3),  # one transfer per pixel, trailing row and column dropped
    "size3-2-lanes": ("size3", 2),
}
# (input bubbles, output back-pressure): both; heavy on the input; heavy on the output.
STALLS = [(0.3, 0.3), (0.6, 0.0), (0.0, 0.7)]
IMAGES = 4


def random_maps(rng, channels: int, height: int, width: int) -> np.ndarray:
    """[IMAGES, C, H, W] codes: full range, except image 1 all negative and image 2 in -3..3."""
    maps = rng.integers(arith.QMIN, arith.QMAX + 1, size=(IMAGES, channels, height, width))
    maps[1] = rng.integers(arith.QMIN, 0, size=maps[1].shape)
    maps[2] = rng.integers(-3, 4, size=maps[2].shape)
    return maps


def expected_stream(maps: np.ndarray, size: int, seed: int, lanes: int = 1) -> np.ndarray:
    """Golden pooled codes in the block's order (image, pooled row, pooled column, channel)."""
    pooled = golden.maxpool(maps, size)
    # Non-vacuous: an unsigned compare, or running maxima starting at 0, would change the answer.
    assert (golden.maxpool(maps & 0xFF, size) != pooled & 0xFF).any(), f"seed {seed}: signedness untested"
    assert (pooled < 0).any(), f"seed {seed}: no negative maximum"
    return pooled.transpose(0, 2, 3, 1).reshape(-1, lanes)


@pytest.mark.parametrize("name", list(GEOMETRIES) + list(LANES))
def test_max_pool(name, tmp_path_factory, record_property):
    geometry, lanes = LANES.get(name, (name, 1))
    channels, height, width, size = GEOMETRIES[geometry]
    seed = 2000 + 1000 * size + 100 * channels + 10 * height + width + lanes
    maps = random_maps(np.random.default_rng(seed), channels, height, width)
    expected = expected_stream(maps, size, seed, lanes)
    pool = MaxPool(channels, height, width, size, lanes=lanes)
    data = {"inputs": maps.transpose(0, 2, 3, 1).reshape(-1, lanes), "expected": expected, "images": IMAGES,
            "stalls": np.array(STALLS, np.float64), "seed": seed, "measure": True}
    result = runner.run(verilog.convert(pool, name="pool"), "pool", TB, data, simulator=SIMULATOR,
                        build_root=tmp_path_factory.getbasetemp() / "sim")
    np.testing.assert_array_equal(result.outputs["got"], np.concatenate([expected] * len(STALLS)),
                                  err_msg=f"seed {seed}")

    latency, period = result.outputs["latency"], np.diff(result.outputs["finish"])
    record_property("latency", latency.tolist())
    record_property("back_to_back_period", period.tolist())
    print(f"{name} {GEOMETRIES[geometry]} x{lanes}: latency {latency.tolist()}, back-to-back period {period.tolist()} "
          f"(model {pool.cycles_per_image})")
    # One input per cycle, the result one cycle after the block's last code.
    assert (period == pool.cycles_per_image).all(), f"back-to-back period {period.tolist()}"
    last_block_input = pool.cycles_per_image - (height % size * width + width % size) * channels // lanes
    assert (latency == last_block_input + 1).all(), f"latency {latency.tolist()}, expected {last_block_input + 1}"


def test_max_pool_model_figures():
    pool1 = MaxPool(*GEOMETRIES["pool1"])
    assert pool1.cycles_per_image == 24 * 24 * 6
    assert pool1.memory_bits == 12 * 6 * 8
    pool2 = MaxPool(*GEOMETRIES["pool2"])
    assert pool2.cycles_per_image == 8 * 8 * 16
    assert pool2.memory_bits == 4 * 16 * 8
    for pool in (pool1, pool2):  # elaborated, so that their memories count as used
        Fragment.get(pool, None)


@pytest.mark.parametrize("args,error", [
    ((6.0, 24, 24), TypeError),
    ((6, 24, True), TypeError),
    ((0, 24, 24), ValueError),
    ((6, 24, 24, 0), ValueError),
    ((6, 1, 24), ValueError),
    ((6, 24, 2, 3), ValueError),
    ((6, 24, 24, 2, 4), ValueError),
    ((6, 24, 24, 2, 0), ValueError),
])
def test_max_pool_rejects_bad_parameters(args, error):
    with pytest.raises(error):
        MaxPool(*args)
