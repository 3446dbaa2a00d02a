"""`lenet-fpga explore` and `sim --scheduler` on real Dask clusters: a LocalCluster of two worker
processes with a fake place-and-route tool (fast), and a scheduler and two workers started as
separate processes on 127.0.0.1 running real RTL stages while one worker is killed (slow)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
# One xdist worker takes the whole module: its Dask clusters start once.
pytestmark = pytest.mark.xdist_group("dask-clusters")

from lenet_fpga.cli import main  # noqa: E402
from lenet_fpga.model import arith, golden, images, weights  # noqa: E402
from lenet_fpga.model.network import Network  # noqa: E402

FAKE_PNR = Path(__file__).with_name("fake_pnr.py")
HANG_SEED, FAIL_SEED = 13, 7  # as in fake_pnr.py


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """Random weights of a small network (2 filters, one hidden layer of 4): quick to generate."""
    network = Network.parse("2k5p4:4")
    rng = np.random.default_rng(7)
    params = {name: rng.integers(-40, 41, size=shape).astype(np.int8)
              for name, shape in network.parameter_shapes.items()}
    path = tmp_path_factory.mktemp("weights") / "tiny.npz"
    return weights.save(path, params, weights.make_manifest(arith.Arithmetic(), network))


@pytest.fixture(scope="module")
def fake_tools(tmp_path_factory) -> dict[str, str]:
    """The environment that makes YOSYS and NEXTPNR_ECP5 fake_pnr.py (``FAKE_PNR_DIR``: its folder)."""
    folder = tmp_path_factory.mktemp("fake-pnr")
    for tool in ("yosys", "nextpnr"):
        wrapper = folder / f"fake-{tool}"
        wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_PNR} {tool} \"$@\"\n")
        wrapper.chmod(0o755)
    return {"YOSYS": str(folder / "fake-yosys"), "NEXTPNR_ECP5": str(folder / "fake-nextpnr"),
            "FAKE_PNR_DIR": str(folder)}


def two_worker_cluster():
    """A LocalCluster of two worker processes, one thread each."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")


@pytest.fixture(scope="module")
def fake_pnr_cluster(fake_tools):
    """Two workers whose Yosys and nextpnr are fake_pnr.py (the workers inherit the environment
    they start in); its scheduler's address. Amaranth's Verilog output runs $YOSYS too: these
    workers cannot simulate."""
    saved = {key: os.environ.get(key) for key in fake_tools}
    os.environ.update(fake_tools)
    try:
        cluster = two_worker_cluster()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    with cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def local_cluster():
    with two_worker_cluster() as cluster:
        yield cluster.scheduler_address


def fake_calls(folder: Path) -> list[int]:
    """The seeds of every fake nextpnr run so far."""
    calls = folder / "calls.txt"
    return sorted(int(line.split()[0]) for line in calls.read_text().splitlines()) if calls.exists() else []


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]  # every line valid JSON, or this raises


def test_sweep_runs_each_point_once_resumes_and_retries(tmp_path, monkeypatch, fake_tools, fake_pnr_cluster,
                                                       tiny_weights, group_gone):
    for key, value in fake_tools.items():  # the client keys the points with the same tool versions
        monkeypatch.setenv(key, value)
    folder = Path(fake_tools["FAKE_PNR_DIR"])
    before = fake_calls(folder)
    results = tmp_path / "results.jsonl"
    seeds = [1, 2, 3, FAIL_SEED, HANG_SEED]
    argv = ["explore", "--scheduler", fake_pnr_cluster, "--weights", str(tiny_weights), "--stages", "pnr",
            "--seed", ",".join(map(str, seeds)), "--time-limit", "0.2", "--results", str(results)]
    assert main(argv) == 1  # two points failed

    records = read_lines(results)
    assert sorted(r["point"]["seed"] for r in records) == seeds  # one line per point
    assert len({r["key"] for r in records}) == len(seeds)
    assert [s for s in fake_calls(folder) if s not in before] == seeds  # each point's tool ran once
    assert len({r["worker"]["address"] for r in records}) == 2  # both workers took points
    by_seed = {r["point"]["seed"]: r for r in records}
    for seed in (1, 2, 3):  # the fake report: 1000 + seed LUTs, seed DSPs, 50 + seed MHz
        pnr = by_seed[seed]["stages"]["pnr"]
        assert by_seed[seed]["status"] == "done", by_seed[seed]
        assert (pnr["resources"]["luts"], pnr["resources"]["dsp"], pnr["fmax_mhz"]) == (1000 + seed, seed, 50.0 + seed)
    failed = by_seed[FAIL_SEED]
    assert failed["status"] == "failed"
    assert "ERROR: fake router gave up" in failed["stages"]["pnr"]["log"]["build/nextpnr.log"]
    hung = by_seed[HANG_SEED]
    assert hung["status"] == "failed" and hung["stages"]["pnr"]["status"] == "timeout"
    assert "time limit (0.2 minutes)" in hung["error"]
    assert "Info: routing forever" in hung["stages"]["pnr"]["log"]["build/nextpnr.log"]
    [hang] = [json.loads(p.read_text()) for p in folder.glob("hang-*.json")]
    assert group_gone(hang["pgid"])  # the stage process, fake nextpnr and its `sleep` child: all gone
    for pid in (hang["pid"], hang["child"]):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    # The same sweep again: nothing to run, the file unchanged.
    text = results.read_text()
    assert main(argv) == 1
    assert results.read_text() == text and [s for s in fake_calls(folder) if s not in before] == seeds

    # --retry-failed runs the two failed points again, and only them; each point still one line.
    assert main(argv + ["--retry-failed"]) == 1
    assert [s for s in fake_calls(folder) if s not in before] == sorted(seeds + [FAIL_SEED, HANG_SEED])
    records = read_lines(results)
    assert sorted(r["point"]["seed"] for r in records) == seeds
    def done_lines(text):
        return [line for line in text.splitlines() if json.loads(line)["status"] == "done"]
    assert done_lines(results.read_text()) == done_lines(text)  # the done points' lines kept as they were
    for path in folder.glob("hang-*.json"):
        assert group_gone(json.loads(path.read_text())["pgid"])


def test_a_cancelled_point_stops_its_tools(monkeypatch, fake_tools, fake_pnr_cluster, tiny_weights, group_gone):
    """The client's interruption sets the sweep's Dask Event; a running point sees it and kills
    its stage's process group (no time limit here: only the cancellation can stop it)."""
    from distributed import Client, Event

    from lenet_fpga.explore.sweep import Sweep
    from lenet_fpga.explore.grid import Grid
    from lenet_fpga.explore.tasks import run_point

    for key, value in fake_tools.items():
        monkeypatch.setenv(key, value)
    folder = Path(fake_tools["FAKE_PNR_DIR"])
    hangs_before = set(folder.glob("hang-*.json"))
    sweep = Sweep(Grid(weights=(str(tiny_weights),), stages=("pnr",), seeds=(HANG_SEED,)), check_tools=False)
    [key] = sweep.points
    with Client(fake_pnr_cluster) as client:
        event = f"test-cancel-{key}"
        future = client.submit(run_point, sweep.task(key, None, False), event, pure=False)
        deadline = time.monotonic() + 120
        while not set(folder.glob("hang-*.json")) - hangs_before and time.monotonic() < deadline:
            time.sleep(0.2)
        [hang_file] = set(folder.glob("hang-*.json")) - hangs_before
        Event(event, client=client).set()
        record = future.result(timeout=60)
    assert record["status"] == "failed" and record["stages"]["pnr"]["status"] == "cancelled"
    assert group_gone(json.loads(hang_file.read_text())["pgid"])


def test_sim_shards_on_the_cluster_come_back_in_order(tmp_path, capsys, local_cluster, tiny_weights, simulator):
    ws = weights.load(tiny_weights)
    shipped = images.load_image_set(None).head(6).fitted(ws.network)
    assert main(["sim", "--scheduler", local_cluster, "--simulator", simulator, "--weights", str(tiny_weights),
                 "--n", "6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # 6 images over the cluster's 2 workers: two shards of 3 (sim.network.shard_bounds)
    expected = golden.forward(shipped.images, ws.params, ws.arithmetic, ws.network)
    assert [e["rtl_logits"] for e in out["images"]] == expected.tolist()
    assert out["total"]["mismatches"] == 0 and out["total"]["scheduler"] == local_cluster


# ---- a scheduler and two workers as separate processes (the README's cluster recipe) ----

def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def stage_process_of(pid: int) -> int | None:
    for child in children(pid):
        try:
            if b"lenet_fpga.explore.stages" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except FileNotFoundError:
            pass
    return None


@pytest.mark.slow
def test_real_sweep_on_separate_processes_survives_a_killed_worker(tmp_path, mnist_dir, group_gone):
    from lenet_fpga.model import mnist
    from lenet_fpga.model.errors import InputError
    from lenet_fpga.sim import runner

    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))
    dask = [sys.executable, "-m"]
    scheduler_file = tmp_path / "scheduler.json"
    started = []
    try:
        started.append(subprocess.Popen(dask + ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                                "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                                        stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        address = json.loads(scheduler_file.read_text())["address"]
        workers = [subprocess.Popen(dask + ["distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
                                            "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                                            "--local-directory", str(tmp_path / f"worker{k}")],
                                    stderr=subprocess.DEVNULL) for k in range(2)]
        started += workers
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)

        results = tmp_path / "results.jsonl"
        sweep = subprocess.Popen([sys.executable, "-m", "lenet_fpga.cli", "explore", "--scheduler", address,
                                  "--preset", "baseline", "--lanes", "20", "--lanes", "10", "--stages", "golden,rtl",
                                  "--rtl-images", "2", "--data", str(mnist_dir), "--results", str(results)],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        started.append(sweep)
        victim = survivor = stage = None
        deadline = time.monotonic() + 600
        while stage is None and time.monotonic() < deadline and sweep.poll() is None:
            for k, worker in enumerate(workers):
                stage = stage_process_of(worker.pid)
                if stage is not None:
                    victim, survivor = worker, workers[1 - k]
                    break
            time.sleep(0.2)
        assert stage is not None, "no worker started a stage"
        time.sleep(5)  # into the Verilator build
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        out, _ = sweep.communicate(timeout=1800)
        assert sweep.returncode == 0, out
        assert group_gone(stage)  # the killed worker's stage took its tools with it

        records = read_lines(results)
        assert sorted(r["point"]["design"] for r in records) == ["baseline lanes=10", "baseline lanes=20"]
        assert len({r["key"] for r in records}) == 2
        assert all(r["worker"]["pid"] == survivor.pid for r in records)
        split = mnist.load("test", mnist_dir)
        ws = weights.load(None)
        accuracy = golden.accuracy(golden.forward(split.images, ws.params, ws.arithmetic, ws.network), split.labels)
        for r in records:
            assert r["status"] == "done"
            assert r["stages"]["golden"]["accuracy"] == accuracy
            assert r["stages"]["rtl"]["images"] == 2 and r["stages"]["rtl"]["mismatches"] == 0
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
