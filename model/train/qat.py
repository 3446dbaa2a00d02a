"""LeNet-family networks in PyTorch: float training, then quantization-aware training (QAT) whose forward pass
is exactly the hardware's arithmetic (``arith``: Q2.6 weights, each layer's activation format), with
straight-through gradients.

Why the fake-quant forward is exact: weights and biases are multiples of 1/64 and a layer's
inputs multiples of 2**-frac (frac <= 6), so every product is a multiple of 2**-acc_frac and every
partial sum is an integer times 2**-acc_frac below 2**23 (codes of at most 8 bits). float32
holds all of them exactly, so the sums do not depend on the order the convolution kernels add
in, and the rounding steps below are the integer shifts of ``arith``.
The tests check every logit against the golden model.

A layer with restricted weight codes (``codes.Restriction``) projects its weights onto the
restriction's levels instead of onto all 256 codes (``restrict_weight``); the forward pass is
exact in the same way, since the levels are Q2.6 codes too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import arith
from ..codes import Restriction, Uniform
from ..network import LENET5, ConvLayer, Network
from ..progress import progress


def _ste(soft: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """Forward ``hard``, backward the gradient of ``soft``."""
    return soft + (hard - soft).detach()


def quantize_weight(w: torch.Tensor) -> torch.Tensor:
    """Float weight -> nearest Q2.6 code / 64, as ``arith.quantize_weights`` does on export."""
    soft = torch.clamp(w * arith.SCALE, arith.QMIN, arith.QMAX)
    return _ste(soft, torch.round(soft)) / arith.SCALE  # torch.round and np.rint: ties to even


def project_codes(x: torch.Tensor, restriction: Restriction) -> torch.Tensor:
    """``restriction.project`` in torch: values in code units -> the nearest allowed codes (as
    floats), with the same tie rules, so training sees exactly the codes export writes."""
    if isinstance(restriction, Uniform):
        step = float(1 << restriction.shift)
        return torch.clamp(torch.round(x / step), restriction.c_min, restriction.c_max) * step
    magnitudes = torch.tensor((0, *restriction.magnitudes), dtype=x.dtype, device=x.device)
    index = torch.bucketize(x.abs(), (magnitudes[:-1] + magnitudes[1:]) / 2, right=False)
    return torch.sign(x) * magnitudes[index]


def restrict_weight(w: torch.Tensor, restriction: Restriction) -> torch.Tensor:
    """Float weight -> nearest allowed code / 64; straight-through inside the levels' range."""
    levels = restriction.levels
    soft = torch.clamp(w * arith.SCALE, int(levels[0]), int(levels[-1]))
    return _ste(soft, project_codes(w.detach() * arith.SCALE, restriction)) / arith.SCALE


def requantize(acc: torch.Tensor, arithmetic) -> torch.Tensor:
    """Accumulator value -> output code / 2**frac (``LayerArithmetic.requantize``, in value
    units; ``arithmetic`` a ``LayerArithmetic``, or an ``Arithmetic`` for a Q2.6 layer).

    ``acc * 2**out_frac`` is the integer accumulator divided by 2**shift, so
    floor(acc * 2**out_frac + 1/2) is ``(acc + 2**(shift-1)) >> shift``. The backward pass is a
    clipped straight-through estimator: gradient 1 inside the output's range, 0 outside (wrap
    mode adds an overflow penalty in training instead).
    """
    layer = arith.as_layer(arithmetic)
    out = layer.output
    scaled = acc * float(1 << out.frac)
    offset = layer.round_offset / (1 << layer.shift)
    y = torch.floor(scaled + offset)
    if layer.overflow is arith.Overflow.SATURATE:
        y = torch.clamp(y, out.low, out.high)
    else:
        y = torch.remainder(y - out.low, 1 << out.requant_bits) + out.low
    soft = torch.clamp(scaled, out.low, out.high)
    return _ste(soft, y) / float(1 << out.frac)


def quantize_input(pixels_u8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> Q2.6 code / 64 (``arith.quantize_pixels``)."""
    p = pixels_u8.to(torch.int64)
    return ((p * arith.SCALE + arith.PIXEL_MAX // 2) // arith.PIXEL_MAX).to(torch.float32) / arith.SCALE


class QuantLeNet(nn.Module):
    """A ``Network`` in PyTorch. ``arithmetic=None`` is the float network; otherwise fake-quant,
    with each layer named in ``codes`` restricted to its weight codes."""

    def __init__(self, arithmetic: arith.Arithmetic | None = None, network: Network = LENET5,
                 codes: dict[str, Restriction] | None = None):
        super().__init__()
        self.arithmetic = arithmetic
        self.network = network
        self.layer_arithmetic = None if arithmetic is None else arithmetic.layers(network)
        self.codes = dict(codes or {})
        unknown = set(self.codes) - set(network.names)
        if unknown:
            raise ValueError(f"codes for {sorted(unknown)}: the network {network.spec} has {network.names}")
        self.layers = network.layers
        for layer in self.layers:
            if isinstance(layer, ConvLayer):
                module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel)
            else:
                module = nn.Linear(layer.in_features, layer.out_features)
            self.add_module(layer.name, module)
        # Pre-activation overflow of the last batch: wrap-mode training penalizes it.
        self.overflow_penalty = torch.zeros(())

    def input(self, pixels_u8: torch.Tensor) -> torch.Tensor:
        if self.arithmetic is None:
            return pixels_u8.to(torch.float32).div(arith.PIXEL_MAX)
        return quantize_input(pixels_u8)

    def forward(self, pixels_u8: torch.Tensor) -> torch.Tensor:
        """uint8 [N,S,S] (or [N,C,S,S]: ``network.input_shape``) -> logits. In fake-quant mode
        logits * 2**logit_frac (4096 for Q2.6) are the integer logits."""
        x = self.network.channels_first(self.input(pixels_u8)).to(next(self.parameters()).dtype)
        penalty = x.new_zeros(())
        for index, layer in enumerate(self.layers):
            w, b = self.layer_parameters(layer)
            if isinstance(layer, ConvLayer):
                acc = F.conv2d(x, w, b)
            else:
                acc = F.linear(x.flatten(1), w, b)
            if getattr(layer, "last", False):
                x = acc
                break
            if self.layer_arithmetic is not None:
                a = self.layer_arithmetic[index]
                limit = a.output.high / (1 << a.output.frac)
                penalty = penalty + F.relu(acc.abs() - limit).pow(2).mean()
                acc = requantize(acc, a)
            x = F.relu(acc)
            if isinstance(layer, ConvLayer):
                x = F.max_pool2d(x, layer.pool)
        self.overflow_penalty = penalty
        return x

    def layer_parameters(self, layer) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight and bias a layer computes with: the float ones, or their codes / 64."""
        module = getattr(self, layer.name)
        w, b = module.weight, module.bias
        if self.arithmetic is None:
            return w, b
        restriction = self.codes.get(layer.name)
        w = quantize_weight(w) if restriction is None else restrict_weight(w, restriction)
        return w, quantize_weight(b)

    def integer_logits(self, pixels_u8: torch.Tensor) -> torch.Tensor:
        """Fake-quant logits as the integer accumulator the hardware ends with (int64)."""
        assert self.arithmetic is not None, "integer logits need a fake-quant model"
        unit = float(1 << self.arithmetic.logit_frac(self.network))
        return torch.round(self(pixels_u8) * unit).to(torch.int64)

    def integer_params(self) -> dict[str, np.ndarray]:
        """The Q2.6 codes this model computes with, named like its state dict."""
        params = {}
        for name, t in self.state_dict().items():
            value = t.detach().cpu().numpy()
            restriction = self.codes.get(name.rsplit(".", 1)[0]) if name.endswith(".weight") else None
            params[name] = (arith.quantize_weights(value) if restriction is None
                            else restriction.project(value.astype(np.float64) * arith.SCALE))
        return params

    def float_params(self) -> dict[str, np.ndarray]:
        return {name: t.detach().cpu().numpy().astype(np.float32) for name, t in self.state_dict().items()}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights; recorded in the manifest."""

    seed: int = 1
    float_epochs: int = 12
    qat_epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    qat_lr: float = 5e-4
    shift: int = 2  # random translation of training images, pixels
    overflow_weight: float = 10.0  # strength of the pre-activation overflow penalty (wrap mode)


def random_shift(images: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image ([N,H,W], or [N,C,H,W] with its channels together) by up to
    ``shift`` pixels in x and y, filling with background."""
    if shift == 0:
        return images
    n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    padded = F.pad(images, (shift, shift, shift, shift))
    if images.ndim == 4:  # channels last while indexing, so each pixel moves with all its channels
        padded = padded.movedim(1, -1)
    dy = torch.randint(0, 2 * shift + 1, (n, 1, 1), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (n, 1, 1), generator=generator)
    rows = torch.arange(h).view(1, h, 1) + dy
    cols = torch.arange(w).view(1, 1, w) + dx
    shifted = padded[torch.arange(n).view(n, 1, 1), rows, cols]
    return shifted.movedim(-1, 1) if images.ndim == 4 else shifted


def _run_epochs(model, images, labels, epochs, lr, config, generator, label, penalty_weight, before_epoch=None):
    """``epochs`` of Adam with a one-cycle learning rate; ``before_epoch(epoch)``, if given, runs
    at the start of each epoch (compression refits its weight-code restrictions there)."""
    if epochs <= 0:
        return
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    model.train()
    for epoch in range(epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        order = torch.randperm(len(images), generator=generator)
        bar = progress(range(steps_per_epoch), desc=f"{label} epoch {epoch + 1}/{epochs}", unit="batch", leave=True)
        correct = seen = 0
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            x = random_shift(images[idx], config.shift, generator)
            y = labels[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if penalty_weight:
                loss = loss + penalty_weight * model.overflow_penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.4f}")


def train(train_split, arithmetic: arith.Arithmetic, config: TrainConfig = TrainConfig(), log=print,
          network: Network = LENET5, start: dict | None = None, activations: tuple = (), activation_cost=None):
    """Float training of ``network``, then QAT for ``arithmetic``. ``train_split``'s images must
    already have the network's image size. ``start`` (a float state dict of ``network``) is
    where the float training starts instead of a random initialisation. ``activations`` (formats
    or widths, ``formats.parse``) replaces the arithmetic's activation formats, a width's chosen
    on the float network (``formats.choose``; ``activation_cost`` for ``--activations auto``). Returns (float_model, qat_model, seconds); the
    QAT model's ``arithmetic`` is the one trained for."""
    started = time.time()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    images = torch.from_numpy(np.array(train_split.images))  # a writable copy
    labels = torch.from_numpy(train_split.labels.astype(np.int64))

    float_model = QuantLeNet(None, network)
    if start is not None:
        float_model.load_state_dict({name: torch.as_tensor(np.asarray(value, np.float32)) for name, value in start.items()})
    _run_epochs(float_model, images, labels, config.float_epochs, config.lr, config, generator, "float", 0.0)
    if activations:
        from . import formats

        float_model.eval()
        arithmetic = formats.choose(float_model, activations, arithmetic,
                                    *formats.calibration_sample(images, labels, config.seed), log=log,
                                    cost=activation_cost)

    qat_model = QuantLeNet(arithmetic, network)
    qat_model.load_state_dict(float_model.state_dict())
    if arithmetic.wraps:
        # Wrap-around turns an overflow into a large wrong activation, and the float network's
        # activations overflow often, so QAT in wrap mode from there does not recover. First
        # train with saturation while penalizing overflow, so that the network learns to stay in
        # range (where wrap and saturate agree), then finish in wrap mode with the same penalty.
        warmup = QuantLeNet(arithmetic.saturating(), network)
        warmup.load_state_dict(float_model.state_dict())
        half = config.qat_epochs // 2
        _run_epochs(warmup, images, labels, half, config.qat_lr, config, generator, "QAT (saturate)",
                    config.overflow_weight)
        qat_model.load_state_dict(warmup.state_dict())
        _run_epochs(qat_model, images, labels, config.qat_epochs - half, config.qat_lr, config, generator,
                    "QAT (wrap)", config.overflow_weight)
    else:
        _run_epochs(qat_model, images, labels, config.qat_epochs, config.qat_lr, config, generator, "QAT", 0.0)
    float_model.eval()
    qat_model.eval()
    log(f"trained in {time.time() - started:.0f} s")
    return float_model, qat_model, time.time() - started

