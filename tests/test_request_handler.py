"""The board's request handling (``boards/request_handler.py``) alone, in Amaranth's simulator,
for a network of 4x4 images and 3 classes (16-pixel frames, a 40-byte weight image): a Python
stand-in for the parser delivers frames (header, payload bytes, verdict) as ``FrameParser``
does, a Python stand-in for the serialiser takes the replies, and a Python accelerator takes
pixels and weight bytes (and can hang), one image at a time like the compact design or
overlapping them like the streaming one. What the accelerator receives is compared with what
was sent; the replies with the protocol's rules; a bench's cycle count with the cycles the
accelerator saw, and with what its timing rules predict."""

import random
from dataclasses import dataclass, field

import pytest
from amaranth.sim import Simulator

from lenet_fpga.boards import protocol
from lenet_fpga.boards.frame_parser import ParseStatus
from lenet_fpga.boards.protocol import ErrorCode, FrameType, LoadOp
from lenet_fpga.boards.request_handler import RequestHandler
from lenet_fpga.hdl.accelerator import AcceleratorSignature
from lenet_fpga.model.network import ConvSpec, Network

from payload_driver import send_payload

# 4 x 4 images (a 3 x 3 conv and a 2 x 2 pool leave one pixel a channel) and 3 classes.
NETWORK = Network(convs=(ConvSpec(2, kernel=3),), hidden=(), classes=3, image_size=4)
ACCELERATOR = AcceleratorSignature(NETWORK)
SIZES = protocol.FrameSizes(4, 3)
PIXELS = SIZES.pixels  # 16
WEIGHT_BYTES = 40
WATCHDOG = 400
TAIL = 4  # the Python accelerator's cycles from an image's last pixel to its done
BITSTREAM_ID = 0x1234_5678
OK = ParseStatus.OK


def chunk(offset: int, data: bytes) -> bytes:
    return bytes([LoadOp.CHUNK]) + offset.to_bytes(4, "little") + data


def commit(total: int, weights_id: int, crc: int) -> bytes:
    return bytes([LoadOp.COMMIT]) + total.to_bytes(4, "little") + weights_id.to_bytes(4, "little") + crc.to_bytes(4, "little")


def piece(offset: int, data: bytes) -> bytes:
    return offset.to_bytes(2, "little") + data


@dataclass
class Accelerator:
    """What the Python accelerator saw and how it behaves."""

    images: list = field(default_factory=list)  # the pixels of each image it was started on
    weights: bytearray = field(default_factory=bytearray)
    restarts: int = 0
    resets: int = 0
    hang: str | None = None  # "pixels": takes none; "done": never finishes; "weights": takes none
    linger: int = 0  # cycles busy after done
    overlap: bool = False  # a new image may start once the last one's pixels are in (streaming)
    steady: bool = False  # takes a pixel in every cycle one is offered (else 70 % of them)
    tail: int = TAIL
    started: list = field(default_factory=list)  # the cycle in which each start was taken
    finished: list = field(default_factory=list)  # the cycle in which each done was high

    def cycles(self, k: int) -> int:
        """Image k's start-to-done count, as the accelerators' ``cycles`` counts it: from the
        edge that took the start (the end of the cycle it was seen in) to the one that raised
        done, both counted."""
        return self.finished[k] - self.started[k]


class Bench:
    def __init__(self, in_bitstream: bool = True, seed: int = 0, loadable: bool = True):
        self.dut = RequestHandler(ACCELERATOR, WEIGHT_BYTES, in_bitstream, BITSTREAM_ID, WATCHDOG, weights_loadable=loadable)
        self.acc = Accelerator()
        self.rng = random.Random(seed)
        self.seq = 0
        self.cycles_to_reply = 0
        self.on_cycle = None  # called at the start of every cycle of the Python accelerator

    def run(self, script):
        sim = Simulator(self.dut)
        sim.add_clock(1e-6)
        sim.add_testbench(self._accelerator, background=True)
        async def main(ctx):
            await script(ctx, self)

        sim.add_testbench(main)
        sim.run()

    async def _accelerator(self, ctx):
        """Like a register-transfer accelerator: the outputs of a cycle come from the state, the
        inputs seen in it change the state for the next. An image's done is high ``tail``
        cycles after the cycle its last pixel was taken; in that cycle the image no longer
        counts as busy (as in both designs, a start may be taken in it)."""
        dut, acc = self.dut, self.acc
        open_image = False  # an image's pixels are being taken
        taken, linger, cycle = 0, 0, 0
        flight = []  # the done cycle of each image whose pixels are in, oldest first
        while True:
            if self.on_cycle is not None:
                self.on_cycle()
            done = bool(flight) and flight[0] == cycle
            others = len(flight) - done  # images in flight after this cycle's done
            busy = open_image or others > 0 or linger > 0
            receiving = open_image if acc.overlap else open_image or others > 0
            taking = open_image and acc.hang != "pixels" and (acc.steady or self.rng.random() < 0.7)
            ctx.set(dut.accelerator.done, done)
            ctx.set(dut.accelerator.busy, busy)
            ctx.set(dut.accelerator.receiving, receiving)
            ctx.set(dut.accelerator.pixels.ready, taking)
            ctx.set(dut.accelerator.weights.ready, acc.hang != "weights")
            # The inputs of this cycle.
            if taking and ctx.get(dut.accelerator.pixels.valid):
                acc.images[-1].append(ctx.get(dut.accelerator.pixels.payload))
                taken += 1
                if taken == PIXELS:
                    open_image = False
                    flight.append(cycle + acc.tail if acc.hang != "done" else float("inf"))
            if acc.hang != "weights" and ctx.get(dut.accelerator.weights.valid):
                acc.weights.append(ctx.get(dut.accelerator.weights.payload))
            if ctx.get(dut.accelerator.weights_restart):
                acc.restarts += 1
                acc.weights.clear()
            start = ctx.get(dut.accelerator.start) and not receiving and (acc.overlap or not busy)
            linger = max(0, linger - 1)
            if done:
                flight.pop(0)
                linger = acc.linger
                acc.finished.append(cycle)
            if start:
                open_image, taken = True, 0
                acc.images.append([])
                acc.started.append(cycle)
            if ctx.get(dut.accelerator_reset):
                acc.resets += 1
                acc.hang = None
                open_image, taken, linger, flight = False, 0, 0, []
            await ctx.tick()
            cycle += 1

    async def deliver(self, ctx, type: int, payload: bytes = b"", status: ParseStatus = OK,
                      length: int | None = None, dropped: bool = False) -> list[tuple]:
        """One frame as the parser hands it over; returns the replies (type, code) it got, and
        checks each carries the frame's SEQ."""
        dut = self.dut
        self.seq = (self.seq + 1) & 0xFF
        ctx.set(dut.header.type, type)
        ctx.set(dut.header.seq, self.seq)
        ctx.set(dut.header.length, len(payload) if length is None else length)
        await send_payload(ctx, dut.payload, payload, gap=2)
        ctx.set(dut.dropped, dropped)
        ctx.set(dut.verdict.payload, status)
        ctx.set(dut.verdict.valid, 1)
        replies, wait, cycles = [], 0, 0
        while True:
            ready = False
            if ctx.get(dut.reply.valid):
                wait += 1
                if wait == 3:  # the serialiser takes a few cycles per reply
                    ready, wait = True, 0
                    replies.append((ctx.get(dut.reply.payload.type), ctx.get(dut.reply.payload.code),
                                    ctx.get(dut.reply.payload.seq)))
                    if len(replies) == 1:
                        self.cycles_to_reply = cycles
            ctx.set(dut.reply.ready, ready)
            released = ctx.get(dut.verdict.ready)
            await ctx.tick()
            cycles += 1
            assert cycles < 20 * WATCHDOG, "no reply"
            if released:
                break
        ctx.set(dut.verdict.valid, 0)
        ctx.set(dut.reply.ready, 0)
        ctx.set(dut.dropped, 0)
        await ctx.tick().repeat(2)
        assert all(seq == self.seq for *_, seq in replies), f"replies {replies} to SEQ {self.seq}"
        return [(FrameType(t), ErrorCode(c) if FrameType(t) == FrameType.ERROR else None) for t, c, _ in replies]

    def bench_result(self, ctx) -> protocol.BenchResult:
        """What a BENCH_RESULT would say now (the serialiser reads the accelerator's class)."""
        dut = self.dut
        return protocol.BenchResult(ctx.get(dut.bench_runs), 0, ctx.get(dut.bench_first), ctx.get(dut.bench_total))

    @staticmethod
    def state(ctx, dut) -> dict:
        flags = ctx.get(dut.weights_flags)
        return {"valid": bool(flags & protocol.WEIGHTS_VALID), "loading": bool(flags & protocol.WEIGHTS_LOADING),
                "id": ctx.get(dut.weights_id), "load_received": ctx.get(dut.load_received),
                "image_received": ctx.get(dut.image_received)}


def error(code):
    return [(FrameType.ERROR, code)]


def test_verdicts_types_and_lengths():
    """The parser's verdicts first, then TYPE, then LEN: each wrong frame gets its ERROR, and
    none of them reaches the accelerator."""
    bench = Bench(seed=1)

    async def script(ctx, b):
        assert await b.deliver(ctx, FrameType.PING) == [(FrameType.INFO, None)]
        image = bytes(range(PIXELS))
        assert await b.deliver(ctx, FrameType.CLASSIFY, image, ParseStatus.BAD_CRC) == error(ErrorCode.BAD_CRC)
        assert await b.deliver(ctx, FrameType.CLASSIFY, image[:3], ParseStatus.TIMEOUT) == error(ErrorCode.TIMEOUT)
        assert await b.deliver(ctx, FrameType.LOAD_WEIGHTS, b"", ParseStatus.TOO_LONG,
                               length=SIZES.max_request + 1) == error(ErrorCode.TOO_LONG)
        assert await b.deliver(ctx, 0x7F, b"\x01") == error(ErrorCode.UNKNOWN_TYPE)
        assert await b.deliver(ctx, FrameType.INFO) == error(ErrorCode.UNKNOWN_TYPE)  # a reply type
        for type, payload in [(FrameType.PING, b"\x00"), (FrameType.CLASSIFY, image[:-1]), (FrameType.CLASSIFY, image + b"\x00"),
                              (FrameType.LOAD_WEIGHTS, b""), (FrameType.LOAD_WEIGHTS, chunk(0, b"")),
                              (FrameType.LOAD_WEIGHTS, chunk(0, bytes(PIXELS + 1))),
                              (FrameType.LOAD_WEIGHTS, commit(WEIGHT_BYTES, 1, 2)[:-1]),
                              (FrameType.IMAGE, piece(0, b"")), (FrameType.IMAGE, piece(0, bytes(PIXELS + 1)))]:
            assert await b.deliver(ctx, type, payload) == error(ErrorCode.BAD_LENGTH), (type, len(payload))
        assert b.acc.images == [] and b.acc.weights == bytearray()
        assert b.state(ctx, b.dut)["valid"], "no refused request touched the weights"

    bench.run(script)


def test_classify_whole_and_in_pieces():
    """A whole image goes to the accelerator as sent; pieces are assembled in the image buffer
    (a piece may start anywhere up to what is held, and a corrupted one changes nothing) and
    CLASSIFY without pixels sends the assembled image."""
    bench = Bench(seed=2)
    rng = random.Random(2)
    first = bytes(rng.randrange(256) for _ in range(PIXELS))
    second = bytes(rng.randrange(256) for _ in range(PIXELS))

    async def script(ctx, b):
        assert await b.deliver(ctx, FrameType.CLASSIFY, first) == [(FrameType.RESULT, None)]
        assert b.acc.images == [list(first)]
        # Nothing assembled yet.
        assert await b.deliver(ctx, FrameType.CLASSIFY) == error(ErrorCode.BAD_IMAGE)
        assert await b.deliver(ctx, FrameType.IMAGE, piece(0, second[:6])) == [(FrameType.IMAGE_STORED, None)]
        assert b.state(ctx, b.dut)["image_received"] == 6
        # Past what is held (a gap), and past the image's end: refused, nothing changes.
        assert await b.deliver(ctx, FrameType.IMAGE, piece(7, second[7:9])) == error(ErrorCode.BAD_IMAGE)
        assert await b.deliver(ctx, FrameType.IMAGE, piece(4, bytes(13))) == error(ErrorCode.BAD_IMAGE)
        # A corrupted piece at 0 with other bytes: its bytes were written to the frame buffer
        # as they came, but never reach the image buffer.
        assert await b.deliver(ctx, FrameType.IMAGE, piece(0, bytes(PIXELS)), ParseStatus.BAD_CRC) == error(ErrorCode.BAD_CRC)
        assert await b.deliver(ctx, FrameType.IMAGE, piece(6, second[6:16])) == [(FrameType.IMAGE_STORED, None)]
        assert b.state(ctx, b.dut)["image_received"] == 16
        # The last piece again (its reply lost, say): harmless.
        assert await b.deliver(ctx, FrameType.IMAGE, piece(6, second[6:16])) == [(FrameType.IMAGE_STORED, None)]
        assert await b.deliver(ctx, FrameType.CLASSIFY) == [(FrameType.RESULT, None)]
        assert b.acc.images[-1] == list(second)
        # A whole CLASSIFY in between uses the frame buffer, not the assembled image ...
        assert await b.deliver(ctx, FrameType.CLASSIFY, first) == [(FrameType.RESULT, None)]
        assert await b.deliver(ctx, FrameType.CLASSIFY) == [(FrameType.RESULT, None)]
        assert b.acc.images[-2:] == [list(first), list(second)]
        # ... and a piece at 0 starts a new one: the board holds exactly up to its end.
        assert await b.deliver(ctx, FrameType.IMAGE, piece(0, first[:3])) == [(FrameType.IMAGE_STORED, None)]
        assert b.state(ctx, b.dut)["image_received"] == 3
        assert await b.deliver(ctx, FrameType.CLASSIFY) == error(ErrorCode.BAD_IMAGE)

    bench.run(script)


def weight_image(seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(WEIGHT_BYTES))


async def load(ctx, b, image: bytes, crc: int, weights_id: int = 0xABCD0001, step: int = PIXELS):
    """Chunks in order, then the commit; returns the commit's replies."""
    for offset in range(0, len(image), step):
        data = image[offset : offset + step]
        assert await b.deliver(ctx, FrameType.LOAD_WEIGHTS, chunk(offset, data)) == [(FrameType.WEIGHTS_LOADED, None)]
        state = b.state(ctx, b.dut)
        assert (state["valid"], state["loading"], state["load_received"]) == (False, True, offset + len(data))
    return await b.deliver(ctx, FrameType.LOAD_WEIGHTS, commit(len(image), weights_id, crc))


def test_weight_load_and_its_crc():
    """A load makes the weights invalid from its first chunk; the accelerator takes exactly the
    image's bytes (one restart); the commit sets them valid only if its CRC-32 is that of the
    bytes the accelerator took."""
    bench = Bench(in_bitstream=False, seed=3)
    image = weight_image(3)

    async def script(ctx, b):
        assert b.state(ctx, b.dut) == {"valid": False, "loading": False, "id": 0, "load_received": 0, "image_received": 0}
        assert await b.deliver(ctx, FrameType.CLASSIFY, bytes(PIXELS)) == error(ErrorCode.NO_WEIGHTS)
        assert await load(ctx, b, image, protocol.crc32(image)) == [(FrameType.WEIGHTS_LOADED, None)]
        assert bytes(b.acc.weights) == image and b.acc.restarts == 1
        assert b.state(ctx, b.dut) == {"valid": True, "loading": False, "id": 0xABCD0001,
                                       "load_received": WEIGHT_BYTES, "image_received": 0}
        assert await b.deliver(ctx, FrameType.CLASSIFY, bytes(PIXELS)) == [(FrameType.RESULT, None)]

        # A corrupted image whose chunks each passed their CRC-8 (one byte changed on the way,
        # the frame's CRC made to match): the commit carries the CRC-32 of the true image.
        corrupted = bytearray(image)
        corrupted[21] ^= 0x40
        assert await load(ctx, b, bytes(corrupted), protocol.crc32(image), 7) == error(ErrorCode.BAD_LOAD)
        assert b.state(ctx, b.dut)["valid"] is False and b.state(ctx, b.dut)["id"] == 0
        assert await b.deliver(ctx, FrameType.CLASSIFY, bytes(PIXELS)) == error(ErrorCode.NO_WEIGHTS)
        # The check is against what arrived: the CRC-32 of the corrupted bytes passes (so the one
        # above failed for the right reason), and so do smaller chunks.
        assert await load(ctx, b, bytes(corrupted), protocol.crc32(bytes(corrupted)), 8) == [(FrameType.WEIGHTS_LOADED, None)]
        assert await load(ctx, b, image, protocol.crc32(image), 9, step=7) == [(FrameType.WEIGHTS_LOADED, None)]
        assert bytes(b.acc.weights) == image and b.state(ctx, b.dut)["id"] == 9

    bench.run(script)


def test_weights_in_read_only_memory():
    """A design whose weights cannot be replaced (the compact design's block RAM weights): INFO's
    flags say so, every LOAD_WEIGHTS (chunk, commit, anything) gets WEIGHTS_FIXED, and the
    bitstream's weights stay valid and classify."""
    bench = Bench(seed=5, loadable=False)
    image = weight_image(5)

    async def script(ctx, b):
        fixed = {"valid": True, "loading": False, "id": BITSTREAM_ID, "load_received": 0, "image_received": 0}
        assert ctx.get(b.dut.weights_flags) == (protocol.WEIGHTS_VALID | protocol.WEIGHTS_IN_BITSTREAM
                                                | protocol.WEIGHTS_FIXED)
        for payload in (chunk(0, image[:16]), commit(WEIGHT_BYTES, 1, protocol.crc32(image)), bytes([2, 0, 0])):
            assert await b.deliver(ctx, FrameType.LOAD_WEIGHTS, payload) == error(ErrorCode.WEIGHTS_FIXED)
            assert b.state(ctx, b.dut) == fixed
        assert not b.acc.weights and b.acc.restarts == 0
        assert await b.deliver(ctx, FrameType.CLASSIFY, bytes(range(PIXELS))) == [(FrameType.RESULT, None)]
        assert b.acc.images == [list(range(PIXELS))]

    bench.run(script)
    with pytest.raises(ValueError, match="must be in the bitstream"):
        RequestHandler(ACCELERATOR, WEIGHT_BYTES, False, 0, WATCHDOG, weights_loadable=False)


def test_load_order_rules():
    """Out-of-order, overlapping and overrunning chunks, an early or wrong commit and an unknown
    op are refused with BAD_LOAD and end the load (the weights invalid)."""
    bench = Bench(seed=4)
    image = weight_image(4)

    async def script(ctx, b):
        async def refused(payload, what):
            assert await b.deliver(ctx, FrameType.LOAD_WEIGHTS, payload) == error(ErrorCode.BAD_LOAD), what
            state = b.state(ctx, b.dut)
            assert not state["valid"] and not state["loading"] and state["id"] == 0, what

        assert b.state(ctx, b.dut)["id"] == BITSTREAM_ID
        await refused(chunk(16, image[16:32]), "a first chunk not at 0")
        assert await b.deliver(ctx, FrameType.LOAD_WEIGHTS, chunk(0, image[:16])) == [(FrameType.WEIGHTS_LOADED, None)]
        await refused(chunk(20, image[20:30]), "a gap")
        assert await b.deliver(ctx, FrameType.LOAD_WEIGHTS, chunk(0, image[:16])) == [(FrameType.WEIGHTS_LOADED, None)]
        await refused(chunk(8, image[8:24]), "an overlap")
        await refused(chunk(0, bytes(PIXELS)) [:1] + (30).to_bytes(4, "little") + bytes(11), "past the end")
        await refused(commit(WEIGHT_BYTES, 1, protocol.crc32(image)), "a commit without a load")
        for offset in (0, 16, 32):
            assert await b.deliver(ctx, FrameType.LOAD_WEIGHTS, chunk(offset, image[offset:offset + 16])) == [
                (FrameType.WEIGHTS_LOADED, None)]
        await refused(commit(WEIGHT_BYTES + 1, 1, protocol.crc32(image)), "a wrong total")
        await refused(bytes([2, 0, 0]), "an unknown op")
        assert await load(ctx, b, image, protocol.crc32(image)) == [(FrameType.WEIGHTS_LOADED, None)]

    bench.run(script)


def test_busy():
    """A load while an image is in flight gets BUSY and changes nothing; bytes dropped while a
    request was served get one extra ERROR BUSY after its reply, with the same SEQ."""
    bench = Bench(seed=5)
    bench.acc.linger = 3000

    async def script(ctx, b):
        assert await b.deliver(ctx, FrameType.CLASSIFY, bytes(PIXELS)) == [(FrameType.RESULT, None)]
        assert await b.deliver(ctx, FrameType.LOAD_WEIGHTS, chunk(0, bytes(16))) == error(ErrorCode.BUSY)
        assert b.state(ctx, b.dut)["valid"] and b.acc.weights == bytearray()
        assert await b.deliver(ctx, FrameType.PING, dropped=True) == [(FrameType.INFO, None), (FrameType.ERROR, ErrorCode.BUSY)]

    bench.run(script)


@pytest.mark.parametrize("hang", ["pixels", "done"])
def test_watchdog_on_a_classification(hang):
    """An accelerator that stops taking pixels, or never finishes: after the watchdog time the
    board resets it (once) and answers HUNG; the weights stay valid, and the next image works."""
    bench = Bench(seed=6)

    async def script(ctx, b):
        b.acc.hang = hang
        assert await b.deliver(ctx, FrameType.CLASSIFY, bytes(PIXELS)) == error(ErrorCode.HUNG)
        assert WATCHDOG <= b.cycles_to_reply <= WATCHDOG + 10, b.cycles_to_reply
        assert b.acc.resets == 1 and b.state(ctx, b.dut)["valid"]
        assert await b.deliver(ctx, FrameType.CLASSIFY, bytes(range(PIXELS))) == [(FrameType.RESULT, None)]
        assert b.acc.images[-1] == list(range(PIXELS)) and b.acc.resets == 1

    bench.run(script)


def test_watchdog_on_a_load():
    """An accelerator that takes no weight byte: HUNG, the load ended, the weights invalid."""
    bench = Bench(seed=7)
    image = weight_image(7)

    async def script(ctx, b):
        b.acc.hang = "weights"
        assert await b.deliver(ctx, FrameType.LOAD_WEIGHTS, chunk(0, image[:16])) == error(ErrorCode.HUNG)
        state = b.state(ctx, b.dut)
        assert b.acc.resets == 1 and not state["valid"] and not state["loading"] and state["id"] == 0
        assert await b.deliver(ctx, FrameType.LOAD_WEIGHTS, chunk(16, image[16:32])) == error(ErrorCode.BAD_LOAD)
        assert await load(ctx, b, image, protocol.crc32(image)) == [(FrameType.WEIGHTS_LOADED, None)]
        assert bytes(b.acc.weights) == image

    bench.run(script)


def test_bad_parameters():
    with pytest.raises(TypeError, match="AcceleratorSignature"):
        RequestHandler(SIZES, WEIGHT_BYTES, True, 0, WATCHDOG)
    with pytest.raises(ValueError, match="weight image"):
        RequestHandler(ACCELERATOR, 0, True, 0, WATCHDOG)
    with pytest.raises(ValueError, match="u32"):
        RequestHandler(ACCELERATOR, WEIGHT_BYTES, True, 1 << 32, WATCHDOG)


# --------------------------------------------------------------------------------------------
# BENCH


def bench_payload(runs: int) -> bytes:
    return runs.to_bytes(protocol.BENCH_LENGTH, "little")


async def store(ctx, b, image: bytes) -> None:
    assert await b.deliver(ctx, FrameType.IMAGE, piece(0, image)) == [(FrameType.IMAGE_STORED, None)]


async def bench_runs(ctx, b, runs: int) -> protocol.BenchResult:
    """A BENCH of ``runs``; checks it is answered with BENCH_RESULT, returns the counts."""
    assert await b.deliver(ctx, FrameType.BENCH, bench_payload(runs)) == [(FrameType.BENCH_RESULT, None)]
    result = b.bench_result(ctx)
    assert result.runs == runs
    return result


def test_bench_one_image_at_a_time():
    """An accelerator that takes one image at a time (busy from start to done, as the compact
    design) and a pixel whenever one is offered: each run takes the image's pixels, one a cycle
    from the cycle after its start, and ``TAIL`` cycles more, and the next run starts in the
    cycle of the last one's done. So a run is PIXELS + TAIL cycles, and N runs exactly N times
    that; the first run's count is the accelerator's own. A bench of 60 runs (1,200 cycles, three
    watchdog times) is not cut short: each start and done re-arms the watchdog."""
    bench = Bench(seed=11)
    bench.acc.steady = True
    image = bytes(random.Random(11).randrange(256) for _ in range(PIXELS))
    one_run = PIXELS + TAIL

    async def script(ctx, b):
        await store(ctx, b, image)
        result = await bench_runs(ctx, b, 1)
        assert result.first_cycles == result.total_cycles == b.acc.cycles(0) == one_run
        for runs in (5, 60):
            before = len(b.acc.started)
            result = await bench_runs(ctx, b, runs)
            assert result.first_cycles == b.acc.cycles(before) == one_run
            assert result.total_cycles == runs * one_run == b.acc.finished[-1] - b.acc.started[before]
            assert len(b.acc.started) == before + runs
        assert runs * one_run > 2 * WATCHDOG and b.acc.resets == 0
        assert b.acc.images == [list(image)] * 66, "every run gets the stored image"
        # The image buffer is unchanged: CLASSIFY without pixels still finds it.
        assert await b.deliver(ctx, FrameType.CLASSIFY) == [(FrameType.RESULT, None)]
        assert b.acc.images[-1] == list(image)

    bench.run(script)


def test_bench_overlapping_runs():
    """An accelerator that takes the next image as soon as the last one's pixels are in (as the
    streaming design; ``receiving`` low for one cycle in between): run k + 1 starts PIXELS + 1
    cycles after run k, so N runs take (N - 1) (PIXELS + 1) + PIXELS + tail cycles, the last
    run's latency after the others' intervals."""
    bench = Bench(seed=12)
    bench.acc.steady, bench.acc.overlap, bench.acc.tail = True, True, 40
    image = bytes(random.Random(12).randrange(256) for _ in range(PIXELS))
    latency = PIXELS + 40

    async def script(ctx, b):
        await store(ctx, b, image)
        for runs in (1, 7):
            before = len(b.acc.started)
            result = await bench_runs(ctx, b, runs)
            assert result.first_cycles == b.acc.cycles(before) == latency
            assert result.total_cycles == (runs - 1) * (PIXELS + 1) + latency
            assert result.total_cycles == b.acc.finished[-1] - b.acc.started[before]
        assert any(b.acc.finished[k] > b.acc.started[k + 1] for k in range(1, 7)), "the runs did not overlap"
        assert b.acc.images == [list(image)] * 8

    bench.run(script)


def test_bench_starts_on_an_idle_accelerator():
    """An accelerator still busy from an earlier image (here: ``linger`` cycles after a CLASSIFY's
    done), which would take a start: the bench's first start waits until it is idle, so no
    earlier image's done is counted as a run's."""
    bench = Bench(seed=17)
    bench.acc.steady, bench.acc.overlap, bench.acc.linger = True, True, 300
    image = bytes(range(PIXELS))

    async def script(ctx, b):
        await store(ctx, b, image)
        assert await b.deliver(ctx, FrameType.CLASSIFY) == [(FrameType.RESULT, None)]
        result = await bench_runs(ctx, b, 2)
        assert b.acc.started[1] >= b.acc.finished[0] + 300
        assert result.first_cycles == PIXELS + TAIL and result.total_cycles == PIXELS + 1 + PIXELS + TAIL

    bench.run(script)


@pytest.mark.parametrize("overlap", [False, True])
def test_bench_at_the_accelerators_pace(overlap):
    """An accelerator that takes a pixel on 70 % of the cycles: whatever the runs' timing, the
    count is the cycles from the first start to the last done, as the accelerator saw them."""
    bench = Bench(seed=13 + overlap)
    bench.acc.overlap = overlap
    image = bytes(random.Random(13).randrange(256) for _ in range(PIXELS))

    async def script(ctx, b):
        await store(ctx, b, image)
        result = await bench_runs(ctx, b, 40)
        assert result.first_cycles == b.acc.cycles(0)
        assert result.total_cycles == b.acc.finished[-1] - b.acc.started[0] > 2 * WATCHDOG
        assert b.acc.images == [list(image)] * 40 and b.acc.resets == 0

    bench.run(script)


def test_bench_refusals():
    """0 runs, a LEN other than 2, no whole image in the buffer (none yet, or a piece short; a
    whole CLASSIFY does not fill it) and no valid weights: each its ERROR, and nothing reaches
    the accelerator."""
    bench = Bench(in_bitstream=False, seed=15)
    image = bytes(range(PIXELS))

    async def script(ctx, b):
        assert await b.deliver(ctx, FrameType.BENCH, bench_payload(0)) == error(ErrorCode.BAD_RUNS)
        assert await b.deliver(ctx, FrameType.BENCH, bench_payload(3)) == error(ErrorCode.NO_WEIGHTS)
        weights = weight_image(15)
        assert await load(ctx, b, weights, protocol.crc32(weights)) == [(FrameType.WEIGHTS_LOADED, None)]
        for payload in (b"\x01", b"\x01\x00\x00"):
            assert await b.deliver(ctx, FrameType.BENCH, payload) == error(ErrorCode.BAD_LENGTH)
        assert await b.deliver(ctx, FrameType.CLASSIFY, image) == [(FrameType.RESULT, None)]
        assert await b.deliver(ctx, FrameType.BENCH, bench_payload(3)) == error(ErrorCode.BAD_IMAGE)
        assert await b.deliver(ctx, FrameType.IMAGE, piece(0, image[:-1])) == [(FrameType.IMAGE_STORED, None)]
        assert await b.deliver(ctx, FrameType.BENCH, bench_payload(3)) == error(ErrorCode.BAD_IMAGE)
        assert await b.deliver(ctx, FrameType.BENCH, bench_payload(0)) == error(ErrorCode.BAD_RUNS)
        assert await b.deliver(ctx, FrameType.BENCH, bench_payload(3), ParseStatus.BAD_CRC) == error(ErrorCode.BAD_CRC)
        assert b.acc.images == [list(image)], "only the CLASSIFY reached the accelerator"
        assert await b.deliver(ctx, FrameType.IMAGE, piece(PIXELS - 1, image[-1:])) == [(FrameType.IMAGE_STORED, None)]
        assert (await bench_runs(ctx, b, 3)).runs == 3 and b.acc.images == [list(image)] * 4

    bench.run(script)


@pytest.mark.parametrize("hang", ["pixels", "done"])
def test_watchdog_during_a_bench(hang):
    """An accelerator that hangs in a bench's third run (takes no pixel more, or never
    finishes): HUNG, one reset, and the next bench counts from its own first run."""
    bench = Bench(seed=16)
    bench.acc.steady = True
    image = bytes(range(PIXELS))

    async def script(ctx, b):
        await store(ctx, b, image)
        def hang_in_run_three():
            if len(b.acc.started) == 3 and not b.acc.resets:
                b.acc.hang = hang

        b.on_cycle = hang_in_run_three
        assert await b.deliver(ctx, FrameType.BENCH, bench_payload(50)) == error(ErrorCode.HUNG)
        b.on_cycle = None
        assert b.acc.resets == 1 and len(b.acc.started) == 3
        before = len(b.acc.started)
        result = await bench_runs(ctx, b, 2)
        assert result.first_cycles == PIXELS + TAIL and result.total_cycles == 2 * (PIXELS + TAIL)
        assert b.acc.images[before:] == [list(image)] * 2

    bench.run(script)
