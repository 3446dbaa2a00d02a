"""Per-layer activation formats (issue 26): the contract (``arith.Fixed``, ``LayerArithmetic``),
their manifest field, the trainer's fake-quant and both generators, bit-exact against the golden
model on a network that uses every width from 2 to 8 bits."""

import json

import numpy as np
import pytest

from lenet_fpga.hdl.compact import CompactConfig
from lenet_fpga.hdl.lenet import preset
from lenet_fpga.model import arith, golden, images, weights
from lenet_fpga.model.arith import Fixed, LayerArithmetic
from lenet_fpga.model.errors import InputError
from lenet_fpga.model.network import LENET5, Network
from lenet_fpga.sim.network import simulate
from rtl_checks import check_bit_exact, stimulus

MODES = [(r, o) for r in arith.Rounding for o in arith.Overflow]
MODE_IDS = [f"{r}-{o}" for r, o in MODES]

# Seven hidden layers, one of each width 2..8, signed and unsigned, 0 to 6 fraction bits; the
# shifts they make run from 0 (fc3: Q2.6 out of a Q4.0 input) to 10.
MIXED = Network.parse("4,10:60,40,30,20,16")
MIXED_FORMATS = tuple(Fixed.parse(f) for f in ("Q1.5", "UQ3.4", "UQ2.3", "Q4.0", "Q2.6", "UQ1.2", "UQ0.2"))


# --------------------------------------------------------------------------------------------
# The contract


@pytest.mark.parametrize("text,bits,frac,signed", [("Q2.6", 8, 6, True), ("UQ2.2", 4, 2, False),
                                                  ("Q4.0", 4, 0, True), ("uq0.2", 2, 2, False), ("Q0.3", 3, 3, True)])
def test_spelling_round_trips(text, bits, frac, signed):
    f = Fixed.parse(text)
    assert (f.bits, f.frac, f.signed) == (bits, frac, signed)
    assert Fixed.parse(str(f)) == f == Fixed.from_dict(json.loads(json.dumps(f.to_dict())))


@pytest.mark.parametrize("make,words", [
    (lambda: Fixed(4, 5, True), "0 to 4 fraction bits, not 5"),
    (lambda: Fixed(0, 0, True), "2 to 8 bits, not 0"),
    (lambda: Fixed(9, 6, True), "2 to 8 bits, not 9"),
    (lambda: Fixed(8, 7, True), "at most 6 fraction bits"),
    (lambda: Fixed(8, 2, False), "unsigned activation format has at most 7 bits"),
    (lambda: Fixed(4, -1, True), "0 to 4 fraction bits, not -1"),
    (lambda: Fixed(4.0, 1, True), "whole number"),
    (lambda: Fixed.parse("Q2.6.1"), "spelled like Q2.6"),
    (lambda: Fixed.from_dict({"bits": 4, "frac": 2}), "'bits', 'frac' and 'signed'"),
])
def test_impossible_formats_are_refused_in_one_line(make, words):
    with pytest.raises(InputError) as info:
        make()
    assert words in str(info.value) and "\n" not in str(info.value)


def test_q2_6_everywhere_is_the_default_arithmetic():
    spelled = arith.Arithmetic("floor", "wrap", ("Q2.6",) * 4)
    assert spelled == arith.Arithmetic("floor", "wrap") and spelled.activations == ()
    assert spelled.layers(LENET5)[0] == LayerArithmetic("floor", "wrap")
    assert arith.Arithmetic().logit_frac(LENET5) == 12


def test_modes_by_layer():
    """Each hidden layer may round and overflow its own way; the same modes in every layer are
    the network's own (one value for one arithmetic); the last layer keeps the network's."""
    modes = (("floor", "wrap"), ("half-up", "saturate"), ("floor", "saturate"), ("half-up", "wrap"))
    a = arith.Arithmetic("half-up", "saturate", (), modes)
    layers = a.layers(LENET5)
    assert [(str(x.rounding), str(x.overflow)) for x in layers[:-1]] == [tuple(m) for m in modes]
    assert a.wraps and not a.saturating().wraps and a.saturating().modes[0] == (arith.Rounding.FLOOR,
                                                                                arith.Overflow.SATURATE)
    assert "by layer floor/wrap,half-up/saturate" in a.describe()
    assert arith.Arithmetic(modes=(("floor", "wrap"),) * 4) == arith.Arithmetic("floor", "wrap")
    with pytest.raises(InputError, match="2 layer modes for the network 6,16:120,84, which has 4"):
        arith.Arithmetic(modes=modes[:2]).layers(LENET5)
    with pytest.raises(InputError, match="each layer's modes are a rounding"):
        arith.Arithmetic(modes=(("nearest", "wrap"),))


def test_format_count_must_match_the_hidden_layers():
    with pytest.raises(InputError, match="3 activation formats for the network 6,16:120,84, which has 4"):
        arith.Arithmetic(activations=("UQ2.2",) * 3).layers(LENET5)


def test_layer_rule_by_hand():
    """Q2.6 in, UQ2.2 out: acc has 12 fraction bits, the shift is 10, half-up adds 512."""
    layer = LayerArithmetic("half-up", "saturate", arith.Q2_6, Fixed.parse("UQ2.2"))
    assert (layer.acc_frac, layer.shift, layer.round_offset, layer.bias_shift) == (12, 10, 512, 6)
    acc = np.array([0, 511, 512, 1535, 1536, 15 << 10, (16 << 10) - 513, 16 << 10, 10**6, -513, -10**6])
    assert layer.activate(acc).tolist() == [0, 0, 1, 1, 2, 15, 15, 15, 15, 0, 0]
    wrap = LayerArithmetic("floor", "wrap", Fixed.parse("UQ2.2"), Fixed.parse("Q4.0"))
    assert (wrap.acc_frac, wrap.shift, wrap.bias_shift) == (8, 8, 2)
    # Q4.0 wraps to 4 signed bits: 8 -> -8 -> 0, 9 -> -7 -> 0, 17 -> 1, -15 -> 1.
    assert wrap.activate(np.array([7, 8, 9, 17, -15]) << 8).tolist() == [7, 0, 0, 1, 1]


@pytest.mark.parametrize("rounding,overflow", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("bits", range(2, 8))
def test_unsigned_format_is_the_wider_signed_one_after_relu(rounding, overflow, bits):
    """The claim that lets a UQ format use the sign bit: exactly the signed format one bit wider,
    whose ReLU output never sets the sign bit."""
    frac = min(bits, 3)
    acc = np.random.default_rng(bits).integers(-(1 << 20), 1 << 20, 20_000)
    unsigned = LayerArithmetic(rounding, overflow, arith.Q2_6, Fixed(bits, frac, False)).activate(acc)
    signed = LayerArithmetic(rounding, overflow, arith.Q2_6, Fixed(bits + 1, frac, True)).activate(acc)
    np.testing.assert_array_equal(unsigned, signed)
    assert unsigned.min() == 0 and unsigned.max() == (1 << bits) - 1


@pytest.mark.parametrize("rounding,overflow", MODES, ids=MODE_IDS)
def test_every_layer_rule_against_exact_rationals(rounding, overflow):
    """Each of MIXED's layers against the rule in words: value = acc / 2**acc_frac, to the output
    step (floor, or floor of value + half a step), then clip or wrap to the signed width, ReLU."""
    from fractions import Fraction
    import math

    rng = np.random.default_rng(7)
    for layer in arith.Arithmetic(rounding, overflow, MIXED_FORMATS).layers(MIXED)[:-1]:
        out = layer.output
        acc = rng.integers(-(1 << 18), 1 << 18, 400)
        expected = []
        for a in acc.tolist():
            value = Fraction(a, 1 << layer.acc_frac) * (1 << out.frac)
            if rounding is arith.Rounding.HALF_UP:
                value += Fraction(1, 2)
            q = math.floor(value)
            if overflow is arith.Overflow.SATURATE:
                q = min(max(q, out.low), out.high)
            else:
                span = 1 << out.requant_bits
                q = (q - out.low) % span + out.low
            expected.append(max(q, 0))
        assert layer.activate(acc).tolist() == expected, f"{out}"


# --------------------------------------------------------------------------------------------
# The manifest


# Every rounding x overflow combination in one network, layer by layer.
MIXED_MODES = tuple((r, o) for r, o in MODES) + tuple((r, o) for r, o in MODES[:3])


def _mixed_weights(seed: int, mode=arith.Arithmetic(), spread: int = 127) -> weights.WeightSet:
    """Random codes, wider where a layer has fewer inputs (``spread`` at 16 inputs), so that
    every layer both overflows and passes values through."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in MIXED.parameter_shapes.items():
        scale = min(127, int(spread * 4 / np.sqrt(np.prod(shape[1:])))) if len(shape) > 1 else 127
        params[name] = rng.integers(-scale - 1, scale + 1, shape).astype(np.int8)
    arithmetic = arith.Arithmetic(mode.rounding, mode.overflow, MIXED_FORMATS, mode.modes)
    return weights.WeightSet(params, weights.make_manifest(arithmetic, MIXED))


def test_formats_round_trip_through_the_manifest(tmp_path):
    ws = _mixed_weights(1, arith.Arithmetic("floor", "wrap"))
    path = weights.save(tmp_path / "mixed.npz", ws.params, ws.manifest)
    again = weights.load(path)
    assert again.arithmetic == arith.Arithmetic("floor", "wrap", MIXED_FORMATS)
    by_layer = _mixed_weights(1, arith.Arithmetic(modes=MIXED_MODES))
    path = weights.save(tmp_path / "modes.npz", by_layer.params, by_layer.manifest)
    assert weights.load(path).arithmetic == arith.Arithmetic("half-up", "saturate", MIXED_FORMATS, MIXED_MODES)
    assert json.loads(path.with_suffix(".json").read_text())["modes"]["conv2"] == {"rounding": "half-up",
                                                                                  "overflow": "wrap"}
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["activations"]["fc4"] == {"bits": 3, "frac": 2, "signed": False}
    # A Q2.6 network's manifest has no such field: the shipped files stay as they are.
    assert "activations" not in weights.make_manifest(arith.Arithmetic(), LENET5)


@pytest.mark.parametrize("edit,words", [
    (lambda m: m["activations"]["fc1"].update(frac=6), "5 bits has 0 to 5 fraction bits, not 6"),
    (lambda m: m["activations"]["conv1"].update(bits=0), "2 to 8 bits, not 0"),
    (lambda m: m["activations"]["fc2"].update(bits=8, signed=False), "at most 7 bits"),
    (lambda m: m["activations"].pop("fc5"), "names each hidden layer"),
    (lambda m: m["activations"].update(fc6={"bits": 8, "frac": 6, "signed": True}), "names each hidden layer"),
    (lambda m: m.update(activations=["UQ2.2"]), "field 'activations' must be a object"),
    (lambda m: m.update(modes={"conv1": {"rounding": "floor", "overflow": "wrap"}}), "'modes' names each hidden"),
])
def test_impossible_manifest_formats_are_refused(tmp_path, edit, words):
    ws = _mixed_weights(2)
    path = weights.save(tmp_path / "mixed.npz", ws.params, ws.manifest)
    manifest = json.loads(path.with_suffix(".json").read_text())
    edit(manifest)
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(InputError) as info:
        weights.load(path)
    assert words in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# The trainer's forward pass


@pytest.mark.torch
@pytest.mark.parametrize("rounding,overflow", [*MODES, (None, None)], ids=[*MODE_IDS, "by-layer"])
def test_fake_quant_forward_is_the_golden_model(rounding, overflow):
    torch = pytest.importorskip("torch")
    from lenet_fpga.model.train import qat

    torch.set_num_threads(1)
    arithmetic = (arith.Arithmetic(rounding, overflow, MIXED_FORMATS) if rounding
                  else arith.Arithmetic("half-up", "saturate", MIXED_FORMATS, MIXED_MODES))
    model = qat.QuantLeNet(arithmetic, MIXED)
    torch.manual_seed(3)
    with torch.no_grad():
        for module in model.children():
            module.weight.uniform_(-0.6, 0.6)
            module.bias.uniform_(-0.5, 0.5)
    imgs = np.concatenate([images.load_image_set().images,
                           np.random.default_rng(4).integers(0, 256, (60, 28, 28), dtype=np.uint8)])
    params = model.integer_params()
    expected = golden.forward(imgs, params, arithmetic, MIXED)
    got = model.integer_logits(torch.from_numpy(imgs)).numpy()
    np.testing.assert_array_equal(got, expected)
    assert arithmetic.logit_frac(MIXED) == 8 and np.unique(expected).size > 50


# --------------------------------------------------------------------------------------------
# Both generators


def _assert_every_layer_works(ws, imgs, arithmetic):
    """Each hidden layer both clips (or wraps) somewhere and passes values through: else the
    test would not tell the formats apart."""
    _, trace = golden.forward(imgs, ws.params, arithmetic, MIXED, trace=True)
    for layer, a in zip(MIXED.layers[:-1], arithmetic.layers(MIXED)):
        y = (trace[f"{layer.name}.acc"] + a.round_offset) >> a.shift
        assert (y > a.output.high).any() and (y < 0).any(), f"{layer.name} never overflows"
        inside = trace[layer.name][(y > 0) & (y <= a.output.high)]
        assert inside.size, f"{layer.name} passes nothing through"


def _both_designs(mode, simulator, sim_build, scale):
    ws = _mixed_weights(2, mode, scale)
    imgs = stimulus(MIXED, 2, 6)
    arithmetic = ws.arithmetic
    _assert_every_layer_works(ws, imgs, arithmetic)
    fast = preset("fast", MIXED, arithmetic)
    check_bit_exact(simulate(ws, imgs, fast, simulator=simulator, build_root=sim_build),
                    f"streaming fast, {arithmetic.describe()}")
    run = simulate(ws, imgs, CompactConfig(arithmetic, lanes=8), simulator=simulator, build_root=sim_build)
    check_bit_exact(run, f"compact, {arithmetic.describe()}")


def test_mixed_formats_and_modes_by_layer_both_designs(simulator, sim_build):
    """Every width 2..8 and every rounding x overflow combination, layer by layer, in one network."""
    _both_designs(arith.Arithmetic(modes=MIXED_MODES), simulator, sim_build, 150)


# Each combination in every layer (the test above has each in some layers): slow tests.
@pytest.mark.slow
@pytest.mark.parametrize("rounding,overflow", MODES, ids=MODE_IDS)
def test_mixed_formats_both_designs_each_mode_everywhere(rounding, overflow, simulator, sim_build):
    _both_designs(arith.Arithmetic(rounding, overflow), simulator, sim_build, 150)


@pytest.mark.parametrize("fmt", ["onnx", "qonnx"])
@pytest.mark.parametrize("rounding,overflow", [*MODES, (None, None)], ids=[*MODE_IDS, "by-layer"])
def test_export_writes_every_format_exactly(rounding, overflow, fmt):
    """The ONNX and QONNX graphs of the mixed-format network give every golden logit, in every
    mode (onnxruntime; qonnx's executor for QONNX)."""
    pytest.importorskip("onnxruntime")
    if fmt == "qonnx":
        pytest.importorskip("qonnx")
    from lenet_fpga.model import export_onnx

    mode = arith.Arithmetic(rounding, overflow) if rounding else arith.Arithmetic(modes=MIXED_MODES)
    ws = _mixed_weights(2, mode, 150)
    imgs = stimulus(MIXED, 4, 6)
    _assert_every_layer_works(ws, imgs, ws.arithmetic)
    exported = export_onnx.build(ws, fmt, batch=len(imgs) if fmt == "qonnx" else None)
    got = export_onnx.run(exported.model, imgs, fmt)
    np.testing.assert_array_equal(got, golden.forward(imgs, ws.params, ws.arithmetic, MIXED))


# --------------------------------------------------------------------------------------------
# The shipped 4-bit-activation network (issue 26: >= 99.0 % with at most 4-bit activations in
# every hidden layer; its whole test set in RTL, both designs, is a slow test in test_rtl_cli)

ACT4 = weights.ASSETS / "lenet5_act4.npz"
ACT4_POW2 = weights.ASSETS / "lenet5_act4_pow2.npz"  # compressed from it: power-of-two weights too


@pytest.mark.parametrize("path", [ACT4, ACT4_POW2], ids=lambda p: p.stem)
def test_shipped_4bit_activation_network_meets_its_figures(path, mnist_test):
    ws = weights.load(path)
    formats = ws.arithmetic.formats(ws.network)
    assert len(formats) == 4 and all(f.bits <= 4 for f in formats), formats
    logits = golden.forward(mnist_test.images, ws.params, ws.arithmetic, ws.network)
    accuracy = golden.accuracy(logits, mnist_test.labels)
    assert accuracy >= 0.99 and accuracy == ws.manifest["accuracy"]["fixed"]


@pytest.mark.slow
@pytest.mark.torch
def test_shipped_4bit_activation_network_is_reproduced_by_its_command(tmp_path, mnist_dir):
    """``lenet-fpga train --activations 4 --threads 1`` gives the shipped file back, code for
    code, formats and all (about 4 minutes)."""
    from lenet_fpga.cli import main

    shipped = weights.load(ACT4)
    out = tmp_path / "again.npz"
    assert main(["train", "--data", str(mnist_dir), "--activations", "4", "--threads", "1", "--out", str(out)]) == 0
    again = weights.load(out)
    assert again.arithmetic == shipped.arithmetic
    for key in shipped.params:
        assert np.array_equal(again[key], shipped[key]), key


@pytest.mark.slow
@pytest.mark.torch
def test_shipped_4bit_pow2_network_is_reproduced_by_its_command(tmp_path, mnist_dir):
    """``lenet-fpga compress --weights lenet5_act4.npz --max-macs 140000 --codes conv=p4,fc=p3
    --epochs 10 --threads 1`` gives the shipped file back (about 2 minutes)."""
    from lenet_fpga.cli import main

    shipped = weights.load(ACT4_POW2)
    out = tmp_path / "again.npz"
    assert main(["compress", "--data", str(mnist_dir), "--weights", str(ACT4), "--max-macs", "140000",
                 "--codes", "conv=p4,fc=p3", "--epochs", "10", "--threads", "1", "--out", str(out)]) == 0
    again = weights.load(out)
    assert again.network == shipped.network and again.codes == shipped.codes
    assert again.arithmetic == shipped.arithmetic
    for key in shipped.params:
        assert np.array_equal(again[key], shipped[key]), key


def test_narrow_formats_narrow_the_memories():
    """The line buffers, the pooling row buffer, the queue between the convs and the linear
    layers' input memories hold each code at its stored width: 4 bits for the UQ formats of the
    4-bit network, 8 for Q2.6 (the pixels into conv1 stay 8)."""
    from lenet_fpga.hdl.accelerator import read_design
    from lenet_fpga.hdl.lenet import StreamingConfig

    ws = weights.load(ACT4)

    def widths(arithmetic):
        def read(accelerator):
            e = accelerator.engines
            return {"conv1 window": e["conv1"].window.memory_bits, "conv2 window": e["conv2"].window.memory_bits,
                    "pool1": e["conv1.pool"].memory_bits, "queue": e["conv2.queue"].memory_bits,
                    "fc1 inputs": e["fc1"].input_memory.shape.width, "fc3 inputs": e["fc3"].input_memory.shape.width}
        return read_design(ws, StreamingConfig(arithmetic), read)

    narrow, wide = widths(ws.arithmetic), widths(arith.Arithmetic())
    assert narrow["conv1 window"] == wide["conv1 window"]
    for name in ("conv2 window", "pool1", "queue", "fc1 inputs", "fc3 inputs"):
        assert narrow[name] * 2 == wide[name], name


def test_bench_table_shows_activation_bits_and_memory_bits():
    """bench's table: the widest hidden activation's bits and all memory bits, from a saved row."""
    from lenet_fpga.sim import benchmark

    row = {"arithmetic": arith.Arithmetic(activations=("UQ2.2", "Q3.3", "UQ3.1", "UQ3.1")).describe(),
           "layers": [{"memory_bits": 1000}, {"memory_bits": 24}, {"layer": "argmax"}]}
    assert benchmark.activation_bits(row) == 6 and benchmark.memory_bits(row) == 1024
    assert benchmark.activation_bits({"arithmetic": arith.Arithmetic("floor", "wrap").describe()}) == 8


@pytest.mark.torch
def test_train_command_with_activation_widths(tmp_path, mnist_dir, capsys):
    """``train --activations 4``: each layer's range chosen, the manifest records the formats; a
    count that does not fit the network, or a width out of range, is refused before training."""
    from lenet_fpga.cli import main

    out = tmp_path / "w.npz"
    assert main(["train", "--data", str(mnist_dir), "--network", "4,10:60", "--activations", "4",
                 "--train-images", "2000", "--epochs", "1", "--qat-epochs", "1", "--threads", "1",
                 "--out", str(out), "--json"]) == 0
    formats = weights.load(out).arithmetic.formats(Network.parse("4,10:60"))
    assert [f.bits for f in formats] == [4, 4, 4] and not any(f.signed for f in formats)
    capsys.readouterr()
    for spec, words in (("4,4", "--activations gives 2 formats; the network 4,10:60 has 3 hidden layers"),
                        ("9", "a width is 2 to 8 bits, not 9"), ("UQ9.9", "2 to 8 bits")):
        assert main(["train", "--data", str(mnist_dir), "--network", "4,10:60", "--activations", spec,
                     "--out", str(tmp_path / "x.npz")]) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("design", ["streaming", "compact"])
def test_design_fields_keep_the_formats_and_modes(design):
    """A design's report fields (explore's keys, the design cache) carry the layer arithmetic,
    in the manifest's form, and give the same configuration back."""
    from lenet_fpga.hdl.compact import CompactConfig
    from lenet_fpga.hdl.designs import DESIGNS

    arithmetic = arith.Arithmetic("half-up", "saturate", MIXED_FORMATS, MIXED_MODES)
    config = preset("baseline", MIXED, arithmetic) if design == "streaming" else CompactConfig(arithmetic, lanes=8)
    fields = DESIGNS[design].to_fields(config, MIXED)
    assert fields["activations"]["fc4"] == {"bits": 3, "frac": 2, "signed": False}
    again = DESIGNS[design].from_fields(json.loads(json.dumps(fields)), MIXED)
    assert again.arithmetic == arithmetic and DESIGNS[design].to_fields(again, MIXED) == fields


# --------------------------------------------------------------------------------------------
# --activations auto: each layer's width against the cost, above a floor


def test_auto_is_parsed_and_refused_in_one_line():
    from lenet_fpga.model.train import formats

    assert formats.parse("auto") == (formats.Auto(None),)
    assert formats.parse(" auto:99.5") == (formats.Auto(0.995),) and str(formats.Auto(0.995)) == "auto:99.5"
    for text in ("auto:", "auto:0", "auto:101", "auto:high"):
        if text == "auto:":
            assert formats.parse(text) == (formats.Auto(None),)
            continue
        with pytest.raises(InputError, match="accuracy in percent"):
            formats.parse(text)
    with pytest.raises(InputError, match="auto stands alone"):
        formats.for_network((formats.Auto(), 4), LENET5)


def _untrained(network, seed=0):
    import torch

    from lenet_fpga.model.train.qat import QuantLeNet

    torch.manual_seed(seed)
    model = QuantLeNet(None, network)
    model.eval()
    return model


@pytest.mark.torch
def test_width_search_narrows_the_costliest_layer_first_and_stops_at_the_floor():
    """A made-up cost (a layer's bits times its weight, one layer free): the layer that saves
    most loses its bits first, the free one only when nothing else may; the search ends where
    every further bit off any layer would take the quantized accuracy below the floor, and its
    own accuracy is at or above it."""
    import torch

    from lenet_fpga.model.train import formats

    network = Network.parse("4,10:60,40")
    model = _untrained(network)
    rng = np.random.default_rng(5)
    pixels = torch.from_numpy(np.concatenate([stimulus(network, 40, 5), rng.integers(0, 256, (260, 28, 28), np.uint8)]))
    start = formats._quantized_logits(model, arith.Arithmetic(), [Fixed(8, 6)] * 4, pixels)
    labels = start.argmax(1)  # the 8-bit network's own answers: it starts at 100 %
    price = {0: 100, 1: 10, 2: 3, 3: 0}

    def cost(net, arithmetic):
        assert net == network
        return sum(price[i] * f.bits for i, f in enumerate(arithmetic.formats(net)))

    largest = formats.activation_ranges(model, pixels)
    lines = []
    # No floor to keep: every layer down to 2 bits, the free one last.
    widths = formats.search_widths(model, arith.Arithmetic(), pixels, labels, cost, largest, floor=0.0, log=lines.append)
    assert widths == (2, 2, 2, 2)
    steps = [line.split()[0] for line in lines if line.startswith("  ")]
    assert steps[:6] == ["7,8,8,8", "6,8,8,8", "5,8,8,8", "4,8,8,8", "3,8,8,8", "2,8,8,8"]
    assert steps[6] == "2,7,8,8" and steps[12] == "2,2,7,8" and steps[-1] == "2,2,2,2"
    assert all(step.endswith(",8") for step in steps[:18])
    # A floor nothing narrower keeps: 8 bits everywhere.
    assert formats.search_widths(model, arith.Arithmetic(), pixels, labels, cost, largest, floor=1.01, log=lines.append) == (8,) * 4

    # A real floor: the result keeps it, and no single further bit would.
    floor = 0.9
    widths = formats.search_widths(model, arith.Arithmetic(), pixels, labels, cost, largest, floor=floor,
                                   log=lines.append)

    def accuracy(ws):
        trial = [formats.calibrated(bits, top) for bits, top in zip(ws, largest)]
        return float((formats._quantized_logits(model, arith.Arithmetic(), trial, pixels).argmax(1) == labels).float().mean())

    assert accuracy(widths) >= floor and widths != (8,) * 4 and widths != (2,) * 4, widths
    for i, bits in enumerate(widths):
        if bits > 2:
            assert accuracy(widths[:i] + (bits - 1,) + widths[i + 1:]) < floor, (widths, i)


@pytest.mark.torch
def test_auto_needs_a_cost_and_uses_the_generators():
    """Without a cost model ``auto`` is refused; the generator's (``hdl.cost``) counts the
    memory bits a narrower layer saves in the design (LeNet-5 at 4 bits: 8,992 fewer)."""
    import torch

    from lenet_fpga.hdl.cost import activation_memory_bits
    from lenet_fpga.model.train import formats

    model = _untrained(Network.parse("4,10:60,40"))
    pixels = torch.zeros((4, 28, 28), dtype=torch.uint8)
    with pytest.raises(InputError, match="cost model"):
        formats.choose(model, (formats.Auto(),), arith.Arithmetic(), pixels, torch.zeros(4, dtype=torch.long))
    narrow = arith.Arithmetic(activations=(Fixed(4, 2, False),) + (Fixed(4, 1, False),) * 3)
    assert activation_memory_bits(LENET5, arith.Arithmetic()) - activation_memory_bits(LENET5, narrow) == 8_992
