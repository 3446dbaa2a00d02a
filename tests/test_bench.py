"""`lenet-fpga bench`: the multiply floors, the streamed interval and latency, the table, JSON and plots."""

import json
from pathlib import Path

import numpy as np
import pytest

from lenet_fpga.boards import pnr
from lenet_fpga.cli import main
from lenet_fpga.hdl.lenet import PRESETS, Preset, StreamingConfig
from lenet_fpga.model import arith, weights
from lenet_fpga.model.network import LENET5
from lenet_fpga.model.errors import InputError
from lenet_fpga.hdl.report import LayerRow
from lenet_fpga.sim import benchmark
from lenet_fpga.sim.network import simulate

PNG = b"\x89PNG\r\n\x1a\n"


def row(layer: str, macs: int, multipliers: int) -> LayerRow:
    return LayerRow(layer, macs=macs, multipliers=multipliers, dsp=0, weight_bits=8, memory_bits=0, memory="bram",
                    cycles=0)


def test_multiply_floors_of_a_made_up_layer_list():
    rows = [
        row("a", macs=100, multipliers=7),   # ceil(100 / 7) = 15
        row("a.pool", macs=0, multipliers=0),  # no MACs: not a layer of the floor
        row("b", macs=30, multipliers=30),   # exactly 1
        row("c", macs=1, multipliers=4),     # more multipliers than MACs: still 1
        row("d", macs=64, multipliers=8),    # 8
    ]
    floors = benchmark.multiply_floors(rows, 784)
    assert floors["layers"] == {"a": 15, "b": 1, "c": 1, "d": 8}
    assert floors["latency"] == 25 and floors["interval"] == 15
    assert floors["pixel_bound"] == 784


def test_multiply_floors_reject_a_layer_without_multipliers():
    with pytest.raises(ValueError, match="no multipliers"):
        benchmark.multiply_floors([row("a", macs=10, multipliers=0)], 784)
    with pytest.raises(ValueError, match="no layer"):
        benchmark.multiply_floors([row("q", macs=0, multipliers=0)], 784)


def test_select_configs():
    presets = {"one": Preset("one", "", lambda network, a, codes: StreamingConfig(a)),
               "two": Preset("two", "", lambda network, a, codes: StreamingConfig(a, linear_lanes=4))}
    a = arith.Arithmetic("floor", "wrap")
    selected = benchmark.select_configs(None, LENET5, a, presets)
    assert list(selected) == ["one", "two"] and selected["two"] == StreamingConfig(a, linear_lanes=4)
    assert list(benchmark.select_configs("two, one,two", LENET5, a, presets)) == ["two", "one"]
    with pytest.raises(InputError, match=r"unknown preset 'three'; known presets: one, two"):
        benchmark.select_configs("one,three", LENET5, a, presets)
    with pytest.raises(InputError, match="empty name"):
        benchmark.select_configs("one,", LENET5, a, presets)


@pytest.mark.parametrize("argv, message", [
    (["--configs", "no-such-preset"], "baseline"),  # the error lists the names there are
    (["--rtl-images", "1"], "at least 2"),
    (["--pnr-minutes", "5"], "give --pnr"),
])
def test_bench_bad_input_is_a_clean_error(capsys, argv, message):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lenet-fpga bench: error:") and message in err and "Traceback" not in err


def test_place_and_route_stops_at_its_time_limit(tmp_path, monkeypatch):
    """A tool that runs past the limit is stopped, and the run says so instead of hanging."""
    import time

    hanging = tmp_path / "hanging-tool"
    hanging.write_text("#!/bin/sh\nexec sleep 60\n")
    hanging.chmod(0o755)
    for variable in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"):
        monkeypatch.setenv(variable, str(hanging))
    ws = weights.load()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"synthesize stopped: not done within the 0.02-minute limit"):
        pnr.place_and_route(ws, StreamingConfig(ws.arithmetic), tmp_path / "pnr", time_limit_s=1.2)
    assert time.monotonic() - start < 30
    assert not (tmp_path / "pnr" / f"{pnr.TOP_NAME}.report.json").exists()


def test_bench_images_without_mnist(tmp_path):
    images, source, test_set = benchmark.bench_images(3, tmp_path, LENET5)
    assert images.shape == (3, 28, 28) and source == "shipped digits" and test_set is None
    with pytest.raises(InputError, match="only the 40 shipped digits"):
        benchmark.bench_images(41, tmp_path, LENET5)


def test_resources_figure_draws_made_up_results(tmp_path):
    from lenet_fpga.sim.plots import resources_figure

    results = [{"name": "a", "network": "n", "resources": {"luts": 9000, "dsp": 30}, "images_per_second": 4000.0},
               {"name": "b", "network": "n", "resources": {"luts": 30000, "dsp": 150}, "images_per_second": 60000.0}]
    path = resources_figure(results, tmp_path / "r.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000


def _made_up_row(weights_file, name, luts, ips, accuracy=0.991):
    return {"name": name, "weights": weights_file, "network": "4,8:120,84", "macs": 135_080, "weight_bits": 82_440,
            "multipliers": 238, "dsp_multipliers": 0, "logic_multipliers": 238, "latency_cycles": 2925,
            "interval_cycles": 785.0, "interval_floor": 720, "pixel_bound": 784, "fmax_mhz": ips * 785 / 1e6,
            "resources": {"luts": luts, "flip_flops": 1, "block_ram": 1, "dsp": 0}, "images_per_second": ips,
            "accuracy": accuracy, "rtl": {"images": 8, "mismatches": 0}, "layers": []}


def test_bench_report_merges_saved_runs(tmp_path, capsys):
    """Rows of several bench --json files in one table and one set of plots; two networks of the
    same geometry keep their own names; a row measured again keeps the later file's figures."""
    first = {"configs": [_made_up_row("a/lenet5_compact.npz", "fast", 30_000, 80_000.0),
                         _made_up_row("a/lenet5_pruned_pow2.npz", "fast", 26_000, 90_000.0)]}
    again = {"configs": [_made_up_row("b/lenet5_pruned_pow2.npz", "fast", 26_100, 105_900.0)]}
    (tmp_path / "1.json").write_text(json.dumps(first))
    (tmp_path / "2.json").write_text(json.dumps(again))
    assert main(["bench-report", str(tmp_path / "1.json"), str(tmp_path / "2.json"), "--json",
                 "--plots", str(tmp_path / "plots")]) == 0
    rows = json.loads(capsys.readouterr().out)["configs"]
    assert [(r["weights"], r["images_per_second"]) for r in rows] == [
        ("a/lenet5_compact.npz", 80_000.0), ("b/lenet5_pruned_pow2.npz", 105_900.0)]
    assert rows[1]["source"] == str(tmp_path / "2.json")
    assert (tmp_path / "plots" / "pareto.png").read_bytes()[:8] == PNG
    assert main(["bench-report", str(tmp_path / "1.json")]) == 0
    table = capsys.readouterr().out
    assert [line.split()[:2] for line in table.splitlines()[1:3]] == [["lenet5_compact", "fast"],
                                                                     ["lenet5_pruned_pow2", "fast"]]


def test_bench_report_fills_in_the_accuracy_from_the_weights(tmp_path, capsys, mnist_dir):
    """A run that did not find the test set: bench-report --data measures the golden model's
    accuracy from each row's weights file, in the row's arithmetic."""
    from lenet_fpga.model.weights import ASSETS

    path = ASSETS / "lenet5_pruned_pow2.npz"
    row = _made_up_row(str(path), "fast", 26_000, 90_000.0, accuracy=None)
    row["arithmetic"] = weights.load(path).arithmetic.describe()
    wrap = {**row, "name": "baseline", "arithmetic": arith.Arithmetic("half-up", "wrap").describe()}
    (tmp_path / "run.json").write_text(json.dumps({"configs": [row, wrap]}))
    assert main(["bench-report", str(tmp_path / "run.json"), "--data", str(mnist_dir), "--json"]) == 0
    fast, baseline = json.loads(capsys.readouterr().out)["configs"]
    assert fast["accuracy"] == weights.load(path).manifest["accuracy"]["fixed"]
    assert baseline["accuracy"] < fast["accuracy"]  # the same codes run with wrap-around


REPO_ROOT = Path(__file__).resolve().parents[1]


def test_bench_report_finds_the_weights_from_any_folder(tmp_path, monkeypatch, capsys, mnist_dir):
    """The runs in docs/bench were saved at the repository root with paths like
    ``model/assets/lenet5_pow2.npz``, some without their accuracy: run from elsewhere, every row
    still gets one (a shipped network is found among the package's assets), and a row's accuracy
    in its network's own arithmetic is the one the weights' manifest records."""
    files = sorted((REPO_ROOT / "docs" / "bench").glob("*.json"))
    assert files and any(r["accuracy"] is None for f in files for r in json.loads(f.read_text())["configs"])
    monkeypatch.chdir(tmp_path)
    assert main(["bench-report", *map(str, files), "--data", str(mnist_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["configs"]
    assert rows and [r for r in rows if r["accuracy"] is None] == []
    for r in rows:
        ws = weights.load(weights.ASSETS / Path(r["weights"]).name)
        if r["arithmetic"] == ws.arithmetic.describe():
            assert r["accuracy"] == ws.manifest["accuracy"]["fixed"], r["weights"]


def test_bench_report_finds_weights_beside_the_json(tmp_path, monkeypatch, capsys, mnist_dir):
    """A path saved relative to the run's own folder (runs and networks moved together)."""
    (tmp_path / "runs" / "nets").mkdir(parents=True)
    for suffix in (".npz", ".json"):
        source = weights.ASSETS / f"lenet5_pruned_pow2{suffix}"
        (tmp_path / "runs" / "nets" / f"mine{suffix}").write_bytes(source.read_bytes())
    ws = weights.load(tmp_path / "runs" / "nets" / "mine.npz")
    row = {**_made_up_row("nets/mine.npz", "fast", 26_000, 90_000.0, accuracy=None),
           "arithmetic": ws.arithmetic.describe()}
    (tmp_path / "runs" / "run.json").write_text(json.dumps({"configs": [row]}))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["bench-report", "../runs/run.json", "--data", str(mnist_dir), "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)["configs"]
    assert r["accuracy"] == ws.manifest["accuracy"]["fixed"]


@pytest.mark.parametrize("content, message", [
    (None, "no such file"), ("{", "not a bench --json output"), ('{"configs": 3}', "no 'configs' list"),
    ('{"configs": [{"name": "fast"}]}', "row 1 lacks accuracy"),
])
def test_bench_report_bad_files_are_clean_errors(tmp_path, capsys, content, message):
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    assert main(["bench-report", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_pareto_front_worked_out_by_hand():
    """(throughput, accuracy), both higher-is-better: a (1, 99) and c (5, 98) and d (9, 90) are
    not beaten; b (2, 97) is beaten by c, e (5, 97.5) by c."""
    from lenet_fpga.sim.plots import pareto_front

    points = [(1, 99.0), (2, 97.0), (5, 98.0), (9, 90.0), (5, 97.5)]
    assert pareto_front(points) == [0, 2, 3]
    # LUTs lower-is-better: (LUT, accuracy) a (100, 90) b (200, 95) c (300, 94): c is beaten by b.
    assert pareto_front([(100, 90.0), (200, 95.0), (300, 94.0)], higher_x=False) == [0, 1]
    assert pareto_front([(1, 1.0), (1, 1.0)]) == [0, 1]  # ties are both kept


def test_pareto_figure_draws_made_up_results(tmp_path):
    from lenet_fpga.sim.plots import pareto_figure

    results = [{"name": "fast", "network": net, "accuracy": acc, "interval_cycles": interval,
                "resources": {"luts": luts}, "images_per_second": ips}
               for net, acc, interval, luts, ips in [("6,16:120,84", 0.993, 809, 60000, 71000.0),
                                                     ("4,10:60,40", 0.991, 790, 20000, 110000.0),
                                                     ("6,16:120,84", 0.993, 6144, 10500, 16500.0)]]
    path = pareto_figure(results, tmp_path / "p.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000


@pytest.fixture
def in_tmp_with_shared_build(tmp_path, monkeypatch, sim_build):
    """Run in a scratch folder but keep the cached simulator builds."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LENET_FPGA_BUILD", str(sim_build))
    return tmp_path


KEYS = {"name", "network", "weights", "macs", "weight_bits", "arithmetic", "multipliers", "dsp_multipliers",
        "logic_multipliers", "latency_cycles", "interval_cycles", "serial_floor", "interval_floor", "pixel_bound",
        "interval_ratio", "fmax_mhz", "timing_met", "resources", "images_per_second", "accuracy", "rtl", "layers"}


def test_bench_baseline_table_json_plots(in_tmp_with_shared_build, capsys, simulator, sim_build):
    tmp = in_tmp_with_shared_build
    assert main(["bench", "--configs", "baseline", "--rtl-images", "2", "--simulator", simulator,
                 "--json", "--plots", "plots"]) == 0
    doc = json.loads(capsys.readouterr().out)
    row = next(line for line in benchmark.format_table(doc["configs"], 784).splitlines()
               if line.split()[:2] == ["lenet5_saturate", "baseline"])
    assert row.rstrip().endswith("2/2")  # both streamed images bit-exact
    (r,) = doc["configs"]
    assert KEYS <= set(r) and r["name"] == "baseline"
    assert r["fmax_mhz"] is None and r["resources"] is None and r["images_per_second"] is None  # no --pnr
    assert r["rtl"]["images"] == 2 and r["rtl"]["mismatches"] == 0

    # The floors follow from the layer report in the JSON.
    engines = [row for row in r["layers"] if row["macs"]]
    assert r["multipliers"] == sum(row["multipliers"] for row in r["layers"]) > 0
    floors = [-(-row["macs"] // row["multipliers"]) for row in engines]
    assert (r["serial_floor"], r["interval_floor"]) == (sum(floors), max(floors))
    # LeNet-5 in 8-bit codes on the baseline's 110 DSP multipliers: 281,640 MACs, 44,190 x 8 bits.
    assert (r["macs"], r["weight_bits"], r["dsp_multipliers"], r["logic_multipliers"]) == (281_640, 353_520, 110, 0)
    assert r["interval_ratio"] == pytest.approx(r["interval_cycles"] / r["interval_floor"])

    # The interval: no faster than the busiest layer's multipliers or the pixel input allow, and
    # (a pipeline) faster than one image after another.
    latency, interval = r["latency_cycles"], r["interval_cycles"]
    assert max(r["interval_floor"], r["pixel_bound"]) <= interval < latency
    # ... and about what the engines' own models say of the busiest engine.
    busiest = max(row["cycles"] for row in engines)
    assert 0.75 * interval <= busiest <= 1.25 * interval
    # The testbench's clock count agrees with the accelerator's own cycle counter.
    rtl = r["rtl"]
    assert [d - t + 1 for d, t in zip(rtl["done_at"], rtl["taken"])] == rtl["cycles"]
    assert rtl["done_at"][1] - rtl["done_at"][0] == interval
    assert rtl["taken"][1] - rtl["taken"][0] >= r["pixel_bound"]  # the first image's pixels go in first
    # The latency is what one image alone takes in the one-at-a-time testbench.
    ws = weights.load()
    from lenet_fpga.sim.benchmark import bench_images

    images, _, _ = bench_images(1, None, LENET5)
    alone = simulate(ws, images, StreamingConfig(ws.arithmetic), simulator=simulator, build_root=sim_build)
    assert int(alone.cycles[0]) == latency

    assert (tmp / "plots" / "cycles_per_layer.png").read_bytes()[:8] == PNG
    assert not (tmp / "plots" / "resources.png").exists()  # needs --pnr
    # The Pareto plot needs the accuracy on MNIST's test split, read where bench reads it.
    from lenet_fpga.model import mnist

    data = mnist.default_data_dir()
    missing = [name for name in mnist.SPLITS["test"][:2] if not (data / name).is_file()]
    if missing:
        pytest.skip(f"no pareto.png without MNIST: {', '.join(missing)} not found in {data}")
    assert (tmp / "plots" / "pareto.png").read_bytes()[:8] == PNG


@pytest.mark.slow
def test_bench_place_and_route(in_tmp_with_shared_build, capsys):
    """Out-of-context synthesis and place-and-route of the baseline for the ECP5-85F (minutes)."""
    from lenet_fpga.boards.platforms import toolchain_env

    try:
        toolchain_env("ecp5")
    except InputError as e:
        pytest.skip(str(e))
    tmp = in_tmp_with_shared_build
    assert main(["bench", "--configs", "baseline", "--rtl-images", "2", "--pnr", "--json",
                 "--plots", "plots"]) == 0
    (r,) = json.loads(capsys.readouterr().out)["configs"]
    assert r["fmax_mhz"] > 10
    assert r["images_per_second"] == pytest.approx(r["fmax_mhz"] * 1e6 / r["interval_cycles"])
    res = r["resources"]
    assert res["dsp"] >= 1 and res["block_ram"] >= 1 and res["luts"] > 1000 and res["flip_flops"] > 1000
    assert (tmp / "plots" / "resources.png").read_bytes()[:8] == PNG


def test_presets_all_have_engines_with_multipliers():
    """Every preset the benchmark will meet gives a layer report it can compute floors from."""
    from lenet_fpga.hdl.accelerator import layer_report

    ws = weights.load()
    for name, preset in PRESETS.items():
        floors = benchmark.multiply_floors(layer_report(ws, preset.resolve(ws.network)), 784)
        assert floors["interval"] <= floors["latency"], name
        assert set(floors["layers"]) == {"conv1", "conv2", "fc1", "fc2", "fc3"}, name


def test_stream_interval_uses_the_steady_state():
    from lenet_fpga.sim.network import StreamRun

    def run(done_at):
        n = len(done_at)
        z = np.zeros(n, np.int64)
        return StreamRun(z, z, z, np.array([done_at[0]] + [1] * (n - 1)), z, np.array(done_at), np.ones(n, bool), 0.0)

    assert run([100, 190]).interval == 90
    # The first gaps (pipeline filling) are left out: gaps 50, 50, 80, 80 -> the last two.
    assert run([100, 150, 200, 280, 360]).interval == 80
    with pytest.raises(ValueError):
        _ = run([100]).interval
