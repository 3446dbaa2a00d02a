"""The LeNet-5 accelerator: the layer engines chained by valid/ready streams.

    pixels -> PixelQuantizer -> conv1 -> pool1 -> Gather(6) -> conv2 -> pool2 -> fc1 -> fc2 -> fc3 -> Argmax

Every engine starts as soon as its input arrives, so conv2 works while conv1 is still producing
rows and the image costs about conv2's cycles plus the linear layers', not the sum of all
layers. The streams carry the data in the order the next block wants it, so nothing is
reordered in hardware: pooled conv2 outputs arrive in (row, column, channel) order and fc1's
weight columns are permuted to match (``fc1_input_order``), which computes the same sums as the
(channel, row, column) flatten of the golden model.

Control is a start/done handshake that lets images overlap: ``start`` opens the pixel input for
one image (784 pixels) and is taken whenever the input is not already open (``receiving`` low),
so the next image may enter while earlier ones are still in later layers. ``done`` pulses once
per image, in order, when its tenth logit is in; ``klass``, ``logits`` and ``cycles`` (start to
done, inclusive) then hold that image's answer until the next ``done``. ``busy`` is high while
any image is in flight.
"""

from __future__ import annotations

import gc
import warnings
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Signal, UnusedElaboratable, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..model import arith
from ..model.network import IMAGE_SIZE, LENET5, N_CLASSES, ConvLayer
from ..model.weights import WeightSet
from .conv import ConvEngine
from .datapath import accumulator_shape
from .gather import Gather, Serialize
from .linear import LinearEngine
from .loader import WeightLoader
from .pixels import PixelQuantizer
from .pool import MaxPool
from .skid import SkidBuffer
from .fifo import StreamFIFO
from .window import pixel_layout

CYCLE_COUNTER_WIDTH = 32
# Images that may be in flight at once (start times queued for the cycle count).
MAX_IN_FLIGHT = 8


@dataclass(frozen=True)
class AcceleratorConfig:
    """Generator parameters: what the arithmetic does and how much hardware each engine gets.

    ``conv_filters`` and ``linear_lanes`` give one value per conv / linear layer, in network
    order, or one value for all of them. A conv engine has ``filters * K * K`` multipliers, a
    linear engine ``lanes``. Layers named in ``soft_multipliers`` build theirs from logic
    instead of DSP blocks (an ECP5-85F has 156 DSP multipliers).
    """

    arithmetic: arith.Arithmetic = arith.Arithmetic()
    linear_lanes: int | tuple[int, ...] = 20
    conv_filters: int | tuple[int, ...] = 1
    soft_multipliers: tuple[str, ...] = ()

    def __post_init__(self):
        if not isinstance(self.arithmetic, arith.Arithmetic):
            raise TypeError(f"arithmetic must be an arith.Arithmetic, not {self.arithmetic!r}")
        for label in ("linear_lanes", "conv_filters"):
            values = getattr(self, label)
            values = values if isinstance(values, tuple) else (values,)
            if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
                raise ValueError(f"{label} must be a positive integer or a tuple of them, not {getattr(self, label)!r}")
        if not isinstance(self.soft_multipliers, tuple) or not all(isinstance(n, str) for n in self.soft_multipliers):
            raise TypeError(f"soft_multipliers must be a tuple of layer names, not {self.soft_multipliers!r}")

    @staticmethod
    def _pick(values, index: int, count: int, label: str) -> int:
        if not isinstance(values, tuple):
            return values
        if len(values) != count:
            raise ValueError(f"{label} has {len(values)} values for {count} layers")
        return values[index]

    def filters_of(self, index: int, count: int) -> int:
        """Filters at once of conv layer ``index`` of ``count``."""
        return self._pick(self.conv_filters, index, count, "conv_filters")

    def lanes_of(self, index: int, count: int) -> int:
        """Lanes of linear layer ``index`` of ``count``."""
        return self._pick(self.linear_lanes, index, count, "linear_lanes")


# Named generator configurations (the benchmark and the board builds pick them by name).
PRESETS: dict[str, AcceleratorConfig] = {
    # One filter and 20 lanes per engine: 110 multipliers, all in DSP blocks.
    "baseline": AcceleratorConfig(),
    # Multipliers where the MACs are, every stage about 780 cycles, so one image enters about
    # every 784 cycles (one pixel a cycle): 409 multipliers, 152 of them in DSPs.
    "fast": AcceleratorConfig(conv_filters=(6, 8), linear_lanes=(43, 14, 2),
                              soft_multipliers=("conv2", "fc1", "fc2")),
}


def fc1_input_order(conv: ConvLayer) -> np.ndarray:
    """For each position t of the pooled stream ((row, column, channel) order), the index of
    that value in the golden flatten ((channel, row, column) order)."""
    c, h = conv.out_channels, conv.out_size
    row, col, ch = np.meshgrid(np.arange(h), np.arange(h), np.arange(c), indexing="ij")
    return (ch * h * h + row * h + col).reshape(-1)


def hardware_weights(params: dict[str, np.ndarray], layers=LENET5) -> dict[str, np.ndarray]:
    """The state dict as the hardware stores it: fc1's columns in stream order."""
    conv2 = [layer for layer in layers if isinstance(layer, ConvLayer)][-1]
    hw = dict(params)
    hw["fc1.weight"] = np.ascontiguousarray(params["fc1.weight"][:, fc1_input_order(conv2)])
    return hw


def accelerator_ports(logit_shape) -> dict:
    """The accelerator's ports; anything that drives or stands in for it uses the same ones."""
    return {
        "pixels": In(stream.Signature(unsigned(8))),
        "start": In(1),
        "busy": Out(1),        # an image is in flight
        "receiving": Out(1),   # the pixel input is open; a start now is ignored
        "done": Out(1),
        "klass": Out(range(N_CLASSES)),
        "logits": Out(data.ArrayLayout(logit_shape, N_CLASSES)),
        "cycles": Out(CYCLE_COUNTER_WIDTH),
        # Run-time weight loading: the bytes of the accelerator's weight image, in order, sent
        # only while no image is in flight; a pulse on weights_restart makes the next byte byte 0.
        "weights": In(stream.Signature(unsigned(8))),
        "weights_restart": In(1),
    }


def layer_report(weights: WeightSet, config: AcceleratorConfig) -> list[dict]:
    """``LeNetAccelerator.layer_report`` without keeping (or elaborating) the design."""
    return _read_from_unused(weights, config, lambda accelerator: accelerator.layer_report())


def weight_image(weights: WeightSet, config: AcceleratorConfig) -> bytes:
    """``LeNetAccelerator.weight_image`` without keeping (or elaborating) the design."""
    return _read_from_unused(weights, config, lambda accelerator: accelerator.weight_image())


def _read_from_unused(weights: WeightSet, config: AcceleratorConfig, read):
    with warnings.catch_warnings():
        # The blocks are built only to be read; Amaranth would warn that they were never used.
        warnings.simplefilter("ignore", UnusedElaboratable)
        value = read(LeNetAccelerator(weights, config))
        gc.collect()
    return value


class Argmax(wiring.Component):
    """Collects the logits of one image; the class is the first index of the maximum."""

    def __init__(self, count: int, shape):
        self._count = count
        super().__init__({
            "i": In(stream.Signature(shape)),
            "logits": Out(data.ArrayLayout(shape, count)),
            "klass": Out(range(count)),
            "last": Out(1),  # high in the cycle the final logit is taken
        })

    def elaborate(self, platform):
        m = Module()
        index = Signal(range(self._count))
        best = Signal.like(self.i.payload)
        m.d.comb += self.i.ready.eq(1)
        with m.If(self.i.valid):
            m.d.sync += self.logits[index].eq(self.i.payload)
            # Strict '>' keeps the first of equal maxima, as numpy's argmax does.
            with m.If((index == 0) | (self.i.payload > best)):
                m.d.sync += [best.eq(self.i.payload), self.klass.eq(index)]
            with m.If(index == self._count - 1):
                m.d.sync += index.eq(0)
                m.d.comb += self.last.eq(1)
            with m.Else():
                m.d.sync += index.eq(index + 1)
        return m


class LeNetAccelerator(wiring.Component):
    """LeNet-5 for one 28x28 image at a time, weights in block RAM initial values.

    Parameters
    ----------
    weights : WeightSet
        The integer network (state-dict layout, golden flatten order).
    config : AcceleratorConfig
        Arithmetic and engine sizes.
    """

    def __init__(self, weights: WeightSet, config: AcceleratorConfig = AcceleratorConfig(), layers=LENET5):
        if not isinstance(weights, WeightSet):
            raise TypeError(f"weights must be a WeightSet, not {type(weights).__name__}")
        self._config = config
        self._layers = layers
        self._params = hardware_weights(weights.params, layers)
        self.logit_shape = accumulator_shape(layers[-1].in_features)
        super().__init__(accelerator_ports(self.logit_shape))
        self.engines = self._make_engines()
        # Run-time weight loading (before elaboration: it adds write ports to the memories).
        self.weight_loader = WeightLoader(self.weight_memories())

    # The memories have initial values: the bitstream's weights are valid from reset.
    weights_in_bitstream = True

    def weight_memories(self) -> list:
        """The memories a weight image fills, in image order: each conv and linear engine's
        weight memory, then its bias memory, in network order (no line or input buffers)."""
        return [getattr(block, attr) for block in self.engines.values()
                for attr in ("weight_memory", "bias_memory") if getattr(block, attr, None) is not None]

    def weight_image(self) -> bytes:
        """The bytes to send on ``weights`` to load the weights this object was built with
        (``hdl.loader``: memories in order, each word as whole little-endian bytes)."""
        return self.weight_loader.image()

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def _make_engines(self) -> dict[str, wiring.Component]:
        """Layer name -> engine, and the stream blocks between them, in data-flow order."""
        a, config = self._config.arithmetic, self._config
        p = self._params
        convs = [layer for layer in self._layers if isinstance(layer, ConvLayer)]
        linears = [layer for layer in self._layers if not isinstance(layer, ConvLayer)]
        blocks: dict[str, wiring.Component] = {"quantize": PixelQuantizer()}
        channels, lanes = 1, 1  # of the stream so far
        # Every engine's inputs are pixel codes (0..64) or ReLU outputs, never negative, so its
        # multipliers may drop the sign bit (half the logic of a soft multiplier).
        for layer in self._layers:
            w, b = p[f"{layer.name}.weight"], p[f"{layer.name}.bias"]
            soft = layer.name in config.soft_multipliers
            if isinstance(layer, ConvLayer):
                filters = config.filters_of(convs.index(layer), len(convs))
                blocks[f"{layer.name}.gather"] = Gather(channels, lanes)
                if layer is not convs[0]:
                    # Room for a whole input map, so the layer before can run into the next image.
                    blocks[f"{layer.name}.queue"] = StreamFIFO(pixel_layout(channels), layer.in_size**2)
                blocks[layer.name] = ConvEngine(w, b, layer.in_size, a, name=layer.name, filters=filters,
                                                soft_multipliers=soft, nonnegative_inputs=True)
                blocks[f"{layer.name}.pool"] = MaxPool(layer.out_channels, layer.conv_size, layer.conv_size,
                                                       layer.pool, lanes=filters)
                channels, lanes = layer.out_channels, filters
            else:
                if lanes > 1:  # a linear engine takes one code a transfer
                    blocks[f"{layer.name}.serialize"] = Serialize(lanes)
                    lanes = 1
                blocks[layer.name] = LinearEngine(w, b, a, lanes=config.lanes_of(linears.index(layer), len(linears)),
                                                  last=layer.last, name=layer.name, soft_multipliers=soft,
                                                  nonnegative_inputs=True)
        blocks["argmax"] = Argmax(N_CLASSES, self.logit_shape)
        return blocks

    def layer_report(self) -> list[dict]:
        """Per block with memory (layers and the blocks between them): MACs, multipliers,
        memory bits and the cycles it takes alone for one image."""
        macs = {layer.name: layer.macs for layer in self._layers}
        rows = []
        for name, block in self.engines.items():
            if not getattr(block, "memory_bits", 0):
                continue
            rows.append({
                "layer": name,
                "macs": macs.get(name, 0),
                "multipliers": getattr(block, "multipliers", 0),
                "memory_bits": block.memory_bits,
                "cycles": getattr(block, "cycles_per_image", 0),
            })
        return rows

    def elaborate(self, platform):
        m = Module()
        names = list(self.engines)
        for name, block in self.engines.items():
            m.submodules[name.replace(".", "_")] = block
        for upstream, downstream in zip(names, names[1:]):
            # A skid buffer on every link, so that no ready signal crosses two blocks.
            skid = SkidBuffer(self.engines[upstream].o.payload.shape())
            m.submodules[f"{downstream.replace('.', '_')}_skid"] = skid
            wiring.connect(m, self.engines[upstream].o, skid.i)
            wiring.connect(m, skid.o, self.engines[downstream].i)
        m.submodules.weight_loader = self.weight_loader
        wiring.connect(m, wiring.flipped(self.weights), self.weight_loader.i)
        m.d.comb += self.weight_loader.restart.eq(self.weights_restart)
        quantize, argmax = self.engines["quantize"], self.engines["argmax"]

        # The pixel input is open for exactly one image after each start.
        remaining = Signal(range(IMAGE_SIZE * IMAGE_SIZE + 1))
        m.d.comb += [
            self.receiving.eq(remaining != 0),
            quantize.i.payload.eq(self.pixels.payload),
            quantize.i.valid.eq(self.pixels.valid & self.receiving),
            self.pixels.ready.eq(quantize.i.ready & self.receiving),
            self.klass.eq(argmax.klass),
            self.logits.eq(argmax.logits),
        ]
        with m.If(self.pixels.valid & self.pixels.ready):
            m.d.sync += remaining.eq(remaining - 1)

        # Start times of the images in flight, oldest first: results leave in order.
        m.submodules.start_times = start_times = SyncFIFO(width=CYCLE_COUNTER_WIDTH, depth=MAX_IN_FLIGHT)
        now = Signal(CYCLE_COUNTER_WIDTH)
        take_start = self.start & ~self.receiving & start_times.w_rdy
        m.d.sync += now.eq(now + 1)
        m.d.comb += [
            start_times.w_en.eq(take_start),
            start_times.w_data.eq(now),
            start_times.r_en.eq(argmax.last),
            self.busy.eq(start_times.r_rdy),  # one queued start time per image in flight
        ]
        m.d.sync += self.done.eq(argmax.last)
        with m.If(take_start):
            m.d.sync += remaining.eq(IMAGE_SIZE * IMAGE_SIZE)
        with m.If(argmax.last):
            m.d.sync += self.cycles.eq(now - start_times.r_data + 1)
        return m
