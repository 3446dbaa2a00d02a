# amaranth: UnusedElaboratable=no
"""The board's serial link (``boards/link.py``) with the real bytes on the wire: cocotb drives the
``rx`` pin and decodes ``tx`` bit by bit, and the real ``boards.host.BoardClient`` talks to it
through a simulated serial port (``sim/tb_link.py``).

Two accelerators sit behind the link: a small stand-in with the same ports (below), whose answer
is an exactly predictable function of the pixels, so the whole protocol runs in seconds on
either simulator; and the real ``LeNetAccelerator`` with the shipped weights, whose RESULTs must
equal ``model.golden.forward``.
"""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.sim import Simulator

from lenet_fpga.boards import protocol
from lenet_fpga.boards.link import UARTLink, crc8_next
from lenet_fpga.hdl.lenet import AcceleratorConfig, LeNetAccelerator, accelerator_ports
from lenet_fpga.model import golden, images, weights
from lenet_fpga.model.network import IMAGE_SIZE, N_CLASSES
from lenet_fpga.sim import runner

TB = "lenet_fpga.sim.tb_link"
LINK_TESTS = "link_ping,link_images,link_errors"
TOPLEVEL = "uart_link"
DIVISOR = 8  # cycles per bit: a fast simulation; the link does not care
TIMEOUT_CYCLES = 50 * DIVISOR  # five byte times
PIXELS = IMAGE_SIZE * IMAGE_SIZE
SAMPLES = images.load_image_set()


# --------------------------------------------------------------------------------------------
# A stand-in accelerator


STANDIN_BIAS = np.where(np.arange(N_CLASSES) % 2, 3_000_000, -3_000_000)  # negative logits need all 4 bytes
STANDIN_TAIL = 17  # cycles from the last pixel to done


def standin_logits(imgs: np.ndarray) -> np.ndarray:
    """Logit j = bias_j + sum of the pixels k with k % 10 == j, signed + for even k // 10, - for odd:
    any pixel out of order or lost changes the answer."""
    k = np.arange(PIXELS)
    x = imgs.reshape(len(imgs), PIXELS).astype(np.int64) * np.where((k // 10) % 2, -1, 1)
    return STANDIN_BIAS + np.stack([x[:, k % N_CLASSES == j].sum(axis=1) for j in range(N_CLASSES)], axis=1)


class StandInAccelerator(wiring.Component):
    """The ``LeNetAccelerator`` ports (start/busy/done handshake, ``cycles`` counted the same
    way) around ``standin_logits``; it refuses pixels on an irregular pattern, so the link's
    feeding must hold them."""

    def __init__(self):
        self.logit_shape = signed(24)
        self.config = AcceleratorConfig(linear_lanes=3)
        super().__init__(accelerator_ports(self.logit_shape))

    def elaborate(self, platform):
        m = Module()
        remaining = Signal(range(PIXELS + 1))
        column = Signal(range(N_CLASSES))
        negative = Signal()
        tail = Signal(range(STANDIN_TAIL + 1))
        best = Signal(self.logit_shape)
        pattern = Signal(7, init=1)  # an LFSR: ready about half the time, irregularly
        m.d.sync += pattern.eq(Cat(pattern[1:], pattern[0] ^ pattern[1]))
        m.d.comb += self.pixels.ready.eq((remaining != 0) & pattern[0])

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
        # Argmax in the first ten tail cycles, first maximum wins.
        with m.If(tail != 0):
            m.d.sync += tail.eq(tail - 1)
            j = Signal(range(STANDIN_TAIL))
            m.d.comb += j.eq(STANDIN_TAIL - tail)
            with m.If(j < N_CLASSES):
                with m.If((j == 0) | (self.logits[j] > best)):
                    m.d.sync += [best.eq(self.logits[j]), self.klass.eq(j)]

        m.d.sync += self.done.eq(0)
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(tail == 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        with m.Elif(self.start):
            m.d.sync += [self.busy.eq(1), self.cycles.eq(1), remaining.eq(PIXELS), column.eq(0), negative.eq(0)]
            m.d.sync += [self.logits[j].eq(int(b)) for j, b in enumerate(STANDIN_BIAS)]
        return m


# --------------------------------------------------------------------------------------------


def link_data(link: UARTLink, imgs, logits, cycles_range, seed, gap_bits) -> dict:
    return {
        "divisor": link.divisor, "timeout_cycles": link.timeout_cycles, "seed": seed, "gap_bits": gap_bits,
        "images": imgs, "logits": logits, "klass": golden.classify(logits),
        "info": np.frombuffer(link.info.encode(), np.uint8),
        "cycles_min": cycles_range[0], "cycles_max": cycles_range[1],
    }


def request_cycles(payload: int) -> int:
    return 10 * DIVISOR * (payload + protocol.OVERHEAD_BYTES)


def test_link_with_stand_in(simulator, sim_build):
    seed = 9100
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    imgs[1] = SAMPLES.images[0]
    imgs[2, 0, :5] = protocol.SYNC  # a SYNC byte inside a payload is just a pixel
    logits = standin_logits(imgs)
    assert (logits < 0).any() and (logits > 0).any() and len(set(golden.classify(logits))) > 1, (
        f"seed {seed}: the stand-in answers are not varied enough to test anything")
    link = UARTLink(StandInAccelerator(), DIVISOR, TIMEOUT_CYCLES, weights_id=0x12345678)
    result = runner.run(verilog.convert(link, name=TOPLEVEL), TOPLEVEL, TB,
                        link_data(link, imgs, logits, (PIXELS + STANDIN_TAIL, 4 * PIXELS), seed, gap_bits=1.5),
                        simulator=simulator, build_root=sim_build, testcase=LINK_TESTS)
    # Request and reply bits, random gaps of up to 1.5 bits between request bytes, the compute.
    least = request_cycles(PIXELS) + request_cycles(protocol.RESULT_LENGTH)
    frames, cycles = result.outputs["frame_cycles"], result.outputs["cycles"]
    assert (frames >= least + cycles).all() and (frames <= least + cycles + 1.5 * 8 * (PIXELS + 5) + 100).all(), (
        f"frame cycles {frames.tolist()} for accelerator cycles {cycles.tolist()}, at least {least} + those")


def test_link_real_accelerator(simulator, sim_build):
    """The shipped network behind the link, three sample digits: RESULT == golden, bit for bit."""
    ws = weights.load()
    imgs = SAMPLES.images[:3]
    logits = golden.forward(imgs, ws.params, ws.arithmetic)
    accelerator = LeNetAccelerator(ws, AcceleratorConfig(ws.arithmetic))
    link = UARTLink(accelerator, DIVISOR, TIMEOUT_CYCLES, weights_id=protocol.weights_id(ws.params))
    assert link.info.logit_bits == accelerator.logit_shape.width
    result = runner.run(verilog.convert(link, name=TOPLEVEL), TOPLEVEL, TB,
                        link_data(link, imgs, logits, (5_000, 14_200), 9200, gap_bits=0.0),
                        simulator=simulator, build_root=sim_build, testcase=LINK_TESTS)
    frames, cycles = result.outputs["frame_cycles"], result.outputs["cycles"]
    overhead = frames - cycles - request_cycles(PIXELS) - request_cycles(protocol.RESULT_LENGTH)
    print(f"accelerator cycles {cycles.tolist()}, frame cycles {frames.tolist()}, link overhead {overhead.tolist()}")
    assert (overhead >= 0).all() and (overhead < PIXELS + 100).all(), f"link overhead {overhead.tolist()} cycles"


# --------------------------------------------------------------------------------------------
# Pieces


def test_crc8_next_is_protocol_crc8():
    """The CRC logic against ``protocol.crc8`` for every byte from 16 running CRC values."""
    crc, byte = Signal(8), Signal(8)
    out = Signal(8)
    m = Module()
    m.d.comb += out.eq(crc8_next(crc, byte))
    rng = np.random.default_rng(9300)
    starts = [0x00, 0xFF, 0x80, 0x01, *rng.integers(0, 256, 12).tolist()]
    mismatches = []

    async def bench(ctx):
        for c in starts:
            for b in range(256):
                ctx.set(crc, c)
                ctx.set(byte, b)
                if ctx.get(out) != protocol.crc8(bytes([b]), c):
                    mismatches.append((c, b))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert not mismatches, f"{len(mismatches)} (crc, byte) pairs differ, first {mismatches[0]}"


def test_link_rejects_bad_parameters():
    with pytest.raises(TypeError, match="LeNetAccelerator ports"):
        UARTLink(Module(), DIVISOR, TIMEOUT_CYCLES)
    with pytest.raises(ValueError, match="two byte times"):
        UARTLink(StandInAccelerator(), DIVISOR, 10 * DIVISOR)
    with pytest.raises(ValueError, match="at least 4"):
        UARTLink(StandInAccelerator(), 2, TIMEOUT_CYCLES)
    with pytest.raises(TypeError):
        UARTLink(StandInAccelerator(), DIVISOR, float(TIMEOUT_CYCLES))
