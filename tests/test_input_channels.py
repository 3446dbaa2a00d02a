"""Input channels > 1 (issue 26, part 4): colour data sets of one's own, their errors, the pixel
stream's channel-interleaved order from the data set to the board's frames, and an RGB 32x32
network trained on a synthetic data set running bit-exactly in RTL on Verilator; at the lowest
level, the streaming design's first layer alone (pixel table, conv1's Gather, conv1) with three
channels, adversarial weights and overflow in both directions, and the compact design's image
input."""

import json

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from lenet_fpga.boards import protocol
from lenet_fpga.boards.link import UARTLink
from lenet_fpga.boards.run import check_board_network
from lenet_fpga.cli import main
from lenet_fpga.hdl.compact import CompactConfig
from lenet_fpga.hdl.compact_parts import ImageInput
from lenet_fpga.hdl.lenet import LeNetAccelerator, StreamingConfig
from lenet_fpga.hdl.skid import SkidBuffer
from lenet_fpga.model import arith, datasets, golden, images, weights
from lenet_fpga.model.errors import InputError
from lenet_fpga.model.network import Network
from lenet_fpga.sim import runner
from lenet_fpga.sim.network import simulate
from dataset_flow import bench_on_dataset, import_float_checkpoint, run_json, sim_on_dataset, train_on_npz
from rtl_checks import check_bit_exact

TINY_RGB = Network.parse("12x3/4,6k3p1:10:3")  # conv1 3x12x12 -> 4x8x8 -> 4x4x4


def colour_bars(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` RGB images [n,3,size,size] of 3 classes: a bar bright in channel k only (class k),
    horizontal or vertical at a random place, on dim noise in every channel. In grey the classes
    differ only in brightness, so a network that reads the channels tells them apart easily."""
    rng = np.random.default_rng(seed)
    pictures = rng.integers(0, 50, (n, 3, size, size))
    labels = np.arange(n) % 3
    for k, label in enumerate(labels):
        at = rng.integers(2, size - 6)
        if rng.integers(2):
            pictures[k, label, at : at + 4, 3:-3] += 200
        else:
            pictures[k, label, 3:-3, at : at + 4] += 200
    return np.clip(pictures, 0, 255).astype(np.uint8), labels


def save_pngs(folder, pictures, labels):
    from PIL import Image

    for k, (picture, label) in enumerate(zip(pictures, labels)):
        where = folder / str(label)
        where.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.moveaxis(picture, 0, -1)).save(where / f"{k:04d}.png")


def random_weights(network: Network, seed: int) -> weights.WeightSet:
    rng = np.random.default_rng(seed)
    params = {name: rng.integers(-128, 128, shape).astype(np.int8) for name, shape in network.parameter_shapes.items()}
    return weights.WeightSet(params, weights.make_manifest(arith.Arithmetic(), network))


def verilator_or_skip():
    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))


def one_line_refusal(capsys, argv, message) -> None:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


# ---- data sets ----

def test_an_rgb_npz_and_a_folder_of_colour_pngs_read_the_same_channels(tmp_path):
    pictures, labels = colour_bars(12, size=16)
    np.savez(tmp_path / "rgb.npz", images=pictures, labels=labels)
    save_pngs(tmp_path / "pngs", pictures, labels)
    from_npz, from_pngs = (datasets.load_dataset(tmp_path / name) for name in ("rgb.npz", "pngs"))
    for d in (from_npz, from_pngs):
        assert (d.channels, d.image_size, d.classes, d.converted) == (3, 16, 3, False)
        assert d.train.images.shape[1:] == (3, 16, 16)
        assert d.default_network().spec == "16x3/6,16:120,84:3"
        assert d.to_manifest()["channels"] == 3
        assert "16x16 RGB, 3 classes" in datasets.describe(d)
    def every(d):  # the folder's images come in class order, the npz's as saved
        return sorted(x.tobytes() for x in np.concatenate([d.train.images, d.test.images]))

    assert every(from_npz) == every(from_pngs) == sorted(x.tobytes() for x in pictures)
    assert "channels" not in datasets.load_dataset(tmp_path / "rgb.npz", grey=True).to_manifest()


def test_a_data_set_that_does_not_fit_the_network_is_one_line(tmp_path, capsys):
    """Every refusal names the data set's channels and the network's, before anything is written."""
    pictures, labels = colour_bars(12, size=16)
    np.savez(tmp_path / "rgb.npz", images=pictures, labels=labels)
    np.savez(tmp_path / "grey.npz", images=pictures[:, 0], labels=labels)
    np.savez(tmp_path / "two.npz", images=pictures[:, :2], labels=labels)
    out = tmp_path / "w.npz"
    one_line_refusal(capsys, ["eval", "--dataset", str(tmp_path / "rgb.npz")],
                     "rgb.npz's images are RGB (3 channels); the network 6,16:120,84 takes grey (1 channel): give "
                     "--grey to convert the images to grey, or a network with a 16x3/... input")
    one_line_refusal(capsys, ["train", "--dataset", str(tmp_path / "grey.npz"), "--network", "16x3/4,8:24",
                              "--out", str(out)],
                     "grey.npz's images are grey (1 channel); the network 16x3/4,8:24:3 takes RGB (3 channels)")
    one_line_refusal(capsys, ["train", "--dataset", str(tmp_path / "rgb.npz"), "--network", "16x2/4,8:24",
                              "--out", str(out)],
                     "rgb.npz's images are RGB (3 channels); the network 16x2/4,8:24:3 takes 2 channels")
    one_line_refusal(capsys, ["train", "--dataset", str(tmp_path / "two.npz"), "--out", str(out)] + ["--grey"],
                     "has 2 channels ([12, 2, 16, 16]); --grey converts RGB images (3 channels) only")
    # weights of a colour network refuse grey images (the shipped digits) and a grey data set
    rgb_weights = weights.save(tmp_path / "rgb-w.npz", random_weights(Network.parse("16x3/4,8:24:3"), 1).params,
                               weights.make_manifest(arith.Arithmetic(), Network.parse("16x3/4,8:24:3")))
    one_line_refusal(capsys, ["sim", "--weights", str(rgb_weights), "--n", "1"],
                     "samples.npz: the images are grey (1 channel); the network 16x3/4,8:24:3 takes RGB (3 channels)")
    one_line_refusal(capsys, ["eval", "--weights", str(rgb_weights), "--dataset", str(tmp_path / "grey.npz")],
                     "grey.npz's images are grey (1 channel); the network 16x3/4,8:24:3 takes RGB (3 channels)")
    from PIL import Image

    Image.fromarray(np.moveaxis(pictures[0], 0, -1)).save(tmp_path / "picture.png")
    one_line_refusal(capsys, ["classify", str(tmp_path / "picture.png"), "--weights", str(rgb_weights)],
                     "classify reads pictures as grey digits; the network 16x3/4,8:24:3 takes RGB (3 channels) images")
    assert not out.exists() and not (tmp_path / "w.json").exists()


# ---- the pixel stream's order: the board's frames ----

def test_frames_carry_each_pixels_channels_one_after_another():
    sizes = protocol.FrameSizes(32, 10, 3)
    assert sizes.pixels == 3072 and sizes.image_shape == (3, 32, 32) and sizes.max_request == 3072 + 5
    picture = np.random.default_rng(2).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    sent = np.frombuffer(protocol.image_pixels(picture, sizes), np.uint8)
    assert sent[:6].tolist() == [picture[0, 0, 0], picture[1, 0, 0], picture[2, 0, 0],
                                 picture[0, 0, 1], picture[1, 0, 1], picture[2, 0, 1]]
    assert np.array_equal(sent, images.stream_order(picture))
    with pytest.raises(InputError, match=r"image must have shape \[3,32,32\]"):
        protocol.image_pixels(picture[0], sizes)
    with pytest.raises(ValueError, match="195,075 bytes"):  # IMAGE's u16 offset
        protocol.FrameSizes(255, 10, 3)
    with pytest.raises(ValueError, match="1..16 channels"):
        protocol.FrameSizes(28, 10, 17)


def test_a_grey_boards_frames_are_what_they_were_and_a_colour_board_says_its_channels():
    # INFO and CLASSIFY of a grey board, byte for byte as before input channels existed
    grey = protocol.BoardInfo(protocol.VERSION, arith.Arithmetic("floor", "wrap"), "compact", 22, 0xCAFEF00D, True,
                              False, 45066, 28, 10, 8, clock_hz=12_000_000)
    assert grey.encode().hex() == "040301160df0feca010ab00000000000001c0a0800001bb700"
    digit = (np.arange(784).reshape(28, 28) % 251).astype(np.uint8)
    assert protocol.classify_request(digit, protocol.FrameSizes(28, 10), seq=3).hex().startswith(
        "a502031003000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122")
    colour = protocol.BoardInfo(**{**grey.__dict__, "image_size": 32, "channels": 3})
    parsed = protocol.parse_info(protocol.Frame(protocol.FrameType.INFO, colour.encode()))
    assert parsed.channels == 3 and parsed.sizes == protocol.FrameSizes(32, 10, 3) and parsed == colour
    # the link of a colour accelerator reports it; a host with other weights refuses the board
    ws = random_weights(TINY_RGB, 3)
    link = UARTLink(LeNetAccelerator(ws), 4, 400)
    assert link.sizes.pixels == 12 * 12 * 3 and link.info.channels == 3
    check_board_network(link.info, ws)
    grey_ws = random_weights(Network.parse("12/4,6k3p1:10:3"), 3)
    with pytest.raises(InputError, match=r"takes 12x12x3 images .* \(12x12, 3 classes\)"):
        check_board_network(link.info, grey_ws)


# ---- the compact design's image input ----

def test_compact_image_input_writes_the_channels_channel_major():
    """Bytes in stream order (pixel p's channels one after another) are written to channel c's
    plane, ``c * S*S + p``, one a cycle, ``last`` with the last address."""
    channels, plane = 3, 5
    dut = ImageInput(channels * plane, channels=channels)
    sent = list(range(200, 200 + channels * plane))  # byte k of the stream
    writes, lasts = [], []

    async def bench(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.open, 1)
        for byte in sent:
            ctx.set(dut.pixels.valid, 1)
            ctx.set(dut.pixels.payload, byte)
            if ctx.get(dut.we):
                writes.append((ctx.get(dut.addr), ctx.get(dut.code)))
                lasts.append(ctx.get(dut.last))
            await ctx.tick()
        ctx.set(dut.pixels.valid, 0)
        for _ in range(3):
            if ctx.get(dut.we):
                writes.append((ctx.get(dut.addr), ctx.get(dut.code)))
                lasts.append(ctx.get(dut.last))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    codes = arith.quantize_pixels(np.array(sent, np.uint8)).tolist()
    assert writes == [((k % channels) * plane + k // channels, code) for k, code in enumerate(codes)]
    assert lasts == [0] * (len(sent) - 1) + [1]


# ---- the first layer alone, in RTL ----

class FirstLayer(wiring.Component):
    """The streaming design's first blocks as it builds them for a colour network: pixel bytes ->
    ``PixelQuantizer`` -> conv1's ``Gather`` (a pixel's channels into one vector) -> conv1, a skid
    buffer on each link as in ``LeNetAccelerator.elaborate``."""

    def __init__(self, accelerator: LeNetAccelerator):
        self._blocks = [accelerator.engines[name] for name in ("quantize", "conv1.gather", "conv1")]
        super().__init__({"i": In(stream.Signature(unsigned(8))),
                          "o": Out(stream.Signature(self._blocks[-1].o.payload.shape()))})

    def elaborate(self, platform):
        m = Module()
        for k, block in enumerate(self._blocks):
            m.submodules[f"block{k}"] = block
        for k, (upstream, downstream) in enumerate(zip(self._blocks, self._blocks[1:])):
            m.submodules[f"skid{k}"] = skid = SkidBuffer(upstream.o.payload.shape())
            wiring.connect(m, upstream.o, skid.i)
            wiring.connect(m, skid.o, downstream.i)
        wiring.connect(m, wiring.flipped(self.i), self._blocks[0].i)
        wiring.connect(m, self._blocks[-1].o, wiring.flipped(self.o))
        return m


def adversarial_conv1(ws: weights.WeightSet) -> weights.WeightSet:
    """conv1 with a filter of all +127 (bias +127) and one of all -128 (bias -128), the others
    random over the whole int8 range: on a white image the first two overflow each way."""
    params = dict(ws.params)
    w, b = params["conv1.weight"].copy(), params["conv1.bias"].copy()
    w[0], w[1], b[0], b[1] = 127, -128, 127, -128
    params["conv1.weight"], params["conv1.bias"] = w, b
    return weights.WeightSet(params, ws.manifest)


def corner_images(network: Network, seed: int) -> np.ndarray:
    """White, black, one channel white, random pixels, and a checkerboard unlike in each channel."""
    c, s = network.input_channels, network.image_size
    rng = np.random.default_rng(seed)
    one = np.zeros((c, s, s), np.uint8)
    one[1] = 255
    board = ((np.indices((s, s)).sum(0) + np.arange(c)[:, None, None]) % 2 * 255).astype(np.uint8)
    return np.stack([np.full((c, s, s), 255, np.uint8), np.zeros((c, s, s), np.uint8), one,
                     rng.integers(0, 256, (c, s, s), dtype=np.uint8), board])


@pytest.mark.verilator
@pytest.mark.parametrize("mode,filters", [(arith.Arithmetic(), 1), (arith.Arithmetic("floor", "wrap"), 2)],
                         ids=["half_up-saturate-1-filter", "floor-wrap-2-filters"])
def test_the_first_layer_alone_with_three_channels(mode, filters, tmp_path_factory):
    """Pixel bytes channel-interleaved in, conv1's activations out, each equal to the golden
    model's (its trace), under input bubbles and output back-pressure; the data overflows both
    ways and tells the modes apart, so the test cannot pass vacuously."""
    verilator_or_skip()
    ws = adversarial_conv1(random_weights(TINY_RGB, 7))
    pictures = corner_images(TINY_RGB, 8)
    config = StreamingConfig(mode, 8, (filters, 1))
    _, trace = golden.forward(pictures, ws.params, mode, TINY_RGB, trace=True)
    acc, expected = trace["conv1.acc"], trace["conv1"]
    shifted = (acc + mode.round_offset) >> arith.FRAC_BITS
    assert (shifted > arith.QMAX).any() and (shifted < arith.QMIN).any(), "no overflow either way"
    other = arith.Arithmetic(mode.rounding, next(o for o in arith.Overflow if o != mode.overflow))
    assert (golden.activate(acc, other) != expected).any(), "overflow mode makes no difference"
    block = FirstLayer(LeNetAccelerator(ws, config))
    stream_bytes = np.concatenate([images.stream_order(p) for p in pictures]).reshape(-1, 1)
    data = {"pixels": stream_bytes, "expected": expected.transpose(0, 2, 3, 1).reshape(-1, filters),
            "images": len(pictures), "cycles": len(pictures) * 2 * TINY_RGB.layers[0].macs // 25 + 1000,
            "stalls": np.array([(0.0, 0.0), (0.3, 0.4)], np.float64), "seed": 11, "measure": False}
    result = runner.run(verilog.convert(block, name="first_layer"), "first_layer", "lenet_fpga.sim.tb_conv", data,
                        simulator="verilator", build_root=tmp_path_factory.getbasetemp() / "sim")
    np.testing.assert_array_equal(result.outputs["got"], np.concatenate([data["expected"]] * 2))


@pytest.mark.verilator
def test_compact_design_with_three_channels(sim_build):
    """The whole compact design with random weights over the whole int8 range (every layer
    overflows) on colour corner images: every logit golden, the cycles the cycle model's."""
    verilator_or_skip()
    ws = random_weights(TINY_RGB, 12)
    pictures = corner_images(TINY_RGB, 13)[[0, 3, 4]]
    run = simulate(ws, pictures, CompactConfig(arith.Arithmetic("floor", "wrap"), lanes=8), simulator="verilator",
                   build_root=sim_build)
    check_bit_exact(run, "compact, 3 channels")
    assert (run.cycles == sum(run.model.values())).all()


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("preset_name", ["baseline", "fast"])
def test_streaming_design_with_three_channels_and_random_weights(preset_name, sim_build):
    """The whole streaming design with random int8 weights (every layer overflows) on colour
    corner images, at both presets (fast: several filters at once)."""
    from lenet_fpga.hdl.lenet import preset

    verilator_or_skip()
    ws = random_weights(TINY_RGB, 14)
    run = simulate(ws, corner_images(TINY_RGB, 15), preset(preset_name, TINY_RGB), simulator="verilator",
                   build_root=sim_build)
    check_bit_exact(run, f"streaming {preset_name}, 3 channels")


# ---- end to end ----

@pytest.mark.torch
@pytest.mark.verilator
def test_an_rgb_32x32_network_from_training_to_rtl_on_a_data_set_of_ones_own(tmp_path, capsys, sim_build):
    """train (briefly) on 180 synthetic 32x32 RGB images -> eval -> sim on Verilator, every logit
    of 4 test images golden -> bench -> compress, all on the data set's test images."""
    verilator_or_skip()
    pictures, labels = colour_bars(180, seed=1)
    data, out, trained = train_on_npz(tmp_path, capsys, pictures, labels, "4,8:16", epochs=2, qat_epochs=1)
    assert trained["network"] == "32x3/4,8:16:3" and trained["n_images"] == 30
    assert trained["fixed_accuracy"] > 0.5  # chance is 1/3
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["network"]["input_channels"] == 3 and manifest["dataset"]["channels"] == 3

    result = run_json(capsys, "eval", "--dataset", data, "--weights", out)
    assert result["fixed_accuracy"] == result["recorded_accuracy"] == trained["fixed_accuracy"]

    sim_on_dataset(capsys, data, out, "verilator", sim_build, classes=3)

    # bench streams 2 images back to back through the same design (the simulator build is cached)
    (row,) = bench_on_dataset(capsys, data, out, "verilator", sim_build)["configs"]
    assert row["accuracy"] == trained["fixed_accuracy"] and row["rtl"]["mismatches"] == 0

    compressed = run_json(capsys, "compress", "--weights", out, "--dataset", data, "--out", tmp_path / "small.npz",
                          "--codes", "all=4", "--epochs", 1, "--search-images", 60, "--batch-size", 16, "--threads", 1)
    assert compressed["network"] == "32x3/4,8:16:3" and compressed["n_images"] == 30

    # the float checkpoint as a state dict: import takes conv1's channels, the data set's images
    imported = import_float_checkpoint(tmp_path, capsys, data)
    assert imported["network"] == "32x3/4,8:16:3" and imported["float_accuracy"] == trained["float_accuracy"]


def test_a_colour_network_exports_to_onnx_exactly(tmp_path, capsys):
    """The exported graph takes uint8 [N,3,S,S] and gives every golden logit (checked by
    ``export`` itself in onnxruntime, on random colour images)."""
    pytest.importorskip("onnxruntime")
    ws = random_weights(TINY_RGB, 18)
    path = weights.save(tmp_path / "rgb-w.npz", ws.params, ws.manifest)
    assert main(["export", "--weights", str(path), "--out", str(tmp_path / "rgb.onnx")]) == 0
    out = capsys.readouterr().out
    assert "checked in onnxruntime on 40 random images: 120 of 120 logits equal" in out, out


@pytest.mark.slow
@pytest.mark.verilator
def test_board_run_on_a_simulated_board_with_a_colour_network(tmp_path, capsys, sim_build):
    """The ULX3S's design (UART link + streaming accelerator) for an RGB network in Verilator
    behind a pseudo-terminal, and ``board-run`` sending colour images (S*S*3 bytes a CLASSIFY):
    every logit golden."""
    from lenet_fpga.boards.configure import design_config
    from lenet_fpga.boards.platforms import board
    from lenet_fpga.sim.board_sim import BoardSim, LineNoise, simulated_link

    verilator_or_skip()
    ws = random_weights(TINY_RGB, 16)
    path = weights.save(tmp_path / "rgb-w.npz", ws.params, ws.manifest)
    pictures = corner_images(TINY_RGB, 17)
    np.savez(tmp_path / "colour.npz", images=pictures)
    link = simulated_link(ws, design_config(ws, board=board("ulx3s-85f")), 4, board("ulx3s-85f").clock_hz)
    assert link.sizes.pixels == 12 * 12 * 3
    with BoardSim(link, LineNoise(), build_root=sim_build) as sim:
        assert main(["board-run", "--port", sim.port, "--weights", str(path), "--images", str(tmp_path / "colour.npz"),
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = golden.forward(pictures, ws.params, ws.arithmetic, TINY_RGB)
    assert result["total"]["complete"] and result["total"]["mismatches"] == 0
    assert np.array_equal([e["board_logits"] for e in result["images"]], expected)


@pytest.mark.slow
@pytest.mark.verilator
def test_the_axi_stream_wrapper_takes_a_colour_image_as_one_frame(sim_build):
    """Behind AXI4-Stream a frame is S*S*C bytes in stream order, ``tlast`` on the last: three
    colour images answered bit-exactly, and a frame that ends early (its pixel 100 of 432) is
    padded with zeros and flagged, the next one a normal image again."""
    pytest.importorskip("cocotbext.axi", reason="cocotbext-axi is not installed (pip install -e '.[axi]')")
    from lenet_fpga.hdl.axis import axis_verilog, parse_result

    verilator_or_skip()
    ws = random_weights(TINY_RGB, 19)
    pictures = corner_images(TINY_RGB, 20)[[3, 4, 0]]
    n, short = TINY_RGB.pixels, 100
    streams = [images.stream_order(p) for p in pictures]
    seen_first = np.concatenate([streams[0][:short], np.zeros(n - short, np.uint8)])
    seen = np.stack([seen_first.reshape(12, 12, 3).transpose(2, 0, 1), pictures[1], pictures[2]])
    data = {"frames": np.concatenate([streams[0][:short], streams[1], streams[2]]),
            "lengths": np.array([short, n, n]), "seed": np.array(3), "gaps": np.array(0.3), "stall": np.array(0.5)}
    result = runner.run(axis_verilog(LeNetAccelerator(ws), "lenet_axis", depth=2), "lenet_axis",
                        "lenet_fpga.sim.tb_axis", data, simulator="verilator", build_root=sim_build, clock_inside=False)
    logits = golden.forward(seen, ws.params, ws.arithmetic, TINY_RGB)
    answers = [parse_result(row) for row in result.outputs["words"].reshape(3, -1)]
    assert [rtl for _, _, rtl in answers] == logits.tolist()
    assert [error for _, error, _ in answers] == [True, False, False]
