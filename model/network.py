"""The network description: one frozen, validated object that says what a LeNet-family network is.

A network is ``image_size`` x ``image_size`` pixels of ``input_channels`` channels each (1: grey,
3: RGB), then conv layers (each a valid KxK
convolution, bias, requantize, ReLU and a PxP stride-P max-pool), then fully connected layers
(hidden ones requantize and ReLU, the last keeps its raw accumulators: the logits), ``classes``
outputs. Everything that depends on the shape of the network (the golden model, the trainer,
both generators, the simulation harnesses, the board protocol, the weight files) takes it from
a ``Network``; nothing else names a channel count, an image size or a layer name.

The compact spelling used on the command line and in reports is ``Network.spec``:

    [SIZE[xCHANNELS]/]CONV,CONV,...:HIDDEN,HIDDEN,...[:CLASSES]

where CHANNELS is the input channel count (default 1: grey) and a CONV is the filter count, optionally with ``kK`` (kernel, default 5) and ``pP`` (pool,
default 2). LeNet-5 on MNIST is ``6,16:120,84``; the 1998 paper's 32x32 version is
``32/6,16:120,84``; ``4k3p2,10:60`` has a 3x3 first kernel and one hidden layer; ``32x3/6,16:120,84``
takes 32x32 RGB images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from .errors import InputError


@dataclass(frozen=True)
class ConvLayer:
    """KxK valid convolution, bias, requantize, ReLU, then PxP stride-P max-pool."""

    name: str
    in_channels: int
    out_channels: int
    in_size: int  # square input feature map
    kernel: int = 5
    pool: int = 2

    @property
    def conv_size(self) -> int:
        return self.in_size - self.kernel + 1

    @property
    def out_size(self) -> int:
        return self.conv_size // self.pool

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels, self.kernel, self.kernel)

    @property
    def macs(self) -> int:
        return self.conv_size**2 * self.out_channels * self.in_channels * self.kernel**2

    @property
    def out_features(self) -> int:
        return self.out_channels * self.out_size**2


@dataclass(frozen=True)
class LinearLayer:
    """Fully connected layer. Hidden layers requantize and ReLU; the last keeps the accumulator."""

    name: str
    in_features: int
    out_features: int
    last: bool = False

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    @property
    def macs(self) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class ConvSpec:
    """What a user chooses for one conv layer; its input size and channels follow from the chain."""

    channels: int
    kernel: int = 5
    pool: int = 2


class NetworkError(InputError, ValueError):
    """A network description that cannot be a LeNet-family network (the message says why)."""


# The largest network this tool takes: every size a user can write is bounded, so that a typo
# (``99999,1:1``) is refused with the limit instead of an allocator failing for tens of GB
# in the trainer. Each limit is far above LeNet-5's (28, 281,640 MACs, 44,190 weights,
# 3,456 conv outputs) and above what fits any FPGA this tool builds for.
MAX_SIZE = 10_000  # any one number: image side, filters, kernel, pool, width, classes
# Input channels: a pixel's channels travel one after another and conv1's window holds them all;
# 16 is above any image format this tool reads (grey, RGB) and keeps a typo from building a
# line buffer thousands of codes wide.
MAX_INPUT_CHANNELS = 16
MAX_MACS = 50_000_000  # multiply-accumulates per image
MAX_WEIGHTS = 10_000_000  # weight codes
MAX_ACTIVATIONS = 1_000_000  # outputs of one conv layer (before its pool), per image


def _positive(label: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise NetworkError(f"{label} must be a whole number, not {value!r}")
    if value < 1:
        raise NetworkError(f"{label} must be at least 1, not {value}")
    if value > MAX_SIZE:
        shown = f"{value:,}" if value < 10**30 else f"a number of {len(str(value))} digits"
        raise NetworkError(f"{label} must be at most {MAX_SIZE:,}, not {shown}")
    return value


def _check_size(network: Network) -> None:
    """Refuse a network beyond the limits above, with the limit in the message."""
    for layer in network.conv_layers:
        outputs = layer.out_channels * layer.conv_size**2
        if outputs > MAX_ACTIVATIONS:
            raise NetworkError(f"{layer.name} has {outputs:,} outputs per image; at most {MAX_ACTIVATIONS:,}")
    for what, count, limit in (("MACs per image", network.macs, MAX_MACS),
                               ("weights", network.weights, MAX_WEIGHTS)):
        if count > limit:
            raise NetworkError(f"the network has {count:,} {what}; this tool takes at most {limit:,}")


@dataclass(frozen=True)
class Network:
    """A LeNet-family network: conv layers, then fully connected layers.

    Parameters
    ----------
    convs : tuple of ConvSpec
        At least one; layer ``k`` (from 1) is named ``convk``.
    hidden : tuple of int
        Widths of the hidden fully connected layers (may be empty); named ``fc1``, ``fc2``, ...,
        and the last layer (``classes`` outputs) is the next ``fcN``.
    classes : int
        Outputs of the last layer (logits), at least 2.
    image_size : int
        Side of the square input image.
    input_channels : int
        Channels of each input pixel (1: grey, 3: RGB), at most ``MAX_INPUT_CHANNELS``.

    Construction checks the chain (every kernel fits its input, every pool divides its conv
    output, every size positive) and raises ``NetworkError`` with the reason.
    """

    convs: tuple[ConvSpec, ...] = (ConvSpec(6), ConvSpec(16))
    hidden: tuple[int, ...] = (120, 84)
    classes: int = 10
    image_size: int = 28
    input_channels: int = 1
    layers: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        convs = tuple(c if isinstance(c, ConvSpec) else ConvSpec(c) for c in self.convs)
        object.__setattr__(self, "convs", convs)
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not convs:
            raise NetworkError("a LeNet-family network needs at least one conv layer")
        _positive("image size", self.image_size)
        if _positive("input channels", self.input_channels) > MAX_INPUT_CHANNELS:
            raise NetworkError(f"input channels must be at most {MAX_INPUT_CHANNELS}, not {self.input_channels}")
        _positive("classes", self.classes)
        if self.classes < 2:
            raise NetworkError(f"a classifier needs at least 2 classes, not {self.classes}")
        layers, channels, size = [], self.input_channels, self.image_size
        for k, spec in enumerate(convs, 1):
            name = f"conv{k}"
            _positive(f"{name} filters", spec.channels)
            _positive(f"{name} pool", spec.pool)
            if _positive(f"{name} kernel", spec.kernel) < 2:
                raise NetworkError(f"{name}: a 1x1 kernel is not supported (kernel must be at least 2)")
            if spec.kernel > size:
                raise NetworkError(f"{name}: a {spec.kernel}x{spec.kernel} kernel does not fit its "
                                   f"{size}x{size} input")
            layer = ConvLayer(name, channels, spec.channels, size, spec.kernel, spec.pool)
            if layer.conv_size % spec.pool:
                raise NetworkError(f"{name}: a {spec.pool}x{spec.pool} pool does not divide its "
                                   f"{layer.conv_size}x{layer.conv_size} output")
            layers.append(layer)
            channels, size = spec.channels, layer.out_size
        features = channels * size * size
        widths = (*self.hidden, self.classes)
        for k, width in enumerate(widths, 1):
            _positive(f"fc{k} width", width)
            layers.append(LinearLayer(f"fc{k}", features, width, last=k == len(widths)))
            features = width
        object.__setattr__(self, "layers", tuple(layers))
        _check_size(self)

    # ---- views ----

    @property
    def conv_layers(self) -> tuple[ConvLayer, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, ConvLayer))

    @property
    def linear_layers(self) -> tuple[LinearLayer, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, LinearLayer))

    @property
    def pixels(self) -> int:
        """Bytes of one input image: ``image_size**2`` pixels of ``input_channels`` bytes each, the
        length of the accelerator's pixel stream (channel-interleaved: a pixel's channels one
        after another)."""
        return self.image_size**2 * self.input_channels

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One image's array shape: ``(S, S)`` grey, ``(C, S, S)`` with C > 1 channels."""
        size = self.image_size
        return (size, size) if self.input_channels == 1 else (self.input_channels, size, size)

    def channels_first(self, images):
        """A batch of images ([N,S,S] grey, [N,C,S,S] otherwise: ``input_shape``) as [N,C,S,S],
        for a numpy array or a torch tensor alike."""
        return images[:, None] if self.input_channels == 1 else images

    @property
    def macs(self) -> int:
        """Multiply-accumulates per image."""
        return sum(layer.macs for layer in self.layers)

    @property
    def weights(self) -> int:
        """Weight codes (biases not counted)."""
        return sum(_product(layer.weight_shape) for layer in self.layers)

    @cached_property
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """State-dict names and shapes, in order: conv1.weight, conv1.bias, ..., fcN.bias."""
        shapes = {}
        for layer in self.layers:
            shapes[f"{layer.name}.weight"] = layer.weight_shape
            shapes[f"{layer.name}.bias"] = (layer.weight_shape[0],)
        return shapes

    def layer(self, name: str):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"the network {self.spec} has no layer {name!r} (it has {', '.join(self.names)})")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    # ---- spellings ----

    @property
    def spec(self) -> str:
        """The compact spelling (see the module docstring); ``parse(spec)`` gives this network back."""
        convs = ",".join(str(c.channels) + (f"k{c.kernel}" if c.kernel != 5 else "")
                         + (f"p{c.pool}" if c.pool != 2 else "") for c in self.convs)
        text = f"{convs}:{','.join(map(str, self.hidden))}"
        if self.classes != 10:
            text += f":{self.classes}"
        if self.image_size == 28 and self.input_channels == 1:
            return text
        return f"{self.image_size}{f'x{self.input_channels}' if self.input_channels != 1 else ''}/{text}"

    def __str__(self) -> str:
        return self.spec

    def to_dict(self) -> dict:
        """The manifest form (``from_dict`` reads it back)."""
        return {
            "image_size": self.image_size,
            "convs": [{"channels": c.channels, "kernel": c.kernel, "pool": c.pool} for c in self.convs],
            "hidden": list(self.hidden),
            "classes": self.classes,
            # Absent for grey (1), so a grey network's manifest is what it was before channels.
            **({"input_channels": self.input_channels} if self.input_channels != 1 else {}),
        }

    @classmethod
    def from_dict(cls, value, image_size: int = 28, classes: int = 10, input_channels: int = 1) -> "Network":
        """A network from its manifest form; any malformed field is a ``NetworkError``. A form
        without ``image_size``, ``classes`` or ``input_channels`` takes these (a data set's own)."""
        if not isinstance(value, dict):
            raise NetworkError(f"a network description must be an object, not {type(value).__name__}")
        unknown = set(value) - {"image_size", "convs", "hidden", "classes", "input_channels"}
        if unknown:
            raise NetworkError(f"unknown network field(s): {', '.join(sorted(unknown))}")
        convs = value.get("convs")
        if not isinstance(convs, list):
            raise NetworkError("network 'convs' must be a list of {channels, kernel, pool} objects")
        specs = []
        for k, conv in enumerate(convs, 1):
            if isinstance(conv, int) and not isinstance(conv, bool):
                conv = {"channels": conv}
            if not isinstance(conv, dict) or set(conv) - {"channels", "kernel", "pool"} or "channels" not in conv:
                raise NetworkError(f"network conv {k} must be an object with channels (and kernel, pool), "
                                   f"not {conv!r}")
            specs.append(ConvSpec(**conv))
        hidden = value.get("hidden", [])
        if not isinstance(hidden, list):
            raise NetworkError(f"network 'hidden' must be a list of widths, not {hidden!r}")
        return cls(tuple(specs), tuple(hidden), value.get("classes", classes), value.get("image_size", image_size),
                   value.get("input_channels", input_channels))

    @classmethod
    def parse(cls, text: str, image_size: int = 28, classes: int = 10, input_channels: int = 1) -> "Network":
        """A network from its compact spelling ``[SIZE[xCHANNELS]/]CONVS:HIDDEN[:CLASSES]``; a
        spelling without SIZE, CHANNELS or CLASSES takes these (a data set's own; the spec's
        defaults are MNIST's)."""
        if not isinstance(text, str):
            raise NetworkError(f"a network spec must be a string, not {text!r}")
        if len(longest := max(re.findall(r"\d+", text) or [""], key=len)) > len(str(MAX_SIZE)) + 2:
            raise NetworkError(f"cannot read network {text[:20]!r}...: a number of {len(longest)} digits "
                               f"(every size is at most {MAX_SIZE:,})")
        match = _SPEC.fullmatch(text.replace(" ", ""))
        if match is None:
            raise NetworkError(
                f"cannot read network {text if len(text) <= 60 else text[:60] + '...'!r}: expected "
                f"[SIZE[xCHANNELS]/]CONVS:HIDDEN[:CLASSES], e.g. 6,16:120,84 (LeNet-5), 32/6k5p2,16:120,84:10 or "
                f"32x3/6,16:120,84 (RGB)")
        size, channels, convs, hidden, count = match.group("size", "channels", "convs", "hidden", "classes")
        specs = []
        for item in convs.split(","):
            c = _CONV.fullmatch(item)
            specs.append(ConvSpec(int(c["channels"]), int(c["kernel"] or 5), int(c["pool"] or 2)))
        widths = tuple(int(w) for w in hidden.split(",")) if hidden else ()
        return cls(tuple(specs), widths, int(count or classes), int(size or image_size),
                   int(channels or input_channels))

    def describe(self) -> str:
        """A table of the layers: shapes, parameters and MACs."""
        colour = "" if self.input_channels == 1 else f", {self.input_channels} channels"
        lines = [f"network {self.spec}: {self.image_size}x{self.image_size} input{colour}, {self.classes} classes",
                 f"{'layer':<7}{'input':>12}{'output':>12}{'weights':>10}{'MACs':>10}"]
        for layer in self.layers:
            if isinstance(layer, ConvLayer):
                shape_in = f"{layer.in_channels}x{layer.in_size}x{layer.in_size}"
                shape_out = f"{layer.out_channels}x{layer.out_size}x{layer.out_size}"
                what = f"  {layer.kernel}x{layer.kernel} conv, ReLU, {layer.pool}x{layer.pool} max-pool"
            else:
                shape_in, shape_out = str(layer.in_features), str(layer.out_features)
                what = "  logits" if layer.last else "  ReLU"
            lines.append(f"{layer.name:<7}{shape_in:>12}{shape_out:>12}{_product(layer.weight_shape):>10,}"
                         f"{layer.macs:>10,}{what}")
        lines.append(f"{'total':<31}{self.weights:>10,}{self.macs:>10,}")
        return "\n".join(lines)


_CONV_ITEM = r"\d+(?:k\d+)?(?:p\d+)?"
_SPEC = re.compile(rf"(?:(?P<size>\d+)(?:x(?P<channels>\d+))?/)?(?P<convs>{_CONV_ITEM}(?:,{_CONV_ITEM})*):"
                   r"(?P<hidden>(?:\d+(?:,\d+)*)?)(?::(?P<classes>\d+))?")
_CONV = re.compile(r"(?P<channels>\d+)(?:k(?P<kernel>\d+))?(?:p(?P<pool>\d+))?")


def _product(shape) -> int:
    result = 1
    for n in shape:
        result *= n
    return result


# The network this project ships: LeNet-5 for 28x28 MNIST digits.
LENET5 = Network()


def parameter_shapes(network: Network = LENET5) -> dict[str, tuple[int, ...]]:
    """State-dict names and shapes of ``network`` (``Network.parameter_shapes``)."""
    return dict(network.parameter_shapes)
