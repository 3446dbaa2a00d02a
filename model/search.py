"""The search over per-layer channel counts and weight-code restrictions: greedy, on "fake
pruned" networks scored without retraining, with a reward that weighs the generator's cost
model against accuracy.

A point of the search is, for every layer, how many output channels it keeps and which
restriction recipe (``codes.Recipe``) its weights use. Scoring a point costs one forward pass:
the start network's channels of smallest L1 norm are dropped (the fake-pruned network, run in
its smaller form, which has the same logits), each layer's restriction is fitted to its weights
and the weights projected onto it, and the golden model runs a few thousand training images
through the network, layer by layer, with each layer's output kept for the next points that
share the layers up to it.
Nothing is trained during the search: it ranks points by how much they lose before fine-tuning,
as fake pruning does, and only the point it ends at is fine-tuned.

Every step looks at each single move from the current point (one layer gives up ``step``
channels, or moves to the next cheaper recipe of its menu) and takes one:

* while a budget (``--max-macs``, ``--max-weight-bits``, ...) is exceeded, the move that loses
  the least per unit of progress towards the budgets, ``max(loss increase, 1e-4) / (V - V')``,
  where ``V = sum(max(0, metric / budget - 1))`` over the budgets;
* once every budget holds, the move that raises the reward ``-loss - tradeoff * cost``, where
  ``cost`` is the weighted mean of the hardware metrics relative to the start network; the
  search stops when no move raises it. With ``tradeoff`` 0 (the default) it stops as soon as
  the budgets hold.

The loss is the mean cross-entropy of the integer logits (in value units): a finer measure than
the accuracy on a few thousand images, where most moves change no answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import arith, golden, prune
from .codes import PLAIN, Recipe, Restriction
from .cost import GENERATOR_METRICS, METRICS, Cost, CostModel, network_cost
from .errors import InputError
from .network import ConvLayer, Network
from .progress import progress

# A move that loses nothing still counts as losing this much: among harmless moves, the one
# with the largest progress wins.
LOSS_FLOOR = 1e-4


@dataclass(frozen=True)
class Space:
    """What the search may change.

    Attributes
    ----------
    counts : dict
        Layer name -> (fewest, most, step) output channels, for the layers it may prune (others keep theirs).
    menus : dict
        Layer name -> recipes in the order the search tries them (the first is where it starts);
        a layer it does not name is plain 8-bit.
    """

    counts: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    menus: dict[str, tuple[Recipe, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Point:
    """Channels kept per prunable layer and the index into each layer's menu."""

    counts: tuple[tuple[str, int], ...]
    choices: tuple[tuple[str, int], ...]

    def replace(self, name: str, *, count: int | None = None, choice: int | None = None) -> "Point":
        counts, choices = dict(self.counts), dict(self.choices)
        if count is not None:
            counts[name] = count
        if choice is not None:
            choices[name] = choice
        return Point(tuple(counts.items()), tuple(choices.items()))


@dataclass(frozen=True)
class Score:
    """A point scored: the network and restrictions it stands for, its loss and accuracy on
    the search images (before any fine-tuning) and its hardware cost."""

    point: Point
    network: Network
    recipes: dict[str, Recipe]
    codes: dict[str, Restriction]
    loss: float
    accuracy: float
    cost: Cost

    def describe(self) -> str:
        recipes = ",".join(f"{name}={recipe}" for name, recipe in self.recipes.items())
        text = (f"{self.network.spec} [{recipes}] loss {self.loss:.4f} accuracy {self.accuracy:.2%} "
                f"MACs {self.cost.macs:,} weight bits {self.cost.weight_bits:,}")
        if self.cost.multipliers is not None:
            text += f" multipliers {self.cost.multipliers:,} cycles {self.cost.cycles:,}"
        return text

    def to_dict(self) -> dict:
        figures = {name: value for name, value in self.cost.to_dict().items() if value is not None}
        return {"network": self.network.spec, "codes": {n: str(r) for n, r in self.recipes.items()},
                "loss": round(self.loss, 5), "accuracy": self.accuracy, **figures}


def cross_entropy(integer_logits: np.ndarray, labels: np.ndarray, logit_frac: int = 2 * arith.FRAC_BITS) -> float:
    """Mean cross-entropy of integer logits (units of 2**-logit_frac), computed in float64 numpy
    so that it does not depend on the number of threads."""
    z = np.asarray(integer_logits, np.float64) / (1 << logit_frac)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def fit_codes(params: dict, network: Network, recipes: dict[str, Recipe]) -> dict[str, Restriction]:
    """Each named layer's restriction, fitted to its float weights (in code units)."""
    return {name: recipe.fit(np.asarray(params[f"{name}.weight"], np.float64) * arith.SCALE)
            for name, recipe in recipes.items()}


class Search:
    """Greedy search from ``params`` (float, the start network) over ``space``.

    Parameters
    ----------
    params, network, arithmetic
        The start network's float weights, its description and the arithmetic.
    space : Space
    images, labels
        The images that score a point (training images: the test set stays unseen).
    budgets : dict
        Metric (``cost.METRICS``) -> largest allowed value.
    tradeoff : float
        Loss the search gives up for the whole cost of the start network (0: stop at the budgets).
    cost_weights : dict
        Metric -> weight in the reward's cost.
    cost_model : CostModel, optional
        The figures of a network's design (``hdl.cost.generator_cost_model``); needed only when
        a budget or the reward weighs one of ``cost.GENERATOR_METRICS``.
    """

    def __init__(self, params: dict, network: Network, arithmetic: arith.Arithmetic, space: Space,
                 images: np.ndarray, labels: np.ndarray, budgets: dict[str, int] | None = None,
                 tradeoff: float = 0.0, cost_weights: dict[str, float] | None = None,
                 cost_model: CostModel | None = None):
        self.params, self.network, self.arithmetic, self.space = params, network, arithmetic, space
        self.images, self.labels = images, np.asarray(labels, np.int64)
        self.budgets = dict(budgets or {})
        unknown = (set(self.budgets) | set(cost_weights or {})) - set(METRICS)
        if unknown:
            raise InputError(f"unknown cost metric(s) {', '.join(sorted(unknown))}; choose from {', '.join(METRICS)}")
        self.tradeoff = tradeoff
        self.cost_weights = dict(cost_weights or {"weight_bits": 1.0, "multipliers": 1.0, "cycles": 1.0})
        # The cost model is asked (a design built per point: slow) only if its figures count.
        weighed = set(self.budgets) | (set(self.cost_weights) if tradeoff > 0 else set())
        needed = sorted(weighed & set(GENERATOR_METRICS))
        if needed and cost_model is None:
            raise InputError(f"the search weighs {', '.join(needed)}: it needs a cost model of the generator")
        self.cost_model = cost_model if needed else network_cost
        self.importance = prune.channel_importance(params, network)
        self._scores: dict[Point, Score] = {}
        self._layers: dict[tuple, tuple] = {}
        self._outputs: dict[tuple, np.ndarray] = {}
        self._pixels = network.channels_first(arith.quantize_pixels(np.asarray(images)))
        self.evaluations = 0
        self.start = Point(
            tuple((name, most) for name, (_, most, _) in space.counts.items()),
            tuple((name, 0) for name in space.menus),
        )
        self.reference = self.score(Point(
            tuple((name, count) for name, count in prune.counts_of(network).items()),
            tuple((name, 0) for name in space.menus))).cost

    # ---- scoring ----

    def realize(self, point: Point) -> tuple[dict, Network, dict[str, np.ndarray], dict[str, Recipe]]:
        """The pruned float parameters, network, kept channels and recipes of ``point``."""
        keep = {name: self._keep(name, count) for name, count in point.counts}
        params, network = prune.prune(self.params, self.network, keep)
        recipes = {name: self.space.menus[name][index] for name, index in point.choices}
        return params, network, keep, recipes

    def score(self, point: Point) -> Score:
        if point not in self._scores:
            counts = dict(point.counts)
            logits = self._output(point, len(self.network.layers) - 1)
            codes = {layer.name: self._layer(point, i)[2] for i, layer in enumerate(self.network.layers)
                     if layer.name in self.space.menus}
            network = prune.pruned_network(self.network, counts)
            recipes = {name: self.space.menus[name][index] for name, index in point.choices}
            accuracy = float((golden.classify(logits) == self.labels).mean())
            cost = self.cost_model(network, codes)
            loss = cross_entropy(logits, self.labels, self.arithmetic.logit_frac(self.network))
            self._scores[point] = Score(point, network, recipes, codes, loss, accuracy, cost)
            self.evaluations += 1
        return self._scores[point]

    # The golden model layer by layer, each layer's output cached by the choices it depends on
    # (its own and those of the layers before it): a move changes one layer, so only the layers
    # from there on are computed again, and most moves are in the small linear layers.

    def _keep(self, name: str, count: int | None) -> np.ndarray | None:
        return None if count is None else prune.strongest(self.importance[name], count)

    def _layer(self, point: Point, index: int):
        """Layer ``index``'s weight codes, bias codes and restriction at ``point``."""
        counts, choices = dict(point.counts), dict(point.choices)
        layer = self.network.layers[index]
        before = self.network.layers[index - 1].name if index else None
        key = (index, counts.get(before), counts.get(layer.name), choices.get(layer.name))
        if key not in self._layers:
            weight, bias = prune.prune_layer(self.params, self.network, layer.name,
                                             self._keep(before, counts.get(before)) if before else None,
                                             self._keep(layer.name, counts.get(layer.name)))
            values = np.asarray(weight, np.float64) * arith.SCALE
            if layer.name in choices:
                restriction = self.space.menus[layer.name][choices[layer.name]].fit(values)
            else:
                restriction = PLAIN
            self._layers[key] = (restriction.project(values), arith.quantize_weights(bias), restriction)
        return self._layers[key]

    def _output(self, point: Point, index: int) -> np.ndarray:
        """Layer ``index``'s output codes (the logits for the last layer) on the search images."""
        counts, choices = dict(point.counts), dict(point.choices)
        key = tuple((counts.get(layer.name), choices.get(layer.name)) for layer in self.network.layers[: index + 1])
        if key not in self._outputs:
            x = self._pixels if index == 0 else self._output(point, index - 1)
            weight, bias, _ = self._layer(point, index)
            layer = self.network.layers[index]
            a = self.arithmetic.layers(self.network)[index]
            parts = []
            for start in range(0, len(x), golden.BATCH):
                part = x[start : start + golden.BATCH]
                if isinstance(layer, ConvLayer):
                    acc = golden.conv_accumulate(part, weight, bias, a.bias_shift)
                    parts.append(golden.maxpool(a.activate(acc), layer.pool).astype(np.int8))
                else:
                    acc = golden.linear_accumulate(part.reshape(len(part), -1), weight, bias, a.bias_shift)
                    parts.append(acc if layer.last else a.activate(acc).astype(np.int8))
            self._outputs[key] = np.concatenate(parts)
        return self._outputs[key]

    def violation(self, score: Score) -> float:
        return sum(max(0.0, getattr(score.cost, metric) / limit - 1) for metric, limit in self.budgets.items())

    def reward(self, score: Score) -> float:
        return -score.loss - self.tradeoff * score.cost.relative(self.reference, self.cost_weights)

    # ---- moves ----

    def moves(self, point: Point) -> list[Point]:
        """Every point one step cheaper than ``point``, in network order."""
        result = []
        for name, count in point.counts:
            fewest, _, step = self.space.counts[name]
            if count > fewest:
                result.append(point.replace(name, count=max(fewest, count - step)))
        for name, index in point.choices:
            if index + 1 < len(self.space.menus[name]):
                result.append(point.replace(name, choice=index + 1))
        return result

    def run(self, log=print) -> tuple[Score, list[dict]]:
        """Search from the start point; returns the point it ends at and its path (one entry a step)."""
        current = self.score(self.start)
        if self.budgets:
            cheapest = self.score(self.cheapest)
            if self.violation(cheapest) > 0:
                raise InputError(f"the budgets {self._budget_text()} cannot be met in the search space: even its "
                                 f"cheapest point, {cheapest.describe()}, exceeds them")
        path = [{"move": "start", **current.to_dict()}]
        with progress(desc="search", unit="step", leave=True) as bar:
            current = self._descend(current, path, bar)
        log(f"search: {len(path) - 1} steps, {self.evaluations} points scored; chose {current.describe()}")
        return current, path

    @property
    def cheapest(self) -> Point:
        """Every layer at its fewest channels and the last recipe of its menu."""
        return Point(tuple((name, self.space.counts[name][0]) for name, _ in self.start.counts),
                     tuple((name, len(self.space.menus[name]) - 1) for name, _ in self.start.choices))

    def _descend(self, current: Score, path: list, bar) -> Score:
        bar.set_postfix_str(self._summary(current))
        while True:
            candidates = [(move, self.score(move)) for move in self.moves(current.point)]
            v = self.violation(current)
            if v > 0:
                progress = [(c, v - self.violation(s)) for c, s in candidates]
                useful = [(c, p) for c, p in progress if p > 0]
                if not useful:
                    raise InputError(f"the budgets {self._budget_text()} cannot be met in the search space: "
                                     f"the cheapest point reached is {current.describe()}")
                best = min(useful, key=lambda cp: max(self.score(cp[0]).loss - current.loss, LOSS_FLOOR) / cp[1])[0]
            elif self.tradeoff == 0:
                break
            else:
                better = [c for c, s in candidates if self.reward(s) > self.reward(current)]
                if not better:
                    break
                best = max(better, key=lambda c: self.reward(self.score(c)))
            chosen = self.score(best)
            path.append({"move": self.move_text(current.point, best), **chosen.to_dict()})
            current = chosen
            bar.update(1)
            bar.set_postfix_str(self._summary(current))
        return current

    def move_text(self, before: Point, after: Point) -> str:
        for (name, a), (_, b) in zip(before.counts, after.counts):
            if a != b:
                return f"{name} {a}->{b} channels"
        for (name, a), (_, b) in zip(before.choices, after.choices):
            if a != b:
                return f"{name} codes {self.space.menus[name][a]}->{self.space.menus[name][b]}"
        return "none"

    def _summary(self, score: Score) -> str:
        return f"{score.network.spec} loss {score.loss:.3f} acc {score.accuracy:.2%} " + " ".join(
            f"{metric} {getattr(score.cost, metric):,}" for metric in (self.budgets or {"macs": 0, "weight_bits": 0}))

    def _budget_text(self) -> str:
        return ", ".join(f"{metric} <= {limit:,}" for metric, limit in self.budgets.items())


def default_step(channels: int, conv: bool) -> int:
    """Channels one search step removes: one filter of a conv layer, about a twelfth of a
    linear layer's neurons."""
    return 1 if conv else max(1, math.ceil(channels / 12))
