"""What a hostile or careless user hands the commands (issue 28, items 3 and 5): integers of
thousands of digits in every document, documents whose values have the wrong type, numbers
that are not finite, addresses that are not Dask schedulers, files that cannot be read, files
that are not what they claim. Each ends with one line on stderr and exit 2: never a traceback,
never exit 0 with nonsense, never a file written."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from lenet_fpga.cli import main
from lenet_fpga.model import arith, weights
from lenet_fpga.model.network import Network

HUGE = "1" + "0" * 5000  # beyond Python's 4300-digit limit on int(str)
SMALL = Network.parse("2,3:4")


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


def assert_one_line(code, err, command) -> None:
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and f"lenet-fpga {command}" in lines[0], err


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def small_weights(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    params = {name: rng.integers(-50, 50, shape).astype(np.int8) for name, shape in SMALL.parameter_shapes.items()}
    path = folder / "w.npz"
    weights.save(path, params, weights.make_manifest(arith.Arithmetic(), SMALL, accuracy={"fixed": 0.5}))
    return path


def weights_with_manifest_text(folder: Path, edit) -> Path:
    path = small_weights(folder)
    mpath = path.with_suffix(".json")
    mpath.write_text(edit(mpath.read_text()))
    return path


def bench_document(folder: Path, **row_changes) -> Path:
    row = {name: 1 for name in ("macs", "weight_bits", "multipliers", "dsp_multipliers", "logic_multipliers",
                                "latency_cycles", "interval_cycles", "interval_floor", "pixel_bound")}
    row.update(name="baseline", network="6,16:120,84", fmax_mhz=None, resources={}, images_per_second=None,
               accuracy=0.99, rtl={"images": 8, "mismatches": 0},
               layers=[{"layer": "conv1", "macs": 1, "cycles": 1, "floor": 1}])
    row.update(row_changes)
    path = folder / "bench.json"
    path.write_text(json.dumps({"configs": [row]}))
    return path


def garbage_server(reply: bytes):
    """A local TCP service that answers every connection with ``reply`` (not Dask); its address."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                conn.sendall(reply)
                conn.recv(1 << 16)
            except OSError:
                pass
            finally:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, f"tcp://127.0.0.1:{server.getsockname()[1]}"


# (id, what the message names, command, argv given the test's folder): each must end with one error line and exit 2.
CASES = [
    # ---- item 3: huge integers in every document ----
    ("manifest-huge-int", 'w.json', "verilog", lambda d: [
        "verilog", "--weights", str(weights_with_manifest_text(d, lambda t: t.replace('"format_version": 2',
                                                                                       f'"format_version": {HUGE}'))),
        "--out", str(d / "out.v")]),
    ("grid-toml-huge-int", 'g.toml', "explore", lambda d: [
        "explore", "--grid", str(write(d / "g.toml", f"lanes = [{HUGE}]\n")), "--results", str(d / "r.jsonl")]),
    ("grid-json-huge-int", 'g.json', "explore", lambda d: [
        "explore", "--grid", str(write(d / "g.json", f'{{"lanes": [{HUGE}]}}')), "--results", str(d / "r.jsonl")]),
    ("bench-json-huge-int", 'b.json', "bench-report", lambda d: [
        "bench-report", str(write(d / "b.json", f'{{"configs": [{{"macs": {HUGE}}}]}}'))]),
    ("network-spec-huge-int", 'digits', "train", lambda d: ["train", "--network", HUGE, "--out", str(d / "t.npz")]),
    ("network-file-huge-int", 'n.json', "train", lambda d: [
        "train", "--network", str(write(d / "n.json", f'{{"convs": [{{"channels": {HUGE}}}]}}')),
        "--out", str(d / "t.npz")]),
    ("network-file-4000-digits", 'at most', "train", lambda d: [
        "train", "--network", str(write(d / "n.json", f'{{"convs": [{{"channels": 1{"0" * 4000}}}]}}')),
        "--out", str(d / "t.npz")]),
    # ---- item 3: bench-report's rows, their values' types ----
    ("bench-row-macs-text", 'macs', "bench-report", lambda d: ["bench-report", str(bench_document(d, macs="x"))]),
    ("bench-row-macs-list", 'macs', "bench-report", lambda d: ["bench-report", str(bench_document(d, macs=[1]))]),
    ("bench-row-layers-text", 'layers', "bench-report", lambda d: ["bench-report", str(bench_document(d, layers="x"))]),
    ("bench-row-name-number", 'name', "bench-report", lambda d: ["bench-report", str(bench_document(d, name=3))]),
    ("bench-row-layer-row-text", 'layers', "bench-report", lambda d: [
        "bench-report", str(bench_document(d, layers=[{"layer": "conv1", "macs": "x", "cycles": 1, "floor": 1}]))]),
    ("bench-row-rtl-null", 'rtl', "bench-report", lambda d: ["bench-report", str(bench_document(d, rtl=None))]),
    ("bench-row-resources-list", 'resources', "bench-report", lambda d: [
        "bench-report", str(bench_document(d, resources=[1]))]),
    # ---- item 3: build ----
    ("build-dir-under-a-file", '--build-dir', "build", lambda d: [
        "build", "--board", "ulx3s-85f", "--build-dir", str(write(d / "file", "x") / "sub")]),
    ("build-baud-too-fast", 'baud', "build", lambda d: [
        "build", "--board", "ulx3s-85f", "--baud", "100000000", "--build-dir", str(d / "b")]),
    ("build-baud-off-rate", 'baud', "build", lambda d: [
        "build", "--board", "ulx3s-85f", "--baud", "4000000", "--build-dir", str(d / "b")]),
    # ---- item 3: network size ----
    ("network-too-big", 'at most', "train", lambda d: ["train", "--network", "99999,1:1", "--out", str(d / "t.npz")]),
    ("network-image-too-big", 'at most', "train", lambda d: ["train", "--network", "100000/6:1", "--out", str(d / "t.npz")]),
    # ---- item 3 and held-out: numbers that are not finite ----
    ("train-lr-inf", '--lr', "train", lambda d: ["train", "--lr", "inf", "--out", str(d / "t.npz")]),
    ("train-lr-nan", '--lr', "train", lambda d: ["train", "--lr", "nan", "--out", str(d / "t.npz")]),
    ("board-run-timeout-inf", '--timeout', "board-run", lambda d: ["board-run", "--port", "nothing", "--timeout", "inf"]),
    ("board-run-timeout-nan", '--timeout', "board-run", lambda d: ["board-run", "--port", "nothing", "--timeout", "nan"]),
    ("build-clock-inf", '--clock-mhz', "build", lambda d: ["build", "--board", "ulx3s-85f", "--clock-mhz", "inf",
                                           "--build-dir", str(d / "b")]),
    ("explore-clock-nan", '--clock-mhz', "explore", lambda d: ["explore", "--clock-mhz", "nan", "--results", str(d / "r.jsonl")]),
    ("compress-lr-inf", '--lr', "compress", lambda d: ["compress", "--lr", "inf", "--out", str(d / "c.npz")]),
    ("compress-min-keep-above-1", '--min-keep', "compress", lambda d: ["compress", "--min-keep", "2", "--out", str(d / "c.npz")]),
    ("board-sim-flip-nan", '--flip', "board-sim", lambda d: ["board-sim", "--flip", "nan"]),
    ("board-sim-drop-inf", '--drop', "board-sim", lambda d: ["board-sim", "--drop", "inf"]),
    # ---- item 5: compress's trade-off and cost weights ----
    ("compress-tradeoff-nan", '--tradeoff', "compress", lambda d: ["compress", "--tradeoff", "nan", "--out", str(d / "c.npz")]),
    ("compress-tradeoff-inf", '--tradeoff', "compress", lambda d: ["compress", "--tradeoff", "inf", "--out", str(d / "c.npz")]),
    ("compress-tradeoff-negative", '--tradeoff', "compress", lambda d: ["compress", "--tradeoff", "-1", "--out",
                                                          str(d / "c.npz")]),
    ("compress-cost-weight-nan", '--cost-weights', "compress", lambda d: ["compress", "--cost-weights", "macs=nan",
                                                        "--out", str(d / "c.npz")]),
    ("compress-cost-weight-inf", '--cost-weights', "compress", lambda d: ["compress", "--cost-weights", "macs=inf",
                                                        "--out", str(d / "c.npz")]),
    ("compress-cost-weight-negative", '--cost-weights', "compress", lambda d: ["compress", "--cost-weights", "cycles=-2",
                                                             "--out", str(d / "c.npz")]),
    # ---- item 5: bench --weights with no names ----
    ("bench-weights-comma", '--weights', "bench", lambda d: ["bench", "--weights", ","]),
    ("bench-weights-empty", '--weights', "bench", lambda d: ["bench", "--weights", ""]),
    ("explore-weights-comma", 'weights', "explore", lambda d: ["explore", "--weights", ",", "--results", str(d / "r.jsonl")]),
]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("says, command, make_argv", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_hostile_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, says, command, make_argv):
    """``says``: what the line must name (the option or file at fault)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LENET_FPGA_DATA", str(tmp_path / "no-mnist"))  # never train for real
    folder = tmp_path / "in"
    folder.mkdir()
    argv = make_argv(folder)
    before = files_in(tmp_path)
    code, err = run_cli(argv, capsys)
    assert_one_line(code, err, command)
    assert says in err, err
    assert files_in(tmp_path) == before, "a file was written"


# ---- --scheduler: malformed, or a TCP service that is not Dask ----

@pytest.mark.parametrize("address", ["tcp://", "tcp://127.0.0.1:notaport", "tcp://127.0.0.1:99999", "nonsense://x"])
@pytest.mark.parametrize("command", ["sim", "explore"])
def test_malformed_scheduler_address(tmp_path, capsys, monkeypatch, command, address):
    pytest.importorskip("distributed")
    monkeypatch.chdir(tmp_path)
    extra = ["--results", str(tmp_path / "r.jsonl")] if command == "explore" else ["--n", "1"]
    code, err = run_cli([command, "--scheduler", address, *extra], capsys)
    assert_one_line(code, err, command)
    assert "scheduler" in err


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 200 OK\r\n\r\nhello", b"\xff" * 64, b"\x00" * 8 + b"\xff" * 8])
def test_scheduler_that_is_not_dask(tmp_path, capsys, monkeypatch, reply):
    """A service that closes, speaks HTTP, or sends a length header of 2**64-1 bytes."""
    pytest.importorskip("distributed")
    from lenet_fpga.explore import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "3s")
    monkeypatch.chdir(tmp_path)
    server, address = garbage_server(reply)
    try:
        code, err = run_cli(["sim", "--scheduler", address, "--n", "1", "--json"], capsys)  # no progress bar
    finally:
        server.close()
    assert_one_line(code, err, "sim")
    assert address in err


# ---- files that cannot be read (mode 000; as root, by a refusing open) ----

def refuse_to_read(monkeypatch, victim: Path) -> None:
    """``open`` (and Path.open/read_text/read_bytes, gzip.open) of ``victim`` raise PermissionError."""
    import builtins
    import io

    real_open, real_io_open = builtins.open, io.open

    def guarded(real):
        def opener(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and Path(file).resolve().is_relative_to(victim.resolve()):
                raise PermissionError(13, "Permission denied", str(file))
            return real(file, *args, **kwargs)
        return opener

    monkeypatch.setattr(builtins, "open", guarded(real_open))
    monkeypatch.setattr(io, "open", guarded(real_io_open))


def test_unreadable_manifest(tmp_path, capsys, monkeypatch):
    path = small_weights(tmp_path)
    refuse_to_read(monkeypatch, path.with_suffix(".json"))
    code, err = run_cli(["verilog", "--weights", str(path), "--out", str(tmp_path / "out.v")], capsys)
    assert_one_line(code, err, "verilog")
    assert "w.json" in err and not (tmp_path / "out.v").exists()


def test_unreadable_mnist_folder(tmp_path, capsys, monkeypatch, mnist_dir):
    import shutil

    data = tmp_path / "mnist"
    shutil.copytree(mnist_dir, data)
    refuse_to_read(monkeypatch, data)
    code, err = run_cli(["eval", "--data", str(data)], capsys)
    assert_one_line(code, err, "eval")
    assert str(data) in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode 000 files; the refusing-open tests cover it")
def test_mode_000_manifest_and_mnist(tmp_path, capsys, mnist_dir):
    import shutil

    path = small_weights(tmp_path)
    path.with_suffix(".json").chmod(0)
    data = tmp_path / "mnist"
    shutil.copytree(mnist_dir, data)
    data.chmod(0)
    try:
        assert_one_line(*run_cli(["verilog", "--weights", str(path), "--out", str(tmp_path / "o.v")], capsys),
                        "verilog")
        assert_one_line(*run_cli(["eval", "--data", str(data)], capsys), "eval")
    finally:
        data.chmod(0o755)


# ---- flash --dry-run checks the bitstream itself ----

@pytest.mark.parametrize("board, suffix", [("ulx3s-85f", ".bit"), ("icebreaker", ".bin")])
@pytest.mark.parametrize("content", [b"", b"hello, this is a text file\n" * 10, b"\xff" * 64])
def test_flash_dry_run_refuses_what_is_not_a_bitstream(tmp_path, capsys, board, suffix, content):
    bitstream = tmp_path / f"lenet5{suffix}"
    bitstream.write_bytes(content)
    code, err = run_cli(["flash", "--board", board, "--bitstream", str(bitstream), "--dry-run"], capsys)
    assert_one_line(code, err, "flash")
    assert "bitstream" in err


# ---- import (PyTorch) ----

@pytest.mark.torch
@pytest.mark.parametrize("normalize", ["nan,1", "0.1,inf", "inf,1", "0.1,0", "0.1,-0.3", "0.1,nan"])
def test_import_refuses_a_normalisation_that_is_not_finite(tmp_path, capsys, normalize):
    pytest.importorskip("torch")
    model = tmp_path / "m.pt"
    model.write_bytes(b"not read: the options are checked first")
    code, err = run_cli(["import", str(model), "--out", str(tmp_path / "o.npz"), "--normalize", normalize], capsys)
    assert_one_line(code, err, "import")
    assert "--normalize" in err and not (tmp_path / "o.npz").exists()


@pytest.mark.torch
def test_import_of_a_state_dict_with_a_non_tensor_value(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    model = tmp_path / "m.pt"
    state = {"conv1.weight": torch.zeros(6, 1, 5, 5), "conv1.bias": "not a tensor", "fc1.weight": [1, 2]}
    torch.save(state, model)
    code, err = run_cli(["import", str(model), "--out", str(tmp_path / "o.npz")], capsys)
    assert_one_line(code, err, "import")
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.torch
@pytest.mark.parametrize("seed", [str(2**64), HUGE])
def test_import_seed_beyond_64_bits(tmp_path, capsys, seed):
    pytest.importorskip("torch")
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    code, err = run_cli(["import", str(model), "--out", str(tmp_path / "o.npz"), "--seed", seed], capsys)
    assert_one_line(code, err, "import")


def unreadable_cases():
    """(name, the file refused, argv): every reader of a file the user names."""
    def weights_npz(d):
        path = small_weights(d)
        return path, ["verilog", "--weights", str(path), "--out", str(d / "o.v")]

    def grid(d):
        return write(d / "g.toml", "lanes = [1]\n"), ["explore", "--grid", str(d / "g.toml"),
                                                     "--results", str(d / "r.jsonl")]

    def bench(d):
        return bench_document(d), ["bench-report", str(d / "bench.json")]

    def network(d):
        return write(d / "n.json", "{}"), ["train", "--network", str(d / "n.json"), "--out", str(d / "t.npz")]

    def picture(d):
        return write(d / "p.png", "x"), ["classify", str(d / "p.png")]

    def images(d):
        path = d / "i.npz"
        np.savez(path, images=np.zeros((1, 28, 28), np.uint8))
        return path, ["board-run", "--port", "nothing", "--images", str(path)]

    def results(d):
        return write(d / "r.jsonl", ""), ["explore", "--results", str(d / "r.jsonl")]

    def dataset_npz(d):
        path = d / "d.npz"
        np.savez(path, images=np.zeros((4, 28, 28), np.uint8), labels=np.arange(4) % 2)
        return path, ["eval", "--dataset", str(path)]

    def dataset_png(d):
        from PIL import Image

        for label in (0, 1):
            (d / "set" / str(label)).mkdir(parents=True)
            Image.fromarray(np.zeros((16, 16), np.uint8)).save(d / "set" / str(label) / "a.png")
        return d / "set" / "1" / "a.png", ["eval", "--dataset", str(d / "set")]

    return [("weights-npz", weights_npz), ("grid", grid), ("bench-json", bench), ("network-json", network),
            ("picture", picture), ("images-npz", images), ("results-jsonl", results), ("dataset-npz", dataset_npz),
            ("dataset-png", dataset_png)]


@pytest.mark.parametrize("make", [c[1] for c in unreadable_cases()], ids=[c[0] for c in unreadable_cases()])
def test_unreadable_files(tmp_path, capsys, monkeypatch, make):
    monkeypatch.chdir(tmp_path)
    victim, argv = make(tmp_path)
    refuse_to_read(monkeypatch, victim)
    code, err = run_cli(argv, capsys)
    assert_one_line(code, err, argv[0])
    assert victim.name in err, err


# ---- classify: a transparent background is paper ----

def test_black_strokes_on_a_transparent_background_are_ink(tmp_path, capsys):
    from PIL import Image

    from lenet_fpga.model import digits

    rgba = np.zeros((56, 56, 4), np.uint8)  # transparent black everywhere
    rgba[10:46, 26:30] = (0, 0, 0, 255)  # an opaque black stroke: a 1
    path = tmp_path / "one.png"
    Image.fromarray(rgba, "RGBA").save(path)
    grey = digits.load_picture(path)
    assert grey[0, 0] == 255 and grey[20, 27] == 0  # white paper, black ink
    assert digits.prepare(grey).max() > 0
    code, err = run_cli(["classify", str(path)], capsys)
    assert code == 0 and "Traceback" not in err, err
