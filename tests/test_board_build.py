"""Board flow without place-and-route: report parsing, the fit check, flash commands.
The real ULX3S build is a slow test (`make test-slow`)."""

import json
import os

import pytest

from lenet_fpga.boards import build, platforms
from lenet_fpga.cli import main
from lenet_fpga.hdl.lenet import AcceleratorConfig
from lenet_fpga.model import weights
from lenet_fpga.model.errors import InputError

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
        build.check_fits(platforms.board("icebreaker"), ws, AcceleratorConfig())
    build.check_fits(platforms.board("ulx3s-85f"), ws, AcceleratorConfig())  # fits: no error


def test_build_icebreaker_is_a_clean_error(capsys):
    assert main(["build", "--board", "icebreaker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lenet-fpga build: error: the design does not fit") and "Traceback" not in err


def test_unknown_board():
    with pytest.raises(InputError, match="unknown board"):
        platforms.board("de10-nano")


@pytest.mark.parametrize("name, expected", [
    ("ulx3s-85f", "openFPGALoader --board ulx3s build/ulx3s-85f/lenet5.bit"),
    ("icebreaker", "openFPGALoader --board ice40_generic build/icebreaker/lenet5.bin"),
])
def test_flash_dry_run_prints_the_command(name, expected, capsys):
    assert main(["flash", "--board", name, "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == expected


def test_flash_without_bitstream_is_a_clean_error(tmp_path, capsys):
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", str(tmp_path / "none.bit")]) == 2
    assert "bitstream not found" in capsys.readouterr().err


@pytest.mark.slow
def test_ulx3s_build_meets_timing(tmp_path, capsys):
    assert main(["build", "--board", "ulx3s-85f", "--build-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["timing_met"] and report["fmax_mhz"] >= 25
    assert report["resources"]["dsp"]["used"] >= 110 and os.path.getsize(report["bitstream"]) > 100_000
