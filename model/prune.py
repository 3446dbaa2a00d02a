"""Structured pruning: drop whole conv filters and fully connected neurons, leaving a physically
smaller ``Network`` (fewer engines' multipliers, fewer weight words, fewer cycles), not a masked one.

Dropping output channel ``j`` of a layer removes its weights and bias and, in the next layer, the
inputs that channel fed: the next conv layer's input channel ``j``, or, after the last conv layer,
the ``out_size**2`` columns of the first linear layer that hold channel ``j`` (the flatten is
channel-major), or the next linear layer's column ``j``. The last layer's outputs (the classes)
are never pruned.

The criterion is the L1 norm of a channel's weights (the sum of |w| over its filter or its row of
the weight matrix): the channels with the smallest norms go first.

A channel whose weights and bias are all zero computes zero in every arithmetic (requantize(0)
is 0, ReLU and max-pool keep it), so the network with such channels zero-filled (``zero_fill``)
and the network with them removed (``prune``) have the same logits, bit for bit. The search in
``compress`` relies on it: it scores a "fake pruned" network, one whose dropped channels are
zero, by evaluating the smaller network.
"""

from __future__ import annotations

import numpy as np

from .network import ConvLayer, ConvSpec, Network, NetworkError


def prunable(network: Network) -> tuple[str, ...]:
    """Layers whose outputs may be pruned: all but the last (whose outputs are the classes)."""
    return tuple(layer.name for layer in network.layers[:-1])


def channel_importance(params: dict, network: Network) -> dict[str, np.ndarray]:
    """L1 norm of each output channel's weights, for every prunable layer."""
    result = {}
    for name in prunable(network):
        weight = np.abs(np.asarray(params[f"{name}.weight"], np.float64))
        result[name] = weight.reshape(len(weight), -1).sum(axis=1)
    return result


def strongest(importance: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` channels of largest importance, ascending (equal importance:
    the lower index stays)."""
    importance = np.asarray(importance)
    if not 1 <= count <= len(importance):
        raise NetworkError(f"cannot keep {count} of {len(importance)} channels")
    order = np.argsort(-importance, kind="stable")
    return np.sort(order[:count])


def select(params: dict, network: Network, counts: dict[str, int]) -> dict[str, np.ndarray]:
    """For each layer in ``counts``, the channels to keep: the ``count`` of largest L1 norm."""
    unknown = set(counts) - set(prunable(network))
    if unknown:
        raise NetworkError(f"cannot prune {', '.join(sorted(unknown))}: the prunable layers of {network.spec} "
                           f"are {', '.join(prunable(network))}")
    importance = channel_importance(params, network)
    return {name: strongest(importance[name], count) for name, count in counts.items()}


def counts_of(network: Network) -> dict[str, int]:
    """Output channels of every prunable layer."""
    return {layer.name: (layer.out_channels if isinstance(layer, ConvLayer) else layer.out_features)
            for layer in network.layers[:-1]}


def pruned_network(network: Network, counts: dict[str, int]) -> Network:
    """``network`` with the given output channels in the named layers."""
    unknown = set(counts) - set(prunable(network))
    if unknown:
        raise NetworkError(f"cannot prune {', '.join(sorted(unknown))}: the prunable layers of {network.spec} "
                           f"are {', '.join(prunable(network))}")
    convs = tuple(ConvSpec(counts.get(layer.name, layer.out_channels), layer.kernel, layer.pool)
                  for layer in network.conv_layers)
    hidden = tuple(counts.get(layer.name, layer.out_features) for layer in network.linear_layers[:-1])
    return Network(convs, hidden, network.classes, network.image_size, network.input_channels)


def prune(params: dict, network: Network, keep: dict[str, np.ndarray]) -> tuple[dict, Network]:
    """The smaller network that keeps only channels ``keep[name]`` (indices) of the named layers,
    and its parameters (any dtype; the arrays are copies)."""
    keep = {name: np.asarray(indices) for name, indices in keep.items()}
    for name, indices in keep.items():
        count = counts_of(network).get(name)
        if count is None:
            raise NetworkError(f"cannot prune {name}: the prunable layers of {network.spec} are "
                               f"{', '.join(prunable(network))}")
        if (indices.ndim != 1 or len(indices) == 0 or len(np.unique(indices)) != len(indices)
                or indices.min() < 0 or indices.max() >= count):
            raise NetworkError(f"{name}: channels to keep must be distinct indices in 0..{count - 1}, "
                               f"not {indices.tolist()}")
    smaller = pruned_network(network, {name: len(indices) for name, indices in keep.items()})
    result, previous = {}, None
    for layer in network.layers:
        kept_in = None if previous is None else keep.get(previous.name)
        weight, bias = prune_layer(params, network, layer.name, kept_in, keep.get(layer.name))
        result[f"{layer.name}.weight"], result[f"{layer.name}.bias"] = weight, bias
        previous = layer
    return result, smaller


def prune_layer(params: dict, network: Network, name: str, kept_in: np.ndarray | None,
                kept_out: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """One layer's weight and bias (copies) when the layer before keeps channels ``kept_in`` and
    this one ``kept_out`` (None: all of them)."""
    index = network.names.index(name)
    layer, previous = network.layers[index], network.layers[index - 1] if index else None
    weight = np.asarray(params[f"{name}.weight"])
    bias = np.asarray(params[f"{name}.bias"])
    outputs = np.arange(len(weight)) if kept_out is None else np.asarray(kept_out)
    if kept_in is None:
        columns = np.arange(weight.shape[1])
    elif isinstance(previous, ConvLayer) and not isinstance(layer, ConvLayer):
        # the first linear layer: each kept channel of the last conv is out_size**2 columns
        area = previous.out_size**2
        columns = (np.asarray(kept_in)[:, None] * area + np.arange(area)[None, :]).reshape(-1)
    else:
        columns = np.asarray(kept_in)
    return weight[outputs][:, columns].copy(), bias[outputs].copy()


def zero_fill(params: dict, network: Network, keep: dict[str, np.ndarray]) -> dict:
    """The same network with every channel not in ``keep`` zeroed (weights and bias): "fake
    pruning", whose logits equal those of ``prune``'s smaller network."""
    result = {name: np.array(value) for name, value in params.items()}
    for name, indices in keep.items():
        dropped = np.setdiff1d(np.arange(len(result[f"{name}.weight"])), indices)
        result[f"{name}.weight"][dropped] = 0
        result[f"{name}.bias"][dropped] = 0
    return result
