"""The multipliers of restricted weight codes (hdl/products.py), exhaustively in Amaranth's
simulator: every activation 0..127 against every stored weight of every form, compared with the
plain integer product of the activation and the code the restriction says the weight is."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from lenet_fpga.hdl.products import WeightForm, pack_shift, registered_products, unpack_pair
from lenet_fpga.model.codes import PowerOfTwo, Ternary, Uniform

ACTIVATIONS = np.arange(128)  # nonnegative codes: pixels and ReLU outputs


class Products(wiring.Component):
    """``groups`` x 128 products over the 128 activations at once: each term t multiplies
    activation t by the stored weight of its group (one weight per group per cycle)."""

    def __init__(self, form: WeightForm, groups: int, soft: bool):
        self.form, self.groups, self.soft = form, groups, soft
        super().__init__({
            "stored": In(unsigned(groups * form.bits)),
            "products": Out(unsigned(groups * len(ACTIVATIONS) * 32)),
        })

    def elaborate(self, platform):
        m = Module()
        xs = [Signal(signed(8), init=int(x)) for x in ACTIVATIONS]
        bits = self.form.bits
        stored = [[self.stored[g * bits : (g + 1) * bits]] * len(xs) for g in range(self.groups)]
        products = registered_products(m, platform, xs, stored, self.form, soft=self.soft, nonnegative=True,
                                       name="p")
        flat = [p for group in products for p in group]
        m.d.comb += [self.products.word_select(k, 32).eq(p.as_signed()) for k, p in enumerate(flat)]
        return m


def run(form: WeightForm, groups: int, soft: bool, stored_rows) -> np.ndarray:
    """Products [rows, groups, 128] for each row of stored weights (one per group)."""
    dut = Products(form, groups, soft)
    results = []

    async def bench(ctx):
        for row in stored_rows:
            ctx.set(dut.stored, sum(int(s) << (g * form.bits) for g, s in enumerate(row)))
            await ctx.tick().repeat(2)  # operands, then the products' parts: two registers
            word = ctx.get(dut.products)
            values = [(word >> (32 * k)) & 0xFFFFFFFF for k in range(groups * len(ACTIVATIONS))]
            results.append([v - (1 << 32) if v >> 31 else v for v in values])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(results, np.int64).reshape(len(stored_rows), groups, len(ACTIVATIONS))


def expected(form: WeightForm, stored_rows) -> np.ndarray:
    """x * code, without the form's scale (applied to the sum of a group's products)."""
    codes = form.restriction.decode_table[np.asarray(stored_rows)]  # [rows, groups]
    return codes[:, :, None] * ACTIVATIONS[None, None, :] // form.scale


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_packed_pairs_every_activation_and_weight_pair(bits):
    """Two groups share each multiplier: every (c0, c1) pair of signed bits-wide factors."""
    form = WeightForm(Uniform(bits, 0))
    assert form.packable(nonnegative=True)
    rows = list(itertools.product(range(1 << bits), repeat=2))
    got = run(form, 2, soft=False, stored_rows=rows)
    np.testing.assert_array_equal(got, expected(form, rows))


def test_unpack_pair_worked_out_by_hand():
    """x = 127, c0 = -8, c1 = 7, m = 11: p = -1016 + 889 * 2048 = 1,819,656; the low 11 bits
    are 1032, read as signed -1016; the rest is 888, plus the low field's sign bit 1 = 889."""
    shift = pack_shift(4)
    assert shift == 11
    p = -1016 + 889 * 2048
    assert p == 1_819_656 and p % 2048 == 1032 and p >> 11 == 888
    sim_low, sim_high = [], []
    dut_p = Signal(signed(24))
    low, high = unpack_pair(dut_p, shift)

    async def bench(ctx):
        ctx.set(dut_p, p)
        sim_low.append(ctx.get(low))
        sim_high.append(ctx.get(high))

    sim = Simulator(Module())
    sim.add_testbench(bench)
    sim.run()
    assert (sim_low, sim_high) == ([-1016], [889])


@pytest.mark.parametrize("bits, soft", [(2, True), (3, True), (5, True), (6, True), (7, True), (8, True),
                                        (5, False), (8, False)])
def test_narrow_multipliers_every_activation_and_weight(bits, soft):
    """k-bit codes c * 2**s, multiplied by a multiplier as wide as c, from logic or as ``*``."""
    form = WeightForm(Uniform(bits, 8 - bits))
    rows = [(s,) for s in range(1 << bits)]
    got = run(form, 1, soft=soft, stored_rows=rows)
    np.testing.assert_array_equal(got, expected(form, rows))
    assert form.scale == 1 << (8 - bits)


@pytest.mark.parametrize("restriction", [Ternary(3), Ternary(64), PowerOfTwo((0,)), PowerOfTwo((1, 3, 6)),
                                         PowerOfTwo((0, 1, 2, 3, 4, 5, 6))])
def test_select_forms_every_activation_and_stored_index(restriction):
    """Sign and magnitude: every stored index, the never-stored "minus zero" included (it must
    give 0, as the decode table says)."""
    form = WeightForm(restriction)
    assert form.kind == "select"
    rows = [(s,) for s in range(1 << form.bits)]
    got = run(form, 1, soft=False, stored_rows=rows)
    np.testing.assert_array_equal(got, expected(form, rows))
