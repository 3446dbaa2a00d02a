"""`lenet-fpga explore` without Dask: the grid, point keys, Pareto fronts, the results file, and
the process groups that tool stages run in."""

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lenet_fpga.cli import main
from lenet_fpga.explore import grid as grids
from lenet_fpga.explore import isolate, keys, pareto
from lenet_fpga.commands import explore as explore_command
from lenet_fpga.explore.results import ResultsFile
from lenet_fpga.model import weights
from lenet_fpga.model.errors import InputError


# ---- the grid ----

def grid_args(**given):
    fields = {option: None for option in explore_command.GRID_OPTIONS}
    fields["grid"] = None
    return argparse.Namespace(**{**fields, **given})


def test_command_line_axes_multiply_in_order():
    grid = explore_command.grid_of(grid_args(preset=("baseline", "fast"), lanes=[(20,), (10, 5, 2)], seed=(1, 2),
                                   stages=("golden", "rtl", "pnr")))
    assert [d.label for d in grid.designs] == ["baseline lanes=20", "baseline lanes=10,5,2",
                                               "fast lanes=20", "fast lanes=10,5,2"]
    assert grid.seeds == (1, 2) and grid.stages == ("golden", "rtl", "pnr")
    assert grid.weights == (None,) and grid.devices == ("LFE5U-85F",) and grid.clocks_mhz == (100.0,)
    # 1 weight file x 4 designs x 1 device x 1 clock x 2 seeds
    assert len(grids.expand(grid, {None: weights.load(None)})) == 8


def test_a_points_multipliers():
    # LeNet-5 (5x5 kernels; linear layers of 400, 120 and 84 inputs): the baseline has 1 filter
    # per conv engine and 20 lanes per linear engine: 25 + 25 + 3 * 20 = 110; filters 2,4 and
    # lanes 10: 2 * 25 + 4 * 25 + 3 * 10 = 180.
    grid = grids.Grid(designs=(grids.Design("baseline"), grids.Design("baseline", filters=(2, 4), lanes=(10,))))
    assert [p.multipliers for p in grids.expand(grid, {None: weights.load(None)})] == [110, 180]


def test_grid_file_toml_with_weights_relative_to_it(tmp_path):
    (tmp_path / "sweeps").mkdir()
    path = tmp_path / "sweeps" / "grid.toml"
    path.write_text(textwrap.dedent("""\
        weights = ["../w/a.npz", "/abs/b.npz", "shipped"]
        stages = ["rtl", "pnr"]
        seeds = [3, 4]
        clocks_mhz = [85, 100.5]
        rtl_images = 4
        time_limit_minutes = 30

        [[designs]]
        preset = "fast"

        [[designs]]
        lanes = [10, 5, 2]
        soft_multipliers = "conv1,fc1"
        name = "small"
        """))
    grid = grids.read_grid_file(path)
    assert grid.weights == (str(tmp_path / "sweeps" / "../w/a.npz"), "/abs/b.npz", "shipped")
    assert grid.designs == (grids.Design("fast"),
                            grids.Design("baseline", lanes=(10, 5, 2), soft_multipliers=("conv1", "fc1"), name="small"))
    assert grid.seeds == (3, 4) and grid.clocks_mhz == (85.0, 100.5)
    assert grid.rtl_images == 4 and grid.time_limit_minutes == 30.0 and grid.stages == ("rtl", "pnr")


def test_grid_file_json_is_the_same_grid(tmp_path):
    toml, js = tmp_path / "g.toml", tmp_path / "g.json"
    toml.write_text('stages = ["golden"]\n[[designs]]\npreset = "fast"\nfilters = 2\n')
    js.write_text(json.dumps({"stages": ["golden"], "designs": [{"preset": "fast", "filters": 2}]}))
    assert grids.read_grid_file(toml) == grids.read_grid_file(js)


@pytest.mark.parametrize("text, message", [
    ('colour = "red"', "unknown field colour"),
    ('stages = ["golden", "synth"]', "unknown stage synth"),
    ('stages = ["rtl", "rtl"]', "twice"),
    ('devices = ["XC7A35T"]', "unknown device XC7A35T"),
    ('rtl_images = [4, 8]', "one number"),
    ('rtl_images = 1', "at least 2"),
    ('seeds = []', "seeds is empty"),
    ('seeds = [-1]', "0 or more"),
    ('[[designs]]\npreset = "quick"', "unknown preset quick"),
    ('[[designs]]\nlanes = [0]', "positive whole number"),
    ('[[designs]]\nwidth = 3', "unknown field width"),
    ('weights = [', "cannot be read"),
])
def test_bad_grid_files_say_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "g.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        grids.read_grid_file(path)


def test_grid_file_and_grid_options_do_not_mix(tmp_path, capsys):
    path = tmp_path / "g.json"
    path.write_text("{}")
    assert main(["explore", "--grid", str(path), "--seed", "2", "--results", str(tmp_path / "r.jsonl")]) == 2
    assert "--seed cannot be added" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["explore", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--jobs sizes the local cluster"),
    (["explore", "--stages", "golden,place"], "unknown stage place"),
    (["explore", "--preset", "baseline", "--filters", "4"], "4 at once does not divide"),
    (["explore", "--weights", "no/such.npz"], "weights file not found"),
    (["sim", "--scheduler", "local", "--waves"], "leave out --scheduler"),
])
def test_explore_and_sim_refuse_bad_input_before_any_work(capsys, tmp_path, argv, message):
    if argv[0] == "explore":
        argv = argv + ["--results", str(tmp_path / "r.jsonl")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()


def test_explore_help_names_the_grid_file_fields(capsys):
    with pytest.raises(SystemExit):
        main(["explore", "--help"])
    out = capsys.readouterr().out
    for field in sorted(grids.FILE_FIELDS):
        assert field in out


def test_a_design_that_does_not_fit_the_network_is_refused_before_any_work():
    ws = weights.load(None)
    with pytest.raises(InputError, match="conv1 has 6 filters: 4 at once"):  # 4 does not divide 6
        grids.Design("baseline", filters=(4, 4)).resolve(ws)


def test_place_and_route_takes_the_points_device_clock_and_seed(tmp_path, monkeypatch):
    """boards.pnr.place_and_route as the pnr stage calls it, with fake tools: the part, the
    clock aimed for and the seed reach nextpnr, and timing is judged against that clock."""
    import numpy as np

    from lenet_fpga.hdl.lenet import StreamingConfig
    from lenet_fpga.model import arith
    from lenet_fpga.model.network import Network
    from lenet_fpga.boards import pnr

    fake = Path(__file__).with_name("fake_pnr.py")
    for tool, variable in (("yosys", "YOSYS"), ("nextpnr", "NEXTPNR_ECP5")):
        wrapper = tmp_path / f"fake-{tool}"
        wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {fake} {tool} \"$@\"\n")
        wrapper.chmod(0o755)
        monkeypatch.setenv(variable, str(wrapper))
    monkeypatch.setenv("FAKE_PNR_DIR", str(tmp_path))
    network = Network.parse("2k5p4:4")
    params = {name: np.ones(shape, np.int8) for name, shape in network.parameter_shapes.items()}
    ws = weights.load(weights.save(tmp_path / "w.npz", params, weights.make_manifest(arith.Arithmetic(), network)))
    config = StreamingConfig(ws.arithmetic)
    report = pnr.place_and_route(ws, config, tmp_path / "a", device="LFE5U-25F", target_mhz=85.0, seed=3)
    args = json.loads((tmp_path / "a" / "nextpnr-args.json").read_text())
    assert "--25k" in args and args[args.index("--freq") + 1] == "85" and args[args.index("--seed") + 1] == "3"
    # the fake reports 50 + seed = 53 MHz: short of 85 MHz, enough for 50
    assert report["fmax_mhz"] == 53.0 and report["timing_met"] is False
    assert pnr.place_and_route(ws, config, tmp_path / "b", target_mhz=50.0, seed=3)["timing_met"] is True
    assert "--85k" in json.loads((tmp_path / "b" / "nextpnr-args.json").read_text())  # the default part
    with pytest.raises(InputError, match="unknown device"):
        pnr.place_and_route(ws, config, tmp_path / "c", device="LFE5U-99F")


# ---- keys ----

def lenet_point(**changes):
    ws = weights.load(None)
    grid = grids.Grid(stages=changes.pop("stages", ("golden", "rtl", "pnr")))
    point = grids.expand(grid, {None: ws})[0]
    return replace(point, **changes)


INPUTS = {"weights": {"shipped": "w" * 64}, "images": {"6,16:120,84": "i" * 64}, "test_set": "t" * 64,
          "versions": {"amaranth": "0.5.8", "code": "c" * 64}}


def with_input(part, value):
    changed = json.loads(json.dumps(INPUTS))
    if part == "weights":
        changed["weights"]["shipped"] = value
    elif part == "images":
        changed["images"]["6,16:120,84"] = value
    elif part == "versions":
        changed["versions"]["amaranth"] = value
    else:
        changed[part] = value
    return changed


def test_a_change_of_any_input_is_a_new_key():
    base = lenet_point()
    key = keys.point_key(base, INPUTS)
    assert keys.point_key(lenet_point(), json.loads(json.dumps(INPUTS))) == key  # the same inputs: the same key
    changed_points = [
        replace(base, config=replace(base.config, linear_lanes=(20, 20, 10))),
        replace(base, config=replace(base.config, conv_filters=(2, 1))),
        replace(base, config=replace(base.config, soft_multipliers=("fc1",))),
        replace(base, device="LFE5U-45F"),
        replace(base, clock_mhz=85.0),
        replace(base, seed=2),
        replace(base, simulator="icarus"),
        replace(base, stages=("golden", "rtl")),
    ]
    changed_inputs = [with_input("weights", "x" * 64), with_input("images", "y" * 64),
                      with_input("test_set", "z" * 64), with_input("versions", "0.5.9")]
    found = [keys.point_key(p, INPUTS) for p in changed_points] + [keys.point_key(base, i) for i in changed_inputs]
    assert key not in found and len(set(found)) == len(found)


def test_what_no_stage_reads_is_not_in_the_key():
    rtl_only = lenet_point(stages=("rtl",))
    key = keys.point_key(rtl_only, INPUTS)
    # device, clock and seed only matter to place and route; the test set only to golden
    for other in (replace(rtl_only, seed=9), replace(rtl_only, device="LFE5U-25F"), replace(rtl_only, clock_mhz=50.0)):
        assert keys.point_key(other, INPUTS) == key
    assert keys.point_key(rtl_only, with_input("test_set", "z" * 64)) == key
    golden_only = lenet_point(stages=("golden",))
    # the golden stage reads the weights and the test set, not the generator parameters
    assert keys.point_key(replace(golden_only, config=replace(golden_only.config, linear_lanes=(5, 5, 5))),
                          INPUTS) == keys.point_key(golden_only, INPUTS)


def test_the_same_design_spelled_two_ways_is_one_point():
    ws = weights.load(None)
    # The baseline preset gives every linear layer 20 lanes (each has at least 20 inputs: 400,
    # 120, 84) and every conv engine 1 filter: "lanes 20" and "filters 1,1" spell the same design.
    grid = grids.Grid(designs=(grids.Design("baseline"), grids.Design("baseline", lanes=(20,)),
                               grids.Design("baseline", filters=(1, 1)), grids.Design("baseline", lanes=(10,))))
    points = grids.expand(grid, {None: ws})
    found = [keys.point_key(p, INPUTS) for p in points]
    assert found[0] == found[1] == found[2] != found[3]


def test_a_replaced_tool_program_is_a_new_tool_version(tmp_path, monkeypatch):
    tool = tmp_path / "yosys"
    tool.write_text("#!/bin/sh\necho one\n")
    monkeypatch.setenv("YOSYS", str(tool))
    first = keys.tool_versions(("pnr",), "verilator")["yosys"]
    tool.write_text("#!/bin/sh\necho two\n")
    assert keys.tool_versions(("pnr",), "verilator")["yosys"] != first
    assert "yosys" not in keys.tool_versions(("golden",), "verilator")


# ---- Pareto fronts ----

def test_pareto_front_fewest_luts_most_images_per_second():
    # (LUTs, images/s); fewer LUTs and more images/s are better.
    values = [(100, 10),  # 0 A: on (only E has fewer LUTs, and E is slower)
              (200, 20),  # 1 B: on (fastest; D is as fast with more LUTs)
              (150, 5),   # 2 C: off, A has fewer LUTs and is faster
              (300, 20),  # 3 D: off, B is as fast with fewer LUTs
              (50, 1),    # 4 E: on (fewest LUTs)
              (100, 10)]  # 5 F: equal to A; equal points do not dominate each other
    assert pareto.pareto_front(values, x_larger_better=False, y_larger_better=True) == [4, 0, 5, 1]


def test_pareto_front_both_larger_better():
    # (images/s, accuracy): 0 is beaten by 1 (faster, as accurate); 2 is the most accurate.
    values = [(10, 0.99), (20, 0.99), (5, 0.995), (20, 0.98)]
    assert pareto.pareto_front(values, True, True) == [2, 1]


def test_metrics_of_a_record():
    record = {"key": "k", "status": "done", "point": {"clock_mhz": 100.0},
              "stages": {"golden": {"status": "done", "accuracy": 0.993},
                         "rtl": {"status": "done", "interval_cycles": 6144.0, "latency_cycles": 9801, "multipliers": 110},
                         "pnr": {"status": "done", "fmax_mhz": 101.3, "resources": {"luts": 10524, "dsp": 110}}}}
    m = pareto.metrics(record)
    assert m["images_per_second"] == pytest.approx(101.3e6 / 6144)  # 16,487.6: Fmax / interval
    assert m["images_per_second_at_clock"] == pytest.approx(100e6 / 6144)  # 16,276.0
    assert (m["luts"], m["dsp"], m["accuracy"], m["multipliers"]) == (10524, 110, 0.993, 110)
    record["stages"]["pnr"] = {"status": "timeout"}
    assert "images_per_second" not in pareto.metrics(record) and "luts" not in pareto.metrics(record)


def test_the_fronts_figure_is_a_png(tmp_path):
    from lenet_fpga.explore.plots import fronts_figure

    def record(key, luts, fmax, interval):
        return {"key": key, "status": "done", "point": {"clock_mhz": 100.0},
                "stages": {"rtl": {"status": "done", "interval_cycles": interval, "multipliers": luts // 100},
                           "pnr": {"status": "done", "fmax_mhz": fmax, "resources": {"luts": luts, "dsp": 10}}}}

    records = [record("a", 1000, 100.0, 6144), record("b", 5000, 60.0, 809), record("c", 6000, 50.0, 809)]
    found = pareto.fronts(records)
    by_title = {entry["front"].title: entry for entry in found}
    # c has more LUTs than b and a lower Fmax at the same interval: off the LUT front
    luts = by_title["images/s against LUTs"]
    assert [luts["points"][i][2] for i in luts["on_front"]] == ["a", "b"]
    path = fronts_figure(found, {"a": "small", "b": "big"}, tmp_path / "p.png", "test")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_timing_splits_the_workers_time():
    from lenet_fpga.explore.sweep import timing

    records = [
        {"point": {"weights": "w"}, "task_seconds": 105.0,
         "stages": {"golden": {"status": "done", "seconds": 6.0},
                    "rtl": {"status": "done", "seconds": 100.0, "process_seconds": 102.0}}},
        {"point": {"weights": "w"}, "task_seconds": 50.0,  # the same weight file: one golden run
         "stages": {"golden": {"status": "done", "seconds": 6.0},
                    "rtl": {"status": "timeout", "process_seconds": 48.0}}},
    ]
    t = timing(records, {"wall_seconds": 110.0, "workers": 2})
    assert t["stage_function_seconds"] == 106.0  # 100 + one golden of 6
    assert t["failed_stage_seconds"] == 48.0
    assert t["stage_process_overhead_per_point"] == 1.0  # (102 - 100) / 2
    assert t["task_overhead_per_point"] == 2.5  # (105 + 50 - 48 - 102) / 2
    assert t["engine_overhead_per_point"] == 33.0  # (110 * 2 - 100 - 6 - 48) / 2


# ---- the results file ----

def test_results_file_lines_and_a_damaged_last_line(tmp_path):
    results = ResultsFile(tmp_path / "sub" / "r.jsonl")
    assert results.read() == {}
    results.append({"key": "a", "status": "done"})
    results.append({"key": "b", "status": "failed"})
    with open(results.path, "ab") as f:
        f.write(b'{"key": "c", "sta')  # a crash in the middle of a line
    assert set(results.read()) == {"a", "b"} and results.damaged == 1
    results.append({"key": "d", "status": "done"})
    assert set(results.read()) == {"a", "b", "d"} and results.damaged == 1
    lines = results.path.read_text().splitlines()
    assert lines[2] == '{"key": "c", "sta' and json.loads(lines[3])["key"] == "d"
    assert results.drop(["b"]) == 1
    assert set(results.read()) == {"a", "d"}
    assert all(json.loads(line)["key"] != "b" for line in results.path.read_text().splitlines()[:1])



def test_results_file_skips_a_line_python_cannot_read(tmp_path):
    """An integer of 5,000 digits is JSON, but past Python's int-string limit: a damaged line
    for the reader and for ``drop``, not a traceback."""
    results = ResultsFile(tmp_path / "r.jsonl")
    results.append({"key": "a", "status": "done"})
    with open(results.path, "a") as f:
        f.write('{"key": "b", "cycles": ' + "9" * 5000 + "}\n")
    assert set(results.read()) == {"a"} and results.damaged == 1
    assert results.drop(["a"]) == 1 and results.read() == {}

# ---- process groups ----

HANGING_TOOL = """
import json, os, subprocess, sys, time
child = subprocess.Popen(["sleep", "600"])
with open(sys.argv[1] + ".part", "w") as f:
    json.dump({"pgid": os.getpgrp(), "child": child.pid}, f)
os.replace(sys.argv[1] + ".part", sys.argv[1])
time.sleep(600)
"""


@pytest.mark.parametrize("how", ["timeout", "cancelled"])
def test_a_stopped_stage_leaves_no_process_of_its_group(tmp_path, how, group_gone):
    started = time.monotonic()
    pids = tmp_path / "pids.json"
    outcome = isolate.run_in_group(
        [sys.executable, "-c", HANGING_TOOL, str(pids)], cwd=tmp_path, log=tmp_path / "log",
        time_limit_s=1.0 if how == "timeout" else None,
        cancelled=(lambda: pids.exists() and time.monotonic() - started > 1.0) if how == "cancelled" else lambda: False)
    assert outcome.status == how
    group = json.loads(pids.read_text())
    assert group["pgid"] == outcome.pgid != os.getpgrp()  # its own group, not ours
    assert group_gone(group["pgid"])


def test_a_finished_stage_takes_what_it_left_running_with_it(tmp_path, group_gone):
    pids = tmp_path / "pids.json"
    script = f"import subprocess, json; c = subprocess.Popen(['sleep', '600']); json.dump(c.pid, open({str(pids)!r}, 'w'))"
    outcome = isolate.run_in_group([sys.executable, "-c", script], cwd=tmp_path, log=tmp_path / "log")
    assert outcome.status == "done" and outcome.returncode == 0
    assert group_gone(outcome.pgid)


def test_a_stage_whose_parent_dies_kills_its_group(tmp_path, group_gone):
    """A worker killed with SIGKILL cannot stop its stages: they notice and stop themselves."""
    pids = tmp_path / "pids.json"
    stage = f"""
from lenet_fpga.explore.isolate import watch_parent
watch_parent(0.2)
{HANGING_TOOL}"""
    parent = f"""
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", {stage!r}, {str(pids)!r}], start_new_session=True)
time.sleep(600)
"""
    worker = subprocess.Popen([sys.executable, "-c", parent])
    try:
        deadline = time.monotonic() + 30
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        group = json.loads(pids.read_text())
        os.kill(group["child"], 0)  # the stage's tool is running
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert group_gone(group["pgid"])
