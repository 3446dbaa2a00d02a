"""Networks other than LeNet-5 through the whole flow: both generators bit-exact against the
golden model in every arithmetic mode, and a small network from training to RTL on the command
line. ``-m slow`` adds a wider network, a 32x32 input and a 12-class network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lenet_fpga.cli import main
from lenet_fpga.hdl.compact import CompactConfig
from lenet_fpga.hdl.lenet import preset
from lenet_fpga.model import arith, golden, weights
from lenet_fpga.model.network import Network
from lenet_fpga.sim.network import simulate
from rtl_checks import check_bit_exact, stimulus

MODES = list(arith.ARITHMETICS)


def large_random_weights(network: Network, seed: int) -> weights.WeightSet:
    """Codes over the whole int8 range: every layer overflows, so every mode is told apart."""
    rng = np.random.default_rng(seed)
    params = {name: rng.integers(-128, 128, shape).astype(np.int8) for name, shape in network.parameter_shapes.items()}
    return weights.WeightSet(params, weights.make_manifest(arith.Arithmetic(), network))


def assert_overflows(ws: weights.WeightSet, imgs: np.ndarray, mode: arith.Arithmetic) -> None:
    _, trace = golden.forward(imgs, ws.params, mode, ws.network, trace=True)
    hidden = [layer.name for layer in ws.network.layers[:-1]]
    acc = np.concatenate([trace[f"{name}.acc"].reshape(-1) for name in hidden])
    assert (np.abs(acc) >= (arith.QMAX + 1) << arith.FRAC_BITS).any(), "no overflow: the test would prove nothing"


SMALL = Network.parse("4,10:60,40")


# LeNet-5 goes through all four modes in test_network_rtl and test_compact_rtl; here the two
# that differ in both choices, and all four in the slow test below.
@pytest.mark.parametrize("mode", [MODES[0], MODES[-1]], ids=lambda a: f"{a.rounding}-{a.overflow}")
def test_small_network_both_designs(mode, simulator, sim_build):
    """4,10:60,40: the streaming design at its 'fast' sizes (4 and 5 filters at once, lanes
    13,4,1) and the compact design on 8 lanes (conv1's 4 filters leave half the array idle)."""
    ws = large_random_weights(SMALL, 20)
    imgs = stimulus(SMALL, 2 if simulator == "verilator" else 1, 21)
    assert_overflows(ws, imgs, mode)
    fast = preset("fast", SMALL, mode)
    assert fast.conv_filters == (4, 5)
    check_bit_exact(simulate(ws, imgs, fast, simulator=simulator, build_root=sim_build), f"streaming fast, {mode.describe()}")
    run = simulate(ws, imgs, CompactConfig(mode, lanes=8), simulator=simulator, build_root=sim_build)
    check_bit_exact(run, f"compact, {mode.describe()}")
    assert (run.cycles == sum(run.model.values())).all()


@pytest.mark.torch
def test_small_network_from_training_to_rtl_on_the_command_line(tmp_path, capsys, mnist_dir, simulator):
    """train (briefly) -> eval -> verilog -> sim, both designs: what a user of another network does.
    (On the suite's simulator: two images of a small network take less on Icarus than two
    Verilator builds.)"""
    out = tmp_path / "small.npz"
    assert main(["train", "--network", "4,10:60,40", "--epochs", "1", "--qat-epochs", "1", "--train-images", "2000",
                 "--data", str(mnist_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    assert weights.load(out).network == SMALL
    assert main(["eval", "--weights", str(out), "--data", str(mnist_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["network"] == "4,10:60,40" and report["fixed_accuracy"] == report["recorded_accuracy"]
    assert main(["verilog", "--weights", str(out), "--preset", "fast", "-o", str(tmp_path / "small.v"), "--json"]) == 0
    layers = {row["layer"]: row for row in json.loads(capsys.readouterr().out)["layers"]}
    assert layers["conv1"]["multipliers"] == 4 * 25 and layers["fc1"]["macs"] == 160 * 60
    for design in ("streaming", "compact"):
        assert main(["sim", "--weights", str(out), "--design", design, "--n", "2", "--simulator", simulator,
                     "--json"]) == 0, design
        total = json.loads(capsys.readouterr().out)["total"]
        assert total["mismatches"] == 0 and total["images"] == 2, design


SLOW_NETWORKS = ["8,20:150,100", "32/6,16:120,84", "8k3p2,20k4:150:12"]


@pytest.mark.slow
@pytest.mark.parametrize("spec", SLOW_NETWORKS)
@pytest.mark.parametrize("mode", MODES, ids=lambda a: f"{a.rounding}-{a.overflow}")
def test_other_networks_both_designs_every_mode_verilator(spec, mode, sim_build):
    network = Network.parse(spec)
    ws = large_random_weights(network, 30)
    imgs = stimulus(network, 6, 31)
    assert_overflows(ws, imgs, mode)
    for config in (preset("baseline", network, mode), preset("fast", network, mode), CompactConfig(mode, lanes=8)):
        check_bit_exact(simulate(ws, imgs, config, simulator="verilator", build_root=sim_build), f"{spec} {config}")


def restricted_weights(network: Network, codes: dict, seed: int) -> weights.WeightSet:
    """Random weights drawn from each layer's restricted levels (the rest 8-bit), in a manifest
    that records the restrictions, as `compress` writes them."""
    from lenet_fpga.model.codes import check_codes, codes_to_manifest

    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in network.parameter_shapes.items():
        layer = name.split(".")[0]
        levels = codes[layer].levels if name.endswith(".weight") and layer in codes else np.arange(-128, 128)
        params[name] = rng.choice(levels, size=shape).astype(np.int8)
    manifest = weights.make_manifest(arith.Arithmetic(), network, codes=codes_to_manifest(codes))
    check_codes(params, codes)
    return weights.WeightSet(params, manifest)


def test_restricted_codes_network_both_designs(simulator, sim_build):
    """Every weight form in one network: 4-bit conv1 (two filters a DSP), 3-bit conv2, power-of-
    two fc1, ternary fc2, 5-bit fc3; streaming at its fast sizes and the compact design."""
    from lenet_fpga.hdl.accelerator import layer_report
    from lenet_fpga.model.codes import PowerOfTwo, Ternary, Uniform

    codes = {"conv1": Uniform(4, 2), "conv2": Uniform(3, 1), "fc1": PowerOfTwo((0, 2, 4)), "fc2": Ternary(9),
             "fc3": Uniform(5, 1)}
    ws = restricted_weights(SMALL, codes, 40)
    assert ws.codes == codes
    imgs = stimulus(SMALL, 2 if simulator == "verilator" else 1, 41)
    fast = preset("fast", SMALL, arith.Arithmetic(), codes=ws.codes)
    rows = {row.layer: row for row in layer_report(ws, fast)}
    # conv1: 4 filters x 25 taps, packed two to a DSP (50); conv2: 5 filters (odd: unpacked),
    # 125 more would pass the 156 DSPs, so logic; fc1 and fc2 select, no DSP; fc3 one lane.
    assert fast.soft_multipliers == ("conv2",)
    assert [rows[name].dsp for name in ("conv1", "conv2", "fc1", "fc2", "fc3")] == [50, 0, 0, 0, 1]
    assert rows["fc1"].weight_bits == 3 and rows["fc2"].weight_bits == 2
    check_bit_exact(simulate(ws, imgs, fast, simulator=simulator, build_root=sim_build), "restricted codes, streaming")
    check_bit_exact(simulate(ws, imgs, CompactConfig(lanes=8), simulator=simulator, build_root=sim_build),
          "restricted codes, compact")


@pytest.mark.torch
def test_train_from_a_weights_file_keeps_its_network(tmp_path, capsys, mnist_dir):
    """--from: the network is the file's; naming another network is an error."""
    first = tmp_path / "first.npz"
    weights.save(first, large_random_weights(SMALL, 50).params,
                 weights.make_manifest(arith.Arithmetic(), SMALL))
    assert main(["train", "--from", str(first), "--network", "6,16:120,84", "--data", str(mnist_dir),
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "is not the network of --from" in capsys.readouterr().err
    out = tmp_path / "second.npz"
    assert main(["train", "--from", str(first), "--epochs", "1", "--qat-epochs", "0", "--train-images", "256",
                 "--data", str(mnist_dir), "--out", str(out)]) == 0
    second = weights.load(out)
    assert second.network == SMALL and second.manifest["training"]["started_from"] == str(first)
