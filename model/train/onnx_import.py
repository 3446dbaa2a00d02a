"""Bring your own model as ONNX: a float ONNX graph of a LeNet-family network becomes the same
``Imported`` (network and float parameters) as a PyTorch file, which ``flow.import_model`` then
quantizes, with or without QAT, exactly as it does for PyTorch.

An ONNX file is a graph of standard operators and tensors, with no code: it is read with the
``onnx`` package (parsing only) and run by ``onnxruntime`` (standard operators only: no custom
op library is ever registered), which measures the float model's own accuracy and checks that
the imported network computes what the graph computes before anything is quantized.

Accepted, as ``torch.onnx.export`` (both exporters) and tf2onnx write them, opsets 9 to the
newest the installed ``onnx`` knows:

* ``Conv`` (valid: no padding, stride 1, dilation 1, one group, square kernel), its bias given
  or added by a following ``Add``;
* ``BatchNormalization`` right after a ``Conv``, ``Gemm`` or ``MatMul`` (folded into it), and a
  per-channel ``Mul``/``Div``/``Add``/``Sub`` by a constant there (folded the same way);
* ``Relu`` after every conv and hidden linear layer; ``MaxPool`` (PxP windows, stride P, no
  padding), before or after the ``Relu`` (they commute);
* ``Flatten`` (axis 1) or ``Reshape`` to ``[N, features]`` (its shape a constant or computed by
  ``Shape``/``Gather``/``Concat``... from the input, as the legacy exporter writes ``view``);
* ``Gemm``, or ``MatMul`` and ``Add``; ``Dropout`` and ``Identity`` (no-ops at inference);
* ``Transpose`` between NHWC and NCHW (a Keras model through tf2onnx: input ``[N,S,S,1]``, and
  its flatten in (row, column, channel) order, which becomes a permutation of fc1's columns);
* a ``Softmax`` or ``LogSoftmax`` at the very end is dropped with a note: it is monotonic, so the
  class (the largest output) is unchanged, and the hardware's logits are the values before it.

Refused with one line naming the node and why: average pooling, padding, strides, dilation,
groups, any activation but ReLU, a missing ReLU, a branch or join in the chain, an operator of
another domain, weights kept in a file other than one beside the graph, an input that is not one grey
channel of a square image, a pool that does not divide its input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import arith
from ..errors import InputError
from ..files import regular_file
from ..network import ConvSpec, Network
from .importer import Imported, _checked

# An ONNX LeNet is a few hundred kB (LeNet-5: 250 kB); anything near this is not a LeNet-family
# network, and the file is read whole (protobuf has no streaming reader).
MAX_BYTES = 64 * 2**20
MIN_OPSET = 9
INSTALL_HINT = "pip install -e '.[onnx]'"

# Nodes that only compute a Reshape's target shape (the legacy exporter's ``x.view(x.size(0), -1)``).
# (Not ConstantOfShape: a tiny graph could ask onnxruntime for a tensor of any size with it.)
SHAPE_OPS = frozenset({"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Constant", "Mul",
                       "Div", "ReduceProd", "Identity"})
ACTIVATIONS = frozenset({"Sigmoid", "Tanh", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "HardSigmoid",
                         "HardSwish", "Softplus", "Softsign", "Gelu", "Mish", "Clip", "ThresholdedRelu", "Erf",
                         "Swish"})
AVERAGE_POOLS = frozenset({"AveragePool", "GlobalAveragePool", "LpPool", "GlobalLpPool", "GlobalMaxPool"})


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper  # noqa: F401
    except ImportError:
        raise InputError(f"reading an ONNX model needs the onnx and onnxruntime packages ({INSTALL_HINT})") from None
    return onnx


def is_onnx_file(path) -> bool:
    """Is ``path`` meant as ONNX: its suffix is ``.onnx``, or (another suffix) its first byte is a
    protobuf ModelProto's (field 1, ``ir_version``, a varint: 0x08), which neither a torch zip
    archive (``PK``) nor a pickle (0x80) starts with. A path that cannot be read is left to the
    reader that will say why."""
    path = os.fspath(path)
    if path.lower().endswith(".onnx"):
        return True
    try:
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            return f.read(1) == b"\x08"
    except OSError:
        return False


def load_onnx(path, max_bytes: int = MAX_BYTES):
    """The ``ModelProto`` of ``path`` and the bytes it was parsed from, after checking that the
    path is a regular file of at most ``max_bytes`` (a FIFO would block, a device never end)."""
    onnx = _onnx()
    path = regular_file(path, "model file")
    try:
        if os.stat(path).st_size > max_bytes:
            raise InputError(f"{path} holds {os.stat(path).st_size:,} bytes; an ONNX LeNet-family model is far "
                             f"smaller (at most {max_bytes:,} read)")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise InputError(f"cannot read model file {path}: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise InputError(f"{path} holds more than {max_bytes:,} bytes; an ONNX LeNet-family model is far smaller")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf's DecodeError and others for a damaged file
        raise InputError(f"cannot read {path} as an ONNX model: {type(e).__name__}: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
    if model.ir_version < 1 or not model.graph.node:
        raise InputError(f"cannot read {path} as an ONNX model: it holds no graph")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        _load_external_data(model, path, max_bytes)
        data = model.SerializeToString()
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise InputError(f"{path} is not a valid ONNX model: {str(e).strip().splitlines()[0]}") from None
    return model, data


def _load_external_data(model, path, max_bytes: int) -> None:
    """Weights kept beside the graph (``torch.onnx.export`` writes ``m.onnx.data`` by default)
    read into the model. Each file must be a plain file name in the graph's own folder (no
    path, no ``..``: a graph cannot make import read another file) and a regular file; together
    they are bounded by ``max_bytes``."""
    from onnx import TensorProto
    from onnx.external_data_helper import ExternalDataInfo

    folder, total = Path(path).parent, 0
    for tensor in model.graph.initializer:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        try:
            info = ExternalDataInfo(tensor)
        except ValueError as e:
            raise InputError(f"{path}: weight {tensor.name!r} has bad external data: {e}") from None
        location = str(info.location)
        if not location or Path(location).name != location or location in (".", ".."):
            raise InputError(f"{path}: weight {tensor.name!r} is kept in {location!r}; import reads weights only from "
                             f"a file beside the graph, named without a folder")
        source = regular_file(folder / location, "external weights file")
        offset, length = info.offset or 0, info.length
        size = os.stat(source).st_size
        if length is None:
            length = size - offset
        total += length
        if offset + length > size or total > max_bytes:
            raise InputError(f"{path}: weight {tensor.name!r} asks for bytes {offset:,} to {offset + length:,} of "
                             f"{source} ({size:,} bytes; at most {max_bytes:,} read in all)")
        try:
            with open(source, "rb") as f:
                f.seek(offset)
                tensor.raw_data = f.read(length)
        except OSError as e:
            raise InputError(f"cannot read external weights file {source}: {e.strerror or e}") from None
        tensor.data_location = TensorProto.DEFAULT
        del tensor.external_data[:]


@dataclass(frozen=True)
class OnnxModel:
    """An ONNX graph read as our network: ``imported`` (as from a PyTorch file), and what running
    the graph in onnxruntime needs: its bytes, the input's name and layout (``nchw``/``nhwc``), its
    batch size (``None``: any), and the dropped last operator (``Softmax``, ``LogSoftmax`` or ``None``)."""

    imported: Imported
    data: bytes
    input_name: str
    layout: str
    batch: int | None
    tail: str | None


def read(path, image_size: int = 28) -> OnnxModel:
    """``path`` -> ``OnnxModel``. ``image_size`` is used only when the graph's input size is not fixed."""
    return read_loaded(*load_onnx(path), image_size)


def read_loaded(model, data: bytes, image_size: int = 28) -> OnnxModel:
    """``read`` of a graph ``load_onnx`` has already read."""
    return _Walker(model, image_size).walk(data)


def _where(node, index: int) -> str:
    return f"node {node.name!r} ({node.op_type})" if node.name else f"node {index} ({node.op_type})"


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


class _Walker:
    """Follows the one chain of data from the graph's input to its output, node by node, and
    builds the layers; constants (initializers, ``Constant`` nodes) become their weights."""

    def __init__(self, model, image_size: int):
        from onnx import defs, numpy_helper

        self.model, self.graph = model, model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.computed = set()  # values computed from constants or shapes only (a Reshape's target shape)
        self.layers, self.notes = [], []
        self.tail = None
        self._opset(defs.onnx_opset_version())
        self._input(image_size)

    def _opset(self, newest: int) -> None:
        for entry in self.model.opset_import:
            if entry.domain in ("", "ai.onnx") and not MIN_OPSET <= entry.version <= newest:
                raise InputError(f"the model uses ONNX opset {entry.version}; import reads opsets {MIN_OPSET} to "
                                 f"{newest} (the installed onnx package's newest)")

    def _input(self, image_size: int) -> None:
        from onnx import TensorProto

        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise InputError(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); a "
                             f"LeNet-family network has one, the image")
        value = inputs[0]
        tensor = value.type.tensor_type
        if tensor.elem_type != TensorProto.FLOAT:
            raise InputError(f"input {value.name!r} is of ONNX type {TensorProto.DataType.Name(tensor.elem_type)}; "
                             f"import reads float32 models")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if len(dims) != 4:
            raise InputError(f"input {value.name!r} has shape {_shape_text(dims)}; a LeNet-family network takes "
                             f"[N, 1, S, S] images")
        # NHWC (a Keras model) when the last axis is the one channel and the middle two are the sides.
        self.layout = "nhwc" if dims[3] == 1 and dims[1] not in (1, None) else "nchw"
        channels, height, width = (dims[3], dims[1], dims[2]) if self.layout == "nhwc" else dims[1:]
        if channels not in (1, None):
            raise InputError(f"input {value.name!r} has {channels} channels ({_shape_text(dims)}); ONNX import "
                             f"takes one grey channel (a colour network imports from its PyTorch state dict)")
        if height != width:
            raise InputError(f"input {value.name!r} is {height}x{width} ({_shape_text(dims)}); the hardware takes "
                             f"square images")
        self.image_size = height or image_size
        self.input_name = value.name
        self.batch = dims[0] if dims[0] else None
        self.data = {value.name}  # values computed from the image
        self.current = value.name
        self.shape = (1, self.image_size, self.image_size) if self.layout == "nchw" \
            else (self.image_size, self.image_size, 1)
        self.order = None  # after a flatten: fc1's column of each of our (c, h, w) features

    # ---- the walk ----

    def walk(self, data: bytes) -> OnnxModel:
        for index, node in enumerate(self.graph.node):
            where = _where(node, index)
            self._domain(node, where)
            if not any(name in self.data for name in node.input):
                self._off_chain(node, where)
                continue
            if node.op_type == "Shape":  # the size of the data, for a Reshape's target
                self.computed.update(node.output)
                continue
            self._step(node, where)
        outputs = [o.name for o in self.graph.output]
        if outputs != [self.current]:
            raise InputError(f"the model's outputs are {', '.join(outputs)}; a LeNet-family network has one, the "
                             f"logits at the end of its chain")
        return OnnxModel(self._imported(), data, self.input_name, self.layout, self.batch, self.tail)

    def _domain(self, node, where: str) -> None:
        """Refuse an operator this reader does not know (``qonnx_import`` reads QONNX's ``Quant`` too)."""
        if node.domain not in ("", "ai.onnx"):
            raise InputError(f"{where}: an operator of domain {node.domain!r}; import reads standard ONNX "
                             f"operators only")

    def _off_chain(self, node, where: str) -> None:
        if node.op_type == "Constant":
            self.consts[node.output[0]] = _constant(node)
        elif node.op_type in ("Transpose", "Identity") and node.input[0] in self.consts:
            # a weight transposed in the graph (the legacy exporter without constant folding)
            perm = _attributes(node).get("perm")
            value = self.consts[node.input[0]]
            self.consts[node.output[0]] = value if node.op_type == "Identity" else np.transpose(value, perm)
        elif node.op_type in SHAPE_OPS:
            self.computed.update(node.output)
        else:
            raise InputError(f"{where}: computes from constants only, which import does not evaluate (export with "
                             f"constant folding)")

    def _step(self, node, where: str) -> None:
        chain = [name for name in node.input if name in self.data]
        if chain != [self.current] or list(node.input).count(self.current) != 1:
            raise InputError(f"{where}: the network must be one chain of layers; this node reads "
                             f"{', '.join(chain)} where the chain is at {self.current}")
        if self.tail is not None:
            raise InputError(f"{where}: follows the {self.tail} at the end; only the logits' {self.tail} may be dropped")
        op = node.op_type
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            if op in AVERAGE_POOLS:
                raise InputError(f"{where}: the hardware has no {op} (it pools with PxP max-pools, stride P)")
            if op in ACTIVATIONS:
                raise InputError(f"{where}: the hardware has no {op}; its only activation is ReLU")
            raise InputError(f"{where}: the hardware has no {op} (it does Conv, Relu, MaxPool, Flatten/Reshape, "
                             f"Gemm or MatMul+Add; BatchNormalization is folded)")
        used = [name for name in node.output[1:] if name and self._is_used(name)]
        if used:
            raise InputError(f"{where}: its extra output {used[0]} is used; the hardware computes only the first")
        handler(node, where, _attributes(node))
        self.data.add(node.output[0])
        self.current = node.output[0]

    def _is_used(self, name: str) -> bool:
        return any(name in n.input for n in self.graph.node) or any(o.name == name for o in self.graph.output)

    def _const(self, node, name: str, where: str, what: str) -> np.ndarray:
        if name in self.consts:
            return np.asarray(self.consts[name], dtype=np.float64)
        if name in self.computed:
            raise InputError(f"{where}: its {what} is computed in the graph; export with constant folding so that "
                             f"it is a stored tensor")
        raise InputError(f"{where}: its {what} ({name}) is not a constant")

    # ---- layers ----

    def _pending(self):
        return self.layers[-1] if self.layers else None

    def _conv_stage(self) -> bool:
        return self.order is None

    def _op_Conv(self, node, where, attrs):
        if not self._conv_stage():
            raise InputError(f"{where}: a conv layer after a linear layer cannot be built")
        if self.layout != "nchw":
            raise InputError(f"{where}: a Conv on NHWC data (the graph must transpose to NCHW first)")
        weight = self._const(node, node.input[1], where, "weight")
        bias = self._const(node, node.input[2], where, "bias") if len(node.input) > 2 and node.input[2] \
            else np.zeros(weight.shape[0])
        _conv_attributes(attrs, weight, where)
        channels, size = self.shape[0], self.shape[1]
        if weight.shape[1] != channels:
            raise InputError(f"{where}: its weight takes {weight.shape[1]} channels; its input has {channels}")
        self._close(where)
        kernel = weight.shape[-1]
        if kernel > size:
            raise InputError(f"{where}: a {kernel}x{kernel} kernel does not fit its {size}x{size} input")
        self.layers.append({"kind": "conv", "weight": weight, "bias": bias, "relu": False, "pool": None,
                            "where": where})
        self.shape = (weight.shape[0], size - kernel + 1, size - kernel + 1)

    def _op_MaxPool(self, node, where, attrs):
        layer = self._pending()
        if layer is None or layer["kind"] != "conv" or layer["pool"] is not None or not self._conv_stage():
            raise InputError(f"{where}: a max-pool must follow a conv layer (one per conv)")
        kernel = list(attrs.get("kernel_shape", []))
        strides = list(attrs.get("strides", [1] * len(kernel)))
        pads = list(attrs.get("pads", [0] * 2 * len(kernel)))
        dilations = list(attrs.get("dilations", [1] * len(kernel)))
        auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
        if (len(kernel) != 2 or kernel[0] != kernel[1] or strides != kernel or any(pads) or set(dilations) != {1}
                or auto_pad not in ("NOTSET", "VALID")):
            raise InputError(f"{where}: the hardware pools PxP windows with stride P and no padding; this is "
                             f"kernel {kernel}, strides {strides}, pads {pads}, dilations {dilations}"
                             f"{'' if auto_pad == 'NOTSET' else ', auto_pad ' + auto_pad}")
        pool, (channels, size, _) = kernel[0], self.shape
        if size % pool:
            raise InputError(f"{where}: a {pool}x{pool} pool does not divide its {size}x{size} input")
        layer["pool"] = pool
        self.shape = (channels, size // pool, size // pool)

    def _op_Relu(self, node, where, attrs):
        layer = self._pending()
        if layer is None or layer["relu"]:
            raise InputError(f"{where}: a ReLU must follow a conv or a linear layer (one each)")
        layer["relu"] = True

    def _op_BatchNormalization(self, node, where, attrs):
        layer = self._foldable(where, "batch norm")
        if attrs.get("training_mode", 0):
            raise InputError(f"{where}: a batch norm in training mode (export the model in eval mode)")
        scale_, offset, mean, var = (self._const(node, name, where, what) for name, what in
                                     zip(node.input[1:5], ("scale", "bias", "mean", "variance")))
        scale = scale_ / np.sqrt(var + attrs.get("epsilon", 1e-5))
        self._affine(layer, scale, offset - mean * scale)
        self.notes.append(f"batch norm {where} folded into the layer before it ({layer['where']})")

    def _op_Add(self, node, where, attrs, sign=1.0):
        layer = self._foldable(where, "an addition")
        constant = self._other_input(node, where, "Add" if sign > 0 else "Sub", commutes=sign > 0)
        self._affine(layer, 1.0, sign * self._per_channel(constant, where))

    def _op_Sub(self, node, where, attrs):
        self._op_Add(node, where, attrs, sign=-1.0)

    def _op_Mul(self, node, where, attrs, inverse=False):
        layer = self._foldable(where, "a scaling")
        constant = self._per_channel(self._other_input(node, where, node.op_type, commutes=not inverse), where)
        if inverse and not np.all(constant):
            raise InputError(f"{where}: divides by zero")
        self._affine(layer, 1.0 / constant if inverse else constant, 0.0)

    def _op_Div(self, node, where, attrs):
        self._op_Mul(node, where, attrs, inverse=True)

    def _foldable(self, where: str, what: str):
        layer = self._pending()
        if layer is None or layer["relu"] or layer.get("pool") is not None or (layer["kind"] == "conv") != self._conv_stage():
            raise InputError(f"{where}: {what} must follow a conv or linear layer directly to be folded into it "
                             f"(before its ReLU and pool)")
        return layer

    def _other_input(self, node, where: str, op: str, commutes: bool) -> np.ndarray:
        first, second = node.input[0], node.input[1]
        if second == self.current:
            if not commutes:
                raise InputError(f"{where}: a constant {op} the layer's output is not an affine fold")
            first, second = second, first
        return self._const(node, second, where, "constant operand")

    def _per_channel(self, constant: np.ndarray, where: str) -> np.ndarray:
        """The value per output channel of a constant broadcast (ONNX's numpy rules) on the data."""
        if self._conv_stage():
            channels, size, _ = self.shape
            full_shape = (1, channels, size, size)
        else:
            channels = self.shape[0]
            full_shape = (1, channels)
        try:
            full = np.broadcast_to(constant, full_shape)
        except ValueError:
            raise InputError(f"{where}: a constant of shape {list(constant.shape)} does not broadcast on the layer's "
                             f"output {list(full_shape)}") from None
        per_channel = full[(0, slice(None)) + (0,) * (len(full_shape) - 2)]
        if not np.array_equal(full, np.broadcast_to(per_channel.reshape((1, channels) + (1,) * (len(full_shape) - 2)),
                                                    full_shape)):
            raise InputError(f"{where}: its constant varies within a channel; only one value per channel folds")
        return per_channel

    @staticmethod
    def _affine(layer, scale, offset) -> None:
        scale = np.broadcast_to(np.asarray(scale, np.float64), layer["bias"].shape)
        layer["weight"] = layer["weight"] * scale.reshape((-1,) + (1,) * (layer["weight"].ndim - 1))
        layer["bias"] = layer["bias"] * scale + offset

    def _close(self, where: str) -> None:
        """The conv before ``where`` is complete: it needs its ReLU (the hardware has one)."""
        layer = self._pending()
        if layer is not None and layer["kind"] == "conv" and not layer["relu"]:
            raise InputError(f"{where}: the conv layer before it ({layer['where']}) has no Relu after it (the "
                             f"hardware has one)")
        if layer is not None and layer["kind"] == "conv" and layer["pool"] is None:
            layer["pool"] = 1

    # ---- flatten and linear layers ----

    def _flatten(self, where: str) -> None:
        if not self._conv_stage():
            return  # already [N, features]
        if not self.layers:
            raise InputError(f"{where}: flattens the image before any conv layer; a LeNet-family network starts "
                             f"with a conv layer")
        self._close(where)
        channels, size, _ = self.shape if self.layout == "nchw" else (self.shape[2], self.shape[0], self.shape[1])
        index = np.arange(channels * size * size).reshape(channels, size, size)
        # fc1's column of our feature (c, h, w): the graph flattens in its own layout's order
        self.order = index.reshape(-1) if self.layout == "nchw" else index.transpose(1, 2, 0).reshape(-1).argsort()
        self.shape = (channels * size * size,)

    def _op_Flatten(self, node, where, attrs):
        if attrs.get("axis", 1) != 1:
            raise InputError(f"{where}: a Flatten with axis {attrs['axis']}; the network flattens each image "
                             f"(axis 1)")
        self._flatten(where)

    def _op_Reshape(self, node, where, attrs):
        target = node.input[1]
        if target in self.consts:
            shape = [int(v) for v in np.asarray(self.consts[target]).reshape(-1)]
            features = int(np.prod(self.shape))
            if len(shape) != 2 or shape[1] not in (features, -1) or shape[0] not in (-1, 0, 1, self.batch):
                raise InputError(f"{where}: reshapes to {shape}; the network only flattens each image to "
                                 f"[N, {features}]")
        elif target not in self.computed:
            raise InputError(f"{where}: its target shape ({target}) is not a constant")
        self._flatten(where)

    def _op_Transpose(self, node, where, attrs):
        perm = list(attrs.get("perm", []))
        if not self._conv_stage() and perm == [0, 1]:
            return
        if self._conv_stage() and self.layout == "nhwc" and perm == [0, 3, 1, 2]:
            height, width, channels = self.shape
            self.layout, self.shape = "nchw", (channels, height, width)
        elif self._conv_stage() and self.layout == "nchw" and perm == [0, 2, 3, 1]:
            channels, height, width = self.shape
            self.layout, self.shape = "nhwc", (height, width, channels)
        else:
            raise InputError(f"{where}: a Transpose with perm {perm} on {self.layout.upper()} data; only NHWC <-> NCHW "
                             f"is read")

    def _op_Gemm(self, node, where, attrs):
        if attrs.get("transA", 0):
            raise InputError(f"{where}: a Gemm with transA=1 (the data must be the first operand, untransposed)")
        b = self._const(node, node.input[1], where, "weight")
        weight = attrs.get("alpha", 1.0) * (b if attrs.get("transB", 0) else b.T)
        self._linear(where, weight)
        if len(node.input) > 2 and node.input[2]:
            constant = self._const(node, node.input[2], where, "bias")
            self._affine(self.layers[-1], 1.0, attrs.get("beta", 1.0) * self._per_channel(constant, where))

    def _op_MatMul(self, node, where, attrs):
        if node.input[0] != self.current:
            raise InputError(f"{where}: a MatMul whose second operand is the data (the data must come first)")
        self._linear(where, self._const(node, node.input[1], where, "weight").T)

    def _linear(self, where: str, weight: np.ndarray) -> None:
        self._flatten(where)
        if weight.ndim != 2 or weight.shape[1] != self.shape[0]:
            raise InputError(f"{where}: a weight of shape {list(weight.T.shape)} on {self.shape[0]} features")
        layer = self._pending()
        if layer is not None and layer["kind"] == "linear" and not layer["relu"]:
            raise InputError(f"{where}: the linear layer before it ({layer['where']}) has no Relu (the hardware has "
                             f"one after every hidden layer)")
        self.layers.append({"kind": "linear", "weight": weight, "bias": np.zeros(weight.shape[0]), "relu": False,
                            "where": where})
        self.shape = (weight.shape[0],)

    def _op_Dropout(self, node, where, attrs):
        """A no-op at inference, unless its ``training_mode`` input (opset 12) says otherwise."""
        if len(node.input) > 2 and node.input[2]:
            mode = self.consts.get(node.input[2])
            if mode is None or np.asarray(mode).any():
                raise InputError(f"{where}: a Dropout in training mode (export the model in eval mode)")

    def _op_Identity(self, node, where, attrs):
        pass

    def _op_Softmax(self, node, where, attrs):
        layer = self._pending()
        axis = attrs.get("axis", -1 if self._opset_of_default() >= 13 else 1)
        if self._conv_stage() or layer is None or layer["relu"] or axis not in (1, -1):
            raise InputError(f"{where}: only a {node.op_type} over the classes, after the last linear layer, is "
                             f"dropped")
        self.tail = node.op_type
        self.notes.append(f"{node.op_type} {where} at the end dropped: it does not change the class (the largest "
                          f"output); the hardware gives the logits before it")

    _op_LogSoftmax = _op_Softmax

    def _opset_of_default(self) -> int:
        return next((e.version for e in self.model.opset_import if e.domain in ("", "ai.onnx")), MIN_OPSET)

    def _imported(self) -> Imported:
        if self._conv_stage():
            raise InputError("the model has no linear layer: the last layer must be a linear layer (the logits)")
        convs = [layer for layer in self.layers if layer["kind"] == "conv"]
        linears = [layer for layer in self.layers if layer["kind"] == "linear"]
        if linears[-1]["relu"]:
            raise InputError(f"the last linear layer ({linears[-1]['where']}) has a Relu after it; the hardware's "
                             f"last layer gives raw logits")
        linears[0]["weight"] = linears[0]["weight"][:, self.order]
        network = Network(tuple(ConvSpec(c["weight"].shape[0], c["weight"].shape[-1], c["pool"]) for c in convs),
                          tuple(layer["weight"].shape[0] for layer in linears[:-1]), linears[-1]["weight"].shape[0],
                          self.image_size)
        params = {}
        for prefix, group in (("conv", convs), ("fc", linears)):
            for k, layer in enumerate(group, 1):
                params[f"{prefix}{k}.weight"], params[f"{prefix}{k}.bias"] = layer["weight"], layer["bias"]
        return _checked(network, params, tuple(self.notes))


def _conv_attributes(attrs: dict, weight: np.ndarray, where: str) -> None:
    problems = []
    if weight.ndim != 4:
        raise InputError(f"{where}: a {weight.ndim - 2}-D convolution; the hardware's are 2-D")
    if weight.shape[2] != weight.shape[3]:
        problems.append(f"a {weight.shape[2]}x{weight.shape[3]} kernel (only square kernels)")
    auto_pad = _text(attrs.get("auto_pad", "NOTSET"))
    if auto_pad not in ("NOTSET", "VALID"):
        problems.append(f"padding (auto_pad {auto_pad}; only valid convolutions: padding 0)")
    if any(attrs.get("pads", [])):
        problems.append(f"padding {list(attrs['pads'])} (only valid convolutions: padding 0)")
    if set(attrs.get("strides", [1])) != {1}:
        problems.append(f"strides {list(attrs['strides'])} (only 1)")
    if set(attrs.get("dilations", [1])) != {1}:
        problems.append(f"dilations {list(attrs['dilations'])}")
    if attrs.get("group", 1) != 1:
        problems.append(f"group={attrs['group']}")
    if problems:
        raise InputError(f"{where}: the hardware cannot do {', '.join(problems)}")


def _constant(node) -> np.ndarray:
    from onnx import numpy_helper

    attrs = {a.name: a for a in node.attribute}
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"].t)
    for name, pick in (("value_float", lambda a: a.f), ("value_floats", lambda a: list(a.floats)),
                       ("value_int", lambda a: a.i), ("value_ints", lambda a: list(a.ints))):
        if name in attrs:
            return np.asarray(pick(attrs[name]))
    raise InputError(f"a Constant node ({node.name or node.output[0]}) of a kind import does not read")


def _shape_text(dims) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in dims) + "]"


# ---- running the graph ----


def feed(images: np.ndarray, normalize=None) -> np.ndarray:
    """uint8 pixels as a float model takes them: ``p/255`` (float32), or ``(p/255 - mean)/std``."""
    x = images.astype(np.float32) / np.float32(arith.PIXEL_MAX)
    if normalize is not None:
        x = (x - np.float32(normalize[0])) / np.float32(normalize[1])
    return x


def runtime_outputs(model: OnnxModel, images: np.ndarray, normalize=None, threads: int = 2) -> np.ndarray:
    """The graph's output for uint8 ``images`` [N,S,S] in onnxruntime, fed as the model expects:
    ``p / 255``, or ``(p / 255 - mean) / std`` for a model trained on normalised inputs."""
    try:
        import onnxruntime
    except ImportError:
        raise InputError(f"measuring an ONNX model needs onnxruntime ({INSTALL_HINT})") from None
    settings = onnxruntime.SessionOptions()
    settings.intra_op_num_threads = settings.inter_op_num_threads = threads
    settings.log_severity_level = 3  # errors only: no warnings about unused initializers on stderr
    try:
        session = onnxruntime.InferenceSession(model.data, settings, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise InputError(f"onnxruntime cannot run the model: {str(e).strip().splitlines()[0]}") from None
    x = feed(images, normalize)
    x = x[:, None] if model.layout == "nchw" else x[..., None]
    step = model.batch or 1000
    outputs = []
    for start in range(0, len(x), step):
        batch = x[start : start + step]
        short = step - len(batch) if model.batch else 0  # a fixed batch size: pad the last batch
        if short:
            batch = np.concatenate([batch, np.zeros((short,) + batch.shape[1:], np.float32)])
        out = session.run(None, {model.input_name: batch})[0]
        outputs.append(np.asarray(out, np.float64).reshape(len(batch), -1)[: len(batch) - short])
    return np.concatenate(outputs)


def apply_tail(logits: np.ndarray, tail: str | None) -> np.ndarray:
    """Our logits through the graph's dropped last operator, to compare with its output."""
    if tail is None:
        return logits
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return log_softmax if tail == "LogSoftmax" else np.exp(log_softmax)
