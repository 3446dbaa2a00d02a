"""cocotb testbenches for the serial side of a board: ``boards/uart.py`` and ``boards/link.py``.

Everything goes through the real bits on the wire: a ``SerialLine`` (``sim/serial_line.py``) is
the far end of the cable, and a ``SimulatedSerialPort`` on it lets the real
``boards.host.BoardClient`` run unchanged in a ``cocotb.task.bridge`` thread against the
simulated board.

UART tests (``uart_*``; DUT: the receiver and transmitter side by side, ports ``rx``, ``o``,
``error``, ``overrun``, ``i``, ``tx``); ``tb_data``: ``divisor``, ``seed``, ``data`` (bytes).

Link tests (``link_*``; DUT: ``UARTLink``, ports ``rx``, ``tx``); ``tb_data``: ``divisor``,
``timeout_cycles``, ``frame_cycles``, ``watchdog_cycles``, ``seed``, ``images`` uint8
[N,side,side], ``logits`` [N,classes] and ``klass`` [N] (the expected answers), ``info`` (the
expected INFO payload), ``cycles_min``/``cycles_max`` (bounds on the accelerator's reported
cycles). ``link_images`` hands back (``tb_output``) ``cycles`` (reported by the board) and
``frame_cycles`` (clock cycles from the first bit of the CLASSIFY request to the last bit of
the RESULT reply) per image; ``link_bench`` ``bench_first`` and ``bench_total`` (a BENCH of
``BENCH_RUNS`` runs of image 0).

Weight-loading tests (``link_load``, ``link_load_errors``, ``link_hang``) also take
``weight_image`` (uint8, the image of other weights), ``weights_id`` (theirs), ``logits_new``
[N,classes] (the answers with them) and ``in_bitstream`` (whether the board's weights are valid
from reset); ``chunk`` (image bytes per LOAD_WEIGHTS frame) and, for ``link_load_errors`` and
``link_hang``, ``old_image`` (the bitstream's image), ``linger_cycles`` (how long the stand-in
accelerator stays busy after an answer), ``hang_pixels`` and ``hang_weights`` (bytes that make
the stand-in hang when they lead an image or appear in a weight image) and ``after_link_load``
(link_load ran before it in the same simulation). ``link_load`` hands back ``load_cycles``
(from the first bit of ``BoardClient.load_weights``' first request to the last bit of its last
reply), ``load_frames`` (requests it sent) and ``load_bytes`` (bytes on the line both ways).
"""

import os
import random

import cocotb
import numpy as np
from cocotb.task import bridge
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, Timer, ValueChange

from ..boards import protocol
from ..boards.host import BoardClient, BoardError
from ..boards.protocol import ErrorCode, FrameType
from .runner import TB_SECONDS, tb_data, tb_output
from .serial_line import CLOCK_NS, SerialLine, SimulatedSerialPort, now_ps
from .streams import StreamSource, start_clock_and_reset


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
        line.source.rate = rate
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
    await line.source.send_bits([0, 0, 0, 1, 1, 1, 1, 0, 0] + [0] * 4)
    await line.source.send_bits([1, 1])
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
            # (not the time an earlier test recorded: tb_output records this run's)
            arrays = {**{k: earlier[k] for k in earlier.files if k != TB_SECONDS}, **arrays}
    tb_output(**arrays)


class LinkBench:
    """Clock, reset, the simulated cable and a BoardClient on it (no retries: every error shows)."""

    def __init__(self, dut, retries: int = 0):
        data = tb_data()
        self.dut = dut
        self.data = data
        self.divisor = int(data["divisor"])
        self.timeout_cycles = int(data["timeout_cycles"])
        self.frame_cycles = int(data["frame_cycles"])
        self.watchdog_cycles = int(data["watchdog_cycles"])
        self.seed = int(data["seed"])
        self.rng = random.Random(self.seed)
        self.line = SerialLine(dut, self.divisor, self.rng, gap_bits=float(data.get("gap_bits", 0.0)))
        self.info = protocol.parse_info(protocol.Frame(FrameType.INFO, bytes(data["info"].astype(np.uint8))))
        self.sizes = self.info.sizes
        self.byte_cycles = 10 * self.divisor
        # A client read waits long enough for the board's timeout, or its longest classification,
        # and then a whole reply.
        self.reply_cycles = (max(self.timeout_cycles, int(data["cycles_max"]))
                             + self.byte_cycles * (self.sizes.max_reply + protocol.OVERHEAD_BYTES + 4))
        self.port = SimulatedSerialPort(self.line, self.reply_cycles)
        self.client = BoardClient(self.port, retries=retries)
        self.client.info = self.info

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

    async def quiet(self, cycles: int | None = None):
        """Wait until the line has been idle both ways for ``cycles`` (default: the board's
        timeout and two replies), then forget what came."""
        cycles = cycles or self.timeout_cycles + 2 * self.byte_cycles * (self.sizes.max_reply + protocol.OVERHEAD_BYTES)
        await Timer(cycles * CLOCK_NS, "ns")
        self.line.monitor.received.clear()

    async def classify_and_check(self, index: int, what: str = "", logits: str = "logits",
                                 settle: bool = True) -> tuple[int, int]:
        """Classify image ``index``; its answer must be ``data[logits][index]`` and their argmax.
        With ``settle``, then wait until an accelerator that lingers busy (``linger_cycles``) is idle."""
        image = self.data["images"][index]
        started = now_ps()
        result, error = await self.call(self.client.classify, image)
        assert error is None, f"image {index}{what}: {error}"
        frame_cycles = (self.line.monitor.last_stop_ps - started) // (CLOCK_NS * 1000)
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
    """PING -> INFO with the expected payload, the request's SEQ in the reply; garbage before the
    SYNC is ignored."""
    bench = LinkBench(dut)
    await bench.start()
    info, error = await bench.call(bench.client.ping)
    assert error is None, f"ping: {error}"
    assert info.encode() == bytes(bench.data["info"].astype(np.uint8)), f"INFO {info}"
    garbage = bytes([0x00, 0xFF, 0x13, 0x5A, 0x81, 0x00]) + bytes(bench.rng.randrange(256) for _ in range(12))
    garbage = garbage.replace(bytes([protocol.SYNC]), b"\x00")
    reply, error = await bench.call(bench.client.transact, garbage + protocol.ping_request(0x5C), 0x5C)
    assert error is None and reply.type == FrameType.INFO and reply.seq == 0x5C, f"ping after garbage: {error or reply}"


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
async def link_fixed_weights(dut):
    """A board whose weights are in read-only memory: every LOAD_WEIGHTS (a chunk, a commit) is
    refused with WEIGHTS_FIXED, the client's load stops at the first refusal, INFO is unchanged
    and the board classifies bit-exactly."""
    bench = LinkBench(dut)
    await bench.start()
    sizes = bench.sizes
    await bench.expect_error(protocol.load_chunk_request(0, bytes(8), sizes), ErrorCode.WEIGHTS_FIXED, "a chunk")
    await bench.expect_error(protocol.load_commit_request(8, 1, protocol.crc32(bytes(8))), ErrorCode.WEIGHTS_FIXED,
                             "a commit")
    info, error = await bench.call(bench.client.ping)
    assert error is None and info.encode() == bytes(bench.data["info"].astype(np.uint8)), f"INFO {info}"
    _, error = await bench.call(bench.client.load_weights, bytes(info.weight_bytes), 1)
    assert error is not None and error.code == ErrorCode.WEIGHTS_FIXED, f"load: {error}"
    await bench.classify_and_check(0)


@cocotb.test()
async def link_errors(dut):
    """Each bad request gets its ERROR, and the board classifies correctly right after."""
    bench = LinkBench(dut)
    await bench.start()
    images, sizes = bench.data["images"], bench.sizes
    good = protocol.classify_request(images[0], sizes, seq=1)

    corrupted = bytearray(good)
    corrupted[bench.rng.randrange(protocol.HEADER_BYTES, len(good) - 2)] ^= 1 << bench.rng.randrange(8)
    await bench.expect_error(bytes(corrupted), ErrorCode.BAD_CRC, "a pixel bit flipped")
    await bench.classify_and_check(len(images) - 1, " after a bad CRC")

    frame = protocol.encode_frame
    await bench.expect_error(frame(FrameType.CLASSIFY, bytes(10)), ErrorCode.BAD_LENGTH, "CLASSIFY with 10 pixels")
    await bench.expect_error(frame(FrameType.PING, b"\x01\x02\x03"), ErrorCode.BAD_LENGTH, "PING with a payload")
    # (LOAD_WEIGHTS requests that pass the length check change the weights' state: link_load_errors.)
    await bench.expect_error(frame(FrameType.LOAD_WEIGHTS), ErrorCode.BAD_LENGTH, "LOAD_WEIGHTS without an op")
    await bench.expect_error(frame(FrameType.LOAD_WEIGHTS, bytes(protocol.CHUNK_HEADER_BYTES)),
                             ErrorCode.BAD_LENGTH, "a chunk without bytes")
    await bench.expect_error(frame(FrameType.LOAD_WEIGHTS, bytes([protocol.LoadOp.COMMIT]) + bytes(11)),
                             ErrorCode.BAD_LENGTH, "a commit one byte short")
    await bench.expect_error(frame(FrameType.IMAGE, bytes(2)), ErrorCode.BAD_LENGTH, "a piece without pixels")
    await bench.expect_error(frame(0x06), ErrorCode.UNKNOWN_TYPE, "type 0x06")
    await bench.expect_error(frame(0x7F), ErrorCode.UNKNOWN_TYPE, "type 0x7F")
    # A bad CRC outranks the other checks: the type and length cannot be trusted.
    unknown = bytearray(frame(0x7F, b"\xa5\xa5"))
    unknown[-1] ^= 0xFF
    await bench.expect_error(bytes(unknown), ErrorCode.BAD_CRC, "unknown type with a bad CRC")

    await bench.expect_error(good[: len(good) // 2], ErrorCode.TIMEOUT, "CLASSIFY cut in the middle")
    await bench.expect_error(good[:3], ErrorCode.TIMEOUT, "a frame cut inside its header")
    await bench.classify_and_check(0, " after timeouts")

    # Nothing that looks like a frame: no reply at all, the client times out.
    _, error = await bench.call(bench.client.transact, b"\x00\x11\x22\x33")
    assert error is not None and error.code is None and "timeout" in str(error), f"no SYNC: {error}"

    # Pieces: out of order, past the end, and CLASSIFY without pixels before a whole image.
    await bench.expect_error(protocol.classify_pieces_request(), ErrorCode.BAD_IMAGE, "CLASSIFY before any piece")
    await bench.expect_error(protocol.image_piece_request(5, b"\x01", sizes), ErrorCode.BAD_IMAGE, "a piece after a gap")
    await bench.expect_error(protocol.image_piece_request(sizes.pixels - 1, b"\x01\x02", sizes), ErrorCode.BAD_IMAGE,
                             "a piece past the end")

    # A second request while the first is served: its bytes are dropped and answered with BUSY,
    # which carries the first request's SEQ.
    await bench.call(bench.port.write, protocol.ping_request(7) + protocol.ping_request(8))
    replies, _ = await bench.call(bench.port.read, 2 * protocol.OVERHEAD_BYTES + protocol.INFO_LENGTH + 1)
    frames = protocol.FrameDecoder().feed(replies)
    kinds = [(f.type, f.seq, f.payload if f.type == FrameType.ERROR else b"") for f in frames]
    assert kinds == [(FrameType.INFO, 7, b""), (FrameType.ERROR, 7, bytes([ErrorCode.BUSY]))], f"replies {kinds}"
    await bench.classify_and_check(1, " after BUSY")


@cocotb.test()
async def link_refuses_at_once(dut):
    """A LEN above the largest request is answered TOO_LONG as soon as LEN has arrived, not
    after the payload; the rest of the frame is dropped (ERROR BUSY, the same SEQ). A noise
    header in front of a request swallows its first bytes: the board answers the noise with the
    noise's SEQ, which the client does not take for its answer, and sends the request again."""
    bench = LinkBench(dut, retries=2)
    await bench.start()
    sizes, byte = bench.sizes, bench.byte_cycles
    longest = sizes.max_request
    too_long = protocol.encode_frame(FrameType.LOAD_WEIGHTS, bytes(longest + 1), seq=0x31)
    started = now_ps()
    sending = cocotb.start_soon(bench.line.send(too_long))
    reply, _ = await bench.call(bench.port.read, protocol.OVERHEAD_BYTES + 1)
    refused = (bench.line.monitor.last_stop_ps - started) // (CLOCK_NS * 1000)
    busy, _ = await bench.call(bench.port.read, protocol.OVERHEAD_BYTES + 1)
    frames = protocol.FrameDecoder().feed(reply + busy)
    assert [(f.type, f.seq, f.payload) for f in frames] == [(FrameType.ERROR, 0x31, bytes([ErrorCode.TOO_LONG])),
                                                            (FrameType.ERROR, 0x31, bytes([ErrorCode.BUSY]))], frames
    # The refusal went out right after LEN's last byte (the 5th): its 8 bytes end 13 byte times
    # after the request began, long before the request's own 5 + 790 + 2 bytes are through.
    assert refused <= (protocol.HEADER_BYTES + protocol.OVERHEAD_BYTES + 1) * byte + 50 < len(too_long) * byte, (
        f"TOO_LONG ended {refused} cycles after the request began")
    await sending
    await bench.quiet()
    await bench.classify_and_check(0, " after a frame refused at once")

    noise_header = bytes([protocol.SYNC, 0x7F, 0x00, 0x03, 0x00])  # a frame start with LEN 3
    await bench.call(bench.port.write, noise_header)
    info, error = await bench.call(bench.client.ping)
    assert error is None and info.version == protocol.VERSION, f"ping after a noise header: {error}"
    assert bench.client.retried == {"no reply": 1}, f"retries {dict(bench.client.retried)}"
    await bench.quiet()
    await bench.classify_and_check(1, " after a noise header")


@cocotb.test()
async def link_dribbling_sender(dut):
    """A sender that leaves just under the board's gap timeout between bytes never trips it, but
    its frame is cut off at the frame deadline: ERROR TIMEOUT about ``frame_cycles`` after its
    SYNC, not after the whole frame (which would take several times longer)."""
    bench = LinkBench(dut)
    await bench.start()
    sizes = bench.sizes
    gap = bench.timeout_cycles - bench.byte_cycles - 3 * bench.divisor
    image = np.full((sizes.image_size, sizes.image_size), 0x11, np.uint8)
    frame = protocol.classify_request(image, sizes, seq=0x44)
    per_byte = bench.byte_cycles + gap
    assert len(frame) * per_byte > 2 * bench.frame_cycles, "the test needs a frame the deadline cuts"
    sent = bench.frame_cycles // per_byte + 20  # a few bytes more than fit before the deadline
    started = now_ps()
    sending = cocotb.start_soon(bench.line.source.dribble(frame[:sent], gap))
    reply = await bench.line.read(protocol.OVERHEAD_BYTES + 1, 2 * bench.frame_cycles * CLOCK_NS * 1000)
    (error,) = protocol.FrameDecoder().feed(reply)
    assert (error.type, error.seq, error.payload) == (FrameType.ERROR, 0x44, bytes([ErrorCode.TIMEOUT])), error
    elapsed = (bench.line.monitor.last_stop_ps - started) // (CLOCK_NS * 1000)
    reply_cycles = (protocol.OVERHEAD_BYTES + 1) * bench.byte_cycles
    assert bench.frame_cycles <= elapsed <= bench.frame_cycles + reply_cycles + per_byte + 100, (
        f"TIMEOUT {elapsed} cycles after the SYNC; the deadline is {bench.frame_cycles}")
    await sending
    await bench.quiet()
    await bench.classify_and_check(0, " after a dribbling sender")


BENCH_RUNS = 3


@cocotb.test()
async def link_bench(dut):
    """BENCH over the line: refused for 0 runs and while no whole image is held; then image 0
    stored (one IMAGE piece), classified and benched: BENCH_RESULT echoes the runs, its class is
    CLASSIFY's, and its counts obey the accelerator's limits: the first run within the cycles an
    image may take, and each further run at least its pixels' intake (one a cycle) and the
    cycle its start waits for the pixel input to close."""
    bench = LinkBench(dut)
    await bench.start()
    await bench.expect_error(protocol.encode_frame(FrameType.BENCH, bytes(protocol.BENCH_LENGTH)),
                             ErrorCode.BAD_RUNS, "a bench of 0 runs")
    await bench.expect_error(protocol.bench_request(BENCH_RUNS), ErrorCode.BAD_IMAGE, "a bench before any piece")
    _, error = await bench.call(bench.client.store_image, bench.data["images"][0])
    assert error is None, f"store_image: {error}"
    answer, error = await bench.call(bench.client.classify_stored)
    assert error is None, f"CLASSIFY without pixels: {error}"
    klass, logits, _ = answer
    assert klass == bench.data["klass"][0] and (logits == bench.data["logits"][0]).all(), answer
    # Each run waits at most a watchdog time for each of its start and done.
    bench.port.timeout_ps += 2 * BENCH_RUNS * bench.watchdog_cycles * CLOCK_NS * 1000
    result, error = await bench.call(bench.client.bench, BENCH_RUNS)
    assert error is None, f"bench: {error}"
    low, high = int(bench.data["cycles_min"]), int(bench.data["cycles_max"])
    assert (result.runs, result.klass) == (BENCH_RUNS, klass), result
    assert low <= result.first_cycles <= high, result
    assert result.total_cycles >= result.first_cycles + (BENCH_RUNS - 1) * (bench.sizes.pixels + 1), result
    add_output(bench_first=np.array(result.first_cycles), bench_total=np.array(result.total_cycles))


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
    whole image: about 3 s of Icarus time each, so only where it matters)."""
    if classify:
        await bench.expect_error(protocol.classify_request(bench.data["images"][index], bench.sizes), ErrorCode.NO_WEIGHTS,
                                 f"CLASSIFY {what}")
    await expect_info(bench, False, 0, what)


class LoadFrames:
    """The request frames of a load of ``image`` in ``step``-byte chunks."""

    def __init__(self, bench: LinkBench, image: bytes, weights_id: int, step: int):
        sizes = bench.sizes
        self.image, self.size = image, len(image)
        self.chunks = protocol.pieces(image, step, sizes.max_chunk)
        self.chunk = [protocol.load_chunk_request(offset, part, sizes) for offset, part in self.chunks]
        self.ends = [offset + len(part) for offset, part in self.chunks]
        self.commit = protocol.load_commit_request(self.size, weights_id, protocol.crc32(image))

    async def send(self, bench: LinkBench, what: str, chunks=None):
        for k in range(len(self.chunk)) if chunks is None else chunks:
            await expect_loaded(bench, self.chunk[k], self.ends[k], False, f"{what}: chunk {k}")


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
    assert error is None and info.weight_bytes == len(image) and info.weights_valid == in_bitstream, (
        f"INFO {error or info}, weight image {len(image)} bytes")
    if in_bitstream:
        await bench.classify_and_check(0, " with the bitstream's weights")
    else:
        await bench.expect_error(protocol.classify_request(data["images"][0], bench.sizes), ErrorCode.NO_WEIGHTS,
                                 "CLASSIFY before any load")
    # The whole load_weights call: a PING, the chunks, the commit, a PING to check.
    progress = []
    sent_before, received_before = bench.line.source.sent_bytes, bench.line.monitor.received_bytes
    started = now_ps()
    info, error = await bench.call(bench.client.load_weights, image, new_id, progress.append,
                                   0, int(data["chunk"]))
    assert error is None, f"load_weights: {error}"
    frames = len(protocol.pieces(image, int(data["chunk"]), bench.sizes.max_chunk)) + 1 + 2
    load_bytes = bench.line.source.sent_bytes - sent_before + bench.line.monitor.received_bytes - received_before
    load_cycles = (bench.line.monitor.last_stop_ps - started) // (CLOCK_NS * 1000)
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
    new_id, old_id = int(data["weights_id"]), bench.info.weights_id
    image = bytes(data["old_image"].astype(np.uint8))  # what this test loads: not what the memories hold
    size, step = len(image), int(data["chunk"])
    load = LoadFrames(bench, image, old_id, step)
    chunk, ends, commit = load.chunk, load.ends, load.commit
    assert len(chunk) >= 3, "the test needs an image of at least three chunks"

    # cocotb resets the design between tests but the memories keep their contents: INFO must
    # still name link_load's weights, and the answers must be theirs.
    await expect_info(bench, True, new_id, "after reset, link_load's weights in the memories")
    await bench.classify_and_check(1, " after reset, link_load's weights in the memories", logits="logits_new")

    # A reset in the middle of a load forgets the load (the loader restarts too).
    await expect_loaded(bench, chunk[0], ends[0], False, "before a reset: chunk 0")
    info = await expect_info(bench, False, 0, "during a load")
    assert info.loading and info.load_received == ends[0], f"INFO during a load: {info}"
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
    await load.send(bench, "after the bad ones", range(1, len(chunk)))
    await expect_loaded(bench, commit, size, True, "commit")
    await expect_info(bench, True, old_id, "after the load")
    await bench.classify_and_check(1, " after a load with a corrupted chunk sent again")

    # A corrupted image whose every chunk has a good CRC (one byte changed before the frame was
    # built): the commit's CRC-32 (of the true image) does not match what the board took, so the
    # weights never become valid.
    wrong = bytearray(image)
    wrong[size // 2] ^= 0x01
    bad = LoadFrames(bench, bytes(wrong), old_id, step)
    await bad.send(bench, "a corrupted image")
    await bench.expect_error(commit, ErrorCode.BAD_LOAD, "a commit whose CRC-32 does not match the bytes")
    await expect_refusal(bench, 1, "after a corrupted image", classify=True)

    # Gaps, overlaps, repeats, a chunk past the end, a wrong total, an unknown op: all refused.
    await expect_loaded(bench, chunk[0], ends[0], False, "gap: chunk 0")
    await bench.expect_error(chunk[2], ErrorCode.BAD_LOAD, "a chunk after a gap")
    await expect_refusal(bench, 1, "after a gap")
    await expect_loaded(bench, chunk[0], ends[0], False, "overlap: chunk 0")
    await bench.expect_error(protocol.load_chunk_request(1, load.chunks[1][1], bench.sizes), ErrorCode.BAD_LOAD,
                             "an overlapping chunk")
    assert size + 1 <= bench.sizes.max_chunk, "the test needs an image shorter than a chunk"
    await bench.expect_error(protocol.load_chunk_request(0, image + b"\x00", bench.sizes), ErrorCode.BAD_LOAD,
                             "a chunk past the image's end")
    await bench.expect_error(protocol.encode_frame(FrameType.LOAD_WEIGHTS, b"\x02\x00"), ErrorCode.BAD_LOAD,
                             "an unknown op")
    await load.send(bench, "repeat")
    await bench.expect_error(chunk[-1], ErrorCode.BAD_LOAD, "the last chunk again")
    await bench.expect_error(commit, ErrorCode.BAD_LOAD, "a commit after a refused chunk")
    await expect_refusal(bench, 1, "after a repeated chunk")
    await load.send(bench, "wrong total")
    await bench.expect_error(protocol.load_commit_request(size + 1, old_id, protocol.crc32(image)), ErrorCode.BAD_LOAD,
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


@cocotb.test()
async def link_hang(dut):
    """A hung accelerator: one that stops taking pixels, and one that stops taking weight bytes.
    Each time the board answers HUNG about ``watchdog_cycles`` after the request, resets the
    accelerator, and works normally afterwards (a load is ended: weights invalid until the next
    complete one). Runs after link_load_errors (the bitstream's weights in the memories)."""
    bench = LinkBench(dut)
    await bench.start()
    data, sizes, byte = bench.data, bench.sizes, bench.byte_cycles
    old_id = bench.info.weights_id
    magic = bytes(data["hang_pixels"].astype(np.uint8))
    image = np.array(data["images"][0])
    image.reshape(-1)[: len(magic)] = np.frombuffer(magic, np.uint8)
    request = protocol.classify_request(image, sizes, seq=0x66)
    # Replies to the requests that hang come after the watchdog: the client waits that long.
    bench.port.timeout_ps = (bench.watchdog_cycles + bench.reply_cycles) * CLOCK_NS * 1000
    await bench.expect_error(request, ErrorCode.HUNG, "an image that hangs the accelerator")
    elapsed = (bench.line.monitor.last_stop_ps - bench.line.source.last_sent_ps) // (CLOCK_NS * 1000)
    reply = (protocol.OVERHEAD_BYTES + 1) * (byte + 2)  # (the link takes 2 cycles to offer each byte)
    assert bench.watchdog_cycles <= elapsed <= bench.watchdog_cycles + reply + 20, (
        f"HUNG {elapsed} cycles after the request, watchdog {bench.watchdog_cycles}")
    await expect_info(bench, True, old_id, "after a hang in a classification")
    await bench.classify_and_check(1, " after the accelerator was reset")

    weights = bytearray(data["old_image"].astype(np.uint8))
    hang = bytes(data["hang_weights"].astype(np.uint8))
    weights[: len(hang)] = hang
    await bench.expect_error(protocol.load_chunk_request(0, bytes(weights[: int(data["chunk"])]), sizes),
                             ErrorCode.HUNG, "weight bytes that hang the accelerator")
    info = await expect_info(bench, False, 0, "after a hang in a load")
    assert not info.loading
    info, error = await bench.call(bench.client.load_weights, bytes(data["old_image"].astype(np.uint8)), old_id,
                                   None, 0, int(data["chunk"]))
    assert error is None and info.weights_valid, f"load after the hang: {error or info}"
    await bench.classify_and_check(1, " after a hang in a load and a new load")
