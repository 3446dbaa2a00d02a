"""The convolution engine: windows from a line buffer, ``filters * K * K`` multipliers.

For every window position the engine walks the filter groups g (outer) and the input channels
c (inner), one step per cycle. A group is ``filters`` consecutive filters computed side by side:
the weight RAM word ``g * C + c`` holds the K*K weights of each filter of the group for channel
c, channel c's K*K window codes are selected from the window snapshot, and each filter's K*K
products are summed by its own adder tree and accumulated over the channels on top of its bias.
After the last channel the accumulators are requantized, ReLU'd and sent out together. So a
window costs ``O / filters * C`` cycles, and the window generator fills its next snapshot
meanwhile: after the warm-up (the first window needs K-1 rows and K pixels) the multipliers
only wait when a window takes fewer cycles than the K pixels a row start needs.

The pipeline never stalls. Each result reserves a place in the output queue when its first
step issues (``result_queue``), and a step issues only while there is a place; back-pressure on
``o`` therefore only holds the issue logic, and the datapath registers have no enable at all.

    S0   issue step (g, c): RAM addresses, channel c's window selected
    S1   the window registered, the RAMs read
    MAC  ``hdl/mac.py``: registered operands, the products, two-stage adder trees, accumulate
         over the channels on top of the bias, and after c == C-1 requantize and ReLU
    o    into the output queue (which registers them first)
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model import arith
from . import datapath, params
from .mac import DEPTH as MAC_DEPTH
from .mac import MacPipeline
from .products import WeightForm
from .result_queue import ResultQueue
from .window import WindowGenerator, pixel_layout, wrap_increment

# Cycles from issuing a step (S0) to the output handshake of its result: the window and the RAMs
# (S1), the MAC pipeline, the output queue's input register and o.
LATENCY = 1 + MAC_DEPTH + 2


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
    arithmetic : arith.LayerArithmetic
        The layer's input and output formats, rounding and overflow (an ``arith.Arithmetic``: Q2.6).
    name : str
        Layer name, for reports.
    filters : int
        Filters computed at once (a divisor of O); the engine has ``filters * K * K`` multipliers.
    soft_multipliers : bool
        Build the multipliers from logic instead of DSP blocks (``datapath.product_parts``).
    nonnegative_inputs : bool
        Every input code is >= 0 (pixel codes, ReLU outputs): the multipliers drop the sign bit.
        A negative input then gives wrong sums; leave it False for arbitrary codes.
    form : products.WeightForm
        The weights' restricted codes: the weight memory holds their stored indices, ``bits``
        each, and the multipliers are as narrow as they are (``hdl/products.py``).
    registered_ready : bool
        The window generator's ``registered_ready``: a window costs two cycles more
        (``steps_per_window + 2``), the snapshot's load enable is a flip-flop. For an engine
        that waits for its input anyway (see ``lenet.py``).

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(signed(8), C)))
        Pixel vectors (all C channels of one pixel, channel 0 in the low bits), raster order;
        ``size * size`` per image, images back to back.
    o : Out(stream.Signature(datapath.code_vector(filters)))
        ``relu(requantize(acc))`` in order (y, x, f): output positions in raster order, the O
        filters of each position in a row, filter fastest, ``filters`` of them per transfer
        (the first in the low bits). ``(size - K + 1) ** 2 * O / filters`` transfers per image.
    weight_memory, bias_memory : Memory
        Word ``g * C + c`` = for each filter ``f = g * filters + p`` of group g (p = 0 in the low
        bits), the K*K codes of ``w[f, c]`` row-major; bias word g = the group's ``filters``
        biases. Read ports only: a loader may add write ports before elaboration.
    memory_bits : int
        Bits of the weight, bias and line-buffer memories.
    cycles_per_image : int
        Cycles from the first input handshake to the last output handshake of one image when
        the input is always valid and the output always ready, both handshakes counted.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, size: int, arithmetic: arith.Arithmetic,
                 name: str = "conv", filters: int = 1, soft_multipliers: bool = False,
                 nonnegative_inputs: bool = False, form: WeightForm = WeightForm(),
                 registered_ready: bool = False):
        weight, bias = params.codes("weight", weight, 4), params.codes("bias", bias, 1)
        out_ch, in_ch, kernel, kernel_w = weight.shape
        if kernel != kernel_w:
            raise ValueError(f"weight kernel must be square, got {kernel}x{kernel_w}")
        if kernel < 2:
            raise ValueError(f"weight shape {list(weight.shape)} has a 1x1 kernel")
        if bias.shape != (out_ch,):
            raise ValueError(f"bias must have shape [{out_ch}], got {list(bias.shape)}")
        if params.positive("size", size) < kernel:
            raise ValueError(f"size ({size}) must be at least the kernel ({kernel})")
        arithmetic = params.arithmetic(arithmetic)
        params.name(name)
        if params.positive("filters", filters) and out_ch % filters:
            raise ValueError(f"filters must be a positive divisor of the {out_ch} output channels, not {filters!r}")
        params.flag("soft_multipliers", soft_multipliers)
        self._nonnegative = params.flag("nonnegative_inputs", nonnegative_inputs)
        self._out_ch, self._in_ch, self._kernel, self._size = out_ch, in_ch, kernel, size
        self._arithmetic, self._name = arithmetic, name
        self._filters, self._soft = filters, soft_multipliers
        super().__init__({
            "i": In(stream.Signature(pixel_layout(in_ch))),
            "o": Out(stream.Signature(datapath.code_vector(filters))),
        })
        taps = kernel * kernel
        groups = out_ch // filters
        # See WindowGenerator: two cycles more per window (and one before the first), for a
        # snapshot whose load enable is a flip-flop.
        self.window = WindowGenerator(in_ch, size, kernel, registered_ready=registered_ready,
                                      code_bits=arithmetic.input.stored_bits)
        self._registered_ready = bool(registered_ready)
        self._window_cycles = self.steps_per_window + 2 * self._registered_ready
        # [g, p, c, tap] -> [g, c, p, tap]: one word per (group, channel), filter p in slice p.
        words = weight.reshape(groups, filters, in_ch, taps).transpose(0, 2, 1, 3).reshape(-1)
        self.form = form
        self.weight_memory = Memory(shape=unsigned(filters * taps * form.bits), depth=groups * in_ch,
                                    init=datapath.pack_words(form.stored(words), filters * taps, form.bits))
        self.bias_memory = Memory(shape=unsigned(filters * arith.WIDTH), depth=groups,
                                  init=datapath.pack_words(bias, filters))
        self._weight_read = self.weight_memory.read_port()
        self._bias_read = self.bias_memory.read_port()
        self.mac = MacPipeline(filters, taps, in_ch * taps, arithmetic, form=form, soft_multipliers=soft_multipliers,
                               nonnegative_inputs=nonnegative_inputs, name=name)

    @property
    def name(self) -> str:
        return self._name

    @property
    def arithmetic(self) -> arith.LayerArithmetic:
        return self._arithmetic

    @property
    def filters(self) -> int:
        return self._filters

    @property
    def multipliers(self) -> int:
        return self.mac.multipliers

    @property
    def dsp_blocks(self) -> int:
        return self.mac.dsp_blocks

    @property
    def soft_multipliers(self) -> bool:
        return self._soft

    @property
    def memory_bits(self) -> int:
        weights = self._out_ch * self._in_ch * self._kernel**2 * self.form.bits
        return weights + self._out_ch * arith.WIDTH + self.window.memory_bits

    @property
    def steps_per_window(self) -> int:
        return self._out_ch // self._filters * self._in_ch

    @property
    def cycles_per_image(self) -> int:
        k, size, steps = self._kernel, self._size, self._window_cycles
        positions = (size - k + 1) ** 2
        warm_up = (k - 1) * size + k + self._registered_ready  # until the first window is in the snapshot
        # At a row end the next window needs K new pixels; fewer than K steps per window leave gaps.
        row_gaps = (size - k) * max(0, k - steps)
        # With one step per window the snapshot is taken every cycle and the input sets the pace.
        return warm_up + positions * steps + row_gaps + LATENCY

    def elaborate(self, platform):
        m = Module()
        in_ch, k, filters = self._in_ch, self._kernel, self._filters
        groups, steps = self._out_ch // filters, self.steps_per_window
        taps = k * k
        m.submodules.window = window = self.window
        m.submodules.weight_memory = self.weight_memory
        m.submodules.bias_memory = self.bias_memory
        wiring.connect(m, wiring.flipped(self.i), window.i)
        weight_rd, bias_rd = self._weight_read, self._bias_read

        m.submodules.results = results = ResultQueue(self.o.payload.shape())
        wiring.connect(m, results.o, wiring.flipped(self.o))

        # S0: step counters; the weight address is g * C + c, walked sequentially. A group's
        # first step reserves the queue place of its results.
        step = Signal(range(steps))
        g = Signal(range(groups))
        c = Signal(range(in_ch))
        # c == 0 and step == steps - 1 as registers: the window's ready fans out to its whole
        # snapshot and line buffer, so it starts from flip-flops rather than from comparators.
        first_channel = Signal(init=1)
        last_step = Signal(init=steps == 1)
        issue = Signal()  # a step goes into the pipeline this cycle (named: it shows in waveforms)
        m.d.comb += issue.eq(window.o.valid & (results.room | ~first_channel))
        m.d.comb += [
            window.o.ready.eq(issue & last_step),
            results.reserve.eq(issue & first_channel),
            weight_rd.addr.eq(step),
            bias_rd.addr.eq(g),
        ]
        with m.If(issue):
            m.d.sync += [step.eq(wrap_increment(step, steps)), c.eq(wrap_increment(c, in_ch)),
                         first_channel.eq(c == in_ch - 1), last_step.eq(step == (steps - 2) % steps)]
            with m.If(c == in_ch - 1):
                m.d.sync += g.eq(wrap_increment(g, groups))

        # S0 -> S1: channel c's window out of the snapshot (a C-way mux), step flags; the RAMs
        # answer in S1 too. From there the MAC pipeline (``mac``) takes over.
        selected = Signal(unsigned(taps * arith.WIDTH))
        flags1 = Signal(3)  # valid, first channel, last channel
        m.d.sync += flags1.eq(Cat(issue, first_channel, c == in_ch - 1))
        with m.Switch(c):
            for channel in range(in_ch):
                with m.Case(channel):
                    m.d.sync += selected.eq(window.o.payload[channel].as_value())
        m.submodules.mac = mac = self.mac
        m.d.comb += [mac.x.eq(selected), mac.w.eq(weight_rd.data), mac.bias.eq(bias_rd.data),
                     mac.valid.eq(flags1[0]), mac.first.eq(flags1[1]), mac.last.eq(flags1[2]),
                     results.i.valid.eq(mac.o_valid), results.i.payload.eq(mac.o)]
        return m
