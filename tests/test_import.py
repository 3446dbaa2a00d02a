"""`lenet-fpga import`: a user's PyTorch LeNet-family model becomes a weights file whose float
network computes what the model computes (batch norm and input normalisation folded), and
what the hardware cannot do is refused with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lenet_fpga.cli import main
from lenet_fpga.model import golden, mnist, weights
from lenet_fpga.model.train import importer
from lenet_fpga.model.errors import InputError

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
nn = torch.nn


def small_model(batch_norm: bool = True) -> nn.Module:
    """A 4,10:60 network with everything the importer folds or skips, in eval mode."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 5)]
    if batch_norm:
        bn = nn.BatchNorm2d(4)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
        layers.append(bn)
    layers += [nn.ReLU(), nn.MaxPool2d(2),
               nn.Conv2d(4, 10, 5), nn.MaxPool2d(2), nn.ReLU(),  # pool before ReLU: they commute
               nn.Flatten(), nn.Dropout(0.5), nn.Linear(160, 60), nn.ReLU(), nn.Linear(60, 10)]
    return nn.Sequential(*layers).eval()


def images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def model_logits(model, imgs, mean=0.0, std=1.0) -> np.ndarray:
    with torch.no_grad():
        x = (torch.from_numpy(imgs).float().unsqueeze(1) / 255 - mean) / std
        return model(x).double().numpy()


@pytest.mark.parametrize("batch_norm", [True, False])
def test_module_import_computes_what_the_model_computes(batch_norm):
    model = small_model(batch_norm)
    imported = importer.from_object(model)
    assert imported.network.spec == "4,10:60"
    assert bool(imported.notes) == batch_norm  # the folded batch norm is recorded
    ours = golden.float_forward(images(), imported.params, imported.network)
    np.testing.assert_allclose(ours, model_logits(model, images()), rtol=1e-4, atol=1e-4)


def test_state_dict_import_needs_only_the_pool():
    model = small_model(batch_norm=False)
    imported = importer.from_object(model.state_dict(), pool=2)
    np.testing.assert_allclose(golden.float_forward(images(), imported.params, imported.network),
                               model_logits(model, images()), rtol=1e-4, atol=1e-4)
    # Without pooling (24 -> 20 after conv2) fc1 would read 10 * 20 * 20 = 4000 features.
    with pytest.raises(InputError, match=r"fc1.weight has shape \[60, 160\]; the chain 4p1,10p1:60 needs \[60, 4000\]"):
        importer.from_object(model.state_dict(), pool=1)


def test_state_dict_says_what_it_assumes():
    """A state dict holds no layers: the import says it reads convolutions as valid, ReLU and
    max-pool (and tries the others on test images, below), and a padded model's shapes that do
    not fit name padding as a cause."""
    imported = importer.from_object(small_model(batch_norm=False).state_dict(), pool=2)
    assert any("no padding" in note and "other poolings" in note for note in imported.notes), imported.notes

    padded = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                 torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                 torch.nn.Flatten(), torch.nn.Linear(8 * 7 * 7, 10))
    with pytest.raises(InputError, match=r"conv2: a 2x2 pool does not divide its 11x11 output .*pads or strides"):
        importer.from_object(padded.state_dict(), pool=2)


def test_normalisation_is_folded_into_conv1():
    """A model trained on (p/255 - 0.13) / 0.31 gives the same logits from p/255 once folded."""
    model = small_model(batch_norm=False)
    imported = importer.from_object(model, normalize=(0.13, 0.31))
    np.testing.assert_allclose(golden.float_forward(images(), imported.params, imported.network),
                               model_logits(model, images(), 0.13, 0.31), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layers, message", [
    ([nn.Conv2d(1, 4, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 14 * 14, 10)],
     "padding"),
    ([nn.Conv2d(1, 4, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)], "stride"),
    ([nn.Conv2d(1, 4, 5), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)], "no Tanh"),
    ([nn.Conv2d(1, 4, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)], "no AvgPool2d"),
    ([nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2, stride=1), nn.Flatten(), nn.Linear(4 * 23 * 23, 10)],
     "stride P and no padding"),
    ([nn.Conv2d(1, 4, 5), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10)], "has no ReLU module"),
    ([nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 20),
      nn.Linear(20, 10)], "has no ReLU"),
    ([nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10), nn.ReLU()],
     "raw logits"),
    ([nn.Conv2d(1, 4, (5, 3)), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 24 * 26, 10)], "square"),
])
def test_what_the_hardware_cannot_do_is_refused_with_the_reason(layers, message):
    with pytest.raises(InputError, match=message):
        importer.from_object(nn.Sequential(*layers).eval())


def test_import_command_end_to_end(tmp_path, capsys, mnist_dir):
    """torch.save(model) -> lenet-fpga import -> a weights file eval reads, with the network in it."""
    model = small_model()
    torch.save(model, tmp_path / "model.pt")
    out = tmp_path / "imported.npz"
    assert main(["import", str(tmp_path / "model.pt"), "--trust-pickle", "--out", str(out),
                 "--data", str(mnist_dir)]) == 0
    ws = weights.load(out)
    assert ws.network.spec == "4,10:60"
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["source"]["imported_from"].endswith("model.pt") and manifest["source"]["notes"]
    # The codes are the float weights rounded (no QAT asked for).
    float_params = weights.load_float(ws)
    for name, codes in ws.params.items():
        np.testing.assert_array_equal(codes, np.clip(np.rint(float_params[name] * 64), -128, 127))
    capsys.readouterr()
    assert main(["eval", "--weights", str(out), "--data", str(mnist_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["network"] == "4,10:60" and report["fixed_accuracy"] == manifest["accuracy"]["fixed"]


def test_import_says_what_rounding_clips(tmp_path, capsys, mnist_dir):
    """Values past Q2.6's range [-2, 127/64] are clipped when rounded: the import says how many
    of which tensor (and how large the largest was), suggests QAT, and keeps the count in the
    manifest; a value that rounds to 127/64 is not clipped."""
    model = small_model(batch_norm=False)
    with torch.no_grad():
        model[0].bias[:3] = torch.tensor([4.45, -2.5, 127.4 / 64])  # two clipped, one in range
    torch.save(model.state_dict(), tmp_path / "state.pt")  # the rest as initialised: well inside
    out = tmp_path / "imported.npz"
    assert main(["import", str(tmp_path / "state.pt"), "--out", str(out), "--data", str(mnist_dir),
                 "--qat-epochs", "0"]) == 0
    said = capsys.readouterr().out
    line = next(line for line in said.splitlines() if line.startswith("clipped"))
    assert "conv1.bias 2 of 4 (largest |value| 4.45)" in line and "--qat-epochs" in line, line
    assert "weight" not in line, line
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["source"]["clipped"] == {"conv1.bias": {"values": 2, "of": 4, "largest": 4.45}}


def test_import_of_something_else_is_a_clean_error(tmp_path, capsys):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    assert main(["import", str(tmp_path / "list.pt"), "--out", str(tmp_path / "w.npz")]) == 2
    assert "expected an nn.Module or a state_dict" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    assert main(["import", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "w.npz")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "w.npz").exists()


def lenet_like(pool=nn.MaxPool2d) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), pool(2), nn.Conv2d(4, 10, 5), nn.ReLU(), pool(2),
                         nn.Flatten(), nn.Linear(160, 60), nn.ReLU(), nn.Linear(60, 10))


@pytest.fixture(scope="session")  # not module: xdist may run the module's tests between others
def trained(mnist_dir) -> dict:
    """The same small network trained briefly with max-pooling and with average pooling."""
    from brief_training import train_briefly

    torch.set_num_threads(1)  # two threads on a busy 2-core machine (xdist's other worker) are far slower
    train = mnist.load("train", mnist_dir)
    return {"max": train_briefly(lenet_like(), train, steps=300),
            "average": train_briefly(lenet_like(nn.AvgPool2d), train, steps=300)}


@pytest.mark.xdist_group("import_trained")
def test_an_average_pooling_state_dict_is_refused_naming_the_pooling(trained, tmp_path, capsys, mnist_dir):
    """Its weights hold no pooling, but read with average pooling they classify clearly better
    than as the hardware reads them: refused (nothing written), or with --any-reading imported
    as read, the readings kept in the manifest."""
    torch.save(trained["average"].state_dict(), tmp_path / "avg.pt")
    out = tmp_path / "w.npz"
    command = ["import", str(tmp_path / "avg.pt"), "--out", str(out), "--data", str(mnist_dir), "--qat-epochs", "0"]
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained with average-pooling and relu" in err and "--any-reading" in err, err
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert main(command + ["--any-reading"]) == 0
    readings = json.loads(out.with_suffix(".json").read_text())["source"]["readings"]
    assert readings["loss"]["average-pool relu"] < readings["loss"]["max-pool relu"]


@pytest.mark.xdist_group("import_trained")
def test_qat_runs_by_default_when_rounding_loses_more_than_a_point(trained, tmp_path, capsys, mnist_dir):
    """The briefly trained max-pool model passes the readings check; rounded to Q2.6 it loses
    many points (its activations leave Q2.6's range), so QAT follows unasked and wins them back;
    --qat-epochs 0 keeps the rounded weights."""
    torch.save(trained["max"].state_dict(), tmp_path / "max.pt")
    out = tmp_path / "w.npz"
    command = ["import", str(tmp_path / "max.pt"), "--out", str(out), "--data", str(mnist_dir),
               "--train-images", "6000", "--threads", "1"]
    assert main(command + ["--qat-epochs", "0"]) == 0
    kept = json.loads(out.with_suffix(".json").read_text())
    assert "training" not in kept and "rounded, no QAT" in capsys.readouterr().out
    readings = kept["source"]["readings"]["loss"]
    assert readings["max-pool relu"] == min(readings.values())
    assert kept["accuracy"]["fixed"] == kept["source"]["rounded_accuracy"] < kept["accuracy"]["float"] - 0.01
    assert main(command) == 0
    said = capsys.readouterr().out
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert "rounding loses more than 1%" in said and "after 3 QAT epochs" in said, said
    assert manifest["training"]["qat_epochs"] == 3 and manifest["training"]["asked"] is False
    assert manifest["source"]["rounded_accuracy"] == kept["accuracy"]["fixed"]
    assert manifest["accuracy"]["fixed"] > kept["accuracy"]["fixed"] + 0.01


def test_a_network_that_rounds_well_is_not_fine_tuned(tmp_path, capsys, mnist_dir):
    """The shipped LeNet-5's codes / 64 as a state dict: rounding loses nothing, so no QAT, and
    the readings check passes a network trained for the hardware."""
    shipped = weights.load()
    torch.save({name: torch.from_numpy(codes.astype(np.float32) / 64) for name, codes in shipped.params.items()},
               tmp_path / "shipped.pt")
    out = tmp_path / "w.npz"
    assert main(["import", str(tmp_path / "shipped.pt"), "--out", str(out), "--data", str(mnist_dir)]) == 0
    assert "rounded, no QAT" in capsys.readouterr().out
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert "training" not in manifest and manifest["accuracy"]["fixed"] == manifest["source"]["rounded_accuracy"]
    np.testing.assert_equal(weights.load(out).params, shipped.params)


MODEL_MODULE = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * 12 * 12, 10))

    def forward(self, x):
        return self.classifier(self.features(x))
"""


def save_from_script(folder, script: str) -> None:
    """Run ``script`` in ``folder`` as a user would (python save.py), which saves net.pt there."""
    import subprocess
    import sys

    (folder / "save.py").write_text(script)
    subprocess.run([sys.executable, "save.py"], cwd=folder, check=True, timeout=120)


@pytest.mark.parametrize("beside", [True, False])
def test_a_module_saved_whole_imports_its_class_from_its_folder_or_module_path(tmp_path, beside):
    """A model whose class lives in mymodel.py beside the saved file imports with --trust-pickle
    from any working folder; one whose module is elsewhere is told to give --module-path, and
    imports with it. sys.path is as it was afterwards."""
    import sys

    name = f"usermodel_{'beside' if beside else 'elsewhere'}"
    code, saved = tmp_path / "code", tmp_path / ("code" if beside else "saved")
    code.mkdir(exist_ok=True)
    saved.mkdir(exist_ok=True)
    (code / f"{name}.py").write_text(MODEL_MODULE)
    save_from_script(code, f"import torch\nfrom {name} import Net\ntorch.save(Net().eval(), {str(saved / 'net.pt')!r})\n")
    path_before = list(sys.path)
    try:
        if not beside:
            with pytest.raises(InputError, match=rf"module '{name}' is not in .* give --module-path DIR, the folder "
                                                 rf"that holds {name}.py"):
                importer.load_torch_file(saved / "net.pt", trust_pickle=True)
            assert sys.path == path_before
        model = importer.load_torch_file(saved / "net.pt", trust_pickle=True,
                                         module_path=() if beside else (str(code),))
        assert sys.path == path_before
        assert importer.from_object(model).network.spec == "4:"
    finally:
        sys.modules.pop(name, None)


def test_a_module_saved_from_a_script_is_told_to_save_its_state_dict(tmp_path, capsys):
    """A class defined in the script that saved the model lives in __main__, which no import can
    find again: one line saying what to do, exit 2."""
    save_from_script(tmp_path, "import torch\n" + MODEL_MODULE + "\ntorch.save(Net().eval(), 'net.pt')\n")
    assert main(["import", str(tmp_path / "net.pt"), "--trust-pickle", "--out", str(tmp_path / "w.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "(__main__)" in err and "state_dict" in err, err


@pytest.mark.xdist_group("import_trained")
def test_import_with_activation_formats(trained, tmp_path, capsys, mnist_dir):
    """``--activations``: formats given are taken as they are (rounded, no QAT asked); a width's
    formats are chosen on the imported float network, and the fake-quant QAT trains for them."""
    torch.save(trained["max"].state_dict(), tmp_path / "max.pt")
    given = tmp_path / "given.npz"
    assert main(["import", str(tmp_path / "max.pt"), "--out", str(given), "--data", str(mnist_dir),
                 "--activations", "UQ3.1", "--qat-epochs", "0"]) == 0
    assert [str(f) for f in weights.load(given).arithmetic.activations] == ["UQ3.1"] * 3
    assert "rounded to activations UQ3.1,UQ3.1,UQ3.1" in capsys.readouterr().out
    chosen = tmp_path / "chosen.npz"
    assert main(["import", str(tmp_path / "max.pt"), "--out", str(chosen), "--data", str(mnist_dir),
                 "--activations", "4", "--qat-epochs", "1", "--train-images", "2000", "--threads", "1"]) == 0
    ws = weights.load(chosen)
    assert [f.bits for f in ws.arithmetic.formats(ws.network)] == [4, 4, 4]
    assert "activation formats chosen" in capsys.readouterr().out
    assert main(["import", str(tmp_path / "max.pt"), "--out", str(tmp_path / "x.npz"), "--data", str(mnist_dir),
                 "--activations", "4,4"]) == 2
    assert "--activations gives 2 formats" in capsys.readouterr().err
