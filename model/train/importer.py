"""Bring your own model: a trained PyTorch LeNet-family network becomes a lenet-fpga weights file.

Accepted: an ``nn.Module`` saved whole (``torch.save(model, path)``; unpickling it runs code from
the file, so only with ``trust_pickle``, see ``docs/import.md``) made of ``Conv2d``,
``ReLU``, ``MaxPool2d``, ``BatchNorm2d`` (folded into the conv before it), ``Flatten``/``Dropout``
(no-ops at inference) and ``Linear``; or a ``state_dict`` (``torch.save(model.state_dict(),
path)``), whose 4-D weights are the conv layers and 2-D weights the linear layers, in order,
with the pooling and input size given as options (a state dict does not say them).

The hardware computes a fixed chain (``network.Network``), so anything else is refused with the
reason: padding, strides other than 1, dilation, groups, non-square kernels, a pooling window
that is not its stride, an activation other than ReLU, a missing ReLU, layers in another order.
ReLU and max-pool commute (ReLU is monotonic), so either order of the two is accepted.

The pixels the hardware sees are ``p / 255`` (0..1); a model trained on normalised inputs
``(p/255 - mean) / std`` is turned into one on ``p / 255`` by folding the normalisation into
the first conv (``normalize``).
"""

from __future__ import annotations

import contextlib
import io
import pickletools
import sys
import warnings
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import regular_file
from ..network import ConvSpec, Network


@dataclass(frozen=True)
class Imported:
    network: Network
    params: dict[str, np.ndarray]  # float32, our state-dict names
    notes: tuple[str, ...]  # what was folded or dropped, for the manifest
    state_dict: bool = False  # weights only: the chain between them is assumed (see ``readings``)


def load_torch_file(path, trust_pickle: bool = False, module_path=()):
    """The object in a ``torch.save`` file. A state dict is read by torch's restricted unpickler,
    which builds tensors and containers and calls nothing else. A whole ``nn.Module`` can only
    be rebuilt by Python's full unpickler, which calls whatever functions the file names (a
    hostile file can run any code): only with ``trust_pickle``, the user's explicit opt-in.
    Without it the file's pickle is only read as data, to say in the error what it holds.

    The unpickler imports the module that defines the model's class, as the script that saved
    it did: the file's folder and the folders of ``module_path`` are searched first, and only
    while it unpickles (``sys.path`` is restored after)."""
    import torch

    path = regular_file(path, "model file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols and TorchScript on stderr
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged or unexpected file
        safe_error = e
    if _is_torchscript(path):
        raise InputError(f"{path} is a TorchScript archive, which import does not read: save the model's "
                         f"state_dict instead (torch.save(model.state_dict(), F), see docs/import.md)")
    found = _first_global(path)
    if found is None:
        raise InputError(f"cannot read {path} as a PyTorch file: {type(safe_error).__name__}: "
                         f"{str(safe_error).strip().splitlines()[-1] if str(safe_error).strip() else ''}") from None
    if not trust_pickle:
        raise InputError(f"{path} is a pickled {found}, and unpickling it runs code from the file: give "
                         f"--trust-pickle only if you trust its source, or import its state_dict (docs/import.md)")
    folders = [Path(path).resolve().parent, *(Path(folder) for folder in module_path)]
    for folder in folders[1:]:
        if not folder.is_dir():
            raise InputError(f"--module-path {folder}: not a folder")
    try:
        with _searched_first(folders):
            return torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as e:
        raise InputError(_class_not_found(path, found, e, folders)) from None
    except Exception as e:
        raise InputError(f"cannot read {path} as a PyTorch file: {type(e).__name__}: {e}") from None


@contextlib.contextmanager
def _searched_first(folders):
    """``folders`` at the front of ``sys.path`` for the block's time."""
    saved = list(sys.path)
    sys.path[:0] = [str(folder) for folder in folders]
    try:
        yield
    finally:
        sys.path[:] = saved


def _class_not_found(path, found: str, error: Exception, folders) -> str:
    """What to do when the model's class cannot be imported: the one-line error of ``import``."""
    module = found.rpartition(".")[0]
    searched = ", ".join(str(folder) for folder in folders)
    if module == "__main__" or "'__main__'" in str(error):
        return (f"{path} holds a model whose class was defined in the script that saved it (__main__), which "
                f"cannot be imported again: save its state_dict (torch.save(model.state_dict(), F)), or move the "
                f"class into a module (e.g. mymodel.py) and save the model again from a script that imports it")
    if isinstance(error, ModuleNotFoundError):
        return (f"{path} holds a {found}, and its module {error.name or module!r} is not in {searched} nor installed: "
                f"give --module-path DIR, the folder that holds {(error.name or module).split('.')[0]}.py "
                f"(or its package)")
    return f"{path} holds a {found}, and importing it failed ({error}); searched {searched}"


def _is_torchscript(path) -> bool:
    """torch.jit.save archives hold their code under ``<name>/code/`` and ``constants.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _first_global(path, max_ops: int = 10_000) -> str | None:
    """``module.name`` of the first class or function the file's pickle names (for a module saved
    whole, its class; for a hostile file, the function it would call), read with ``pickletools``,
    which decodes opcodes and executes nothing; ``None`` when the file is not a pickle that names one."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.split("/", 1)[-1] == "data.pkl"), None)
                data = archive.read(name) if name is not None else b""
        else:
            data = Path(path).read_bytes()
        strings = []
        for count, (op, arg, _) in enumerate(pickletools.genops(io.BytesIO(data))):
            if op.name == "GLOBAL":
                return str(arg).replace(" ", ".")
            if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"{strings[-2]}.{strings[-1]}"
            if isinstance(arg, str):
                strings.append(arg)
            if count >= max_ops:
                return None
    except Exception:  # not a pickle, or a damaged one: genops raises ValueError and others
        return None
    return None


def from_object(obj, image_size: int = 28, pool: int = 2, normalize: tuple[float, float] | None = None) -> Imported:
    """A module or a state dict -> our network and float parameters."""
    import torch

    if isinstance(obj, torch.nn.Module):
        imported = from_module(obj, image_size)
    elif isinstance(obj, dict):
        imported = from_state_dict(obj, image_size, pool)
    else:
        raise InputError(f"expected an nn.Module or a state_dict, found a {type(obj).__name__}")
    if normalize is not None:
        imported = fold_normalization(imported, *normalize)
    return imported


def _array(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float64)


def _conv_check(module, where: str) -> None:
    kh, kw = module.kernel_size
    problems = []
    if kh != kw:
        problems.append(f"a {kh}x{kw} kernel (only square kernels)")
    if tuple(module.stride) != (1, 1):
        problems.append(f"stride {tuple(module.stride)} (only 1)")
    if module.padding not in ((0, 0), "valid"):
        problems.append(f"padding {module.padding} (only valid convolutions: padding 0)")
    if tuple(module.dilation) != (1, 1):
        problems.append(f"dilation {tuple(module.dilation)}")
    if module.groups != 1:
        problems.append(f"groups={module.groups}")
    if problems:
        raise InputError(f"{where}: the hardware cannot do {', '.join(problems)}")


def _pool_size(module, where: str) -> int:
    def one(value):
        return value if isinstance(value, int) else value[0] if len(set(value)) == 1 else None

    size, stride = one(module.kernel_size), one(module.stride if module.stride is not None else module.kernel_size)
    padding, dilation = one(module.padding), one(module.dilation)
    if size is None or stride != size or padding != 0 or dilation != 1 or module.ceil_mode:
        raise InputError(f"{where}: the hardware pools PxP windows with stride P and no padding; this is "
                         f"{module}")
    return size


def from_module(model, image_size: int = 28) -> Imported:
    """Walk the leaf modules in order and rebuild the chain conv (bn) relu pool ... flatten linear relu ... linear."""
    from torch import nn

    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    convs, linears, params, notes = [], [], {}, []
    pending = None  # the conv being assembled: its weights, and whether ReLU / pool were seen
    state = "conv"
    for name, module in leaves:
        where = f"layer {name or type(module).__name__} ({type(module).__name__})"
        if isinstance(module, nn.Conv2d):
            if state != "conv":
                raise InputError(f"{where}: a conv layer after a linear layer cannot be built")
            _close_conv(pending, convs, params, where)
            _conv_check(module, where)
            weight = _array(module.weight)
            bias = _array(module.bias) if module.bias is not None else np.zeros(weight.shape[0])
            pending = {"weight": weight, "bias": bias, "relu": False, "pool": None, "name": name}
        elif isinstance(module, nn.BatchNorm2d):
            if pending is None or pending["relu"] or pending["pool"] is not None:
                raise InputError(f"{where}: batch norm must follow a conv directly to be folded into it")
            scale = _array(module.weight) / np.sqrt(_array(module.running_var) + module.eps)
            pending["weight"] = pending["weight"] * scale[:, None, None, None]
            pending["bias"] = (pending["bias"] - _array(module.running_mean)) * scale + _array(module.bias)
            notes.append(f"batch norm {name} folded into conv {pending['name']}")
        elif isinstance(module, nn.ReLU):
            if state == "conv":
                if pending is None or pending["relu"]:
                    raise InputError(f"{where}: a ReLU must follow a conv or a linear layer")
                pending["relu"] = True
            else:
                if not linears or linears[-1]["relu"]:
                    raise InputError(f"{where}: a ReLU must follow a linear layer")
                linears[-1]["relu"] = True
        elif isinstance(module, nn.MaxPool2d):
            if pending is None or pending["pool"] is not None:
                raise InputError(f"{where}: a max-pool must follow a conv layer (one per conv)")
            pending["pool"] = _pool_size(module, where)
        elif isinstance(module, (nn.Flatten, nn.Dropout, nn.Identity)):
            if isinstance(module, nn.Flatten) and state == "conv":
                _close_conv(pending, convs, params, where)
                pending, state = None, "linear"
        elif isinstance(module, nn.Linear):
            if state == "conv":
                _close_conv(pending, convs, params, where)
                pending, state = None, "linear"
            if linears and not linears[-1]["relu"]:
                raise InputError(f"{where}: the linear layer before it has no ReLU (the hardware has one after "
                                 f"every hidden layer)")
            bias = _array(module.bias) if module.bias is not None else np.zeros(module.out_features)
            linears.append({"weight": _array(module.weight), "bias": bias, "relu": False, "name": name})
        else:
            raise InputError(f"{where}: the hardware has no {type(module).__name__} (it does conv, ReLU, "
                             f"max-pool, flatten, linear; batch norm is folded)")
    if state == "conv":
        raise InputError("the model has no linear layer: the last layer must be a linear layer (the logits)")
    if linears[-1]["relu"]:
        raise InputError("the last linear layer has a ReLU after it; the hardware's last layer gives raw logits")
    specs = [ConvSpec(c["weight"].shape[0], c["weight"].shape[-1], c["pool"]) for c in convs]
    network = Network(tuple(specs), tuple(l["weight"].shape[0] for l in linears[:-1]), linears[-1]["weight"].shape[0],
                      image_size, convs[0]["weight"].shape[1])  # the input channels: conv1's
    for k, layer in enumerate(linears, 1):
        params[f"fc{k}.weight"], params[f"fc{k}.bias"] = layer["weight"], layer["bias"]
    return _checked(network, params, tuple(notes))


def _close_conv(pending, convs, params, where) -> None:
    if pending is None:
        return
    if not pending["relu"]:
        raise InputError(f"{where}: conv {pending['name']} has no ReLU module after it (the hardware has one; "
                         f"if the model calls F.relu in forward(), import its state_dict with --pool instead)")
    if pending["pool"] is None:
        pending["pool"] = 1
    convs.append(pending)
    k = len(convs)
    params[f"conv{k}.weight"], params[f"conv{k}.bias"] = pending["weight"], pending["bias"]


# What a state dict cannot say (it holds weights only), and so what its import assumes.
STATE_DICT_LAYERS = ("a state dict holds no layers between its weights: read as valid convolutions (stride 1, "
                     "no padding), each followed by ReLU and a max-pool (--pool), then linear layers with ReLU")


def from_state_dict(state: dict, image_size: int = 28, pool: int = 2) -> Imported:
    """A state dict's weights in order: 4-D tensors are convs (each followed by ReLU and a
    ``pool`` x ``pool`` max-pool), 2-D tensors linear layers; each ``X.weight`` may have an
    ``X.bias`` beside it. BatchNorm entries (running_mean...) are refused: save the module."""
    import torch

    weights = [(key[: -len(".weight")], value) for key, value in state.items() if key.endswith(".weight")]
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()):
        key, value = next((k, v) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor)))
        raise InputError(f"the state dict's entry {str(key)[:40]!r} is a {type(value).__name__}, not a tensor: "
                         f"a state dict maps names to tensors")
    if any(key.endswith(("running_mean", "running_var")) for key in state):
        raise InputError("the state dict has batch-norm statistics: save the whole module (torch.save(model, ...)) "
                         "so that the batch norms can be folded into their convs")
    convs, linears, params = [], [], {}
    for prefix, tensor in weights:
        array = _array(tensor)
        bias_key = f"{prefix}.bias"
        bias = _array(state[bias_key]) if bias_key in state else np.zeros(array.shape[0])
        if array.ndim == 4:
            if linears:
                raise InputError(f"{prefix}: a conv layer after a linear layer cannot be built")
            if array.shape[2] != array.shape[3]:
                raise InputError(f"{prefix}: a {array.shape[2]}x{array.shape[3]} kernel (only square kernels)")
            convs.append((array, bias))
        elif array.ndim == 2:
            linears.append((array, bias))
        else:
            raise InputError(f"{prefix}.weight has {array.ndim} dimensions; only conv (4) and linear (2) layers")
    if not convs or not linears:
        raise InputError("a LeNet-family state dict needs conv weights (4-D) and then linear weights (2-D)")
    specs = [ConvSpec(w.shape[0], w.shape[-1], pool) for w, _ in convs]
    try:
        network = Network(tuple(specs), tuple(w.shape[0] for w, _ in linears[:-1]), linears[-1][0].shape[0],
                          image_size, convs[0][0].shape[1])  # the input channels: conv1's
    except InputError as e:
        raise InputError(f"{e} ({STATE_DICT_LAYERS}; a model that pads or strides its convolutions cannot be "
                         f"imported)") from None
    for k, (w, b) in enumerate(convs, 1):
        params[f"conv{k}.weight"], params[f"conv{k}.bias"] = w, b
    for k, (w, b) in enumerate(linears, 1):
        params[f"fc{k}.weight"], params[f"fc{k}.bias"] = w, b
    notes = (f"{STATE_DICT_LAYERS}; other poolings and activations are tried on test images, but a model that "
             f"pads or strides computes something else (an ONNX graph or the module saved whole says its layers)",)
    return replace(_checked(network, params, notes), state_dict=True)


def _checked(network: Network, params: dict, notes: tuple) -> Imported:
    for name, shape in network.parameter_shapes.items():
        if params[name].shape != shape:
            raise InputError(f"{name} has shape {list(params[name].shape)}; the chain {network.spec} needs "
                             f"{list(shape)} (check --image-size and --pool)")
    if not all(np.isfinite(value).all() for value in params.values()):
        raise InputError("the model's parameters hold NaN or infinite values")
    return Imported(network, {k: v.astype(np.float32) for k, v in params.items()}, notes)


def fold_normalization(imported: Imported, mean: float, std: float) -> Imported:
    """A model of ``(x - mean) / std`` as a model of ``x``: conv1's weights divided by ``std``, its
    bias less ``mean / std`` times each filter's weight sum (exact for a valid convolution)."""
    if not std > 0:
        raise InputError(f"the normalisation's std must be above 0, not {std}")
    params = dict(imported.params)
    w, b = params["conv1.weight"].astype(np.float64), params["conv1.bias"].astype(np.float64)
    params["conv1.weight"] = (w / std).astype(np.float32)
    params["conv1.bias"] = (b - mean / std * w.sum(axis=(1, 2, 3))).astype(np.float32)
    return replace(imported, params=params, notes=imported.notes + (f"input normalisation (mean {mean}, std {std}) "
                                                                     f"folded into conv1",))
