"""`lenet-fpga import`: a user's PyTorch LeNet-family model becomes a weights file whose float
network computes what the model computes (batch norm and input normalisation folded), and
what the hardware cannot do is refused with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lenet_fpga.cli import main
from lenet_fpga.model import golden, weights
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
    max-pool (an average-pooling model's weights would otherwise pass as a max-pool network
    unsaid), and a padded model's shapes that do not fit name padding as a cause."""
    imported = importer.from_object(small_model(batch_norm=False).state_dict(), pool=2)
    assert any("no padding" in note and "average-pools" in note for note in imported.notes), imported.notes

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
    assert main(["import", str(tmp_path / "state.pt"), "--out", str(out), "--data", str(mnist_dir)]) == 0
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
