"""Nothing left behind and nothing oversized (issue 28, item 6): a zip-bomb .npz is refused before
it is inflated, a failed download removes what it made, a sweep starts no more workers than it
has shards, each waveform run has its own folder, and SIGTERM cleans up like Ctrl-C."""

from __future__ import annotations

import tracemalloc
import zipfile

import numpy as np
import pytest

from lenet_fpga.model import weights
from lenet_fpga.model.errors import InputError
from lenet_fpga.model.npz import read_npz

MiB = 2**20


def bomb(path, name: str, shape: tuple[int, ...]) -> int:
    """An .npz whose one member is a valid uint8 array of zeros of ``shape``, deflated (zeros
    shrink about 1,000 to 1); returns the file's size."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": shape})
            zeros, left = bytes(MiB), int(np.prod(shape))
            while left:
                member.write(zeros[: min(left, MiB)])
                left -= min(left, MiB)
    return path.stat().st_size


def peak_bytes(read) -> int:
    tracemalloc.start()  # numpy reports its array allocations to tracemalloc
    try:
        with pytest.raises(InputError) as refused:
            read()
        return tracemalloc.get_traced_memory()[1], str(refused.value)
    finally:
        tracemalloc.stop()


def test_a_weights_bomb_is_refused_before_inflating(tmp_path):
    """conv1.weight of the shipped network is 6 x 1 x 5 x 5 = 150 codes; a 64 MiB member for it
    is refused from its declared size, with far less than 64 MiB ever allocated."""
    size = bomb(tmp_path / "w.npz", "conv1.weight", (64 * MiB,))
    assert size < MiB / 8
    peak, message = peak_bytes(lambda: weights.load_arrays(tmp_path / "w.npz", np.int8))
    assert "conv1.weight declares 67,108,992 bytes" in message  # 64 MiB of data + a 128-byte .npy header
    assert peak < 4 * MiB, peak


def test_an_images_bomb_is_refused_before_inflating(tmp_path):
    """Images have no expected shape: the whole file is bounded (here 16 MiB, for a 32 MiB bomb)."""
    bomb(tmp_path / "images.npz", "images", (2**15, 32, 32))
    peak, message = peak_bytes(lambda: read_npz(tmp_path / "images.npz", "images", max_bytes=16 * MiB))
    assert "images declares 33,554,560 bytes" in message and "16,777,216 it may hold" in message
    assert peak < 4 * MiB, peak


def test_a_header_that_claims_more_than_the_member_holds(tmp_path):
    """numpy allocates what the header claims before reading: the claim must match the member.
    A header of 10**6 x 28 x 28 over the data of 4 images: 4 * 784 = 3,136 bytes + 128 of header."""
    path = tmp_path / "images.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("images.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False,
                                                      "shape": (10**6, 28, 28)})
        member.write(bytes(4 * 28 * 28))
    with pytest.raises(InputError, match=r"images's header says \[1000000, 28, 28\] uint8 \(784,000,128 bytes "
                                         r"with the header\), the archive holds 3,264"):
        read_npz(path, "images")


def test_a_download_that_fails_its_checksum_leaves_no_folder(tmp_path, capsys):
    """A mirror of four junk files: the first fails its md5, and the folders made for the data go too."""
    from lenet_fpga.cli import main
    from lenet_fpga.model import mnist

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in mnist.FILES:
        (mirror / name).write_bytes(b"not MNIST")
    target = tmp_path / "new" / "mnist"
    assert main(["download", "--data", str(target), "--mirror", mirror.as_uri()]) == 2
    assert "fails its md5 check" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror"]
    kept = tmp_path / "kept"  # a folder that was there before is not ours to remove
    kept.mkdir()
    assert main(["download", "--data", str(kept), "--mirror", mirror.as_uri()]) == 2
    assert kept.is_dir() and not list(kept.iterdir())


@pytest.mark.parametrize("n_images, jobs, started", [
    (1, 12, 1),  # one image is one shard: one worker
    (5, 12, 5),  # shard_bounds(5, 12): min(5, 12) runs of one image each
    (40, 3, 3),  # more shards than jobs: the jobs asked for
])
def test_a_local_cluster_starts_no_more_workers_than_shards(monkeypatch, n_images, jobs, started):
    import contextlib

    import lenet_fpga as lf
    from lenet_fpga.explore import cluster, shards

    asked = []

    class Stop(Exception):
        pass

    @contextlib.contextmanager
    def fake_client(scheduler, workers, processes=True):
        asked.append((scheduler, workers, processes))
        raise Stop

    monkeypatch.setattr(cluster, "open_client", fake_client)
    ws = lf.load_weights()
    with pytest.raises(Stop):
        shards.simulate_on_cluster(ws, np.zeros((n_images, 28, 28), np.uint8), lf.design_config(ws), "verilator",
                                   False, "local", workers=jobs)
    assert asked == [(None, started, False)]  # on one machine the workers are threads (shards.py)


def test_each_waves_run_dumps_into_its_own_folder(tmp_path, monkeypatch):
    """Two runs of one cached build: each simulator process is started in a folder of its own
    (Verilator writes dump.vcd into its working folder, Icarus where +dumpfile_path says), so two
    runs at once cannot write one file. A fake simulator writes the run's data file name as its
    waveform: each run must get back its own."""
    from pathlib import Path

    from lenet_fpga.sim import runner

    class FakeSimulator:
        def test(self, test_dir, extra_env, results_xml, plusargs=(), **_):
            dump = next((a.split("=", 1)[1] for a in plusargs if a.startswith("+dumpfile_path=")), None)
            Path(dump or Path(test_dir) / "dump.vcd").write_text(Path(extra_env["LENET_TB_DATA"]).name)
            Path(results_xml).write_text('<testsuites><testsuite tests="1" failures="0"/></testsuites>')

    monkeypatch.setattr(runner, "_build_cached", lambda *a: (tmp_path, 0.0))
    monkeypatch.setattr(runner, "_get_runner", lambda simulator: FakeSimulator())
    for simulator in ("verilator", "icarus"):
        first = runner.run("", "top", "tb", {}, simulator=simulator, waves=True)
        second = runner.run("", "top", "tb", {}, simulator=simulator, waves=True)
        assert first.waves.parent != second.waves.parent
        assert first.waves.read_text() != second.waves.read_text()
        assert first.waves.parent.parent == tmp_path  # inside the build cache
        for result in (first, second):
            runner.discard_waves(result.waves)
        assert sorted(p.name for p in tmp_path.iterdir()) == []


BOARD_SIM_WITHOUT_A_SIMULATOR = """
import sys, time, types
from pathlib import Path
from lenet_fpga.sim import runner

def serve(verilog, toplevel, module, data, **_):  # the simulated board: a port, then wait to be stopped
    Path(data["port_file"]).write_text("/dev/pts/fake")
    while not Path(data["stop_file"]).exists():
        time.sleep(0.05)
    Path(sys.argv[1]).write_text("stopped")
    return types.SimpleNamespace(outputs={})

runner.run, runner.prepare_simulator = serve, lambda simulator: None
from lenet_fpga.cli import main
sys.exit(main(["board-sim", "--build-dir", sys.argv[2]]))
"""


def test_board_sim_cleans_up_on_sigterm(tmp_path):
    """The real board-sim command, its simulator replaced by a stand-in that serves until told to
    stop: SIGTERM must stop the simulation and remove board-sim's temporary folder, as Ctrl-C does.
    (The real simulator's build takes minutes here; its own clean-up is runner.run's ``finally``.)"""
    import os
    import signal
    import subprocess
    import sys

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    stopped = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-c", BOARD_SIM_WITHOUT_A_SIMULATOR, str(stopped),
                                str(tmp_path / "build")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "TMPDIR": str(scratch)})
    try:
        assert process.stdout.readline().strip() == "/dev/pts/fake"  # serving
        assert [p.name.startswith("lenet-board-sim-") for p in scratch.iterdir()] == [True]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert stopped.exists(), "the simulation was not told to stop"
    assert list(scratch.iterdir()) == [], "board-sim's temporary folder was left behind"
