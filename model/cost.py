"""What a network costs in hardware: its MACs and the bits of its weight codes, and, from a cost
model handed in (``hdl.cost.generator_cost_model``: the design a preset builds and its per-block
report), the multipliers, memory bits and cycles of its design.

The compression search weighs these figures against accuracy, so it asks the generator instead
of guessing: when the generator learns to pack k-bit codes or to build shift multipliers, the
costs the search sees follow (the weight file handed to it carries the restrictions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from collections.abc import Callable

from .codes import Restriction, weight_bits
from .network import Network

# What the reward can weigh: every field of Cost. The last three need the generator.
METRICS = ("macs", "weight_bits", "multipliers", "memory_bits", "cycles")
GENERATOR_METRICS = ("multipliers", "memory_bits", "cycles")


@dataclass(frozen=True)
class Cost:
    """One network's hardware figures.

    Attributes
    ----------
    macs : int
        Multiply-accumulates per image.
    weight_bits : int
        Bits of all weight codes: each layer's weight count times its bits per code.
    multipliers : int
        Multipliers of the design the preset builds.
    memory_bits : int
        Block RAM bits of that design (weights, biases, line buffers, queues).
    cycles : int
        Cycles per image of its slowest block: the streaming design's layers overlap, so this
        bounds the interval between images.
    preset : str
        The generator preset these figures are for.

    The generator's figures are None in a cost computed without it (``network_cost``): the
    search asks the cost model only when a budget or the reward weighs one of them.
    """

    macs: int
    weight_bits: int
    multipliers: int | None
    memory_bits: int | None
    cycles: int | None
    preset: str | None

    def to_dict(self) -> dict:
        return asdict(self)

    def relative(self, reference: "Cost", weights: dict[str, float]) -> float:
        """The weighted mean of this cost's metrics, each divided by ``reference``'s."""
        total = sum(weights.values())
        return sum(w * getattr(self, name) / max(getattr(reference, name), 1) for name, w in weights.items()) / total


# A cost model: the full ``Cost`` of a network with weight codes (the generator's figures
# included). The compression search is handed one (``hdl.cost.generator_cost_model``: the
# design a preset builds) so that the model layer never imports the generator.
CostModel = Callable[[Network, dict[str, Restriction]], Cost]


def network_cost(network: Network, codes: dict[str, Restriction]) -> Cost:
    """The figures that need no design: MACs and the bits of the weight codes."""
    return Cost(network.macs, weight_bits(network, codes), None, None, None, None)
