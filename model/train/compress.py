"""Compression of a trained network into one that costs less hardware: fewer channels (structured
pruning), restricted weight codes (``codes``), chosen by a search against the generator's cost
model, then quantization-aware fine-tuning with the restrictions in place.

The steps (``compress``):

1. Start from a trained network's float weights (its ``-float.npz``, or its codes / 64).
2. Choose each layer's channel count and weight-code recipe: ``search.Search`` (greedy on fake
   pruned networks), optionally after ``learned.learn`` (per-layer learnable sparsity and
   bit-width branches, trained, that give the greedy search its starting point).
3. Prune: keep each layer's channels of largest L1 norm, a physically smaller ``Network``.
4. Fine-tune with quantization-aware training, each restricted layer's weights projected onto
   its codes in the forward pass (straight-through backward). The restrictions are refitted to
   the weights at the start of every epoch; the last epoch trains with the ones exported.

``docs/compression.md`` describes the methods, the options and the shipped results.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .. import arith, prune
from . import qat
from ..codes import CodesError, Recipe, Restriction
from ..cost import CostModel
from ..errors import InputError
from ..network import ConvLayer, Network
from ..search import Score, Search, Space, default_step, fit_codes

GROUPS = ("all", "conv", "fc")  # --codes may name these instead of single layers


@dataclass(frozen=True)
class CompressConfig:
    """Everything that decides a compressed network; recorded in its manifest.

    Attributes
    ----------
    budgets : dict
        Cost metric -> largest allowed value (``cost.METRICS``).
    channels : dict
        Layer -> fixed output channels (the search leaves these layers alone).
    codes : dict
        Layer or group (all, conv, fc) -> recipe menu, e.g. ``"4/3/t"`` (the search picks among
        the recipes, trying them in order; one recipe is fixed). Later entries override earlier.
    method : str
        ``greedy`` (the search alone) or ``learned`` (learned sparsity and bit widths first).
    """

    seed: int = 1
    epochs: int = 10
    lr: float = 5e-4
    batch_size: int = 128
    shift: int = 2  # random translation of training images while fine-tuning, pixels
    budgets: dict = field(default_factory=dict)
    channels: dict = field(default_factory=dict)
    codes: dict = field(default_factory=dict)
    method: str = "greedy"
    search_images: int = 4000
    min_keep: float = 0.25
    tradeoff: float = 0.0
    cost_weights: dict = field(default_factory=lambda: {"weight_bits": 1.0, "multipliers": 1.0, "cycles": 1.0})
    preset: str = "baseline"
    learned_epochs: int = 3
    learned_penalty: float = 2.0
    overflow_weight: float = 10.0  # wrap-mode overflow penalty, as in training

    def to_dict(self) -> dict:
        return asdict(self)


def menus_from(spec: dict[str, str], network: Network) -> dict[str, tuple[Recipe, ...]]:
    """Every layer's recipe menu: 8-bit unless ``spec`` (layer or group -> ``"K/t/pK..."``) says otherwise."""
    menus = {name: (Recipe.parse("8"),) for name in network.names}
    for key, text in spec.items():
        if key == "all":
            names = network.names
        elif key == "conv":
            names = tuple(layer.name for layer in network.conv_layers)
        elif key == "fc":
            names = tuple(layer.name for layer in network.linear_layers)
        elif key in network.names:
            names = (key,)
        else:
            raise InputError(f"--codes names {key!r}: use a layer of {network.spec} ({', '.join(network.names)}) "
                             f"or a group ({', '.join(GROUPS)})")
        try:
            recipes = tuple(Recipe.parse(part) for part in str(text).split("/"))
        except CodesError as e:
            raise InputError(f"--codes {key}={text}: {e}") from None
        for name in names:
            menus[name] = recipes
    return menus


def space_from(config: CompressConfig, network: Network) -> Space:
    """The search space: fixed layers at their counts, the others from ``min_keep`` of their
    channels up, when there is something to search for (a budget or a trade-off)."""
    full = prune.counts_of(network)
    if not 0 < config.min_keep <= 1:
        raise InputError(f"--min-keep must be a share of the channels, above 0 and at most 1, not {config.min_keep}")
    # A NaN trade-off compares false with everything, an infinite or negative one inverts the
    # search: each is a run that ends with nonsense, not an error, unless refused here.
    for label, value in (("--tradeoff", config.tradeoff), *((f"--cost-weights {metric}", weight)
                                                            for metric, weight in config.cost_weights.items())):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputError(f"{label} must be a finite number, 0 or more, not {value!r}")
    for name, count in config.channels.items():
        if name not in full:
            raise InputError(f"--channels names {name!r}: the prunable layers of {network.spec} are "
                             f"{', '.join(full)} (the last layer's outputs are the classes)")
        if not 1 <= count <= full[name]:
            raise InputError(f"--channels {name}={count}: {name} has {full[name]} channels (keep 1..{full[name]})")
    searching = bool(config.budgets) or config.tradeoff > 0
    counts = {}
    for layer in network.layers[:-1]:
        n = full[layer.name]
        if layer.name in config.channels:
            counts[layer.name] = (config.channels[layer.name],) * 2 + (1,)
        elif searching:
            counts[layer.name] = (max(1, math.ceil(config.min_keep * n)), n,
                                  default_step(n, isinstance(layer, ConvLayer)))
        else:
            counts[layer.name] = (n, n, 1)
    return Space(counts, menus_from(config.codes, network))


@dataclass
class Result:
    """A compressed network: the fine-tuned fake-quant model and how it was chosen."""

    model: qat.QuantLeNet
    network: Network
    codes: dict[str, Restriction]
    recipes: dict[str, Recipe]
    kept: dict[str, list[int]]
    chosen: Score
    path: list[dict]
    seconds: float


def search_split(n_train: int, count: int, seed: int) -> np.ndarray:
    """Indices of the training images that score the search's points (seeded, ascending)."""
    count = min(count, n_train)
    return np.sort(np.random.default_rng(seed).choice(n_train, count, replace=False))


def compress(params: dict, network: Network, arithmetic: arith.Arithmetic, train_split, config: CompressConfig,
             log=print, cost_model: CostModel | None = None) -> Result:
    """Search, prune and fine-tune (see the module docstring). ``params`` are the start
    network's float weights; ``train_split`` has the network's image size; ``cost_model`` gives
    the search the figures of a network's design (``hdl.cost.generator_cost_model``)."""
    started = time.time()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    space = space_from(config, network)
    chosen_at = search_split(len(train_split.labels), config.search_images, config.seed)
    search_images, search_labels = train_split.images[chosen_at], train_split.labels[chosen_at]

    if config.method == "learned":
        from .learned import learn

        params, space = learn(params, network, arithmetic, space, train_split, config, generator, log)
    elif config.method != "greedy":
        raise InputError(f"unknown compression method {config.method!r} (greedy or learned)")

    search = Search(params, network, arithmetic, space, search_images, search_labels, config.budgets,
                    config.tradeoff, config.cost_weights, cost_model)
    chosen, path = search.run(log)
    pruned, smaller, keep, recipes = search.realize(chosen.point)

    model = qat.QuantLeNet(arithmetic, smaller, fit_codes(pruned, smaller, recipes))
    model.load_state_dict({name: torch.from_numpy(np.asarray(value, np.float32)) for name, value in pruned.items()})

    def refit(epoch):
        with torch.no_grad():
            model.codes = fit_codes(model.float_params(), smaller, recipes)

    images = torch.from_numpy(np.array(train_split.images))
    labels = torch.from_numpy(train_split.labels.astype(np.int64))
    penalty = config.overflow_weight if arithmetic.wraps else 0.0
    qat._run_epochs(model, images, labels, config.epochs, config.lr, config, generator, "fine-tune", penalty,
                    before_epoch=refit)
    model.eval()
    kept = {name: [int(i) for i in indices] for name, indices in keep.items()
            if len(indices) < prune.counts_of(network)[name]}
    return Result(model, smaller, dict(model.codes), recipes, kept, chosen, path, time.time() - started)
