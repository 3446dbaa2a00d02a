"""The generator as a cost model for the compression search (``model.cost.CostModel``): the
design a preset builds for a network with restricted weight codes, measured by its own per-block
report, without elaborating it."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..model import arith
from ..model.codes import Restriction, codes_to_manifest, weight_bits
from ..model.cost import Cost, CostModel
from ..model.errors import InputError
from ..model.network import Network
from ..model.weights import WeightSet, make_manifest
from .accelerator import layer_report
from .lenet import PRESETS
from .lenet import preset as resolve_preset


def hardware_cost(network: Network, codes: dict[str, Restriction], preset: str = "baseline",
                  arithmetic: arith.Arithmetic = arith.Arithmetic()) -> Cost:
    """The cost of ``network`` with weight codes ``codes`` in the design ``preset`` builds."""
    return _cost(network, tuple(sorted(codes.items(), key=lambda item: item[0])), preset, arithmetic)


def activation_memory_bits(network: Network, arithmetic: arith.Arithmetic, preset: str = "baseline") -> int:
    """The memory bits of the design ``preset`` builds for ``network`` with ``arithmetic``'s
    activation formats (``train --activations auto`` narrows layers against it)."""
    return hardware_cost(network, {}, preset, arithmetic).memory_bits


def generator_cost_model(preset: str = "baseline", arithmetic: arith.Arithmetic = arith.Arithmetic()) -> CostModel:
    """``hardware_cost`` for one preset and arithmetic, as the search takes it."""
    if preset not in PRESETS:  # an error now, not at the first point the search scores
        raise InputError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return lambda network, codes: hardware_cost(network, codes, preset, arithmetic)


@lru_cache(maxsize=4096)
def _cost(network: Network, codes: tuple, preset: str, arithmetic: arith.Arithmetic) -> Cost:
    codes = dict(codes)
    # Zero weights obey every restriction; the design's size does not depend on their values.
    params = {name: np.zeros(shape, np.int8) for name, shape in network.parameter_shapes.items()}
    manifest = make_manifest(arithmetic, network, codes=codes_to_manifest(codes))
    config = resolve_preset(preset, network, arithmetic, codes=codes)
    report = layer_report(WeightSet(params, manifest), config)
    return Cost(
        macs=network.macs,
        weight_bits=weight_bits(network, codes),
        multipliers=sum(row.multipliers for row in report),
        memory_bits=sum(row.memory_bits for row in report),
        cycles=max(row.cycles for row in report),
        preset=preset,
    )
