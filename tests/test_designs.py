"""The design registry (hdl/designs.py): every registered design goes through every path that
takes ``--design`` (sim on Dask workers, bench, explore's golden and rtl stages) bit-exactly, and
every list of design names reads the registry."""

from __future__ import annotations

import json

import pytest

from lenet_fpga.boards import platforms, protocol
from lenet_fpga.boards.configure import design_config
from lenet_fpga.cli import build_parser, main
from lenet_fpga.hdl import designs
from lenet_fpga.hdl.designs import DESIGNS, GeneratorOptions
from lenet_fpga.model import weights
from lenet_fpga.model.errors import InputError


def test_every_list_of_designs_is_the_registry():
    assert protocol.DESIGNS == tuple(DESIGNS)
    assert all(board.accelerator in DESIGNS for board in platforms.BOARDS.values())
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse has no public way)
    for name in ("verilog", "sim", "classify", "demo", "bench", "explore"):
        [design] = [a for a in subcommands[name]._actions if a.dest == "design"]  # noqa: SLF001
        assert list(design.choices) == list(DESIGNS), name


@pytest.mark.parametrize("name", list(DESIGNS))
def test_a_configuration_round_trips_through_its_fields(name):
    ws = weights.load(weights.ASSETS / "lenet5_pruned_pow2.npz")
    config = design_config(ws, GeneratorOptions(design=name, lanes=(4,)))
    assert designs.design_of(config).name == name == config.design
    fields = json.loads(json.dumps(designs.config_fields(config, ws.network)))
    assert designs.config_from_fields(fields, ws.network) == designs.canonical(config, ws.network)
    assert designs.design(name).multipliers(config, ws.network) > 0


def test_streaming_fields_spell_every_layer_and_old_records_read_as_streaming():
    ws = weights.load()
    config = design_config(ws, GeneratorOptions(lanes=(20,)))
    fields = designs.config_fields(config, ws.network)
    assert fields["linear_lanes"] == [20, 20, 20] and fields["conv_filters"] == [1, 1]
    del fields["design"]  # a results file written before the registry
    assert designs.config_from_fields(fields, ws.network) == designs.canonical(config, ws.network)


def test_options_that_size_another_design_are_refused_with_one_line():
    ws = weights.load()
    with pytest.raises(InputError, match="--filters sizes the streaming design"):
        design_config(ws, GeneratorOptions(design="compact", filters=(2,)))
    with pytest.raises(InputError, match="--preset fast sizes the streaming design"):
        design_config(ws, GeneratorOptions(design="compact", preset="fast"))
    with pytest.raises(InputError, match="needs a board to decide on"):
        designs.design("compact").configure(ws, GeneratorOptions(design="compact"))


@pytest.mark.verilator
@pytest.mark.xdist_group("dask-clusters")
@pytest.mark.parametrize("name", list(DESIGNS))
def test_each_design_through_every_path(name, tmp_path, capsys, monkeypatch, sim_build, mnist_dir):
    """sim on a local Dask cluster, bench and explore (golden, rtl) on two digits: bit-exact, and
    the three paths agree on the design's cycles."""
    from lenet_fpga.sim import runner

    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))
    monkeypatch.setenv("LENET_FPGA_BUILD", str(sim_build))
    design = ["--design", name]

    assert main(["sim", *design, "--scheduler", "local", "--jobs", "1", "--n", "2", "--json"]) == 0
    sim = json.loads(capsys.readouterr().out)["total"]
    assert sim["images"] == 2 and sim["mismatches"] == 0 and sim["design"].startswith(
        "compact" if name == "compact" else "filters")

    assert main(["bench", *design, "--rtl-images", "2", "--data", str(mnist_dir), "--json"]) == 0
    [row] = [r for r in json.loads(capsys.readouterr().out)["configs"] if r["name"] in (name, "baseline")]
    assert row["rtl"]["mismatches"] == 0 and row["rtl"]["images"] == 2
    assert row["latency_cycles"] == sim["cycles_min"]  # one image alone: start to done

    results = tmp_path / "results.jsonl"
    assert main(["explore", *design, "--stages", "golden,rtl", "--rtl-images", "2", "--jobs", "1",
                 "--data", str(mnist_dir), "--results", str(results), "--json"]) == 0
    [record] = [json.loads(line) for line in results.read_text().splitlines()]
    assert record["status"] == "done" and record["stages"]["rtl"]["mismatches"] == 0
    assert record["stages"]["rtl"]["interval_cycles"] == row["interval_cycles"]
    assert record["point"]["config"]["design"] == name
