"""Every output location is checked before the work starts, and written atomically: a bad -o,
--out, --plot, --waves-file, --plots or build folder costs one line and exit 2, not a traceback
after minutes of work, and leaves nothing behind."""

from __future__ import annotations

import os

import pytest

from lenet_fpga.cli import main


def bad_locations(tmp_path):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-folder").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return {
        "folder": (tmp_path / "a-folder", "is a folder"),
        "under a file": (tmp_path / "a-file" / "out.x", "is not a folder"),
        "read-only folder": (locked / "out.x", "is not writable"),
        "proc": ("/proc/out.x", "is not writable"),
    }


def assert_refused(capsys, argv, command, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lenet-fpga {command}: error:") and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_as_a_user(tmp_path, capsys):
    target, message = bad_locations(tmp_path)["read-only folder"]
    assert_refused(capsys, ["verilog", "-o", str(target)], "verilog", message)


@pytest.mark.parametrize("case", ["folder", "under a file", "proc"])
def test_verilog_output(tmp_path, capsys, case):
    target, message = bad_locations(tmp_path)[case]
    assert_refused(capsys, ["verilog", "-o", str(target)], "verilog", message)


@pytest.mark.parametrize("case", ["folder", "under a file", "proc"])
def test_demo_plot_is_checked_before_the_simulation(tmp_path, capsys, case, monkeypatch):
    from lenet_fpga.commands import simulation

    monkeypatch.setattr(simulation, "run_simulation", lambda *a, **k: pytest.fail("the simulation ran"))
    target, message = bad_locations(tmp_path)[case]
    assert_refused(capsys, ["demo", "--plot", str(target)], "demo", message)


@pytest.mark.parametrize("case", ["folder", "under a file"])
def test_sim_waves_file_is_checked_before_the_simulation(tmp_path, capsys, case, monkeypatch):
    from lenet_fpga.commands import simulation

    monkeypatch.setattr(simulation, "run_simulation", lambda *a, **k: pytest.fail("the simulation ran"))
    target, message = bad_locations(tmp_path)[case]
    assert_refused(capsys, ["sim", "--waves", "--waves-file", str(target)], "sim", message)


def test_sim_build_folder_under_a_file(tmp_path, capsys, monkeypatch):
    from lenet_fpga.commands import simulation

    monkeypatch.setattr(simulation, "run_simulation", lambda *a, **k: pytest.fail("the simulation ran"))
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("LENET_FPGA_BUILD", str(tmp_path / "a-file" / "sim"))
    assert_refused(capsys, ["sim", "--n", "1"], "sim", "is not a writable folder")


@pytest.mark.parametrize("out, message", [("a-folder.npz", "is a folder"), ("a-file/w.npz", "is not a folder"),
                                          ("/proc/w.npz", "is not writable")])
def test_train_out_is_checked_before_loading_anything(tmp_path, capsys, out, message):
    """--data points nowhere: had the output not been checked first, the error would be MNIST's."""
    (tmp_path / "a-folder.npz").mkdir()
    (tmp_path / "a-file").write_text("x")
    assert_refused(capsys, ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / out)], "train",
                   message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a-folder.npz"]


def test_bench_plots_folder_under_a_file(tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    assert_refused(capsys, ["bench", "--plots", str(tmp_path / "a-file" / "plots")], "bench", "is not a folder")
