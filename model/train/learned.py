"""Learned per-layer sparsity and bit widths (the adaptive joint compression of seed paper 001,
made structured and hardware-aware), trained for a few epochs to give the greedy search its start.

Two kinds of learnable parameters ride along with the weights during quantization-aware training:

* **Sparsity** (every prunable layer the search may change): a parameter ``beta``; ``rho =
  sigmoid(beta)`` is the share of the layer's channels switched off. The threshold sits at rank
  ``rho * N`` of the channels ordered by L1 norm (weakest first): channel ``j`` of rank ``r`` is
  on when ``r + 1/2 > rho * N``. The forward pass multiplies each channel's weights and bias by
  this hard 0/1 gate; the backward pass uses the gradient of the soft gate
  ``sigmoid((r + 1/2 - rho * N) / T)`` (``T`` half a channel), so ``beta`` learns from the loss
  how much switching channels off hurts.
* **Bit width** (every layer whose ``--codes`` menu has more than one recipe): logits ``alpha``
  over the menu; the layer computes with ``sum(softmax(alpha)_i * Q_i(w))``, each ``Q_i`` the
  fake-quantized weights of recipe ``i`` (straight-through), as the paper's softmax-weighted
  quantization branches.

The loss adds a penalty for each budget the parameters can see: the network's MACs and its
weight bits, computed from the expected channel counts ``N * (1 - rho)`` and the expected bits
per weight ``sum(softmax(alpha)_i * bits_i)``: ``penalty * sum((metric / budget - 1)**2)``. It
pulls from both sides: above a budget it prunes, below it gives channels and bits back.

Three penalties were tried on LeNet-5 for 155,000 MACs (accuracy: Q2.6, after fine-tuning):

* one-sided, ``max(0, metric / budget - 1)``: once under the budget only the weak gradient of
  the cross-entropy through the channels next to each threshold acts on ``beta``; it settled at
  135,699 MACs (``4,9:93,69``), 99.27 %;
* two-sided on the expected counts (this one): 137,412 MACs (``4,9:98,75``), 99.25 %;
* two-sided on the hard gates' counts and the likeliest branch's bits (straight-through), aimed
  at 98 % of the budget: it used the budget, 151,440 MACs, but on a fifth conv1 filter at fc1's
  expense (``5,9:30,78``), 99.15 %; with the weight-bit budget too, 99.17 % against this one's
  99.28 %.

The first two are the same network within the noise. The expected counts differ from the hard
gates' by up to half a channel a layer, either way; the greedy search trims what is left over.

Afterwards each layer keeps the channels its hard gate leaves on and the recipe of largest ``alpha``;
the greedy search starts there (and only goes cheaper), so budgets the penalty could not see
(multipliers, cycles) or missed by rounding are still met.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import arith
from . import qat
from ..errors import InputError
from ..network import ConvLayer, Network
from ..search import Space, fit_codes
from ..progress import progress

GATE_TEMPERATURE = 0.5  # channels
START_SPARSITY = 0.05
GATE_LR = 0.02


class GatedLeNet(qat.QuantLeNet):
    """``QuantLeNet`` with sparsity gates and bit-width branches (see the module docstring)."""

    def __init__(self, arithmetic: arith.Arithmetic, network: Network, space: Space):
        super().__init__(arithmetic, network)
        self.space = space
        self.gated = {name: lo for name, (lo, hi, _) in space.counts.items() if lo < hi}
        self.beta = nn.ParameterDict({name: nn.Parameter(torch.tensor(math.log(START_SPARSITY / (1 - START_SPARSITY))))
                                      for name in self.gated})
        self.branched = {name: menu for name, menu in space.menus.items() if len(menu) > 1}
        self.alpha = nn.ParameterDict({name: nn.Parameter(torch.zeros(len(menu))) for name, menu in self.branched.items()})
        self.branches: dict[str, list] = {}
        self.refit()

    def weights_and_biases(self) -> dict[str, np.ndarray]:
        return {f"{layer.name}.{kind}": getattr(getattr(self, layer.name), kind).detach().numpy().copy()
                for layer in self.layers for kind in ("weight", "bias")}

    def refit(self):
        """Fit every branch's restriction (and the single-recipe layers') to the current weights."""
        params = self.weights_and_biases()
        self.codes = fit_codes(params, self.network, {name: menu[0] for name, menu in self.space.menus.items()
                                                      if name not in self.branched})
        self.branches = {name: [fit_codes(params, self.network, {name: recipe})[name] for recipe in menu]
                         for name, menu in self.branched.items()}

    def sparsity(self, name: str) -> torch.Tensor:
        """rho * N: the channels switched off (fractional), capped at N - fewest."""
        n = self._channels(name)
        return torch.clamp(torch.sigmoid(self.beta[name]) * n, max=n - self.gated[name])

    def _channels(self, name: str) -> int:
        return self.space.counts[name][1]

    def gate(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        norms = weight.detach().abs().reshape(len(weight), -1).sum(dim=1)
        # rank 0 is the weakest; of equal norms the higher index goes first, as in prune.strongest
        rank = torch.empty_like(norms)
        rank[torch.argsort(-norms, stable=True)] = torch.arange(len(norms) - 1, -1, -1, dtype=norms.dtype)
        margin = rank + 0.5 - self.sparsity(name)
        soft = torch.sigmoid(margin / GATE_TEMPERATURE)
        return soft + ((margin > 0).to(soft.dtype) - soft).detach()

    def layer_parameters(self, layer):
        module = getattr(self, layer.name)
        w, b = module.weight, module.bias
        if layer.name in self.branched:
            probs = F.softmax(self.alpha[layer.name], dim=0)
            wq = sum(p * qat.restrict_weight(w, r) for p, r in zip(probs, self.branches[layer.name]))
        else:
            wq = qat.restrict_weight(w, self.codes[layer.name])
        bq = qat.quantize_weight(b)
        if layer.name in self.gated:
            m = self.gate(layer.name, w)
            wq = wq * m.reshape(-1, *([1] * (wq.dim() - 1)))
            bq = bq * m
        return wq, bq

    # ---- what the budgets see, differentiably ----

    def switched_off(self, name: str) -> torch.Tensor:
        """Channels the hard gates switch off: those of rank r with r + 1/2 <= rho * N."""
        return torch.floor(self.sparsity(name).detach() + 0.5)

    def expected_counts(self) -> dict[str, torch.Tensor]:
        """Channels on per layer, ``N - rho * N`` (fractional)."""
        counts = {}
        for layer in self.layers[:-1]:
            n = float(layer.out_channels if isinstance(layer, ConvLayer) else layer.out_features)
            counts[layer.name] = n - self.sparsity(layer.name) if layer.name in self.gated else torch.tensor(n)
        return counts

    def expected_bits(self, name: str) -> torch.Tensor:
        """Bits per weight: the softmax-weighted mean over the layer's branches."""
        if name in self.branched:
            bits = torch.tensor([float(r.bits) for r in self.space.menus[name]])
            return (F.softmax(self.alpha[name], dim=0) * bits).sum()
        return torch.tensor(float(self.space.menus[name][0].bits))

    def expected_cost(self) -> dict[str, torch.Tensor]:
        """MACs and weight bits of the network the gates and branches describe."""
        counts = self.expected_counts()
        macs = torch.zeros(())
        bits = torch.zeros(())
        inputs = torch.tensor(1.0)  # the image's one channel
        for layer in self.layers:
            out = counts.get(layer.name, torch.tensor(float(self.network.classes)))
            if isinstance(layer, ConvLayer):
                weights = inputs * out * layer.kernel**2
                macs = macs + weights * layer.conv_size**2
                # the next conv takes these channels; a linear layer each channel's whole map
                inputs = out if layer is not self.network.conv_layers[-1] else out * layer.out_size**2
            else:
                weights = inputs * out
                macs = macs + weights
                inputs = out
            bits = bits + weights * self.expected_bits(layer.name)
        return {"macs": macs, "weight_bits": bits}

    def choices(self) -> tuple[dict[str, int], dict[str, int]]:
        """The channel counts and menu indices the training arrived at."""
        counts = {name: int(self._channels(name) - self.switched_off(name).item()) for name in self.gated}
        recipes = {name: int(torch.argmax(self.alpha[name])) for name in self.branched}
        return counts, recipes


def learn(params: dict, network: Network, arithmetic: arith.Arithmetic, space: Space, train_split, config,
          generator: torch.Generator, log=print) -> tuple[dict, Space]:
    """Train the gates and branches with the weights for ``config.learned_epochs``; returns the
    trained float weights and the search space narrowed to start at what they chose."""
    visible = {metric: limit for metric, limit in config.budgets.items() if metric in ("macs", "weight_bits")}
    if not visible:
        raise InputError("--method learned needs a budget it can learn towards: --max-macs or --max-weight-bits")
    model = GatedLeNet(arithmetic, network, space)
    model.load_state_dict({name: torch.from_numpy(np.asarray(v, np.float32)) for name, v in params.items()},
                          strict=False)
    model.refit()
    gates = list(model.beta.parameters()) + list(model.alpha.parameters())
    weights = [p for name, p in model.named_parameters() if not name.startswith(("beta.", "alpha."))]
    optimizer = torch.optim.Adam([{"params": weights, "lr": config.lr}, {"params": gates, "lr": GATE_LR}])
    images = torch.from_numpy(np.array(train_split.images))
    labels = torch.from_numpy(train_split.labels.astype(np.int64))
    steps = math.ceil(len(images) / config.batch_size)
    model.train()
    for epoch in range(config.learned_epochs):
        model.refit()
        order = torch.randperm(len(images), generator=generator)
        bar = progress(range(steps), desc=f"learn sparsity and bits {epoch + 1}/{config.learned_epochs}", unit="batch")
        for step in bar:
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            x = qat.random_shift(images[idx], config.shift, generator)
            loss = F.cross_entropy(model(x), labels[idx])
            expected = model.expected_cost()
            off = sum((expected[metric] / limit - 1) ** 2 for metric, limit in visible.items())
            total = loss + config.learned_penalty * off
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if step % 20 == 0:
                bar.set_postfix_str(f"loss {loss.item():.3f} " + " ".join(
                    f"{metric} {expected[metric].item():,.0f}" for metric in visible))
    counts, recipes = model.choices()
    log("learned: " + ", ".join([f"{name} {count} of {space.counts[name][1]} channels" for name, count in counts.items()]
                                + [f"{name} {space.menus[name][i]}" for name, i in recipes.items()]))
    trained = model.weights_and_biases()
    narrowed = Space(
        counts={name: (lo, counts.get(name, hi), step) for name, (lo, hi, step) in space.counts.items()},
        menus={name: menu[recipes.get(name, 0):] for name, menu in space.menus.items()},
    )
    return trained, narrowed
