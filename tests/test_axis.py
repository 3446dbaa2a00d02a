"""The AXI4-Stream wrapper (hdl/axis.py) around both real designs, end to end, with cocotbext-axi's
AxiStreamSource and AxiStreamSink (sim/tb_axis.py): random ``tvalid`` gaps on the pixel and
weight streams and random ``tready`` back-pressure on the result stream. Every result frame must
equal the golden model's answer for its pixel frame (class, logits and error bit), one frame per
pixel frame, in order; frames with an early or a missing ``tlast`` are answered (flagged) and the
frame after them is a normal image again. The compact design's weights always come through the
weight stream; the streaming design gets other weights through it in a test of its own.

Both simulators, both designs. Icarus runs few images (the full network takes seconds an image
there); Verilator more. The wrapper's control alone, in Amaranth's simulator: test_axis_control.py.
"""

import numpy as np
import pytest

from lenet_fpga.hdl import designs
from lenet_fpga.hdl.accelerator import weight_image
from lenet_fpga.hdl.axis import axis_verilog, parse_result
from lenet_fpga.model import golden, images, weights
from lenet_fpga.sim import runner

pytest.importorskip("cocotbext.axi", reason="cocotbext-axi is not installed (pip install -e '.[axi]')")

TB = "lenet_fpga.sim.tb_axis"
TOPLEVEL = "lenet_axis"
SAMPLES = images.load_image_set()
SIMULATORS = ("icarus", "verilator")
_VERILOG: dict = {}


def _simulator(name: str) -> str:
    from lenet_fpga.model.errors import InputError

    try:
        runner.prepare_simulator(name)
    except InputError as e:
        pytest.skip(str(e))
    return name


def _design(name: str):
    """The shipped weights, the design's configuration (the compact one's weights in SPRAM, loaded
    through the weight stream) and the wrapper's Verilog, made once per session."""
    if name not in _VERILOG:
        ws = weights.load()
        options = designs.GeneratorOptions(design=name, compact_weights="spram" if name == "compact" else "auto")
        config = designs.design(name).configure(ws, options)
        accelerator = config.build(ws)
        image = None if accelerator.weights_in_bitstream else accelerator.weight_image()
        _VERILOG[name] = (ws, config, axis_verilog(accelerator, TOPLEVEL, depth=2), image)
    return _VERILOG[name]


def _frames(imgs, wrong=()):
    """The pixel stream and frame lengths for ``imgs``; ``wrong`` maps an image index to a frame
    length other than the image's (shorter: tlast early; longer: tlast missing on the last pixel,
    random pixels after it). Returns the frames and the images the accelerator really sees."""
    rng = np.random.default_rng(5)
    n = imgs[0].size
    chunks, lengths, seen = [], [], []
    for k, img in enumerate(imgs):
        flat = img.reshape(-1).astype(np.uint8)
        length = wrong.get(k, n)
        if length < n:
            chunks.append(flat[:length])
            seen.append(np.concatenate([flat[:length], np.zeros(n - length, np.uint8)]).reshape(img.shape))
        else:
            chunks.append(np.concatenate([flat, rng.integers(0, 256, length - n, dtype=np.uint8)]))
            seen.append(img)
        lengths.append(length)
    return np.concatenate(chunks), np.array(lengths), np.stack(seen)


def _run(name, simulator, sim_build, imgs, wrong=(), params=None, weight_image=None, seed=1):
    ws, config, verilog, image = _design(name)
    frames, lengths, seen = _frames(imgs, dict(wrong))
    data = {"frames": frames, "lengths": lengths, "seed": np.array(seed), "gaps": np.array(0.3),
            "stall": np.array(0.5)}
    if weight_image is not None:
        data["weights"] = np.frombuffer(weight_image, np.uint8)
    elif image is not None:
        data["weights"] = np.frombuffer(image, np.uint8)
    # cocotb's clock: cocotbext-axi reads the bus in its clock-edge callbacks (sim/tb_axis.py).
    result = runner.run(verilog, TOPLEVEL, TB, data, simulator=simulator, build_root=sim_build, clock_inside=False)
    beats = result.outputs["beats"]
    assert len(beats) == len(imgs), f"{len(beats)} result frames for {len(imgs)} pixel frames"
    assert (beats == 1 + ws.network.classes).all(), f"words per result frame: {beats.tolist()}"
    words = result.outputs["words"].reshape(len(imgs), -1)
    logits = golden.forward(seen, params if params is not None else ws.params, config.arithmetic)
    for k, row in enumerate(words):
        klass, error, rtl = parse_result(row)
        assert rtl == logits[k].tolist(), f"image {k}: rtl {rtl} golden {logits[k].tolist()}"
        assert klass == int(np.argmax(logits[k])), f"image {k}: class {klass}"
        assert error == (k in dict(wrong)), f"image {k}: error bit {error}"
    assert int(result.outputs["tlast_errors"]) == len(dict(wrong))
    return result


def _count(simulator: str, icarus: int, verilator: int) -> int:
    return verilator if simulator == "verilator" else icarus


# Icarus on the compact design: about a minute (45 k weight bytes through cocotbext-axi before
# the images); the same design under the same sink runs on Verilator in the quick suite.
@pytest.mark.parametrize("name, simulator_name", [
    (name, simulator) if (name, simulator) != ("compact", "icarus") else
    pytest.param(name, simulator, marks=pytest.mark.slow) for name in designs.DESIGNS for simulator in SIMULATORS])
def test_images_under_random_backpressure(name, simulator_name, sim_build):
    """Images back to back (the compact design after its weights came through the weight
    stream), the sink refusing half the cycles: every answer, in order, bit-exact."""
    simulator = _simulator(simulator_name)
    n = _count(simulator, 3 if name == "streaming" else 2, 6)
    imgs = SAMPLES.images[:n]
    _run(name, simulator, sim_build, imgs)


# Icarus on the compact design: 34 s (its weights come through the stream first); the same frames
# run on Verilator and on Icarus with the streaming design in the quick suite.
@pytest.mark.parametrize("name, simulator_name", [
    (name, simulator) if (name, simulator) != ("compact", "icarus") else
    pytest.param(name, simulator, marks=pytest.mark.slow) for name in designs.DESIGNS for simulator in SIMULATORS])
def test_wrong_tlast_flagged_and_resynchronised(name, simulator_name, sim_build):
    """Frame 0 ends early (tlast on pixel 300), frame 1 runs on 50 pixels past its last (tlast
    missing there), frame 2 is a normal image: three answers, the first two flagged."""
    simulator = _simulator(simulator_name)
    imgs = SAMPLES.images[3:6]
    _run(name, simulator, sim_build, imgs, wrong={0: 300, 1: imgs[0].size + 50}, seed=2)


# On Icarus 33 s (45 k weight bytes through cocotbext-axi); the compact design's tests load
# weights through the stream on both simulators anyway.
@pytest.mark.parametrize("simulator_name", ["verilator", pytest.param("icarus", marks=pytest.mark.slow)])
def test_streaming_design_takes_other_weights_through_the_weight_stream(simulator_name, sim_build, random_params):
    """The streaming design's weights are in its bitstream; a weight frame replaces them, and the
    answers are the golden model's for the new weights (not the shipped ones)."""
    simulator = _simulator(simulator_name)
    ws, config, _, _ = _design("streaming")
    other = weights.WeightSet(random_params(np.random.default_rng(8), 40), {})
    image = weight_image(other, config)
    imgs = SAMPLES.images[6:6 + _count(simulator, 2, 6)]
    assert not np.array_equal(golden.forward(imgs, other.params, config.arithmetic),
                              golden.forward(imgs, ws.params, config.arithmetic))
    _run("streaming", simulator, sim_build, imgs, params=other.params, weight_image=image, seed=3)
