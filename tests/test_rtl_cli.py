"""`lenet-fpga verilog`: the generated design is valid Verilog that Verilator lints without errors."""

import json
import subprocess

import numpy as np
import pytest

from lenet_fpga.cli import main
from lenet_fpga.model import arith, weights
from lenet_fpga.model.errors import InputError
from lenet_fpga.model.network import Network
from lenet_fpga.sim import runner


def test_verilog_writes_design_and_layer_report(tmp_path, capsys):
    out = tmp_path / "lenet5.v"
    assert main(["verilog", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    text = out.read_text()
    assert "module lenet5(" in text
    layers = {row["layer"]: row for row in report["layers"]}
    assert [name for name in layers if not name.startswith(("quantize", "conv1.", "conv2."))] == \
        ["conv1", "conv2", "fc1", "fc2", "fc3"]
    # fc1's weights alone: 120 rows of 13 words of 20 codes of 8 bits
    assert layers["fc1"]["memory_bits"] >= 120 * 13 * 20 * 8
    assert layers["conv1"]["multipliers"] == 25 and layers["fc1"]["multipliers"] == 20
    assert layers["conv2"]["cycles"] >= 8 * 8 * 16 * 6


def test_verilog_lanes_change_the_design(tmp_path, capsys):
    assert main(["verilog", "-o", str(tmp_path / "a.v"), "--lanes", "8", "--json"]) == 0
    fc1 = {row["layer"]: row for row in json.loads(capsys.readouterr().out)["layers"]}["fc1"]
    assert fc1["multipliers"] == 8 and fc1["cycles"] >= 120 * 32


def test_verilog_bad_lanes_is_a_clean_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["verilog", "-o", str(tmp_path / "a.v"), "--lanes", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "lanes" in err and "Traceback" not in err
    assert not (tmp_path / "a.v").exists()


def test_generated_verilog_passes_verilator_lint(tmp_path):
    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))
    out = tmp_path / "lenet5.v"
    assert main(["verilog", "-o", str(out)]) == 0
    lint = subprocess.run(["verilator", "--lint-only", "-Wno-fatal", "--top-module", "lenet5", str(out)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stderr[-3000:]
    assert "%Error" not in lint.stderr


def test_sim_json_reports_every_image(tmp_path, capsys, simulator, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sim", "--simulator", simulator, "--n", "2", "--json", "--waves"]) == 0
    result = json.loads(capsys.readouterr().out)
    total = result["total"]
    assert total["images"] == 2 and total["mismatches"] == 0
    assert 5_000 < total["cycles_per_image"] <= 14_200
    for entry in result["images"]:
        assert entry["match"] and entry["rtl_logits"] == entry["golden_logits"]
        assert entry["rtl_class"] == entry["golden_class"] == entry["label"]
        assert len(entry["rtl_logits"]) == 10 and entry["cycles"] > 0
    assert (tmp_path / total["waves"]).stat().st_size > 10_000


def test_sim_own_image_file(tmp_path, capsys, simulator):
    import numpy as np

    images = np.zeros((1, 28, 28), np.uint8)
    images[0, 10:18, 12:16] = 255
    np.savez(tmp_path / "imgs.npz", images=images)
    assert main(["sim", "--simulator", simulator, "--images", str(tmp_path / "imgs.npz"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total"]["mismatches"] == 0 and "label" not in result["images"][0]


@pytest.mark.parametrize("arrays, message", [
    ({"images": "float"}, "uint8"),
    ({"images": "shape"}, "[N,S,S]"),
    ({"images": "large"}, "the images are 32x32; the network takes 28x28"),
    ({"pictures": "ok"}, "no 'images'"),
])
def test_sim_bad_image_file_is_a_clean_error(tmp_path, capsys, arrays, message):
    import numpy as np

    made = {"float": np.zeros((2, 28, 28), np.float32), "shape": np.zeros((2, 28, 27), np.uint8),
            "large": np.zeros((2, 32, 32), np.uint8),
            "ok": np.zeros((2, 28, 28), np.uint8)}
    np.savez(tmp_path / "bad.npz", **{k: made[v] for k, v in arrays.items()})
    assert main(["sim", "--images", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lenet-fpga sim: error:") and message in err and "Traceback" not in err


def test_sim_more_images_than_the_file_has(capsys):
    assert main(["sim", "--n", "41"]) == 2
    assert "41" in capsys.readouterr().err


def test_digits_figure_writes_a_png(tmp_path):
    import numpy as np

    from lenet_fpga.model import images
    from lenet_fpga.sim.plots import digits_figure

    samples = images.load_image_set().head(12)
    rtl = samples.labels.copy()
    rtl[3] = (rtl[3] + 1) % 10  # a wrong class and a non-bit-exact image must both draw
    matches = np.ones(12, bool)
    matches[5] = False
    path = digits_figure(samples.images, samples.labels, rtl, matches, tmp_path / "d.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_shard_bounds():
    from lenet_fpga.sim.network import MAX_CHUNK, shard_bounds

    assert shard_bounds(4, 2) == [(0, 2), (2, 4)]
    assert shard_bounds(3, 2) == [(0, 2), (2, 3)]
    assert shard_bounds(40, 1) == [(0, 40)]
    assert shard_bounds(1, 4) == [(0, 1)]
    tenk = shard_bounds(10_000, 2)
    assert len(tenk) % 2 == 0 and max(b - a for a, b in tenk) <= MAX_CHUNK
    assert [a for a, _ in tenk[1:]] == [b for _, b in tenk[:-1]] and tenk[-1][1] == 10_000
    assert shard_bounds(10, 3, chunk=4) == [(0, 4), (4, 8), (8, 10)]


@pytest.mark.slow  # CI: the shard bounds above and one-job runs; two simulators at once is slow
def test_sim_jobs_2_equals_jobs_1_and_builds_once(tmp_path, capsys, simulator, monkeypatch):
    """Two simulator processes at once on a fresh build folder: one build, the same answers."""
    import threading

    monkeypatch.setenv("LENET_FPGA_BUILD", str(tmp_path / "sim"))
    builds, running, most = [], [0], [0]
    lock = threading.Lock()
    real_build, real_test = runner._build, None

    def counting_build(*args, **kwargs):
        builds.append(args[4])  # the build folder
        return real_build(*args, **kwargs)

    from cocotb_tools import runner as cocotb_runner

    real_test = cocotb_runner.Runner.test

    def overlapping_test(self, *args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return real_test(self, *args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(runner, "_build", counting_build)
    monkeypatch.setattr(cocotb_runner.Runner, "test", overlapping_test)
    results = {}
    for jobs in (2, 1):
        assert main(["sim", "--simulator", simulator, "--n", "4", "--jobs", str(jobs), "--json"]) == 0
        results[jobs] = json.loads(capsys.readouterr().out)
    assert len(builds) == 1, builds  # the second job waited for the first one's build
    assert most[0] == 2  # the two shards did run at the same time
    assert results[2]["images"] == results[1]["images"]
    # Back to back, sharded: the same answers; the first image of each shard had the pipeline
    # to itself, the second waited behind it.
    assert main(["sim", "--simulator", simulator, "--n", "4", "--jobs", "2", "--stream", "--json"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert len(builds) == 1  # the same design: the same build
    strip = [{k: v for k, v in e.items() if k != "cycles"} for e in results[1]["images"]]
    assert [{k: v for k, v in e.items() if k != "cycles"} for e in streamed["images"]] == strip
    cycles = [e["cycles"] for e in streamed["images"]]
    alone = results[1]["images"][0]["cycles"]
    assert cycles[0] == cycles[2] == alone and cycles[1] == cycles[3] > alone
    assert [e["index"] for e in results[2]["images"]] == [0, 1, 2, 3]
    assert results[2]["total"]["mismatches"] == 0 and results[2]["total"]["jobs"] == 2
    leftovers = [p.name for p in (tmp_path / "sim").glob("*/*") if p.name.startswith(("tb-", "results-"))]
    assert not leftovers


def test_sim_mnist_first_images(capsys, simulator, mnist_dir):
    assert main(["sim", "--simulator", simulator, "--mnist", "--data", str(mnist_dir), "--n", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total"]["images"] == 2 and result["total"]["mismatches"] == 0
    assert [e["label"] for e in result["images"]] == [7, 2]  # the MNIST test set starts 7, 2, 1, 0


@pytest.mark.parametrize("argv, message", [
    (["--mnist", "--images", "x.npz"], "give one"),
    (["--waves", "--jobs", "2"], "--jobs 1"),
    (["--mnist", "--data", "/nonexistent"], "not found"),
])
def test_sim_bad_option_mixes_are_clean_errors(capsys, argv, message):
    assert main(["sim", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lenet-fpga sim: error:") and message in err and "Traceback" not in err


@pytest.mark.slow
def test_sim_whole_mnist_test_set_in_verilator_under_ten_minutes(capsys, mnist_dir):
    """The issue's target: the 10,000 test images, bit-exact, in under 10 minutes on 2 cores."""
    import time

    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))
    started = time.monotonic()
    assert main(["sim", "--mnist", "--data", str(mnist_dir), "--jobs", "2", "--json"]) == 0
    seconds = time.monotonic() - started
    total = json.loads(capsys.readouterr().out)["total"]
    assert total["images"] == 10_000 and total["mismatches"] == 0
    assert total["rtl_accuracy"] > 0.98
    assert seconds < 600, f"{seconds:.0f} s"


# Every shipped network on the 10,000 test images in the design it was made for: the RTL's
# logits equal the golden model's on every image, and its accuracy is the manifest's.
WHOLE_TEST_SET = [
    ("lenet5_pruned.npz", ["--preset", "baseline"]),
    ("lenet5_lowbit.npz", ["--preset", "baseline"]),
    ("lenet5_pow2.npz", ["--preset", "baseline"]),
    ("lenet5_small.npz", ["--preset", "baseline"]),
    ("lenet5_pruned_pow2.npz", ["--preset", "fast"]),  # the ECP5's fastest (issue 16)
    ("lenet5_compact.npz", ["--design", "compact"]),  # the iCEBreaker's (about 30 minutes)
    ("lenet5_40kbit.npz", ["--preset", "baseline"]),  # 99.0 % in 40 kbit of weight codes (issue 26)
    ("lenet5_act4.npz", ["--preset", "baseline"]),  # 4-bit activations in every hidden layer (issue 26)
    ("lenet5_act4.npz", ["--design", "compact"]),
    ("lenet5_act4_pow2.npz", ["--preset", "fast"]),  # and power-of-two weights: its ECP5 fast row
    ("lenet5_act4_pow2.npz", ["--design", "compact"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, design", WHOLE_TEST_SET, ids=[f"{name}-{design[-1]}" for name, design in WHOLE_TEST_SET])
def test_shipped_network_on_the_whole_test_set(name, design, capsys, mnist_dir):
    from lenet_fpga.model import weights

    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))
    path = weights.ASSETS / name
    assert main(["sim", "--mnist", "--data", str(mnist_dir), "--weights", str(path), *design,
                 "--jobs", "2", "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert total["images"] == 10_000 and total["mismatches"] == 0
    assert total["rtl_accuracy"] == pytest.approx(weights.load(path).manifest["accuracy"]["fixed"], abs=1e-9)


def test_sim_compact_design_from_the_command_line(capsys, simulator):
    """The UP5K's compact design runs from the CLI: the dense network's weights are loaded from
    the harness's ROM first (they do not fit its block RAM), then the image; a compressed
    network's are in the design. Bit-exact, with the cycles its own cycle model predicts."""
    from lenet_fpga.hdl import accelerator
    from lenet_fpga.hdl.compact import CompactConfig
    from lenet_fpga.model import weights

    assert main(["sim", "--simulator", simulator, "--design", "compact", "--lanes", "8", "--n", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total"]["mismatches"] == 0 and result["total"]["design"] == "compact design, 8 lanes, weights in SPRAM"
    ws = weights.load()
    assert result["images"][0]["cycles"] == accelerator.cycles_per_image(ws, CompactConfig(ws.arithmetic))
    # A compressed network whose codes fit the UP5K's block RAM: in the bitstream by default.
    small = weights.ASSETS / "lenet5_pruned_pow2.npz"
    assert main(["sim", "--simulator", simulator, "--design", "compact", "--weights", str(small), "--n", "1",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total"]["mismatches"] == 0
    assert result["total"]["design"] == "compact design, 8 lanes, weights in the bitstream"
    ws = weights.load(small)
    assert result["images"][0]["cycles"] == accelerator.cycles_per_image(
        ws, CompactConfig(ws.arithmetic, weights_in_bitstream=True))


@pytest.mark.parametrize("argv, message", [
    (["--design", "compact", "--preset", "fast"], "--preset fast sizes the streaming design"),
    (["--design", "compact", "--lanes", "4,4"], "one array of lanes"),
    (["--filters", "4"], "conv1 has 6 filters: 4 at once does not divide them"),
    (["--lanes", "5,5"], "lanes 5,5: 2 values for the 3 linear layers"),
    (["--soft-multipliers", "fc9"], "soft multipliers for fc9"),
])
def test_design_options_that_do_not_fit_are_clean_errors(tmp_path, capsys, argv, message):
    assert main(["verilog", "-o", str(tmp_path / "a.v"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lenet-fpga verilog: error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "a.v").exists()


@pytest.mark.verilator
def test_waveform_is_readable_and_the_gtkw_layout_names_real_signals(tmp_path, capsys, sim_build, monkeypatch):
    """Anonymous wires ($123) stay out of the waveform, and every signal of the GTKWave layout
    written beside it is one the waveform has. A small network of every block kind (two convs,
    two hidden layers): its traced Verilator model builds in a fraction of LeNet-5's minute."""
    from lenet_fpga.sim.waves import vcd_signals

    monkeypatch.setenv("LENET_FPGA_BUILD", str(sim_build))
    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))
    net = Network.parse("2,3:8,8")
    rng = np.random.default_rng(0)
    params = {name: rng.integers(-40, 41, shape).astype(np.int8) for name, shape in net.parameter_shapes.items()}
    small = weights.save(tmp_path / "small.npz", params, weights.make_manifest(arith.Arithmetic(), net))
    vcd = tmp_path / "w.vcd"
    assert main(["sim", "--simulator", "verilator", "--weights", str(small), "--n", "1", "--waves",
                 "--waves-file", str(vcd), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["total"]
    signals = vcd_signals(vcd)
    # Anonymous: a wire named only by a number ($123, port$3177$0); a named signal Amaranth had
    # to tell apart from a namesake (o__payload$61) is readable.
    anonymous = [name for name in signals if name.split(".")[-1].startswith(("$", "port$", "\\$"))]
    assert len(signals) > 500 and len(anonymous) == 0, anonymous[:10]
    layout = (tmp_path / "w.gtkw").read_text().splitlines()
    assert summary["gtkw"] == str(tmp_path / "w.gtkw") and layout[0] == '[dumpfile] "w.vcd"'
    listed = [line for line in layout if line and line[0] not in "@-["]
    missing = [name for name in listed if name not in signals]
    assert len(listed) > 50 and not missing, missing
    groups = [line[1:] for line in layout if line.startswith("-")][::2]
    assert groups[:3] == ["interface", "quantize", "conv1.gather"] and "fc3" in groups and "argmax" in groups


def test_verilog_table_totals_say_what_each_design_has(tmp_path, capsys):
    """The compact design's layers share one array: its total is the array's 8 multipliers and
    its cycle model's image; the streaming design's total is every engine's multipliers."""
    assert main(["verilog", "--design", "compact", "-o", str(tmp_path / "c.v")]) == 0
    compact = capsys.readouterr().out
    assert compact.splitlines()[-2].split()[2:] == ["8", "379,008", "40,500"]
    assert "40,500 an image" in compact and "overlap" not in compact
    assert main(["verilog", "-o", str(tmp_path / "s.v")]) == 0
    streaming = capsys.readouterr().out
    assert [line for line in streaming.splitlines() if line.startswith("total")][0].split()[2] == "110"
    assert "The engines overlap" in streaming


AXI_PORTS = ("s_axis_tdata", "s_axis_tvalid", "s_axis_tready", "s_axis_tlast", "m_axis_tdata", "m_axis_tvalid",
             "m_axis_tready", "m_axis_tlast", "s_axis_weights_tdata", "s_axis_weights_tvalid",
             "s_axis_weights_tready", "s_axis_weights_tlast", "tlast_error", "tlast_errors")


def test_verilog_interface_axis_writes_the_axi_stream_module(tmp_path, capsys):
    """--interface axis: module lenet5_axis with the AXI4-Stream names and no native handshake."""
    from lenet_fpga.sim import clocked

    out = tmp_path / "axis.v"
    assert main(["verilog", "-o", str(out), "--interface", "axis", "--axis-depth", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["toplevel"] == "lenet5_axis" and report["interface"] == "axis"
    ports = {decl.split()[-1]: (direction, decl) for direction, decl in clocked.ports(out.read_text(), "lenet5_axis")}
    assert set(ports) == {"clk", "rst", *AXI_PORTS}
    assert ports["s_axis_tdata"] == ("input", "[7:0] s_axis_tdata")
    assert ports["m_axis_tdata"] == ("output", "[31:0] m_axis_tdata")
    assert ports["s_axis_tready"][0] == ports["m_axis_tvalid"][0] == "output"


def test_verilog_axis_depth_needs_the_axis_interface(tmp_path, capsys):
    assert main(["verilog", "-o", str(tmp_path / "a.v"), "--axis-depth", "3"]) == 2
    assert "--interface axis" in capsys.readouterr().err
