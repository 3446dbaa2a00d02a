"""The parts of the compact accelerator; ``hdl/compact.py`` documents the design and joins them.

* ``ImageInput``: one pixel byte a cycle through the pixel table; codes to feature-map addresses 0, 1, ...
  (channel-major for a colour image)
* ``Sequencer``: the state machine and the per-layer loop nest. Every array cycle it issues a
  feature-map address, a weight-word address and the *term*: the cycle's control (bias or tap, the
  accumulation completes, the pooling window, where the outputs go). It holds the per-layer
  constants of the ``LayerPlan`` s as ``Mux`` chains on its layer counter.
* ``MACArray``: ``lanes`` multiply-accumulators; the only part that knows how a lane multiplies.
* ``Finisher``: a snapshot of the accumulators, then one lane a cycle: requantize, ReLU, running
  max over the pooling window, feature-map write; or, in the last layer, the logit to the argmax.
* ``WeightStoreLoader``: the weight-image bytes, lane by lane, into the ``WeightStore``.

Icarus (in SystemVerilog mode) does not evaluate an ``always @*`` block until one of its inputs
changes, so a value decoded that way from a signal that keeps its reset value stays X. Per-layer
constants are therefore ``Mux`` chains (``_table``) rather than an ``Array``, and the state decodes
are assigned outside the FSM: both become continuous assignments.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import arith
from .datapath import CODE, accumulator_shape, relu, requantize
from .pixels import PIXEL, PixelQuantizer
from .spram import SPRAM_DEPTH

WEIGHT_ADDRESS_BITS = (SPRAM_DEPTH - 1).bit_length()
# The feature-map RAM and the weight store answer an address in the next cycle.
MEMORY_LATENCY = 1


def address_width(depth: int) -> int:
    """Address width of a memory of ``depth`` words."""
    return max(1, (depth - 1).bit_length())


def position_layout(address_bits: int, lanes: int) -> data.StructLayout:
    """What the finisher needs to know about a completed accumulation (an output position)."""
    return data.StructLayout({
        "window_start": 1,  # the first position of a pooling window: the running maximum restarts
        "window_end": 1,  # the last: the pooled codes are written
        "addr": unsigned(address_bits),  # where lane 0's code goes
        "lanes": range(lanes + 1),  # lanes that hold an output (the last group may have fewer)
    })


def term_layout(address_bits: int, lanes: int) -> data.StructLayout:
    """The control of one array cycle, issued with its addresses."""
    return data.StructLayout({
        "bias": 1,  # the bias term: the accumulators load 64 * b
        "complete": 1,  # the last tap: the accumulation completes
        "position": position_layout(address_bits, lanes),
    })


# --------------------------------------------------------------------------------------------
# Image input


class ImageInput(wiring.Component):
    """Takes one image, ``pixels`` bytes, through the ``PixelQuantizer`` and writes its codes
    to addresses 0, 1, ... (the image region of the feature-map RAM). With C ``channels`` the
    bytes arrive channel-interleaved and are written channel-major (channel c of pixel p to
    ``c * pixels / C + p``), the (channel, row, column) order conv1's taps read.

    Parameters
    ----------
    pixels : int
        Bytes in an image (pixels times channels).
    table_in_logic : bool
        The quantizer's table in logic (``PixelQuantizer(in_logic=True)``), not a block RAM.
    channels : int
        Channels of a pixel, a divisor of ``pixels``.

    Attributes
    ----------
    pixels : In(stream.Signature(unsigned(8)))
        Ready while ``open`` and the image is not all taken.
    start : In(1)
        A new image: counting starts again from pixel 0.
    open : In(1)
        Pixels may be taken.
    addr, code, we : Out
        A code to write, one cycle after its pixel is taken.
    last : Out(1)
        ``we`` of the image's last code.
    """

    def __init__(self, pixels: int, table_in_logic: bool = False, channels: int = 1):
        if pixels < 1:
            raise ValueError(f"an image has at least one pixel, not {pixels}")
        if channels < 1 or pixels % channels:
            raise ValueError(f"{channels} channels do not divide an image of {pixels} bytes")
        self._pixels = pixels
        self._channels = channels
        self._table_in_logic = table_in_logic
        super().__init__({
            "pixels": In(stream.Signature(PIXEL)),
            "start": In(1),
            "open": In(1),
            "addr": Out(range(pixels)),
            "code": Out(CODE),
            "we": Out(1),
            "last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.quantize = quantize = PixelQuantizer(in_logic=self._table_in_logic)
        taken = Signal(range(self._pixels + 1))
        accepting = self.open & (taken != self._pixels)
        m.d.comb += [
            quantize.i.payload.eq(self.pixels.payload),
            quantize.i.valid.eq(self.pixels.valid & accepting),
            self.pixels.ready.eq(quantize.i.ready & accepting),
            quantize.o.ready.eq(1),
            self.code.eq(quantize.o.payload),
            self.we.eq(quantize.o.valid),
            self.last.eq(quantize.o.valid & (self.addr == self._pixels - 1)),
        ]
        # ``start`` comes between images, never with a pixel or a code.
        with m.If(self.start):
            m.d.sync += [taken.eq(0), self.addr.eq(0)]
        with m.If(self.pixels.valid & self.pixels.ready):
            m.d.sync += taken.eq(taken + 1)
        if self._channels == 1:
            with m.If(quantize.o.valid):
                m.d.sync += self.addr.eq(self.addr + 1)
        else:
            self._channel_major(m, quantize.o.valid)
        return m

    def _channel_major(self, m, write):
        """The address of each code: the next channel's plane, and after the last channel the
        next pixel in the first plane."""
        channels, plane = self._channels, self._pixels // self._channels
        channel = Signal(range(channels))
        with m.If(self.start):
            m.d.sync += channel.eq(0)
        with m.If(write):
            with m.If(channel == channels - 1):
                m.d.sync += [channel.eq(0), self.addr.eq(self.addr - (channels - 1) * plane + 1)]
            with m.Else():
                m.d.sync += [channel.eq(channel + 1), self.addr.eq(self.addr + plane)]


# --------------------------------------------------------------------------------------------
# Sequencer


def _table(values, shape, index):
    """A per-layer constant, selected by the layer counter.

    A chain of ``Mux`` rather than an ``Array``: Amaranth writes it as a continuous assignment,
    while an ``Array`` becomes an ``always @*`` block, which Icarus (in SystemVerilog mode) does
    not evaluate until ``index`` first changes, so layer 0 would see X.
    """
    result = Const(values[-1], shape)
    for k in range(len(values) - 2, -1, -1):
        result = Mux(index == k, Const(values[k], shape), result)
    return result


def _signed_shape(values) -> signed:
    return signed(max(max(abs(v) for v in values).bit_length() + 1, 2))


class _Loops:
    """Nested counters (innermost first) with per-layer counts, moving a pointer by per-layer deltas."""

    def __init__(self, name: str, per_layer, ptr_width: int):
        self._per_layer = per_layer  # [layer][level] = (count, delta)
        levels = len(per_layer[0])
        self.counters = [Signal(range(max(2, max(p[i][0] for p in per_layer))), name=f"{name}_{i}")
                         for i in range(levels)]
        self.ptr = Signal(ptr_width, name=f"{name}_ptr")
        self.at_max: list = []
        self.deltas: list = []

    def wire(self, layer):
        """Compare with and step by the constants of ``layer`` (a layer-index signal)."""
        for i, counter in enumerate(self.counters):
            self.at_max.append(counter == _table([p[i][0] - 1 for p in self._per_layer], counter.shape(), layer))
            deltas = [p[i][1] for p in self._per_layer]
            self.deltas.append(_table(deltas, _signed_shape(deltas), layer))

    @property
    def all_max(self):
        result = self.at_max[0]
        for flag in self.at_max[1:]:
            result = result & flag
        return result

    def advance(self, m):
        """Step the innermost level that is not at its last value; the inner ones wrap to 0."""
        for i, counter in enumerate(self.counters):
            with m.If(~self.at_max[i]) if i == 0 else m.Elif(~self.at_max[i]):
                m.d.sync += [counter.eq(counter + 1), self.ptr.eq(self.ptr + self.deltas[i])]
                m.d.sync += [inner.eq(0) for inner in self.counters[:i]]

    def restart(self, m, ptr):
        m.d.sync += [counter.eq(0) for counter in self.counters]
        m.d.sync += self.ptr.eq(ptr)


class Sequencer(wiring.Component):
    """The state machine and loop nest: which addresses and which term, every array cycle.

    ``IDLE`` until ``start``; ``RECEIVE`` until the image's last code is written
    (``image_done``); then for each layer ``RUN`` (the array cycles: per group of ``lanes``
    outputs, per output position in pooling order, the bias and then every tap) and ``DRAIN``
    (until the pipeline after the sequencer is empty, then the next layer; after the last layer
    until the last logit is taken, then ``IDLE``).

    In ``RUN`` the outputs name one array cycle: ``act_addr`` (the position's pointer plus the
    tap's; don't care in a bias cycle), ``weight_addr`` (the group's words, read again for every
    position) and ``term``. Pointers step by the per-layer (count, delta) loops of the plans.

    Parameters
    ----------
    plans : sequence of LayerPlan
        The layers, as ``compact.plan_layers`` gives them.
    lanes : int
    map_depth : int
        Words of the feature-map RAM.
    bias_words : bool
        A group's words start with its bias word (the SPRAM image); False: only tap words (the
        biases are elsewhere, at ``bias_addr``), and ``weight_addr`` stays on the first tap
        word during the bias cycle.

    Attributes
    ----------
    start : In(1)
        Taken in ``IDLE``.
    image_done : In(1)
        The image's last code is written.
    pipeline_busy : In(1)
        Terms issued before are still on their way through the array or the finisher.
    last_logit : In(1)
        The argmax takes the last logit.
    busy, receiving, issuing : Out(1)
        Not ``IDLE``; ``RECEIVE``; ``RUN``.
    layer : Out(range(len(plans)))
    last_layer : Out(1)
    act_addr : Out(address_width(map_depth))
    weight_addr : Out(WEIGHT_ADDRESS_BITS)
        From the layer's ``weight_base``: the group's bias word, then a word per tap.
    bias_addr : Out(range(groups))
        The group's number in the image (every layer's groups in order): a bias table's address.
    term : Out(term_layout(...))
        Meaningful while ``issuing``; ``term.complete`` is only high then.
    out_stride : Out(address_width(map_depth))
        The layer's distance between the outputs of two neighbouring lanes.
    """

    def __init__(self, plans, lanes: int, map_depth: int, bias_words: bool = True):
        self.plans = tuple(plans)
        self.bias_words = bias_words
        if not self.plans:
            raise ValueError("a network has at least one layer")
        self.lanes = lanes
        self.address_bits = width = address_width(map_depth)
        super().__init__({
            "start": In(1),
            "image_done": In(1),
            "pipeline_busy": In(1),
            "last_logit": In(1),
            "busy": Out(1),
            "receiving": Out(1),
            "issuing": Out(1),
            "layer": Out(range(len(self.plans))),
            "last_layer": Out(1),
            "act_addr": Out(width),
            "weight_addr": Out(WEIGHT_ADDRESS_BITS),
            "bias_addr": Out(range(max(2, sum(p.groups for p in self.plans)))),
            "term": Out(term_layout(width, lanes)),
            "out_stride": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        plans, lanes, width = self.plans, self.lanes, self.address_bits
        layer = self.layer

        taps = _Loops("tap", [p.tap_loops for p in plans], width)
        positions = _Loops("pos", [p.position_loops for p in plans], width)
        taps.wire(layer)
        positions.wire(layer)
        group = Signal(range(max(p.groups for p in plans)))
        last_group = group == _table([p.groups - 1 for p in plans], group.shape(), layer)
        bias_term = Signal()  # the term being issued is the bias
        w_ptr = Signal(WEIGHT_ADDRESS_BITS)  # weight word being issued
        w_group = Signal(WEIGHT_ADDRESS_BITS)  # the bias word of the current group
        b_ptr = Signal.like(self.bias_addr)  # the group's number in the image
        out_ptr = Signal(width)  # where lane 0's pooled output of this position goes
        group_step = _table([1 + (lanes - 1) * p.out_stride for p in plans], unsigned(width), layer)
        lanes_last_group = _table([p.last_lanes for p in plans], range(lanes + 1), layer)

        def act_base(index):
            return _table([p.act_base for p in plans], unsigned(width), index)

        def setup(m, index):
            """Load the loops for layer ``index`` (a signal or int) and start issuing."""
            base = _table([p.weight_base for p in plans], unsigned(WEIGHT_ADDRESS_BITS), index)
            m.d.sync += [layer.eq(index), group.eq(0), bias_term.eq(1), w_ptr.eq(base), w_group.eq(base)]
            taps.restart(m, 0)
            positions.restart(m, act_base(index))
            m.d.sync += out_ptr.eq(_table([p.out_base for p in plans], unsigned(width), index))
            m.next = "RUN"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "RECEIVE"
            with m.State("RECEIVE"):
                with m.If(self.image_done):
                    m.d.sync += b_ptr.eq(0)
                    setup(m, 0)
            with m.State("RUN"):
                with m.If(bias_term):
                    m.d.sync += bias_term.eq(0)
                    if self.bias_words:
                        m.d.sync += w_ptr.eq(w_ptr + 1)
                with m.Elif(~taps.all_max):
                    taps.advance(m)
                    m.d.sync += w_ptr.eq(w_ptr + 1)
                with m.Else():  # the last tap: this accumulation is complete
                    taps.restart(m, 0)
                    m.d.sync += bias_term.eq(1)
                    window_end = positions.at_max[0] & positions.at_max[1]
                    with m.If(window_end):
                        m.d.sync += out_ptr.eq(out_ptr + Mux(positions.all_max, group_step, 1))
                    with m.If(~positions.all_max):
                        positions.advance(m)
                        m.d.sync += w_ptr.eq(w_group)  # the same group's weights again
                    with m.Else():  # the group is complete; its successor's words follow
                        positions.restart(m, act_base(layer))
                        m.d.sync += [w_ptr.eq(w_ptr + 1), w_group.eq(w_ptr + 1), group.eq(group + 1),
                                     b_ptr.eq(b_ptr + 1)]
                        with m.If(last_group):
                            m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(self.last_logit):
                    m.next = "IDLE"
                with m.Elif(~self.pipeline_busy & ~self.last_layer):
                    setup(m, layer + 1)

        # Decoded outside the FSM: continuous assignments (see the module docstring).
        position = self.term.position
        m.d.comb += [
            self.busy.eq(~fsm.ongoing("IDLE")),
            self.receiving.eq(fsm.ongoing("RECEIVE")),
            self.issuing.eq(fsm.ongoing("RUN")),
            self.last_layer.eq(layer == len(plans) - 1),
            self.act_addr.eq(positions.ptr + taps.ptr),
            self.weight_addr.eq(w_ptr),
            self.bias_addr.eq(b_ptr),
            self.out_stride.eq(_table([p.out_stride for p in plans], unsigned(width), layer)),
            self.term.bias.eq(bias_term),
            self.term.complete.eq(self.issuing & ~bias_term & taps.all_max),
            position.window_start.eq((positions.counters[0] == 0) & (positions.counters[1] == 0)),
            position.window_end.eq(positions.at_max[0] & positions.at_max[1]),
            position.addr.eq(out_ptr),
            position.lanes.eq(Mux(last_group, lanes_last_group, lanes)),
        ]
        return m


# --------------------------------------------------------------------------------------------
# MAC array


class MACArray(wiring.Component):
    """``lanes`` multiply-accumulators sharing one activation; lane ``l`` takes code ``l`` of the
    weight word. The one place that knows how a lane multiplies.

    Each cycle, every lane either loads ``b << s`` (``bias``: the activation is replaced by
    ``2**s``, 1.0 in the layer's input format, ``s = LayerArithmetic.bias_shift``: 64 for Q2.6)
    or adds ``activation * w``. The accumulators show a cycle's term ``latency`` cycles later.

    Parameters
    ----------
    lanes : int
    taps : int
        The most taps an accumulation has (it sizes the accumulators).
    bias_shifts : tuple of int
        Each layer's ``bias_shift``, by ``layer``.

    Attributes
    ----------
    activation : In(signed(8))
    weights : In(data.ArrayLayout(signed(8), lanes))
        Lane 0 in the low bits: a weight-store word.
    bias : In(1)
    layer : In(range(len(bias_shifts)))
        The layer the terms belong to (unused when every layer has the same shift).
    acc : Out(data.ArrayLayout(acc_shape, lanes))
    acc_shape : Shape
    latency : int
    """

    # The product is registered before it is added: on the iCE40 that register is the SB_MAC16's
    # own pipeline register, which cuts the memory -> multiplier -> accumulator path in two
    # (without it that path limits the design to ~27 MHz).
    latency = 2

    def __init__(self, lanes: int, taps: int, bias_shifts: tuple[int, ...] = (arith.FRAC_BITS,)):
        if lanes < 1 or taps < 1:
            raise ValueError(f"an array has at least one lane and one tap, not {lanes} and {taps}")
        if not bias_shifts or not all(0 <= s <= arith.MAX_ACTIVATION_FRAC for s in bias_shifts):
            raise ValueError(f"bias shifts are 0..{arith.MAX_ACTIVATION_FRAC}, one a layer, not {bias_shifts!r}")
        self.lanes = lanes
        self.bias_shifts = tuple(bias_shifts)
        self.acc_shape = accumulator_shape(taps)
        super().__init__({
            "activation": In(CODE),
            "weights": In(data.ArrayLayout(CODE, lanes)),
            "bias": In(1),
            "layer": In(range(len(self.bias_shifts))),
            "acc": Out(data.ArrayLayout(self.acc_shape, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        x = Signal(CODE)
        one = _table([1 << s for s in self.bias_shifts], CODE, self.layer)  # 1.0 in the layer's input format
        m.d.comb += x.eq(Mux(self.bias, one, self.activation))
        bias = Signal()  # the bias flag of the products now in the product registers
        m.d.sync += bias.eq(self.bias)
        for lane in range(self.lanes):
            # One register per lane (not a slice of one wide register) keeps each
            # multiply-accumulate a pattern synthesis maps to one DSP block.
            product = Signal(signed(2 * arith.WIDTH), name=f"product{lane}")
            acc = Signal(self.acc_shape, name=f"acc{lane}")
            m.d.sync += product.eq(x * self.weights[lane])
            with m.If(bias):
                m.d.sync += acc.eq(product)
            with m.Else():
                m.d.sync += acc.eq(acc + product)
            m.d.comb += self.acc[lane].eq(acc)
        return m


# --------------------------------------------------------------------------------------------
# Finisher


class Finisher(wiring.Component):
    """From accumulators to codes in the feature-map RAM, or to logits.

    On ``snapshot`` it copies the accumulators and ``position``; in each of the next ``lanes``
    cycles it takes one lane, lane 0 first: ``relu(requantize(acc))``, the maximum with the
    lane's running maximum (restarted by ``window_start``), and at ``window_end`` writes it to
    ``position.addr + lane * stride``. In the last layer (``last_layer``) the raw accumulator is
    a logit instead. Lanes from ``position.lanes`` on take their cycle but produce nothing. A new
    snapshot may come at the earliest ``lanes`` cycles after the one before.

    Parameters
    ----------
    lanes : int
    acc_shape : Shape
    address_bits : int
        Of the feature-map RAM.
    arithmetic : arith.Arithmetic or tuple of arith.LayerArithmetic
        Every hidden layer's requantizer, by ``layer`` (an ``Arithmetic``: Q2.6 in every layer).

    Attributes
    ----------
    acc : In(data.ArrayLayout(acc_shape, lanes))
    layer : In(range(...))
        The layer of the accumulators (unused when every layer requantizes alike).
    snapshot : In(1)
    position : In(position_layout(address_bits, lanes))
    stride : In(address_bits)
    last_layer : In(1)
    busy : Out(1)
        Lanes remain.
    addr, data, en : Out
        A feature-map write.
    logit : Out(stream.Signature(acc_shape, always_ready=True))
        Its consumer takes every logit.
    """

    def __init__(self, lanes: int, acc_shape, address_bits: int, arithmetic):
        self.requantizers = ((arith.as_layer(arithmetic),) if isinstance(arithmetic, arith.Arithmetic)
                             else tuple(arith.as_layer(a) for a in arithmetic))
        if not self.requantizers:
            raise ValueError("a finisher has at least one layer's requantizer")
        self.lanes = lanes
        self.acc_shape = acc_shape
        super().__init__({
            "acc": In(data.ArrayLayout(acc_shape, lanes)),
            "layer": In(range(len(self.requantizers) + 1)),
            "snapshot": In(1),
            "position": In(position_layout(address_bits, lanes)),
            "stride": In(address_bits),
            "last_layer": In(1),
            "busy": Out(1),
            "addr": Out(address_bits),
            "data": Out(CODE),
            "en": Out(1),
            "logit": Out(stream.Signature(acc_shape, always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        snapshot = [Signal(self.acc_shape, name=f"snap{lane}") for lane in range(lanes)]
        pooled = [Signal(CODE, name=f"pool{lane}") for lane in range(lanes)]
        lane = Signal(range(lanes + 1), init=lanes)  # lanes: idle
        first, write = Signal(), Signal()
        addr = Signal(len(self.addr))
        valid_lanes = Signal(range(lanes + 1))
        finishing = Signal()
        m.d.comb += finishing.eq(lane != lanes)
        with m.If(self.snapshot):
            m.d.sync += [s.eq(self.acc[k]) for k, s in enumerate(snapshot)]
            m.d.sync += [lane.eq(0), first.eq(self.position.window_start), write.eq(self.position.window_end),
                         addr.eq(self.position.addr), valid_lanes.eq(self.position.lanes)]
        with m.Elif(finishing):
            m.d.sync += [snapshot[k].eq(snapshot[k + 1]) for k in range(lanes - 1)]
            m.d.sync += [lane.eq(lane + 1), addr.eq(addr + self.stride)]

        head = snapshot[0]
        code = Signal(CODE)
        best = Signal(CODE)
        # One requantizer per distinct layer arithmetic (one for Q2.6 everywhere), chosen by layer
        # with a chain of Mux, which Icarus evaluates from time 0 (see ``_table``).
        distinct = list(dict.fromkeys(self.requantizers))
        chosen = relu(requantize(head, distinct[-1]), distinct[-1].output.stored_bits)
        for layer in distinct[-2::-1]:
            indices = [i for i, a in enumerate(self.requantizers) if a == layer]
            chosen = Mux(Cat(*(self.layer == i for i in indices)).any(),
                         relu(requantize(head, layer), layer.output.stored_bits), chosen)
        m.d.comb += [
            code.eq(chosen),
            best.eq(Mux(first | (code > pooled[0]), code, pooled[0])),
        ]
        with m.If(finishing):
            m.d.sync += [pooled[k].eq(pooled[k + 1]) for k in range(lanes - 1)]
            m.d.sync += pooled[lanes - 1].eq(best)
        valid_lane = finishing & (lane < valid_lanes)
        m.d.comb += [
            self.busy.eq(finishing),
            self.addr.eq(addr),
            self.data.eq(best),
            self.en.eq(valid_lane & write & ~self.last_layer),
            self.logit.valid.eq(valid_lane & self.last_layer),
            self.logit.payload.eq(head),
        ]
        return m


# --------------------------------------------------------------------------------------------
# Weight loading


class WeightStoreLoader(wiring.Component):
    """The weight image into a ``WeightStore``: byte ``lanes * a + l`` is lane ``l`` of word ``a``.

    Bytes are taken while ``enable``; a byte offered with a ``restart`` pulse is dropped, and the
    next one is byte 0; bytes past the last word are dropped.

    Parameters
    ----------
    lanes : int
    words : int
        Words in the image.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(8)))
    restart, enable : In(1)
    addr, lane, data, we : Out
        A write to the store (``addr`` is the word being filled, also when ``we`` is low).
    """

    def __init__(self, lanes: int, words: int):
        if lanes < 1 or words < 1:
            raise ValueError(f"a weight store has at least one lane and one word, not {lanes} and {words}")
        self.lanes, self.words = lanes, words
        super().__init__({
            "i": In(stream.Signature(unsigned(8))),
            "restart": In(1),
            "enable": In(1),
            "addr": Out(range(words + 1)),
            "lane": Out(range(lanes)),
            "data": Out(8),
            "we": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        take = self.i.valid & self.i.ready & ~self.restart & (self.addr != self.words)
        m.d.comb += [self.i.ready.eq(self.enable), self.data.eq(self.i.payload), self.we.eq(take)]
        with m.If(self.restart):
            m.d.sync += [self.lane.eq(0), self.addr.eq(0)]
        with m.Elif(take):
            with m.If(self.lane == self.lanes - 1):
                m.d.sync += [self.lane.eq(0), self.addr.eq(self.addr + 1)]
            with m.Else():
                m.d.sync += self.lane.eq(self.lane + 1)
        return m
