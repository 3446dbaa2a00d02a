"""The convolution engine: windows from a line buffer, 25 multipliers, one (filter, channel) per cycle.

For every window position the engine walks the filters f (outer) and the input channels c
(inner), one step per cycle: the weight RAM word ``f * C + c`` holds the K*K weights of
``w[f, c]``, channel c's K*K window codes are selected from the window snapshot, the K*K
products are summed by an adder tree and accumulated over the channels on top of the bias.
After the last channel the accumulator is requantized, ReLU'd and sent out. So a window costs
O * C cycles, and the window generator fills its next snapshot meanwhile: after the warm-up
(the first window needs K-1 rows and K pixels) the multipliers never wait.

The pipeline has one enable, "the output register is free": back-pressure on ``o`` freezes
every stage, the RAM read ports included, so nothing is lost and nothing is buffered twice.

    S0  issue step (f, c): RAM addresses, register channel c's window
    S1  weight word and bias out of the RAMs; K*K products registered
    S2  adder tree registered
    S3  accumulate: bias term + sum on c == 0, += sum after
    S4  after c == C-1: requantize, ReLU into the output register
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model import arith
from . import datapath
from .datapath import CODE
from .window import WindowGenerator, pixel_layout, wrap_increment

# Cycles from issuing a step (S0) to the output handshake of its result: S1, S2, S3, S4, o.
LATENCY = 5


def _check_codes(label: str, array, ndim: int) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{label} must be a numpy array, not {type(array).__name__}")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{label} must hold integer codes, not dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{label} must have {ndim} dimensions, got shape {list(array.shape)}")
    if array.size and (array.min() < arith.QMIN or array.max() > arith.QMAX):
        raise ValueError(f"{label} codes must lie in {arith.QMIN}..{arith.QMAX}")
    return array.astype(np.int64)


class ConvEngine(wiring.Component):
    """Valid KxK convolution + bias + requantize + ReLU of a square multi-channel feature map.

    Parameters
    ----------
    weight : np.ndarray
        Integer codes [O, C, K, K] (int8 range), square kernel.
    bias : np.ndarray
        Integer codes [O].
    size : int
        Side of the square input map (at least K).
    arithmetic : arith.Arithmetic
        Rounding and overflow of the requantizer.
    name : str
        Layer name, for reports.

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(signed(8), C)))
        Pixel vectors (all C channels of one pixel, channel 0 in the low bits), raster order;
        ``size * size`` per image, images back to back.
    o : Out(stream.Signature(signed(8)))
        ``relu(requantize(acc))`` in order (y, x, f): output positions in raster order, the O
        filters of each position in a row, filter fastest. ``(size - K + 1) ** 2 * O`` per image.
    weight_memory, bias_memory : Memory
        Word ``f * C + c`` = the K*K codes of ``w[f, c]`` row-major (first in the low bits);
        word f = ``b[f]``. Read ports only: a loader may add write ports before elaboration.
    memory_bits : int
        Bits of the weight, bias and line-buffer memories.
    cycles_per_image : int
        Cycles from the first input handshake to the last output handshake of one image when
        the input is always valid and the output always ready, both handshakes counted.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, size: int, arithmetic: arith.Arithmetic,
                 name: str = "conv"):
        weight = _check_codes("weight", weight, 4)
        bias = _check_codes("bias", bias, 1)
        out_ch, in_ch, kernel, kernel_w = weight.shape
        if kernel != kernel_w:
            raise ValueError(f"weight kernel must be square, got {kernel}x{kernel_w}")
        if out_ch < 1 or in_ch < 1 or kernel < 2:
            raise ValueError(f"weight shape {list(weight.shape)} has an empty or 1x1 dimension")
        if bias.shape != (out_ch,):
            raise ValueError(f"bias must have shape [{out_ch}], got {list(bias.shape)}")
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"size must be an integer, not {size!r}")
        if size < kernel:
            raise ValueError(f"size ({size}) must be at least the kernel ({kernel})")
        if not isinstance(arithmetic, arith.Arithmetic):
            raise TypeError(f"arithmetic must be an arith.Arithmetic, not {arithmetic!r}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, not {name!r}")
        self._out_ch, self._in_ch, self._kernel, self._size = out_ch, in_ch, kernel, size
        self._arithmetic, self._name = arithmetic, name
        super().__init__({
            "i": In(stream.Signature(pixel_layout(in_ch))),
            "o": Out(stream.Signature(CODE)),
        })
        taps = kernel * kernel
        self.window = WindowGenerator(in_ch, size, kernel)
        self.weight_memory = Memory(shape=unsigned(taps * arith.WIDTH), depth=out_ch * in_ch,
                                    init=datapath.pack_words(weight.reshape(-1), taps))
        self.bias_memory = Memory(shape=CODE, depth=out_ch, init=bias.tolist())
        self._weight_read = self.weight_memory.read_port()
        self._bias_read = self.bias_memory.read_port()

    @property
    def name(self) -> str:
        return self._name

    @property
    def arithmetic(self) -> arith.Arithmetic:
        return self._arithmetic

    @property
    def multipliers(self) -> int:
        return self._kernel * self._kernel

    @property
    def memory_bits(self) -> int:
        weights = self._out_ch * self._in_ch * self._kernel**2 * arith.WIDTH
        return weights + self._out_ch * arith.WIDTH + self.window.memory_bits

    @property
    def cycles_per_image(self) -> int:
        k, size, steps = self._kernel, self._size, self._out_ch * self._in_ch
        positions = (size - k + 1) ** 2
        warm_up = (k - 1) * size + k  # pixels until the first window is complete
        # At a row end the next window needs K new pixels; fewer than K steps per window leave gaps.
        row_gaps = (size - k) * max(0, k - steps)
        return warm_up + positions * steps + row_gaps + LATENCY

    def elaborate(self, platform):
        m = Module()
        out_ch, in_ch, k = self._out_ch, self._in_ch, self._kernel
        taps = k * k
        m.submodules.window = window = self.window
        m.submodules.weight_memory = self.weight_memory
        m.submodules.bias_memory = self.bias_memory
        wiring.connect(m, wiring.flipped(self.i), window.i)
        weight_rd, bias_rd = self._weight_read, self._bias_read

        advance = ~self.o.valid | self.o.ready  # the one pipeline enable

        # S0: step counters; the weight address is f * C + c, walked sequentially.
        step = Signal(range(out_ch * in_ch))
        f = Signal(range(out_ch))
        c = Signal(range(in_ch))
        issue = window.o.valid & advance
        m.d.comb += [
            window.o.ready.eq(issue & (step == out_ch * in_ch - 1)),
            weight_rd.addr.eq(step),
            weight_rd.en.eq(advance),
            bias_rd.addr.eq(f),
            bias_rd.en.eq(advance),
        ]
        with m.If(issue):
            m.d.sync += [step.eq(wrap_increment(step, out_ch * in_ch)), c.eq(wrap_increment(c, in_ch))]
            with m.If(c == in_ch - 1):
                m.d.sync += f.eq(wrap_increment(f, out_ch))

        # S0 -> S1: channel c's window out of the snapshot (a C-way mux), step flags.
        selected = Signal(unsigned(taps * arith.WIDTH))
        valid1, first1, last1 = Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [valid1.eq(issue), first1.eq(c == 0), last1.eq(c == in_ch - 1)]
            with m.Switch(c):
                for channel in range(in_ch):
                    with m.Case(channel):
                        m.d.sync += selected.eq(window.o.payload[channel].as_value())

        # S1 -> S2: the RAMs answer; multiply.
        xs = datapath.unpack_codes(selected, taps)
        ws = datapath.unpack_codes(weight_rd.data, taps)
        products = datapath.products(xs, ws)
        product_regs = [Signal(p.shape(), name=f"product{t}") for t, p in enumerate(products)]
        bias2 = Signal(CODE)
        valid2, first2, last2 = Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [r.eq(p) for r, p in zip(product_regs, products)]
            m.d.sync += [bias2.eq(bias_rd.data), valid2.eq(valid1), first2.eq(first1), last2.eq(last1)]

        # S2 -> S3: add.
        total = datapath.adder_tree(product_regs)
        sum3 = Signal(total.shape())
        bias3 = Signal(CODE)
        valid3, first3, last3 = Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [sum3.eq(total), bias3.eq(bias2), valid3.eq(valid2), first3.eq(first2), last3.eq(last2)]

        # S3 -> S4: accumulate over the channels, on top of the bias.
        acc = Signal(datapath.accumulator_shape(in_ch * taps))
        done4 = Signal()
        with m.If(advance):
            m.d.sync += done4.eq(valid3 & last3)
            with m.If(valid3):
                m.d.sync += acc.eq(Mux(first3, datapath.bias_term(bias3), acc) + sum3)

        # S4 -> o: requantize and ReLU. This reads acc before S3 overwrites it with the next
        # filter's first step, so a new filter can start every C cycles, even every cycle.
        with m.If(advance):
            m.d.sync += [
                self.o.valid.eq(done4),
                self.o.payload.eq(datapath.relu(datapath.requantize(acc, self._arithmetic))),
            ]
        return m
