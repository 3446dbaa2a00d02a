"""A compact LeNet-family accelerator for small FPGAs (the iCE40 UP5K): one array of a few multipliers runs every
layer in turn, weights in single-port RAM loaded at run time, feature maps in one block RAM.

    pixels -> PixelQuantizer -> feature maps (BRAM) -> MAC array (lanes x 8x8) -> finisher -+
                                      ^      weights (SPRAM) --^                           |
                                      +--- requantize, ReLU, max-pool, write -------------+
                                                                  fc3: logits -> Argmax

The array has ``lanes`` multipliers, one per output channel (conv) or neuron (linear): the lanes
share one activation from the feature-map RAM and each takes its own weight from one SPRAM word
(``lanes`` codes). A layer runs as groups of ``lanes`` outputs; for every output position of a
group the array spends one cycle on the bias and one per tap:

* the bias cycle multiplies the bias codes by the constant 64 (1.0 in Q2.6), which is exactly
  ``b << 6``, and loads the accumulators with it;
* each tap cycle adds ``x * w`` (conv taps in (input channel, kernel row, kernel column) order,
  linear inputs in the golden flatten order).

Conv positions run in pooling order (the 2x2 positions of one pooled output one after the
other), so the finisher keeps a running maximum per lane and writes the pooled code after the
fourth. The finisher takes a snapshot of the accumulators when a position is complete and works
through the lanes one a cycle (requantize, ReLU, max, write) while the array already runs the
next position; a position takes at least 26 cycles, a finisher pass ``lanes``.

Feature maps live in one RAM as two ping-pong regions (the image, conv2's and fc2's outputs in
region 0; conv1's and fc1's in region 1). A conv output channel ``c`` at pooled position ``q``
goes to ``c * size**2 + q``: the (channel, row, column) flatten fc1 reads.

The weight image
----------------
The weights are not in the bitstream (SPRAM has no initial contents); they arrive through the
``weights`` byte stream (``weight_image``). The image is a sequence of *words* of ``lanes``
bytes (lane 0 first), each byte an int8 code; word ``a`` goes to SPRAM address ``a``. For each
layer in network order and each group ``g`` of ``lanes`` outputs (output ``g * lanes + l`` in
lane ``l``; lanes past the layer's last output hold 0) there is one bias word, then one word per
tap (conv: input channel, kernel row, kernel column; linear: input feature). The array reads
the words of a group in order and reads them again for each output position.

Cycle model
-----------
Everything is fixed by the geometry, so ``cycle_model`` predicts the cycles of an image (start
to done, as ``LeNetAccelerator.cycles`` counts them) exactly, if the pixels arrive one a cycle
from the cycle after ``start``: ``pixels + 2`` to take the image (786 for 28x28), then per layer ``groups * positions *
(1 + taps)`` array cycles, plus ``lanes + 3`` to drain the pipeline between layers, and for the
last layer 2 + the lanes of its last group until the last logit reaches the argmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from ..model import arith
from ..model.errors import InputError
from ..model.network import ConvLayer, LinearLayer, Network
from ..model.weights import WeightSet
from .accelerator import CYCLE_COUNTER_WIDTH, Accelerator
from .datapath import CODE, accumulator_shape, relu, requantize
from .lenet import Argmax
from .pixels import PixelQuantizer
from .spram import SPRAM_BLOCKS, SPRAM_DEPTH, WeightStore

MAX_LANES = 2 * SPRAM_BLOCKS  # one 8-bit code per lane from each half of each SPRAM word
# Cycles from start to the first array cycle beyond the pixels: one in the quantizer, one to set up.
INPUT_OVERHEAD = 2
TAP_LEVELS = 3  # kernel column, kernel row, input channel (a linear layer uses the first only)
POSITION_LEVELS = 4  # pool column, pool row, pooled column, pooled row


@dataclass(frozen=True)
class CompactConfig:
    """Generator parameters of the compact accelerator.

    ``lanes`` is the number of multipliers (each a DSP block on the iCE40 UP5K, which has 8);
    it is also the number of codes in a weight word, so at most 8 (four 16-bit SPRAMs).
    """

    arithmetic: arith.Arithmetic = arith.Arithmetic()
    lanes: int = MAX_LANES

    design = "compact"

    def __post_init__(self):
        if not isinstance(self.arithmetic, arith.Arithmetic):
            raise TypeError(f"arithmetic must be an arith.Arithmetic, not {self.arithmetic!r}")
        if isinstance(self.lanes, bool) or not isinstance(self.lanes, int) or not 1 <= self.lanes <= MAX_LANES:
            raise ValueError(f"lanes must be an integer 1..{MAX_LANES}, not {self.lanes!r}")

    def check(self, network: Network) -> "CompactConfig":
        """Raise InputError, saying why, if this configuration cannot be built for ``network``."""
        try:
            plan_layers(network, self.lanes)
        except ValueError as e:
            raise InputError(f"the compact design with {self.lanes} lanes cannot run {network.spec}: {e}") from None
        return self

    def build(self, weights: WeightSet) -> "CompactAccelerator":
        return CompactAccelerator(weights, self)


def _nest(levels) -> tuple[tuple[int, int], ...]:
    """(count, stride) loop levels, innermost first -> (count, delta): the pointer step when that
    level advances and every inner level wraps back to 0."""
    out, span = [], 0
    for count, stride in levels:
        out.append((count, stride - span))
        span += (count - 1) * stride
    return tuple(out)


def _pad(levels, n: int) -> tuple[tuple[int, int], ...]:
    return tuple(levels) + ((1, 0),) * (n - len(levels))


@dataclass(frozen=True)
class LayerPlan:
    """How one layer runs on the array: loop counts, pointer steps and where its data live."""

    name: str
    macs: int
    last: bool  # keeps the raw accumulators (logits) instead of writing codes
    outputs: int  # output channels or neurons
    groups: int  # passes of ``lanes`` outputs
    last_lanes: int  # outputs in the last group
    positions: int  # accumulations per group (conv output positions, pooling order)
    terms: int  # array cycles per accumulation: the bias and the taps
    weight_base: int  # first word in the weight store
    act_base: int  # input feature map in the feature-map RAM
    out_base: int  # output feature map (unused by the last layer)
    out_stride: int  # distance between two output channels (pooled map size; 1 for linear)
    tap_loops: tuple[tuple[int, int], ...]  # (count, delta), innermost first
    position_loops: tuple[tuple[int, int], ...]

    @property
    def words(self) -> int:
        return self.groups * self.terms

    @property
    def array_cycles(self) -> int:
        return self.groups * self.positions * self.terms


def map_size(layer) -> int:
    """Codes in a layer's output feature map (after pooling)."""
    return layer.out_features


def plan_layers(network: Network, lanes: int) -> tuple[tuple[LayerPlan, ...], int]:
    """Each layer's plan, and the feature-map RAM depth. Raises ValueError if the weight words
    do not fit the SPRAMs or a layer is too short for the finisher."""
    layers = network.layers
    sizes = [network.pixels] + [map_size(layer) for layer in layers[:-1]]
    region = [max(sizes[0::2]), max(sizes[1::2], default=0)]
    bases = [0, region[0]]
    plans, weight_base = [], 0
    for i, layer in enumerate(layers):
        groups = math.ceil(layer.weight_shape[0] / lanes)
        if isinstance(layer, ConvLayer):
            k, w, pool, p = layer.kernel, layer.in_size, layer.pool, layer.out_size
            taps = layer.in_channels * k * k
            tap_loops = _nest([(k, 1), (k, w), (layer.in_channels, w * w)])
            position_loops = _nest([(pool, 1), (pool, w), (p, pool), (p, pool * w)])
            positions, stride = (p * pool) ** 2, p * p
            if sizes[i] != layer.in_channels * w * w:
                raise ValueError(f"{layer.name} reads {layer.in_channels}x{w}x{w}, the layer before gives {sizes[i]}")
        elif isinstance(layer, LinearLayer):
            taps = layer.in_features
            tap_loops, position_loops, positions, stride = _nest([(taps, 1)]), _nest([]), 1, 1
            if sizes[i] != taps:
                raise ValueError(f"{layer.name} reads {taps} features, the layer before gives {sizes[i]}")
        else:
            raise TypeError(f"unknown layer type {type(layer).__name__}")
        outputs = layer.weight_shape[0]
        plan = LayerPlan(
            name=layer.name, macs=layer.macs, last=i == len(layers) - 1, outputs=outputs, groups=groups,
            last_lanes=outputs - (groups - 1) * lanes, positions=positions, terms=1 + taps,
            weight_base=weight_base, act_base=bases[i % 2], out_base=bases[(i + 1) % 2], out_stride=stride,
            tap_loops=_pad(tap_loops, TAP_LEVELS), position_loops=_pad(position_loops, POSITION_LEVELS),
        )
        if plan.terms <= lanes + 1:
            raise ValueError(f"{layer.name}: {plan.terms} cycles per output are fewer than the finisher's {lanes + 2}")
        plans.append(plan)
        weight_base += plan.words
    if weight_base > SPRAM_DEPTH:
        raise ValueError(f"{lanes} lanes need {weight_base:,} weight words; the SPRAMs hold {SPRAM_DEPTH:,} "
                         f"(use more lanes)")
    if not (isinstance(layers[-1], LinearLayer) and layers[-1].last):
        raise ValueError("the last layer must be a linear layer with last=True (it gives the logits)")
    return tuple(plans), sum(region)


def weight_words(params: dict[str, np.ndarray], plans, lanes: int) -> list[list[int]]:
    """The weight image as words: per word, ``lanes`` int8 codes (see the module docstring)."""
    words = []
    for plan in plans:
        w = np.asarray(params[f"{plan.name}.weight"], np.int64).reshape(plan.outputs, -1)
        b = np.asarray(params[f"{plan.name}.bias"], np.int64)
        assert w.shape[1] == plan.terms - 1
        for g in range(plan.groups):
            block = np.zeros((lanes, plan.terms), np.int64)
            rows = slice(g * lanes, min((g + 1) * lanes, plan.outputs))
            n = rows.stop - rows.start
            block[:n, 0] = b[rows]
            block[:n, 1:] = w[rows]
            words.extend(block.T.tolist())
    return words


def cycle_model(network: Network, plans, lanes: int) -> dict[str, int]:
    """Cycles of one image per phase (``input`` and each layer) under the module's cycle model;
    their sum is the ``cycles`` the accelerator reports."""
    model = {"input": network.pixels + INPUT_OVERHEAD}
    for plan in plans:
        # Between layers the pipeline drains (2 stages, ``lanes`` finisher cycles) and the next
        # layer is set up; after the last, the last logit reaches the argmax.
        tail = 2 + plan.last_lanes if plan.last else lanes + 3
        model[plan.name] = plan.array_cycles + tail
    return model


def _image_bytes(words) -> bytes:
    return bytes(code & 0xFF for word in words for code in word)


def _packed_words(words) -> list[int]:
    return [sum((code & 0xFF) << (8 * lane) for lane, code in enumerate(word)) for word in words]


def _report(network: Network, plans, lanes: int, map_depth: int) -> list[dict]:
    cycles = cycle_model(network, plans, lanes)
    rows = [{"layer": "input", "macs": 0, "multipliers": 0, "memory_bits": 256 * arith.WIDTH,
             "memory": "bram", "cycles": cycles["input"]}]
    for plan in plans:
        rows.append({"layer": plan.name, "macs": plan.macs, "multipliers": lanes,
                     "memory_bits": plan.words * lanes * arith.WIDTH, "memory": "spram",
                     "cycles": cycles[plan.name]})
    rows.append({"layer": "feature maps", "macs": 0, "multipliers": 0,
                 "memory_bits": map_depth * arith.WIDTH, "memory": "bram", "cycles": 0})
    return rows


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


class CompactAccelerator(Accelerator):
    """A LeNet-family network on one shared array of ``config.lanes`` multipliers; weights loaded
    at run time.

    The ``Accelerator`` ports. It holds one image at a time:
    ``start`` is taken when the accelerator is idle, and ``receiving`` (like ``busy``) stays high
    from then until ``done``, so a start before that is ignored. The ``weights`` stream is ready
    while no image is in flight; a byte offered in the cycle of a ``weights_restart`` pulse is
    dropped, and bytes past the end of the image are dropped.

    Parameters
    ----------
    weights : WeightSet
        The integer network; only ``weight_image`` depends on it (the hardware does not).
    config : CompactConfig

    Attributes
    ----------
    multipliers : int
        Multipliers in the design (the lanes of the array).
    weights_in_bitstream : bool
        False: the weights must be sent through ``weights`` after configuration.
    words : int
        Weight words (``lanes`` bytes each) in the weight store.
    layer : Signal
        The layer being worked on.
    phases, phase
        One phase per layer; ``phase`` is the layer's number + 1 while the array issues for it.
    """

    weights_in_bitstream = False
    design = "compact"

    def __init__(self, weights: WeightSet, config: CompactConfig = CompactConfig()):
        if not isinstance(config, CompactConfig):
            raise TypeError(f"config must be a CompactConfig, not {type(config).__name__}")
        super().__init__(weights, config)
        self.lanes = config.lanes
        self.plans, self.map_depth = plan_layers(self.network, self.lanes)
        self._words = weight_words(weights.params, self.plans, self.lanes)
        self.words = len(self._words)
        self.acc_shape = accumulator_shape(max(plan.terms - 1 for plan in self.plans))
        self.layer = Signal(range(len(self.plans)))
        self.phases = len(self.plans)
        self.phase = Signal(range(self.phases + 1))  # layer + 1 while the array issues, else 0

    def weight_image(self) -> bytes:
        """The bytes to send through ``weights`` (see the module docstring for the order)."""
        return _image_bytes(self._words)

    def weight_words(self) -> list[int]:
        """The weight image as integers, one per word, lane 0 in the low byte (a ROM's init)."""
        return _packed_words(self._words)

    @property
    def multipliers(self) -> int:
        """The array's lanes: every layer runs on the same multipliers."""
        return self.lanes

    def cycle_model(self) -> dict[str, int]:
        return cycle_model(self.network, self.plans, self.lanes)

    def layer_report(self) -> list[dict]:
        """Per phase: MACs, the multipliers it runs on (the same shared array for every layer),
        memory bits (``memory`` says which kind: weights in SPRAM, feature maps and the pixel
        table in block RAM) and cycles from the cycle model."""
        return _report(self.network, self.plans, self.lanes, self.map_depth)

    def elaborate(self, platform):
        m = Module()
        plans, lanes = self.plans, self.lanes
        n_layers = len(plans)
        a = self._config.arithmetic

        m.submodules.quantize = quantize = PixelQuantizer()
        m.submodules.store = store = WeightStore(lanes, self.words)
        m.submodules.argmax = argmax = Argmax(self.network.classes, self.logit_shape)
        m.submodules.maps = maps = Memory(shape=CODE, depth=self.map_depth, init=[])
        map_write, map_read = maps.write_port(), maps.read_port()
        map_addr_width = max(1, (self.map_depth - 1).bit_length())

        layer = self.layer
        busy = Signal()
        last_layer = layer == n_layers - 1

        # ---- loops of the current layer ----
        taps = _Loops("tap", [p.tap_loops for p in plans], map_addr_width)
        positions = _Loops("pos", [p.position_loops for p in plans], map_addr_width)
        taps.wire(layer)
        positions.wire(layer)
        group = Signal(range(max(p.groups for p in plans)))
        last_group = group == _table([p.groups - 1 for p in plans], group.shape(), layer)
        bias_term = Signal()  # the term being issued is the bias
        w_ptr = Signal(14)  # weight word being issued
        w_group = Signal(14)  # the bias word of the current group
        out_ptr = Signal(map_addr_width)  # where lane 0's pooled output of this position goes
        out_stride = _table([p.out_stride for p in plans], unsigned(map_addr_width), layer)
        group_step = _table([1 + (lanes - 1) * p.out_stride for p in plans], unsigned(map_addr_width), layer)
        lanes_last_group = _table([p.last_lanes for p in plans], range(lanes + 1), layer)

        # ---- pipeline registers: stage M (memories answer, array adds), stage F (snapshot) ----
        bias_m = Signal()
        event_m, event_f = Signal(), Signal()  # the accumulation completes
        first_m, first_f = Signal(), Signal()  # first position of a pooling window
        write_m, write_f = Signal(), Signal()  # last position of a pooling window
        out_m, out_f = Signal(map_addr_width), Signal(map_addr_width)
        lanes_m, lanes_f = Signal(range(lanes + 1)), Signal(range(lanes + 1))

        # ---- control ----
        pixels = self.network.pixels
        pixels_in = Signal(range(pixels + 1))  # pixels taken
        pixels_out = Signal(range(pixels))  # codes written
        elapsed = Signal(CYCLE_COUNTER_WIDTH)
        finishing = Signal()  # the finisher works through its lanes
        pipe_busy = event_m | event_f | finishing
        issuing = Signal()
        in_receive = Signal()
        take_start = self.start & ~busy

        def setup(m, index):
            """Load the loops for layer ``index`` (a signal or int) and start issuing."""
            m.d.sync += [layer.eq(index), group.eq(0), bias_term.eq(1)]
            taps.restart(m, 0)
            positions.restart(m, _table([p.act_base for p in plans], unsigned(map_addr_width), index))
            m.d.sync += out_ptr.eq(_table([p.out_base for p in plans], unsigned(map_addr_width), index))
            m.next = "RUN"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(take_start):
                    m.d.sync += [pixels_in.eq(0), pixels_out.eq(0)]
                    m.next = "RECEIVE"
            with m.State("RECEIVE"):
                with m.If(quantize.o.valid):
                    m.d.sync += pixels_out.eq(pixels_out + 1)
                    with m.If(pixels_out == pixels - 1):
                        m.d.sync += [w_ptr.eq(0), w_group.eq(0)]
                        setup(m, 0)
            with m.State("RUN"):
                with m.If(bias_term):
                    m.d.sync += [bias_term.eq(0), w_ptr.eq(w_ptr + 1)]
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
                        positions.restart(m, _table([p.act_base for p in plans], unsigned(map_addr_width), layer))
                        m.d.sync += [w_ptr.eq(w_ptr + 1), w_group.eq(w_ptr + 1), group.eq(group + 1)]
                        with m.If(last_group):
                            m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(argmax.last):
                    m.next = "IDLE"
                with m.Elif(~pipe_busy & ~last_layer):
                    setup(m, layer + 1)

        # Decoded outside the FSM: continuous assignments, which Icarus evaluates at time 0
        # (``always @*`` blocks of state decodes would stay X until the state changes).
        m.d.comb += [
            busy.eq(~fsm.ongoing("IDLE")),
            in_receive.eq(fsm.ongoing("RECEIVE")),
            issuing.eq(fsm.ongoing("RUN")),
            self.busy.eq(busy),
            self.receiving.eq(busy),
            self.phase.eq(Mux(issuing, layer + 1, 0)),
            self.klass.eq(argmax.klass),
            self.logits.eq(argmax.logits),
        ]

        # ---- image input: one pixel a cycle through the quantizer into region 0 ----
        receiving_pixels = in_receive & (pixels_in != pixels)
        m.d.comb += [
            quantize.i.payload.eq(self.pixels.payload),
            quantize.i.valid.eq(self.pixels.valid & receiving_pixels),
            self.pixels.ready.eq(quantize.i.ready & receiving_pixels),
            quantize.o.ready.eq(1),
        ]
        with m.If(self.pixels.valid & self.pixels.ready):
            m.d.sync += pixels_in.eq(pixels_in + 1)

        # ---- weight loading (idle only): byte ``lane`` of word ``word`` ----
        load_lane = Signal(range(lanes))
        load_word = Signal(range(self.words + 1))
        take_byte = self.weights.valid & self.weights.ready & ~self.weights_restart
        m.d.comb += [
            self.weights.ready.eq(~busy),
            store.wdata.eq(self.weights.payload),
            store.wlane.eq(load_lane),
            store.we.eq(take_byte & (load_word != self.words)),
            store.addr.eq(Mux(busy, w_ptr, load_word)),
        ]
        with m.If(self.weights_restart):
            m.d.sync += [load_lane.eq(0), load_word.eq(0)]
        with m.Elif(take_byte & (load_word != self.words)):
            with m.If(load_lane == lanes - 1):
                m.d.sync += [load_lane.eq(0), load_word.eq(load_word + 1)]
            with m.Else():
                m.d.sync += load_lane.eq(load_lane + 1)

        # ---- issue: addresses out; the term's control follows the memories' one-cycle latency ----
        m.d.comb += [map_read.addr.eq(positions.ptr + taps.ptr), map_read.en.eq(1)]
        completes = issuing & ~bias_term & taps.all_max
        m.d.sync += [
            bias_m.eq(bias_term),
            event_m.eq(completes),
            first_m.eq((positions.counters[0] == 0) & (positions.counters[1] == 0)),
            write_m.eq(positions.at_max[0] & positions.at_max[1]),
            out_m.eq(out_ptr),
            lanes_m.eq(Mux(last_group, lanes_last_group, lanes)),
            event_f.eq(event_m), first_f.eq(first_m), write_f.eq(write_m), out_f.eq(out_m), lanes_f.eq(lanes_m),
        ]

        # ---- the MAC array: the bias cycle loads 64 * b = b << 6, each tap adds x * w ----
        x = Signal(CODE)
        m.d.comb += x.eq(Mux(bias_m, arith.SCALE, map_read.data))
        accumulators = [Signal(self.acc_shape, name=f"acc{lane}") for lane in range(lanes)]
        for lane, acc in enumerate(accumulators):
            w = store.data[8 * lane : 8 * lane + 8].as_signed()
            product = x * w
            with m.If(bias_m):
                m.d.sync += acc.eq(product)
            with m.Else():
                m.d.sync += acc.eq(acc + product)

        # ---- finisher: snapshot, then one lane a cycle ----
        snapshot = [Signal(self.acc_shape, name=f"snap{lane}") for lane in range(lanes)]
        pooled = [Signal(CODE, name=f"pool{lane}") for lane in range(lanes)]
        lane = Signal(range(lanes + 1), init=lanes)  # lanes: idle
        f_first, f_write = Signal(), Signal()
        f_addr = Signal(map_addr_width)
        f_lanes = Signal(range(lanes + 1))
        m.d.comb += finishing.eq(lane != lanes)
        with m.If(event_f):
            m.d.sync += [s.eq(acc) for s, acc in zip(snapshot, accumulators)]
            m.d.sync += [lane.eq(0), f_first.eq(first_f), f_write.eq(write_f), f_addr.eq(out_f), f_lanes.eq(lanes_f)]
        with m.Elif(finishing):
            m.d.sync += [snapshot[k].eq(snapshot[k + 1]) for k in range(lanes - 1)]
            m.d.sync += [lane.eq(lane + 1), f_addr.eq(f_addr + out_stride)]

        head = snapshot[0]
        code = Signal(CODE)
        best = Signal(CODE)
        m.d.comb += [
            code.eq(relu(requantize(head, a))),
            best.eq(Mux(f_first | (code > pooled[0]), code, pooled[0])),
        ]
        with m.If(finishing):
            m.d.sync += [pooled[k].eq(pooled[k + 1]) for k in range(lanes - 1)]
            m.d.sync += pooled[lanes - 1].eq(best)
        valid_lane = finishing & (lane < f_lanes)

        m.d.comb += [
            map_write.addr.eq(Mux(in_receive, pixels_out, f_addr)),
            map_write.data.eq(Mux(in_receive, quantize.o.payload, best)),
            map_write.en.eq(quantize.o.valid | (valid_lane & f_write & ~last_layer)),
            argmax.i.valid.eq(valid_lane & last_layer),
            argmax.i.payload.eq(head),
        ]

        # ---- done, cycles ----
        m.d.sync += self.done.eq(argmax.last)
        with m.If(take_start):
            m.d.sync += elapsed.eq(1)
        with m.Elif(busy):
            m.d.sync += elapsed.eq(elapsed + 1)
        with m.If(argmax.last):
            m.d.sync += self.cycles.eq(elapsed + 1)
        return m
