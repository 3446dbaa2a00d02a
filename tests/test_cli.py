"""The ``lenet-fpga`` command line (lenet_fpga/cli.py, lenet_fpga/commands/): in-process through
``cli.main`` and, twice, as the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lenet_fpga import cli
from lenet_fpga.model import arith, golden, mnist, weights

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_FILES = tuple(mnist.FILES)

SHIPPED = REPO_ROOT / "model" / "assets" / "lenet5_saturate.npz"
SCRIPT = Path(sys.executable).parent / "lenet-fpga"


def assert_one_error_line(err: str, command: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith(f"lenet-fpga {command}: error:"), lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def weight_file(tmp_path, random_params) -> Path:
    params = random_params(np.random.default_rng(0), 40)
    manifest = weights.make_manifest(arith.Arithmetic("half-up", "saturate"), accuracy={"fixed": 0.25})
    return weights.save(tmp_path / "w" / "lenet.npz", params, manifest)


# --------------------------------------------------------------------------------------------
# help and argument errors


@pytest.mark.parametrize("command", ["train", "eval", "download"])
def test_help_for_each_subcommand(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: lenet-fpga {command}")
    assert "--data" in out


def test_top_level_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "eval", "download"):
        assert command in out


def test_no_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
    # One line, like every other error, pointing to the help.
    assert capsys.readouterr().err == ("lenet-fpga: error: the following arguments are required: COMMAND "
                                       "(see lenet-fpga --help)\n")


def test_unknown_overflow_choice_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", "--overflow", "clip"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'clip'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# eval: error paths


def test_eval_missing_weights(capsys, mnist_dir):
    assert cli.main(["eval", "--weights", "/nonexistent.npz", "--data", str(mnist_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_error_line(captured.err, "eval", "/nonexistent.npz")


def test_eval_weights_of_another_format_version(capsys, weight_file, mnist_dir):
    manifest = json.loads(weight_file.with_suffix(".json").read_text())
    manifest["format_version"] = 3
    weight_file.with_suffix(".json").write_text(json.dumps(manifest))
    assert cli.main(["eval", "--weights", str(weight_file), "--data", str(mnist_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_error_line(captured.err, "eval", "format version 3")


def test_eval_weights_without_manifest(capsys, weight_file, mnist_dir):
    weight_file.with_suffix(".json").unlink()
    assert cli.main(["eval", "--weights", str(weight_file), "--data", str(mnist_dir)]) == 2
    assert_one_error_line(capsys.readouterr().err, "eval", "manifest not found")


def test_eval_corrupt_weights(capsys, weight_file, mnist_dir):
    weight_file.write_bytes(weight_file.read_bytes()[:1000])
    assert cli.main(["eval", "--weights", str(weight_file), "--data", str(mnist_dir)]) == 2
    assert_one_error_line(capsys.readouterr().err, "eval", "cannot read weights")


def test_eval_empty_data_folder(capsys, weight_file, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["eval", "--weights", str(weight_file), "--data", str(empty)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_error_line(captured.err, "eval", "MNIST file not found", str(empty))


def test_eval_data_folder_with_a_bad_file(capsys, weight_file, mnist_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in MNIST_FILES:
        (data / name).symlink_to(mnist_dir / name)
    (data / "t10k-labels-idx1-ubyte.gz").unlink()
    (data / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    assert cli.main(["eval", "--weights", str(weight_file), "--data", str(data)]) == 2
    assert_one_error_line(capsys.readouterr().err, "eval", "md5")


# --------------------------------------------------------------------------------------------
# eval: results


def test_eval_json_on_random_weights(capsys, monkeypatch, weight_file, mnist_dir, mnist_test):
    """The command evaluates the whole test set with the requested arithmetic and reports it."""
    calls = []
    real_forward = golden.forward

    def spy(images, params, arithmetic=arith.Arithmetic(), *args, **kwargs):
        logits = real_forward(images, params, arithmetic, *args, **kwargs)
        calls.append((images, params, arithmetic, logits))
        return logits

    monkeypatch.setattr(golden, "forward", spy)
    argv = ["eval", "--json", "--weights", str(weight_file), "--data", str(mnist_dir), "--rounding", "floor", "--overflow", "wrap"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    result = json.loads(captured.out)
    assert {"weights", "n_images", "rounding", "overflow", "fixed_accuracy", "recorded_accuracy", "seconds"} <= result.keys()
    assert "float_accuracy" not in result  # no float checkpoint beside these weights
    assert result["weights"] == str(weight_file)
    assert result["n_images"] == 10000
    assert (result["rounding"], result["overflow"]) == ("floor", "wrap")
    assert result["recorded_accuracy"] == 0.25

    (images, params, arithmetic, logits), = calls
    assert arithmetic == arith.Arithmetic("floor", "wrap")
    assert np.array_equal(images, mnist_test.images)
    expected_params = weights.load(weight_file).params
    assert all(np.array_equal(params[k], expected_params[k]) for k in expected_params)
    expected = float((np.argmax(logits, axis=1) == mnist_test.labels).mean())
    assert result["fixed_accuracy"] == expected
    # the override mattered: with the manifest's own arithmetic the first images come out differently
    own = real_forward(mnist_test.images[:200], expected_params, arith.Arithmetic("half-up", "saturate"))
    assert not np.array_equal(own, logits[:200])
    assert np.array_equal(real_forward(mnist_test.images[:200], expected_params, arithmetic), logits[:200])


def test_eval_text_output_and_float_accuracy(capsys, monkeypatch, weight_file, mnist_dir):
    """Text output; a float checkpoint named by the manifest adds the float accuracy."""
    params = weights.load(weight_file).params
    with open(weight_file.parent / "lenet-float.npz", "wb") as f:
        np.savez(f, **{k: v.astype(np.float32) / 64 for k, v in params.items()})
    manifest = json.loads(weight_file.with_suffix(".json").read_text())
    manifest["float_weights"] = "lenet-float.npz"
    weight_file.with_suffix(".json").write_text(json.dumps(manifest))
    # the accuracies themselves are checked elsewhere; keep this test fast
    monkeypatch.setattr(golden, "forward", lambda images, *a, **k: np.eye(10, dtype=np.int64)[np.zeros(len(images), int)])
    monkeypatch.setattr(golden, "float_forward", lambda images, *a, **k: np.eye(10)[np.ones(len(images), int)])
    assert cli.main(["eval", "--weights", str(weight_file), "--data", str(mnist_dir)]) == 0
    out = capsys.readouterr().out
    assert "half-up" in out and "saturate" in out
    assert "test images      10000" in out
    assert "float accuracy   11.35%" in out  # every image called a 1: 1135 of them are
    assert "fixed accuracy   9.80%" in out  # every image called a 0: 980 of them are


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"{SHIPPED} not trained yet")
def test_eval_default_weights_are_the_shipped_ones(capsys, monkeypatch, mnist_dir):
    monkeypatch.setattr(golden, "forward", lambda images, *a, **k: np.zeros((len(images), 10), np.int64))
    monkeypatch.setattr(golden, "float_forward", lambda images, *a, **k: np.zeros((len(images), 10)))
    assert cli.main(["eval", "--json", "--data", str(mnist_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert Path(result["weights"]).resolve() == SHIPPED.resolve()
    assert (result["rounding"], result["overflow"]) == ("half-up", "saturate")


# --------------------------------------------------------------------------------------------
# download


def test_download_when_everything_is_there(capsys, mnist_dir, tmp_path):
    target = tmp_path / "mnist"
    target.mkdir()
    for name in MNIST_FILES:
        shutil.copyfile(mnist_dir / name, target / name)
    # an unreachable mirror: nothing may be fetched
    assert cli.main(["download", "--data", str(target), "--mirror", "http://127.0.0.1:9/"]) == 0
    assert "0 file(s) downloaded" in capsys.readouterr().out


def test_download_from_an_unreachable_mirror(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = tmp_path / "mnist"
    assert cli.main(["download", "--data", str(target), "--mirror", f"http://127.0.0.1:{port}/"]) == 2
    assert_one_error_line(capsys.readouterr().err, "download", "cannot download")
    assert not target.exists() or list(target.iterdir()) == []


# --------------------------------------------------------------------------------------------
# the console script


def run_script(*args: str) -> subprocess.CompletedProcess:
    if not SCRIPT.is_file():
        pytest.skip(f"console script {SCRIPT} is not installed (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if k != "LENET_FPGA_DATA"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO_ROOT)


def test_script_error_exit_status():
    result = run_script("eval", "--weights", "/nonexistent.npz")
    assert result.returncode == 2
    assert result.stdout == ""
    assert_one_error_line(result.stderr, "eval", "weights file not found")


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"{SHIPPED} not trained yet (training may still be running)")
def test_script_eval_shipped_weights(mnist_dir):
    result = run_script("eval", "--json", "--data", str(mnist_dir), "--weights", str(SHIPPED))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"float_accuracy", "fixed_accuracy", "n_images", "weights"} <= report.keys()
    assert report["n_images"] == 10000
    manifest = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert report["fixed_accuracy"] == manifest["accuracy"]["fixed"]
    assert report["recorded_accuracy"] == manifest["accuracy"]["fixed"]
    assert 0.9 < report["fixed_accuracy"] <= 1 and 0.9 < report["float_accuracy"] <= 1
