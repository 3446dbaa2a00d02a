"""The streaming accelerator: the layer engines of any LeNet-family network chained by
valid/ready streams. For LeNet-5:

    pixels -> PixelQuantizer -> conv1 -> pool1 -> Gather(6) -> conv2 -> pool2 -> fc1 -> fc2 -> fc3 -> Argmax

Every engine starts as soon as its input arrives, so conv2 works while conv1 is still producing
rows and the image costs about conv2's cycles plus the linear layers', not the sum of all
layers. The streams carry the data in the order the next block wants it, so nothing is
reordered in hardware: the last conv layer's pooled outputs arrive in (row, column, channel)
order and the first linear layer's weight columns are permuted to match
(``first_linear_input_order``), which computes the same sums as the (channel, row, column)
flatten of the golden model.

Control is a start/done handshake that lets images overlap: ``start`` opens the pixel input for
one image (``network.pixels`` bytes: each pixel's channels one after another) and is taken
whenever the input is not already open (``receiving`` low), so the next image may enter while earlier ones are still in later layers.
``done`` pulses once per image, in order, when its last logit is in; ``klass``, ``logits`` and ``cycles`` (start to
done, inclusive) then hold that image's answer until the next ``done``. ``busy`` is high while
any image is in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..model import arith
from ..model.errors import InputError
from ..model.network import ConvLayer, Network
from ..model.weights import WeightSet
from .accelerator import CYCLE_COUNTER_WIDTH, Accelerator
from .conv import ConvEngine
from .fifo import StreamFIFO
from .gather import Gather, Serialize
from .linear import LinearEngine
from .loader import WeightLoader
from .pixels import PixelQuantizer
from .pool import MaxPool
from .products import WeightForm, dsp_blocks
from .report import LayerRow
from .skid import SkidBuffer
from .window import pixel_layout

# Images that may be in flight at once (start times queued for the cycle count).
MAX_IN_FLIGHT = 8
# DSP multipliers of the ECP5-85F (nextpnr-ecp5 uses each MULT18X18D as one 18x18 multiplier):
# what the presets place in DSP blocks before they build multipliers from logic.
ECP5_85F_DSPS = 156


@dataclass(frozen=True)
class StreamingConfig:
    """Generator parameters of the streaming design: what the arithmetic does and how much
    hardware each engine gets.

    ``conv_filters`` and ``linear_lanes`` give one value per conv / linear layer, in network
    order, or one value for all of them. A conv engine has ``filters * K * K`` multipliers, a
    linear engine ``lanes``. Layers named in ``soft_multipliers`` build theirs from logic
    instead of DSP blocks (an ECP5-85F has 156 DSP multipliers).
    """

    arithmetic: arith.Arithmetic = arith.Arithmetic()
    linear_lanes: int | tuple[int, ...] = 20
    conv_filters: int | tuple[int, ...] = 1
    soft_multipliers: tuple[str, ...] = ()

    design = "streaming"

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

    def check(self, network: Network) -> "StreamingConfig":
        """Raise InputError, saying why, if this configuration cannot be built for ``network``."""
        convs, linears = network.conv_layers, network.linear_layers
        for label, values, count in (("filters", self.conv_filters, len(convs)),
                                     ("lanes", self.linear_lanes, len(linears))):
            if isinstance(values, tuple) and len(values) != count:
                raise InputError(f"{label} {','.join(map(str, values))}: {len(values)} values for the "
                                 f"{count} {'conv' if label == 'filters' else 'linear'} layers of {network.spec}")
        for k, layer in enumerate(convs):
            filters = self.filters_of(k, len(convs))
            if layer.out_channels % filters:
                raise InputError(f"{layer.name} has {layer.out_channels} filters: {filters} at once does not "
                                 f"divide them (use a divisor of {layer.out_channels})")
        self._check_lanes(linears)
        unknown = [name for name in self.soft_multipliers if name not in network.names]
        if unknown:
            raise InputError(f"soft multipliers for {', '.join(unknown)}: the network {network.spec} has the "
                             f"layers {', '.join(network.names)}")
        return self

    def _check_lanes(self, linears) -> None:
        """Lanes beyond a layer's inputs stay idle (output ``j`` takes ``ceil(in / lanes)``
        cycles, one at most): a lane count per layer is bounded by that layer's inputs, one count
        for all by the largest layer's. Unbounded, ``--lanes 99999`` built for minutes and gigabytes."""
        if isinstance(self.linear_lanes, tuple):
            for layer, lanes in zip(linears, self.linear_lanes):
                if lanes > layer.in_features:
                    raise InputError(f"lanes {lanes} for {layer.name}: more than its {layer.in_features} inputs "
                                     f"(at most {layer.in_features}; more lanes would stay idle)")
            return
        widest = max(linears, key=lambda layer: layer.in_features, default=None)
        if widest is not None and self.linear_lanes > widest.in_features:
            raise InputError(f"lanes {self.linear_lanes}: more than the {widest.in_features} inputs of {widest.name}, "
                             f"the widest linear layer (at most {widest.in_features}; more lanes would stay idle)")

    def build(self, weights: WeightSet) -> "LeNetAccelerator":
        return LeNetAccelerator(weights, self)


def relaxed_window(layer: ConvLayer, filters: int, network: Network) -> bool:
    """Whether a conv engine may take its windows late (``WindowGenerator``'s
    ``registered_ready``, two cycles a window): when even then its windows cost no more cycles
    than the pixel input takes for an image, which bounds the interval anyway. The window
    snapshot's load enable, the worst path of the large ECP5 designs, is then a flip-flop."""
    steps = layer.out_channels // filters * layer.in_channels
    return steps >= 2 and layer.conv_size**2 * (steps + 2) <= network.pixels


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def balanced(network: Network, arithmetic: arith.Arithmetic = arith.Arithmetic(), codes=None,
             target: int | None = None, dsps: int = ECP5_85F_DSPS) -> StreamingConfig:
    """Every stage sized to take at most ``target`` cycles per image (default: the pixel input's
    ``network.pixels``, which bounds the interval anyway): the fewest filters (a divisor of the
    layer's channels) or lanes that do it, or all of them where even that is too slow. The first
    layers' multipliers go into DSP blocks while ``dsps`` last (counting what each layer's weight
    codes need: half for packed pairs, none for shift-and-select); the rest are built from logic."""
    target = network.pixels if target is None else target
    forms = {name: WeightForm(r) for name, r in (codes or {}).items()}
    filters, lanes, soft, used = [], [], [], 0
    for layer in network.layers:
        form = forms.get(layer.name, WeightForm())
        if isinstance(layer, ConvLayer):
            steps = layer.conv_size**2 * layer.in_channels  # cycles per image per filter group
            fitting = [f for f in divisors(layer.out_channels) if steps * (layer.out_channels // f) <= target]
            filters.append(fitting[0] if fitting else layer.out_channels)
            count = dsp_blocks(form, filters[-1], layer.kernel**2, soft=False, nonnegative=True)
        else:
            fitting = [n for n in range(1, layer.in_features + 1)
                       if layer.out_features * -(-layer.in_features // n) <= target]
            lanes.append(fitting[0] if fitting else layer.in_features)
            count = dsp_blocks(form, 1, lanes[-1], soft=False, nonnegative=True)
        if used + count <= dsps:
            used += count
        else:
            soft.append(layer.name)
    return StreamingConfig(arithmetic, tuple(lanes), tuple(filters), tuple(soft))


def one_filter(network: Network, arithmetic: arith.Arithmetic = arith.Arithmetic(), codes=None,
               lanes: int = 20) -> StreamingConfig:
    """One filter per conv engine and ``lanes`` lanes per linear engine (fewer where a layer has
    fewer inputs): the smallest design, all in DSP blocks. The original hand-written design's
    sizes (a 5x5 window and 20 inputs per access)."""
    return StreamingConfig(arithmetic, tuple(min(lanes, layer.in_features) for layer in network.linear_layers),
                           1, ())


@dataclass(frozen=True)
class Preset:
    """A named rule that sizes the streaming design for any network (``resolve``)."""

    name: str
    description: str
    rule: Callable[..., StreamingConfig]  # (network, arithmetic, codes) -> config

    def resolve(self, network: Network, arithmetic: arith.Arithmetic = arith.Arithmetic(),
                codes=None) -> StreamingConfig:
        """The configuration for ``network`` whose layers have the weight ``codes`` (a dict of
        restrictions by layer name, as ``WeightSet.codes``; None: all 8-bit)."""
        return self.rule(network, arithmetic, codes).check(network)


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    Preset("baseline", "one filter per conv engine, 20 lanes per linear engine, all multipliers in DSPs",
           one_filter),
    Preset("fast", "every stage sized to the pixel input's pace (one image per image-size-squared cycles); "
                   "DSPs for the first layers, logic multipliers after 156", balanced),
)}


def preset(name: str, network: Network, arithmetic: arith.Arithmetic = arith.Arithmetic(),
           presets: dict[str, Preset] = PRESETS, codes=None) -> StreamingConfig:
    """The configuration preset ``name`` gives ``network`` with weight ``codes`` (InputError for
    an unknown name)."""
    if name not in presets:
        raise InputError(f"unknown preset {name!r}; choose from {', '.join(presets)}")
    return presets[name].resolve(network, arithmetic, codes)


def first_linear_input_order(conv: ConvLayer) -> np.ndarray:
    """For each position t of the pooled stream ((row, column, channel) order), the index of
    that value in the golden flatten ((channel, row, column) order)."""
    c, h = conv.out_channels, conv.out_size
    row, col, ch = np.meshgrid(np.arange(h), np.arange(h), np.arange(c), indexing="ij")
    return (ch * h * h + row * h + col).reshape(-1)


def hardware_weights(params: dict[str, np.ndarray], network: Network) -> dict[str, np.ndarray]:
    """The state dict as the hardware stores it: the first linear layer's columns in stream order."""
    name = f"{network.linear_layers[0].name}.weight"
    hw = dict(params)
    hw[name] = np.ascontiguousarray(params[name][:, first_linear_input_order(network.conv_layers[-1])])
    return hw


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


class LeNetAccelerator(Accelerator):
    """The streaming design: an engine per layer, weights in block RAM initial values.

    Parameters
    ----------
    weights : WeightSet
        The integer network (state-dict layout, golden flatten order) and its ``Network``.
    config : StreamingConfig
        Arithmetic and engine sizes.
    """

    design = "streaming"

    def __init__(self, weights: WeightSet, config: StreamingConfig = StreamingConfig()):
        if not isinstance(config, StreamingConfig):
            raise TypeError(f"config must be a StreamingConfig, not {type(config).__name__}")
        super().__init__(weights, config)
        config.check(self.network)
        self._layers = self.network.layers
        self._params = hardware_weights(weights.params, self.network)
        self._forms = {name: WeightForm(restriction) for name, restriction in weights.codes.items()}
        self.engines = self.blocks = self._make_engines()
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

    def _make_engines(self) -> dict[str, wiring.Component]:
        """Layer name -> engine, and the stream blocks between them, in data-flow order."""
        config, p = self._config, self._params
        arithmetic = dict(zip(self.network.names, config.arithmetic.layers(self.network)))
        convs = [layer for layer in self._layers if isinstance(layer, ConvLayer)]
        linears = [layer for layer in self._layers if not isinstance(layer, ConvLayer)]
        blocks: dict[str, wiring.Component] = {"quantize": PixelQuantizer()}
        # Of the stream so far: the pixels' channels arrive one a transfer (channel-interleaved),
        # and conv1's Gather makes each pixel one vector of them, as for any later conv layer.
        channels, lanes = self.network.input_channels, 1
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
                    blocks[f"{layer.name}.queue"] = StreamFIFO(pixel_layout(channels), layer.in_size**2,
                                                               code_bits=arithmetic[layer.name].input.stored_bits)
                blocks[layer.name] = ConvEngine(w, b, layer.in_size, arithmetic[layer.name], name=layer.name,
                                                filters=filters, soft_multipliers=soft, nonnegative_inputs=True,
                                                form=self._forms[layer.name],
                                                registered_ready=relaxed_window(layer, filters, self.network))
                blocks[f"{layer.name}.pool"] = MaxPool(layer.out_channels, layer.conv_size, layer.conv_size,
                                                       layer.pool, lanes=filters,
                                                       code_bits=arithmetic[layer.name].output.stored_bits)
                channels, lanes = layer.out_channels, filters
            else:
                if lanes > 1:  # a linear engine takes one code a transfer
                    blocks[f"{layer.name}.serialize"] = Serialize(lanes)
                    lanes = 1
                lanes_here = config.lanes_of(linears.index(layer), len(linears))
                blocks[layer.name] = LinearEngine(w, b, arithmetic[layer.name], lanes=lanes_here,
                                                  last=layer.last, name=layer.name, soft_multipliers=soft,
                                                  nonnegative_inputs=True, form=self._forms[layer.name])
        blocks["argmax"] = Argmax(self.network.classes, self.logit_shape)
        return blocks

    def layer_report(self) -> list[LayerRow]:
        """Per block with memory (layers and the blocks between them): MACs, multipliers,
        memory bits (all block RAM) and the cycles it takes alone for one image."""
        macs = {layer.name: layer.macs for layer in self._layers}
        rows = []
        for name, block in self.engines.items():
            if not getattr(block, "memory_bits", 0):
                continue
            rows.append(LayerRow(
                layer=name,
                macs=macs.get(name, 0),
                multipliers=getattr(block, "multipliers", 0),
                dsp=getattr(block, "dsp_blocks", 0),
                weight_bits=self._forms[name].bits if name in self._forms else 0,
                memory_bits=block.memory_bits,
                memory="bram",
                cycles=getattr(block, "cycles_per_image", 0),
            ))
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
        remaining = Signal(range(self.network.pixels + 1))
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
        take_start = Signal()  # named: the image's first cycle in a waveform
        m.d.comb += take_start.eq(self.start & ~self.receiving & start_times.w_rdy)
        m.d.sync += now.eq(now + 1)
        m.d.comb += [
            start_times.w_en.eq(take_start),
            start_times.w_data.eq(now),
            start_times.r_en.eq(argmax.last),
            self.busy.eq(start_times.r_rdy),  # one queued start time per image in flight
        ]
        m.d.sync += self.done.eq(argmax.last)
        with m.If(take_start):
            m.d.sync += remaining.eq(self.network.pixels)
        with m.If(argmax.last):
            m.d.sync += self.cycles.eq(now - start_times.r_data + 1)
        return m
