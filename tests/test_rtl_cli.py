"""`lenet-fpga verilog`: the generated design is valid Verilog that Verilator lints without errors."""

import json
import subprocess

import pytest

from lenet_fpga.cli import main
from lenet_fpga.model.errors import InputError
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
    ({"images": "shape"}, "[N,28,28]"),
    ({"pictures": "ok"}, "no 'images'"),
])
def test_sim_bad_image_file_is_a_clean_error(tmp_path, capsys, arrays, message):
    import numpy as np

    made = {"float": np.zeros((2, 28, 28), np.float32), "shape": np.zeros((2, 32, 32), np.uint8),
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
