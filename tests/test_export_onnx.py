"""``lenet-fpga export``: the ONNX and QONNX graphs give every logit of the golden model.

The graphs run in onnxruntime (``onnx``) and in qonnx's executor (``qonnx``, its own ``Quant``),
and each logit is compared with ``golden.forward``: every shipped network on MNIST test images,
and small networks with full-range codes in all four arithmetics. Those synthetic sets are
first checked to tell the arithmetics apart (they saturate, wrap and hit rounding ties, and the
other rounding and the other overflow give other logits), so equality cannot come from data
on which the modes agree.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lenet_fpga as lf
from lenet_fpga.cli import main
from lenet_fpga.model import arith, codes, golden, weights
from lenet_fpga.model import export_onnx as exporter
from lenet_fpga.model.network import Network

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (ROOT / "model" / "assets").glob("*.npz")
                 if not p.stem.endswith("-float") and p.stem != "samples")
FORMATS = exporter.FORMATS
MODES = arith.ARITHMETICS


def needs(fmt: str) -> None:
    """Skip, saying why, when the runtime of ``fmt`` is not installed."""
    pytest.importorskip("onnx", reason="the onnx package is not installed (pip install 'lenet-fpga[onnx]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'lenet-fpga[onnx]')")
    if fmt == "qonnx":
        pytest.importorskip("qonnx", reason="qonnx is not installed (pip install 'lenet-fpga[onnx]')")


def mode_id(a: arith.Arithmetic) -> str:
    return f"{a.rounding}-{a.overflow}"


def exported_logits(ws, images, fmt: str, arithmetic=None) -> np.ndarray:
    exported = exporter.build(ws, fmt, arithmetic)
    return exporter.run(exported.model, images, fmt)


def assert_every_logit_equal(ws, images, fmt: str, arithmetic=None) -> int:
    arithmetic = arithmetic or ws.arithmetic
    want = golden.forward(images, ws.params, arithmetic, ws.network)
    got = exported_logits(ws, images, fmt, arithmetic)
    assert got.shape == want.shape and got.dtype == np.int64
    differ = np.argwhere(got != want)
    assert differ.size == 0, (f"{len(differ)} of {want.size} logits differ, first at {differ[0].tolist()}: "
                              f"{got[tuple(differ[0])]} != {want[tuple(differ[0])]}")
    return int(want.size)


# --------------------------------------------------------------------------------------------
# The shipped networks on MNIST


def test_the_shipped_networks_are_all_here():
    assert {"lenet5_saturate", "lenet5_wrap", "lenet5_lowbit", "lenet5_pow2", "lenet5_pruned_pow2"} <= set(SHIPPED)
    kinds = {r.kind for name in SHIPPED for r in weights.load(ROOT / f"model/assets/{name}.npz").codes.values()}
    assert kinds == {"uniform", "ternary", "power-of-two"}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_network_on_100_mnist_images(name, fmt, mnist_test):
    needs(fmt)
    ws = weights.load(ROOT / f"model/assets/{name}.npz")
    images = mnist_test.fitted(ws.network).images[:100]
    assert assert_every_logit_equal(ws, images, fmt) == 100 * ws.network.classes


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_network_on_all_10000_mnist_images(name, fmt, mnist_test):
    needs(fmt)
    ws = weights.load(ROOT / f"model/assets/{name}.npz")
    images = mnist_test.fitted(ws.network).images
    assert len(images) == 10_000
    assert assert_every_logit_equal(ws, images, fmt) == 10_000 * ws.network.classes


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES, ids=mode_id)
def test_the_shipped_weights_in_every_arithmetic_on_all_10000_mnist_images(mode, fmt, mnist_test):
    """Both roundings and both overflows on the whole test set (the shipped files have half-up only)."""
    needs(fmt)
    ws = lf.load_weights()
    assert assert_every_logit_equal(ws, mnist_test.images, fmt, mode) == 10_000 * ws.network.classes


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_shipped_weights_under_the_other_arithmetics(fmt):
    """The same weights exported with --rounding/--overflow: each graph is its own arithmetic's."""
    needs(fmt)
    ws = lf.load_weights()
    digits = lf.sample_digits().images
    results = {}
    for mode in MODES:
        assert_every_logit_equal(ws, digits, fmt, mode)
        results[mode_id(mode)] = exported_logits(ws, digits, fmt, mode)
    # On real digits the modes still differ somewhere: the four graphs are not one graph.
    assert len({r.tobytes() for r in results.values()}) == len(MODES)


# --------------------------------------------------------------------------------------------
# Synthetic networks: full-range codes, all four arithmetics


SYNTHETIC = ("12/3k3p2,4k2:6:4", "14/3k3p3,2k2p1:5:3")


def random_weights(spec: str, seed: int, arithmetic, codes_by_layer=None) -> weights.WeightSet:
    """Codes uniform over all of int8, or over the levels of a layer's restriction (each level
    at least once)."""
    rng = np.random.default_rng(seed)
    network = Network.parse(spec)
    params = {}
    for name, shape in network.parameter_shapes.items():
        values = rng.integers(arith.QMIN, arith.QMAX + 1, size=shape)
        restriction = (codes_by_layer or {}).get(name.split(".")[0])
        if restriction is not None and name.endswith(".weight"):
            often = 1 / (1 + np.abs(restriction.levels))  # mostly small codes: a network that is not all saturated
            values = rng.choice(restriction.levels, size=shape, p=often / often.sum())
            values.flat[: len(restriction.levels)] = restriction.levels  # every level, the extremes too
            values = rng.permutation(values.reshape(-1)).reshape(shape)
        params[name] = values.astype(np.int8)
    extra = {} if codes_by_layer is None else {"codes": codes.codes_to_manifest(codes_by_layer)}
    return weights.WeightSet(params, weights.make_manifest(arithmetic, network, **extra))


def random_images(seed: int, n: int, size: int) -> np.ndarray:
    """Full-range pixels; a few images all black or all white."""
    images = np.random.default_rng(seed).integers(0, 256, size=(n, size, size), dtype=np.uint8)
    images[0], images[1] = 0, 255
    return images


def hidden_accumulators(ws, images, arithmetic) -> np.ndarray:
    _, trace = golden.forward(images, ws.params, arithmetic, ws.network, trace=True)
    return np.concatenate([trace[f"{layer.name}.acc"].reshape(-1) for layer in ws.network.layers if not
                           getattr(layer, "last", False)])


def other(mode: arith.Arithmetic, what: str) -> arith.Arithmetic:
    if what == "rounding":
        return arith.Arithmetic(next(r for r in arith.Rounding if r != mode.rounding), mode.overflow)
    return arith.Arithmetic(mode.rounding, next(o for o in arith.Overflow if o != mode.overflow))


def assert_tells_the_modes_apart(ws, images, mode) -> None:
    """The data overflows both ways, hits exact rounding ties (positive and negative), the
    logits differ from image to image, and the other rounding and the other overflow give
    other logits."""
    acc = hidden_accumulators(ws, images, mode)
    shifted = (acc + mode.round_offset) >> arith.FRAC_BITS
    assert (shifted > arith.QMAX).sum() > 0 and (shifted < arith.QMIN).sum() > 0, "no overflow either way"
    assert ((acc % arith.SCALE == arith.SCALE // 2) & (acc > 0)).sum() > 0, "no positive tie"
    assert ((acc % arith.SCALE == arith.SCALE // 2) & (acc < 0)).sum() > 0, "no negative tie"
    want = golden.forward(images, ws.params, mode, ws.network)
    assert len(np.unique(want, axis=0)) > len(images) // 10, "the logits hardly depend on the image"
    for what in ("rounding", "overflow"):
        changed = golden.forward(images, ws.params, other(mode, what), ws.network)
        assert not np.array_equal(changed, want), f"the other {what} gives the same logits"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES, ids=mode_id)
@pytest.mark.parametrize("spec", SYNTHETIC)
def test_synthetic_network_in_every_arithmetic(spec, mode, fmt, tmp_path):
    """Weight files written with each rounding and overflow in the manifest, read back, exported."""
    needs(fmt)
    seed = 7 + SYNTHETIC.index(spec)
    made = random_weights(spec, seed, mode)
    weights.save(tmp_path / "w.npz", made.params, made.manifest)
    ws = weights.load(tmp_path / "w.npz")
    assert ws.arithmetic == mode
    images = random_images(seed, 300, ws.network.image_size)
    assert_tells_the_modes_apart(ws, images, mode)
    assert_every_logit_equal(ws, images, fmt)
    # ... and the graph of another arithmetic does not give these logits: the check can fail.
    for what in ("rounding", "overflow"):
        assert not np.array_equal(exported_logits(ws, images, fmt, other(mode, what)),
                                  golden.forward(images, ws.params, mode, ws.network))


EXTREME_CODES = {  # every kind of restriction, with its largest codes
    "conv1": codes.PowerOfTwo((0, 3, 6)),  # +-64: the largest power of two with a code
    "conv2": codes.Ternary(127),
    "fc1": codes.Uniform(2, 6),  # -128, -64, 0, 64
    "fc2": codes.Uniform(3, 2),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", MODES, ids=mode_id)
def test_restricted_codes_at_their_extremes(mode, fmt, tmp_path):
    needs(fmt)
    spec = "16/6k3p2,8k2:24:5"  # wide enough that such coarse codes still give image-dependent logits
    ws = random_weights(spec, 2, mode, EXTREME_CODES)
    weights.save(tmp_path / "codes.npz", ws.params, ws.manifest)
    ws = weights.load(tmp_path / "codes.npz")
    assert {name: ws.codes[name] for name in EXTREME_CODES} == EXTREME_CODES
    for name, restriction in EXTREME_CODES.items():  # the extremes are really in the weights
        assert set(np.unique(ws.params[f"{name}.weight"])) == set(restriction.levels.tolist())
    images = random_images(3, 300, ws.network.image_size)
    assert_tells_the_modes_apart(ws, images, mode)
    assert_every_logit_equal(ws, images, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_sums_near_the_float32_limit_are_exact(fmt):
    """1,024 inputs of 127 times weights of +-128: logits within 1 % of 2**24, odd ones among them."""
    needs(fmt)
    network = Network.parse("36/1k5p1::10")
    rng = np.random.default_rng(5)
    fc = rng.choice([arith.QMIN, arith.QMAX], size=(10, 1024), p=[0.02, 0.98])
    fc[0] = arith.QMIN
    params = {"conv1.weight": np.full((1, 1, 5, 5), arith.QMAX, np.int8), "conv1.bias": np.full(1, arith.QMAX, np.int8),
              "fc1.weight": fc.astype(np.int8), "fc1.bias": rng.integers(-128, 128, 10).astype(np.int8)}
    ws = weights.WeightSet(params, weights.make_manifest(arith.Arithmetic(), network))
    images = np.concatenate([np.full((2, 36, 36), 255, np.uint8), random_images(5, 20, 36)])
    logits = golden.forward(images, ws.params, ws.arithmetic, network)
    assert np.abs(logits).max() > 0.99 * 2**24 and (np.abs(logits) > 2**23).sum() > 10
    assert (logits[np.abs(logits) > 2**23] % 2 == 1).any()  # float32 spacing is 1 up there: every bit counts
    assert max(exporter.accumulator_bounds(ws, ws.arithmetic).values()) < 2**24
    assert_every_logit_equal(ws, images, fmt)


def test_a_network_whose_sums_float32_cannot_hold_is_refused():
    network = Network.parse("40/8k5p1:3")
    params = {name: np.full(shape, arith.QMAX, np.int8) for name, shape in network.parameter_shapes.items()}
    ws = weights.WeightSet(params, weights.make_manifest(arith.Arithmetic(), network))
    bound = 8 * 36 * 36 * arith.QMAX * arith.QMAX + (arith.QMAX << 6) + 32  # fc1: inputs x 127 x 127 + bias + 1/2
    assert exporter.accumulator_bounds(ws, ws.arithmetic)["fc1"] == bound
    with pytest.raises(lf.InputError, match=f"fc1: its accumulator can reach {bound:,}, beyond 2\\*\\*24"):
        exporter.build(ws, "onnx")


# --------------------------------------------------------------------------------------------
# The QONNX weight quantizers


@pytest.mark.parametrize("restriction, expected", [
    (codes.PLAIN, (1, 8, False)),
    (codes.Uniform(3, 2), (4, 3, False)),  # c * 4, c in -4..3
    (codes.Uniform(2, 6), (64, 2, False)),
    (codes.Ternary(9), (9, 2, True)),  # -1, 0, 1 times 9: a narrow 2-bit quantizer
    (codes.PowerOfTwo((0, 2, 3)), (1, 5, True)),  # up to +-8: 5 bits, -16 unused
    (codes.PowerOfTwo((1, 3, 4)), (2, 5, True)),  # +-2, +-8, +-16 = 2 x (+-1, +-4, +-8)
])
def test_weight_quantizer_passes_exactly_the_levels(restriction, expected):
    """Derived by hand above; then qonnx's own quant() maps every level to itself, and with one
    bit fewer it would not (the width is the narrowest)."""
    assert exporter.weight_quantizer(restriction) == expected
    quant = pytest.importorskip("qonnx.custom_op.general.quant", reason="qonnx is not installed (pip install 'lenet-fpga[onnx]')").quant
    scale, bits, narrow = expected
    levels = restriction.levels.astype(np.float32) / 64
    out = quant(levels, np.float32(scale / 64), np.float32(0), np.float32(bits), 1, int(narrow), "ROUND")
    assert np.array_equal(out, levels)
    fewer = quant(levels, np.float32(scale / 64), np.float32(0), np.float32(bits - 1), 1, int(narrow), "ROUND")
    assert not np.array_equal(fewer, levels)


# --------------------------------------------------------------------------------------------
# The command, the API, the docs


def test_export_command_writes_a_graph_that_onnxruntime_runs(tmp_path, capsys):
    needs("onnx")
    import onnxruntime

    out = tmp_path / "lenet5.onnx"
    assert main(["export", "--weights", "shipped", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "400 of 400 logits equal" in text
    session = onnxruntime.InferenceSession(str(out))
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [("pixels", "tensor(uint8)", ["N", 1, 28, 28])]
    assert [(o.name, o.type) for o in session.get_outputs()] == [("logits", "tensor(int32)")]
    digits = lf.sample_digits()
    [logits] = session.run(["logits"], {"pixels": digits.images[:, None]})
    assert np.array_equal(logits, lf.run_golden(lf.load_weights(), digits.images).logits)


def test_export_command_json_qonnx_with_another_arithmetic(tmp_path, capsys):
    needs("qonnx")
    import onnx

    out = tmp_path / "floor.onnx"
    argv = ["export", "--format", "qonnx", "--rounding", "floor", "--overflow", "wrap", "--out", str(out), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] and report["format"] == "qonnx" and report["onnx"] == str(out)
    assert report["checked_logits"] == report["equal_logits"] == 400 and report["checked_images"] == 40
    assert report["arithmetic"] == "Q2.6, rounding floor, overflow wrap"
    model = onnx.load(str(out))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["rounding"] == "floor" and props["overflow"] == "wrap"
    assert sum(node.op_type == "Quant" and node.domain == "qonnx.custom_op.general" for node in model.graph.node) > 10
    ws = lf.load_weights()
    digits = lf.sample_digits().images
    got = exporter.run(model, digits, "qonnx")
    assert np.array_equal(got, golden.forward(digits, ws.params, arith.Arithmetic("floor", "wrap"), ws.network))
    assert not np.array_equal(got, golden.forward(digits, ws.params, ws.arithmetic, ws.network))


def test_a_graph_that_differs_from_the_golden_model_is_not_written(tmp_path, capsys, monkeypatch):
    """The check before writing can fail: one logit off by one, and nothing is written."""
    needs("onnx")
    real_run = exporter.run

    def off_by_one(*args, **kwargs):
        logits = real_run(*args, **kwargs)
        logits[3, 7] += 1
        return logits

    monkeypatch.setattr(exporter, "run", off_by_one)
    out = tmp_path / "bad.onnx"
    assert main(["export", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "differs from the golden model in 1 of 400 logits" in err and not out.exists()


def test_a_fixed_batch_runs_in_qonnx_without_help(tmp_path):
    """FINN's form: batch 1, executed by qonnx as it stands in the file."""
    needs("qonnx")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    ws = lf.load_weights(ROOT / "model/assets/lenet5_lowbit.npz")
    result = lf.export_onnx(ws, "qonnx", out=tmp_path / "one.onnx", batch=1)
    assert result.path == tmp_path / "one.onnx" and result.checked_logits == 0
    model = ModelWrapper(str(tmp_path / "one.onnx"))
    digits = lf.sample_digits().images[:3]
    got = np.concatenate([execute_onnx(model, {"pixels": d[None, None]})["logits"] for d in digits])
    assert np.array_equal(got, lf.run_golden(ws, digits).logits)


def test_the_documented_example_runs(tmp_path, capsys):
    needs("qonnx")
    text = (ROOT / "docs" / "export.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    namespace = {"folder": tmp_path}
    for block in blocks:
        exec(compile(block, "docs/export.md", "exec"), namespace)
    assert "classes:" in capsys.readouterr().out
    assert np.array_equal(namespace["logits"], lf.run_golden(namespace["weights"],
                                                             namespace["digits"].images[:1]).logits)


def assert_one_line(capsys, message: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("lenet-fpga export: error:") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_unknown_format_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--format", "tflite", "--out", str(tmp_path / "x.onnx")])
    assert e.value.code == 2 and not (tmp_path / "x.onnx").exists()
    assert_one_line(capsys, "argument --format: invalid choice: 'tflite'")


def test_missing_weights_are_one_line(tmp_path, capsys):
    assert main(["export", "--weights", str(tmp_path / "no.npz"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert_one_line(capsys, f"weights file not found: {tmp_path / 'no.npz'}")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("case", ["a folder", "under a file", "/proc", "a FIFO"])
def test_unwritable_out_is_refused_before_any_work(case, tmp_path, capsys, monkeypatch):
    import os

    monkeypatch.setattr(exporter, "build", lambda *a, **k: pytest.fail("the graph was built"))
    (tmp_path / "file").write_text("x")
    if case == "a FIFO":
        os.mkfifo(tmp_path / "fifo")
    target = {"a folder": tmp_path, "under a file": tmp_path / "file" / "x.onnx", "/proc": Path("/proc/x.onnx"),
              "a FIFO": tmp_path / "fifo"}[case]
    message = {"a folder": "is a folder, not a file", "under a file": "is not a folder",
               "/proc": "is not writable", "a FIFO": "is a FIFO"}[case]
    assert main(["export", "--out", str(target)]) == 2
    assert_one_line(capsys, message)


def test_the_api_refuses_an_unknown_format():
    with pytest.raises(lf.InputError, match="unknown export format 'tflite': one of onnx, qonnx"):
        lf.export_onnx(lf.load_weights(), "tflite")


def test_without_onnx_the_export_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(lf.InputError, match=r"needs the onnx package .*pip install 'lenet-fpga\[onnx\]'"):
        exporter.build(lf.load_weights(), "onnx")


def test_without_qonnx_the_qonnx_export_says_what_to_install(monkeypatch):
    pytest.importorskip("onnx", reason="the onnx package is not installed (pip install 'lenet-fpga[onnx]')")
    monkeypatch.setitem(sys.modules, "qonnx", None)
    with pytest.raises(lf.InputError, match=r"needs the qonnx package .*pip install 'lenet-fpga\[onnx\]'"):
        exporter.build(lf.load_weights(), "qonnx")


def test_importing_the_library_does_not_import_onnx():
    code = ("import sys, lenet_fpga.api, lenet_fpga.model.export_onnx; from lenet_fpga import cli; "
            "cli.build_parser(); print(sorted(m for m in ('onnx', 'onnxruntime', 'qonnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
