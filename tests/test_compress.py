"""Compression (model/compress.py, search.py, cost.py, learned.py, qat.py's restricted fake-quant):
the fake-quant forward with restricted codes against the golden model, the greedy search's
choices on scores made by hand, the hardware cost model, and tiny compress runs end to end
through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lenet_fpga import cli
from lenet_fpga.model import arith, codes, cost, golden, network, weights
from lenet_fpga.model.codes import PLAIN, PowerOfTwo, Recipe, Ternary, Uniform
from lenet_fpga.model.errors import InputError

pytestmark = pytest.mark.torch

RESTRICTIONS = [Uniform(4, 1), Uniform(2, 3), Uniform(6, 0), PLAIN, Ternary(12), Ternary(7),
                PowerOfTwo((0, 2, 4)), PowerOfTwo(tuple(range(7))), PowerOfTwo((5,))]


@pytest.mark.parametrize("restriction", RESTRICTIONS, ids=str)
def test_torch_projection_equals_numpy_projection_including_every_tie(restriction):
    import torch

    from lenet_fpga.model.train import qat

    levels = restriction.levels.astype(np.float64)
    midpoints = (levels[:-1] + levels[1:]) / 2
    rng = np.random.default_rng(0)
    values = np.concatenate([levels, midpoints, -midpoints, midpoints + 1e-3, midpoints - 1e-3,
                             rng.uniform(-200, 200, 2000), [0.0, -0.0, 1e6, -1e6]]).astype(np.float32)
    expected = restriction.project(values.astype(np.float64))
    got = qat.project_codes(torch.from_numpy(values), restriction).numpy()
    assert np.array_equal(got, expected.astype(np.float32))
    assert restriction.allows(expected).all()


def random_float_params(rng, net: network.Network, scale: float = 0.3) -> dict[str, np.ndarray]:
    return {name: rng.normal(0, scale, shape).astype(np.float32) for name, shape in net.parameter_shapes.items()}


@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
@pytest.mark.parametrize("rounding", ["half-up", "floor"])
def test_fake_quant_with_restricted_codes_equals_golden_on_every_logit(rounding, overflow):
    """Float weights off the grid: the torch forward projects them onto each layer's codes;
    the exported codes obey the restrictions and the golden model gives the same logits."""
    import torch

    from lenet_fpga.model.train import qat

    rng = np.random.default_rng(1)
    arithmetic = arith.Arithmetic(rounding, overflow)
    restrictions = {"conv1": Uniform(5, 1), "conv2": PowerOfTwo((1, 3, 4)), "fc1": Ternary(9),
                    "fc2": Uniform(3, 2), "fc3": PowerOfTwo((0, 2, 3, 5))}
    params = random_float_params(rng, network.LENET5)
    model = qat.QuantLeNet(arithmetic, network.LENET5, restrictions)
    model.load_state_dict({name: torch.from_numpy(value) for name, value in params.items()})
    images = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    with torch.no_grad():
        fake = model.integer_logits(torch.from_numpy(images)).numpy()
    integer = model.integer_params()
    codes.check_codes(integer, restrictions)
    assert np.array_equal(fake, golden.forward(images, integer, arithmetic))
    # the restrictions change the codes: the plain 8-bit export of the same floats differs
    plain = {name: arith.quantize_weights(value) for name, value in params.items()}
    assert not np.array_equal(golden.forward(images, plain, arithmetic), fake)


def test_fake_quant_with_restricted_codes_on_a_pruned_network_and_mnist(mnist_test):
    import torch

    from lenet_fpga.model.train import qat

    net = network.Network.parse("4,12:60,40")
    rng = np.random.default_rng(2)
    restrictions = {"fc1": Uniform(3, 1), "fc2": Ternary(5), "conv2": PowerOfTwo((2, 3))}
    model = qat.QuantLeNet(arith.Arithmetic(), net, restrictions)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in random_float_params(rng, net, 0.2).items()})
    images = mnist_test.images[:500]
    with torch.no_grad():
        fake = model.integer_logits(torch.from_numpy(images.copy())).numpy()
    assert np.array_equal(fake, golden.forward(images, model.integer_params(), network=net))


def test_restricted_weight_passes_gradients_straight_through_inside_the_range():
    import torch

    from lenet_fpga.model.train import qat

    w = torch.tensor([0.05, -0.5, 0.3, 1.9], requires_grad=True)  # codes 3.2, -32, 19.2, 121.6
    # ternary {-12, 0, 12}: 3.2 -> 0, -32 -> -12 (outside: no gradient), 19.2 -> 12, 121.6 -> 12
    y = qat.restrict_weight(w, Ternary(12))
    assert (y * 64).tolist() == [0.0, -12.0, 12.0, 12.0]
    y.sum().backward()
    assert w.grad.tolist() == [1.0, 0.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------
# Cost model


def test_cost_of_lenet5_in_the_baseline_design():
    from lenet_fpga.hdl.cost import hardware_cost

    figures = hardware_cost(network.LENET5, {"fc1": Uniform(4, 1)}, "baseline")
    assert figures.macs == 281_640
    assert figures.weight_bits == 353_520 - 30_720 * 4
    # baseline: one filter (25 multipliers) per conv engine, 20 lanes per linear engine
    assert figures.multipliers == 25 + 25 + 20 + 20 + 20
    smaller = hardware_cost(network.Network.parse("4,12:60,40"), {}, "baseline")
    assert smaller.macs == 148_720 and smaller.multipliers == 110
    assert smaller.cycles < figures.cycles  # conv2, the slowest block, has 12 * 4 of 16 * 6 channel pairs


def test_the_search_needs_a_cost_model_only_for_the_generators_figures():
    from lenet_fpga.model.search import Search, Space

    images, labels = np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.int64)
    params = {name: np.zeros(shape, np.float32) for name, shape in network.LENET5.parameter_shapes.items()}
    space = Space({"conv1": (3, 6, 1)}, {})
    Search(params, network.LENET5, arith.Arithmetic(), space, images, labels, budgets={"macs": 250_000})
    with pytest.raises(InputError, match="weighs cycles: it needs a cost model"):
        Search(params, network.LENET5, arith.Arithmetic(), space, images, labels, budgets={"cycles": 5_000})


def test_cost_relative_is_a_weighted_mean_of_ratios():
    a = cost.Cost(macs=100, weight_bits=1000, multipliers=10, memory_bits=0, cycles=50, preset="x")
    b = cost.Cost(macs=50, weight_bits=250, multipliers=10, memory_bits=0, cycles=50, preset="x")
    # (1 * 250/1000 + 3 * 50/100) / 4 = (0.25 + 1.5) / 4
    assert b.relative(a, {"weight_bits": 1, "macs": 3}) == pytest.approx(0.4375)


# --------------------------------------------------------------------------------------------
# The greedy search, on scores made by hand


class HandScored:
    """Stands in for Search.score: a point's loss and cost from tables written in the test."""

    def __init__(self, search, loss_of):
        self.search, self.loss_of = search, loss_of

    def __call__(self, point):
        from lenet_fpga.model import search as search_module

        counts = dict(point.counts)
        recipes = {name: self.search.space.menus[name][i] for name, i in point.choices}
        net = network.LENET5
        from lenet_fpga.model import prune

        smaller = prune.pruned_network(net, counts)
        weight_bits = sum(int(np.prod(layer.weight_shape)) * recipes.get(layer.name, Recipe("uniform", 8)).bits
                          for layer in smaller.layers)
        figures = cost.Cost(smaller.macs, weight_bits, 0, 0, 0, "hand")
        return search_module.Score(point, smaller, recipes, {}, self.loss_of(counts, recipes), 1.0, figures)


def hand_search(space, loss_of, budgets, tradeoff=0.0, cost_weights=None):
    from lenet_fpga.model import search as search_module

    search = search_module.Search.__new__(search_module.Search)
    search.params, search.network, search.arithmetic, search.space = None, network.LENET5, arith.Arithmetic(), space
    search.budgets, search.tradeoff = budgets, tradeoff
    search.cost_weights = cost_weights or {"macs": 1.0}
    search._scores, search.evaluations = {}, 0
    search.score = HandScored(search, loss_of)
    search.start = search_module.Point(tuple((n, most) for n, (_, most, _) in space.counts.items()),
                                       tuple((n, 0) for n in space.menus))
    search.reference = search.score(search.start).cost
    return search


def test_search_takes_the_move_that_loses_least_per_unit_of_progress():
    from lenet_fpga.model.search import Space

    # Only conv1 and conv2 may move. LeNet-5 has 281,640 MACs; the budget 250,000 is 31,640
    # over: V = 31,640 / 250,000 = 0.12656. Loss: 0.5 per conv1 filter, 0.1 per conv2 filter.
    space = Space(counts={"conv1": (4, 6, 1), "conv2": (12, 16, 1)}, menus={})

    def loss_of(counts, recipes):
        return 0.5 * (6 - counts["conv1"]) + 0.1 * (16 - counts["conv2"])

    search = hand_search(space, loss_of, {"macs": 250_000})
    best, path = search.run(log=lambda *a: None)
    # conv1 6->5: -40,000 MACs (14,400 + 1,600*16), progress 31,640/250,000, loss +0.5:
    #   ratio 0.5 / 0.12656 = 3.95
    # conv2 16->15: -9,600 - 16*120 = -11,520 MACs (1,600*6 + fc1 16*120), progress 0.04608,
    #   loss +0.1: ratio 2.17 -> conv2 first. Then 270,120 still over by 20,120:
    #   conv1 (-14,400 - 1,600*15 = -38,400): progress 0.08048, ratio 6.2; conv2 again: -11,520,
    #   progress 0.04608, ratio 2.17 -> conv2. 258,600, over by 8,600: conv1 progress 0.0344
    #   (all of it), ratio 14.5; conv2 -11,520 also ends it: progress 0.0344, ratio 2.9 -> conv2.
    assert [step["move"] for step in path[1:]] == ["conv2 16->15 channels", "conv2 15->14 channels",
                                                   "conv2 14->13 channels"]
    assert best.network.spec == "6,13:120,84" and best.cost.macs == 247_080 <= 250_000


def test_search_harmless_moves_go_by_largest_progress_and_recipes_are_moves():
    from lenet_fpga.model.search import Space

    menus = {"fc1": (Recipe.parse("8"), Recipe.parse("4"), Recipe.parse("t")), "fc2": (Recipe.parse("8"),)}
    space = Space(counts={}, menus=menus)
    # fc1 at 4 bits: no loss; at ternary, loss 1. Budget: 300,000 weight bits (353,520 at 8).
    search = hand_search(space, lambda c, r: 1.0 if r["fc1"].kind == "ternary" else 0.0, {"weight_bits": 300_000})
    best, path = search.run(log=lambda *a: None)
    assert [step["move"] for step in path[1:]] == ["fc1 codes 8->4"]
    assert best.cost.weight_bits == 353_520 - 30_720 * 4


def test_search_with_a_tradeoff_keeps_going_while_the_reward_rises():
    from lenet_fpga.model.search import Space

    menus = {"fc1": (Recipe.parse("8"), Recipe.parse("4"), Recipe.parse("t"))}
    # reward = -loss - tradeoff * bits / 353,520. 8 -> 4 saves 122,880 bits (0.3476 of the
    # total), ternary 61,440 more (0.1738). With tradeoff 1: loss 0.1 at 4 bits is worth it
    # (0.3476 > 0.1); ternary at loss 0.4 is not (0.1738 < 0.3).
    loss = {"uniform8": 0.0, "uniform4": 0.1, "ternary2": 0.4}
    search = hand_search(Space({}, menus), lambda c, r: loss[r["fc1"].kind + str(r["fc1"].bits)], {},
                         tradeoff=1.0, cost_weights={"weight_bits": 1.0})
    best, path = search.run(log=lambda *a: None)
    assert [step["move"] for step in path[1:]] == ["fc1 codes 8->4"]


def test_search_says_when_the_budget_cannot_be_met():
    from lenet_fpga.model.errors import InputError
    from lenet_fpga.model.search import Space

    search = hand_search(Space({"conv1": (5, 6, 1)}, {}), lambda c, r: 0.0, {"macs": 100_000})
    with pytest.raises(InputError, match="macs <= 100,000 cannot be met"):
        search.run(log=lambda *a: None)


# --------------------------------------------------------------------------------------------
# End to end through the CLI (a few hundred training images: seconds, not minutes)


def run_compress(tmp_path, mnist_dir, *options) -> tuple[int, weights.WeightSet | None]:
    out = tmp_path / "small.npz"
    code = cli.main(["compress", "--data", str(mnist_dir), "--out", str(out), "--train-images", "512",
                     "--search-images", "300", "--epochs", "1", "--threads", "1", *options])
    return code, (weights.load(out) if code == 0 else None)


def test_compress_end_to_end(tmp_path, mnist_dir, mnist_test, capsys):
    code, ws = run_compress(tmp_path, mnist_dir, "--max-macs", "200000", "--codes", "conv=8,fc1=4/t,fc2=p3")
    assert code == 0
    net = ws.network
    assert net.macs <= 200_000 and net.classes == 10
    # fc2 is power of two in 3 bits, fc1 4-bit or ternary; the rest 8-bit
    assert ws.codes["fc2"].kind == "power-of-two" and len(ws.codes["fc2"].exponents) <= 3
    assert ws.codes["fc1"].kind in ("uniform", "ternary") and ws.codes["fc1"].bits <= 4
    assert ws.codes["conv1"] == PLAIN == ws.codes["fc3"]
    manifest = ws.manifest
    assert manifest["cost"]["macs"] == net.macs
    assert manifest["cost"]["weight_bits"] == codes.weight_bits(net, ws.codes)
    # the recorded accuracy is the golden model's on the test set
    logits = golden.forward(mnist_test.images, ws.params, ws.arithmetic, net)
    assert manifest["accuracy"]["fixed"] == golden.accuracy(logits, mnist_test.labels)
    assert manifest["compression"]["config"]["budgets"] == {"macs": 200_000}
    assert manifest["compression"]["search"][0]["move"] == "start"
    assert "wrote" in capsys.readouterr().out
    # float checkpoint beside it: eval reads both
    assert cli.main(["eval", "--weights", str(ws.path), "--data", str(mnist_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fixed_accuracy"] == manifest["accuracy"]["fixed"] and "float_accuracy" in result


@pytest.mark.slow  # CI runs compress end to end; a second, identical run is slow
def test_compress_is_deterministic(tmp_path, mnist_dir):
    first = run_compress(tmp_path / "a", mnist_dir, "--channels", "conv1=5,fc1=50", "--codes", "fc=3")[1]
    second = run_compress(tmp_path / "b", mnist_dir, "--channels", "conv1=5,fc1=50", "--codes", "fc=3")[1]
    assert first.network.spec == "5,16:50,84"
    for name in first.params:
        assert np.array_equal(first[name], second[name])


@pytest.mark.parametrize(("options", "fragments"), [
    (["--codes", "fc9=4"], ["--codes names 'fc9'"]),
    (["--codes", "fc1=9"], ["--codes fc1=9: uniform bits must be 2..8"]),
    (["--codes", "fc1=4/q"], ["--codes fc1=4/q: cannot read the restriction 'q'"]),
    (["--channels", "fc3=5"], ["--channels names 'fc3'"]),
    (["--channels", "conv1=7"], ["conv1 has 6 channels"]),
    (["--channels", "conv1"], ["expected NAME=VALUE"]),
    (["--cost-preset", "huge"], ["unknown preset 'huge'"]),
    (["--min-keep", "2"], ["--min-keep"]),
    (["--max-macs", "1000"], ["cannot be met"]),
])
def test_compress_option_errors_are_one_line(tmp_path, mnist_dir, capsys, options, fragments):
    code, _ = run_compress(tmp_path, mnist_dir, *options)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("lenet-fpga compress: error:")
    for fragment in fragments:
        assert fragment in err


# --------------------------------------------------------------------------------------------
# Learned sparsity and bit widths


def gated_model(space, beta=None, alpha=None, seed=3):
    import torch

    from lenet_fpga.model.train import learned

    rng = np.random.default_rng(seed)
    params = random_float_params(rng, network.LENET5, 0.2)
    model = learned.GatedLeNet(arith.Arithmetic(), network.LENET5, space)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=False)
    model.refit()
    with torch.no_grad():
        for name, value in (beta or {}).items():
            model.beta[name].fill_(value)
        for name, value in (alpha or {}).items():
            model.alpha[name].copy_(torch.tensor(value))
    return model, params


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_gated_forward_is_the_zero_filled_network_exactly():
    """Hard gates switch whole channels off: the forward pass is the fake-quant network with
    the weakest channels (by L1 norm) zero-filled, which the golden model computes exactly."""
    import torch

    from lenet_fpga.model import prune
    from lenet_fpga.model.search import Space

    menus = {name: (Recipe.parse("8"),) for name in network.LENET5.names}
    menus["fc1"] = (Recipe.parse("t"),)
    space = Space({"conv1": (2, 6, 1), "conv2": (4, 16, 1), "fc1": (30, 120, 10)}, menus)
    # conv1: sigmoid(beta) * 6 = 2 channels off; conv2 4 of 16 off; fc1 30 of 120 off
    model, params = gated_model(space, beta={"conv1": logit(2 / 6), "conv2": logit(4 / 16), "fc1": logit(30 / 120)})
    images = np.random.default_rng(4).integers(0, 256, (32, 28, 28), dtype=np.uint8)
    with torch.no_grad():
        gated = model.integer_logits(torch.from_numpy(images)).numpy()
    counts = {"conv1": 4, "conv2": 12, "fc1": 90}
    assert model.choices() == (counts, {})
    keep = prune.select(params, network.LENET5, counts)
    codes_ = {name: r for name, r in model.codes.items() if name == "fc1"}
    integer = {name: (codes_["fc1"].project(v * 64) if name == "fc1.weight" else arith.quantize_weights(v))
               for name, v in params.items()}
    assert np.array_equal(gated, golden.forward(images, prune.zero_fill(integer, network.LENET5, keep)))


def test_expected_cost_of_whole_channel_counts_is_the_networks_cost():
    from lenet_fpga.model import prune
    from lenet_fpga.model.search import Space

    menus = {name: (Recipe.parse("8"),) for name in network.LENET5.names}
    menus["fc1"] = (Recipe.parse("8"), Recipe.parse("4"))
    space = Space({"conv1": (1, 6, 1), "conv2": (1, 16, 1), "fc1": (1, 120, 10), "fc2": (1, 84, 7)}, menus)
    # 3 of conv1's 6 off, 4 of conv2's 16, 60 of fc1's 120, 21 of fc2's 84; fc1's two branches
    # equally likely: 6 bits on average
    model, _ = gated_model(space, beta={"conv1": logit(3 / 6), "conv2": logit(4 / 16), "fc1": logit(60 / 120),
                                        "fc2": logit(21 / 84)}, alpha={"fc1": [0.0, 0.0]})
    smaller = prune.pruned_network(network.LENET5, {"conv1": 3, "conv2": 12, "fc1": 60, "fc2": 63})
    expected = model.expected_cost()
    assert expected["macs"].item() == pytest.approx(smaller.macs, rel=1e-6)
    fc1_weights = 12 * 16 * 60
    assert expected["weight_bits"].item() == pytest.approx((smaller.weights - fc1_weights) * 8 + fc1_weights * 6,
                                                           rel=1e-6)
    # 1.4 channels of sparsity are 1 channel off (the hard gates), 1.6 are 2
    model, _ = gated_model(space, beta={"conv1": logit(1.4 / 6), "conv2": logit(1.6 / 16)})
    assert model.choices()[0]["conv1"] == 5 and model.choices()[0]["conv2"] == 14


def test_compress_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compress", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lenet-fpga compress")
    for option in ("--max-macs", "--max-weight-bits", "--codes", "--channels", "--method", "--tradeoff"):
        assert option in out


# --------------------------------------------------------------------------------------------
# The shipped compressed networks: the figures docs/compression.md gives


ASSETS = weights.ASSETS
SHIPPED = {
    # file: (largest MACs, largest weight bits, layers that must be power of two)
    "lenet5_pruned.npz": (155_000, None, ()),
    "lenet5_lowbit.npz": (None, 88_000, ()),
    "lenet5_pow2.npz": (None, None, ("fc1", "fc2", "fc3")),
    "lenet5_small.npz": (155_000, 88_000, ()),
    "lenet5_compact.npz": (140_000, None, ()),
    "lenet5_pruned_pow2.npz": (140_000, 88_000, ("conv1", "conv2", "fc1", "fc2", "fc3")),
    "lenet5_40kbit.npz": (None, 40_000, ()),  # issue 26: 99.0 % in 40 kbit of weight codes
    # issue 26: 4-bit activations and power-of-two weights
    "lenet5_act4_pow2.npz": (140_000, 88_000, ("conv1", "conv2", "fc1", "fc2", "fc3")),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_compressed_network_meets_its_figures(name, mnist_test):
    path = ASSETS / name
    ws = weights.load(path)  # checks every code against its restriction
    max_macs, max_bits, pow2_layers = SHIPPED[name]
    net = ws.network
    if max_macs is not None:
        assert net.macs <= max_macs
    if max_bits is not None:
        assert codes.weight_bits(net, ws.codes) <= max_bits
    for layer in pow2_layers:
        assert ws.codes[layer].kind == "power-of-two" and ws.codes[layer].power_of_two_levels
        assert set(np.unique(np.abs(ws[f"{layer}.weight"].astype(int)))) <= {0, 1, 2, 4, 8, 16, 32, 64}
    logits = golden.forward(mnist_test.images, ws.params, ws.arithmetic, net)
    accuracy = golden.accuracy(logits, mnist_test.labels)
    assert accuracy >= 0.99
    assert accuracy == ws.manifest["accuracy"]["fixed"]
    assert ws.manifest["cost"]["macs"] == net.macs
    assert ws.manifest["cost"]["weight_bits"] == codes.weight_bits(net, ws.codes)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet5_lowbit", "lenet5_40kbit"])
def test_shipped_network_is_reproduced_by_its_command(tmp_path, mnist_dir, name):
    """The command in docs/compression.md gives the shipped file back, code for code (minutes)."""
    shipped = weights.load(ASSETS / f"{name}.npz")
    config = shipped.manifest["compression"]["config"]
    out = tmp_path / "again.npz"
    assert cli.main(["compress", "--data", str(mnist_dir), "--out", str(out),
                     "--max-weight-bits", str(config["budgets"]["weight_bits"]),
                     "--codes", ",".join(f"{k}={v}" for k, v in config["codes"].items()),
                     "--threads", str(shipped.manifest["compression"]["threads"])]) == 0
    again = weights.load(out)
    assert again.network == shipped.network and again.codes == shipped.codes
    for key in shipped.params:
        assert np.array_equal(again[key], shipped[key])


def test_compress_refuses_restricted_codes_but_takes_a_pruned_network(tmp_path, mnist_dir, capsys):
    """A source with restricted codes is refused, naming the layers; a pruned network whose
    manifest names only plain 8-bit codes is a start like any other."""
    code = cli.main(["compress", "--data", str(mnist_dir), "--weights", str(ASSETS / "lenet5_lowbit.npz"),
                     "--out", str(tmp_path / "x.npz")])
    assert code == 2
    assert "already has restricted weight codes (fc1, fc2, fc3)" in capsys.readouterr().err
    pruned = weights.load(ASSETS / "lenet5_compact.npz")
    assert pruned.manifest["codes"] and all(r == codes.PLAIN for r in pruned.codes.values())
    out = tmp_path / "again.npz"
    assert cli.main(["compress", "--data", str(mnist_dir), "--weights", str(ASSETS / "lenet5_compact.npz"),
                     "--out", str(out), "--epochs", "1", "--train-images", "256", "--search-images", "256",
                     "--threads", "1"]) == 0
    assert weights.load(out).network == pruned.network
