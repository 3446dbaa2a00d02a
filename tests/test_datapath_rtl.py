"""The RTL requantizer (hdl/datapath.py) against arith.requantize, exhaustively around every edge."""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from lenet_fpga.hdl import datapath
from lenet_fpga.model import arith
from lenet_fpga.sim import runner

MODES = list(arith.ARITHMETICS)
ACC_SHAPE = datapath.accumulator_shape(256)  # fc1's, the widest accumulator


class RequantizeHarness(wiring.Component):
    def __init__(self, arithmetic):
        self.arithmetic = arithmetic
        super().__init__({"acc": In(ACC_SHAPE), "code": Out(datapath.CODE)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.code.eq(datapath.requantize(self.acc, self.arithmetic))
        return m


def accumulators():
    """Every accumulator within 300 of a rounding/overflow edge, plus the extremes of the shape."""
    edges = [code << arith.FRAC_BITS for code in (arith.QMIN, 0, arith.QMAX, arith.QMAX + 1, arith.QMIN - 1)]
    near = np.concatenate([np.arange(e - 300, e + 300) for e in edges])
    lo, hi = -(1 << (ACC_SHAPE.width - 1)), (1 << (ACC_SHAPE.width - 1)) - 1
    far = np.random.default_rng(7).integers(lo, hi, 2000, endpoint=True)
    return np.concatenate([near, far, [lo, hi, lo + 1, hi - 1]])


@pytest.mark.parametrize("arithmetic", MODES, ids=lambda a: f"{a.rounding}-{a.overflow}")
def test_requantize_rtl_matches_golden(arithmetic, simulator, tmp_path_factory):
    acc = accumulators()
    expected = arithmetic.requantize(acc)
    assert (expected == arith.QMAX).any() and (expected == arith.QMIN).any()
    source = verilog.convert(RequantizeHarness(arithmetic), name="requantize")
    result = runner.run(source, "requantize", "lenet_fpga.sim.tb_requantize", {"acc": acc, "expected": expected},
                        simulator=simulator, build_root=tmp_path_factory.getbasetemp() / "sim")
    np.testing.assert_array_equal(result.outputs["code"], expected)


def simulated_products(soft: bool, nonnegative: bool, inputs, extra=()) -> tuple[list, list]:
    """One multiplier as the engines build it (``product_parts`` + ``join_parts``), run on every
    input in ``inputs`` against every weight code: the (x, w, got) that differ from x * w, and
    what it gives for each (x, w) in ``extra``."""
    from amaranth.hdl import Signal, signed
    from amaranth.sim import Simulator

    x, w = Signal(signed(8)), Signal(signed(8))
    product = Signal(signed(16))
    m = Module()
    [parts] = datapath.product_parts([x], [w], soft=soft, nonnegative=nonnegative)
    m.d.comb += product.eq(datapath.join_parts(parts))
    wrong, extra_products = [], []

    async def bench(ctx):
        for a in inputs:
            ctx.set(x, a)
            for b in range(arith.QMIN, arith.QMAX + 1):
                ctx.set(w, b)
                if ctx.get(product) != a * b:
                    wrong.append((a, b, ctx.get(product)))
        for a, b in extra:
            ctx.set(x, a)
            ctx.set(w, b)
            extra_products.append(ctx.get(product))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return wrong, extra_products


def test_soft_product_is_exact_for_every_code_pair():
    """The logic multiplier (partial products, the sign bit's term negative) on all 65,536 pairs."""
    wrong, _ = simulated_products(True, False, range(arith.QMIN, arith.QMAX + 1))
    assert not wrong, f"{len(wrong)} wrong products, first {wrong[:3]}"


@pytest.mark.parametrize("soft", [False, True], ids=["dsp", "soft"])
def test_products_of_nonnegative_inputs_are_exact(soft):
    """Multipliers told their input is >= 0: every input 0..127 against every weight; a negative
    input (which the network never sends) is where they may differ from x * w."""
    wrong, [negative] = simulated_products(soft, True, range(0, arith.QMAX + 1), extra=[(-1, 1)])
    assert not wrong, f"{len(wrong)} wrong products, first {wrong[:3]}"
    assert negative != -1, "the sign bit is still used: the saving did not happen"


@pytest.mark.parametrize("n", [1, 2, 5, 20, 25, 43])
def test_two_stage_adder_tree_groups_cover_every_term(n):
    group = datapath.tree_group(n)
    sizes = [len(range(i, min(i + group, n))) for i in range(0, n, group)]
    assert sum(sizes) == n
    assert group * group >= n and (group - 1) ** 2 < n or n == 1  # about sqrt(n) on both halves


# Layers of other formats (issue 26): the largest shift, a 4-bit signed output of an input with
# no fraction bits, and shift 0 (Q2.6 out of a Q4.0 input, where half-up adds nothing).
LAYERS = [arith.LayerArithmetic(r, o, arith.Fixed.parse(i), arith.Fixed.parse(out))
          for r in arith.Rounding for o in arith.Overflow
          for i, out in (("Q2.6", "UQ1.2"), ("UQ2.3", "Q4.0"), ("Q4.0", "Q2.6"))]


class LayerRequantizeHarness(RequantizeHarness):
    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.code.eq(datapath.relu(datapath.requantize(self.acc, self.arithmetic)))
        return m


@pytest.mark.parametrize("layer", LAYERS, ids=lambda a: f"{a.input}-{a.output}-{a.rounding}-{a.overflow}")
def test_layer_requantizer_rtl_matches_golden(layer, simulator, tmp_path_factory):
    """Requantize and ReLU of a layer with its own formats, around every edge of its output."""
    step = 1 << layer.shift
    edges = [code * step for code in (layer.output.low, 0, layer.output.high, layer.output.high + 1,
                                      layer.output.low - 1, 2 * layer.output.high + 2)]
    near = np.concatenate([np.arange(e - 3 * step, e + 3 * step, max(1, step // 16)) for e in edges])
    acc = np.concatenate([near, np.random.default_rng(8).integers(-(1 << 22), 1 << 22, 1000)])
    expected = layer.activate(acc)
    assert (expected == layer.output.high).any() and (expected == 0).any()
    source = verilog.convert(LayerRequantizeHarness(layer), name="requantize")
    result = runner.run(source, "requantize", "lenet_fpga.sim.tb_requantize", {"acc": acc, "expected": expected},
                        simulator=simulator, build_root=tmp_path_factory.getbasetemp() / "sim")
    np.testing.assert_array_equal(result.outputs["code"], expected)
