"""The window generator and the convolution engine against numpy, bit for bit, in cocotb.

Weights, biases and inputs are random codes over the whole int8 range, so the requantizer
really saturates or wraps; every test first checks that its golden data would change under the
other overflow mode and the other rounding, so it cannot pass vacuously. Images run back to
back with random input bubbles and output back-pressure; a separate run without stalls
measures the cycles per image against the engine's own model.
"""

import os

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment
from numpy.lib.stride_tricks import sliding_window_view

from lenet_fpga.hdl.conv import ConvEngine
from lenet_fpga.hdl.multiplier import ECP5Target
from lenet_fpga.hdl.products import WeightForm
from lenet_fpga.model.codes import PowerOfTwo, Ternary, Uniform
from lenet_fpga.hdl.window import WindowGenerator
from lenet_fpga.model import arith, golden
from lenet_fpga.model.network import LENET5
from lenet_fpga.sim import runner
from lenet_fpga.sim.ecp5_models import mult18x18d_model

SIMULATOR = os.environ.get("LENET_FPGA_SIMULATOR", "icarus")
TB = "lenet_fpga.sim.tb_conv"
MODES = [arith.Arithmetic(r, o) for o in arith.Overflow for r in arith.Rounding]
CONV1, CONV2 = LENET5.conv_layers
# (in_channels, out_channels, size)
SMALL = (2, 3, 7)
FEW_STEPS = (1, 2, 7)  # fewer steps per window than K: the input is the bottleneck at row ends
LENET_CONV1 = (CONV1.in_channels, CONV1.out_channels, CONV1.in_size)
LENET_CONV2 = (CONV2.in_channels, CONV2.out_channels, CONV2.in_size)


def mode_id(a: arith.Arithmetic) -> str:
    return f"{a.rounding}-{a.overflow}"


def random_maps(rng, n: int, channels: int, size: int) -> np.ndarray:
    """[n, C, size, size] codes: full-range images, every third one small (-6..6) so that
    unsaturated results appear too."""
    maps = rng.integers(arith.QMIN, arith.QMAX + 1, size=(n, channels, size, size))
    maps[2::3] = rng.integers(-6, 7, size=maps[2::3].shape)
    return maps


def pixel_stream(maps: np.ndarray) -> np.ndarray:
    """[N, C, H, W] -> [N*H*W, C]: pixel vectors in raster order, images back to back."""
    return maps.transpose(0, 2, 3, 1).reshape(-1, maps.shape[1])


def run(component, name: str, maps: np.ndarray, expected: np.ndarray, stalls, seed: int, cycles: int,
        tmp_path_factory, measure: bool = False, ecp5: bool = False) -> dict[str, np.ndarray]:
    """One simulation: optionally the no-stall cycle measurement, then the stream once per stall pair.

    ``cycles`` is about what the whole stream takes without stalls; it only sets the timeouts.
    ``ecp5`` generates the ECP5 form (MULT18X18D blocks) and simulates it with their model.
    """
    data = {"pixels": pixel_stream(maps), "expected": expected, "images": len(maps), "cycles": cycles,
            "stalls": np.array(stalls, np.float64).reshape(-1, 2), "seed": seed, "measure": measure}
    source = verilog.convert(component, name=name, platform=ECP5Target() if ecp5 else None)
    if ecp5:
        assert source.count("MULT18X18D") == component.dsp_blocks
        source += mult18x18d_model()
    result = runner.run(source, name, TB, data, simulator=SIMULATOR,
                        build_root=tmp_path_factory.getbasetemp() / "sim")
    np.testing.assert_array_equal(result.outputs["got"], np.concatenate([expected] * len(data["stalls"])),
                                  err_msg=f"seed {seed}")
    return result.outputs


# --------------------------------------------------------------------------------------------
# WindowGenerator


@pytest.mark.parametrize("channels,size", [(1, 7), (3, 7), (1, 12), (3, 12)])
def test_window_generator(channels, size, tmp_path_factory):
    seed = 100 + 10 * channels + size
    k = 5
    maps = random_maps(np.random.default_rng(seed), 3, channels, size)
    windows = sliding_window_view(maps, (k, k), axis=(2, 3))  # [N, C, y, x, ky, kx]
    n, _, h, w = windows.shape[:4]
    expected = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * w, channels * k * k)
    cycles = len(maps) * size * size + len(expected)
    run(WindowGenerator(channels, size, k), "window", maps, expected, [(0, 0), (0.3, 0.5), (0.5, 0.1)], seed,
        cycles, tmp_path_factory)


def test_window_generator_rejects_bad_parameters():
    with pytest.raises(ValueError):
        WindowGenerator(1, 4, 5)
    with pytest.raises(ValueError):
        WindowGenerator(0, 7)
    with pytest.raises(TypeError):
        WindowGenerator(1, 7.0)


# --------------------------------------------------------------------------------------------
# ConvEngine


def random_layer(seed: int, in_ch: int, out_ch: int, k: int = 5):
    rng = np.random.default_rng(seed)
    weight = rng.integers(arith.QMIN, arith.QMAX + 1, size=(out_ch, in_ch, k, k)).astype(np.int8)
    bias = rng.integers(arith.QMIN, arith.QMAX + 1, size=out_ch).astype(np.int8)
    return weight, bias, rng


def expected_stream(maps, weight, bias, arithmetic, seed, filters: int = 1) -> np.ndarray:
    """Golden activations in the engine's order (image, y, x, f), ``filters`` per transfer, after
    checking the data tells the modes apart."""
    acc = golden.conv_accumulate(maps, weight, bias)
    y = golden.activate(acc, arithmetic)
    other_overflow = arith.Arithmetic(arithmetic.rounding, next(o for o in arith.Overflow if o != arithmetic.overflow))
    other_rounding = arith.Arithmetic(next(r for r in arith.Rounding if r != arithmetic.rounding), arithmetic.overflow)
    shifted = (acc + arithmetic.round_offset) >> arith.FRAC_BITS
    assert (shifted > arith.QMAX).any() and (shifted < arith.QMIN).any(), f"seed {seed}: no overflow in the data"
    assert (golden.activate(acc, other_overflow) != y).any(), f"seed {seed}: overflow mode makes no difference"
    assert (golden.activate(acc, other_rounding) != y).any(), f"seed {seed}: rounding makes no difference"
    assert ((y > 0) & (y < arith.QMAX)).any(), f"seed {seed}: no result inside the range"
    return y.transpose(0, 2, 3, 1).reshape(-1, filters)


# (input bubbles, output back-pressure): both; heavy on the input (windows starve); heavy on the output.
STALLS = {"small": [(0.2, 0.3), (0.6, 0.0), (0.0, 0.7)], "lenet": [(0.2, 0.3), (0.05, 0.6)]}
# Each LeNet geometry's first mode also measures the cycles per image without stalls.
# Columns: geometry, arithmetic, images, stalls, measure, filters at once, soft multipliers.
CONV_CASES = (
    [pytest.param(SMALL, a, 4, STALLS["small"], a == MODES[0], 1, False, id=f"small-{mode_id(a)}") for a in MODES]
    + [pytest.param(LENET_CONV1, a, 2, STALLS["lenet"], a == MODES[0], 1, False, id=f"conv1-{mode_id(a)}")
       for a in MODES]
    + [pytest.param(LENET_CONV2, a, 2, STALLS["lenet"], a == MODES[0], 1, False, id=f"conv2-{mode_id(a)}")
       for a in (MODES[0], arith.Arithmetic("floor", "wrap"))]
    + [pytest.param(FEW_STEPS, MODES[0], 4, STALLS["small"], True, 1, False, id=f"few-steps-{mode_id(MODES[0])}")]
    # Several filters at once, with multipliers from logic: the packing of the weight and bias
    # words and the vector output; one step per window makes the input the bottleneck.
    + [pytest.param(SMALL, MODES[3], 4, STALLS["small"], True, 3, True, id=f"small-3-filters-soft-{mode_id(MODES[3])}"),
       pytest.param(FEW_STEPS, MODES[0], 4, STALLS["small"], True, 2, False, id="few-steps-2-filters"),
       pytest.param(LENET_CONV1, MODES[0], 2, STALLS["lenet"], True, 6, False, id="conv1-6-filters"),
       pytest.param(LENET_CONV2, MODES[1], 2, STALLS["lenet"], True, 8, True, id="conv2-8-filters-soft", marks=pytest.mark.slow)]
)


@pytest.mark.parametrize("geometry,arithmetic,images,stalls,measure,filters,soft", CONV_CASES)
def test_conv_engine(geometry, arithmetic, images, stalls, measure, filters, soft, tmp_path_factory, record_property):
    in_ch, out_ch, size = geometry
    seed = 1000 + 100 * in_ch + 10 * out_ch + size + filters
    weight, bias, rng = random_layer(seed, in_ch, out_ch)
    maps = random_maps(rng, images, in_ch, size)
    expected = expected_stream(maps, weight, bias, arithmetic, seed, filters)
    engine = ConvEngine(weight, bias, size, arithmetic, filters=filters, soft_multipliers=soft)
    out = run(engine, "conv", maps, expected, stalls, seed, images * engine.cycles_per_image, tmp_path_factory,
              measure=measure)
    if measure:
        latency, period = out["latency"], np.diff(out["finish"])
        record_property("latency", latency.tolist())
        record_property("back_to_back_period", period.tolist())
        print(f"{geometry}: latency {latency.tolist()} (model {engine.cycles_per_image}), "
              f"back-to-back period {period.tolist()}")
        assert np.abs(latency - engine.cycles_per_image).max() <= 2, (
            f"measured {latency.tolist()} cycles per image, the model says {engine.cycles_per_image}")


@pytest.mark.parametrize("geometry,filters,arithmetic", [
    pytest.param(FEW_STEPS, 1, MODES[1], id="few-steps"),  # 2 steps a window: row-end gaps
    pytest.param(SMALL, 1, MODES[2], id="small"),
    pytest.param(LENET_CONV2, 8, MODES[0], id="conv2-8-filters"),  # the network's case
])
def test_conv_engine_with_registered_window_ready(geometry, filters, arithmetic, tmp_path_factory):
    """``registered_ready``: bit-exact under input bubbles and output back-pressure, and each
    window two cycles dearer, as the cycle model says (latency measured without stalls)."""
    in_ch, out_ch, size = geometry
    seed = 5000 + 100 * in_ch + 10 * out_ch + size + filters
    weight, bias, rng = random_layer(seed, in_ch, out_ch)
    maps = random_maps(rng, 2, in_ch, size)
    expected = expected_stream(maps, weight, bias, arithmetic, seed, filters)
    engine = ConvEngine(weight, bias, size, arithmetic, filters=filters, registered_ready=True)
    plain = ConvEngine(weight, bias, size, arithmetic, filters=filters)
    assert engine.cycles_per_image > plain.cycles_per_image
    out = run(engine, "conv", maps, expected, STALLS["small"], seed, len(maps) * engine.cycles_per_image,
              tmp_path_factory, measure=True)
    assert np.abs(out["latency"] - engine.cycles_per_image).max() <= 2, (
        f"measured {out['latency'].tolist()} cycles per image, the model says {engine.cycles_per_image}")


@pytest.mark.parametrize("soft,ecp5", [(False, False), (True, False), (False, True)], ids=["dsp", "soft", "ecp5-dsp"])
def test_conv_engine_with_nonnegative_inputs(soft, ecp5, tmp_path_factory):
    """The engine as the network builds it: inputs 0..127 only, multipliers without the sign bit;
    and in its ECP5 form, with MULT18X18D blocks (measured: same cycles as the generic form)."""
    geometry, filters, arithmetic = SMALL, 3, MODES[0]
    in_ch, out_ch, size = geometry
    seed = 3000 + soft
    weight, bias, rng = random_layer(seed, in_ch, out_ch)
    maps = np.abs(random_maps(rng, 4, in_ch, size)).clip(0, arith.QMAX)
    maps[0, 0, 0, :2] = [arith.QMAX, 0]  # the largest input
    expected = expected_stream(maps, weight, bias, arithmetic, seed, filters)
    engine = ConvEngine(weight, bias, size, arithmetic, filters=filters, soft_multipliers=soft,
                        nonnegative_inputs=True)
    out = run(engine, "conv", maps, expected, STALLS["small"], seed, len(maps) * engine.cycles_per_image,
              tmp_path_factory, measure=True, ecp5=ecp5)
    assert np.abs(out["latency"] - engine.cycles_per_image).max() <= 2, (
        f"measured {out['latency'].tolist()} cycles per image, the model says {engine.cycles_per_image}")


RESTRICTED_CASES = [
    # two filters share each MULT18X18D: 4-bit codes c * 4, the ECP5 form with the model
    pytest.param(Uniform(4, 2), 2, True, id="uniform4-packed-ecp5"),
    pytest.param(Uniform(4, 0), 2, False, id="uniform4-packed"),
    pytest.param(Uniform(3, 1), 1, False, id="uniform3-one-filter-unpacked"),
    pytest.param(PowerOfTwo((0, 2, 4)), 4, False, id="power-of-two"),
    pytest.param(Ternary(5), 1, False, id="ternary"),
]


@pytest.mark.parametrize("restriction,filters,ecp5", RESTRICTED_CASES)
def test_conv_engine_restricted_codes(restriction, filters, ecp5, tmp_path_factory):
    """Weights drawn from a restriction's levels, stored as its indices, multiplied in its form."""
    in_ch, out_ch, size = 2, 4, 7
    seed = 4000 + filters + 10 * ecp5
    rng = np.random.default_rng(seed)
    weight = rng.choice(restriction.levels, size=(out_ch, in_ch, 5, 5)).astype(np.int8)
    levels = restriction.levels
    weight[0] = rng.choice(levels[levels >= 0], size=weight[0].shape)  # sums that overflow both ways
    weight[-1] = rng.choice(levels[levels <= 0], size=weight[-1].shape)
    bias = rng.integers(arith.QMIN, arith.QMAX + 1, size=out_ch).astype(np.int8)
    maps = rng.integers(0, arith.QMAX + 1, size=(4, in_ch, size, size))
    maps[1::2] = rng.integers(0, 9, size=maps[1::2].shape)  # small inputs: results inside the range
    maps[0] = arith.QMAX  # the largest inputs: sums that overflow
    arithmetic = MODES[0]
    acc = golden.conv_accumulate(maps, weight, bias)
    shifted = (acc + arithmetic.round_offset) >> arith.FRAC_BITS
    assert (shifted > arith.QMAX).any() and (shifted < arith.QMIN).any(), f"seed {seed}: no overflow in the data"
    expected = golden.activate(acc, arithmetic).transpose(0, 2, 3, 1).reshape(-1, filters)
    form = WeightForm(restriction)
    engine = ConvEngine(weight, bias, size, arithmetic, filters=filters, nonnegative_inputs=True, form=form)
    assert engine.weight_memory.shape.width == filters * 25 * restriction.bits
    packed = form.packable(True) and filters % 2 == 0
    assert engine.dsp_blocks == (0 if form.kind == "select" else filters * 25 // (2 if packed else 1))
    run(engine, "conv", maps, expected, STALLS["small"][:1], seed, len(maps) * engine.cycles_per_image,
        tmp_path_factory, ecp5=ecp5)


def test_conv_engine_model_figures():
    """The cycle model worked out by hand: the warm-up (K-1 rows and K pixels), one step per
    (filter group, channel) at every window position, and the latency of the last step: issue,
    the window and RAM registers, the MAC pipeline's 7 registers (hdl/mac.py), the output
    queue's input register and the output transfer = 10. The RTL tests measure it within 2."""
    w1 = np.zeros(CONV1.weight_shape, np.int8)
    e1 = ConvEngine(w1, np.zeros(CONV1.out_channels, np.int8), CONV1.in_size, arith.Arithmetic(), name="conv1")
    assert e1.cycles_per_image == (4 * 28 + 5) + 24 * 24 * 6 + 10 == 3_583
    w2 = np.zeros(CONV2.weight_shape, np.int8)
    e2 = ConvEngine(w2, np.zeros(CONV2.out_channels, np.int8), CONV2.in_size, arith.Arithmetic(), name="conv2")
    assert e2.cycles_per_image == (4 * 12 + 5) + 8 * 8 * 16 * 6 + 10 == 6_207
    e3 = ConvEngine(w2, np.zeros(CONV2.out_channels, np.int8), CONV2.in_size, arith.Arithmetic(), name="conv2",
                    filters=16)
    # 16 filters at once: one step per channel, 6 steps per window; at least K = 5, so no row gaps.
    assert e3.cycles_per_image == (4 * 12 + 5) + 8 * 8 * 6 + 10
    assert e2.memory_bits == 16 * 6 * 25 * 8 + 16 * 8 + 12 * 4 * 6 * 8
    for engine in (e1, e2):  # elaborated, so that their memories count as used
        Fragment.get(engine, None)


@pytest.mark.parametrize("args,error", [
    ((np.zeros((6, 1, 5, 5), np.float32), np.zeros(6, np.int8), 28), TypeError),
    ((np.zeros((6, 1, 5, 4), np.int8), np.zeros(6, np.int8), 28), ValueError),
    ((np.zeros((6, 1, 5, 5), np.int8), np.zeros(5, np.int8), 28), ValueError),
    ((np.zeros((6, 1, 5, 5), np.int8), np.zeros(6, np.int8), 4), ValueError),
    ((np.full((6, 1, 5, 5), 300), np.zeros(6, np.int8), 28), ValueError),
    ((np.zeros((6, 1, 5, 5), np.int8), np.zeros(6, np.int8), 28, {"filters": 4}), ValueError),
    ((np.zeros((6, 1, 5, 5), np.int8), np.zeros(6, np.int8), 28, {"filters": 0}), ValueError),
    ((np.zeros((6, 1, 5, 5), np.int8), np.zeros(6, np.int8), 28, {"soft_multipliers": 1}), TypeError),
    ((np.zeros((6, 1, 5, 5), np.int8), np.zeros(6, np.int8), 28, {"nonnegative_inputs": 1}), TypeError),
])
def test_conv_engine_rejects_bad_parameters(args, error):
    kwargs = args[3] if len(args) > 3 else {}
    with pytest.raises(error):
        ConvEngine(*args[:3], arith.Arithmetic(), **kwargs)
