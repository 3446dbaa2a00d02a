"""Integer weight files: ``NAME.npz`` (int8 arrays named like the PyTorch state dict) plus
``NAME.json`` (the manifest: format version, the network, Q format, rounding, overflow, the
hidden layers' activation formats where they are not Q2.6, accuracies, training, and for
compressed networks each layer's restricted weight codes).

The manifest sits beside the arrays, so the ``.npz`` holds nothing but the state dict and any
numpy user can read it. Both files are written atomically. ``docs/weights.md`` documents every
field. Format version 2 records the network (``network.Network.to_dict``); a version-1 file,
which has none, is the LeNet-5 it was written for. An optional ``codes`` object restricts
layers' weight codes (``codes.py``); every code is checked against it on load and on save.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from . import arith
from .documents import read_json
from .codes import CodesError, Restriction, check_codes, codes_from_manifest, layer_codes
from .atomic import atomic_path
from .errors import InputError
from .network import LENET5, Network, NetworkError
from .npz import read_npz

FORMAT = "lenet-fpga-weights"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: no "network" field, always LeNet-5
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
        return arithmetic_of(self.manifest, self.network)

    @property
    def network(self) -> Network:
        """The network these weights are for (LeNet-5 when the manifest names none)."""
        return network_of(self.manifest)

    @property
    def codes(self) -> dict[str, Restriction]:
        """Every layer's weight-code restriction (``codes.PLAIN``, all 8-bit codes, where the
        manifest names none)."""
        return layer_codes(codes_of(self.manifest, self.network), self.network)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.params[name]


def network_of(manifest: dict) -> Network:
    """The network a manifest records (version 1 manifests have none: LeNet-5)."""
    value = manifest.get("network")
    return LENET5 if value is None else Network.from_dict(value)


def codes_of(manifest: dict, network: Network) -> dict[str, Restriction]:
    """The restrictions a manifest records, by layer (only the layers it names)."""
    value = manifest.get("codes")
    return {} if value is None else codes_from_manifest(value, network)


def arithmetic_of(manifest: dict, network: Network) -> arith.Arithmetic:
    """The arithmetic a manifest records: rounding and overflow, and where given each hidden
    layer's activation format (``activations``; none: Q2.6 everywhere) and modes (``modes``;
    none: the network's rounding and overflow in every layer)."""
    formats = _by_hidden_layer(manifest, "activations", network)
    modes = _by_hidden_layer(manifest, "modes", network)
    if modes and not all(isinstance(m, dict) and set(m) == {"rounding", "overflow"} for m in modes):
        raise arith.FormatError(f"'modes' gives each hidden layer of {network.spec} a 'rounding' and an 'overflow', "
                                f"not {manifest['modes']!r}")
    return arith.Arithmetic(manifest.get("rounding", arith.Rounding.HALF_UP),
                            manifest.get("overflow", arith.Overflow.SATURATE),
                            tuple(arith.Fixed.from_dict(f) for f in formats or ()),
                            tuple((m["rounding"], m["overflow"]) for m in modes or ()))


def _by_hidden_layer(manifest: dict, field: str, network: Network) -> list | None:
    """A manifest object with an entry for each hidden layer, as a list in layer order (None
    when the manifest has no such field)."""
    value = manifest.get(field)
    if value is None:
        return None
    hidden = [layer.name for layer in network.layers[:-1]]
    if not isinstance(value, dict) or sorted(value) != sorted(hidden):
        names = sorted(value) if isinstance(value, dict) else value
        raise arith.FormatError(f"'{field}' names each hidden layer of {network.spec} ({', '.join(hidden)}) "
                                f"once, not {names!r}")
    return [value[name] for name in hidden]


def arithmetic_fields(arithmetic: arith.Arithmetic, network: Network) -> dict:
    """The manifest's ``rounding`` and ``overflow``, and its ``activations`` and ``modes``
    objects by hidden layer where the arithmetic has them."""
    fields = {"rounding": str(arithmetic.rounding), "overflow": str(arithmetic.overflow)}
    names = [layer.name for layer in network.layers[:-1]]
    if arithmetic.activations:
        fields["activations"] = {name: f.to_dict() for name, f in zip(names, arithmetic.formats(network))}
    if arithmetic.modes:
        fields["modes"] = {name: {"rounding": str(r), "overflow": str(o)}
                           for name, (r, o) in zip(names, arithmetic.layer_modes(network))}
    return fields


def manifest_path(npz_path) -> Path:
    return Path(npz_path).with_suffix(".json")


def make_manifest(arithmetic: arith.Arithmetic, network: Network = LENET5, **extra) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "network": network.to_dict(),
        "q_format": "Q2.6",
        "width": arith.WIDTH,
        "frac_bits": arith.FRAC_BITS,
        **arithmetic_fields(arithmetic, network),
        **extra,
    }


def check_params(params: dict, network: Network = LENET5, dtype=np.int8) -> dict[str, np.ndarray]:
    """Every state-dict entry of ``network`` present, with its shape and dtype; nothing else."""
    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, not {network!r}")
    expected = network.parameter_shapes
    missing = [name for name in expected if name not in params]
    extra = [name for name in params if name not in expected]
    if missing or extra:
        raise InputError(f"weights do not match the network {network.spec}: missing {missing or 'none'}, "
                         f"unexpected {extra or 'none'}")
    checked = {}
    for name, shape in expected.items():
        array = np.asarray(params[name])
        if array.shape != shape:
            raise InputError(f"weights: {name} has shape {list(array.shape)}, the network {network.spec} "
                             f"needs {list(shape)}")
        if array.dtype != dtype:
            raise InputError(f"weights: {name} has dtype {array.dtype}, expected {np.dtype(dtype)}")
        checked[name] = array
    return checked


def save(path, params: dict, manifest: dict) -> Path:
    """Write NAME.npz and NAME.json, each all-or-nothing."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(f"weights file must end in .npz: {path}")
    network = network_of(manifest)
    params = check_params(params, network)
    check_codes(params, codes_of(manifest, network))
    arithmetic_of(manifest, network)  # a format or mode that cannot be fails before anything is written
    text = json.dumps(manifest, indent=2) + "\n"  # fails before anything is written
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **params)
    with atomic_path(manifest_path(path)) as tmp:
        tmp.write_text(text)
    return path


def save_with_float(path, params: dict, manifest: dict, float_params: dict) -> Path:
    """``save``, and the float checkpoint the manifest's ``float_weights`` names beside it. Both
    are checked first, and the float file goes away again if the integer one cannot be written,
    so a failure leaves neither behind."""
    path = Path(path)
    network = network_of(manifest)
    check_params(params, network)
    check_params(float_params, network, dtype=np.float32)
    float_path = path.parent / manifest["float_weights"]
    existed = float_path.exists()
    with atomic_path(float_path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **float_params)
    try:
        return save(path, params, manifest)
    except BaseException:
        if not existed:
            float_path.unlink(missing_ok=True)
        raise


SHIPPED = "shipped"  # the name every command's --weights takes for the shipped weights


def load(path=None) -> WeightSet:
    """Read and validate a weight file and its manifest. ``None`` or ``"shipped"`` means the
    shipped weights."""
    path = Path(path) if path is not None and str(path) != SHIPPED else DEFAULT_WEIGHTS
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise InputError(f"weights manifest not found: {mpath} (it must sit beside {path.name})")
    manifest = read_json(mpath, "weights manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{mpath} is not a lenet-fpga weights manifest")
    version = manifest.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise InputError(
            f"{mpath} has format version {manifest.get('format_version')!r}; "
            f"this lenet-fpga reads versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    if manifest.get("frac_bits") != arith.FRAC_BITS or manifest.get("width") != arith.WIDTH:
        raise InputError(f"{mpath}: the weights must be Q2.6 codes (\"width\": {arith.WIDTH}, \"frac_bits\": "
                         f"{arith.FRAC_BITS}); the manifest gives width {manifest.get('width')!r}, "
                         f"frac_bits {manifest.get('frac_bits')!r}")
    for name, kind in (("rounding", arith.Rounding), ("overflow", arith.Overflow)):
        if manifest.get(name) not in [k.value for k in kind]:
            raise InputError(f"{mpath}: {name!r} must be one of {', '.join(k.value for k in kind)}, "
                             f"not {manifest.get(name)!r}")
    if manifest["format_version"] == 1 and "network" in manifest:
        raise InputError(f"{mpath}: a version 1 manifest has no 'network' field (version 2 has)")
    if manifest["format_version"] >= 2 and "network" not in manifest:
        raise InputError(f"{mpath}: a version {manifest['format_version']} manifest must name its 'network'")
    check_manifest_fields(manifest, mpath)
    try:
        network = network_of(manifest)
    except NetworkError as e:
        raise InputError(f"{mpath}: {e}") from None
    try:
        arithmetic_of(manifest, network)
    except arith.FormatError as e:
        raise InputError(f"{mpath}: {e}") from None
    params = load_arrays(path, np.int8, network)
    try:
        check_codes(params, codes_of(manifest, network))
    except CodesError as e:
        raise InputError(f"{mpath}: {e}") from None
    return WeightSet(params=params, manifest=manifest, path=path)


# Optional manifest fields and the JSON types they must have: a wrong type is refused when the
# file is read, not found by a TypeError minutes later.
OPTIONAL_FIELDS = {"float_weights": str, "accuracy": dict, "training": dict, "seed": int, "source": dict,
                   "codes": dict, "cost": dict, "compression": dict, "dataset": dict, "activations": dict, "modes": dict}
ACCURACY_FIELDS = {"float": (int, float), "fixed": (int, float), "n_images": int, "split": str}


def check_manifest_fields(manifest: dict, where) -> None:
    for name, kind in OPTIONAL_FIELDS.items():
        if name in manifest and not isinstance(manifest[name], kind):
            raise InputError(f"{where}: field {name!r} must be a {_json_type(kind)}, "
                             f"not {_json_type(type(manifest[name]))}")
    for name, kind in ACCURACY_FIELDS.items():
        value = manifest.get("accuracy", {}).get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise InputError(f"{where}: field 'accuracy.{name}' must be a {_json_type(kind)}, "
                             f"not {_json_type(type(value))}")


def _json_type(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "string", dict: "object", int: "number", float: "number", list: "list", bool: "boolean",
             type(None): "null"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def load_arrays(path, dtype, network: Network = LENET5) -> dict[str, np.ndarray]:
    """The state-dict arrays of an .npz, checked against ``network`` (int8 codes or float32)."""
    # Room for the widest numeric dtype (16 bytes), so that a wrong dtype is named by check_params.
    limits = {name: math.prod(shape) * 16 for name, shape in network.parameter_shapes.items()}
    return check_params(read_npz(path, "weights", limits), network, dtype=dtype)


def load_float(weights: WeightSet) -> dict[str, np.ndarray] | None:
    """The float checkpoint named in the manifest, if it is there."""
    name = weights.manifest.get("float_weights")
    if not name or weights.path is None:
        return None
    path = weights.path.parent / name
    if not path.is_file():
        return None
    params = load_arrays(path, np.float32, weights.network)
    if not all(np.isfinite(value).all() for value in params.values()):
        raise InputError(f"float weights {path} hold NaN or infinite values")
    return params
