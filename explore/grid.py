"""The grid of an exploration, from the command line or a small TOML/JSON file, and its points.

A grid is the product of its axes:

* ``weights``: weight files (``.npz`` with the ``.json`` manifest beside it; none: the shipped
  LeNet-5);
* ``designs``: generator settings, each a design (``hdl.designs``: ``streaming``, the default,
  or ``compact``) with a preset (``baseline``, ``fast``) and optional overrides ``filters``,
  ``lanes`` and ``soft_multipliers`` (spelled as the ``verilog`` command spells them), resolved
  against each weight file's network;
* ``devices``, ``clocks_mhz``, ``seeds``: the place-and-route part, the clock it aims for and
  nextpnr's placement seed;

with, for every point, the ``stages`` to run (``golden``, ``rtl``, ``pnr``), the RTL stage's
``rtl_images`` and ``simulator``, and a ``time_limit_minutes`` for a point's tool stages.

A grid file::

    weights = ["model/assets/lenet5_saturate.npz"]   # relative to the file's folder
    stages = ["golden", "rtl", "pnr"]
    seeds = [1, 2]
    time_limit_minutes = 30

    [[designs]]
    preset = "baseline"

    [[designs]]
    preset = "baseline"
    lanes = [10, 10, 10]
    soft_multipliers = ["fc1"]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from ..boards.configure import design_config
from ..hdl import designs
from ..hdl.designs import DEFAULT_DESIGN, DEFAULT_PRESET, GeneratorOptions
from ..hdl.lenet import PRESETS
from ..model.documents import read_json, read_toml
from ..model.errors import InputError
from ..model.network import Network
from ..model.weights import WeightSet
from ..boards.pnr import PNR_DEVICE, PNR_DEVICES, PNR_TARGET_MHZ
from ..sim.runner import SIMULATORS

STAGES = ("golden", "rtl", "pnr")
# The stages that run a tool (a simulator, Yosys, nextpnr) in a process group of their own.
TOOL_STAGES = ("rtl", "pnr")


@dataclass(frozen=True)
class Design:
    """Generator settings: a design, a preset and what overrides it (``None``: the preset's value)."""

    preset: str = DEFAULT_PRESET
    filters: tuple[int, ...] | None = None
    lanes: tuple[int, ...] | None = None
    soft_multipliers: tuple[str, ...] | None = None
    name: str | None = None
    design: str = DEFAULT_DESIGN

    @property
    def label(self) -> str:
        """The design as a reader would name it: ``baseline``, ``baseline lanes=10,5,2``,
        ``compact lanes=4``."""
        if self.name:
            return self.name
        parts = [self.preset if self.design == DEFAULT_DESIGN else self.design]
        for field, values in (("filters", self.filters), ("lanes", self.lanes), ("soft", self.soft_multipliers)):
            if values is not None:
                parts.append(f"{field}={','.join(map(str, values)) or 'none'}")
        return " ".join(parts)

    @property
    def options(self) -> GeneratorOptions:
        return GeneratorOptions(design=self.design, preset=self.preset, filters=self.filters, lanes=self.lanes,
                                soft_multipliers=self.soft_multipliers)

    def resolve(self, weights: WeightSet):
        """The design's configuration for ``weights``' network (InputError if it cannot be built)."""
        try:
            return design_config(weights, self.options)
        except InputError as e:
            raise InputError(f"design {self.label!r} for {weights.network.spec}: {e}") from None


@dataclass(frozen=True)
class Grid:
    weights: tuple[str | None, ...] = (None,)
    designs: tuple[Design, ...] = (Design(),)
    devices: tuple[str, ...] = (PNR_DEVICE,)
    clocks_mhz: tuple[float, ...] = (PNR_TARGET_MHZ,)
    seeds: tuple[int, ...] = (1,)
    stages: tuple[str, ...] = ("golden", "rtl")
    rtl_images: int = 8
    simulator: str = "verilator"
    time_limit_minutes: float | None = None

    def __post_init__(self):
        for axis in ("weights", "designs", "devices", "clocks_mhz", "seeds", "stages"):
            if not getattr(self, axis):
                raise InputError(f"the grid's {axis} is empty")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise InputError(f"unknown stage{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                             f"the stages are {', '.join(STAGES)}")
        if len(set(self.stages)) != len(self.stages):
            raise InputError(f"stages {', '.join(self.stages)} name a stage twice")
        unknown = [d for d in self.devices if d not in PNR_DEVICES]
        if unknown:
            raise InputError(f"unknown device {', '.join(unknown)}; place and route knows {', '.join(PNR_DEVICES)}")
        unknown = [d.preset for d in self.designs if d.preset not in PRESETS]
        if unknown:
            raise InputError(f"unknown preset {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
        if self.simulator not in SIMULATORS:
            raise InputError(f"unknown simulator {self.simulator!r}; use one of {', '.join(SIMULATORS)}")
        if "rtl" in self.stages and self.rtl_images < 2:
            raise InputError("rtl_images must be at least 2: the interval is the time between two images")
        if any(not c > 0 for c in self.clocks_mhz):
            raise InputError(f"clocks must be above 0 MHz, got {', '.join(map(str, self.clocks_mhz))}")
        if self.time_limit_minutes is not None and not self.time_limit_minutes > 0:
            raise InputError(f"the time limit must be above 0 minutes, got {self.time_limit_minutes}")


@dataclass(frozen=True)
class Point:
    """One point of the grid: what to build, where, and which stages to run on it."""

    weights: str  # the weight file as the grid names it ("shipped" for the default)
    network: str  # its network's spec
    design: str  # Design.label
    config: object  # the configuration of a registered design (hdl.designs)
    device: str
    clock_mhz: float
    seed: int
    stages: tuple[str, ...]
    rtl_images: int
    simulator: str

    @property
    def multipliers(self) -> int:
        """The design's multipliers: its size, which drives what its builds cost."""
        return designs.design_of(self.config).multipliers(self.config, Network.parse(self.network))

    def describe(self) -> dict:
        """The point as a JSON object (what the results file shows of it)."""
        return {"weights": self.weights, "network": self.network, "design": self.design,
                "config": designs.config_fields(self.config, Network.parse(self.network)), "device": self.device,
                "clock_mhz": self.clock_mhz,
                "seed": self.seed, "stages": list(self.stages), "rtl_images": self.rtl_images,
                "simulator": self.simulator}


def expand(grid: Grid, weight_sets: dict[str | None, WeightSet]) -> list[Point]:
    """Every point of ``grid``, in grid order (weights, then designs, devices, clocks, seeds).
    ``weight_sets`` maps each of ``grid.weights`` to its loaded weights."""
    points = []
    for name, design, device, clock, seed in itertools.product(grid.weights, grid.designs, grid.devices,
                                                               grid.clocks_mhz, grid.seeds):
        ws = weight_sets[name]
        points.append(Point(weights=name or "shipped", network=ws.network.spec, design=design.label,
                            config=designs.canonical(design.resolve(ws), ws.network), device=device,
                            clock_mhz=float(clock), seed=seed, stages=grid.stages,
                            rtl_images=grid.rtl_images, simulator=grid.simulator))
    return points


# ---- reading a grid ----

FILE_FIELDS = {"weights", "designs", "devices", "clocks_mhz", "seeds", "stages", "rtl_images", "simulator",
               "time_limit_minutes"}
DESIGN_FIELDS = {"design", "preset", "filters", "lanes", "soft_multipliers", "name"}


def _int_list(value, where: str) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise InputError(f"{where} must be a positive whole number or a list of them, not {value!r}")
    return tuple(values)


def _list(value, kind, where: str) -> tuple:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        raise InputError(f"{where} must be a list of {kind.__name__ if isinstance(kind, type) else 'numbers'}, "
                         f"not {value!r}")
    return tuple(values)


def design_from_dict(entry, where: str) -> Design:
    if not isinstance(entry, dict):
        raise InputError(f"{where} must be a table (preset, filters, lanes, soft_multipliers, name), not {entry!r}")
    unknown = sorted(set(entry) - DESIGN_FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                         f"a design has {', '.join(sorted(DESIGN_FIELDS))}")
    soft = entry.get("soft_multipliers")
    if isinstance(soft, str):
        soft = [] if soft.strip() in ("", "none") else [s.strip() for s in soft.split(",")]
    name = entry.get("name")
    if name is not None and not (isinstance(name, str) and name.strip()):
        raise InputError(f"{where}: name must be a non-empty string, not {name!r}")
    preset_name = entry.get("preset", DEFAULT_PRESET)
    if not isinstance(preset_name, str):
        raise InputError(f"{where}: preset must be a name, not {preset_name!r}")
    design_name = entry.get("design", DEFAULT_DESIGN)
    if design_name not in designs.DESIGNS:
        raise InputError(f"{where}: unknown design {design_name!r}; choose from {', '.join(designs.DESIGNS)}")
    return Design(design=design_name, preset=preset_name,
                  filters=None if "filters" not in entry else _int_list(entry["filters"], f"{where}: filters"),
                  lanes=None if "lanes" not in entry else _int_list(entry["lanes"], f"{where}: lanes"),
                  soft_multipliers=None if soft is None else _list(soft, str, f"{where}: soft_multipliers"),
                  name=name)


def grid_from_dict(data, base: Path, where: str) -> Grid:
    """A grid from a parsed TOML/JSON document; relative weight paths are relative to ``base``."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: a grid is a table of fields, not {type(data).__name__}")
    unknown = sorted(set(data) - FILE_FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                         f"a grid has {', '.join(sorted(FILE_FIELDS))}")
    fields = {}
    if "weights" in data:
        fields["weights"] = tuple(path if path == "shipped" else str(base / path)
                                  for path in _list(data["weights"], str, f"{where}: weights"))
    if "designs" in data:
        entries = data["designs"] if isinstance(data["designs"], list) else [data["designs"]]
        fields["designs"] = tuple(design_from_dict(e, f"{where}: designs[{k}]") for k, e in enumerate(entries))
    if "devices" in data:
        fields["devices"] = _list(data["devices"], str, f"{where}: devices")
    if "clocks_mhz" in data:
        fields["clocks_mhz"] = tuple(float(c) for c in _list(data["clocks_mhz"], (int, float), f"{where}: clocks_mhz"))
    if "seeds" in data:
        fields["seeds"] = _list(data["seeds"], int, f"{where}: seeds")
        if any(seed < 0 for seed in fields["seeds"]):
            raise InputError(f"{where}: seeds must be 0 or more, not {data['seeds']!r}")
    if "stages" in data:
        fields["stages"] = _list(data["stages"], str, f"{where}: stages")
    if "rtl_images" in data:
        if isinstance(data["rtl_images"], list):
            raise InputError(f"{where}: rtl_images is one number, not a list")
        fields["rtl_images"] = _int_list(data["rtl_images"], f"{where}: rtl_images")[0]
    for name, kind, convert in (("simulator", str, str), ("time_limit_minutes", (int, float), float)):
        if name in data:
            if isinstance(data[name], list):
                raise InputError(f"{where}: {name} is one value, not a list")
            fields[name] = convert(_list(data[name], kind, f"{where}: {name}")[0])
    return Grid(**fields)


def read_grid_file(path) -> Grid:
    """A ``.toml`` or ``.json`` grid file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"grid file not found: {path}")
    if path.suffix not in (".toml", ".json"):
        raise InputError(f"grid file {path}: name it .toml or .json")
    data = (read_toml if path.suffix == ".toml" else read_json)(path, "grid file")
    return grid_from_dict(data, path.parent, str(path))
