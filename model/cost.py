"""What a network costs in hardware, from the generator's own model: the design a preset builds
for it (``hdl.lenet.preset``) and that design's per-block report (``hdl.accelerator.layer_report``:
multipliers, memory bits, cycles), next to the network's MACs and the bits of its weight codes.

The compression search weighs these figures against accuracy, so it asks the generator instead
of guessing: when the generator learns to pack k-bit codes or to build shift multipliers, the
costs the search sees follow (the weight file handed to it carries the restrictions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from . import arith
from .codes import Restriction, codes_to_manifest, weight_bits
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

    The generator's figures are None in a cost computed without it (``generator=False``): the
    search asks the generator only when a budget or the reward weighs one of them.
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


def hardware_cost(network: Network, codes: dict[str, Restriction], preset: str = "baseline",
                  arithmetic: arith.Arithmetic = arith.Arithmetic(), generator: bool = True) -> Cost:
    """The cost of ``network`` with weight codes ``codes`` in the design ``preset`` builds
    (with ``generator=False`` only the MACs and weight bits, which need no design)."""
    if not generator:
        return Cost(network.macs, weight_bits(network, codes), None, None, None, None)
    return _cost(network, tuple(sorted(codes.items(), key=lambda item: item[0])), preset, arithmetic)


@lru_cache(maxsize=4096)
def _cost(network: Network, codes: tuple, preset: str, arithmetic: arith.Arithmetic) -> Cost:
    from ..hdl import accelerator, lenet  # the generator: imported only when a cost is asked for
    from .weights import WeightSet, make_manifest

    codes = dict(codes)
    # Zero weights obey every restriction; the design's size does not depend on their values.
    params = {name: np.zeros(shape, np.int8) for name, shape in network.parameter_shapes.items()}
    manifest = make_manifest(arithmetic, network, codes=codes_to_manifest(codes))
    config = lenet.preset(preset, network, arithmetic, codes=codes)
    report = accelerator.layer_report(WeightSet(params, manifest), config)
    return Cost(
        macs=network.macs,
        weight_bits=weight_bits(network, codes),
        multipliers=sum(row["multipliers"] for row in report),
        memory_bits=sum(row["memory_bits"] for row in report),
        cycles=max(row["cycles"] for row in report),
        preset=preset,
    )
