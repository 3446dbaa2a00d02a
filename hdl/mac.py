"""The multiply-accumulate pipeline that every engine computes with: ``groups`` dot products of
``terms`` products each over one shared input vector, accumulated over steps on top of a bias,
then finished (requantize and ReLU, or the raw accumulator for the logits).

A conv engine feeds it a window (``terms`` = K*K codes) and ``groups`` = the filters it computes
at once; a linear engine feeds it ``terms`` = lanes inputs and one group. Both issue one step a
cycle from their memories; what happens after the memories is the same, so it is written once:

    in   memory data, window/inputs, bias word, step flags (valid, first step, last step)
    R1   all of them registered: a block RAM's clock-to-output is slow, so it gets a cycle of its own
    R2   the operands again, beside each multiplier (an ECP5 DSP's own input registers)
    R3   the products as parts: a DSP's output register, or the two halves of a logic multiplier
    R4   the products
    R5   adder trees, first half: partial sums of about sqrt(terms) products
    R6   adder trees, second half: the sums
    R7   accumulate: bias term + sum on the first step, += sum after
    o    after the last step: finished results, valid for one cycle (``DEPTH`` cycles after ``in``)

The adder trees are split in two so that no stage has more than about three adders in series.
The pipeline never stalls and has no enable: its caller holds back-pressure at its issue logic
(``result_queue``). The accumulators are read at ``o`` before R7 overwrites them with the next
group's first step, so a new accumulation may start every cycle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..model import arith
from . import datapath
from .pipeline import Pipeline
from .products import WeightForm, dsp_blocks, registered_products, scaled

# Registers from the inputs to ``o`` (R1 .. R7).
DEPTH = 7


class MacPipeline(wiring.Component):
    """``groups`` x ``terms`` multipliers, adder trees and accumulators.

    Parameters
    ----------
    groups : int
        Dot products computed side by side (a conv engine's filters at once; 1 for a linear engine).
    terms : int
        Products in each dot product per step (K*K window codes, or a linear engine's lanes).
    accumulation : int
        Products in a whole accumulation (all steps): sizes the accumulators
        (``arith.accumulator_bound``).
    arithmetic : arith.LayerArithmetic
        The layer's bias shift and requantizer (an ``arith.Arithmetic``: a Q2.6 layer).
    raw : bool
        Output the accumulators (logits) instead of ``relu(requantize(acc))`` codes.
    soft_multipliers : bool
        Multipliers from logic instead of DSP blocks (``datapath.product_parts``).
    nonnegative_inputs : bool
        Every input code is >= 0 (pixel codes, ReLU outputs): the multipliers drop the sign bit.
    name : str
        Prefix of the multipliers' names in the generated Verilog.
    form : products.WeightForm
        The layer's weight codes: plain 8-bit, or a restriction whose stored indices ``w``
        carries (``bits`` each), and how they multiply (``hdl/products.py``).

    Attributes
    ----------
    x : In(terms * 8)
        The shared input codes, term t in bits 8t..8t+7.
    w : In(groups * terms * form.bits)
        The stored weights; group p's term t in field ``p * terms + t``.
    bias : In(groups * 8)
        The biases, group p in code p; used on a first step.
    valid, first, last : In(1)
        This cycle's step is real; it starts an accumulation; it ends one.
    o_valid : Out(1)
        ``o`` holds finished results (``DEPTH`` cycles after the last step went in).
    o : Out(code_vector(groups), or the accumulator shape if ``raw``)
    multipliers : int
        Products a cycle.
    dsp_blocks : int
        DSP multipliers they take on an FPGA with DSP blocks (half of them when packed, none
        when built from logic or from shifts).
    """

    def __init__(self, groups: int, terms: int, accumulation: int, arithmetic: arith.Arithmetic, *,
                 raw: bool = False, soft_multipliers: bool = False, nonnegative_inputs: bool = False,
                 name: str = "mac", form: WeightForm = WeightForm()):
        for label, value in (("groups", groups), ("terms", terms), ("accumulation", accumulation)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive integer, not {value!r}")
        if raw and groups != 1:
            raise ValueError("raw accumulators come out of one group only")
        self._groups, self._terms = groups, terms
        self._arithmetic, self._raw = arith.as_layer(arithmetic), raw
        self._soft, self._nonnegative, self._name = soft_multipliers, nonnegative_inputs, name
        self.form = form
        self.acc_shape = datapath.accumulator_shape(accumulation)
        super().__init__({
            "x": In(unsigned(terms * arith.WIDTH)),
            "w": In(unsigned(groups * terms * form.bits)),
            "bias": In(unsigned(groups * arith.WIDTH)),
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "o_valid": Out(1),
            "o": Out(self.acc_shape if raw else datapath.code_vector(groups)),
        })

    @property
    def multipliers(self) -> int:
        return self._groups * self._terms

    @property
    def dsp_blocks(self) -> int:
        return dsp_blocks(self.form, self._groups, self._terms, soft=self._soft, nonnegative=self._nonnegative)

    def elaborate(self, platform):
        m = Module()
        groups, terms, name = self._groups, self._terms, self._name
        pipe = Pipeline(m)
        stage = pipe.stage

        # R1: everything registered as it comes out of the memories.
        x1, w1, bias1, flags1 = Signal.like(self.x), Signal.like(self.w), Signal.like(self.bias), Signal(3)
        stage((x1, self.x), (w1, self.w), (bias1, self.bias), (flags1, Cat(self.valid, self.first, self.last)))

        # R2, R3: operands beside each multiplier, the products as registered parts (or shared
        # multipliers, or shift selects: ``products``); R4: the products.
        xs = datapath.unpack_codes(x1, terms)
        bits = self.form.bits
        stored = [w1[i * bits : (i + 1) * bits] for i in range(groups * terms)]
        products = registered_products(m, platform, xs, [stored[p * terms:(p + 1) * terms] for p in range(groups)],
                                       self.form, soft=self._soft, nonnegative=self._nonnegative, name=name)
        sums = []
        for p in range(groups):
            label = f"{name}{p}" if groups > 1 else name
            product_regs = [Signal(q.shape(), name=f"{label}_product{t}") for t, q in enumerate(products[p])]
            stage(*zip(product_regs, products[p]))
            # R5, R6: the adder tree in two registered halves, then the codes' common scale.
            partial = datapath.partial_sums(product_regs, datapath.tree_group(terms))
            partial_regs = [Signal(v.shape(), name=f"{label}_partial{i}") for i, v in enumerate(partial)]
            stage(*zip(partial_regs, partial))
            total = scaled(datapath.adder_tree(partial_regs), self.form)
            sums.append(Signal(total.shape(), name=f"{label}_sum"))
            stage((sums[p], total))
        # The biases and step flags travel alongside, R1 -> R6: five registers.
        bias6, flags6 = pipe.delay(bias1, 5, f"{name}_bias"), pipe.delay(flags1, 5, f"{name}_flags")
        valid6, first6, last6 = flags6[0], flags6[1], flags6[2]

        # R7: accumulate over the steps, on top of the bias.
        biases = datapath.unpack_codes(bias6, groups)
        accs = [Signal(self.acc_shape, name=f"{name}_acc{p}") for p in range(groups)]
        stage((self.o_valid, valid6 & last6))
        with m.If(valid6):
            m.d.sync += [acc.eq(Mux(first6, datapath.bias_term(b, self._arithmetic.bias_shift), acc) + total)
                         for acc, b, total in zip(accs, biases, sums)]

        # o: the finished results, read before R7 takes the next accumulation's first step.
        if self._raw:
            m.d.comb += self.o.eq(accs[0])
        else:
            bits = self._arithmetic.output.stored_bits
            codes = [datapath.relu(datapath.requantize(acc, self._arithmetic), bits) for acc in accs]
            m.d.comb += self.o.eq(datapath.pack_codes(codes))
        return m
