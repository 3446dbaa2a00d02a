"""Nothing a user imports is executed unless they opt in (issue 28, item 1).

A hostile pickle names ``builtins.open`` with a marker path as its reduce call: unpickling it
with Python's full unpickler creates the marker, so the marker's absence proves the file's code
did not run. Both file forms are tried: a raw pickle and a ``torch.save`` zip (whose ``data.pkl``
is the same pickle).
"""

from __future__ import annotations

import builtins
import pickle

import pytest

from lenet_fpga.cli import main
from lenet_fpga.model.errors import InputError
from lenet_fpga.model.train import importer

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
nn = torch.nn


class Hostile:
    """Unpickled, it calls ``open(marker, "w")``: a file appears where none should."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def hostile_files(tmp_path):
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Hostile(marker)))
    zipped = tmp_path / "zipped.pt"
    torch.save(Hostile(marker), zipped)
    return marker, {"raw pickle": raw, "torch.save zip": zipped}


def small_module():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 12 * 12, 10))


@pytest.mark.parametrize("form", ["raw pickle", "torch.save zip"])
def test_a_hostile_pickle_writes_nothing_without_the_opt_in(tmp_path, capsys, form):
    marker, files = hostile_files(tmp_path)
    assert main(["import", str(files[form]), "--out", str(tmp_path / "w.npz")]) == 2
    err = capsys.readouterr().err
    assert not marker.exists(), "the file's code ran"
    # One line: what the file is (the function its pickle would call) and how to opt in.
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "pickled io.open" in err and "--trust-pickle" in err, err
    assert not (tmp_path / "w.npz").exists()


def test_the_hostile_pickle_is_really_hostile(tmp_path):
    """The check above can fail: with the opt-in, the full unpickler does run the file's code."""
    marker, files = hostile_files(tmp_path)
    for path in files.values():
        with pytest.raises(InputError):  # it runs, then the result is no module
            importer.from_object(importer.load_torch_file(path, trust_pickle=True))
        assert marker.exists()
        marker.unlink()


def test_a_whole_module_needs_the_opt_in_and_then_imports(tmp_path):
    torch.save(small_module(), tmp_path / "module.pt")
    with pytest.raises(InputError, match=r"pickled torch\.nn\.modules\.container\.Sequential.*--trust-pickle"):
        importer.load_torch_file(tmp_path / "module.pt")
    model = importer.load_torch_file(tmp_path / "module.pt", trust_pickle=True)
    # 28 - 5 + 1 = 24, pooled by 2 to 12: 4 filters of 12 x 12 into 10 logits.
    assert importer.from_object(model).network.spec == "4:"


def test_a_state_dict_needs_no_opt_in(tmp_path):
    torch.save(small_module().state_dict(), tmp_path / "state.pt")
    assert importer.from_object(importer.load_torch_file(tmp_path / "state.pt"), pool=2).network.spec == "4:"


def test_a_torchscript_archive_is_named_and_not_loaded(tmp_path):
    torch.jit.save(torch.jit.script(small_module()), tmp_path / "scripted.pt")
    with pytest.raises(InputError, match="is a TorchScript archive.*state_dict"):
        importer.load_torch_file(tmp_path / "scripted.pt")
