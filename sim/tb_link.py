"""cocotb testbenches for the serial side of a board: ``boards/uart.py`` and ``boards/link.py``.

Everything goes through the real bits on the wire. ``SerialLine`` is the far end of the cable:
it drives the DUT's ``rx`` pin bit by bit (sleeping a bit time between writes, so Python wakes
once per bit, not per clock) and decodes the ``tx`` pin bit by bit, sampling in the middle of
each bit. ``SimulatedSerialPort`` puts pyserial's blocking ``write``/``read``/
``reset_input_buffer`` on top of it with ``cocotb.task.resume``, so the real
``boards.host.BoardClient`` runs unchanged in a ``cocotb.task.bridge`` thread against the
simulated board.

UART tests (``uart_*``; DUT: the receiver and transmitter side by side, ports ``rx``, ``o``,
``error``, ``overrun``, ``i``, ``tx``); ``tb_data``: ``divisor``, ``seed``, ``data`` (bytes).

Link tests (``link_*``; DUT: ``UARTLink``, ports ``rx``, ``tx``); ``tb_data``: ``divisor``,
``timeout_cycles``, ``seed``, ``images`` uint8 [N,28,28], ``logits`` [N,10] and ``klass`` [N]
(the expected answers), ``info`` (the expected INFO payload), ``cycles_min``/``cycles_max``
(bounds on the accelerator's reported cycles). ``link_images`` hands back (``tb_output``)
``cycles`` (reported by the board) and ``frame_cycles`` (clock cycles from the first bit of the
CLASSIFY request to the last bit of the RESULT reply) per image.

Weight-loading tests (``link_load``, ``link_load_errors``) also take ``weight_image`` (uint8, the
image of other weights), ``weights_id`` (theirs), ``logits_new`` [N,10] (the answers with them)
and ``in_bitstream`` (whether the board's weights are valid from reset); ``chunk`` (image bytes
per LOAD_WEIGHTS frame) and, for ``link_load_errors``, ``old_image`` (the bitstream's image),
``linger_cycles`` (how long the stand-in accelerator stays busy after an answer) and
``after_link_load`` (link_load ran before it in the same simulation). ``link_load`` hands back
``load_cycles`` (from the first bit of ``BoardClient.load_weights``' first request to the last
bit of its last reply), ``load_frames`` (requests it sent) and ``load_bytes`` (bytes on the
line both ways).
"""

import itertools
import os
import random

import cocotb
import numpy as np
from cocotb.task import bridge, resume
from cocotb.triggers import Event, FallingEdge, First, ReadOnly, RisingEdge, Timer, ValueChange
from cocotb.utils import get_sim_time

from ..boards import protocol
from ..boards.host import BoardClient, BoardError
from ..boards.protocol import ErrorCode, FrameType
from .runner import tb_data, tb_output
from .streams import StreamSource, start_clock_and_reset

CLOCK_NS = 10


def now_ps() -> int:
    return round(get_sim_time("ps"))


class SerialLine:
    """The host end of a simulated 8N1 cable on the DUT's ``rx`` (we drive) and ``tx`` (we read).

    ``gap_bits`` > 0 adds a random idle time (0 .. gap_bits bit times, any number of clock
    cycles, so the start bits fall at every phase of the receiver's bit timer) after each byte;
    ``rate`` scales the bit time we send with (1.02 = a host 2 % slow).
    """

    def __init__(self, dut, divisor: int, rng: random.Random | None = None, gap_bits: float = 0.0):
        self.clk, self.rx, self.tx = dut.clk, dut.rx, dut.tx
        self.bit_ps = divisor * CLOCK_NS * 1000
        self.rng, self.gap_bits = rng or random.Random(0), gap_bits
        self.rate = 1.0
        self.received = bytearray()
        self.sent_bytes = self.received_bytes = 0  # on the line so far, each way
        self.last_stop_ps = 0  # when the last received byte's stop bit ended
        self._arrived = Event()
        self.rx.value = 1
        self._listener = cocotb.start_soon(self._listen())

    async def send_bits(self, bits) -> None:
        # Bit times are whole clock periods (at rate 1), so starting on a falling edge keeps every
        # write away from the rising edges: no race between our write and the DUT's sampling.
        await FallingEdge(self.clk)
        await self._bits(bits)

    async def _bits(self, bits) -> None:
        # One wake-up per run of equal bits, not per bit (a zero pixel is two runs, not ten):
        # the same line, several times faster to simulate.
        bit_time = round(self.bit_ps * self.rate)
        for level, run in itertools.groupby(bits):
            self.rx.value = level
            await Timer(bit_time * len(list(run)), "ps")

    @staticmethod
    def _frame_bits(byte: int) -> list[int]:
        return [0, *((byte >> k) & 1 for k in range(8)), 1]

    async def send(self, data: bytes) -> None:
        await FallingEdge(self.clk)
        self.sent_bytes += len(data)
        if not self.gap_bits:
            await self._bits([bit for byte in bytes(data) for bit in self._frame_bits(byte)])
            return
        for byte in bytes(data):
            await self._bits(self._frame_bits(byte))
            if self.gap_bits:
                gap_cycles = self.rng.randrange(int(self.gap_bits * self.bit_ps / (CLOCK_NS * 1000)) + 1)
                if gap_cycles:
                    await Timer(gap_cycles * CLOCK_NS, "ns")

    async def _listen(self) -> None:
        while True:
            await FallingEdge(self.tx)
            await Timer(self.bit_ps // 2, "ps")
            assert int(self.tx.value) == 0, f"tx: a glitch, not a start bit, at {now_ps()} ps"
            byte = 0
            for k in range(8):
                await Timer(self.bit_ps, "ps")
                byte |= int(self.tx.value) << k
            await Timer(self.bit_ps, "ps")
            assert int(self.tx.value) == 1, f"tx: framing error (stop bit low) at {now_ps()} ps"
            self.last_stop_ps = now_ps() + self.bit_ps // 2
            self.received.append(byte)
            self.received_bytes += 1
            self._arrived.set()

    async def read(self, count: int, timeout_ps: int) -> bytes:
        """Up to ``count`` received bytes; fewer if ``timeout_ps`` passes first (like pyserial)."""
        deadline = now_ps() + timeout_ps
        while len(self.received) < count and now_ps() < deadline:
            self._arrived.clear()
            await First(self._arrived.wait(), Timer(deadline - now_ps(), "ps"))
        data = bytes(self.received[:count])
        del self.received[:count]
        return data


class SimulatedSerialPort:
    """pyserial's blocking port interface over a ``SerialLine``, for code in a bridge thread."""

    def __init__(self, line: SerialLine, timeout_cycles: int):
        self.line = line
        self.timeout_ps = timeout_cycles * CLOCK_NS * 1000
        self._send = resume(line.send)
        self._read = resume(line.read)

    def write(self, data: bytes) -> int:
        self._send(bytes(data))
        return len(data)

    def read(self, count: int) -> bytes:
        return self._read(count, self.timeout_ps)

    def reset_input_buffer(self) -> None:
        self.line.received.clear()


# --------------------------------------------------------------------------------------------
# UART


class ByteMonitor:
    """Collects the receiver's ``o`` transfers and counts its ``error``/``overrun`` pulses."""

    def __init__(self, dut, ready: bool = True):
        self.dut, self.bytes, self.errors, self.overruns = dut, [], 0, 0
        dut.o__ready.value = int(ready)
        cocotb.start_soon(self._watch())

    async def _watch(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if dut.o__valid.value and dut.o__ready.value:
                self.bytes.append(int(dut.o__payload.value))
            self.errors += int(dut.error.value)
            self.overruns += int(dut.overrun.value)


async def uart_setup(dut):
    dut.rx.value = 1
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    await start_clock_and_reset(dut)
    data = tb_data()
    return int(data["divisor"]), int(data["seed"]), bytes(data["data"].astype(np.uint8))


@cocotb.test()
async def uart_rx_bytes(dut):
    """Every byte arrives, with random idle gaps, and from a sender 2 % slow and 2 % fast."""
    divisor, seed, data = await uart_setup(dut)
    monitor = ByteMonitor(dut)
    line = SerialLine(dut, divisor, random.Random(seed), gap_bits=3)
    for rate in (1.0, 1.02, 0.98):
        line.rate = rate
        monitor.bytes.clear()
        await line.send(data)
        await Timer(2 * line.bit_ps, "ps")
        got = bytes(monitor.bytes)
        first = next((k for k in range(min(len(got), len(data))) if got[k] != data[k]), min(len(got), len(data)))
        assert got == data, (f"seed {seed}, divisor {divisor}, bit time x{rate}: received {len(got)} of "
                             f"{len(data)} bytes, first difference at byte {first}")
    assert monitor.errors == 0 and monitor.overruns == 0, f"seed {seed}: spurious error/overrun pulses"


@cocotb.test()
async def uart_rx_framing_error_and_glitch(dut):
    """A low stop bit drops the byte and pulses ``error``; a glitch shorter than half a bit is
    no start bit; the receiver works normally after both."""
    divisor, seed, _ = await uart_setup(dut)
    monitor = ByteMonitor(dut)
    line = SerialLine(dut, divisor)
    bit_ps = line.bit_ps
    # 0x3C with its stop bit low, the line held low 3 more bits (a break), then idle.
    await line.send_bits([0, 0, 0, 1, 1, 1, 1, 0, 0] + [0] * 4)
    await line.send_bits([1, 1])
    assert monitor.bytes == [] and monitor.errors == 1, (
        f"framing error: got bytes {monitor.bytes}, {monitor.errors} error pulses (expected none, 1)")
    await line.send(b"\x81")
    # Glitches of 1 cycle up to just under half a bit, each followed by idle time.
    await FallingEdge(dut.clk)
    for cycles in range(1, (divisor + 1) // 2):
        dut.rx.value = 0
        await Timer(cycles * CLOCK_NS, "ns")
        dut.rx.value = 1
        await Timer(2 * bit_ps, "ps")
    await line.send(b"\x7e")
    await Timer(2 * bit_ps, "ps")
    assert monitor.bytes == [0x81, 0x7E] and monitor.errors == 1, (
        f"after the framing error and the glitches: got bytes {[hex(b) for b in monitor.bytes]}, "
        f"{monitor.errors} error pulses (expected [0x81, 0x7e], 1)")


@cocotb.test()
async def uart_rx_overrun(dut):
    """A byte that completes while the previous one waits is dropped with an ``overrun`` pulse."""
    divisor, seed, _ = await uart_setup(dut)
    monitor = ByteMonitor(dut, ready=False)
    line = SerialLine(dut, divisor)
    await line.send(b"\x12\x34")
    await Timer(line.bit_ps, "ps")
    assert monitor.overruns == 1, f"{monitor.overruns} overrun pulses, expected 1"
    await RisingEdge(dut.clk)
    dut.o__ready.value = 1
    await line.send(b"\x56")
    await Timer(line.bit_ps, "ps")
    assert monitor.bytes == [0x12, 0x56], f"got {[hex(b) for b in monitor.bytes]}, expected [0x12, 0x56]"


@cocotb.test()
async def uart_tx_bit_timing(dut):
    """Every bit lasts exactly ``divisor`` cycles, back-to-back bytes leave ``10 * divisor``
    cycles apart, and random input bubbles only add idle time between whole frames."""
    divisor, seed, data = await uart_setup(dut)
    dut.o__ready.value = 1
    assert int(dut.tx.value) == 1, "tx is not idle high after reset"
    bit_ps = divisor * CLOCK_NS * 1000
    changes: list[tuple[int, int]] = []

    async def record():
        while True:
            await ValueChange(dut.tx)
            changes.append((now_ps(), int(dut.tx.value)))

    cocotb.start_soon(record())
    rng = random.Random(seed)
    for stall in (0.0, 0.5):
        changes.clear()
        await RisingEdge(dut.clk)  # drive right after an edge, as the DUT's own flops do
        if stall == 0.0:
            await StreamSource(dut, "i").send(data)
        else:  # with probability ``stall``, wait 1 .. 30 bit times before offering the next byte
            for byte in data:
                if rng.random() < stall:
                    await Timer(rng.randrange(1, 30 * divisor) * CLOCK_NS, "ns")
                    await RisingEdge(dut.clk)
                await StreamSource(dut, "i").send([byte])
        await Timer(12 * bit_ps, "ps")
        # Rebuild the bit sequence from the transition times: each frame starts at a falling edge
        # from idle, and within a frame every transition must fall on a whole bit time.
        got, starts, k = bytearray(), [], 0
        while k < len(changes):
            t0, level = changes[k]
            assert level == 0, f"stall {stall}: line went {level} at {t0} ps while idle"
            starts.append(t0)
            bits = [0] * 10
            k += 1
            while k < len(changes) and changes[k][0] < t0 + 10 * bit_ps:
                offset = changes[k][0] - t0
                assert offset % bit_ps == 0, (f"seed {seed}, stall {stall}: tx changed {offset / bit_ps:.3f} "
                                              f"bits into the frame starting at {t0} ps")
                for b in range(offset // bit_ps, 10):
                    bits[b] = changes[k][1]
                k += 1
            assert bits[9] == 1, f"stall {stall}: stop bit low in the frame at {t0} ps"
            got.append(sum(bit << i for i, bit in enumerate(bits[1:9])))
        assert bytes(got) == data, f"seed {seed}, stall {stall}: sent {data.hex()}, the line carried {got.hex()}"
        spacing = set(np.diff(starts).tolist())
        if stall == 0.0:
            assert spacing == {10 * bit_ps}, f"back-to-back frames {sorted(spacing)} ps apart, not {10 * bit_ps}"
        else:
            assert min(spacing) == 10 * bit_ps and len(spacing) > 1, f"stalled frames spaced {sorted(spacing)}"


# --------------------------------------------------------------------------------------------
# Link


def add_output(**arrays) -> None:
    """``tb_output`` that keeps what earlier tests of the same run handed back."""
    path = os.environ.get("LENET_TB_OUT")
    if path and os.path.exists(path) and os.path.getsize(path):
        with np.load(path) as earlier:
            arrays = {**{k: earlier[k] for k in earlier.files}, **arrays}
    tb_output(**arrays)


class LinkBench:
    """Clock, reset, the simulated cable and a BoardClient on it."""

    def __init__(self, dut):
        data = tb_data()
        self.dut = dut
        self.data = data
        self.divisor = int(data["divisor"])
        self.timeout_cycles = int(data["timeout_cycles"])
        self.seed = int(data["seed"])
        self.rng = random.Random(self.seed)
        self.line = SerialLine(dut, self.divisor, self.rng, gap_bits=float(data.get("gap_bits", 0.0)))
        # A client read waits long enough for the board's timeout, or its longest classification,
        # and then a whole reply.
        byte_cycles = 10 * self.divisor
        self.reply_cycles = (max(self.timeout_cycles, int(data["cycles_max"]))
                             + byte_cycles * (protocol.RESULT_LENGTH + protocol.OVERHEAD_BYTES + 4))
        self.port = SimulatedSerialPort(self.line, self.reply_cycles)
        self.client = BoardClient(self.port)

    async def start(self):
        await start_clock_and_reset(self.dut)

    async def reset(self):
        """Pulse ``rst`` for two cycles with the clock running (the memories keep their contents)."""
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 1
        for _ in range(2):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def call(self, method, *args):
        """Run a blocking client method in a bridge thread; return (result, BoardError or None)."""

        def attempt():
            try:
                return method(*args), None
            except BoardError as e:
                return None, e

        return await bridge(attempt)()

    async def expect_error(self, request: bytes, code: ErrorCode, what: str):
        reply, error = await self.call(self.client.transact, request)
        assert error is not None and error.code == code, (
            f"{what}: expected ERROR {code.name}, got {error or reply}")

    async def classify_and_check(self, index: int, what: str = "", logits: str = "logits",
                                 settle: bool = True) -> tuple[int, int]:
        """Classify image ``index``; its answer must be ``data[logits][index]`` and their argmax.
        With ``settle``, then wait until an accelerator that lingers busy (``linger_cycles``) is idle."""
        image = self.data["images"][index]
        started = now_ps()
        result, error = await self.call(self.client.classify, image)
        assert error is None, f"image {index}{what}: {error}"
        frame_cycles = (self.line.last_stop_ps - started) // (CLOCK_NS * 1000)
        klass, got, cycles = result
        expected = self.data[logits][index]
        assert (got == expected).all() and klass == np.argmax(expected), (
            f"image {index}{what}: board class {klass} logits {got.tolist()}, "
            f"expected class {np.argmax(expected)} logits {expected.tolist()}")
        assert self.data["cycles_min"] <= cycles <= self.data["cycles_max"], f"image {index}: {cycles} cycles"
        linger = int(self.data.get("linger_cycles", 0))
        if settle and linger:
            await Timer(linger * CLOCK_NS, "ns")
        return cycles, frame_cycles


@cocotb.test()
async def link_ping(dut):
    """PING -> INFO with the expected payload; garbage before the SYNC is ignored."""
    bench = LinkBench(dut)
    await bench.start()
    info, error = await bench.call(bench.client.ping)
    assert error is None, f"ping: {error}"
    assert info.encode() == bytes(bench.data["info"].astype(np.uint8)), f"INFO {info}"
    garbage = bytes([0x00, 0xFF, 0x13, 0x5A, 0x81, 0x00]) + bytes(bench.rng.randrange(256) for _ in range(12))
    garbage = garbage.replace(bytes([protocol.SYNC]), b"\x00")
    reply, error = await bench.call(bench.client.transact, garbage + protocol.ping_request())
    assert error is None and reply.type == FrameType.INFO, f"ping after garbage: {error or reply}"


@cocotb.test()
async def link_images(dut):
    """Images back to back: every RESULT equals the expected class and logits."""
    bench = LinkBench(dut)
    await bench.start()
    cycles, frames = [], []
    for index in range(len(bench.data["images"])):
        c, f = await bench.classify_and_check(index)
        cycles.append(c)
        frames.append(f)
    add_output(cycles=np.array(cycles), frame_cycles=np.array(frames))


@cocotb.test()
async def link_errors(dut):
    """Each bad request gets its ERROR, and the board classifies correctly right after."""
    bench = LinkBench(dut)
    await bench.start()
    images = bench.data["images"]
    good = protocol.classify_request(images[0])

    corrupted = bytearray(good)
    corrupted[bench.rng.randrange(protocol.HEADER_BYTES, len(good) - 1)] ^= 1 << bench.rng.randrange(8)
    await bench.expect_error(bytes(corrupted), ErrorCode.BAD_CRC, "a pixel bit flipped")
    await bench.classify_and_check(len(images) - 1, " after a bad CRC")

    await bench.expect_error(protocol.encode_frame(FrameType.CLASSIFY, bytes(10)), ErrorCode.BAD_LENGTH,
                             "CLASSIFY with 10 pixels")
    await bench.expect_error(protocol.encode_frame(FrameType.PING, b"\x01\x02\x03"), ErrorCode.BAD_LENGTH,
                             "PING with a payload")
    # (LOAD_WEIGHTS requests that pass the length check change the weights' state: link_load_errors.)
    await bench.expect_error(protocol.encode_frame(FrameType.LOAD_WEIGHTS), ErrorCode.BAD_LENGTH,
                             "LOAD_WEIGHTS without an op")
    await bench.expect_error(protocol.encode_frame(FrameType.LOAD_WEIGHTS, bytes(protocol.CHUNK_HEADER_BYTES)),
                             ErrorCode.BAD_LENGTH, "a chunk without bytes")
    await bench.expect_error(protocol.encode_frame(FrameType.LOAD_WEIGHTS, bytes([protocol.LoadOp.COMMIT]) + bytes(9)),
                             ErrorCode.BAD_LENGTH, "a commit one byte long")
    await bench.expect_error(protocol.encode_frame(0x04), ErrorCode.UNKNOWN_TYPE, "type 0x04")
    await bench.expect_error(protocol.encode_frame(0x7F), ErrorCode.UNKNOWN_TYPE, "type 0x7F")
    # A bad CRC outranks the other checks: the type and length cannot be trusted.
    unknown = bytearray(protocol.encode_frame(0x7F, b"\xa5\xa5"))
    unknown[-1] ^= 0xFF
    await bench.expect_error(bytes(unknown), ErrorCode.BAD_CRC, "unknown type with a bad CRC")

    await bench.expect_error(good[:300], ErrorCode.TIMEOUT, "CLASSIFY cut after 300 bytes")
    await bench.expect_error(good[:3], ErrorCode.TIMEOUT, "a frame cut inside its header")
    await bench.classify_and_check(0, " after timeouts")

    # Nothing that looks like a frame: no reply at all, the client times out.
    _, error = await bench.call(bench.client.transact, b"\x00\x11\x22\x33")
    assert error is not None and error.code is None and "timeout" in str(error), f"no SYNC: {error}"

    # A second request while the first is served: its bytes are dropped and answered with BUSY.
    await bench.call(bench.port.write, protocol.ping_request() + protocol.ping_request())
    replies, _ = await bench.call(bench.port.read, 2 * protocol.OVERHEAD_BYTES + protocol.INFO_LENGTH + 1)
    frames = protocol.FrameDecoder().feed(replies)
    kinds = [(f.type, f.payload if f.type == FrameType.ERROR else b"") for f in frames]
    assert kinds == [(FrameType.INFO, b""), (FrameType.ERROR, bytes([ErrorCode.BUSY]))], f"replies {kinds}"
    await bench.classify_and_check(1, " after BUSY")


# --------------------------------------------------------------------------------------------
# Weight loading


async def expect_info(bench: LinkBench, valid: bool, weights_id: int, what: str) -> protocol.BoardInfo:
    info, error = await bench.call(bench.client.ping)
    assert error is None, f"{what}: ping: {error}"
    assert (info.weights_valid, info.weights_id) == (valid, weights_id), (
        f"{what}: INFO says weights valid={info.weights_valid} id {info.weights_id:08x}, "
        f"expected valid={valid} id {weights_id:08x}")
    return info


async def expect_loaded(bench: LinkBench, request: bytes, received: int, valid: bool, what: str) -> None:
    reply, error = await bench.call(bench.client.transact, request)
    assert error is None, f"{what}: {error}"
    got = protocol.parse_loaded(reply)
    assert got == (received, valid), f"{what}: WEIGHTS_LOADED says {got}, expected {(received, valid)}"


async def expect_refusal(bench: LinkBench, index: int, what: str, classify: bool = False) -> None:
    """INFO says no valid weights; with ``classify``, a CLASSIFY is answered NO_WEIGHTS too (a
    784-byte request: about 3 s of Icarus time each, so only where it matters)."""
    if classify:
        await bench.expect_error(protocol.classify_request(bench.data["images"][index]), ErrorCode.NO_WEIGHTS,
                                 f"CLASSIFY {what}")
    await expect_info(bench, False, 0, what)


@cocotb.test()
async def link_load(dut):
    """The board's own weights (if any) answer first; a whole image of other weights goes over the
    line with ``BoardClient.load_weights``; every answer after it is the other weights'."""
    bench = LinkBench(dut)
    await bench.start()
    data = bench.data
    image = bytes(data["weight_image"].astype(np.uint8))
    new_id, in_bitstream = int(data["weights_id"]), bool(data["in_bitstream"])
    info, error = await bench.call(bench.client.ping)
    assert error is None and info.image_bytes == len(image) and info.weights_valid == in_bitstream, (
        f"INFO {error or info}, weight image {len(image)} bytes")
    if in_bitstream:
        await bench.classify_and_check(0, " with the bitstream's weights")
    else:
        await bench.expect_error(protocol.classify_request(data["images"][0]), ErrorCode.NO_WEIGHTS,
                                 "CLASSIFY before any load")
    # The whole load_weights call: a PING, the chunks, the commit, a PING to check.
    progress = []
    sent_before, received_before = bench.line.sent_bytes, bench.line.received_bytes
    started = now_ps()
    info, error = await bench.call(bench.client.load_weights, image, new_id, progress.append,
                                   0, int(data["chunk"]))
    assert error is None, f"load_weights: {error}"
    frames = len(protocol.image_chunks(image, int(data["chunk"]))) + 1 + 2
    load_bytes = bench.line.sent_bytes - sent_before + bench.line.received_bytes - received_before
    load_cycles = (bench.line.last_stop_ps - started) // (CLOCK_NS * 1000)
    assert sum(progress) == len(image) and info.weights_valid and info.weights_id == new_id, (
        f"progress {sum(progress)} of {len(image)} bytes; INFO after the load {info}")
    for index in range(len(data["images"])):
        await bench.classify_and_check(index, " with the loaded weights", logits="logits_new")
    add_output(load_cycles=np.array(load_cycles), load_frames=np.array(frames), load_bytes=np.array(load_bytes))


@cocotb.test()
async def link_load_errors(dut):
    """Bad, partial, out-of-order, corrupted and busy loads: each gets its ERROR, CLASSIFY is
    refused from the first chunk until a complete load is committed, and the answers are always
    those of one whole weight set. Runs after link_load (its weights are in the memories) and
    loads the bitstream's weights back."""
    bench = LinkBench(dut)
    await bench.start()
    data = bench.data
    assert data["after_link_load"] and data["in_bitstream"], "link_load_errors runs after link_load"
    new_id, old_id = int(data["weights_id"]), int(data["info"][4:8].view("<u4")[0])
    image = bytes(data["old_image"].astype(np.uint8))  # what this test loads: not what the memories hold
    size, step = len(image), int(data["chunk"])
    chunks = protocol.image_chunks(image, step)
    assert len(chunks) >= 3, "the test needs an image of at least three chunks"
    chunk = [protocol.load_chunk_request(offset, part) for offset, part in chunks]
    ends = [offset + len(part) for offset, part in chunks]
    commit = protocol.load_commit_request(size, old_id)

    # cocotb resets the design between tests but the memories keep their contents: INFO must
    # still name link_load's weights, and the answers must be theirs.
    await expect_info(bench, True, new_id, "after reset, link_load's weights in the memories")
    await bench.classify_and_check(1, " after reset, link_load's weights in the memories", logits="logits_new")

    # A reset in the middle of a load forgets the load (the loader restarts too).
    await expect_loaded(bench, chunk[0], ends[0], False, "before a reset: chunk 0")
    await bench.reset()
    await expect_refusal(bench, 1, "after a reset during a load")
    await bench.expect_error(chunk[1], ErrorCode.BAD_LOAD, "chunk 1 after a reset")

    # A chunk without the rest: CLASSIFY refused; an early commit is refused and ends the load.
    await expect_loaded(bench, chunk[0], ends[0], False, "first chunk")
    await expect_refusal(bench, 1, "after the first chunk", classify=True)
    await bench.expect_error(commit, ErrorCode.BAD_LOAD, "a commit after one chunk")
    await expect_refusal(bench, 1, "after an early commit")
    await bench.expect_error(chunk[1], ErrorCode.BAD_LOAD, "the next chunk of a refused load")

    # A corrupted chunk and a chunk cut short are refused before any of their bytes reach the
    # weights, and may be sent again; the load then completes with the right answers.
    await expect_loaded(bench, chunk[0], ends[0], False, "chunk 0")
    corrupted = bytearray(chunk[1])
    corrupted[protocol.HEADER_BYTES + protocol.CHUNK_HEADER_BYTES] ^= 0x10
    await bench.expect_error(bytes(corrupted), ErrorCode.BAD_CRC, "a corrupted chunk")
    await expect_refusal(bench, 1, "after a corrupted chunk", classify=True)
    await bench.expect_error(chunk[1][:-3], ErrorCode.TIMEOUT, "a chunk cut short")
    await expect_refusal(bench, 1, "after a chunk cut short")
    for k in range(1, len(chunk)):
        await expect_loaded(bench, chunk[k], ends[k], False, f"chunk {k} after the bad ones")
    await expect_loaded(bench, commit, size, True, "commit")
    await expect_info(bench, True, old_id, "after the load")
    await bench.classify_and_check(1, " after a load with a corrupted chunk sent again")

    # Gaps, overlaps, repeats, a chunk past the end, a wrong total, an unknown op: all refused.
    await expect_loaded(bench, chunk[0], ends[0], False, "gap: chunk 0")
    await bench.expect_error(chunk[2], ErrorCode.BAD_LOAD, "a chunk after a gap")
    await expect_refusal(bench, 1, "after a gap")
    await expect_loaded(bench, chunk[0], ends[0], False, "overlap: chunk 0")
    await bench.expect_error(protocol.load_chunk_request(1, chunks[1][1]), ErrorCode.BAD_LOAD, "an overlapping chunk")
    await bench.expect_error(protocol.load_chunk_request(0, image + b"\x00"), ErrorCode.BAD_LOAD,
                             "a chunk past the image's end")
    await bench.expect_error(protocol.encode_frame(FrameType.LOAD_WEIGHTS, b"\x02\x00"), ErrorCode.BAD_LOAD,
                             "an unknown op")
    for k in range(len(chunk)):
        await expect_loaded(bench, chunk[k], ends[k], False, f"repeat: chunk {k}")
    await bench.expect_error(chunk[-1], ErrorCode.BAD_LOAD, "the last chunk again")
    await bench.expect_error(commit, ErrorCode.BAD_LOAD, "a commit after a refused chunk")
    await expect_refusal(bench, 1, "after a repeated chunk")
    for k in range(len(chunk)):
        await expect_loaded(bench, chunk[k], ends[k], False, f"wrong total: chunk {k}")
    await bench.expect_error(protocol.load_commit_request(size + 1, old_id), ErrorCode.BAD_LOAD,
                             "a commit with the wrong total")
    await expect_refusal(bench, 1, "after a wrong total")

    # The host client's load_weights; then a load request while an image is in flight gets BUSY
    # (the stand-in stays busy ``linger_cycles`` after its answer) and changes nothing.
    info, error = await bench.call(bench.client.load_weights, image, old_id, None, 0, step)
    assert error is None and info.weights_valid and info.weights_id == old_id, f"load_weights: {error or info}"
    assert int(data["linger_cycles"]) > 0
    await bench.classify_and_check(1, " before the busy test", settle=False)
    await bench.expect_error(chunk[0], ErrorCode.BUSY, "a chunk while the accelerator is busy")
    await expect_info(bench, True, old_id, "after BUSY")
    await bench.classify_and_check(1, " after BUSY")
