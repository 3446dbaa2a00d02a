"""The command line on a data set of one's own, step by step, for the end-to-end tests of grey
(test_datasets.py) and colour (test_input_channels.py) data sets: each step runs a command with
--json, checks it succeeded and returns what it printed."""

import json

import numpy as np

from lenet_fpga.cli import main


def run_json(capsys, *argv) -> dict:
    """``lenet-fpga ARGV --json``: exit 0, its JSON."""
    assert main([*map(str, argv), "--json"]) == 0, argv
    return json.loads(capsys.readouterr().out)


def train_on_npz(tmp_path, capsys, images, labels, network: str, epochs: int, qat_epochs: int):
    """``images`` and ``labels`` written as an .npz data set, then ``train`` (briefly, one
    thread) on it: (the data set's path, the weights' path, train's JSON)."""
    data, out = tmp_path / "data.npz", tmp_path / "w.npz"
    np.savez(data, images=images, labels=labels)
    trained = run_json(capsys, "train", "--dataset", data, "--network", network, "--epochs", epochs,
                       "--qat-epochs", qat_epochs, "--batch-size", 16, "--lr", 0.01, "--threads", 1, "--out", out)
    return data, out, trained


def sim_on_dataset(capsys, data, weights, simulator: str, sim_build, classes: int) -> None:
    """``sim`` of 4 of the data set's test images: every logit the golden model's."""
    run = run_json(capsys, "sim", "--simulator", simulator, "--weights", weights, "--dataset", data, "--n", 4,
                   "--build-dir", sim_build)
    assert run["total"]["images"] == 4 and run["total"]["mismatches"] == 0
    assert all(row["match"] and len(row["rtl_logits"]) == classes for row in run["images"])


def bench_on_dataset(capsys, data, weights, simulator: str, sim_build) -> dict:
    """``bench --preset baseline`` streaming 2 of the data set's test images: its JSON."""
    return run_json(capsys, "bench", "--weights", weights, "--dataset", data, "--preset", "baseline",
                    "--rtl-images", 2, "--simulator", simulator, "--build-dir", sim_build)


def import_float_checkpoint(tmp_path, capsys, data) -> dict:
    """train's float checkpoint (``w-float.npz``) saved as a PyTorch state dict and imported on
    the data set: import's JSON."""
    import torch

    with np.load(tmp_path / "w-float.npz") as saved:
        torch.save({name: torch.from_numpy(saved[name]) for name in saved.files}, tmp_path / "state.pt")
    return run_json(capsys, "import", tmp_path / "state.pt", "--dataset", data, "--out", tmp_path / "imp.npz",
                    "--threads", 1)
