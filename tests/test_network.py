"""The network description (model/network.py) and everything that takes it from a weights file:
the manifest, the shape checks, the golden model, the presets that resolve against it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lenet_fpga.hdl.lenet import preset
from lenet_fpga.model import arith, golden, weights
from lenet_fpga.model.errors import InputError
from lenet_fpga.model.network import LENET5, ConvLayer, ConvSpec, LinearLayer, Network, NetworkError

SMALL = Network((ConvSpec(4), ConvSpec(10)), (60, 40))


def random_params(network: Network, seed: int = 0, scale: int = 60) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.integers(-scale, scale + 1, shape).astype(np.int8)
            for name, shape in network.parameter_shapes.items()}


def test_lenet5_layers_worked_out_by_hand():
    """28 -> conv 5x5 -> 24 -> pool -> 12 -> conv 5x5 -> 8 -> pool -> 4; 16 * 4 * 4 = 256 features."""
    assert LENET5.layers == (
        ConvLayer("conv1", 1, 6, 28, 5, 2),
        ConvLayer("conv2", 6, 16, 12, 5, 2),
        LinearLayer("fc1", 256, 120),
        LinearLayer("fc2", 120, 84),
        LinearLayer("fc3", 84, 10, last=True),
    )
    # MACs: 24*24*6*25 + 8*8*16*6*25 + 256*120 + 120*84 + 84*10
    assert LENET5.macs == 86_400 + 153_600 + 30_720 + 10_080 + 840 == 281_640
    assert LENET5.weights == 150 + 2_400 + 30_720 + 10_080 + 840 == 44_190
    assert LENET5.pixels == 784


@pytest.mark.parametrize("spec, layers", [
    ("4,10:60,40", [(1, 4, 28), (4, 10, 12), (160, 60), (60, 40), (40, 10)]),
    ("32/6,16:120,84", [(1, 6, 32), (6, 16, 14), (400, 120), (120, 84), (84, 10)]),
    ("8k3p2,20k4:150:12", [(1, 8, 28), (8, 20, 13), (20 * 5 * 5, 150), (150, 12)]),
    ("6p4:", [(1, 6, 28), (6 * 6 * 6, 10)]),
    ("32x3/6,16:120,84", [(3, 6, 32), (6, 16, 14), (400, 120), (120, 84), (84, 10)]),
    ("28x2/4:", [(2, 4, 28), (4 * 12 * 12, 10)]),
])
def test_spec_builds_the_chain(spec, layers):
    """Each conv's input is the previous one's pooled output; fc1 reads the last conv's map."""
    network = Network.parse(spec)
    got = [(l.in_channels, l.out_channels, l.in_size) if isinstance(l, ConvLayer) else (l.in_features, l.out_features)
           for l in network.layers]
    assert got == layers
    assert Network.parse(network.spec) == network
    assert Network.from_dict(json.loads(json.dumps(network.to_dict()))) == network
    assert network.layers[-1].last and not any(l.last for l in network.linear_layers[:-1])


@pytest.mark.parametrize("spec, message", [
    ("6,16", "expected [SIZE[xCHANNELS]/]CONVS:HIDDEN[:CLASSES]"),
    ("32x0/6,16:120", "input channels must be at least 1, not 0"),
    ("32x17/6,16:120", "input channels must be at most 16, not 17"),
    ("x3/6,16:120", "expected"),
    ("32x3x3/6,16:120", "expected"),
    (":120", "expected"),
    ("6,16:120:1", "at least 2 classes"),
    ("6,16:0", "fc1 width must be at least 1"),
    ("0,16:120", "conv1 filters must be at least 1"),
    ("6k1:120", "1x1 kernel"),
    ("6k30:120", "a 30x30 kernel does not fit its 28x28 input"),
    ("4k3,10:60", "conv2: a 2x2 pool does not divide its 9x9 output"),
    ("6,16,16:120", "conv3: a 5x5 kernel does not fit its 4x4 input"),
])
def test_bad_specs_say_why(spec, message):
    with pytest.raises(NetworkError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Network.parse(spec)


@pytest.mark.parametrize("value, message", [
    ([1, 2], "must be an object"),
    ({"convs": 6}, "must be a list"),
    ({"convs": [{"channels": 6, "stride": 2}]}, "conv 1 must be an object with channels"),
    ({"convs": [{"channels": 6}], "hidden": [120], "padding": 2}, "unknown network field"),
    ({"convs": [{"channels": "6"}]}, "conv1 filters must be a whole number"),
    ({"convs": [{"channels": 6}], "classes": True}, "classes must be a whole number"),
    ({"convs": [{"channels": 6}], "input_channels": "3"}, "input channels must be a whole number, not '3'"),
    ({"convs": [{"channels": 6}], "input_channels": 0}, "input channels must be at least 1"),
])
def test_bad_manifest_networks_say_why(value, message):
    with pytest.raises(NetworkError, match=message):
        Network.from_dict(value)


def test_input_channels_spelling_and_manifest_form():
    """Grey networks spell and store as before channels existed; a C-channel network adds xC to
    its size and ``input_channels`` to its manifest form, and streams S*S*C bytes an image."""
    assert "input_channels" not in LENET5.to_dict() and LENET5.input_shape == (28, 28)
    rgb = Network.parse("32x3/6,16:120,84")
    assert rgb.input_channels == 3 and rgb.spec == "32x3/6,16:120,84" and rgb.pixels == 32 * 32 * 3
    assert rgb.to_dict()["input_channels"] == 3 and rgb.input_shape == (3, 32, 32)
    assert Network.parse("28x3/6,16:120,84").spec == "28x3/6,16:120,84"
    assert Network.parse("32x1/6,16:120,84").spec == "32/6,16:120,84"
    # without xC, the caller's default (a data set's channels)
    assert Network.parse("6,16:120,84", image_size=32, input_channels=3) == rgb
    assert Network.from_dict({"convs": [6, 16], "hidden": [120, 84]}, 32, 10, 3) == rgb
    assert rgb.parameter_shapes["conv1.weight"] == (6, 3, 5, 5)


def test_golden_model_of_a_colour_network_sums_its_channels():
    """A C-channel network's conv1 is the sum over the channels: with conv1's weights on one
    channel only, its logits are the grey network's on that channel alone (the other channels
    may hold anything)."""
    grey, rgb = Network.parse("12/3k3,4k3p1:8:3"), Network.parse("12x3/3k3,4k3p1:8:3")
    params = random_params(grey, seed=5)
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, (5, 3, 12, 12), dtype=np.uint8)
    for channel in range(3):
        colour = dict(params)
        colour["conv1.weight"] = np.zeros((3, 3, 3, 3), np.int8)
        colour["conv1.weight"][:, channel] = params["conv1.weight"][:, 0]
        for mode in arith.ARITHMETICS:
            np.testing.assert_array_equal(golden.forward(images, colour, mode, rgb),
                                          golden.forward(images[:, channel], params, mode, grey))
    with pytest.raises(ValueError, match=r"images must be \[N,3,12,12\]"):
        golden.forward(images[:, 0], colour, arith.Arithmetic(), rgb)
    assert golden.forward(images[0], colour, arith.Arithmetic(), rgb).shape == (1, 3)  # one image


def test_a_network_error_is_an_input_error():
    """The CLI turns InputError into one line and exit 2; NetworkError must be one."""
    assert issubclass(NetworkError, InputError)


# --------------------------------------------------------------------------------------------
# weights files carry the network


def test_weights_file_of_another_network_round_trips(tmp_path):
    params = random_params(SMALL)
    path = weights.save(tmp_path / "small.npz", params, weights.make_manifest(arith.Arithmetic(), SMALL))
    ws = weights.load(path)
    assert ws.network == SMALL and ws.network.spec == "4,10:60,40"
    assert all(np.array_equal(ws.params[name], params[name]) for name in params)


def test_version_1_manifest_loads_as_lenet5(tmp_path):
    path = weights.save(tmp_path / "w.npz", random_params(LENET5), weights.make_manifest(arith.Arithmetic()))
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest["format_version"] = 1
    del manifest["network"]
    path.with_suffix(".json").write_text(json.dumps(manifest))
    assert weights.load(path).network == LENET5


def test_version_2_manifest_without_network_is_refused(tmp_path):
    path = weights.save(tmp_path / "w.npz", random_params(LENET5), weights.make_manifest(arith.Arithmetic()))
    manifest = json.loads(path.with_suffix(".json").read_text())
    del manifest["network"]
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="must name its 'network'"):
        weights.load(path)


def test_arrays_that_disagree_with_the_manifest_are_refused(tmp_path):
    """LeNet-5 arrays under a manifest that says 4,10:60,40: every shape is checked."""
    path = weights.save(tmp_path / "w.npz", random_params(LENET5), weights.make_manifest(arith.Arithmetic()))
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest["network"] = SMALL.to_dict()
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"conv1.weight has shape \[6, 1, 5, 5\], the network 4,10:60,40 needs "
                                         r"\[4, 1, 5, 5\]"):
        weights.load(path)


def test_renamed_layers_are_a_clear_error(tmp_path):
    params = {name.replace("fc", "dense"): value for name, value in random_params(LENET5).items()}
    with pytest.raises(InputError, match="missing .*fc1.weight.* unexpected .*dense1.weight"):
        weights.check_params(params, LENET5)


@pytest.mark.parametrize("field, value, message", [
    ("float_weights", 123, "'float_weights' must be a string, not number"),
    ("accuracy", "high", "'accuracy' must be a object, not string"),
    ("training", [1], "'training' must be a object, not list"),
])
def test_manifest_fields_of_the_wrong_type_are_refused_on_load(tmp_path, field, value, message):
    path = weights.save(tmp_path / "w.npz", random_params(LENET5), weights.make_manifest(arith.Arithmetic()))
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest[field] = value
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=message):
        weights.load(path)


def test_deeply_nested_manifest_is_refused(tmp_path):
    path = weights.save(tmp_path / "w.npz", random_params(LENET5), weights.make_manifest(arith.Arithmetic()))
    path.with_suffix(".json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested too deeply|not a lenet-fpga weights manifest"):
        weights.load(path)


# --------------------------------------------------------------------------------------------
# the golden model follows the network, and refuses arrays of another one


def test_golden_model_runs_another_network_and_its_input_size():
    network = Network.parse("32/4,10:60,40")
    params = random_params(network, 1, 30)
    images = np.random.default_rng(2).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    logits, trace = golden.forward(images, params, arith.Arithmetic(), network, trace=True)
    assert logits.shape == (3, 10)
    assert trace["conv2.pool"].shape == (3, 10, 5, 5) and trace["fc1"].shape == (3, 60)
    with pytest.raises(ValueError, match=r"images must be \[N,32,32\]"):
        golden.forward(images[:, :28, :28], params, arith.Arithmetic(), network)


def test_golden_model_refuses_arrays_of_another_network():
    """Before, the default layer list silently ran whatever shapes the arrays had."""
    images = np.zeros((1, 28, 28), np.uint8)
    with pytest.raises(ValueError, match=r"conv1.weight has shape \[4, 1, 5, 5\], the network 6,16:120,84"):
        golden.forward(images, random_params(SMALL), arith.Arithmetic())


# --------------------------------------------------------------------------------------------
# presets are rules resolved against the network


def test_fast_preset_on_lenet5_is_the_hand_balanced_design():
    """Balanced to 784 cycles: conv1 24*24*1*6/f <= 784 -> f = 6; conv2 8*8*6*16/f <= 784 -> f = 8;
    fc1 120*ceil(256/L) <= 784 -> L = 43; fc2 84*ceil(120/L) <= 784 -> L = 14; fc3 10*ceil(84/L)
    -> L = 2. DSPs: conv1's 150 fit the 156, conv2's 200 do not, fc1 (43) and fc2 (14) do not
    fit the 6 left, fc3's 2 do."""
    config = preset("fast", LENET5)
    assert config.conv_filters == (6, 8) and config.linear_lanes == (43, 14, 2)
    assert config.soft_multipliers == ("conv2", "fc1", "fc2")


def test_presets_scale_to_a_small_network():
    """4,10:60,40: conv1 576*4/f <= 784 -> f = 4; conv2 64*4*10/f <= 784 -> f = 5 (divisors of 10:
    1, 2, 5, 10); fc1 60*ceil(160/L) <= 784 -> ceil <= 13 -> L = 13; fc2 40*ceil(60/L) <= 784 ->
    ceil <= 19 -> L = 4 (3 gives 20); fc3 10*ceil(40/L) <= 784 -> L = 1."""
    config = preset("fast", SMALL)
    assert config.conv_filters == (4, 5) and config.linear_lanes == (13, 4, 1)
    base = preset("baseline", SMALL)
    assert base.linear_lanes == (20, 20, 20) and base.conv_filters == 1
    one_hidden = Network.parse("4,10:12")
    assert preset("baseline", one_hidden).linear_lanes == (20, 12)


def test_configuration_that_does_not_fit_the_network_says_why():
    from lenet_fpga.hdl.lenet import StreamingConfig

    with pytest.raises(InputError, match="conv2 has 10 filters: 4 at once does not divide them"):
        StreamingConfig(conv_filters=(4, 4)).check(SMALL)
    with pytest.raises(InputError, match="lanes 1,2: 2 values for the 3 linear layers"):
        StreamingConfig(linear_lanes=(1, 2)).check(SMALL)
    with pytest.raises(InputError, match="soft multipliers for fc9"):
        StreamingConfig(soft_multipliers=("fc9",)).check(SMALL)
