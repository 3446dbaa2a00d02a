"""Golden reference: the hardware's exact integer forward pass, vectorized in numpy, for any
``network.Network``.

Every function takes and returns integer codes (int64 arrays). The multiply-accumulates run as
float matrix products because BLAS makes them fast, and they are exact: every product and every
partial sum is an integer whose magnitude is at most the largest input times the largest sum of
a filter's weight magnitudes; below 2**24 float32 holds every such integer (Q2.6 LeNet-5: at
most 127 x 400 x 128, about 2**22.6), otherwise float64 (2**53), so no rounding can happen in
any summation order.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import arith
from .network import LENET5, ConvLayer, Network

# Keeps the im2col buffers of one batch to a few hundred MB.
BATCH = 1000


def _exact_dtype(x, w) -> type:
    """The float type in which ``x @ w`` of integer arrays is exact: float32 when no partial sum
    can reach 2**24 (every integer below it is a float32, whatever order BLAS adds in; twice the
    speed of float64), float64 otherwise (2**53)."""
    x = np.asarray(x)
    largest = float(max(-int(x.min()), int(x.max()))) if x.size else 0.0
    column_sum = float(np.abs(np.asarray(w, np.float64)).sum(axis=0).max(initial=0))
    return np.float32 if largest * column_sum < 2**24 else np.float64


def _exact_matmul(a: np.ndarray, b: np.ndarray, dtype=None) -> np.ndarray:
    """``a @ b`` of integer arrays (``a`` may already be floats of ``dtype``), exactly."""
    dtype = dtype or _exact_dtype(a, b)
    return (np.asarray(a, dtype) @ np.asarray(b, dtype)).astype(np.int64)


def conv_accumulate(x, weight, bias, bias_shift: int = arith.FRAC_BITS) -> np.ndarray:
    """Valid KxK convolution of codes: acc = sum(x*w) + (b << bias_shift), the input's fraction
    bits (6 for Q2.6). x [N,C,H,W] -> [N,O,H',W']."""
    x = np.asarray(x)
    weight = np.asarray(weight)
    out_ch, in_ch, k, _ = weight.shape
    if x.ndim != 4 or x.shape[1] != in_ch:
        raise ValueError(f"conv input must be [N,{in_ch},H,W], got {list(x.shape)}")
    w = weight.reshape(out_ch, -1).T
    dtype = _exact_dtype(x, w)
    # The windows are copied out once, already as the floats of the product.
    windows = sliding_window_view(x.astype(dtype), (k, k), axis=(2, 3))  # [N,C,H',W',k,k]
    n, _, h, width = windows.shape[:4]
    cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * width, in_ch * k * k)
    acc = _exact_matmul(cols, w, dtype)  # [N*H'*W', O]
    acc = acc.reshape(n, h, width, out_ch).transpose(0, 3, 1, 2)
    return acc + (np.asarray(bias, np.int64) << bias_shift)[None, :, None, None]


def linear_accumulate(x, weight, bias, bias_shift: int = arith.FRAC_BITS) -> np.ndarray:
    """acc = x @ w.T + (b << bias_shift). x [N,F] -> [N,O]."""
    x = np.asarray(x)
    weight = np.asarray(weight)
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear input must be [N,{weight.shape[1]}], got {list(x.shape)}")
    return _exact_matmul(x, weight.T) + (np.asarray(bias, np.int64) << bias_shift)


def activate(acc, arithmetic) -> np.ndarray:
    """Requantize a hidden layer's accumulator, then ReLU (``arithmetic``: the layer's
    ``LayerArithmetic``, or an ``Arithmetic`` for a Q2.6 layer)."""
    return arith.as_layer(arithmetic).activate(acc)


def maxpool(x, size: int = 2) -> np.ndarray:
    """size x size max-pool with stride size over the last two axes (odd edges dropped)."""
    windows = _windows(x, size)
    # The maximum of the size*size strided views, one window position at a time: a reduction
    # over the window's axes walks memory with large strides and takes several times as long.
    out = windows[..., :, 0, :, 0].copy()
    for i in range(size):
        for j in range(size):
            if i or j:
                np.maximum(out, windows[..., :, i, :, j], out=out)
    return out


def _windows(x, size: int) -> np.ndarray:
    """[..., H, W] -> [..., H/size, size, W/size, size], odd edges dropped."""
    x = np.asarray(x)
    h, w = x.shape[-2] // size * size, x.shape[-1] // size * size
    return x[..., :h, :w].reshape(*x.shape[:-2], h // size, size, w // size, size)


def check_images(images, network: Network = LENET5) -> np.ndarray:
    """uint8 images of ``network.input_shape`` ([N,S,S] grey, [N,C,S,S] with C channels), or one."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 pixels 0..255, got dtype {images.dtype}")
    shape = network.input_shape
    if images.ndim == len(shape):
        images = images[None]
    if images.ndim != len(shape) + 1 or images.shape[1:] != shape:
        one = ",".join(map(str, shape))
        raise ValueError(f"images must be [N,{one}] (or one [{one}]) for the network "
                         f"{network.spec}, got shape {list(images.shape)}")
    return images


def check_shapes(params, network: Network) -> None:
    """Every parameter of ``network`` present with its shape: a mismatch is an error, never a
    network silently computed with other shapes."""
    for name, shape in network.parameter_shapes.items():
        if name not in params:
            raise ValueError(f"parameters lack {name} of the network {network.spec}")
        if np.shape(params[name]) != shape:
            raise ValueError(f"{name} has shape {list(np.shape(params[name]))}, the network {network.spec} "
                             f"needs {list(shape)}")


def forward(images, params, arithmetic=arith.Arithmetic(), network: Network = LENET5, trace=False):
    """Integer network: uint8 images [N,S,S] (grey) or [N,C,S,S] (``network.input_shape``) ->
    logits int64 [N,classes] (raw last accumulator,
    ``arithmetic.logit_frac(network)`` fraction bits: 12 for Q2.6).

    With ``trace=True`` also returns a dict of every layer's output codes, named
    ``<layer>`` (after requantize+ReLU, before pooling, for convs), ``<layer>.pool`` and
    ``<layer>.acc`` (the raw accumulator), which the block testbenches compare against.
    """
    images = check_images(images, network)
    check_shapes(params, network)
    layer_arithmetic = arithmetic.layers(network)
    traces: dict[str, list[np.ndarray]] = {}
    outputs = []
    for start in range(0, len(images), BATCH):
        x = network.channels_first(arith.quantize_pixels(images[start : start + BATCH]))  # [N,C,S,S]
        for layer, a in zip(network.layers, layer_arithmetic):
            w, b = params[f"{layer.name}.weight"], params[f"{layer.name}.bias"]
            if isinstance(layer, ConvLayer):
                acc = conv_accumulate(x, w, b, a.bias_shift)
                y = a.activate(acc)
                x = maxpool(y, layer.pool)
                steps = {f"{layer.name}.acc": acc, layer.name: y, f"{layer.name}.pool": x}
            else:
                x = x.reshape(len(x), -1)  # (channel, row, column) order
                acc = linear_accumulate(x, w, b, a.bias_shift)
                x = acc if layer.last else a.activate(acc)
                steps = {f"{layer.name}.acc": acc, layer.name: x}
            if trace:
                for key, value in steps.items():
                    traces.setdefault(key, []).append(value)
        outputs.append(x)
    logits = np.concatenate(outputs) if outputs else np.zeros((0, network.classes), np.int64)
    if trace:
        return logits, {key: np.concatenate(parts) for key, parts in traces.items()}
    return logits


def classify(logits) -> np.ndarray:
    """The class is the first index of the maximum logit (np.argmax's tie rule, and the RTL's)."""
    return np.argmax(np.asarray(logits), axis=-1)


def accuracy(logits, labels) -> float:
    """Share of images whose class (``classify``) is the label."""
    return float((classify(logits) == np.asarray(labels)).mean())


# How the float network may read its weights: the hardware's reading first. The others are
# what a state dict's weights may have been trained with (import checks; see model/train/readings.py).
POOLS = {"max": maxpool, "average": lambda x, size: _windows(x, size).mean(axis=(-3, -1))}
ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0), "tanh": np.tanh}


def float_forward(images, params, network: Network = LENET5, pool: str = "max", activation: str = "relu") -> np.ndarray:
    """The float network (no quantization) in numpy, for the float-accuracy figure; ``pool`` and
    ``activation`` read the same weights as another chain would (only import asks for that)."""
    images = check_images(images, network)
    check_shapes(params, network)
    pool_of, act = POOLS[pool], ACTIVATIONS[activation]
    outputs = []
    for start in range(0, len(images), BATCH):
        x = network.channels_first(images[start : start + BATCH]).astype(np.float64) / arith.PIXEL_MAX
        for layer in network.layers:
            w = np.asarray(params[f"{layer.name}.weight"], np.float64)
            b = np.asarray(params[f"{layer.name}.bias"], np.float64)
            if isinstance(layer, ConvLayer):
                k = layer.kernel
                win = sliding_window_view(x, (k, k), axis=(2, 3))
                y = np.einsum("nchwij,ocij->nohw", win, w, optimize=True) + b[None, :, None, None]
                x = pool_of(act(y), layer.pool)
            else:
                x = x.reshape(len(x), -1) @ w.T + b
                if not layer.last:
                    x = act(x)
        outputs.append(x)
    return np.concatenate(outputs)
