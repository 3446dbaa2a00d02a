"""The board's serial link (``boards/link.py``) with the real bytes on the wire: cocotb drives the
``rx`` pin and decodes ``tx`` bit by bit, and the real ``boards.host.BoardClient`` talks to it
through a simulated serial port (``sim/tb_link.py``).

Two accelerators sit behind the link: a small stand-in with the same ports (below), whose answer
is an exactly predictable function of the pixels and of ten loadable biases (a 30-byte weight
image), and that hangs on command, so the whole protocol, weight loading and the watchdog
included, runs in seconds on either simulator; and the real ``LeNetAccelerator`` with the
shipped weights, whose RESULTs must equal ``model.golden.forward``, before and (on Verilator)
after loading other weights over the line. The link's parts are tested alone in
test_frame_parser.py, test_request_handler.py and test_reply_serialiser.py.
"""

from pathlib import Path


import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib.memory import Memory

from lenet_fpga.boards import protocol
from lenet_fpga.boards.link import UARTLink
from lenet_fpga.hdl.accelerator import Accelerator, weight_image
from lenet_fpga.hdl.report import LayerRow
from lenet_fpga.hdl.lenet import StreamingConfig, LeNetAccelerator
from lenet_fpga.hdl.loader import WeightLoader
from lenet_fpga.model import golden, images, weights
from lenet_fpga.model.errors import InputError
from lenet_fpga.model.network import ConvSpec, Network
from lenet_fpga.sim import runner

TB = "lenet_fpga.sim.tb_link"
LINK_TESTS = "link_ping,link_images,link_errors"
# (BENCH behind the real accelerator: test_board_sim.py, on Verilator; Icarus would take a minute.)
STANDIN_LINK_TESTS = LINK_TESTS + ",link_refuses_at_once,link_dribbling_sender,link_bench"
LOAD_TESTS = "link_load,link_load_errors,link_hang"
TOPLEVEL = "uart_link"
DIVISOR = 8  # cycles per bit: a fast simulation; the link does not care
TIMEOUT_CYCLES = 50 * DIVISOR  # five byte times
SAMPLES = images.load_image_set()
# The stand-in's network: 10 x 10 images (107-byte CLASSIFY frames instead of LeNet-5's 791, so
# the protocol tests run several times faster) and 12 classes (not LeNet-5's 10: the sizes travel).
STANDIN = Network(convs=(ConvSpec(2, kernel=3),), hidden=(), classes=12, image_size=10)
IMAGE_SIZE, N_CLASSES, PIXELS = STANDIN.image_size, STANDIN.classes, STANDIN.pixels
STANDIN_SAMPLES = SAMPLES.images[:, 9:19, 9:19]  # the middle of the shipped digits
WRAP_WEIGHTS = Path(weights.__file__).parent / "assets" / "lenet5_wrap.npz"


# --------------------------------------------------------------------------------------------
# A stand-in accelerator


STANDIN_BIAS = np.where(np.arange(N_CLASSES) % 2, 3_000_000, -3_000_000)  # negative logits need all 4 bytes
STANDIN_TAIL = 2 * N_CLASSES + 1  # cycles from the last pixel to done: a bias read, the additions, the argmax
STANDIN_LINGER = 8_000  # cycles the stand-in stays busy after done in the weight-loading tests
BROKEN = 1_000  # added to every logit once a weight byte came while the stand-in was busy
HANG = bytes([0xDE, 0xAD, 0xBE, 0xEF])  # an image that starts so, or weight bytes in a row, hang it
STANDIN_WATCHDOG = 30_000  # cycles: an image takes at most 4 x 784 + 21, the linger 8,000


def standin_logits(imgs: np.ndarray, bias=STANDIN_BIAS) -> np.ndarray:
    """Logit j = bias_j + sum of the pixels k with k % classes == j, signed + for even k // classes,
    - for odd: any pixel out of order or lost changes the answer."""
    k = np.arange(PIXELS)
    x = imgs.reshape(len(imgs), PIXELS).astype(np.int64) * np.where((k // N_CLASSES) % 2, -1, 1)
    return np.asarray(bias) + np.stack([x[:, k % N_CLASSES == j].sum(axis=1) for j in range(N_CLASSES)], axis=1)


class StandInAccelerator(Accelerator):
    """The ``LeNetAccelerator`` ports (start/busy/done handshake, ``cycles`` counted the same
    way) around ``standin_logits``; it refuses pixels on an irregular pattern, so the link's
    feeding must hold them. Its weights are the ten biases, signed 24-bit words in a memory
    behind a ``WeightLoader``; a weight byte that arrives while it is busy breaks every later
    answer (adds ``BROKEN``). It stays ``busy`` ``linger`` cycles after each ``done``. It hangs
    (takes no pixel or weight byte more, never finishes) after an image whose first pixels are
    ``HANG`` or after the bytes of ``HANG`` in a row on ``weights``, until it is reset."""

    design = "streaming"

    def __init__(self, bias=STANDIN_BIAS, in_bitstream: bool = True, linger: int = 0):
        self.weights_in_bitstream = in_bitstream
        self._linger = linger
        nothing = {name: np.zeros(shape, np.int8) for name, shape in STANDIN.parameter_shapes.items()}
        manifest = weights.make_manifest(StreamingConfig().arithmetic, STANDIN)
        super().__init__(weights.WeightSet(nothing, manifest), StreamingConfig(linear_lanes=3), logits=signed(24))
        self.bias_memory = Memory(shape=signed(24), depth=N_CLASSES, init=[int(b) for b in bias])
        self._bias_read = self.bias_memory.read_port()
        self.weight_loader = WeightLoader([self.bias_memory])

    def weight_image(self) -> bytes:
        return self.weight_loader.image()

    def layer_report(self) -> list[LayerRow]:
        """It adds and compares: no multipliers."""
        return [LayerRow("standin", macs=0, multipliers=0, dsp=0, weight_bits=0, memory_bits=24 * N_CLASSES,
                         memory="bram", cycles=PIXELS + STANDIN_TAIL)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.bias_memory = self.bias_memory
        m.submodules.weight_loader = loader = self.weight_loader
        hung = Signal()
        recent_pixels, recent_weights = Signal(32), Signal(32)  # the last four, newest on top
        seen = Signal(range(5))  # pixels of this image so far, up to 4
        magic = int.from_bytes(HANG, "little")
        m.d.comb += [loader.i.payload.eq(self.weights.payload), loader.i.valid.eq(self.weights.valid & ~hung),
                     self.weights.ready.eq(loader.i.ready & ~hung), loader.restart.eq(self.weights_restart)]
        with m.If(self.weights.valid & self.weights.ready):
            m.d.sync += recent_weights.eq(Cat(recent_weights[8:], self.weights.payload))
        with m.If(recent_weights == magic):
            m.d.sync += hung.eq(1)
        with m.If(self.pixels.valid & self.pixels.ready & (seen != 4)):
            m.d.sync += [recent_pixels.eq(Cat(recent_pixels[8:], self.pixels.payload)), seen.eq(seen + 1)]
        with m.If((seen == 4) & (recent_pixels == magic)):
            m.d.sync += hung.eq(1)

        remaining = Signal(range(PIXELS + 1))
        column = Signal(range(N_CLASSES))
        negative = Signal()
        tail = Signal(range(STANDIN_TAIL + 1))
        best = Signal(self.logit_shape)
        running = Signal()  # an image is in flight
        linger = Signal(range(self._linger + 1))
        broken = Signal()
        pattern = Signal(7, init=1)  # an LFSR: ready about half the time, irregularly
        m.d.sync += pattern.eq(Cat(pattern[1:], pattern[0] ^ pattern[1]))
        m.d.comb += [self.pixels.ready.eq((remaining != 0) & pattern[0] & ~hung), self.busy.eq(running | (linger != 0)),
                     self.receiving.eq(running)]
        with m.If(self.weights.valid & self.busy):
            m.d.sync += broken.eq(1)

        with m.If(self.pixels.valid & self.pixels.ready):
            value = Cat(self.pixels.payload, 0).as_signed()
            m.d.sync += [self.logits[column].eq(self.logits[column] + Mux(negative, -value, value)),
                         remaining.eq(remaining - 1)]
            with m.If(column == N_CLASSES - 1):
                m.d.sync += [column.eq(0), negative.eq(~negative)]
            with m.Else():
                m.d.sync += column.eq(column + 1)
            with m.If(remaining == 1):
                m.d.sync += tail.eq(STANDIN_TAIL)
        # Tail step t: read bias t (t < N); add bias t - 1 (1 <= t <= N); argmax over logit
        # t - N - 1, first maximum wins (t > N).
        t = Signal(range(STANDIN_TAIL + 1))
        m.d.comb += [t.eq(STANDIN_TAIL - tail), self._bias_read.addr.eq(t)]
        with m.If(tail != 0):
            m.d.sync += tail.eq(tail - 1)
            for j in range(N_CLASSES):
                with m.If(t == j + 1):
                    m.d.sync += self.logits[j].eq(self.logits[j] + self._bias_read.data + Mux(broken, BROKEN, 0))
                with m.If(t == j + N_CLASSES + 1):
                    with m.If((j == 0) | (self.logits[j] > best)):
                        m.d.sync += [best.eq(self.logits[j]), self.klass.eq(j)]

        m.d.sync += self.done.eq(0)
        with m.If(linger != 0):
            m.d.sync += linger.eq(linger - 1)
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(tail == 1):
                m.d.sync += [running.eq(0), self.done.eq(1), linger.eq(self._linger)]
        with m.Elif(self.start & ~self.busy):
            m.d.sync += [running.eq(1), self.cycles.eq(1), remaining.eq(PIXELS), column.eq(0), negative.eq(0),
                         seen.eq(0)]
            m.d.sync += [self.logits[j].eq(0) for j in range(N_CLASSES)]
        return m


# --------------------------------------------------------------------------------------------


def link_data(link: UARTLink, imgs, logits, cycles_range, seed, gap_bits, **load) -> dict:
    """tb_data for sim/tb_link.py; ``load``: the weight-loading tests' extra entries."""
    data = {
        "divisor": link.divisor, "timeout_cycles": link.timeout_cycles, "frame_cycles": link.frame_cycles,
        "watchdog_cycles": link.watchdog_cycles, "seed": seed, "gap_bits": gap_bits,
        "images": imgs, "logits": logits, "klass": golden.classify(logits),
        "info": np.frombuffer(link.info.encode(), np.uint8),
        "cycles_min": cycles_range[0], "cycles_max": cycles_range[1],
        "in_bitstream": link.info.weights_in_bitstream, "linger_cycles": 0, "chunk": link.sizes.max_chunk,
        "hang_pixels": np.frombuffer(HANG, np.uint8), "hang_weights": np.frombuffer(HANG, np.uint8),
    }
    for key, value in load.items():
        data[key] = np.frombuffer(value, np.uint8) if isinstance(value, bytes) else value
    return data


def standin_load_data(imgs, seed: int) -> dict:
    """Other biases for the stand-in: their image, id and answers, in 8-byte chunks."""
    new_bias = np.random.default_rng(seed).integers(-4_000_000, 4_000_000, N_CLASSES)
    new_logits = standin_logits(imgs, new_bias)
    assert (golden.classify(new_logits) != golden.classify(standin_logits(imgs))).any(), (
        f"seed {seed}: the new biases do not change any class")
    return {"weight_image": StandInAccelerator(new_bias).weight_image(), "weights_id": 0xC0FFEE01,
            "logits_new": new_logits, "old_image": StandInAccelerator().weight_image(), "chunk": 8,
            "linger_cycles": STANDIN_LINGER, "after_link_load": True}


def request_cycles(payload: int) -> int:
    """Line time of a frame with ``payload`` bytes."""
    return 10 * DIVISOR * (payload + protocol.OVERHEAD_BYTES)


def test_link_with_stand_in(simulator, sim_build):
    seed = 9100
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    imgs[1] = STANDIN_SAMPLES[0]
    imgs[2, 0, :5] = protocol.SYNC  # a SYNC byte inside a payload is just a pixel
    assert not any(img.tobytes().startswith(HANG) for img in imgs)
    logits = standin_logits(imgs)
    assert (logits < 0).any() and (logits > 0).any() and len(set(golden.classify(logits))) > 1, (
        f"seed {seed}: the stand-in answers are not varied enough to test anything")
    link = standin_link()
    result = runner.run(verilog.convert(link, name=TOPLEVEL), TOPLEVEL, TB,
                        link_data(link, imgs, logits, (PIXELS + STANDIN_TAIL, 4 * PIXELS), seed, gap_bits=1.5),
                        simulator=simulator, build_root=sim_build, testcase=STANDIN_LINK_TESTS)
    # Request and reply bits, random gaps of up to 1.5 bits between request bytes, the compute.
    least = request_cycles(PIXELS) + request_cycles(link.sizes.result_length)
    frames, cycles = result.outputs["frame_cycles"], result.outputs["cycles"]
    gaps = 1.5 * DIVISOR * (PIXELS + protocol.OVERHEAD_BYTES)
    assert (frames >= least + cycles).all() and (frames <= least + cycles + gaps + 100).all(), (
        f"frame cycles {frames.tolist()} for accelerator cycles {cycles.tolist()}, at least {least} + those")


def standin_link(in_bitstream: bool = True) -> UARTLink:
    return UARTLink(StandInAccelerator(in_bitstream=in_bitstream, linger=STANDIN_LINGER), DIVISOR, TIMEOUT_CYCLES,
                    weights_id=0x12345678, watchdog_cycles=STANDIN_WATCHDOG)


def test_link_stand_in_weight_loading(simulator, sim_build):
    """Loads over the line (the same build as test_link_with_stand_in): a good one, then bad,
    partial, out-of-order, corrupted and busy ones (sim/tb_link.py link_load_errors)."""
    seed = 9120
    imgs = STANDIN_SAMPLES[4:6]
    link = standin_link()
    assert link.weight_bytes == 3 * N_CLASSES and link.info.weights_valid and link.info.weight_bytes == 3 * N_CLASSES
    result = runner.run(verilog.convert(link, name=TOPLEVEL), TOPLEVEL, TB,
                        link_data(link, imgs, standin_logits(imgs), (PIXELS + STANDIN_TAIL, 4 * PIXELS), seed,
                                  gap_bits=1.5, **standin_load_data(imgs, seed)),
                        simulator=simulator, build_root=sim_build, testcase=LOAD_TESTS)
    # 36 bytes (twelve 3-byte biases) in 8-byte chunks: 5 chunks, a commit, and the two PINGs
    # of load_weights.
    assert int(result.outputs["load_frames"]) == 8


def test_link_stand_in_without_weights_in_bitstream(simulator, sim_build):
    """An accelerator whose memories have no initial values (the compact iCE40 design): CLASSIFY
    is refused from reset until a load, then answers with the loaded weights."""
    seed = 9150
    imgs = STANDIN_SAMPLES[6:8]
    link = standin_link(in_bitstream=False)
    assert not link.info.weights_valid and link.info.weights_id == 0 and not link.info.weights_in_bitstream
    runner.run(verilog.convert(link, name=TOPLEVEL), TOPLEVEL, TB,
               link_data(link, imgs, standin_logits(imgs), (PIXELS + STANDIN_TAIL, 4 * PIXELS), seed, gap_bits=0.5,
                         **standin_load_data(imgs, seed)),
               simulator=simulator, build_root=sim_build, testcase="link_load")


@pytest.mark.slow  # CI: the link behind the stand-in, and board-sim behind the real accelerator
def test_link_real_accelerator(simulator, sim_build):
    """The shipped network behind the link, three sample digits: RESULT == golden, bit for bit."""
    ws = weights.load()
    imgs = SAMPLES.images[:3]
    logits = golden.forward(imgs, ws.params, ws.arithmetic)
    accelerator = LeNetAccelerator(ws, StreamingConfig(ws.arithmetic))
    link = UARTLink(accelerator, DIVISOR, TIMEOUT_CYCLES, weights_id=protocol.weights_id(ws.params))
    # The baseline: one filter of 5 x 5 multipliers per conv engine, 20 lanes per linear engine.
    assert link.info.multipliers == 2 * 25 + 3 * 20 and link.info.design == "streaming"
    assert link.info.logit_bits == accelerator.logit_shape.width
    result = runner.run(verilog.convert(link, name=TOPLEVEL), TOPLEVEL, TB,
                        link_data(link, imgs, logits, (5_000, 14_200), 9200, gap_bits=0.0),
                        simulator=simulator, build_root=sim_build, testcase=LINK_TESTS)
    frames, cycles = result.outputs["frame_cycles"], result.outputs["cycles"]
    pixels = ws.network.pixels
    overhead = frames - cycles - request_cycles(pixels) - request_cycles(link.sizes.result_length)
    print(f"accelerator cycles {cycles.tolist()}, frame cycles {frames.tolist()}, link overhead {overhead.tolist()}")
    assert (overhead >= 0).all() and (overhead < pixels + 100).all(), f"link overhead {overhead.tolist()} cycles"


@pytest.mark.slow
@pytest.mark.verilator
def test_link_loads_other_weights_verilator(sim_build):
    """The shipped network's board loads the wrap-trained weights (the whole ~45 KB image, bit by
    bit over the simulated line) and then answers like the golden model of those weights in the
    board's arithmetic, and the load takes the line time of its bytes and about a cycle per
    image byte more. Verilator only: Icarus takes minutes for the 3.7 M clock cycles. (Slow: the
    same load runs in CI through board-sim, test_board_sim.py.)"""
    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))
    ws = weights.load()
    other = weights.load(WRAP_WEIGHTS)
    imgs = SAMPLES.images[:3]
    config = StreamingConfig(ws.arithmetic)
    logits = golden.forward(imgs, ws.params, ws.arithmetic)
    logits_new = golden.forward(imgs, other.params, ws.arithmetic)  # the board's arithmetic, not theirs
    assert (logits_new != logits).any()
    image = weight_image(other, config)
    link = UARTLink(LeNetAccelerator(ws, config), DIVISOR, TIMEOUT_CYCLES, weights_id=protocol.weights_id(ws.params))
    assert link.weight_bytes == len(image)
    result = runner.run(verilog.convert(link, name=TOPLEVEL), TOPLEVEL, TB,
                        link_data(link, imgs, logits, (5_000, 14_200), 9400, gap_bits=0.0, weight_image=image,
                                  weights_id=protocol.weights_id(other.params), logits_new=logits_new),
                        simulator="verilator", build_root=sim_build, testcase="link_load")
    cycles, frames, line_bytes = (int(result.outputs[k]) for k in ("load_cycles", "load_frames", "load_bytes"))
    # Every byte is 10 bit times; the board adds about a cycle per chunk byte (feeding it on).
    print(f"load of {len(image)} image bytes: {frames} frames, {line_bytes} bytes on the line, {cycles} cycles "
          f"= {cycles / DIVISOR / 115_200:.2f} s at 115200 baud")
    assert line_bytes * 10 * DIVISOR <= cycles <= line_bytes * 10 * DIVISOR + 2 * len(image) + 100 * frames


# --------------------------------------------------------------------------------------------
# Pieces


def test_link_rejects_bad_parameters():
    with pytest.raises(TypeError, match="must be an hdl.accelerator.Accelerator"):
        UARTLink(Module(), DIVISOR, TIMEOUT_CYCLES)
    with pytest.raises(ValueError, match="two byte times"):
        UARTLink(StandInAccelerator(), DIVISOR, 10 * DIVISOR)
    with pytest.raises(ValueError, match="at least 4"):
        UARTLink(StandInAccelerator(), 2, TIMEOUT_CYCLES)
    with pytest.raises(TypeError):
        UARTLink(StandInAccelerator(), DIVISOR, float(TIMEOUT_CYCLES))
    with pytest.raises(ValueError, match="line time"):
        UARTLink(StandInAccelerator(), DIVISOR, TIMEOUT_CYCLES, frame_cycles=request_cycles(PIXELS))
    with pytest.raises(ValueError, match="watchdog_cycles must be at least 200"):  # two cycles per pixel
        UARTLink(StandInAccelerator(), DIVISOR, TIMEOUT_CYCLES, watchdog_cycles=199)


def test_link_reads_everything_from_the_accelerator():
    """INFO from the accelerator's interface alone: the network's sizes, the logits' width, the
    multipliers, the design, the weight image's size; the frame deadline from the longest
    request (a full chunk, 5 + 100 bytes, with 7 bytes of framing, 10 bits each)."""
    link = standin_link()
    info = link.info
    assert (info.image_size, info.classes, info.logit_bits, info.design) == (10, 12, 24, "streaming")
    assert info.multipliers == 0 and info.weight_bytes == 36  # twelve 24-bit biases, 3 bytes each
    longest = (5 + 100 + 7) * 10 * DIVISOR
    assert link.frame_cycles == 2 * longest + TIMEOUT_CYCLES and link.watchdog_cycles == STANDIN_WATCHDOG
