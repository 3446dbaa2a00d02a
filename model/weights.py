"""Integer weight files: ``NAME.npz`` (int8 arrays named like the PyTorch state dict) plus
``NAME.json`` (the manifest: format version, Q format, rounding, overflow, accuracies, seed).

The manifest sits beside the arrays, so the ``.npz`` holds nothing but the state dict and any
numpy user can read it. Both files are written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from . import arith
from .atomic import atomic_path
from .errors import InputError
from .network import LENET5, parameter_shapes
from .npz import read_npz

FORMAT = "lenet-fpga-weights"
FORMAT_VERSION = 1
ASSETS = resources.files(__package__) / "assets"
DEFAULT_WEIGHTS = Path(str(ASSETS / "lenet5_saturate.npz"))


@dataclass(frozen=True)
class WeightSet:
    """A network's integer parameters and the arithmetic they were trained for."""

    params: dict[str, np.ndarray]
    manifest: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def arithmetic(self) -> arith.Arithmetic:
        return arith.Arithmetic(
            self.manifest.get("rounding", arith.Rounding.HALF_UP),
            self.manifest.get("overflow", arith.Overflow.SATURATE),
        )

    def __getitem__(self, name: str) -> np.ndarray:
        return self.params[name]


def manifest_path(npz_path) -> Path:
    return Path(npz_path).with_suffix(".json")


def make_manifest(arithmetic: arith.Arithmetic, **extra) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "q_format": "Q2.6",
        "width": arith.WIDTH,
        "frac_bits": arith.FRAC_BITS,
        "rounding": str(arithmetic.rounding),
        "overflow": str(arithmetic.overflow),
        **extra,
    }


def check_params(params: dict, layers=LENET5, dtype=np.int8) -> dict[str, np.ndarray]:
    """Every state-dict entry present, with its shape and dtype; nothing else."""
    expected = parameter_shapes(layers)
    missing = [name for name in expected if name not in params]
    extra = [name for name in params if name not in expected]
    if missing or extra:
        raise InputError(f"weights do not match LeNet-5: missing {missing or 'none'}, unexpected {extra or 'none'}")
    checked = {}
    for name, shape in expected.items():
        array = np.asarray(params[name])
        if array.shape != shape:
            raise InputError(f"weights: {name} has shape {list(array.shape)}, LeNet-5 needs {list(shape)}")
        if array.dtype != dtype:
            raise InputError(f"weights: {name} has dtype {array.dtype}, expected {np.dtype(dtype)}")
        checked[name] = array
    return checked


def save(path, params: dict, manifest: dict) -> Path:
    """Write NAME.npz and NAME.json, each all-or-nothing."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(f"weights file must end in .npz: {path}")
    params = check_params(params)
    text = json.dumps(manifest, indent=2) + "\n"  # fails before anything is written
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **params)
    with atomic_path(manifest_path(path)) as tmp:
        tmp.write_text(text)
    return path


def load(path=None) -> WeightSet:
    """Read and validate a weight file and its manifest. ``None`` means the shipped weights."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    mpath = manifest_path(path)
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    if not mpath.is_file():
        raise InputError(f"weights manifest not found: {mpath} (it must sit beside {path.name})")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"weights manifest {mpath} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{mpath} is not a lenet-fpga weights manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{mpath} has format version {manifest.get('format_version')!r}; "
            f"this lenet-fpga reads version {FORMAT_VERSION}"
        )
    if manifest.get("frac_bits") != arith.FRAC_BITS or manifest.get("width") != arith.WIDTH:
        raise InputError(f"{mpath} is for Q{manifest.get('width')}.{manifest.get('frac_bits')}, not Q2.6")
    try:
        arith.Arithmetic(manifest.get("rounding"), manifest.get("overflow"))
    except ValueError as e:
        raise InputError(f"{mpath}: {e}") from None
    params = load_arrays(path, np.int8)
    return WeightSet(params=params, manifest=manifest, path=path)


def load_arrays(path, dtype) -> dict[str, np.ndarray]:
    """The state-dict arrays of an .npz, checked against LeNet-5 (int8 codes or float32)."""
    return check_params(read_npz(path, "weights"), dtype=dtype)


def load_float(weights: WeightSet) -> dict[str, np.ndarray] | None:
    """The float checkpoint named in the manifest, if it is there."""
    name = weights.manifest.get("float_weights")
    if not name or weights.path is None:
        return None
    path = weights.path.parent / name
    return load_arrays(path, np.float32) if path.is_file() else None
