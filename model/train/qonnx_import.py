"""QONNX graphs in: a network whose ``Quant`` nodes (as the ``qonnx`` package defines them, and as
Brevitas' ``export_qonnx`` and QKeras' converter write them) already are fixed-point Q2.6
arithmetic imports exactly, each layer's integer codes taken as they are, without retraining.

The graph is read by ``onnx_import``'s walker (the same chain of Conv, Relu, MaxPool, Flatten,
Gemm...), extended with the ``Quant`` op (``Quant`` or ``IntQuant``, domain
``qonnx.custom_op.general`` or ``finn.custom_op.general``):

* a ``Quant`` on a constant quantizes a weight or a bias: it is evaluated here with qonnx's own
  function (``qonnx.custom_op.general.quant.quant``), as qonnx's executor would;
* a ``Quant`` on the data before the first layer is the input quantizer; one after a layer (before
  or after its ``Relu`` or its max-pool) is that layer's requantizer.

**Exact** (the default): every quantizer must map onto the hardware's arithmetic
(``docs/arithmetic.md``), or the graph is refused with one line naming the node and why:

* every quantizer: zero point 0, a power-of-two scale (per channel only if every channel has the
  same one), at most 8 bits, every input of the node a stored constant but the data;
* weights: scale ``2**-k`` with ``k <= 6`` (a code step the Q2.6 grid has) and a range inside
  Q2.6's -2..1.984 (``bits - k <= 2`` for a signed quantizer), so that each weight is the code
  ``q * 2**(6-k)``; a quantizer of fewer than 8 bits becomes the layer's ``uniform`` restriction
  (``codes.Uniform(bits, 6 - k)``, in the manifest), which the hardware stores in ``bits`` bits;
* biases: the same, unrestricted (a float bias with no ``Quant`` is accepted only if every value
  already is a Q2.6 code, such as zero);
* the input: a ``Quant`` that maps every pixel ``p`` (fed as ``p/255``, or normalised) to the
  hardware's code ``(64p + 127) // 255`` (checked on all 256 pixels: scale 1/64, rounding
  ``ROUND``, ``HALF_EVEN``, ``HALF_UP`` or ``HALF_DOWN``, since ``64p/255`` is never a tie);
* activations: one per hidden layer, scale 2^-f, a clip to 0..2^(b-1)-1 after the ReLU for b
  signed bits (narrow or not) or to 0..2^b-1 for b unsigned ones: the layer's activation format
  (``arith.Fixed``; Q2.6 is scale 1/64, 8 signed or 7 unsigned bits), rounding ``FLOOR`` or
  ``DOWN`` (the hardware's ``floor``) or
  ``HALF_UP`` (``half-up``: qonnx rounds halves away from zero, the hardware towards +inf; they
  differ only on negative values, which the ReLU makes 0 either way), the same in every layer.
  ``ROUND`` (half to even, Brevitas' default) differs from both on ties and is refused; so is a
  ``Quant`` on the logits (the hardware's are the raw sum) and anything that changes the quantized
  weights (a batch norm, a scaling ``Mul``), or a ``Softmax`` after the logits (the check
  compares logits).

Overflow is ``saturate`` (a ``Quant`` clips). ``Trunc``, ``BipolarQuant``, ``FloatQuant`` and
every other QONNX op are refused naming the node.

**Requantize** (``ImportOptions.requantize``, ``--requantize``): the graph's weights as its
weight ``Quant`` nodes give them, its activation quantizers dropped, imported like a float graph
and quantized again by rounding or QAT (``--qat-epochs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import arith
from ..codes import PLAIN, CodesError, Restriction, Uniform
from ..errors import InputError
from .onnx_import import OnnxModel, _Walker, feed, load_onnx

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general")
QUANT_OPS = ("Quant", "IntQuant")
INSTALL_HINT = "pip install -e '.[onnx]'"
# qonnx's rounding modes (resolve_rounding_mode) that are the hardware's roundings on a requantizer
# whose output a ReLU makes non-negative; every other mode is refused.
ACTIVATION_ROUNDING = {"FLOOR": arith.Rounding.FLOOR, "DOWN": arith.Rounding.FLOOR,
                       "HALF_UP": arith.Rounding.HALF_UP}
ROUNDING_NAMES = {"ROUND": "ROUND (half to even)", "HALF_EVEN": "HALF_EVEN", "CEIL": "CEIL", "UP": "UP (away from 0)",
                  "HALF_DOWN": "HALF_DOWN"}
CHECK_IMAGES = 10_000  # test images (all of MNIST's) qonnx's executor runs before an exact import writes


def is_qonnx(model) -> bool:
    """Does the ``onnx.ModelProto`` hold QONNX operators (by their domain)?"""
    return any(node.domain in QONNX_DOMAINS for node in model.graph.node)


def _quant_function():
    try:
        from qonnx.custom_op.general.quant import quant
    except ImportError:
        raise InputError(f"reading a QONNX graph needs the qonnx package ({INSTALL_HINT})") from None
    return quant


@dataclass(frozen=True)
class Quantizer:
    """One ``Quant`` node's parameters (its constant inputs and attributes)."""

    where: str
    scale: np.ndarray
    zero_point: np.ndarray
    bits: float
    signed: bool
    narrow: bool
    rounding: str

    @property
    def min_int(self) -> int:
        return -(1 << (int(self.bits) - 1)) + self.narrow if self.signed else 0

    @property
    def max_int(self) -> int:
        return (1 << (int(self.bits) - 1)) - 1 if self.signed else (1 << int(self.bits)) - 1 - self.narrow

    def apply(self, x) -> np.ndarray:
        """What the node computes (qonnx's own function), in the dtype of ``x``."""
        dtype = np.asarray(x).dtype
        return _quant_function()(np.asarray(x), self.scale.astype(dtype), self.zero_point.astype(dtype),
                                 np.asarray(self.bits, dtype), int(self.signed), int(self.narrow), self.rounding)

    def exponent(self) -> int:
        """``e`` of its scale ``2**e``, after checking the parts every mapped quantizer shares:
        zero point 0, one power-of-two scale, 2 to 8 whole bits."""
        if np.any(self.zero_point != 0):
            raise InputError(f"{self.where}: zero point {_values(self.zero_point)} (asymmetric); the hardware's codes "
                             f"have zero point 0")
        if not (float(self.bits).is_integer() and 2 <= self.bits <= arith.WIDTH):
            raise InputError(f"{self.where}: {self.bits:g} bits; the hardware holds {arith.WIDTH}-bit codes (2 to "
                             f"{arith.WIDTH} bits map)")
        scales = np.unique(self.scale)
        if len(scales) > 1:
            raise InputError(f"{self.where}: per-channel scales {_values(scales)}; the hardware has one scale per "
                             f"tensor (all channels the same power of two)")
        scale = float(scales[0])
        mantissa, exponent = math.frexp(scale) if math.isfinite(scale) and scale > 0 else (0.0, 0)
        if mantissa != 0.5:
            raise InputError(f"{self.where}: scale {scale:.6g} is not a power of two; Q2.6 codes need a "
                             f"fixed-point scale 2^-k")
        return exponent - 1

    def describe(self) -> str:
        kind = ("signed" if self.signed else "unsigned") + (" narrow" if self.narrow else "")
        scale = float(np.unique(self.scale)[0]) if self.scale.size else float("nan")
        exponent = math.frexp(scale)[1] - 1 if scale > 0 and math.isfinite(scale) else None
        scale_text = f"2^{exponent}" if exponent is not None and scale == 2.0**exponent else f"{scale:.6g}"
        return f"{int(self.bits)}-bit {kind}, scale {scale_text}, {self.rounding}"


def _values(array) -> str:
    values = np.unique(np.asarray(array, np.float64))
    text = ", ".join(f"{v:.6g}" for v in values[:4])
    return text + (", ..." if len(values) > 4 else "")


@dataclass(frozen=True)
class Exact:
    """The graph's integer network: int8 codes by state-dict name, each layer's restriction (only
    the restricted ones), the rounding its requantizers use, the value of one golden logit unit
    in the graph's output (1/4096, from the last layer's input scale), and each quantizer."""

    params: dict
    codes: dict
    rounding: arith.Rounding
    logit_unit: float
    quantizers: dict
    notes: tuple = ()
    activations: tuple = ()  # each hidden layer's arith.Fixed (empty: Q2.6 everywhere)


@dataclass(frozen=True)
class QonnxModel:
    """A QONNX graph read: the float network (``graph.imported``: the dequantized weights) and
    what running it needs; ``exact`` when read exactly; the number of ``Quant`` nodes."""

    graph: OnnxModel
    exact: Exact | None
    quant_nodes: int
    notes: tuple = field(default=())


def read(path, image_size: int = 28, exact: bool = True, normalize=None) -> QonnxModel:
    """``path`` (a QONNX graph) -> ``QonnxModel``: exactly (refusing what does not map), or with
    ``exact=False`` its dequantized weights for requantizing."""
    return read_loaded(*load_onnx(path), image_size, exact, normalize)


def read_loaded(model, data: bytes, image_size: int = 28, exact: bool = True, normalize=None) -> QonnxModel:
    """``read`` of a graph ``onnx_import.load_onnx`` has already read."""
    walker = _QonnxWalker(model, image_size, exact)
    graph = walker.walk(data)
    result = walker.exact_network(graph, normalize) if exact else None
    notes = tuple(walker.qonnx_notes)
    return QonnxModel(graph, result, walker.quant_count, notes)


class _QonnxWalker(_Walker):
    """``onnx_import``'s walker, reading ``Quant`` nodes too (see the module docstring)."""

    def __init__(self, model, image_size: int, exact: bool):
        super().__init__(model, image_size)
        self.exact = exact
        self.quants = {}  # constant name -> the Quantizer that made it
        self.input_quant = None
        self.quant_count = 0
        self.qonnx_notes = []

    def _domain(self, node, where: str) -> None:
        if node.domain in QONNX_DOMAINS:
            if node.op_type not in QUANT_OPS:
                raise InputError(f"{where}: QONNX's {node.op_type} does not map onto the hardware's arithmetic "
                                 f"(import reads Quant nodes only)")
            return
        super()._domain(node, where)

    def _quantizer(self, node, where: str) -> Quantizer:
        if len(node.input) != 4 or len(node.output) != 1:
            raise InputError(f"{where}: a Quant takes 4 inputs (x, scale, zero point, bit width), this has "
                             f"{len(node.input)}")
        parts = []
        for name, what in zip(node.input[1:], ("scale", "zero point", "bit width")):
            if name not in self.consts:
                raise InputError(f"{where}: its {what} ({name}) is computed in the graph; import reads a stored "
                                 f"constant (qonnx-cleanup folds it)")
            parts.append(np.asarray(self.consts[name]))
        attrs = {a.name: a for a in node.attribute}
        signed = bool(attrs["signed"].i) if "signed" in attrs else True
        narrow = bool(attrs["narrow"].i) if "narrow" in attrs else False
        rounding = attrs["rounding_mode"].s.decode().upper() if "rounding_mode" in attrs else "ROUND"
        bits = parts[2].reshape(-1)
        if bits.size != 1:
            raise InputError(f"{where}: a bit width per channel ({_values(bits)}); one per tensor maps")
        self.quant_count += 1
        return Quantizer(where, parts[0].astype(np.float64), parts[1].astype(np.float64), float(bits[0]), signed,
                         narrow, rounding)

    def _off_chain(self, node, where: str) -> None:
        if node.op_type in QUANT_OPS and node.domain in QONNX_DOMAINS and node.input[0] in self.consts:
            quantizer = self._quantizer(node, where)
            value = np.asarray(self.consts[node.input[0]])
            if not np.issubdtype(value.dtype, np.floating):
                value = value.astype(np.float32)
            self.consts[node.output[0]] = quantizer.apply(value)
            self.quants[node.output[0]] = quantizer
            return
        super()._off_chain(node, where)
        if node.op_type in ("Transpose", "Identity") and node.input[0] in self.quants:
            self.quants[node.output[0]] = self.quants[node.input[0]]  # one scale per tensor: transposes alike

    def _op_Quant(self, node, where, attrs):
        quantizer = self._quantizer(node, where)
        if not self.layers:
            if self.input_quant is not None:
                raise InputError(f"{where}: a second Quant on the input (after {self.input_quant.where})")
            self.input_quant = quantizer
        else:
            self.layers[-1].setdefault("activation", []).append(quantizer)

    _op_IntQuant = _op_Quant

    # ---- where the weights and biases of each layer come from ----

    def _op_Conv(self, node, where, attrs):
        super()._op_Conv(node, where, attrs)
        layer = self.layers[-1]
        layer["weight_from"] = node.input[1]
        layer["bias_from"] = node.input[2] if len(node.input) > 2 and node.input[2] else None

    def _op_Gemm(self, node, where, attrs):
        if self.exact and (attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            raise InputError(f"{where}: a Gemm with alpha {attrs.get('alpha', 1.0):g}, beta {attrs.get('beta', 1.0):g} "
                             f"scales its quantized weights; the exact import takes them as they are")
        super()._op_Gemm(node, where, attrs)
        layer = self.layers[-1]
        layer["weight_from"] = node.input[1]
        layer["bias_from"] = node.input[2] if len(node.input) > 2 and node.input[2] else None

    def _op_MatMul(self, node, where, attrs):
        super()._op_MatMul(node, where, attrs)
        self.layers[-1]["weight_from"], self.layers[-1]["bias_from"] = node.input[1], None

    def _op_Add(self, node, where, attrs, sign=1.0):
        layer = self._pending()
        if self.exact and (sign < 0 or layer is None or layer.get("bias_from") is not None or layer.get("activation")):
            raise InputError(f"{where}: an addition that is not the layer's one bias changes its quantized "
                             f"values; the exact import takes them as they are (--requantize re-quantizes)")
        super()._op_Add(node, where, attrs, sign)
        if self.exact:
            layer["bias_from"] = next(name for name in node.input if name != self.current)

    def _refuse_fold(self, node, where, attrs):
        if self.exact:
            raise InputError(f"{where}: a {node.op_type} changes the quantized weights before it; the exact import "
                             f"takes them as they are (fold it before quantizing, or --requantize)")
        getattr(super(), f"_op_{node.op_type}")(node, where, attrs)

    _op_BatchNormalization = _op_Mul = _op_Div = _op_Sub = _refuse_fold

    # ---- the exact network ----

    def exact_network(self, graph: OnnxModel, normalize) -> Exact:
        """Check every quantizer against the hardware's arithmetic and take the integer codes."""
        if graph.tail is not None:
            raise InputError(f"a {graph.tail} follows the logits; the exact import compares the graph's logits with "
                             f"the hardware's (export the model without it)")
        if self.input_quant is None:
            raise InputError(f"the input {self.input_name!r} reaches the first layer unquantized; the hardware takes "
                             f"Q2.6 pixel codes: put a Quant of scale 1/64 (8 bits, zero point 0) on the input")
        quantizers = {"input": self.input_quant.describe()}
        self._check_input(self.input_quant, normalize)
        names = self._layer_names()
        roundings, formats = {}, []
        for name, layer in zip(names, self.layers):
            activations = layer.get("activation", [])
            last = layer is self.layers[-1]
            if last and activations:
                raise InputError(f"{activations[0].where}: quantizes the logits; the hardware's logits are the last "
                                 f"layer's raw sum (export the last layer without an output quantizer)")
            if not last and len(activations) != 1:
                raise InputError(f"{layer['where']}: {len(activations) or 'no'} activation quantizers after this layer; "
                                 f"the hardware requantizes every hidden layer once (one Quant of scale 1/64)")
            for quantizer in activations:
                roundings[quantizer.where], fmt = self._check_activation(quantizer)
                formats.append(fmt)
                quantizers[f"{name}.activation"] = quantizer.describe()
        if len(set(roundings.values())) > 1:
            each = ", ".join(f"{where} {rounding}" for where, rounding in roundings.items())
            raise InputError(f"the requantizers round differently ({each}); the hardware rounds every layer alike")
        rounding = next(iter(roundings.values()), arith.Rounding.HALF_UP)
        params, codes, notes = {}, {}, []
        imported = graph.imported
        for name, layer in zip(names, self.layers):
            for part in ("weight", "bias"):
                source = layer.get(f"{part}_from")
                quantizer = self.quants.get(source) if source is not None else None
                values = np.asarray(imported.params[f"{name}.{part}"], np.float64) * arith.SCALE
                restriction = self._check_constant(quantizer, values, part, layer["where"], notes, name)
                params[f"{name}.{part}"] = np.rint(values).astype(np.int8)
                if quantizer is not None:
                    quantizers[f"{name}.{part}"] = quantizer.describe()
                if part == "weight" and restriction != PLAIN:
                    codes[name] = restriction
        unit = float(np.unique(self.input_quant.scale)[0]) if len(self.layers) == 1 else \
            float(np.unique(self.layers[-2]["activation"][0].scale)[0])
        activations = arith.Arithmetic(activations=tuple(formats)).activations  # all Q2.6: none
        return Exact(params, codes, rounding, unit / arith.SCALE, quantizers, tuple(notes), activations)

    def _layer_names(self) -> list[str]:
        names, counts = [], {"conv": 0, "linear": 0}
        for layer in self.layers:
            counts[layer["kind"]] += 1
            names.append(f"{'conv' if layer['kind'] == 'conv' else 'fc'}{counts[layer['kind']]}")
        return names

    def _check_input(self, quantizer: Quantizer, normalize) -> None:
        exponent = quantizer.exponent()
        if exponent != -arith.FRAC_BITS:
            raise InputError(f"{quantizer.where}: input scale 2^{exponent}; the hardware's pixel codes are Q2.6 "
                             f"(scale 1/64 = 2^-{arith.FRAC_BITS})")
        pixels = np.arange(arith.PIXEL_MAX + 1, dtype=np.uint8)
        fed = feed(pixels[:, None, None], normalize).reshape(-1)
        got = np.rint(np.asarray(quantizer.apply(fed), np.float64) * arith.SCALE).astype(np.int64)
        want = arith.quantize_pixels(pixels)
        if not np.array_equal(got, want):
            p = int(np.flatnonzero(got != want)[0])
            raise InputError(f"{quantizer.where}: maps pixel {p} (fed as p/255) to code {got[p]}, the hardware to "
                             f"{want[p]} (the nearest code, (64p+127)//255); rounding {quantizer.rounding} on the "
                             f"input does not map (ROUND or HALF_UP does)")

    def _check_activation(self, quantizer: Quantizer) -> tuple[arith.Rounding, arith.Fixed]:
        """The rounding and the activation format (``arith.Fixed``) of a hidden layer's quantizer:
        scale 2^-f, b bits, signed or unsigned, clipping where the format's requantizer clips
        (after the ReLU only the top matters). Q2.6 is 8 signed bits of scale 1/64, or 7
        unsigned ones: the same requantizer."""
        exponent = quantizer.exponent()
        bits = int(quantizer.bits)
        try:
            fmt = arith.Fixed(bits, -exponent, quantizer.signed)
        except arith.FormatError as e:
            raise InputError(f"{quantizer.where}: activation scale 2^{exponent}, {bits} bits "
                             f"{'signed' if quantizer.signed else 'unsigned'}: {e}") from None
        if quantizer.max_int != fmt.high or quantizer.min_int > 0:
            raise InputError(f"{quantizer.where}: clips to codes {quantizer.min_int}..{quantizer.max_int}; the "
                             f"hardware's {fmt} saturates to {fmt.low}..{fmt.high}, then ReLU (0..{fmt.high}): a "
                             f"quantizer that is not narrow maps")
        if (fmt.requant_bits, fmt.frac) == (arith.Q2_6.requant_bits, arith.Q2_6.frac):
            fmt = arith.Q2_6  # UQ1.6 requantizes exactly as Q2.6 does
        rounding = ACTIVATION_ROUNDING.get(quantizer.rounding)
        if rounding is None:
            raise InputError(f"{quantizer.where}: rounding {ROUNDING_NAMES.get(quantizer.rounding, quantizer.rounding)} "
                             f"is neither of the hardware's (floor: FLOOR or DOWN; half-up, (acc+32)>>6: HALF_UP)")
        return rounding, fmt

    def _check_constant(self, quantizer: Quantizer | None, values: np.ndarray, part: str, where: str, notes: list,
                        name: str) -> Restriction:
        """A weight or bias in code units (value * 64): its quantizer's scale and range checked;
        the layer's restriction (weights)."""
        low, high = arith.QMIN / arith.SCALE, arith.QMAX / arith.SCALE
        if quantizer is None:
            if np.all(values == np.rint(values)) and values.min(initial=0) >= arith.QMIN and \
                    values.max(initial=0) <= arith.QMAX:
                notes.append(f"{name}.{part} has no Quant node; its values are Q2.6 codes, taken as they are")
                return PLAIN
            raise InputError(f"{where}: its {part} is not quantized (no Quant node) and its values are not Q2.6 codes "
                             f"(multiples of 1/64 in [{low:g}, {high:g}])")
        exponent = quantizer.exponent()
        shift = exponent + arith.FRAC_BITS
        if shift < 0:
            raise InputError(f"{quantizer.where}: {part} scale 2^{exponent} is finer than Q2.6's step 1/64 = "
                             f"2^-{arith.FRAC_BITS}")
        lowest, highest = quantizer.min_int << shift, quantizer.max_int << shift
        if lowest < arith.QMIN or highest > arith.QMAX:
            raise InputError(f"{quantizer.where}: {int(quantizer.bits)}-bit {part} codes of scale 2^{exponent} reach "
                             f"[{lowest / arith.SCALE:g}, {highest / arith.SCALE:g}], beyond Q2.6's range "
                             f"[{low:g}, {high:g}]")
        if not np.all(values == np.rint(values)):  # a folded scaling; the Quant's output is always on its grid
            raise InputError(f"{where}: its {part} is not its Quant's output ({quantizer.where}) as it stands")
        if part == "bias":
            return PLAIN
        bits = int(quantizer.bits) + (0 if quantizer.signed else 1)
        try:
            return PLAIN if (bits, shift) == (arith.WIDTH, 0) else Uniform(bits, shift)
        except CodesError:  # unreachable after the range check; kept as a clear refusal
            raise InputError(f"{quantizer.where}: {int(quantizer.bits)}-bit weights of scale 2^{exponent} do not fit "
                             f"8-bit Q2.6 codes") from None


# ---- running the graph in qonnx's executor ----


def executor_outputs(graph: OnnxModel, images: np.ndarray, normalize=None, batch: int = 1000) -> np.ndarray:
    """The graph's output (float64 ``[N, classes]``) for uint8 ``images`` [N,S,S] in qonnx's
    executor (``execute_onnx``), ``batch`` images a run. qonnx checks each input against the
    graph's shape, so a copy with its batch set to the run's is run (its input and output's first
    dimension, and a flattening ``Reshape``'s stored batch where the graph was exported for a fixed
    one); nothing else changes."""
    try:
        import onnx
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.infer_shapes import InferShapes
    except ImportError:
        raise InputError(f"running a QONNX graph needs the qonnx package ({INSTALL_HINT})") from None
    base = onnx.load_model_from_string(graph.data)
    wrappers = {}

    def wrapper(n: int):
        if n not in wrappers:
            model = onnx.ModelProto()
            model.CopyFrom(base)
            del model.graph.value_info[:]
            _set_batch(model, n, graph.batch)
            wrappers[n] = ModelWrapper(model).transform(InferShapes())
        return wrappers[n]

    x = feed(images, normalize)
    x = x[:, None] if graph.layout == "nchw" else x[..., None]
    output = base.graph.output[0].name
    outputs = []
    for start in range(0, len(x), batch):
        chunk = x[start : start + batch]
        result = execute_onnx(wrapper(len(chunk)), {graph.input_name: chunk})[output]
        outputs.append(np.asarray(result, np.float64).reshape(len(chunk), -1))
    return np.concatenate(outputs) if outputs else np.zeros((0, 0))


def _set_batch(model, n: int, fixed: int | None) -> None:
    from onnx import numpy_helper

    initializers = {t.name for t in model.graph.initializer}
    for value in (*model.graph.input, *model.graph.output):
        if value.name not in initializers:
            dims = value.type.tensor_type.shape.dim
            if len(dims):
                dims[0].ClearField("dim_param")
                dims[0].dim_value = n
    if fixed is None:
        return
    targets = {node.input[1] for node in model.graph.node if node.op_type == "Reshape" and len(node.input) > 1}
    for tensor in model.graph.initializer:
        if tensor.name in targets:
            shape = numpy_helper.to_array(tensor)
            if shape.ndim == 1 and len(shape) == 2 and shape[0] == fixed:
                tensor.CopyFrom(numpy_helper.from_array(np.array([n, shape[1]], shape.dtype), tensor.name))
