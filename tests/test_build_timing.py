"""The worst paths of a build (boards/timing.py), read from nextpnr's --report JSON.

``data/icebreaker.report.json.gz`` is the untouched report of a real ``lenet-fpga build --board
icebreaker`` made here (nextpnr-ice40 from yowasp 0.11.1.0.post826), and
``data/icebreaker.tim.excerpt`` the summary lines of the same run's log (``lenet5.tim``): for each
path nextpnr's own "N ns logic, M ns routing", and the clock's Fmax. The parser's sums must agree
with nextpnr's, which it does not read."""

import gzip
import json
import re
from pathlib import Path

import pytest

from lenet_fpga.boards import build, platforms, timing
from lenet_fpga.cli import main

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def report():
    return json.loads(gzip.decompress((DATA / "icebreaker.report.json.gz").read_bytes()))


def log_summary():
    """{(from clock, to clock): (logic ns, routing ns)} and {clock: Fmax MHz} from the log."""
    text = (DATA / "icebreaker.tim.excerpt").read_text()
    sums, pair = {}, None
    for line in text.splitlines():
        if m := re.search(r"for clock '(.+)' \((\w+) -> (\w+)\)", line):
            pair = (f"{m[2]} {m[1]}", f"{m[3]} {m[1]}")
        elif m := re.search(r"cross-domain path '(.+)' -> '(.+)':", line):
            pair = (m[1], m[2])
        elif m := re.search(r"([\d.]+) ns logic, ([\d.]+) ns routing", line):
            sums[pair] = (float(m[1]), float(m[2]))
    fmax = {m[1]: float(m[2]) for m in re.finditer(r"Max frequency for clock '(.+)': ([\d.]+) MHz", text)}
    return sums, fmax


def test_logic_and_routing_agree_with_nextpnrs_log(report):
    paths = timing.parse_critical_paths(report)
    sums, _ = log_summary()
    assert len(paths) == len(sums) == 5
    for path in paths:
        logic, routing = sums[(path.from_clock, path.to_clock)]
        assert path.logic_ns == pytest.approx(logic, abs=0.006)  # the log prints two decimals
        assert path.routing_ns == pytest.approx(routing, abs=0.006)
        assert path.delay_ns == pytest.approx(path.logic_ns + path.routing_ns)


def test_worst_register_path_is_the_one_that_sets_fmax(report):
    paths = timing.parse_critical_paths(report)
    _, fmax = log_summary()
    assert [p.delay_ns for p in paths] == sorted((p.delay_ns for p in paths), reverse=True)
    worst = paths[0]
    assert (worst.from_clock, worst.to_clock) == ("posedge clk", "posedge clk")
    # 23.20 MHz is a period of 1000 / 23.20 = 43.10 ns: the worst path's delay.
    assert worst.delay_ns == pytest.approx(1000 / fmax["clk"], abs=0.01)
    # It leaves the register holding the UART link's frame type and ends at the `sent` counter's
    # enable; its nets come from boards/link.py.
    assert worst.start == "link.op[4]" and worst.start_cell == "link.op_SB_DFFESR_Q_3_DFFLC.O"
    assert worst.end == "link.sent" and worst.end_cell.endswith(".CEN")
    assert worst.cells == 12 and worst.constrained
    assert [Path(s).name.split(":")[0] for s in worst.sources] == ["link.py"]


def test_pin_and_constant_clock_paths_are_told_apart(report):
    paths = {(p.from_clock, p.to_clock): p for p in timing.parse_critical_paths(report)}
    from_pin = paths[("<async>", "posedge clk")]
    assert not from_pin.constrained and from_pin.start == "rx_buffer.buf0" and from_pin.cells == 0
    into_dsp = paths[("posedge clk", "posedge $PACKER_GND_NET_$glb_clk")]
    assert timing.cut_at_constant(into_dsp) and "SB_MAC16" in into_dsp.end_cell
    assert not timing.cut_at_constant(paths[("posedge clk", "posedge clk")])


def test_segment_arithmetic_by_hand():
    """clk-to-q 1.0 + routing 2.0 + logic 0.5 + routing 1.5 + setup 0.25: 5.25 ns, of which
    routing 2.0 + 1.5 = 3.5 and logic (everything else) 1.0 + 0.5 + 0.25 = 1.75, one cell."""
    def seg(kind, delay, net=None, to="b"):
        s = {"type": kind, "delay": delay, "from": {"cell": "a_TRELLIS_FF_Q", "port": "Q"},
             "to": {"cell": to, "port": "DI"}}
        return {**s, "net": net, "sources": ["/src/hdl/conv.py:10", "/share/ecp5/cells_map.v:1"]} if net else s
    report = {"critical_paths": [
        {"from": "posedge clk", "to": "posedge clk", "path": [
            seg("clk-to-q", 1.0), seg("routing", 2.0, "conv1.x[3]"), seg("logic", 0.5),
            seg("routing", 1.5, "$abc$12$n4"), seg("setup", 0.25, to="conv1.acc_TRELLIS_FF_Q_5")]},
        {"from": "posedge clk", "to": "<async>", "path": [seg("clk-to-q", 9.0)]},
    ]}
    to_pin, path = timing.parse_critical_paths(report)
    assert (to_pin.delay_ns, path.delay_ns) == (9.0, 5.25)  # sorted longest first
    assert (path.logic_ns, path.routing_ns, path.cells) == (1.75, 3.5, 1)
    assert path.start == "conv1.x[3]" and path.end == "conv1.acc"
    assert path.sources == ("/src/hdl/conv.py:10",)  # the cell library's line left out
    assert timing.parse_critical_paths({}) == []


@pytest.mark.parametrize("cell, name", [
    ("link.sent_SB_DFFESR_Q_1_D_SB_LUT4_O_LC", "link.sent"),
    ("link.accelerator.store.spram0.data_out_SB_MAC16_B_DSP", "link.accelerator.store.spram0.data_out"),
    ("conv1.acc_TRELLIS_FF_Q_5", "conv1.acc"),
    ("rx_buffer.buf0", "rx_buffer.buf0"),
    ("$abc$4321$auto$blifparse.cc:396:parse_blif$4400", "$abc$4321$auto$blifparse.cc:396:parse_blif$4400"),
])
def test_design_name(cell, name):
    assert timing.design_name(cell) == name


def test_table_shows_paths_shares_and_where_the_logs_are(report, tmp_path):
    paths = tuple(timing.parse_critical_paths(report))
    logs = {"nextpnr": str(tmp_path / "lenet5.tim"), "yosys": str(tmp_path / "lenet5.rpt")}
    table = build.BuildReport("icebreaker", None, {}, 23.2, 12, True, 1.0, worst_paths=paths, logs=logs).table()
    # 12.72 of 43.10 ns is logic: 30 %; 30.38 ns routing: 70 %.
    assert re.search(r"clk -> clk\s+43\.10 ns\s+30 %\s+70 %\s+12\s+link\.op\[4\] -> link\.sent", table)
    assert "(constant) -> clk *" in table and "both halves plus that cell's own delay" in table
    assert f"{tmp_path / 'lenet5.tim'} (nextpnr)" in table


def test_build_json_has_the_paths_and_logs(report, tmp_path, monkeypatch, capsys):
    """``lenet-fpga build --json`` with the tools replaced by the real report: the worst paths
    and the log files are in the JSON, and the table names the log files."""
    make_platform = platforms.Board.make_platform

    def fake_make_platform(board):
        platform = make_platform(board)

        def fake_build(top, name, build_dir, do_program=False, **overrides):
            Path(build_dir, f"{name}.report.json").write_text(json.dumps(report))
            Path(build_dir, f"{name}.tim").write_text((DATA / "icebreaker.tim.excerpt").read_text())

        platform.build = fake_build
        return platform

    monkeypatch.setattr(platforms.Board, "make_platform", fake_make_platform)
    assert main(["build", "--board", "icebreaker", "--build-dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["worst_paths"][0]["start"] == "link.op[4]"
    assert out["worst_paths"][0]["delay_ns"] == pytest.approx(43.10, abs=0.01)
    assert out["logs"] == {"nextpnr": str(tmp_path / "lenet5.tim"), "report": str(tmp_path / "lenet5.report.json")}
    assert main(["build", "--board", "icebreaker", "--build-dir", str(tmp_path)]) == 0
    assert f"full logs: {tmp_path / 'lenet5.tim'} (nextpnr)" in capsys.readouterr().out
