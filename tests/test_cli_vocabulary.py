"""One option vocabulary across the ``lenet-fpga`` commands (lenet_fpga/commands/): every
command explains itself, takes --json where it prints figures, old option spellings still
parse to the new options, ``--weights shipped`` is the shipped network everywhere, and
simulator output lands in the build folder."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lenet_fpga import cli
from lenet_fpga.commands import demo, explore, sim
from lenet_fpga.model import golden, weights


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


COMMANDS = sorted(subparsers())


def parse(argv: list[str]) -> dict:
    """The options ``argv`` parses to, without the handler."""
    args = vars(cli.build_parser().parse_args(argv))
    args.pop("run")
    return args


def test_the_commands_are_the_modules_of_lenet_fpga_commands():
    assert len(COMMANDS) == len(cli.COMMANDS) == 17
    assert {"train", "import", "eval", "verilog", "sim", "demo", "board-sim", "bench-report"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description_paragraph(command):
    """More than the one-line summary of the command list: a paragraph of what it does."""
    p = subparsers()[command]
    assert p.description, command
    summary = next(a.help for a in cli.build_parser()._actions[-1]._choices_actions if a.dest == command)
    assert p.description.strip() != summary.strip()
    assert len(p.description) > 200, p.description


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_takes_json(command):
    """Every command prints figures, so every command can print them as JSON."""
    options = {s for a in subparsers()[command]._actions for s in a.option_strings}
    assert "--json" in options


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_only_the_new_spellings(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    for old in ("--configs", "--pnr-minutes", "--workers", "--output", "-o ", "--plot "):
        assert old not in out, (command, old)


def test_building_the_parser_imports_neither_torch_nor_amaranth():
    """``lenet-fpga --help`` and ``eval`` stay fast: the command modules import the library in ``run``."""
    code = ("import sys; from lenet_fpga import cli; cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'amaranth', 'matplotlib', 'cocotb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- old spellings: the same options ----

@pytest.mark.parametrize("old, new", [
    (["verilog", "-o", "x.v"], ["verilog", "--out", "x.v"]),
    (["verilog", "--output", "x.v"], ["verilog", "--out", "x.v"]),
    (["bench", "--configs", "fast,baseline"], ["bench", "--preset", "fast,baseline"]),
    (["bench", "--pnr", "--pnr-minutes", "30"], ["bench", "--pnr", "--time-limit", "30"]),
    (["explore", "--workers", "3"], ["explore", "--jobs", "3"]),
    (["sim", "--workers", "2"], ["sim", "--jobs", "2"]),
])
def test_old_spellings_parse_to_the_new_options(old, new):
    assert parse(old) == parse(new)


def test_the_new_options_take_values_apart_from_their_defaults():
    """The comparison above would pass if neither spelling did anything."""
    assert parse(["bench", "--preset", "fast"])["preset"] == "fast" != parse(["bench"])["preset"]
    assert parse(["bench", "--time-limit", "30"])["time_limit_minutes"] == 30.0
    assert parse(["explore", "--jobs", "3"])["jobs"] == 3 and parse(["explore"])["jobs"] is None
    assert parse(["verilog", "--out", "x.v"])["out"] == "x.v"


def test_verilog_still_requires_its_output(capsys):
    with pytest.raises(SystemExit):
        cli.main(["verilog"])
    assert "required: --out" in capsys.readouterr().err


def test_plots_is_a_folder_for_demo_and_explore(tmp_path):
    """--plots DIR everywhere; the pictures get fixed names in it. The old meanings still hold:
    demo --plot FILE.png, explore --plots FILE.png."""
    assert demo.picture_path(cli.build_parser().parse_args(["demo"])) == Path("build") / "demo.png"
    assert demo.picture_path(cli.build_parser().parse_args(["demo", "--plots", "out"])) == Path("out") / "demo.png"
    assert demo.picture_path(cli.build_parser().parse_args(["demo", "--plots", ""])) is None
    assert demo.picture_path(cli.build_parser().parse_args(["demo", "--plot", "d.png"])) == Path("d.png")
    results = tmp_path / "sweep.jsonl"
    assert explore.plot_path(cli.build_parser().parse_args(["explore"]), results) == tmp_path / "sweep-pareto.png"
    assert explore.plot_path(cli.build_parser().parse_args(["explore", "--plots", "pics"]), results) == \
        Path("pics") / "sweep-pareto.png"
    assert explore.plot_path(cli.build_parser().parse_args(["explore", "--plots", "f.png"]), results) == Path("f.png")


# ---- --weights shipped ----

def test_shipped_names_the_shipped_weights():
    assert weights.load("shipped").path == weights.load(None).path == weights.DEFAULT_WEIGHTS


@pytest.mark.parametrize("command", ["eval", "verilog", "sim", "classify", "bench", "build", "board-run",
                                     "board-sim", "demo", "compress", "explore"])
def test_every_weights_option_says_shipped(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "'shipped'" in capsys.readouterr().out


def test_eval_weights_shipped(capsys, monkeypatch, mnist_dir):
    # the accuracy itself is checked elsewhere; keep this test fast
    monkeypatch.setattr(golden, "forward", lambda images, *a, **k: np.zeros((len(images), 10), np.int64))
    monkeypatch.setattr(golden, "float_forward", lambda images, *a, **k: np.zeros((len(images), 10)))
    assert cli.main(["eval", "--weights", "shipped", "--json", "--data", str(mnist_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert Path(result["weights"]) == weights.DEFAULT_WEIGHTS
    assert result["network"] == "6,16:120,84"


# ---- --json that runs ----

def test_verilog_json(tmp_path, capsys):
    out = tmp_path / "lenet5.v"
    assert cli.main(["verilog", "--weights", "shipped", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verilog"] == str(out) and out.read_text().count("module lenet5(") == 1
    assert report["network"] == "6,16:120,84" and "conv1" in [row["layer"] for row in report["layers"]]


def test_download_json_with_the_files_there(tmp_path, capsys, mnist_dir):
    """Nothing to fetch (every file is there and passes its md5): no network, one JSON line."""
    data = tmp_path / "mnist"
    data.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        shutil.copyfile(mnist_dir / name, data / name)
    assert cli.main(["download", "--data", str(data), "--mirror", "http://127.0.0.1:9/", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    report = json.loads(out)
    assert report["data"] == str(data) and report["downloaded"] == [] and len(report["verified"]) == 4


# ---- the build folder ----

@pytest.mark.parametrize("simulator, suffix", [("verilator", ".vcd"), ("icarus", ".fst")])
def test_waves_go_into_the_build_folder(tmp_path, monkeypatch, simulator, suffix):
    monkeypatch.delenv("LENET_FPGA_BUILD", raising=False)
    args = cli.build_parser().parse_args(["sim", "--waves", "--simulator", simulator, "--build-dir",
                                          str(tmp_path / "b")])
    assert sim.waves_path(args) == (tmp_path / "b").resolve() / f"lenet_sim{suffix}"
    monkeypatch.setenv("LENET_FPGA_BUILD", str(tmp_path / "env"))
    args = cli.build_parser().parse_args(["sim", "--waves", "--simulator", simulator])
    assert sim.waves_path(args) == (tmp_path / "env").resolve() / f"lenet_sim{suffix}"
    monkeypatch.delenv("LENET_FPGA_BUILD")
    monkeypatch.chdir(tmp_path)
    assert sim.waves_path(args) == tmp_path / "build" / "sim" / f"lenet_sim{suffix}"
    args = cli.build_parser().parse_args(["sim", "--waves", "--waves-file", "w.vcd"])
    assert sim.waves_path(args) == Path("w.vcd")


@pytest.mark.parametrize("command", ["sim", "classify", "bench", "demo", "board-sim"])
def test_build_dir_is_checked_before_the_simulation(tmp_path, capsys, monkeypatch, command):
    """--build-dir reaches the runner as a parameter: one under a file is refused up front."""
    from lenet_fpga.commands import simulation
    from lenet_fpga.sim import runner

    monkeypatch.setattr(simulation, "run_simulation", lambda *a, **k: pytest.fail("the simulation ran"))
    monkeypatch.setattr(runner, "prepare_simulator", lambda name: None)
    monkeypatch.delenv("LENET_FPGA_BUILD", raising=False)
    (tmp_path / "a-file").write_text("x")
    argv = [command, "--build-dir", str(tmp_path / "a-file" / "sim")]
    if command == "classify":
        argv[1:1] = [str(tmp_path / "a-file"), "--rtl"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lenet-fpga {command}: error:") and "is not a writable folder" in err, err
