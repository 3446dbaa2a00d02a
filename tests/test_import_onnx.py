"""`lenet-fpga import m.onnx`: a float ONNX graph, as torch.onnx.export writes it, becomes the
network it computes (checked against onnxruntime's own outputs), then Q2.6 weights through the
same quantization as a PyTorch file; what the hardware cannot compute is refused naming the node.

The models here are ones the other tests never saw: nn.Sequential with other channel counts (4
and 12 filters, a 32-wide hidden layer), torch's own layer names, a batch norm to fold."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from lenet_fpga.cli import main
from lenet_fpga.model import golden, mnist, weights
from lenet_fpga.model.errors import InputError

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install -e '.[onnx]')")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install -e '.[onnx]')")
# torch's default exporter (torch >= 2.9) writes ONNX through onnxscript, which the extra brings too
pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install -e '.[onnx]')")
from lenet_fpga.model.train import onnx_import  # noqa: E402  (after the skips: it needs onnx)
from lenet_fpga.model.train.flow import ImportOptions, import_model  # noqa: E402
from brief_training import train_briefly  # noqa: E402

nn = torch.nn


def unseen_model(batch_norm: bool = True, tail=None) -> nn.Module:
    """4 then 12 filters, one 32-wide hidden layer; a batch norm after each of conv1 and fc1."""
    torch.manual_seed(3)
    layers = [nn.Conv2d(1, 4, 5)]
    layers += [nn.BatchNorm2d(4)] if batch_norm else []
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 12, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
               nn.Linear(192, 32)]
    layers += [nn.BatchNorm1d(32)] if batch_norm else []
    layers += [nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10)] + ([tail] if tail is not None else [])
    model = nn.Sequential(*layers)
    for module in model:  # statistics that make a fold visible
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def export(model, path, dynamo: bool = True, **options) -> str:
    """``torch.onnx.export`` of ``model`` for one 28x28 image: the new exporter (torch's default)
    or the legacy TorchScript one; torch prints its progress, which the tests do not need."""
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=dynamo, **options)
    return str(path)


def random_images(n: int = 16) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def model_outputs(model, images) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(images).float().unsqueeze(1) / 255).double().numpy()


# ---- the graph read as our network ----


@pytest.mark.parametrize("dynamo, options", [
    (True, {}),  # torch's default exporter: batch norms folded by its optimizer, weights in m.onnx.data
    (True, {"optimize": False}),  # BatchNormalization nodes left for import to fold
    (False, {"do_constant_folding": False}),  # legacy: BatchNormalization, MatMul with a transposed weight
])
def test_the_imported_float_network_computes_what_onnxruntime_computes(tmp_path, dynamo, options):
    model = unseen_model()
    graph = onnx_import.read(export(model, tmp_path / "m.onnx", dynamo, **options))
    ops = [node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    assert graph.imported.network.spec == "4,12:32"
    # the batch norms are folded by import exactly where the graph still has them
    assert len(graph.imported.notes) == ops.count("BatchNormalization")
    images = random_images()
    ours = golden.float_forward(images, graph.imported.params, graph.imported.network)
    np.testing.assert_allclose(ours, onnx_import.runtime_outputs(graph, images), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours, model_outputs(model, images), rtol=1e-4, atol=1e-4)


def test_a_softmax_at_the_end_is_dropped_with_a_note(tmp_path):
    model = unseen_model(batch_norm=False, tail=nn.Softmax(dim=1))
    graph = onnx_import.read(export(model, tmp_path / "m.onnx"))
    assert graph.tail == "Softmax" and any("Softmax" in note and "dropped" in note for note in graph.imported.notes)
    images = random_images()
    logits = golden.float_forward(images, graph.imported.params, graph.imported.network)
    probabilities = onnx_import.runtime_outputs(graph, images)
    np.testing.assert_allclose(onnx_import.apply_tail(logits, "Softmax"), probabilities, atol=1e-6)
    assert (logits.argmax(axis=1) == probabilities.argmax(axis=1)).all()


def keras_like_graph(path, rng) -> tuple[str, dict]:
    """What tf2onnx writes for a Keras LeNet: an NHWC input transposed to NCHW for the convs,
    transposed back before the flatten (rows, columns, channels), MatMul + Add. Built with
    onnx.helper (no TensorFlow here); returns the file and its weights."""
    from onnx import TensorProto, helper, numpy_helper

    w = {"c1": rng.normal(0, 0.3, (4, 1, 5, 5)), "b1": rng.normal(0, 0.1, 4),
         "c2": rng.normal(0, 0.2, (6, 4, 5, 5)), "b2": rng.normal(0, 0.1, 6),
         "f1": rng.normal(0, 0.1, (96, 10)), "g1": rng.normal(0, 0.1, 10), "shape": np.array([-1, 96])}
    nodes = [helper.make_node("Transpose", ["x"], ["t0"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t0", "c1", "b1"], ["a1"], kernel_shape=[5, 5]),
             helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "c2", "b2"], ["a2"], kernel_shape=[5, 5]),
             helper.make_node("Relu", ["a2"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Transpose", ["p2"], ["t2"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["t2", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "f1"], ["m"]),
             helper.make_node("Add", ["m", "g1"], ["logits"])]
    init = [numpy_helper.from_array(v.astype(np.int64 if k == "shape" else np.float32), k) for k, v in w.items()]
    graph = helper.make_graph(nodes, "keras_lenet", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                    ["n", 28, 28, 1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path), w


def test_an_nhwc_graph_with_matmul_and_add_is_read(tmp_path):
    path, w = keras_like_graph(tmp_path / "keras.onnx", np.random.default_rng(5))
    graph = onnx_import.read(path)
    assert graph.layout == "nhwc" and graph.batch is None and graph.imported.network.spec == "4,6:"
    images = random_images()
    ours = golden.float_forward(images, graph.imported.params, graph.imported.network)
    np.testing.assert_allclose(ours, onnx_import.runtime_outputs(graph, images), rtol=1e-5, atol=1e-5)
    # fc1's columns were permuted from (row, column, channel) to our (channel, row, column) order
    assert not np.allclose(graph.imported.params["fc1.weight"], w["f1"].T)


# ---- refusals: one line, naming the node and the cause ----


@pytest.mark.parametrize("layers, message", [
    ([nn.Conv2d(1, 4, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)],
     r"node '[^']*' \(AveragePool\): the hardware has no AveragePool"),
    # padding is the cause named, not what follows from it (the PyTorch path once blamed the pool)
    ([nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 14 * 14, 10)],
     r"node '[^']*' \(Conv\): the hardware cannot do padding \[1, 1, 1, 1\]"),
    ([nn.Conv2d(1, 4, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)], r"\(Conv\).*strides \[2, 2\]"),
    ([nn.Conv2d(1, 4, 5), nn.Sigmoid(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)],
     r"node '[^']*' \(Sigmoid\): the hardware has no Sigmoid; its only activation is ReLU"),
    ([nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(5), nn.Flatten(), nn.Linear(4 * 4 * 4, 10)],
     r"\(MaxPool\): a 5x5 pool does not divide its 24x24 input"),
    ([nn.Conv2d(1, 4, 5), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)], r"has no Relu after it"),
    ([nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10), nn.ReLU()],
     "raw logits"),
])
def test_what_the_hardware_cannot_do_is_refused_naming_the_node(tmp_path, layers, message):
    path = export(nn.Sequential(*layers).eval(), tmp_path / "m.onnx", dynamo=False)
    with pytest.raises(InputError, match=message) as refused:
        onnx_import.read(path)
    assert "\n" not in str(refused.value)


def small_graph(path, middle) -> str:
    """conv (4 filters), then the nodes ``middle(helper)`` from "r" to "m", then flatten and a
    linear layer: a hand-built graph for what no exporter writes by itself."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    init = [numpy_helper.from_array(rng.normal(0, 0.2, shape).astype(np.float32), name)
            for name, shape in (("w", (4, 1, 5, 5)), ("fw", (10, 4 * 12 * 12)))]
    init.append(numpy_helper.from_array(np.array(True), "training"))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[5, 5]), helper.make_node("Relu", ["c"], ["r"]),
             *middle(helper), helper.make_node("MaxPool", ["m"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("middle, message", [
    (lambda h: [h.make_node("Identity", ["r"], ["m"])], None),  # the graph itself is read
    (lambda h: [h.make_node("Identity", ["r"], ["i"]), h.make_node("Add", ["r", "i"], ["m"])],
     r"\(Add\): the network must be one chain of layers"),
    (lambda h: [h.make_node("Swizzle", ["r"], ["m"], domain="custom")], r"\(Swizzle\): an operator of domain 'custom'"),
    (lambda h: [h.make_node("Dropout", ["r", "", "training"], ["m"])], r"\(Dropout\): a Dropout in training mode"),
    (lambda h: [h.make_node("LeakyRelu", ["r"], ["m"])], r"\(LeakyRelu\): the hardware has no LeakyRelu"),
])
def test_hand_built_graphs_read_or_refused(tmp_path, middle, message):
    path = small_graph(tmp_path / "g.onnx", middle)
    if message is None:
        assert onnx_import.read(path).imported.network.spec == "4:"
        return
    with pytest.raises(InputError, match=message):
        onnx_import.read(path)


def test_an_input_that_is_not_one_grey_square_image_is_refused(tmp_path):
    import warnings

    model = nn.Sequential(nn.Conv2d(3, 4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 24 * 24, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 28, 28),), str(tmp_path / "rgb.onnx"), dynamo=False)
    with pytest.raises(InputError, match=r"has 3 channels \(\[1, 3, 28, 28\]\); ONNX import takes one grey channel"):
        onnx_import.read(tmp_path / "rgb.onnx")


def test_files_that_are_not_onnx_graphs_are_refused_without_reading_forever(tmp_path, capsys):
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert main(["import", str(fifo), "--out", str(tmp_path / "w.npz")]) == 2
    assert time.monotonic() - started < 10  # refused before it is opened: nothing writes to the FIFO
    assert "is a FIFO (named pipe), not a regular file" in capsys.readouterr().err
    (tmp_path / "text.onnx").write_text("not a graph\n" * 10)
    assert main(["import", str(tmp_path / "text.onnx"), "--out", str(tmp_path / "w.npz")]) == 2
    assert "cannot read" in (err := capsys.readouterr().err) and "as an ONNX model" in err
    huge = tmp_path / "huge.onnx"
    with open(huge, "wb") as f:  # sparse: no disk used, and refused by its size before a byte is read
        f.truncate(onnx_import.MAX_BYTES + 1)
    assert main(["import", str(huge), "--out", str(tmp_path / "w.npz")]) == 2
    assert f"an ONNX LeNet-family model is far smaller (at most {onnx_import.MAX_BYTES:,} read)" in \
        capsys.readouterr().err
    assert not (tmp_path / "w.npz").exists()


def test_external_weights_are_read_only_from_beside_the_graph(tmp_path):
    model = unseen_model(batch_norm=False)
    path = export(model, tmp_path / "m.onnx")  # the new exporter keeps the weights in m.onnx.data
    assert (tmp_path / "m.onnx.data").is_file()
    proto = onnx.load(path, load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere/m.onnx.data"
    onnx.save(proto, str(tmp_path / "moved.onnx"))
    with pytest.raises(InputError, match="reads weights only from a file beside the graph"):
        onnx_import.read(tmp_path / "moved.onnx")


def test_an_onnx_file_named_otherwise_is_still_read_as_onnx(tmp_path):
    path = export(unseen_model(batch_norm=False), tmp_path / "m.onnx", dynamo=False)
    os.rename(path, tmp_path / "model.bin")
    assert onnx_import.is_onnx_file(tmp_path / "model.bin")
    assert onnx_import.read(tmp_path / "model.bin").imported.network.spec == "4,12:32"


# ---- trained, exported, imported, quantized ----


@pytest.fixture(scope="module")
def untrained_onnx(tmp_path_factory):
    """The unseen model with its initial weights and batch norms, exported by torch's default exporter."""
    return export(unseen_model(), tmp_path_factory.mktemp("onnx") / "untrained.onnx")


def test_import_command_reports_the_onnx_models_own_accuracy(untrained_onnx, tmp_path, mnist_dir, capsys):
    """lenet-fpga import m.onnx: onnxruntime's float accuracy on the 10,000 test images in the
    text and the manifest, the weights rounded (no QAT asked for), a file eval reads."""
    out = tmp_path / "w.npz"
    assert main(["import", untrained_onnx, "--out", str(out), "--data", str(mnist_dir)]) == 0
    text = capsys.readouterr().out
    manifest = json.loads(out.with_suffix(".json").read_text())
    runtime = manifest["source"]["onnxruntime"]
    assert runtime["n_images"] == 10_000 and runtime["largest_difference"] < 1e-3
    assert f"onnxruntime: the ONNX model's float accuracy {runtime['float_accuracy']:.2%} on 10,000 test images" in text
    assert manifest["source"]["imported_from"] == untrained_onnx
    ws = weights.load(out)
    float_params = weights.load_float(ws)
    assert ws.network.spec == "4,12:32"
    for name, codes in ws.params.items():
        np.testing.assert_array_equal(codes, np.clip(np.rint(float_params[name] * 64), -128, 127))
    assert main(["eval", "--weights", str(out), "--data", str(mnist_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fixed_accuracy"] == manifest["accuracy"]["fixed"]


def test_a_graph_import_misreads_is_refused_before_quantizing(untrained_onnx, tmp_path, mnist_dir, monkeypatch):
    """The onnxruntime check can fail: an importer that misreads one bias is caught."""
    real = onnx_import._Walker._imported

    def misread(self):
        imported = real(self)
        imported.params["fc2.bias"][3] += 0.5
        return imported

    monkeypatch.setattr(onnx_import._Walker, "_imported", misread)
    with pytest.raises(InputError, match="does not compute what the ONNX graph computes"):
        import_model(untrained_onnx, tmp_path / "w.npz", ImportOptions(data_dir=str(mnist_dir)), log=lambda *_: None)
    assert not (tmp_path / "w.npz").exists()


@pytest.mark.slow
def test_a_trained_model_imports_within_half_a_point_of_its_float_accuracy(tmp_path, mnist_dir, capsys):
    """The unseen model (its batch norms too) trained for 400 steps of 64 images, exported by
    torch's default exporter, imported through the command line with one QAT epoch; the
    accuracies are on all 10,000 MNIST test images. (Rounded without QAT, such a model lost
    2 points here: the batch norm folded into fc1 gave it biases beyond Q2.6's range.)"""
    torch.set_num_threads(2)
    model = train_briefly(unseen_model(), mnist.load("train", mnist_dir), steps=400)
    path = export(model, tmp_path / "unseen.onnx")
    out = tmp_path / "w.npz"
    assert main(["import", path, "--out", str(out), "--data", str(mnist_dir), "--qat-epochs", "1"]) == 0
    text = capsys.readouterr().out
    manifest = json.loads(out.with_suffix(".json").read_text())
    runtime, accuracy = manifest["source"]["onnxruntime"], manifest["accuracy"]
    print(f"onnxruntime {runtime['float_accuracy']:.2%}, imported float {accuracy['float']:.2%}, "
          f"Q2.6 {accuracy['fixed']:.2%} on {accuracy['n_images']} test images")
    assert runtime["n_images"] == accuracy["n_images"] == 10_000 and f"{runtime['float_accuracy']:.2%}" in text
    # the imported float network is the ONNX model (they may differ on an image whose top two
    # logits tie within float32's rounding: one image at most)
    assert abs(accuracy["float"] - runtime["float_accuracy"]) <= 1 / 10_000
    assert accuracy["float"] > 0.9  # trained: a check of 0.5 points means something
    assert accuracy["fixed"] >= accuracy["float"] - 0.005
    ws = weights.load(out)
    test = mnist.load("test", mnist_dir)
    assert golden.accuracy(golden.forward(test.images, ws.params, ws.arithmetic, ws.network), test.labels) == \
        accuracy["fixed"]


def test_a_model_of_normalised_pixels_is_fed_and_folded_alike(untrained_onnx):
    """--normalize: onnxruntime is fed (p/255 - 0.13) / 0.31 and conv1 takes the normalisation in
    (what import_model does), and the two agree; fed p/255 they would not."""
    from lenet_fpga.model.train import importer

    graph = onnx_import.read(untrained_onnx)
    folded = importer.fold_normalization(graph.imported, 0.13, 0.31)
    images = random_images()
    ours = golden.float_forward(images, folded.params, folded.network)
    fed_normalised = onnx_import.runtime_outputs(graph, images, normalize=(0.13, 0.31))
    np.testing.assert_allclose(ours, fed_normalised, rtol=1e-5, atol=1e-5)
    assert np.abs(ours - onnx_import.runtime_outputs(graph, images)).max() > 1e-2
