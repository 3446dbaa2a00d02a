"""A compact LeNet-family accelerator for small FPGAs (the iCE40 UP5K): one array of a few multipliers runs every
layer in turn, weights in single-port RAM loaded at run time, feature maps in one block RAM; or,
for a compressed network whose codes fit the block RAM, weights in the bitstream (see below).

    pixels -> ImageInput -> feature maps (BRAM) -> MACArray (lanes x 8x8) -> Finisher ----+
                                 ^       weights (SPRAM) --^                              |
                                 +------ requantize, ReLU, max-pool, write ---------------+
       weight image -> WeightStoreLoader --^                         last layer: logits -> Argmax
                    Sequencer: the addresses of both memories and each cycle's control

The parts (``hdl/compact_parts.py``, each a component with its own test):

* ``Sequencer``: the state machine (idle, receive the image, run a layer, drain) and the loop
  nest of the current layer; every array cycle it issues a feature-map address, a weight-word
  address and the cycle's *term* (bias or tap, the accumulation completes, pooling window,
  where the outputs go, how many lanes hold one). The term follows its operands through the
  memories (``MEMORY_LATENCY``) and the array (``MACArray.latency``) to the finisher.
* ``MACArray``: the ``lanes`` multiply-accumulators (the only part that knows how a lane multiplies).
* ``Finisher``: snapshot, then one lane a cycle: requantize, ReLU, running max, write; or a logit.
* ``ImageInput``: the pixels through ``PixelQuantizer`` into the image region.
* ``WeightStoreLoader``: the weight image into the ``WeightStore`` (``hdl/spram.py``).

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
By default the weights are not in the bitstream (SPRAM has no initial contents); they arrive through the
``weights`` byte stream (``weight_image``). The image is a sequence of *words* of ``lanes``
bytes (lane 0 first), each byte an int8 code; word ``a`` goes to SPRAM address ``a``. For each
layer in network order and each group ``g`` of ``lanes`` outputs (output ``g * lanes + l`` in
lane ``l``; lanes past the layer's last output hold 0) there is one bias word, then one word per
tap (conv: input channel, kernel row, kernel column; linear: input feature). The array reads
the words of a group in order and reads them again for each output position.

Weights in the bitstream
------------------------
With ``CompactConfig(weights_in_bitstream=True)`` the weights are in block RAM with initial
values instead (``hdl/weight_rom.py``): each layer's tap words at its code width (``lanes * k``
bits a word, one ROM per width), decoded back to int8 codes in a register before the array, and
the biases in a small table in logic. The board then classifies right after configuration and
refuses weight loads (``weights_loadable`` is False). The block RAM goes to the weights, so the
feature maps move to two of the then unused SPRAMs, one per ping-pong region
(``PingPongMaps``). The decode's register is one more memory stage: one cycle more per layer.
A compressed network fits the UP5K's 30 block RAMs this way (``lenet5_pruned_pow2``: 23 for its
weights), the dense one (92) does not; ``boards.configure.weights_fit_up5k`` decides for the
command line's ``--compact-weights auto``.

Cycle model
-----------
Everything is fixed by the geometry, so ``cycle_model`` predicts the cycles of an image (start
to done, as ``LeNetAccelerator.cycles`` counts them) exactly, if the pixels arrive one a cycle
from the cycle after ``start``: ``pixels + 2`` to take the image (786 for 28x28), then per layer ``groups * positions *
(1 + taps)`` array cycles, plus ``lanes + 4`` to drain the pipeline between layers (one memory
stage (two with the weights in the bitstream), two array stages, the finisher's lanes, one to set up), and for the last layer 4 + the
lanes of its last group until the last logit has reached the argmax and ended the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from ..model import arith
from ..model.errors import InputError
from ..model.network import ConvLayer, LinearLayer, Network
from ..model.weights import WeightSet
from .accelerator import CYCLE_COUNTER_WIDTH, Accelerator
from .compact_parts import MEMORY_LATENCY, WEIGHT_ADDRESS_BITS, Finisher, ImageInput, MACArray, Sequencer, WeightStoreLoader
from .datapath import CODE, accumulator_shape
from .report import LayerRow
from .lenet import Argmax
from .spram import SPRAM_BLOCKS, SPRAM_DEPTH, PingPongMaps, WeightStore
from .weight_rom import ROM_LATENCY, RomLayout, WeightROM, rom_layout


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
    ``weights_in_bitstream``: the weights in block RAM with initial values, each layer at its
    code width (``hdl/weight_rom.py``), and the feature maps in SPRAM; else the weights in SPRAM,
    loaded at run time.
    """

    arithmetic: arith.Arithmetic = arith.Arithmetic()
    lanes: int = MAX_LANES
    weights_in_bitstream: bool = False

    design = "compact"

    def __post_init__(self):
        if not isinstance(self.arithmetic, arith.Arithmetic):
            raise TypeError(f"arithmetic must be an arith.Arithmetic, not {self.arithmetic!r}")
        if isinstance(self.lanes, bool) or not isinstance(self.lanes, int) or not 1 <= self.lanes <= MAX_LANES:
            raise ValueError(f"lanes must be an integer 1..{MAX_LANES}, not {self.lanes!r}")
        if not isinstance(self.weights_in_bitstream, bool):
            raise TypeError(f"weights_in_bitstream must be a bool, not {self.weights_in_bitstream!r}")

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


def cycle_model(network: Network, plans, lanes: int, memory_latency: int = MEMORY_LATENCY) -> dict[str, int]:
    """Cycles of one image per phase (``input`` and each layer) under the module's cycle model;
    their sum is the ``cycles`` the accelerator reports. ``memory_latency``: cycles from an
    address to the array's operands (one with SPRAM weights, two with block RAM weights)."""
    model = {"input": network.pixels + INPUT_OVERHEAD}
    for plan in plans:
        # Between layers the pipeline drains (the memories' and the array's stages, ``lanes``
        # finisher cycles) and the next layer is set up; after the last, the last logit reaches
        # the argmax and (registered) ends the image.
        stages = memory_latency + MACArray.latency
        tail = stages + plan.last_lanes + 1 if plan.last else lanes + stages + 1
        model[plan.name] = plan.array_cycles + tail
    return model


def _image_bytes(words) -> bytes:
    return bytes(code & 0xFF for word in words for code in word)


def _packed_words(words) -> list[int]:
    return [sum((code & 0xFF) << (8 * lane) for lane, code in enumerate(word)) for word in words]


def _report(network: Network, plans, lanes: int, map_depth: int, cycles: dict[str, int],
            rom: RomLayout | None) -> list[LayerRow]:
    # Every layer's row names the same shared array (its multipliers and DSP blocks).
    rows = [LayerRow("input", macs=0, multipliers=0, dsp=0, weight_bits=0, memory_bits=256 * arith.WIDTH,
                     memory="logic" if rom else "bram", cycles=cycles["input"])]
    for i, plan in enumerate(plans):
        bits = rom.restrictions[i].bits if rom else arith.WIDTH
        words = plan.groups * (plan.terms - 1) if rom else plan.words  # ROM: the biases are in logic
        rows.append(LayerRow(plan.name, macs=plan.macs, multipliers=lanes, dsp=lanes, weight_bits=bits,
                             memory_bits=words * lanes * bits, memory="bram" if rom else "spram",
                             cycles=cycles[plan.name]))
    rows.append(LayerRow("feature maps", macs=0, multipliers=0, dsp=0, weight_bits=0,
                         memory_bits=map_depth * arith.WIDTH, memory="spram" if rom else "bram", cycles=0))
    return rows


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

    ``elaborate`` joins the parts of ``hdl/compact_parts.py`` (see the module docstring).

    Attributes
    ----------
    multipliers : int
        Multipliers in the design (the lanes of the array).
    weights_in_bitstream : bool
        False: the weights must be sent through ``weights`` after configuration. True (the
        config's choice): they are in block RAM from configuration and cannot be replaced.
    rom : RomLayout or None
        Where the weights are in block RAM (``weights_in_bitstream``).
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
        self.weights_in_bitstream = config.weights_in_bitstream
        self.rom = rom_layout(self.plans, self._words, weights.codes, self.lanes) if self.weights_in_bitstream else None
        self.memory_latency = ROM_LATENCY if self.rom else MEMORY_LATENCY
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

    @property
    def dsp_blocks(self) -> int:
        """One DSP block a lane (an SB_MAC16 on the iCE40 UP5K), shared by every layer."""
        return self.lanes

    @property
    def weights_loadable(self) -> bool:
        """Whether ``weights`` can replace the weights (not when they are in read-only memory)."""
        return self.rom is None

    def cycle_model(self) -> dict[str, int]:
        return cycle_model(self.network, self.plans, self.lanes, self.memory_latency)

    def layer_report(self) -> list[LayerRow]:
        """Per phase: MACs, the multipliers it runs on (the same shared array for every layer),
        memory bits (``memory`` says which kind: weights in SPRAM, feature maps and the pixel
        table in block RAM) and cycles from the cycle model."""
        return _report(self.network, self.plans, self.lanes, self.map_depth, self.cycle_model(), self.rom)

    def elaborate(self, platform):
        m = Module()
        rom = self.rom
        # With the weights in block RAM every block counts: the pixel table goes to logic.
        m.submodules.image = image = ImageInput(self.network.pixels, table_in_logic=rom is not None,
                                                channels=self.network.input_channels)
        m.submodules.sequencer = sequencer = Sequencer(rom.plans if rom else self.plans, self.lanes, self.map_depth,
                                                          bias_words=rom is None)
        layers = self._config.arithmetic.layers(self.network)
        m.submodules.array = array = MACArray(self.lanes, max(plan.terms - 1 for plan in self.plans),
                                              tuple(layer.bias_shift for layer in layers))
        m.submodules.finisher = finisher = Finisher(self.lanes, array.acc_shape, sequencer.address_bits, layers[:-1])
        m.submodules.argmax = argmax = Argmax(self.network.classes, self.logit_shape)
        take_start = self.start & ~sequencer.busy
        wiring.connect(m, wiring.flipped(self.pixels), image.pixels)
        m.d.comb += [image.start.eq(take_start), image.open.eq(sequencer.receiving)]
        # Feature-map writes: the image's codes, then the finisher's.
        receiving = sequencer.receiving
        map_write = (Mux(receiving, image.addr, finisher.addr), Mux(receiving, image.code, finisher.data),
                     image.we | finisher.en)
        if rom:
            store, activation = self._weights_in_rom(m, sequencer, map_write)
        else:
            store, activation = self._weights_in_spram(m, sequencer, map_write)
        pipeline_busy = self._operands_to_finisher(m, sequencer, array, finisher, store, activation)
        last_logit = self._control(m, image, sequencer, finisher, argmax, pipeline_busy)
        self._done_and_cycles(m, take_start, sequencer.busy, last_logit)
        return m

    def _weights_in_rom(self, m, sequencer, map_write):
        """Weights in block RAM (read-only), feature maps in two SPRAMs: the weight ROM and the
        registered activation that waits for its decode."""
        map_write_addr, map_write_data, map_write_en = map_write
        m.submodules.store = store = WeightROM(self.rom, WEIGHT_ADDRESS_BITS)
        m.submodules.maps = maps = PingPongMaps(self.map_depth)
        m.d.comb += [
            store.addr.eq(sequencer.weight_addr),
            store.bias_addr.eq(sequencer.bias_addr),
            store.bias.eq(sequencer.term.bias),
            store.layer.eq(sequencer.layer),
            self.weights.ready.eq(1),  # nothing to load: bytes offered are dropped
            maps.read_addr.eq(sequencer.act_addr),
            maps.write_addr.eq(map_write_addr),
            maps.write_data.eq(map_write_data),
            maps.write_en.eq(map_write_en),
            # The image goes to region 0; layer i writes region (i + 1) % 2.
            maps.write_region.eq(~sequencer.receiving & ~Cat(sequencer.layer, 0)[0]),
        ]
        activation = Signal(CODE)  # one register more: the weights' decode takes a cycle
        m.d.sync += activation.eq(maps.read_data)
        return store, activation

    def _weights_in_spram(self, m, sequencer, map_write):
        """Weights in SPRAM, loaded from ``weights`` while idle; feature maps in block RAM."""
        map_write_addr, map_write_data, map_write_en = map_write
        busy = sequencer.busy
        m.submodules.loader = loader = WeightStoreLoader(self.lanes, self.words)
        m.submodules.store = store = WeightStore(self.lanes, self.words)
        m.submodules.maps = maps = Memory(shape=CODE, depth=self.map_depth, init=[])
        map_write, map_read = maps.write_port(), maps.read_port()
        wiring.connect(m, wiring.flipped(self.weights), loader.i)
        m.d.comb += [
            loader.restart.eq(self.weights_restart),
            loader.enable.eq(~busy),
            store.wdata.eq(loader.data),
            store.wlane.eq(loader.lane),
            store.we.eq(loader.we),
            store.addr.eq(Mux(busy, sequencer.weight_addr, loader.addr)),
            map_read.addr.eq(sequencer.act_addr),
            map_read.en.eq(1),
            map_write.addr.eq(map_write_addr),
            map_write.data.eq(map_write_data),
            map_write.en.eq(map_write_en),
        ]
        return store, map_read.data

    def _operands_to_finisher(self, m, sequencer, array, finisher, store, activation):
        """The term follows its operands: the memories answer, then the array adds, then the
        finisher takes the accumulators. Returns whether any term is still on its way."""
        latency = self.memory_latency
        terms = [sequencer.term]
        for stage in range(latency + array.latency):
            terms.append(Signal.like(sequencer.term, name=f"term_{stage + 1}"))
            m.d.sync += terms[-1].eq(terms[-2])
        at_array, at_finisher = terms[latency], terms[-1]
        m.d.comb += [
            array.activation.eq(activation),
            array.weights.eq(store.data),
            array.bias.eq(at_array.bias),
            # The layer stays put until the pipeline has drained (the sequencer's DRAIN).
            array.layer.eq(sequencer.layer),
            finisher.layer.eq(sequencer.layer),
            finisher.acc.eq(array.acc),
            finisher.snapshot.eq(at_finisher.complete),
            finisher.position.eq(at_finisher.position),
            finisher.stride.eq(sequencer.out_stride),
            finisher.last_layer.eq(sequencer.last_layer),
        ]
        pipeline_busy = finisher.busy
        for term in terms[1:]:
            pipeline_busy = pipeline_busy | term.complete
        return pipeline_busy

    def _control(self, m, image, sequencer, finisher, argmax, pipeline_busy):
        """The sequencer's inputs, the status ports and the logits through the argmax. Returns
        the registered flag of the image's last logit."""
        # The last logit's flag is registered before it ends the image: from the finisher
        # through the argmax into the sequencer's next state was the iCEBreaker build's worst
        # path (36 ns). It costs one cycle an image.
        last_logit = Signal()
        m.d.sync += last_logit.eq(argmax.last)
        m.d.comb += [
            sequencer.start.eq(self.start),
            sequencer.image_done.eq(image.last),
            sequencer.pipeline_busy.eq(pipeline_busy),
            sequencer.last_logit.eq(last_logit),
            self.layer.eq(sequencer.layer),
            self.phase.eq(Mux(sequencer.issuing, sequencer.layer + 1, 0)),
            self.busy.eq(sequencer.busy),
            self.receiving.eq(sequencer.busy),
        ]

        m.d.comb += [
            argmax.i.valid.eq(finisher.logit.valid),
            argmax.i.payload.eq(finisher.logit.payload),
            self.klass.eq(argmax.klass),
            self.logits.eq(argmax.logits),
        ]
        return last_logit

    def _done_and_cycles(self, m, take_start, busy, last_logit):
        """``done`` a cycle after the last logit, and ``cycles`` counted from the start taken."""
        elapsed = Signal(CYCLE_COUNTER_WIDTH)
        m.d.sync += self.done.eq(last_logit)
        with m.If(take_start):
            m.d.sync += elapsed.eq(1)
        with m.Elif(busy):
            m.d.sync += elapsed.eq(elapsed + 1)
        with m.If(last_logit):
            m.d.sync += self.cycles.eq(elapsed + 1)
