"""The numpy golden model (model/golden.py) against a slow nested-loop reference and against the
PyTorch fake-quant model (model/qat.py)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from lenet_fpga.model import arith, golden, network
from lenet_fpga.model.arith import Overflow, Rounding

MODES = [(r, o) for r in Rounding for o in Overflow]
MODE_IDS = [f"{r}-{o}" for r, o in MODES]
HIDDEN = ("conv1", "conv2", "fc1", "fc2")


# --------------------------------------------------------------------------------------------
# An obviously-correct reference: plain Python integers and loops, one image at a time.

PIXEL_CODE = [int(Fraction(64 * p, 255) + Fraction(1, 2)) for p in range(256)]  # nearest, ties up


def ref_requantize(acc: int, rounding: Rounding, overflow: Overflow, stats: dict, layer: str) -> int:
    y = (acc + (32 if rounding is Rounding.HALF_UP else 0)) // 64  # // is floor, negatives too
    if y < -128 or y > 127:
        stats[layer]["out"] += 1
        if overflow is Overflow.SATURATE:
            y = max(-128, min(127, y))
        else:
            y = (y + 128) % 256 - 128
    else:
        stats[layer]["in"] += 1
    return y


def ref_conv(x, w, b):
    """x[c][i][j], w[o][c][u][v], b[o] -> acc[o][i][j] (valid convolution, bias << 6)."""
    n_out, n_in, k = len(w), len(x), len(w[0][0])
    size = len(x[0]) - k + 1
    acc = [[[0] * size for _ in range(size)] for _ in range(n_out)]
    for o in range(n_out):
        for i in range(size):
            for j in range(size):
                total = b[o] * 64
                for c in range(n_in):
                    for u in range(k):
                        for v in range(k):
                            total += x[c][i + u][j + v] * w[o][c][u][v]
                acc[o][i][j] = total
    return acc


def ref_pool(y):
    out = []
    for channel in y:
        half = len(channel) // 2
        out.append(
            [
                [
                    max(channel[2 * i][2 * j], channel[2 * i][2 * j + 1], channel[2 * i + 1][2 * j], channel[2 * i + 1][2 * j + 1])
                    for j in range(half)
                ]
                for i in range(half)
            ]
        )
    return out


def ref_linear(x, w, b):
    return [b[o] * 64 + sum(x[f] * w[o][f] for f in range(len(x))) for o in range(len(w))]


def ref_forward(image, params, rounding, overflow, stats):
    """One uint8 28x28 image -> (logits list, {trace name: nested lists})."""
    p = {name: np.asarray(v).tolist() for name, v in params.items()}
    act = lambda acc, layer: max(0, ref_requantize(acc, rounding, overflow, stats, layer))  # noqa: E731
    trace = {}
    x = [[[PIXEL_CODE[v] for v in row] for row in np.asarray(image).tolist()]]
    for layer in ("conv1", "conv2"):
        acc = ref_conv(x, p[f"{layer}.weight"], p[f"{layer}.bias"])
        y = [[[act(a, layer) for a in row] for row in channel] for channel in acc]
        x = ref_pool(y)
        trace[f"{layer}.acc"], trace[layer], trace[f"{layer}.pool"] = acc, y, x
    flat = [v for channel in x for row in channel for v in row]  # channel, row, column
    for layer in ("fc1", "fc2"):
        acc = ref_linear(flat, p[f"{layer}.weight"], p[f"{layer}.bias"])
        flat = [act(a, layer) for a in acc]
        trace[f"{layer}.acc"], trace[layer] = acc, flat
    logits = ref_linear(flat, p["fc3.weight"], p["fc3.bias"])
    trace["fc3.acc"] = logits
    return logits, trace


def new_stats():
    return {layer: {"in": 0, "out": 0} for layer in HIDDEN}


def make_images(rng, n):
    """Random pixels, half of them background (0), like a sparse digit."""
    images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
    images[rng.random((n, 28, 28)) < 0.5] = 0
    return images


# --------------------------------------------------------------------------------------------
# golden.forward == the loop reference


@pytest.mark.parametrize(("rounding", "overflow"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("scale", [40, 127])
def test_forward_matches_loop_reference(random_params, rounding, overflow, scale):
    rng = np.random.default_rng(100 + scale)
    params = random_params(rng, scale)
    images = make_images(rng, 3)
    arithmetic = arith.Arithmetic(rounding, overflow)

    logits, trace = golden.forward(images, params, arithmetic, trace=True)
    stats = new_stats()
    for n, image in enumerate(images):
        ref_logits, ref_trace = ref_forward(image, params, rounding, overflow, stats)
        assert logits[n].tolist() == ref_logits
        for name, value in ref_trace.items():
            assert trace[name][n].tolist() == value, f"image {n}: {name} differs"

    # The weights are large enough that the overflow rule matters in every hidden layer, and
    # small enough (scale 40) that plenty of values stay in range too.
    for layer in HIDDEN:
        assert stats[layer]["out"] > 0, f"no overflow in {layer}: the test would not see a wrong overflow rule"
        if scale == 40:
            assert stats[layer]["in"] > 0, f"everything overflows in {layer}"


@pytest.mark.parametrize("scale", [40, 127])
def test_overflow_and_rounding_modes_change_the_logits(random_params, scale):
    """With these weights every choice of the contract shows in the output."""
    rng = np.random.default_rng(100 + scale)
    params = random_params(rng, scale)
    images = make_images(rng, 3)
    out = {(r, o): golden.forward(images, params, arith.Arithmetic(r, o)) for r, o in MODES}
    for r in Rounding:
        assert not np.array_equal(out[r, Overflow.SATURATE], out[r, Overflow.WRAP])
    for o in Overflow:
        assert not np.array_equal(out[Rounding.HALF_UP, o], out[Rounding.FLOOR, o])


def test_forward_small_weights_without_overflow(random_params):
    """Small weights: nothing overflows, so saturate and wrap must agree exactly (and match the loops)."""
    rng = np.random.default_rng(7)
    params = random_params(rng, 4)
    images = make_images(rng, 2)
    stats = new_stats()
    for rounding in Rounding:
        sat = golden.forward(images, params, arith.Arithmetic(rounding, Overflow.SATURATE))
        wrap = golden.forward(images, params, arith.Arithmetic(rounding, Overflow.WRAP))
        assert np.array_equal(sat, wrap)
        ref = [ref_forward(image, params, rounding, Overflow.WRAP, stats)[0] for image in images]
        assert sat.tolist() == ref
    assert all(stats[layer]["out"] == 0 for layer in HIDDEN)


def test_forward_extreme_images(random_params):
    """All-background and all-ink images (pixel codes 0 and 64)."""
    rng = np.random.default_rng(8)
    params = random_params(rng, 60)
    images = np.stack([np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)])
    for rounding, overflow in [(Rounding.HALF_UP, Overflow.SATURATE), (Rounding.FLOOR, Overflow.WRAP)]:
        logits = golden.forward(images, params, arith.Arithmetic(rounding, overflow))
        ref = [ref_forward(image, params, rounding, overflow, new_stats())[0] for image in images]
        assert logits.tolist() == ref


def test_accumulators_stay_within_accumulator_bound():
    """Worst-case weights and images: every accumulator fits arith.accumulator_bound."""
    images = np.full((1, 28, 28), 255, np.uint8)
    for code in (-128, 127):
        params = {name: np.full(shape, code, np.int8) for name, shape in network.parameter_shapes().items()}
        _, trace = golden.forward(images, params, trace=True)
        for layer in network.LENET5.layers:
            if isinstance(layer, network.ConvLayer):
                n_terms = layer.in_channels * layer.kernel**2
            else:
                n_terms = layer.in_features
            input_max = 64 if layer.name == "conv1" else 128
            bound = arith.accumulator_bound(n_terms, input_max)
            acc = trace[f"{layer.name}.acc"]
            assert np.abs(acc).max() <= bound, layer.name
    # all-ink image, weights -128, bias -128: conv1's accumulator is exactly -(25*64*128 + 128*64)
    params = {name: np.full(shape, -128, np.int8) for name, shape in network.parameter_shapes().items()}
    _, trace = golden.forward(images, params, trace=True)
    assert trace["conv1.acc"].min() == trace["conv1.acc"].max() == -(25 * 64 * 128 + 128 * 64)


# --------------------------------------------------------------------------------------------
# trace, batching, input checks


def test_trace_keys_and_shapes(random_params):
    rng = np.random.default_rng(9)
    params = random_params(rng, 30)
    n = 4
    images = make_images(rng, n)
    logits, trace = golden.forward(images, params, trace=True)
    expected = {
        "conv1.acc": (n, 6, 24, 24),
        "conv1": (n, 6, 24, 24),
        "conv1.pool": (n, 6, 12, 12),
        "conv2.acc": (n, 16, 8, 8),
        "conv2": (n, 16, 8, 8),
        "conv2.pool": (n, 16, 4, 4),
        "fc1.acc": (n, 120),
        "fc1": (n, 120),
        "fc2.acc": (n, 84),
        "fc2": (n, 84),
        "fc3.acc": (n, 10),
        "fc3": (n, 10),  # the last layer keeps its accumulator
    }
    assert {k: v.shape for k, v in trace.items()} == expected
    assert logits.shape == (n, 10) and logits.dtype == np.int64
    assert np.array_equal(trace["fc3.acc"], logits)
    assert np.array_equal(trace["fc3"], logits)
    for layer in HIDDEN:
        assert trace[layer].min() >= 0 and trace[layer].max() <= 127  # after ReLU, 8 bits
        assert np.issubdtype(trace[layer].dtype, np.integer)
    # without trace: the same logits, no dict
    plain = golden.forward(images, params)
    assert isinstance(plain, np.ndarray) and np.array_equal(plain, logits)


def test_batches_are_stitched_together(random_params, monkeypatch):
    rng = np.random.default_rng(10)
    params = random_params(rng, 40)
    images = make_images(rng, 5)
    arithmetic = arith.Arithmetic("floor", "wrap")
    logits, trace = golden.forward(images, params, arithmetic, trace=True)
    monkeypatch.setattr(golden, "BATCH", 2)  # batches of 2, 2 and 1
    small_logits, small_trace = golden.forward(images, params, arithmetic, trace=True)
    assert np.array_equal(logits, small_logits)
    assert trace.keys() == small_trace.keys()
    for key in trace:
        assert np.array_equal(trace[key], small_trace[key]), key
    # and image by image
    for n in range(5):
        assert np.array_equal(golden.forward(images[n], params, arithmetic)[0], logits[n])


def test_check_images_accepts_one_image_and_a_batch():
    one = np.zeros((28, 28), np.uint8)
    assert golden.check_images(one).shape == (1, 28, 28)
    assert golden.check_images(np.zeros((3, 28, 28), np.uint8)).shape == (3, 28, 28)


def test_forward_of_no_images(random_params):
    params = random_params(np.random.default_rng(11), 10)
    assert golden.forward(np.zeros((0, 28, 28), np.uint8), params).shape == (0, 10)


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((2, 28, 28), np.int64),
        np.zeros((2, 28, 28), np.float32),
        np.zeros((2, 28, 28), np.int8),
        np.zeros((28, 28), np.uint16),
        np.zeros((2, 28, 28)).tolist(),
    ],
    ids=["int64", "float32", "int8", "uint16", "list"],
)
def test_check_images_rejects_wrong_dtype(images):
    with pytest.raises(TypeError, match="uint8"):
        golden.check_images(images)


@pytest.mark.parametrize(
    "shape",
    [(2, 28, 27), (2, 27, 28), (28,), (784,), (2, 1, 28, 28), (28, 28, 1), (1, 32, 32), ()],
    ids=str,
)
def test_check_images_rejects_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"\[N,28,28\]"):
        golden.check_images(np.zeros(shape, np.uint8))


def test_forward_checks_its_images(random_params):
    params = random_params(np.random.default_rng(12), 10)
    with pytest.raises(TypeError):
        golden.forward(np.zeros((1, 28, 28), np.float64), params)
    with pytest.raises(ValueError):
        golden.forward(np.zeros((1, 29, 28), np.uint8), params)


def test_accumulate_functions_check_input_shapes():
    with pytest.raises(ValueError):
        golden.conv_accumulate(np.zeros((1, 2, 28, 28)), np.zeros((6, 1, 5, 5)), np.zeros(6))
    with pytest.raises(ValueError):
        golden.linear_accumulate(np.zeros((1, 255)), np.zeros((120, 256)), np.zeros(120))


@pytest.mark.parametrize("fan_in", [1024, 1040, 65536])
def test_accumulators_are_exact_either_side_of_the_float32_limit(fan_in):
    """The products run in float32 while no partial sum can reach 2**24 and in float64 past it:
    sums of extreme codes just below and far above the limit (odd, so float32 would round them
    past it) equal integer arithmetic's, in the linear and the conv form."""
    rng = np.random.default_rng(fan_in)
    x = rng.integers(-128, 128, size=(4, fan_in))
    # Row 0 against filter 0: large odd products of one sign, whose sum passes 2**24 only at
    # the largest fan-in (and whatever order BLAS adds in, partial sums past 2**24 are odd).
    x[0] = 2 * rng.integers(50, 64, size=fan_in) + 1
    w = rng.integers(-128, 128, size=(3, fan_in))
    w[0] = -x[0]
    exact = x @ w.T + (np.arange(3) << 6)  # int64 throughout
    assert np.array_equal(golden.linear_accumulate(x, w, np.arange(3)), exact)
    assert (abs(exact[0, 0]) >= 2**24) == (fan_in == 65536)
    # The same sums as a 1x1 convolution over fan_in channels of a 2x2 map.
    conv_x = np.broadcast_to(x[:, :, None, None], (4, fan_in, 2, 2))
    conv = golden.conv_accumulate(conv_x, w[:, :, None, None], np.arange(3))
    assert np.array_equal(conv, np.broadcast_to(exact[:, :, None, None], conv.shape))


# --------------------------------------------------------------------------------------------
# classify


def test_classify_picks_the_maximum():
    logits = np.array([[1, 9, 3, 0, 0, 0, 0, 0, 0, -5], [-7, -3, -9, -1, -8, -2, -4, -6, -5, -10]])
    assert golden.classify(logits).tolist() == [1, 3]


def test_classify_ties_go_to_the_first_index():
    logits = np.array(
        [
            [3, 5, 5, 1, 0, 0, 0, 0, 0, 0],
            [0] * 10,
            [-4, -2, -9, -2, -2, -9, -9, -9, -9, -9],
            [1, 1, 1, 1, 1, 1, 1, 1, 7, 7],
        ]
    )
    assert golden.classify(logits).tolist() == [1, 0, 1, 8]
    assert int(golden.classify(np.array([2, 2, 2, 2, 2, 2, 2, 2, 2, 2]))) == 0  # one image, 1-D


# --------------------------------------------------------------------------------------------
# Golden vs PyTorch fake-quant


def torch_fake_quant_logits(params, images, arithmetic):
    import torch

    from lenet_fpga.model.train import qat

    model = qat.QuantLeNet(arithmetic)
    state = {name: torch.from_numpy(code.astype(np.float32) / 64) for name, code in params.items()}
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        return model.integer_logits(torch.from_numpy(np.array(images))).numpy()  # np.array: a writable copy


@pytest.mark.torch
@pytest.mark.parametrize(("rounding", "overflow"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("scale", [20, 40, 127])
def test_fake_quant_agrees_with_golden_on_every_logit(random_params, rounding, overflow, scale):
    rng = np.random.default_rng(200 + scale)
    params = random_params(rng, scale)
    images = make_images(rng, 32)
    arithmetic = arith.Arithmetic(rounding, overflow)
    logits, trace = golden.forward(images, params, arithmetic, trace=True)
    fake = torch_fake_quant_logits(params, images, arithmetic)
    assert fake.dtype == np.int64 and fake.shape == logits.shape
    mismatch = np.argwhere(fake != logits)
    assert mismatch.size == 0, f"{len(mismatch)} logits differ, first at {mismatch[0].tolist()}"
    # the comparison covered overflow: some hidden pre-activation left the 8-bit range
    offset = arithmetic.round_offset
    pre = {layer: (trace[f"{layer}.acc"] + offset) >> 6 for layer in HIDDEN}
    overflowed = sum(int(((y > 127) | (y < -128)).sum()) for y in pre.values())
    assert overflowed > 0


@pytest.mark.torch
def test_fake_quant_on_mnist_images(random_params, mnist_test):
    """Real digits, both overflow modes."""
    rng = np.random.default_rng(300)
    params = random_params(rng, 40)
    images = mnist_test.images[:64]
    for arithmetic in (arith.Arithmetic("half-up", "saturate"), arith.Arithmetic("floor", "wrap")):
        assert np.array_equal(torch_fake_quant_logits(params, images, arithmetic), golden.forward(images, params, arithmetic))


@pytest.mark.torch
def test_float_forward_matches_torch_float_model():
    import torch

    from lenet_fpga.model.train import qat

    torch.manual_seed(0)
    model = qat.QuantLeNet(None).eval()
    params = model.float_params()
    rng = np.random.default_rng(13)
    images = make_images(rng, 16)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    got = golden.float_forward(images, params)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
