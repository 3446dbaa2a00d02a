"""Each hidden layer's activation format for a bit width: its range, a power of two, chosen on
the trained float network (issue 26, part 3).

A width alone (``--activations 4``) leaves the fraction bits open: with 4 unsigned bits a layer
may hold 0..15 (UQ4.0), 0..7.5 (UQ3.1), ..., 0..0.94 (UQ0.4). That is seed 000's learnable
clipping threshold, restricted to powers of two so the requantizer stays a shift. It is chosen
in two steps, before quantization-aware training starts from the float network:

1. **Calibration**: the smallest range that holds the layer's float activations on the
   calibration images up to the ``PERCENTILE``-th percentile (rarer values are clipped).
2. **Refinement**: layer by layer, the fraction bits one either side are tried with every
   layer quantized, and the one of lowest cross-entropy on the same images is kept (two passes).

Formats given whole (``UQ2.2``) are kept as they are.

**Widths against the generator's cost** (``--activations auto``, or ``auto:99.0`` for a floor):
each hidden layer starts at 8 bits; step by step, the layer whose one bit narrower saves the most
memory bits of the generated design (the cost handed in: ``hdl.cost``'s figures) loses that bit,
as long as the quantized network (each trial's formats calibrated, no training) keeps its
accuracy on the calibration images at or above the floor (default: the 8-bit network's there,
less ``AUTO_DROP``). A narrower layer that saves no memory bits still narrows its requantizer
and products, so it is taken last. The widths found then get their ranges as above, and QAT
trains for them; the test-set accuracy is what the floor is measured against in the report.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from .. import arith
from ..errors import InputError
from ..network import ConvLayer, Network

PERCENTILE = 99.99
CALIBRATION_IMAGES = 2000
PASSES = 2
AUTO_DROP = 0.005  # the default floor of ``auto``: this far below the 8-bit network's accuracy


@dataclasses.dataclass(frozen=True)
class Auto:
    """``--activations auto[:FLOOR]``: each layer's width chosen against the cost (module
    docstring); ``floor`` the accuracy (0..1) to keep on the calibration images, or None."""

    floor: float | None = None

    def __str__(self) -> str:
        return "auto" if self.floor is None else f"auto:{100 * self.floor:g}"


def parse(text: str) -> tuple[arith.Fixed | int, ...]:
    """``--activations``: comma-separated formats (``UQ2.2``) or widths (``4``), one for every
    hidden layer or one per hidden layer. A width is unsigned up to 7 bits, signed at 8.
    ``auto`` or ``auto:FLOOR`` (a percentage) chooses the widths too (``Auto``)."""
    text = str(text).strip()
    if text == "auto" or text.startswith("auto:"):
        floor = text[5:]
        try:
            value = float(floor) if floor else None
        except ValueError:
            value = -1.0
        if value is not None and not 0 < value <= 100:
            raise InputError(f"--activations {text}: the floor after 'auto:' is an accuracy in percent, 0 to 100")
        return (Auto(None if value is None else value / 100),)
    items = []
    for part in str(text).split(","):
        part = part.strip()
        if part.isdigit():
            bits = int(part)
            if not 2 <= bits <= arith.WIDTH:
                raise InputError(f"--activations: a width is 2 to {arith.WIDTH} bits, not {bits}")
            items.append(bits)
        else:
            try:
                items.append(arith.Fixed.parse(part))
            except arith.FormatError as e:
                raise InputError(f"--activations: {e}") from None
    return tuple(items)


def for_network(spec: tuple, network: Network) -> tuple[arith.Fixed | int, ...]:
    """``spec`` with one item per hidden layer (one item stands for all)."""
    hidden = len(network.layers) - 1
    if len(spec) == 1 and isinstance(spec[0], Auto):
        return spec
    if any(isinstance(item, Auto) for item in spec):
        raise InputError("--activations: auto stands alone (it chooses every layer's width)")
    if len(spec) == 1:
        return spec * hidden
    if len(spec) != hidden:
        raise InputError(f"--activations gives {len(spec)} formats; the network {network.spec} has {hidden} "
                         f"hidden layers (give one for all, or one each)")
    return tuple(spec)


def candidates(bits: int) -> list[arith.Fixed]:
    """Every format of ``bits`` bits: unsigned below 8 bits, signed at 8 (a ReLU output)."""
    signed = bits == arith.WIDTH
    return [arith.Fixed(bits, frac, signed) for frac in range(min(bits, arith.MAX_ACTIVATION_FRAC) + 1)]


def calibrated(bits: int, largest: float) -> arith.Fixed:
    """The format of ``bits`` bits with the most fraction bits whose range still holds ``largest``."""
    options = candidates(bits)
    fitting = [f for f in options if f.high / (1 << f.frac) >= largest]
    return max(fitting, key=lambda f: f.frac) if fitting else min(options, key=lambda f: f.frac)


def float_activations(model, pixels: torch.Tensor) -> list[np.ndarray]:
    """Each hidden layer's float outputs after ReLU (before pooling), on ``pixels``."""
    outputs = []
    with torch.no_grad():
        x = model.network.channels_first(model.input(pixels))
        for layer in model.layers[:-1]:
            w, b = model.layer_parameters(layer)
            y = F.relu(F.conv2d(x, w, b) if isinstance(layer, ConvLayer) else F.linear(x.flatten(1), w, b))
            outputs.append(y.numpy().reshape(-1))
            x = F.max_pool2d(y, layer.pool) if isinstance(layer, ConvLayer) else y
    return outputs


def activation_ranges(float_model, pixels: torch.Tensor) -> list[float]:
    """Each hidden layer's calibration range: the ``PERCENTILE``-th percentile of its float
    outputs on ``pixels``."""
    return [float(np.percentile(a, PERCENTILE)) if a.size else 0.0 for a in float_activations(float_model, pixels)]


def _quantized_logits(float_model, arithmetic: arith.Arithmetic, formats, pixels: torch.Tensor) -> torch.Tensor:
    """The float network's weights run with every layer quantized to ``formats`` (no training)."""
    from .qat import QuantLeNet

    model = QuantLeNet(dataclasses.replace(arithmetic, activations=tuple(formats)), float_model.network)
    model.load_state_dict(float_model.state_dict())
    with torch.no_grad():
        return model(pixels)


def search_widths(float_model, arithmetic: arith.Arithmetic, pixels: torch.Tensor, labels: torch.Tensor,
                  cost, largest: list[float], floor: float | None = None, log=print) -> tuple[int, ...]:
    """Each hidden layer's width, narrowed from 8 bits one bit at a time against ``cost``
    (``cost(network, arithmetic)``: the memory bits of its design) while the quantized network's
    accuracy on ``pixels`` stays at or above ``floor`` (module docstring); ``largest``: each
    layer's range on ``pixels`` (``activation_ranges``)."""
    network = float_model.network

    def formats_of(widths):
        return tuple(calibrated(bits, top) for bits, top in zip(widths, largest))

    def accuracy(widths) -> float:
        logits = _quantized_logits(float_model, arithmetic, formats_of(widths), pixels)
        return float((logits.argmax(1) == labels).float().mean())

    def bits_of(widths) -> int:
        return cost(network, dataclasses.replace(arithmetic, activations=formats_of(widths)))

    widths = [arith.WIDTH] * (len(network.layers) - 1)
    start = accuracy(widths)
    floor = start - AUTO_DROP if floor is None else floor
    log(f"activation widths: 8 bits everywhere, {bits_of(widths):,} memory bits, {100 * start:.2f} % on "
        f"{len(labels):,} calibration images; floor {100 * floor:.2f} %")
    while True:
        current, trials = bits_of(widths), []
        for i, bits in enumerate(widths):
            if bits > 2:
                trial = widths[:i] + [bits - 1] + widths[i + 1:]
                trials.append((current - bits_of(trial), trial))
        best = None
        # Most memory bits saved first; among equal savings the most accurate.
        for saved, trial in sorted(trials, key=lambda t: -t[0]):
            if best is not None and saved < best[0]:
                break
            value = accuracy(trial)
            if value >= floor and (best is None or value > best[2]):
                best = (saved, trial, value)
        if best is None:
            break
        saved, widths, value = best
        log(f"  {','.join(map(str, widths))} bits: {saved:,} memory bits fewer, {100 * value:.2f} %")
    log(f"activation widths chosen: {','.join(map(str, widths))} ({bits_of(widths):,} memory bits)")
    return tuple(widths)


def choose(float_model, spec: tuple, arithmetic: arith.Arithmetic, pixels: torch.Tensor, labels: torch.Tensor,
           log=print, cost=None) -> arith.Arithmetic:
    """``arithmetic`` with every hidden layer's format: the given ones, and for each width the
    one chosen as the module docstring says, on ``pixels`` (uint8) and their ``labels``; with
    ``Auto``, the widths too, against ``cost`` (``search_widths``)."""
    spec = for_network(spec, float_model.network)
    if isinstance(spec[0], Auto) and cost is None:
        raise InputError("--activations auto needs the generator's cost model (hdl.cost.activation_memory_bits)")
    if all(isinstance(item, arith.Fixed) for item in spec):
        return dataclasses.replace(arithmetic, activations=spec)
    largest = activation_ranges(float_model, pixels)
    if isinstance(spec[0], Auto):
        spec = search_widths(float_model, arithmetic, pixels, labels, cost, largest, spec[0].floor, log)
    formats = [item if isinstance(item, arith.Fixed) else calibrated(item, top) for item, top in zip(spec, largest)]

    def loss(trial) -> float:
        return float(F.cross_entropy(_quantized_logits(float_model, arithmetic, trial, pixels), labels))

    best = loss(formats)
    log(f"activation formats calibrated: {','.join(map(str, formats))} (loss {best:.4f})")
    for _ in range(PASSES):
        changed = False
        for i, item in enumerate(spec):
            if isinstance(item, arith.Fixed):
                continue
            for f in candidates(item):
                if abs(f.frac - formats[i].frac) != 1:
                    continue
                trial = list(formats)
                trial[i] = f
                value = loss(trial)
                if value < best - 1e-6:
                    formats, best, changed = trial, value, True
        if not changed:
            break
    log(f"activation formats chosen: {','.join(map(str, formats))} (loss {best:.4f})")
    return dataclasses.replace(arithmetic, activations=tuple(formats))


def calibration_sample(images: torch.Tensor, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``CALIBRATION_IMAGES`` training images (the same for a seed)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=generator)[: min(CALIBRATION_IMAGES, len(images))]
    return images[order], labels[order]

