"""Structured pruning (model/prune.py): the smaller network, which channels stay, which rows and
columns move into it, and the exactness of "fake pruning" (zero-filled channels) against the
physically pruned network."""

from __future__ import annotations

import numpy as np
import pytest

from lenet_fpga.model import golden, prune
from lenet_fpga.model.network import LENET5, Network, NetworkError

COUNTS = {"conv1": 4, "conv2": 12, "fc1": 60, "fc2": 40}


def test_pruned_network_and_its_macs():
    smaller = prune.pruned_network(LENET5, COUNTS)
    assert smaller.spec == "4,12:60,40"
    # conv1 24*24 positions * 25 taps * 4 filters             57,600
    # conv2  8*8 positions * 25 taps * 4 inputs * 12 filters  76,800
    # fc1 12 channels * 4*4 * 60                              11,520
    # fc2 60 * 40                                              2,400
    # fc3 40 * 10                                                400
    assert smaller.macs == 57_600 + 76_800 + 11_520 + 2_400 + 400 == 148_720
    assert prune.pruned_network(LENET5, {"fc1": 7}).spec == "6,16:7,84"


def test_the_last_layer_is_not_prunable():
    assert prune.prunable(LENET5) == ("conv1", "conv2", "fc1", "fc2")
    with pytest.raises(NetworkError, match="cannot prune fc3"):
        prune.pruned_network(LENET5, {"fc3": 5})


def test_strongest_keeps_the_largest_and_breaks_ties_by_index():
    # 3 is the largest; 2 and 2 tie for second: the lower index (2) stays
    assert prune.strongest(np.array([3.0, 1.0, 2.0, 2.0]), 2).tolist() == [0, 2]
    assert prune.strongest(np.array([1.0, 5.0, 4.0]), 3).tolist() == [0, 1, 2]
    with pytest.raises(NetworkError):
        prune.strongest(np.array([1.0, 2.0]), 0)


def test_importance_is_the_l1_norm_of_each_channels_weights():
    params = {name: np.zeros(shape) for name, shape in LENET5.parameter_shapes.items()}
    params["conv1.weight"][2, 0, 1, 1] = -3.0
    params["conv1.weight"][2, 0, 4, 0] = 2.0  # |-3| + |2| = 5
    params["conv1.weight"][5, 0, 0, 0] = 4.0
    params["fc2.weight"][7, :] = -0.5  # 120 inputs * 0.5 = 60
    importance = prune.channel_importance(params, LENET5)
    assert importance["conv1"].tolist() == [0, 0, 5, 0, 0, 4]
    assert importance["fc2"][7] == 60 and importance["fc2"].sum() == 60
    assert set(importance) == {"conv1", "conv2", "fc1", "fc2"}
    assert prune.select(params, LENET5, {"conv1": 2})["conv1"].tolist() == [2, 5]


def labelled_params(network: Network) -> dict[str, np.ndarray]:
    """Every weight says where it came from: 1000 * output + input index (+ kernel position / 100)."""
    params = {}
    for layer in network.layers:
        shape = layer.weight_shape
        out = np.arange(shape[0]).reshape(-1, *([1] * (len(shape) - 1)))
        inp = np.arange(shape[1]).reshape(1, -1, *([1] * (len(shape) - 2)))
        params[f"{layer.name}.weight"] = (1000.0 * out + inp) * np.ones(shape)
        params[f"{layer.name}.bias"] = np.arange(shape[0]) * 1.0
    return params


def test_prune_moves_the_right_rows_and_columns():
    params = labelled_params(LENET5)
    keep = {"conv1": np.array([1, 4]), "conv2": np.array([1, 3]), "fc1": np.array([0, 9, 100]),
            "fc2": np.array([83])}
    pruned, smaller = prune.prune(params, LENET5, keep)
    assert smaller.spec == "2,2:3,1"
    assert pruned["conv1.weight"].shape == (2, 1, 5, 5)
    assert np.unique(pruned["conv1.weight"][1]).tolist() == [4000.0]  # filter 4, input 0
    # conv2 keeps filters 1, 3 and, of its inputs, conv1's channels 1 and 4
    assert pruned["conv2.weight"][:, :, 0, 0].tolist() == [[1001, 1004], [3001, 3004]]
    assert pruned["conv2.bias"].tolist() == [1, 3]
    # fc1's inputs are conv2's 16 channels x 4 x 4, channel-major: channel 1 is columns 16..31,
    # channel 3 columns 48..63
    columns = np.r_[16:32, 48:64]
    assert pruned["fc1.weight"].shape == (3, 32)
    assert np.array_equal(pruned["fc1.weight"], 1000.0 * np.array([0, 9, 100])[:, None] + columns[None, :])
    assert pruned["fc2.weight"].tolist() == [[83000, 83009, 83100]]
    # the last layer keeps its 10 outputs and takes fc2's neuron 83
    assert pruned["fc3.weight"][:, 0].tolist() == [1000.0 * o + 83 for o in range(10)]
    assert pruned["fc3.bias"].tolist() == list(range(10))


@pytest.mark.parametrize("keep", [{"conv1": [0, 0]}, {"conv1": [6]}, {"conv1": []}, {"fc3": [1]}])
def test_prune_refuses_bad_channel_lists(keep):
    params = labelled_params(LENET5)
    with pytest.raises(NetworkError):
        prune.prune(params, LENET5, {k: np.array(v, int) for k, v in keep.items()})


def test_fake_pruned_and_pruned_networks_agree_on_every_logit(random_params):
    """A channel whose weights and bias are zero computes requantize(0) = 0 (ReLU and max-pool
    keep it), so removing it and zero-filling it give the same logits, in every arithmetic."""
    rng = np.random.default_rng(5)
    params = random_params(rng, 20)
    images = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    keep = {"conv1": np.array([0, 2, 3, 5]), "conv2": np.sort(rng.choice(16, 11, replace=False)),
            "fc1": np.sort(rng.choice(120, 50, replace=False)), "fc2": np.sort(rng.choice(84, 30, replace=False))}
    pruned, smaller = prune.prune(params, LENET5, keep)
    zeroed = prune.zero_fill(params, LENET5, keep)
    for arithmetic in golden.arith.Arithmetic(), golden.arith.Arithmetic("floor", "wrap"):
        expected = golden.forward(images, zeroed, arithmetic)
        assert np.array_equal(golden.forward(images, pruned, arithmetic, smaller), expected)
        # the check can fail: the same pruning of the unzeroed network gives other logits
        assert not np.array_equal(golden.forward(images, params, arithmetic), expected)


def test_zero_fill_without_the_bias_is_not_exact(random_params):
    """A dropped channel with a positive bias outputs a constant, which the pruned network lacks."""
    rng = np.random.default_rng(6)
    params = random_params(rng, 20)
    params["conv1.bias"][1] = 100
    images = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    keep = {"conv1": np.array([0, 2, 3, 4, 5])}
    pruned, smaller = prune.prune(params, LENET5, keep)
    weights_only = {k: v.copy() for k, v in params.items()}
    weights_only["conv1.weight"][1] = 0
    assert not np.array_equal(golden.forward(images, pruned, network=smaller), golden.forward(images, weights_only))
    assert np.array_equal(golden.forward(images, pruned, network=smaller),
                          golden.forward(images, prune.zero_fill(params, LENET5, keep)))
