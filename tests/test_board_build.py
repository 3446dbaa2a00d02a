"""Board flow without place-and-route: report parsing, the fit check, and the
iCEBreaker flow up to the tools (design, Yosys script), and one real build: the iCEBreaker's
(about a minute). The ULX3S build (several minutes) is a slow test (`make test-slow`)."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from lenet_fpga.boards import build, platforms
from lenet_fpga.boards.configure import design_config
from lenet_fpga.boards.top import BoardTop
from lenet_fpga.cli import main
from lenet_fpga.hdl import accelerator
from lenet_fpga.hdl.compact import CompactAccelerator, CompactConfig
from lenet_fpga.hdl.designs import GeneratorOptions
from lenet_fpga.hdl.lenet import StreamingConfig
from lenet_fpga.model import arith, weights
from lenet_fpga.model.errors import InputError
from lenet_fpga.model.network import Network

ECP5_REPORT = {
    "utilization": {
        "TRELLIS_COMB": {"used": 7513, "available": 83640},
        "TRELLIS_FF": {"used": 5583, "available": 83640},
        "DP16KD": {"used": 29, "available": 208},
        "MULT18X18D": {"used": 110, "available": 156},
        "TRELLIS_IO": {"used": 2, "available": 365},
    },
    "fmax": {"$glbnet$clk": {"achieved": 36.66, "constraint": 25.0}},
}


def test_parse_ecp5_report():
    resources, fmax, met = build.parse_nextpnr_report(ECP5_REPORT, "ecp5", 25e6)
    assert resources == {
        "luts": {"used": 7513, "available": 83640}, "flip_flops": {"used": 5583, "available": 83640},
        "block_ram": {"used": 29, "available": 208}, "dsp": {"used": 110, "available": 156},
    }
    assert fmax == pytest.approx(36.66) and met


def test_parse_report_timing_failure_and_worst_clock():
    report = {"utilization": {}, "fmax": {"a": {"achieved": 80.0}, "b": {"achieved": 11.5}}}
    _, fmax, met = build.parse_nextpnr_report(report, "ice40", 12e6)
    assert fmax == 11.5 and not met
    assert build.parse_nextpnr_report({}, "ecp5", 25e6) == ({}, None, False)


def test_report_table_says_whether_timing_is_met():
    resources, fmax, met = build.parse_nextpnr_report(ECP5_REPORT, "ecp5", 25e6)
    table = build.BuildReport("ulx3s-85f", "x.bit", resources, fmax, 25, met, 1.0).table()
    assert "36.7 MHz" in table and "timing met" in table and "71 %" in table  # 110 of 156 DSPs


def test_full_network_does_not_fit_the_icebreaker_block_ram():
    ws = weights.load()
    with pytest.raises(InputError, match="does not fit the icebreaker.*kbit"):
        build.check_fits(platforms.board("icebreaker"), ws, StreamingConfig())
    build.check_fits(platforms.board("ulx3s-85f"), ws, StreamingConfig())  # fits: no error


def test_compact_design_fits_the_icebreaker_and_checks_spram():
    ws = weights.load()
    ice = platforms.board("icebreaker")
    build.check_fits(ice, ws, CompactConfig())  # weights in SPRAM, feature maps in block RAM
    small = platforms.Board(**{**ice.__dict__, "spram_bits": 256 * 1024})
    with pytest.raises(InputError, match="weights need 355 kbit of SPRAM"):
        build.check_fits(small, ws, CompactConfig())
    # Weights in the bitstream: the block RAM must hold them (the dense network's do not).
    with pytest.raises(InputError, match="does not fit the icebreaker: its memories need 353 kbit"):
        build.check_fits(ice, ws, CompactConfig(weights_in_bitstream=True))
    build.check_fits(ice, weights.load(weights.ASSETS / "lenet5_pruned_pow2.npz"), CompactConfig(weights_in_bitstream=True))


def _config(target, ws, **options):
    """The configuration ``build --board`` makes from these generator options."""
    if isinstance(options.get("lanes"), int):
        options["lanes"] = (options["lanes"],)
    return design_config(ws, GeneratorOptions(**options), target)


def test_each_board_builds_its_accelerator():
    ws = weights.load(weights.ASSETS / "lenet5_wrap.npz")
    ice, ulx = platforms.board("icebreaker"), platforms.board("ulx3s-85f")
    assert _config(ice, ws) == CompactConfig(ws.arithmetic, lanes=8)
    assert _config(ice, ws, lanes=5, rounding="floor").lanes == 5
    assert isinstance(_config(ulx, ws), StreamingConfig)
    top = BoardTop(ws, CompactConfig(ws.arithmetic), ice)
    assert isinstance(top.accelerator, CompactAccelerator)
    assert top.link.info.weights_id == 0  # no weights in the bitstream: INFO must not name any
    assert top.link.info.multipliers == 8 and top.link.info.design == "compact" and top.link.info.arithmetic == ws.arithmetic


@pytest.mark.parametrize("options, message", [
    (["--lanes", "2"], "the compact design with 2 lanes cannot run 6,16:120,84: 2 lanes need 22,213 weight words"),
    (["--lanes", "9"], "--lanes 9: lanes must be an integer 1..8"),
    (["--preset", "fast"], "--preset fast sizes the streaming design"),
])
def test_icebreaker_options_are_clean_errors(options, message, capsys):
    assert main(["build", "--board", "icebreaker", *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lenet-fpga build: error: {message}") and "Traceback" not in err


YOSYS_STAT = """
2.55. Printing statistics.

=== lenet5 ===

     7497 wire bits
        8   SB_MAC16
      518   SB_CARRY
       38   SB_DFF
        9   SB_DFFE
      883   SB_DFFESR
      252   SB_DFFSR
     1719   SB_LUT4

=== design hierarchy ===

       38   SB_DFF
"""

ICE40_REPORT = {
    "utilization": {
        "ICESTORM_LC": {"used": 2878, "available": 5280}, "ICESTORM_RAM": {"used": 7, "available": 30},
        "ICESTORM_DSP": {"used": 8, "available": 8}, "ICESTORM_SPRAM": {"used": 4, "available": 4},
    },
    "fmax": {"clk": {"achieved": 22.5, "constraint": 12.0}},
}


def test_parse_yosys_flip_flops():
    assert build.parse_yosys_flip_flops(YOSYS_STAT) == 38 + 9 + 883 + 252
    assert build.parse_yosys_flip_flops("no statistics here") is None


def tools_replaced(monkeypatch, report: dict, yosys_log: str | None = None):
    """Boards whose build stops where the tools would start: each writes the canned nextpnr
    ``report`` (and Yosys ``yosys_log``) instead. Returns the files each build prepared for the
    tools (by name) and the tops it was given, filled in as builds run."""
    prepared, tops = {}, []
    make_platform = platforms.Board.make_platform

    def fake_make_platform(board):
        platform = make_platform(board)

        def fake_build(top, name, build_dir, do_program=False, **overrides):
            tops.append(top)
            prepared.update(platform.prepare(top, name, **overrides).files)
            Path(build_dir, f"{name}.report.json").write_text(json.dumps(report))
            if yosys_log is not None:
                Path(build_dir, f"{name}.rpt").write_text(yosys_log)

        platform.build = fake_build
        return platform

    monkeypatch.setattr(platforms.Board, "make_platform", fake_make_platform)
    return prepared, tops


def test_icebreaker_build_flow_up_to_the_tools(tmp_path, monkeypatch, capsys):
    """``lenet-fpga build --board icebreaker`` with the tools replaced by canned reports: the
    design handed to Yosys has the four SPRAM primitives, the script maps multipliers to DSPs,
    and the report has flip-flops (from Yosys' stat), SPRAM and the images per second."""
    prepared, _ = tools_replaced(monkeypatch, ICE40_REPORT, YOSYS_STAT)
    assert main(["build", "--board", "icebreaker", "--build-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "synth_ice40 -dsp" in prepared["lenet5.ys"]
    assert prepared["lenet5.il"].count("cell \\SB_SPRAM256KA") == 4
    assert report["resources"]["flip_flops"] == {"used": 1182, "available": 5280}
    assert list(report["resources"]) == ["luts", "flip_flops", "block_ram", "dsp", "spram"]
    assert report["timing_met"] and report["fmax_mhz"] == 22.5
    assert report["cycles_per_image"] == accelerator.cycles_per_image(weights.load(None), CompactConfig())
    assert report["images_per_second"] == pytest.approx(12e6 / report["cycles_per_image"])


# What Yosys' ecppll tool chose for a 25 MHz input (input, feedback, output dividers).
ECPPLL_CHOICES = {50: (1, 2, 12), 62.5: (2, 5, 10), 66.6: (3, 8, 9), 75: (1, 3, 8), 80: (5, 16, 7),
                  85: (5, 17, 7), 100: (1, 4, 6)}


@pytest.mark.parametrize("mhz", list(ECPPLL_CHOICES))
def test_pll_dividers_are_the_ones_ecppll_picks(mhz):
    from lenet_fpga.boards.pll import VCO_HZ, ecp5_pll

    setting = ecp5_pll(25e6, mhz * 1e6)
    assert (setting.input_div, setting.feedback_div, setting.output_div) == ECPPLL_CHOICES[mhz]
    assert VCO_HZ[0] <= setting.vco_hz <= VCO_HZ[1]
    assert abs(setting.output_hz - mhz * 1e6) < 0.01 * mhz * 1e6


# What icestorm's icepll chose for the iCEBreaker's 12 MHz input (DIVR, DIVF, DIVQ, FILTER_RANGE).
ICEPLL_CHOICES = {20: (0, 52, 5, 1), 25: (0, 66, 5, 1), 30: (0, 79, 5, 1), 48: (0, 63, 4, 1)}


@pytest.mark.parametrize("mhz", list(ICEPLL_CHOICES))
def test_ice40_pll_dividers_are_the_ones_icepll_picks(mhz):
    from lenet_fpga.boards.pll import ICE40_VCO_HZ, ice40_pll

    setting = ice40_pll(12e6, mhz * 1e6)
    assert (setting.divr, setting.divf, setting.divq, setting.filter_range) == ICEPLL_CHOICES[mhz]
    assert ICE40_VCO_HZ[0] <= setting.vco_hz <= ICE40_VCO_HZ[1]
    assert abs(setting.output_hz - mhz * 1e6) < 0.01 * mhz * 1e6


def test_ice40_pll_filter_range_follows_the_phase_detector():
    from lenet_fpga.boards.pll import ICE40PLLSetting

    # 100 MHz in: DIVR 0..9 put the phase detector at 100, 50, 33.3, 25, 20, 16.7, ..., 10 MHz.
    ranges = [ICE40PLLSetting(100e6, divr, 9, 1).filter_range for divr in range(10)]
    assert ranges == [5, 4, 3, 2, 2, 1, 1, 1, 1, 1]


def test_pll_clock_options_are_clean_errors(capsys):
    assert main(["build", "--board", "icebreaker", "--clock-mhz", "12.5"]) == 2
    assert "16..275 MHz" in capsys.readouterr().err
    assert main(["build", "--board", "ulx3s-85f", "--clock-mhz", "900"]) == 2
    assert "10..400 MHz" in capsys.readouterr().err


def test_ulx3s_build_with_a_pll_up_to_the_tools(tmp_path, monkeypatch, capsys):
    """``--clock-mhz 80``: the design gets an EHXPLLL from the 25 MHz oscillator, the UART divisor
    follows the 80 MHz clock, the oscillator keeps its constraint (nextpnr derives the PLL's), and
    the report is judged against 80 MHz. The multipliers are the ECP5 form (hdl/multiplier.py)."""
    prepared, tops = tools_replaced(monkeypatch, ECP5_REPORT)
    assert main(["build", "--board", "ulx3s-85f", "--clock-mhz", "80", "--build-dir", str(tmp_path),
                 "--json"]) == 1  # the canned report's 36.7 MHz misses 80 MHz
    report = json.loads(capsys.readouterr().out)
    assert report["clock_mhz"] == 80 and not report["timing_met"]
    il = prepared["lenet5.il"]
    assert il.count("cell \\EHXPLLL") == 1
    for parameter in ("CLKI_DIV 5", "CLKFB_DIV 16", "CLKOP_DIV 7"):
        assert f"parameter \\{parameter}" in il
    assert "FREQUENCY PORT \"clk25_0__io\" 25000000" in prepared["lenet5.lpf"]
    assert "-run :check" in prepared["lenet5.ys"] and "autoname" not in prepared["lenet5.ys"]
    assert "-noabc9" in prepared["lenet5.ys"] and "check -noinit -assert" in prepared["lenet5.ys"]
    assert tops[0].divisor == round(80e6 / 115_200)
    # baseline's 110 DSP multipliers, each a MULT18X18D with its own input and output registers.
    assert il.count("cell \\MULT18X18D") == 110
    assert il.count("parameter \\REG_OUTPUT_CLK \"CLK0\"") == 110


def test_icebreaker_build_with_a_pll_up_to_the_tools(tmp_path, monkeypatch, capsys):
    """``--clock-mhz 20`` on the iCEBreaker: an SB_PLL40_PAD on the oscillator's pad at 19.875 MHz
    (icepll's choice), the UART divisor and the images/s follow that clock."""
    prepared, tops = tools_replaced(monkeypatch, ICE40_REPORT)
    assert main(["build", "--board", "icebreaker", "--clock-mhz", "20", "--build-dir", str(tmp_path),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clock_mhz"] == pytest.approx(19.875)
    assert report["images_per_second"] == pytest.approx(19.875e6 / report["cycles_per_image"])
    il = prepared["lenet5.il"]
    assert il.count("cell \\SB_PLL40_PAD") == 1
    for parameter in ("DIVR 0", "DIVF 52", "DIVQ 5", "FILTER_RANGE 1"):
        assert f"parameter \\{parameter}" in il
    assert tops[0].divisor == round(19.875e6 / 115_200)


@pytest.mark.parametrize("board_name", ["ulx3s-85f", "icebreaker"])
def test_build_seed_reaches_nextpnr_and_the_report(board_name, tmp_path, monkeypatch, capsys):
    """``--seed 7`` is on nextpnr's command line and in the report; without it nextpnr picks."""
    prepared, _ = tools_replaced(monkeypatch, ECP5_REPORT if board_name.startswith("ulx3s") else ICE40_REPORT)
    main(["build", "--board", board_name, "--seed", "7", "--build-dir", str(tmp_path / "a")])
    assert "placement seed 7" in capsys.readouterr().out
    assert re.search(r"NEXTPNR_\w+.*--seed 7", prepared["build_lenet5.sh"])
    main(["build", "--board", board_name, "--build-dir", str(tmp_path / "b"), "--json"])
    assert json.loads(capsys.readouterr().out)["seed"] is None
    assert "--seed" not in prepared["build_lenet5.sh"]


def test_unknown_board():
    with pytest.raises(InputError, match="unknown board"):
        platforms.board("de10-nano")


# CI builds this board for real (the tools' first-call compile on a new machine included): the
# whole flow from the generator to a bitstream, and the report parsed from the tools. A small
# network on a 2-lane array is half the work of the dense network's build below (-m slow).
def test_icebreaker_build_of_a_small_network_meets_timing(tmp_path, capsys):
    net = Network.parse("2,3:16,16")
    rng = np.random.default_rng(0)
    params = {name: rng.integers(-40, 41, shape).astype(np.int8) for name, shape in net.parameter_shapes.items()}
    small = weights.save(tmp_path / "small.npz", params, weights.make_manifest(arith.Arithmetic(), net))
    assert main(["build", "--board", "icebreaker", "--weights", str(small), "--lanes", "2",
                 "--build-dir", str(tmp_path / "build"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    resources = report["resources"]
    assert report["timing_met"] and report["fmax_mhz"] >= 12
    # Its 2 lanes on DSP blocks, its weights in block RAM (the bitstream), the feature maps in SPRAM.
    assert resources["dsp"]["used"] == 2 and resources["spram"]["used"] == 2 and resources["block_ram"]["used"] > 0
    assert resources["luts"]["used"] <= resources["luts"]["available"]
    ws = weights.load(small)
    assert report["cycles_per_image"] == accelerator.cycles_per_image(
        ws, CompactConfig(ws.arithmetic, lanes=2, weights_in_bitstream=True))
    assert os.path.getsize(report["bitstream"]) > 100_000


@pytest.mark.slow  # about a minute and a half; the small network's build above is the suite's
def test_icebreaker_build_fits_and_meets_timing(tmp_path, capsys):
    assert main(["build", "--board", "icebreaker", "--build-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    resources = report["resources"]
    assert report["timing_met"] and report["fmax_mhz"] >= 12
    assert resources["dsp"]["used"] == 8 and resources["spram"]["used"] == 4
    assert resources["luts"]["used"] <= resources["luts"]["available"]
    assert report["cycles_per_image"] == accelerator.cycles_per_image(weights.load(None), CompactConfig())
    assert os.path.getsize(report["bitstream"]) > 100_000


@pytest.mark.slow  # about a minute more; CI builds the dense network's above
def test_icebreaker_build_with_the_weights_in_the_bitstream(tmp_path, capsys):
    """A compressed network's weights go into the UP5K's block RAM by default: at most all 30
    block RAMs, two SPRAMs (the feature maps), timing met at a 27 MHz PLL clock (1,050 images/s
    measured 2026-12-02: 27 block RAMs, 30.7 MHz)."""
    path = weights.ASSETS / "lenet5_pruned_pow2.npz"
    assert main(["build", "--board", "icebreaker", "--weights", str(path), "--clock-mhz", "27",
                 "--build-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    resources = report["resources"]
    assert report["timing_met"] and report["fmax_mhz"] >= 27
    assert resources["spram"]["used"] == 2 and 23 < resources["block_ram"]["used"] <= 30
    ws = weights.load(path)
    assert report["cycles_per_image"] == accelerator.cycles_per_image(
        ws, CompactConfig(ws.arithmetic, weights_in_bitstream=True))


# The DSP multipliers each ULX3S keeps for the baseline design (conv1 25, conv2 25, fc1..fc3 20
# each): the first layers while they last, the rest from logic (see the test below).
ULX3S_DSPS = {"ulx3s-85f": 110, "ulx3s-45f": 70, "ulx3s-25f": 25}


@pytest.mark.slow
def test_ulx3s_25f_refuses_the_baseline_with_the_numbers(tmp_path, capsys):
    """The 25F's 24,288 LUT4 are too few for the baseline with its later layers' multipliers in
    logic (26,533 after synthesis, measured 2026-12-02): the build stops with nextpnr's
    utilisation in its one error, after synthesis (about 4 minutes)."""
    assert main(["build", "--board", "ulx3s-25f", "--build-dir", str(tmp_path), "--json"]) == 2
    err = capsys.readouterr().err
    assert "lenet-fpga build: error: the ulx3s-25f build failed" in err
    assert re.search(r"TRELLIS_COMB:\s+\d+/\s*24288", err) and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in ULX3S_DSPS if name != "ulx3s-25f"])
def test_ulx3s_build_meets_timing(name, tmp_path, capsys):
    """About 10 minutes each here: the baseline design on each ULX3S, at its 25 MHz oscillator."""
    assert main(["build", "--board", name, "--build-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    resources = report["resources"]
    assert report["timing_met"] and report["fmax_mhz"] >= 25
    assert resources["dsp"]["used"] == ULX3S_DSPS[name]
    assert resources["dsp"]["available"] == platforms.board(name).multipliers
    assert resources["luts"]["used"] <= resources["luts"]["available"] == platforms.board(name).luts
    assert report["worst_paths"] and os.path.getsize(report["bitstream"]) > 100_000


def test_multipliers_past_the_dsp_blocks_are_built_from_logic():
    """Baseline: conv1 25, conv2 25, fc1 20, fc2 20, fc3 20 multipliers. In network order, a layer
    keeps DSP blocks if they still fit: on the 45F (72) 25 + 25 + 20 = 70, and fc2 would make 90;
    on the 25F (28) conv1's 25, and any next layer would pass 28."""
    ws = weights.load()
    expected = {"ulx3s-85f": (), "ulx3s-45f": ("fc2", "fc3"), "ulx3s-25f": ("conv2", "fc1", "fc2", "fc3")}
    for name, soft in expected.items():
        config = _config(platforms.board(name), ws)
        assert config.soft_multipliers == soft
        assert sum(row.dsp for row in build.memory_report(ws, config)) == ULX3S_DSPS[name]
        build.check_fits(platforms.board(name), ws, config)
    # Layers named on the command line are the user's choice, and checked.
    config = _config(platforms.board("ulx3s-45f"), ws, soft_multipliers=("fc3",))
    assert config.soft_multipliers == ("fc3",)


def test_too_many_dsp_multipliers_are_refused_with_the_numbers(capsys):
    assert main(["build", "--board", "ulx3s-45f", "--soft-multipliers", "none"]) == 2
    err = capsys.readouterr().err
    assert "does not fit the ulx3s-45f: it puts 110 multipliers in DSP blocks (soft multipliers: none), " \
           "the FPGA has 72" in err
