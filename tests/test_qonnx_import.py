"""`lenet-fpga import m.onnx` of a QONNX graph (issue 25, part 2): a Brevitas network whose
quantizers are Q2.6 fixed point (4-bit power-of-two weights, 8-bit biases and activations of scale
1/64, floor rounding) imports without retraining, its codes as they are, and the golden model
gives qonnx's executor's logits on every one of 1,000 MNIST test images. A quantizer that does not
map is refused with one line naming the node, or re-quantized with --requantize.

The Brevitas network is trained here for a few hundred steps (Brevitas is the ``brevitas`` extra,
installed where PyTorch is); the refusals edit its exported graph's quantizer constants."""

from __future__ import annotations

import contextlib
import io
import json
import time
import warnings

import numpy as np
import pytest

from lenet_fpga.cli import main
from lenet_fpga.model import golden, mnist, weights
from lenet_fpga.model.codes import Uniform
from lenet_fpga.model.errors import InputError

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install -e '.[onnx]')")
pytest.importorskip("qonnx", reason="the onnx extra is not installed (pip install -e '.[onnx]')")
pytest.importorskip("brevitas", reason="the brevitas extra is not installed (pip install -e '.[brevitas]', "
                                       "Python 3.11 with PyTorch)")
# Brevitas writes QONNX through torch.onnx.export (onnxscript) and runs onnxoptimizer on it
pytest.importorskip("onnxoptimizer", reason="the brevitas extra is not installed (pip install -e '.[brevitas]')")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install -e '.[onnx]')")
from onnx import helper, numpy_helper  # noqa: E402

from lenet_fpga.model.train import qonnx_import  # noqa: E402  (after the skips)
from lenet_fpga.model.train.flow import ImportOptions, import_model  # noqa: E402
from brief_training import train_briefly  # noqa: E402

nn = torch.nn
STEPS = 400


def brevitas_lenet(bias_quant=None):
    """A LeNet-family Brevitas network that is Q2.6 arithmetic: 6 and 16 filters, a 32-wide hidden
    layer; the docs/import.md example. ``bias_quant``: another bias quantizer."""
    from brevitas.inject.enum import FloatToIntImplType, ScalingImplType
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8BiasPerTensorFixedPointInternalScaling
    from brevitas.quant import Int8WeightPerTensorFixedPoint

    class Pixels(Int8ActPerTensorFixedPoint):  # p/255 -> the nearest code of 1/64 (ROUND: no ties)
        scaling_impl_type = ScalingImplType.CONST
        scaling_init = 2.0  # signed 8 bits: scale 2 / 128 = 1/64

    class Activations(Pixels):  # the requantizer: (acc >> 6), saturate, ReLU
        float_to_int_impl_type = FloatToIntImplType.FLOOR

    class Weights(Int8WeightPerTensorFixedPoint):  # power-of-two scale, 4-bit narrow codes
        bit_width = 4

    class Biases(Int8BiasPerTensorFixedPointInternalScaling):  # Q2.6 codes
        scaling_impl_type = ScalingImplType.CONST
        scaling_init = 2.0

    biases = Biases if bias_quant is None else bias_quant  # (an injector class is falsy)

    def conv(i, o):
        return QuantConv2d(i, o, 5, weight_quant=Weights, bias_quant=biases, return_quant_tensor=True)

    def linear(i, o, last=False):
        return QuantLinear(i, o, bias=True, weight_quant=Weights, bias_quant=biases, return_quant_tensor=not last)

    def relu():
        return QuantReLU(act_quant=Activations, return_quant_tensor=True)

    torch.manual_seed(0)
    return nn.Sequential(QuantIdentity(act_quant=Pixels, return_quant_tensor=True),
                         conv(1, 6), relu(), nn.MaxPool2d(2), conv(6, 16), relu(), nn.MaxPool2d(2), nn.Flatten(),
                         linear(256, 32), relu(), linear(32, 10, last=True))


@pytest.fixture(scope="module")
def brevitas_model(tmp_path_factory, mnist_dir):
    """The network trained for STEPS Adam steps of 64 images, exported with Brevitas' export_qonnx
    (for one image: the batch in its flatten is 1)."""
    # One thread: these small steps gain nothing from two, and on a busy 2-core machine two
    # threads waiting on each other made the 400 steps 100 s instead of 8.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        model = train_briefly(brevitas_lenet(), mnist.load("train", mnist_dir), STEPS)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("qonnx") / "brevitas.onnx"
    export(model, path)
    print(f"trained {STEPS} steps in {seconds:.1f} s")
    return model, str(path)


def export(model, path) -> None:
    """Brevitas' export_qonnx for one image (its exporter prints its progress)."""
    from brevitas.export import export_qonnx

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        export_qonnx(model.eval(), torch.zeros(1, 1, 28, 28), str(path))


@pytest.fixture(scope="module")
def imported(brevitas_model, tmp_path_factory, mnist_dir):
    _, path = brevitas_model
    out = tmp_path_factory.mktemp("imported") / "w.npz"
    lines = []
    result = import_model(path, out, ImportOptions(data_dir=str(mnist_dir)), log=lines.append)
    return result, out, lines


def test_a_brevitas_network_imports_exactly(brevitas_model, imported, mnist_dir):
    """No retraining, each layer's codes as they are: the golden model of the written weights
    gives qonnx's executor's logits (times 4096) on every logit of 1,000 test images, and
    Brevitas' own PyTorch outputs too."""
    model, path = brevitas_model
    result, out, lines = imported
    assert result.extra["qat_epochs"] == 0 and result.extra["qonnx"]["exact"]
    assert result.extra["qonnx"]["checked_images"] == 10_000  # the importer's own check
    assert any(line.startswith("QONNX graph: its") and "imported without retraining" in line for line in lines)
    ws = weights.load(out)
    assert str(ws.arithmetic.rounding) == "floor" and str(ws.arithmetic.overflow) == "saturate"
    assert ws.network.spec == "6,16:32"
    # 4-bit weights of a power-of-two scale: a uniform restriction of 4 bits per layer
    assert {name: r.bits for name, r in ws.codes.items()} == {"conv1": 4, "conv2": 4, "fc1": 4, "fc2": 4}
    assert all(isinstance(r, Uniform) for r in ws.codes.values())
    test = mnist.load("test", mnist_dir)
    images = test.images[:1000]
    logits = golden.forward(images, ws.params, ws.arithmetic, ws.network)
    graph = qonnx_import.read(path)
    executed = qonnx_import.executor_outputs(graph.graph, images)
    assert executed.shape == logits.shape == (1000, 10)
    np.testing.assert_array_equal(executed * 4096, logits)  # every logit, exactly
    with torch.no_grad():
        brevitas_logits = model(torch.from_numpy(images.copy()).float().unsqueeze(1) / 255).double().numpy()
    np.testing.assert_array_equal(brevitas_logits * 4096, logits)
    print(f"float {result.float_accuracy:.2%}, Q2.6 {result.fixed_accuracy:.2%} (10,000 test images)")
    assert result.fixed_accuracy > 0.9
    # the codes themselves: Brevitas' integer weights times 2**(6 - k)
    with torch.no_grad():
        conv1 = model[1].quant_weight()
    expected = conv1.int().numpy() * round(float(conv1.scale) * 64)
    np.testing.assert_array_equal(ws.params["conv1.weight"], expected)


def test_the_import_command_says_qonnx_and_exact(brevitas_model, imported, tmp_path, mnist_dir, capsys):
    """--json says the import was exact; the text (the log lines import prints) says QONNX."""
    _, path = brevitas_model
    out = tmp_path / "w.npz"
    assert main(["import", path, "--out", str(out), "--data", str(mnist_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["qonnx"]["exact"] is True and report["qat_epochs"] == 0
    assert report["qonnx"]["equal_logits"] == 100_000 and report["qonnx"]["logit_unit"] == 2.0**-12
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["source"]["qonnx"]["exact"] is True and manifest["codes"]["conv1"]["bits"] == 4
    lines = imported[2]
    assert any(line.startswith("QONNX graph: its 12 Quant nodes map onto the hardware exactly") for line in lines)
    assert any("every logit of 10,000 test images equals the golden model's" in line for line in lines)


# ---- what does not map ----


def edited(path, tmp_path, node_index: int, inputs: dict | None = None, **attributes) -> tuple[str, str]:
    """The graph with the ``node_index``-th Quant node given its own constants (``inputs``: input
    index -> value; the exporter shares one constant among nodes) or other attributes."""
    model = onnx.load(path)
    node = [n for n in model.graph.node if n.op_type == "Quant"][node_index]
    for input_index, value in (inputs or {}).items():
        name = f"edited_{node_index}_{input_index}"
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        node.input[input_index] = name
    for key, setting in attributes.items():
        kept = [a for a in node.attribute if a.name != key]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute(key, setting)])
    out = tmp_path / "edited.onnx"
    onnx.save(model, str(out))
    return str(out), node.name


def quant_index(path, role: str) -> int:
    """The index among the Quant nodes of the first one in ``role``: the input's, conv1's weight
    quantizer, conv1's activation quantizer."""
    model = onnx.load(path)
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    for index, node in enumerate(quants):
        readers = [(n.op_type, list(n.input).index(node.output[0])) for n in model.graph.node
                   if node.output[0] in n.input]
        if role == "input" and node.input[0] == model.graph.input[0].name:
            return index
        if role == "weight" and readers == [("Conv", 1)]:
            return index
        if role == "activation" and readers and readers[0][0] == "MaxPool":
            return index
    raise AssertionError(f"no {role} Quant")


PIXEL = 2  # 64 * 2 / 255 = 0.502: FLOOR gives code 0, the hardware's nearest code 1


@pytest.mark.parametrize("role, edit, message", [
    ("weight", {"inputs": {1: 0.03}}, "scale 0.03 is not a power of two"),
    ("weight", {"inputs": {1: 2.0**-7}}, r"weight scale 2\^-7 is finer than Q2.6's step 1/64"),
    ("weight", {"inputs": {3: 9.0}}, "9 bits; the hardware holds 8-bit codes"),
    ("weight", {"inputs": {1: 2.0**-5, 3: 8.0}}, (r"8-bit weight codes of scale 2\^-5 reach \[-3.96875, 3.96875\], "
                                                   r"beyond Q2.6's range")),
    ("activation", {"inputs": {2: 1.0}}, r"zero point 1 \(asymmetric\)"),
    ("activation", {"inputs": {1: 2.0**-7}}, r"activation scale 2\^-7, 8 bits signed: an activation has at most 6 "),
    ("activation", {"signed": 0}, r"8 bits unsigned: an unsigned activation format has at most 7 bits"),
    ("activation", {"signed": 0, "narrow": 1, "inputs": {1: 0.25, 3: 4.0}}, r"clips to codes 0\.\.14; the hardware.s UQ2\.2"),
    ("activation", {"rounding_mode": "ROUND"}, r"rounding ROUND \(half to even\) is neither of the hardware's"),
    ("input", {"rounding_mode": "FLOOR"}, f"maps pixel {PIXEL} .* to code 0, the hardware to 1"),
    ("input", {"inputs": {3: 12.0}}, "12 bits; the hardware holds 8-bit codes"),
])
def test_a_quantizer_that_does_not_map_is_refused_naming_the_node(brevitas_model, tmp_path, mnist_dir, role, edit,
                                                                   message):
    _, path = brevitas_model
    bad, name = edited(path, tmp_path, quant_index(path, role), **edit)
    with pytest.raises(InputError, match=message) as refused:
        import_model(bad, tmp_path / "w.npz", ImportOptions(data_dir=str(mnist_dir)), log=lambda *_: None)
    text = str(refused.value)
    assert "\n" not in text and text.startswith(f"node {name!r} (Quant)")
    assert not (tmp_path / "w.npz").exists()


def with_activation_rounding(path, tmp_path, modes: list[str]) -> str:
    """The graph with its activation quantizers (those on ReLU outputs) rounding ``modes``."""
    model = onnx.load(path)
    relus = {n.output[0] for n in model.graph.node if n.op_type == "Relu"}
    quants = [n for n in model.graph.node if n.op_type == "Quant" and n.input[0] in relus]
    assert len(quants) == len(modes)
    for node, mode in zip(quants, modes):
        kept = [a for a in node.attribute if a.name != "rounding_mode"]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute("rounding_mode", mode)])
    out = tmp_path / "rounding.onnx"
    onnx.save(model, str(out))
    return str(out)


def with_activation_formats(path, tmp_path, formats: list[tuple[int, int, bool]]) -> str:
    """The graph with its activation quantizers (those on ReLU outputs) of ``formats``: (bits,
    fraction bits, signed) each."""
    model = onnx.load(path)
    relus = {n.output[0] for n in model.graph.node if n.op_type == "Relu"}
    quants = [n for n in model.graph.node if n.op_type == "Quant" and n.input[0] in relus]
    assert len(quants) == len(formats)
    for index, (node, (bits, frac, signed)) in enumerate(zip(quants, formats)):
        for input_index, value in ((1, 2.0**-frac), (3, float(bits))):
            name = f"format_{index}_{input_index}"
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
            node.input[input_index] = name
        kept = [a for a in node.attribute if a.name != "signed"]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute("signed", int(signed))])
    out = tmp_path / "formats.onnx"
    onnx.save(model, str(out))
    return str(out)


def test_activation_quantizers_of_other_formats_import_exactly(brevitas_model, tmp_path, mnist_dir):
    """4-bit unsigned (UQ2.2), 6-bit signed (Q3.3) and 3-bit unsigned (UQ1.2) activation
    quantizers are each layer's activation format: imported without retraining, and the golden
    model with those formats gives qonnx's executor's logits on every image checked (in units of
    2^-(6 + 2) here: fc2's input is UQ1.2)."""
    _, path = brevitas_model
    graph = with_activation_formats(path, tmp_path, [(4, 2, False), (6, 3, True), (3, 2, False)])
    out = tmp_path / "w.npz"
    result = import_model(graph, out, ImportOptions(data_dir=str(mnist_dir), check_images=2000), log=lambda *_: None)
    ws = weights.load(out)
    assert [str(f) for f in ws.arithmetic.activations] == ["UQ2.2", "Q3.3", "UQ1.2"]
    assert result.extra["qonnx"]["equal_logits"] == 20_000 and result.extra["qonnx"]["logit_unit"] == 2.0**-8
    # Q2.6 spelled as 7 unsigned bits of scale 1/64 is Q2.6: no formats recorded
    same = with_activation_formats(path, tmp_path, [(7, 6, False)] * 3)
    result = import_model(same, tmp_path / "same.npz", ImportOptions(data_dir=str(mnist_dir), check_images=500),
                          log=lambda *_: None)
    assert weights.load(tmp_path / "same.npz").arithmetic.activations == ()


@pytest.mark.parametrize("mode, rounding", [("HALF_UP", "half-up"), ("DOWN", "floor")])
def test_other_roundings_that_map_after_the_relu(brevitas_model, tmp_path, mnist_dir, mode, rounding):
    """qonnx's HALF_UP rounds halves away from zero, the hardware's towards +inf; DOWN rounds
    towards zero, the hardware's floor down: they differ only where the ReLU makes 0 of both.
    The executor agrees with the golden model of that rounding on every logit."""
    _, path = brevitas_model
    graph = with_activation_rounding(path, tmp_path, [mode] * 3)
    result = import_model(graph, tmp_path / "w.npz", ImportOptions(data_dir=str(mnist_dir), check_images=2000),
                          log=lambda *_: None)
    assert str(result.arithmetic.rounding) == rounding
    assert result.extra["qonnx"]["equal_logits"] == 20_000


def test_requantizers_that_round_differently_are_refused(brevitas_model, tmp_path):
    _, path = brevitas_model
    graph = with_activation_rounding(path, tmp_path, ["FLOOR", "HALF_UP", "FLOOR"])
    with pytest.raises(InputError, match=r"^the requantizers round differently \(node '[^']+' \(Quant\) floor, "):
        qonnx_import.read(graph)


def test_per_channel_scales_map_only_when_equal(brevitas_model, tmp_path, mnist_dir):
    _, path = brevitas_model
    index = quant_index(path, "weight")  # conv1's: 6 output channels
    scales = np.array([2.0**-5] * 5 + [2.0**-4])[:, None, None, None]
    bad, name = edited(path, tmp_path, index, inputs={1: scales})
    with pytest.raises(InputError, match=f"node '{name}' \\(Quant\\): per-channel scales 0.03125, 0.0625; the "
                                         f"hardware has one scale per tensor"):
        qonnx_import.read(bad)


def test_the_command_line_refuses_in_one_line_and_requantizes_when_asked(brevitas_model, tmp_path, mnist_dir, capsys):
    _, path = brevitas_model
    bad, name = edited(path, tmp_path, quant_index(path, "activation"), rounding_mode="ROUND")
    out = tmp_path / "w.npz"
    assert main(["import", bad, "--out", str(out), "--data", str(mnist_dir)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"node {name!r} (Quant): rounding ROUND" in error
    assert main(["import", bad, "--out", str(out), "--data", str(mnist_dir), "--requantize", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["qonnx"]["exact"] is False and report["qonnx"]["n_images"] == 10_000
    assert report["fixed_accuracy"] > 0.85
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["rounding"] == "half-up" and "codes" not in manifest


def test_brevitas_default_bias_quantizer_is_refused(tmp_path):
    """Brevitas' Int8Bias (like its Int16Bias and Int32Bias) has the accumulator's scale (input
    scale times weight scale), finer than the Q2.6 bias the hardware adds as b << 6 (untrained:
    the refusal does not need trained weights)."""
    from brevitas.quant import Int8Bias

    export(brevitas_lenet(bias_quant=Int8Bias), tmp_path / "int8bias.onnx")
    with pytest.raises(InputError, match=r"^node '[^']+' \(Quant\): bias scale 2\^-\d+ is finer than Q2.6's step 1/64"):
        qonnx_import.read(tmp_path / "int8bias.onnx")


def test_an_unquantized_input_is_refused(brevitas_model, tmp_path):
    """Without its input Quant, conv1 would see p/255 itself, which no Q2.6 code is."""
    _, path = brevitas_model
    model = onnx.load(path)
    quant = [n for n in model.graph.node if n.op_type == "Quant"][quant_index(path, "input")]
    conv = next(n for n in model.graph.node if quant.output[0] in n.input)
    conv.input[0] = quant.input[0]
    model.graph.node.remove(quant)
    onnx.save(model, str(tmp_path / "raw.onnx"))
    with pytest.raises(InputError, match="reaches the first layer unquantized; .* put a Quant of scale 1/64"):
        qonnx_import.read(tmp_path / "raw.onnx")


def test_options_an_exact_import_cannot_honour_are_refused(brevitas_model, tmp_path, mnist_dir):
    _, path = brevitas_model
    with pytest.raises(InputError, match="imported exactly, without retraining; give --requantize"):
        import_model(path, tmp_path / "w.npz", ImportOptions(data_dir=str(mnist_dir), qat_epochs=1))
    with pytest.raises(InputError, match="rounding floor, overflow saturate; --rounding/--overflow ask for"):
        from lenet_fpga.model import arith

        import_model(path, tmp_path / "w.npz", ImportOptions(data_dir=str(mnist_dir),
                                                             arithmetic=arith.Arithmetic("half-up", "saturate")))
    with pytest.raises(InputError, match="its activation formats are its quantizers'"):
        import_model(path, tmp_path / "w.npz", ImportOptions(data_dir=str(mnist_dir), activations="4"))
    assert not (tmp_path / "w.npz").exists()
