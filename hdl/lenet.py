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
from .gather import Gather
from .linear import LinearEngine
from .pixels import PixelQuantizer
from .pool import MaxPool

CYCLE_COUNTER_WIDTH = 32
# Images that may be in flight at once (start times queued for the cycle count).
MAX_IN_FLIGHT = 8


@dataclass(frozen=True)
class AcceleratorConfig:
    """Generator parameters: what the arithmetic does and how much hardware each engine gets."""

    arithmetic: arith.Arithmetic = arith.Arithmetic()
    linear_lanes: int = 20  # multipliers (and inputs, weights per BRAM word) of each linear engine

    def __post_init__(self):
        if not isinstance(self.arithmetic, arith.Arithmetic):
            raise TypeError(f"arithmetic must be an arith.Arithmetic, not {self.arithmetic!r}")
        if not isinstance(self.linear_lanes, int) or self.linear_lanes < 1:
            raise ValueError(f"linear_lanes must be a positive integer, not {self.linear_lanes!r}")


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
    }


def layer_report(weights: WeightSet, config: AcceleratorConfig) -> list[dict]:
    """``LeNetAccelerator.layer_report`` without keeping (or elaborating) the design."""
    with warnings.catch_warnings():
        # The blocks are built only to be measured; Amaranth would warn that they were never used.
        warnings.simplefilter("ignore", UnusedElaboratable)
        rows = LeNetAccelerator(weights, config).layer_report()
        gc.collect()
    return rows


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

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    def _make_engines(self) -> dict[str, wiring.Component]:
        """Layer name -> engine, and the stream blocks between them, in data-flow order."""
        a = self._config.arithmetic
        p = self._params
        blocks: dict[str, wiring.Component] = {"quantize": PixelQuantizer()}
        channels = 1
        for layer in self._layers:
            w, b = p[f"{layer.name}.weight"], p[f"{layer.name}.bias"]
            if isinstance(layer, ConvLayer):
                blocks[f"{layer.name}.gather"] = Gather(channels)
                blocks[layer.name] = ConvEngine(w, b, layer.in_size, a, name=layer.name)
                blocks[f"{layer.name}.pool"] = MaxPool(layer.out_channels, layer.conv_size, layer.conv_size, layer.pool)
                channels = layer.out_channels
            else:
                blocks[layer.name] = LinearEngine(w, b, a, lanes=self._config.linear_lanes, last=layer.last,
                                                  name=layer.name)
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
            wiring.connect(m, self.engines[upstream].o, self.engines[downstream].i)
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
        in_flight = Signal(range(MAX_IN_FLIGHT + 1))
        take_start = self.start & ~self.receiving & start_times.w_rdy
        m.d.sync += now.eq(now + 1)
        m.d.comb += [
            start_times.w_en.eq(take_start),
            start_times.w_data.eq(now),
            start_times.r_en.eq(argmax.last),
            self.busy.eq(in_flight != 0),
        ]
        m.d.sync += [self.done.eq(argmax.last), in_flight.eq(in_flight + take_start - argmax.last)]
        with m.If(take_start):
            m.d.sync += remaining.eq(IMAGE_SIZE * IMAGE_SIZE)
        with m.If(argmax.last):
            m.d.sync += self.cycles.eq(now - start_times.r_data + 1)
        return m
