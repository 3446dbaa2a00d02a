"""The registry of designs: every generator this project has, and what the rest of the flow may
ask of one without knowing which it holds.

A *design* is a generator (``streaming``: an engine per layer, ``hdl/lenet.py``; ``compact``: one
shared multiplier array, ``hdl/compact.py``). Each registers a ``Design`` here that says how the
generator options a user gives (``GeneratorOptions``) become its configuration for a network,
how that configuration is spelled for a reader and as JSON (a Dask task carries it), how it
moves its multipliers out of DSP blocks when an FPGA has too few, and its size. Every list of
design names (the command line's choices, the board protocol's INFO byte, the board table) and
every dispatch on a design reads ``DESIGNS``: a third generator is one more entry here.

``GeneratorOptions`` holds the options' defaults, in one place for the command line, the
Python API and the sweeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from ..model import arith
from ..model.errors import InputError
from ..model.network import Network
from ..model.weights import WeightSet, arithmetic_fields, arithmetic_of

# The generators (and Amaranth) are imported by the methods that need them: the command line
# lists the designs and their options without paying for the generators.

DEFAULT_DESIGN = "streaming"
DEFAULT_PRESET = "baseline"
COMPACT_WEIGHTS = ("auto", "bitstream", "spram")


@dataclass(frozen=True)
class GeneratorOptions:
    """What a user may ask of the generator; ``None`` means "the design's or the weights' own".

    Attributes
    ----------
    design : str
        A name in ``DESIGNS``.
    preset : str
        The streaming design's sizing rule (``hdl.lenet.PRESETS``), resolved against the network.
    filters, lanes : tuple of int, optional
        Filters at once per conv engine, multipliers per linear engine (one value for all layers
        or one per layer); the compact design: ``lanes`` is its one array's multipliers.
    soft_multipliers : tuple of str, optional
        Layers whose multipliers are built from logic instead of DSP blocks.
    compact_weights : str
        The compact design's weight memory: ``bitstream``, ``spram`` or ``auto`` (decided by
        whoever knows the board: ``boards.configure``).
    rounding, overflow : optional
        The requantizer's; default: what the weights were trained for.
    """

    design: str = DEFAULT_DESIGN
    preset: str = DEFAULT_PRESET
    filters: tuple[int, ...] | None = None
    lanes: tuple[int, ...] | None = None
    soft_multipliers: tuple[str, ...] | None = None
    compact_weights: str = "auto"
    rounding: arith.Rounding | None = None
    overflow: arith.Overflow | None = None

    def __post_init__(self):
        if self.design not in DESIGNS:
            raise InputError(f"unknown design {self.design!r}; choose from {', '.join(DESIGNS)}")
        if self.compact_weights not in COMPACT_WEIGHTS:
            raise InputError(f"unknown compact weights {self.compact_weights!r}; choose from "
                             f"{', '.join(COMPACT_WEIGHTS)}")
        for name in ("filters", "lanes"):
            values = getattr(self, name)
            if values is not None and (not isinstance(values, tuple) or not values
                                       or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                                  for v in values)):
                raise InputError(f"{name} must be one or more whole numbers of at least 1, not {values!r}")
        if self.soft_multipliers is not None and not (
                isinstance(self.soft_multipliers, tuple) and all(isinstance(n, str) for n in self.soft_multipliers)):
            raise InputError(f"soft_multipliers must be a tuple of layer names, not {self.soft_multipliers!r}")
        # Accept the command line's spellings ("floor", "wrap") as well as the enums.
        for name, kind in (("rounding", arith.Rounding), ("overflow", arith.Overflow)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                try:
                    object.__setattr__(self, name, kind(value))
                except ValueError:
                    raise InputError(f"unknown {name} {value!r}; choose from "
                                     f"{', '.join(v.value for v in kind)}") from None

    def arithmetic(self, default: arith.Arithmetic) -> arith.Arithmetic:
        """The requantizer asked for, where not asked: ``default`` (the weights' own). A rounding or
        overflow asked for holds in every layer (it replaces the weights' per-layer modes)."""
        if self.rounding is None and self.overflow is None:
            return default
        return arith.Arithmetic(self.rounding or default.rounding, self.overflow or default.overflow,
                                default.activations)

    def given(self) -> dict:
        """The options that differ from their defaults (for messages and reports)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}


def _spell(values) -> str:
    return ",".join(map(str, values)) if isinstance(values, tuple) else str(values)


class Design:
    """One generator as the flow sees it. Subclasses fill in each method for their config class
    (whose ``design`` attribute is the entry's name)."""

    name: str
    summary: str

    def configure(self, weights: WeightSet, options: GeneratorOptions,
                  weights_fit: Callable[[WeightSet, object], bool] | None = None):
        """The configuration ``options`` ask for, for ``weights``' network, checked against it
        (InputError saying why if it cannot be built). ``weights_fit(weights, config)`` decides
        ``compact_weights="auto"`` where the design has that choice."""
        raise NotImplementedError

    def describe(self, config) -> str:
        """The configuration in the command line's own spelling."""
        raise NotImplementedError

    def to_fields(self, config, network: Network) -> dict:
        """The configuration as JSON, every layer spelled out (one design, one spelling)."""
        raise NotImplementedError

    def from_fields(self, values: dict, network: Network):
        """The inverse of ``to_fields``, checked against ``network``."""
        raise NotImplementedError

    def fit_dsp_blocks(self, config, weights: WeightSet, dsp_blocks: int):
        """``config`` moved to fit an FPGA with ``dsp_blocks`` DSP multipliers, where the design
        can move multipliers into logic; unchanged where it cannot (the board check then says)."""
        return config

    def multipliers(self, config, network: Network) -> int:
        """Products a cycle: the design's size, which drives what its builds cost."""
        raise NotImplementedError


class StreamingDesign(Design):
    name = "streaming"
    summary = "an engine per layer, weights in block RAM (default)"

    def configure(self, weights, options, weights_fit=None):
        from .lenet import preset

        config = preset(options.preset, weights.network, options.arithmetic(weights.arithmetic), codes=weights.codes)
        changes = {}
        for values, field in ((options.filters, "conv_filters"), (options.lanes, "linear_lanes")):
            if values is not None:
                changes[field] = values if len(values) > 1 else values[0]
        if options.soft_multipliers is not None:
            changes["soft_multipliers"] = options.soft_multipliers
        return replace(config, **changes).check(weights.network)

    def describe(self, config):
        soft = ",".join(config.soft_multipliers) or "none"
        return (f"filters {_spell(config.conv_filters)}, lanes {_spell(config.linear_lanes)}, "
                f"soft multipliers {soft}")

    def to_fields(self, config, network):
        convs, linears = network.conv_layers, network.linear_layers
        return {"design": self.name,
                "conv_filters": [config.filters_of(k, len(convs)) for k in range(len(convs))],
                "linear_lanes": [config.lanes_of(k, len(linears)) for k in range(len(linears))],
                "soft_multipliers": [n for n in network.names if n in config.soft_multipliers],
                **arithmetic_fields(config.arithmetic, network)}

    def from_fields(self, values, network):
        from .lenet import StreamingConfig

        return StreamingConfig(arithmetic_of(values, network),
                               linear_lanes=tuple(values["linear_lanes"]), conv_filters=tuple(values["conv_filters"]),
                               soft_multipliers=tuple(values["soft_multipliers"])).check(network)

    def fit_dsp_blocks(self, config, weights, dsp_blocks):
        """The first layers' multipliers in DSP blocks while ``dsp_blocks`` last, the rest built
        from logic (the rule of the ``fast`` preset); unchanged if it fits already."""
        from .accelerator import layer_report

        if sum(row.dsp for row in layer_report(weights, config)) <= dsp_blocks:
            return config
        used, soft = 0, []
        for row in layer_report(weights, replace(config, soft_multipliers=())):
            if row.layer not in weights.network.names or not row.dsp:
                continue
            if used + row.dsp <= dsp_blocks:
                used += row.dsp
            else:
                soft.append(row.layer)
        return replace(config, soft_multipliers=tuple(soft)).check(weights.network)

    def multipliers(self, config, network):
        convs, linears = network.conv_layers, network.linear_layers
        return (sum(config.filters_of(k, len(convs)) * layer.kernel**2 for k, layer in enumerate(convs))
                + sum(config.lanes_of(k, len(linears)) for k in range(len(linears))))


class CompactDesign(Design):
    name = "compact"
    summary = "one shared array of --lanes multipliers, weights loaded at run time or in block RAM (the iCEBreaker's)"

    def configure(self, weights, options, weights_fit=None):
        from . import compact

        for option in ("filters", "soft_multipliers"):
            if getattr(options, option) is not None:
                raise InputError(f"--{option.replace('_', '-')} sizes the streaming design; the compact design has "
                                 f"one array of multipliers (set them with --lanes)")
        if options.preset != DEFAULT_PRESET:
            raise InputError(f"--preset {options.preset} sizes the streaming design; the compact design has one "
                             f"array of multipliers (set them with --lanes)")
        lanes = options.lanes or (compact.MAX_LANES,)
        if len(lanes) != 1:
            raise InputError(f"--lanes {_spell(lanes)}: the compact design has one array of lanes")
        try:
            config = compact.CompactConfig(options.arithmetic(weights.arithmetic), lanes=lanes[0])
        except ValueError as e:
            raise InputError(f"--lanes {lanes[0]}: {e}") from None
        config.check(weights.network)
        where = options.compact_weights
        if where == "auto":
            if weights_fit is None:
                raise InputError("--compact-weights auto needs a board to decide on; say bitstream or spram")
            where = "bitstream" if weights_fit(weights, config) else "spram"
        return replace(config, weights_in_bitstream=where == "bitstream")

    def describe(self, config):
        where = "in the bitstream" if config.weights_in_bitstream else "in SPRAM"
        return f"compact design, {config.lanes} lanes, weights {where}"

    def to_fields(self, config, network):
        return {"design": self.name, "lanes": config.lanes, "weights_in_bitstream": config.weights_in_bitstream,
                **arithmetic_fields(config.arithmetic, network)}

    def from_fields(self, values, network):
        from .compact import CompactConfig

        return CompactConfig(arithmetic_of(values, network), lanes=values["lanes"],
                                     weights_in_bitstream=values["weights_in_bitstream"]).check(network)

    def multipliers(self, config, network):
        return config.lanes


DESIGNS: dict[str, Design] = {design.name: design for design in (StreamingDesign(), CompactDesign())}
# The board protocol's INFO byte names a design by its index here: append, never reorder.
DESIGN_NAMES: tuple[str, ...] = tuple(DESIGNS)


def design(name: str) -> Design:
    """The registered design ``name`` (InputError naming the others)."""
    if name not in DESIGNS:
        raise InputError(f"unknown design {name!r}; choose from {', '.join(DESIGNS)}")
    return DESIGNS[name]


def design_of(config) -> Design:
    """The design whose configuration ``config`` is."""
    name = getattr(config, "design", None)
    if name not in DESIGNS:
        raise TypeError(f"{config!r} is not the configuration of a registered design")
    return DESIGNS[name]


def describe(config) -> str:
    return design_of(config).describe(config)


def config_fields(config, network: Network) -> dict:
    """Any design's configuration as JSON (``config_from_fields`` reads it back)."""
    return design_of(config).to_fields(config, network)


def canonical(config, network: Network):
    """``config`` spelled one way: every layer's value given, lists in network order (``20`` and
    ``20,20,20`` lanes are one design)."""
    return config_from_fields(config_fields(config, network), network)


def config_from_fields(values: dict, network: Network):
    # Results written before the registry had no "design" field: they were all streaming.
    return design(values.get("design", "streaming")).from_fields(values, network)
