"""The integer network as an ONNX or QONNX graph that other tools run, exactly.

The graph takes what the accelerator takes, raw pixels (``pixels``: uint8 ``[N,1,S,S]``), and
gives what the golden model gives, the logits in its integer units (``logits``: int32
``[N,classes]``, the raw last accumulator: units of 1/4096 for Q2.6, 2**-logit_frac with
activation formats of its own). Every step is the golden model's
(``golden.forward``), written with ONNX operators:

* pixel -> code: a ``Gather`` from the 256-entry table ``arith.quantize_pixels`` builds (the
  hardware's ROM);
* conv and linear layers: ``Conv`` and ``Gemm`` in float32 on integer-valued tensors. float32
  holds every integer below 2**24 exactly, and every product and every partial sum here is one
  (``accumulator_bounds`` checks it against the weights, and ``build`` refuses a network where
  it does not hold), so no sum is rounded in any order;
* requantization ``(acc + offset) >> shift`` (6 for Q2.6; each layer's ``LayerArithmetic``):
  ``Mul`` by 2**-shift (exact) after adding the offset, then ``Floor`` (an arithmetic shift is
  a floor); saturate is ``Clip`` to the output format's range (-128..127 for Q2.6), wrap is
  ``y - 2**n * floor((y + 2**(n-1)) / 2**n)`` (the low n bits read as two's complement); then
  ``Relu``;
* max-pool: ``MaxPool`` (kernel and stride P, odd edges dropped as ``golden.maxpool`` does);
  flatten: ``Flatten`` (channel, row, column: the golden order).

Two forms:

``onnx``
    Plain ONNX (opset 13). Tensors are in code units: activations and weights are the Q2.6
    codes themselves, accumulators are ``acc`` (units of 1/4096), biases ``b << 6``.
``qonnx``
    QONNX, as the ``qonnx`` package defines it: tensors hold real values (code / 64), and every
    weight, bias and activation passes a ``Quant`` node (``qonnx.custom_op.general``: scale,
    zero point 0, bit width, signed, narrow, rounding mode), so hls4ml and FINN see fixed-point
    types. A layer's weight quantizer comes from its restriction's levels (``codes.py``): the
    largest common factor of its levels is the scale, their range the bit width (a ternary layer
    is a 2-bit narrow quantizer with its scale; power-of-two layers, which no ``Quant`` spells,
    are plain integers of the width their largest level needs). Saturating requantization is
    ``Relu`` then ``Quant`` (scale 1/64, 8 bits, rounding ``FLOOR`` or ``HALF_UP``): after ReLU
    its input is never negative, where ``HALF_UP`` (half away from zero) is ``floor(x + 1/2)``
    (a layer with its own activation format: scale 2**-frac, the requantizer's signed width),
    and rounding commutes with the clip because the bounds are integers. Wrap has no ``Quant``
    form; it is the ops above, followed by an identity ``Quant`` that states the type.

``onnx`` and ``onnxruntime`` (and ``qonnx`` for the second form) are imported inside the
functions that need them: importing this module costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import arith
from .codes import Restriction
from .errors import InputError
from .network import ConvLayer
from .weights import WeightSet

FORMATS = ("onnx", "qonnx")
OPSET = 13
QONNX_DOMAIN = "qonnx.custom_op.general"
INPUT, OUTPUT = "pixels", "logits"
FLOAT32_EXACT = 1 << 24  # every integer of magnitude up to 2**24 is a float32
INSTALL_HINT = "pip install 'lenet-fpga[onnx]'"


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise InputError(f"exporting to ONNX needs the {module.split('.')[0]} package ({e}); {INSTALL_HINT}") from None


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}")
    return fmt


def accumulator_bounds(weights: WeightSet, arithmetic: arith.Arithmetic) -> dict[str, int]:
    """The largest |acc + offset| each layer can reach with these weights: the sum over an
    output's terms of |w| times the largest input, plus |b << fi| and the rounding offset. Any
    partial sum of the terms is bounded by it too."""
    bounds = {}
    input_max = int(arith.quantize_pixels(np.array([arith.PIXEL_MAX], np.uint8))[0])
    for layer, a in zip(weights.network.layers, arithmetic.layers(weights.network)):
        w = np.abs(weights.params[f"{layer.name}.weight"].astype(np.int64)).reshape(layer.weight_shape[0], -1)
        b = np.abs(weights.params[f"{layer.name}.bias"].astype(np.int64)) << a.bias_shift
        offset = a.round_offset if a.output is not None else 0
        bounds[layer.name] = int((w.sum(axis=1) * input_max + b).max()) + offset
        if a.output is not None:
            input_max = a.output.high  # every later layer reads ReLU outputs
    return bounds


def check_exact(weights: WeightSet, arithmetic: arith.Arithmetic) -> dict[str, int]:
    """Refuse a network whose sums float32 could round (none of the shipped ones comes near)."""
    bounds = accumulator_bounds(weights, arithmetic)
    for name, bound in bounds.items():
        if bound > FLOAT32_EXACT:
            raise InputError(f"{name}: its accumulator can reach {bound:,}, beyond 2**24 = {FLOAT32_EXACT:,}, the "
                             f"largest range float32 (ONNX's Conv and Gemm) holds exactly; not exported")
    return bounds


def weight_quantizer(restriction: Restriction) -> tuple[int, int, bool]:
    """(scale in codes, bit width, narrow) of the ``Quant`` that passes exactly this layer's
    levels: the scale is their greatest common divisor, the width the fewest signed bits that
    hold every level over the scale, narrow when the most negative of those is not used."""
    levels = restriction.levels.astype(np.int64)
    scale = math.gcd(*(int(v) for v in levels if v)) or 1
    low, high = int(levels.min()) // scale, int(levels.max()) // scale
    bits = max(2, arith.signed_width(max(-low - 1, high, 0)))
    return scale, bits, low > -(1 << (bits - 1))


class _Graph:
    """Nodes and constants of one graph, each output named after its layer."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []
        self._count = 0
        self._names = set()

    def const(self, name: str, value, dtype=np.float32) -> str:
        base, n = name, 1
        while name in self._names:
            n += 1
            name = f"{base}_{n}"
        self._names.add(name)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, inputs, name: str, domain: str | None = None, **attributes) -> str:
        self._count += 1
        out = f"{name}" if name == OUTPUT else f"{name}_{self._count}"
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=out, domain=domain, **attributes))
        return out

    def scaled(self, x: str, factor: float, name: str) -> str:
        return x if factor == 1 else self.op("Mul", [x, self.const(f"{name}.times", factor)], name)

    def quant(self, x: str, scale: float, bits: int, name: str, narrow: bool = False, rounding: str = "ROUND") -> str:
        """A QONNX ``Quant``: ``clip(round(x / scale)) * scale``, signed, zero point 0."""
        inputs = [x, self.const(f"{name}.scale", scale), self.const(f"{name}.zeropt", 0.0),
                  self.const(f"{name}.bitwidth", float(bits))]
        return self.op("Quant", inputs, name, domain=QONNX_DOMAIN, signed=1, narrow=int(narrow),
                       rounding_mode=rounding)


@dataclass(frozen=True)
class Exported:
    """A built graph: the ``onnx.ModelProto``, its form, the arithmetic it computes and each
    layer's accumulator bound (all below 2**24)."""

    model: object
    format: str
    arithmetic: arith.Arithmetic
    bounds: dict

    def to_bytes(self) -> bytes:
        return self.model.SerializeToString()


def build(weights: WeightSet, fmt: str = "onnx", arithmetic: arith.Arithmetic | None = None,
          batch: int | None = None) -> Exported:
    """The graph of ``weights``' network under ``arithmetic`` (default: the weights' own) in
    form ``fmt`` (``FORMATS``). ``batch``: a fixed batch size (qonnx's executor and FINN need
    one), else the symbolic ``N``."""
    check_format(fmt)
    arithmetic = arithmetic or weights.arithmetic
    bounds = check_exact(weights, arithmetic)
    onnx = _require("onnx")
    graph = _Graph(onnx.helper, onnx.numpy_helper)
    real = fmt == "qonnx"
    network = weights.network
    layers = arithmetic.layers(network)
    code = 2.0**-arith.FRAC_BITS if real else 1.0  # what one pixel code is in the graph's tensors

    table = arith.quantize_pixels(np.arange(arith.PIXEL_MAX + 1, dtype=np.uint8)) * code
    x = graph.op("Cast", [INPUT], "pixel_index", to=onnx.TensorProto.INT64)
    x = graph.op("Gather", [graph.const("pixel_codes", table), x], "pixel_code")
    if real:
        x = graph.quant(x, code, arith.WIDTH, "pixel_quant")
    for layer, a in zip(network.layers, layers):
        x = _layer(graph, layer, x, weights, a, real)
    logit_unit = 2.0 ** -arithmetic.logit_frac(network)
    x = graph.scaled(x, 1 / logit_unit if real else 1.0, "logit_units")  # real values -> logit units
    graph.op("Cast", [x], OUTPUT, to=onnx.TensorProto.INT32)

    size, channels, batch_dim = network.image_size, network.input_channels, batch if batch is not None else "N"
    inputs = [onnx.helper.make_tensor_value_info(INPUT, onnx.TensorProto.UINT8, [batch_dim, channels, size, size])]
    outputs = [onnx.helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.INT32, [batch_dim, network.classes])]
    doc = (f"lenet-fpga {network.spec}, {arithmetic.describe()}: uint8 pixels [N,{channels},{size},{size}] -> "
           f"int32 logits [N,{network.classes}] in units of 2^-{arithmetic.logit_frac(network)} (the golden model's)")
    onnx_graph = onnx.helper.make_graph(graph.nodes, f"lenet_fpga_{fmt}", inputs, outputs, graph.initializers,
                                        doc_string=doc)
    opsets = [onnx.helper.make_opsetid("", OPSET)] + ([onnx.helper.make_opsetid(QONNX_DOMAIN, 1)] if real else [])
    model = onnx.helper.make_model(onnx_graph, opset_imports=opsets, producer_name="lenet-fpga", doc_string=doc)
    model.ir_version = min(model.ir_version, 8)  # readable by older onnxruntimes too
    onnx.helper.set_model_props(model, {
        "network": network.spec, "q_format": "Q2.6", "rounding": str(arithmetic.rounding),
        "overflow": str(arithmetic.overflow), "format": fmt, "input": "uint8 pixels 0..255",
        "output": f"logits: the raw last accumulator, units of 2^-{arithmetic.logit_frac(network)}",
        **({"activations": ",".join(map(str, arithmetic.activations))} if arithmetic.activations else {}),
        **({"modes": ",".join(f"{r}/{o}" for r, o in arithmetic.modes)} if arithmetic.modes else {}),
    })
    model = _with_shapes(model, real)
    onnx.checker.check_model(model)
    return Exported(model, fmt, arithmetic, bounds)


def _layer(graph: _Graph, layer, x: str, weights: WeightSet, a: arith.LayerArithmetic, real: bool) -> str:
    """One conv or linear layer of the golden model (``a``: its arithmetic): accumulate, then
    (hidden layers) requantize and ReLU, then (convs) pool. In the real form a tensor holds
    values (an input code times 2**-fi); in the code form, codes (acc: units of 2**-(6 + fi))."""
    name = layer.name
    w_codes = weights.params[f"{name}.weight"].astype(np.int64)
    b_codes = weights.params[f"{name}.bias"].astype(np.int64)
    weight_unit = 2.0**-arith.FRAC_BITS if real else 1.0
    w = graph.const(f"{name}.weight", w_codes * weight_unit)
    if real:
        # acc = sum(x*w) + b/64 in real units is (sum(xq*wq) + (bq << fi)) * 2**-(6 + fi): the same sum.
        scale, bits, narrow = weight_quantizer(weights.codes[name])
        w = graph.quant(w, scale * weight_unit, bits, f"{name}.weight_quant", narrow)
        b = graph.quant(graph.const(f"{name}.bias", b_codes * weight_unit), weight_unit, arith.WIDTH,
                        f"{name}.bias_quant")
    else:
        b = graph.const(f"{name}.bias", b_codes << a.bias_shift)  # acc units: b << fi
    if isinstance(layer, ConvLayer):
        acc = graph.op("Conv", [x, w, b], name, kernel_shape=[layer.kernel] * 2)
    else:
        x = graph.op("Flatten", [x], f"{name}.flatten", axis=1) if _is_first_linear(layer, weights) else x
        acc = graph.op("Gemm", [x, w, b], name, transB=1)
    if getattr(layer, "last", False):
        return acc
    y = _requantize(graph, acc, a, real, name)
    if isinstance(layer, ConvLayer):
        y = graph.op("MaxPool", [y], f"{name}.pool", kernel_shape=[layer.pool] * 2, strides=[layer.pool] * 2)
    return y


def _is_first_linear(layer, weights: WeightSet) -> bool:
    return layer.name == weights.network.linear_layers[0].name


def _requantize(graph: _Graph, acc: str, a: arith.LayerArithmetic, real: bool, name: str) -> str:
    """``relu(overflow((acc + offset) >> shift))`` (``LayerArithmetic.activate``), out in the
    graph's units: output codes, or their values (code * 2**-fo) in the real form."""
    out = a.output
    out_unit = 2.0**-out.frac  # the value of one output code
    bits = out.requant_bits
    if real and a.overflow is arith.Overflow.SATURATE:
        rounding = "HALF_UP" if a.rounding is arith.Rounding.HALF_UP else "FLOOR"
        return graph.quant(graph.op("Relu", [acc], f"{name}.relu"), out_unit, bits, f"{name}.requantize",
                           rounding=rounding)
    acc_unit = 2.0**-a.acc_frac if real else 1.0  # one unit of acc in the graph's tensors
    shifted = graph.scaled(acc, 1 / (acc_unit * (1 << a.shift)), f"{name}.shift")  # acc / 2**shift, exact
    if a.round_offset:
        shifted = graph.op("Add", [shifted, graph.const(f"{name}.round", a.round_offset / (1 << a.shift))],
                           f"{name}.round")
    y = graph.op("Floor", [shifted], f"{name}.floor")
    if a.overflow is arith.Overflow.SATURATE:
        y = graph.op("Clip", [y, graph.const(f"{name}.qmin", out.low), graph.const(f"{name}.qmax", out.high)],
                     f"{name}.saturate")
    else:  # the low bits as two's complement: y - span * floor((y - low) / span)
        span = float(1 << bits)
        moved = graph.op("Add", [y, graph.const(f"{name}.half_span", -out.low)], f"{name}.wrap")
        turns = graph.op("Floor", [graph.scaled(moved, 1 / span, f"{name}.wrap")], f"{name}.wrap")
        y = graph.op("Sub", [y, graph.scaled(turns, span, f"{name}.wrap")], f"{name}.wrap")
    y = graph.op("Relu", [y], f"{name}.relu")
    if real:
        y = graph.quant(graph.scaled(y, out_unit, f"{name}.to_real"), out_unit, bits, f"{name}.requantize")
    return y


def _with_shapes(model, real: bool):
    """The model with every tensor's shape recorded (qonnx's executor needs them)."""
    if not real:
        import onnx

        return onnx.shape_inference.infer_shapes(model, strict_mode=True)
    _require("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    return ModelWrapper(model).transform(InferShapes()).model


# --------------------------------------------------------------------------------------------
# Running an exported graph


def run(model, images, fmt: str = "onnx", batch: int = 1000) -> np.ndarray:
    """The logits (int64 ``[N,classes]``) of an exported model (``onnx.ModelProto``, bytes or a
    path) on ``images`` (uint8 ``[N,S,S]``, or ``[N,C,S,S]``, at the network's size):
    onnxruntime for ``onnx``, qonnx's executor (``execute_onnx``) for ``qonnx``."""
    check_format(fmt)
    onnx = _require("onnx")
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise InputError(f"images must be uint8 [N,S,S] or [N,C,S,S], got {images.dtype} {list(images.shape)}")
    if images.ndim == 3:
        images = images[:, None]
    chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
    run_chunk = _onnxruntime_runner(model) if fmt == "onnx" else _qonnx_runner(model)
    outputs = [run_chunk(chunk) for chunk in chunks]
    classes = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    return np.concatenate(outputs).astype(np.int64) if outputs else np.zeros((0, classes), np.int64)


def _onnxruntime_runner(model):
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    fixed = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value  # 0: a symbolic batch

    def run_chunk(chunk):
        if not fixed:
            return session.run([OUTPUT], {INPUT: chunk})[0]
        parts = []  # a graph exported with a fixed batch takes exactly that many images a run
        for start in range(0, len(chunk), fixed):
            part = chunk[start : start + fixed]
            padded = np.concatenate([part, np.zeros((fixed - len(part), *part.shape[1:]), part.dtype)])
            parts.append(session.run([OUTPUT], {INPUT: padded})[0][: len(part)])
        return np.concatenate(parts)

    return run_chunk


def _qonnx_runner(model):
    """qonnx's executor checks each input's shape against the graph's, so a graph with a
    symbolic batch is run with its batch fixed to each chunk's (nothing else changes)."""
    _require("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    fixed = {}

    def run_chunk(chunk):
        n = len(chunk)
        if n not in fixed:
            copy = type(model)()
            copy.CopyFrom(model)
            del copy.graph.value_info[:]
            for value in (*copy.graph.input, *copy.graph.output):
                value.type.tensor_type.shape.dim[0].dim_value = n
            fixed[n] = ModelWrapper(copy).transform(InferShapes())
        return execute_onnx(fixed[n], {INPUT: chunk})[OUTPUT]

    return run_chunk


def compare(exported: Exported, weights: WeightSet, images) -> tuple[int, int]:
    """Run ``exported`` on ``images`` (uint8 ``[N,S,S]`` at the network's size) and the golden
    model with the arithmetic it was built for: (logits compared, logits equal)."""
    from . import golden

    want = golden.forward(images, weights.params, exported.arithmetic, weights.network)
    got = run(exported.model, images, exported.format)
    return int(want.size), int((got == want).sum()) if got.shape == want.shape else 0
