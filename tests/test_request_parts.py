"""The request handler's rooms (``boards/request_parts.py``) alone at their ports, in Amaranth's
simulator: the watchdog's count to its limit, the argument shifter's fields, the request checks
against the protocol's rules written out here, the bench timer's starts and cycle counts. The handler as a whole is ``tests/test_request_handler.py``."""

import random

import pytest

from amaranth.sim import Simulator

from lenet_fpga.boards import protocol
from lenet_fpga.boards.protocol import FrameType, LoadOp
from lenet_fpga.boards.request_parts import ArgumentShifter, BenchTimer, RequestChecks, Watchdog

import payload_driver


def simulate(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


# --------------------------------------------------------------------------------------------
# Watchdog


async def run_until_expired(ctx, dut, most: int) -> int:
    """Cycles of ``run`` (from now) until ``expired`` is seen, at most ``most``; 0 if never."""
    ctx.set(dut.run, 1)
    for cycle in range(1, most + 1):
        await ctx.tick()
        if ctx.get(dut.expired):
            ctx.set(dut.run, 0)
            return cycle
    ctx.set(dut.run, 0)
    return 0


@pytest.mark.parametrize("limit", [2, 3, 7, 16])
def test_watchdog_expires_at_its_limit(limit):
    """Cleared, then run: ``expired`` is first seen after exactly ``limit`` ticks of ``run``
    (the count stood at limit - 1 after limit - 1 of them; the register shows it one later)."""
    dut = Watchdog(limit)

    async def tb(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert not ctx.get(dut.expired)
        assert await run_until_expired(ctx, dut, 3 * limit) == limit

    simulate(dut, tb)


def test_watchdog_holds_and_is_rearmed():
    """Cycles without ``run`` are not counted; ``clear`` starts over (and wins over ``run``);
    after expiring, a clear re-arms it for a full ``limit`` again."""
    limit = 10
    dut = Watchdog(limit)

    async def tb(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.run, 1)
        await ctx.tick().repeat(6)  # 6 counted
        ctx.set(dut.run, 0)
        await ctx.tick().repeat(20)  # held: not counted
        assert not ctx.get(dut.expired)
        assert await run_until_expired(ctx, dut, limit) == limit - 6

        # Re-armed after expiring: a full limit again.
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        await ctx.tick()
        assert not ctx.get(dut.expired)
        assert await run_until_expired(ctx, dut, 2 * limit) == limit

        # Cleared while running (progress), clear winning over run: the count starts over, so
        # limit - 1 cycles after each clear never expire.
        ctx.set(dut.clear, 1)
        await ctx.tick()
        for _ in range(3):
            ctx.set(dut.clear, 1)
            ctx.set(dut.run, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            await ctx.tick().repeat(limit - 2)
            assert not ctx.get(dut.expired)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert await run_until_expired(ctx, dut, 2 * limit) == limit

    simulate(dut, tb)


def test_watchdog_parameters():
    with pytest.raises(ValueError, match="at least 2"):
        Watchdog(1)
    with pytest.raises(TypeError, match="integer"):
        Watchdog(True)
    assert Watchdog(5).limit == 5


# --------------------------------------------------------------------------------------------
# ArgumentShifter


async def send_payload(ctx, dut, payload: bytes, gap: int = 0):
    await payload_driver.send_payload(ctx, dut.payload, payload, gap)
    await ctx.tick()


def test_argument_shifter_fields():
    """A LOAD_WEIGHTS COMMIT's fields, little-endian, by their byte indices; the bytes of an
    IMAGE piece's offset (0..1) land in ``offset``. Fields hold until their bytes come again,
    and a byte not on ``valid`` is not taken."""
    dut = ArgumentShifter()
    rng = random.Random(7)

    async def tb(ctx):
        for _ in range(20):
            op, argument = rng.randrange(256), rng.getrandbits(32)
            load_id, crc = rng.getrandbits(32), rng.getrandbits(32)
            payload = bytes([op]) + argument.to_bytes(4, "little") + load_id.to_bytes(4, "little") \
                + crc.to_bytes(4, "little") + bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
            await send_payload(ctx, dut, payload, gap=rng.randrange(3))
            assert ctx.get(dut.op) == op
            assert ctx.get(dut.argument) == argument
            assert ctx.get(dut.load_id) == load_id
            assert ctx.get(dut.load_crc) == crc
            assert ctx.get(dut.offset) == int.from_bytes(payload[:2], "little")

        # A two-byte frame (an IMAGE piece's offset) sets op and offset, shifts its byte 1 into
        # the top of ``argument``; ``load_id`` and ``load_crc`` hold.
        argument, held = ctx.get(dut.argument), [ctx.get(dut.load_id), ctx.get(dut.load_crc)]
        await send_payload(ctx, dut, bytes([0x34, 0x12]))
        assert ctx.get(dut.offset) == 0x1234 and ctx.get(dut.op) == 0x34
        assert ctx.get(dut.argument) == (argument >> 8) | 0x12 << 24
        assert [ctx.get(dut.load_id), ctx.get(dut.load_crc)] == held

        # Bytes offered without valid are not taken.
        ctx.set(dut.payload.payload.byte, 0xFF)
        ctx.set(dut.payload.payload.index, 0)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.offset) == 0x1234 and ctx.get(dut.op) == 0x34

    simulate(dut, tb)


# --------------------------------------------------------------------------------------------
# RequestChecks

SIZES = protocol.FrameSizes(4, 3)  # 16-pixel images, 3 classes
WEIGHT_BYTES = 40


def expected_checks(type, length, op, argument, offset, load_crc, loading, received, image_received, image_crc):
    """The rules of docs/protocol.md for a board with ``SIZES`` and ``WEIGHT_BYTES``."""
    pixels, header = SIZES.pixels, protocol.CHUNK_HEADER_BYTES
    lengths = {
        FrameType.PING: length == 0,
        FrameType.CLASSIFY: length in (0, pixels),
        FrameType.BENCH: length == 2,  # runs u16
        FrameType.IMAGE: 2 < length <= 2 + SIZES.max_piece,  # offset u16, at least one pixel
        FrameType.LOAD_WEIGHTS: 0 < length <= SIZES.max_request
        and (op != LoadOp.CHUNK or header < length <= header + SIZES.max_chunk)
        and (op != LoadOp.COMMIT or length == 13),  # op, total, id, CRC-32
    }
    chunk_bytes, piece_bytes = (length - header) % 2**16, (length - 2) % 2**16
    return {
        "known": type in lengths,
        "length_ok": lengths.get(type, False),
        "chunk_bytes": chunk_bytes,
        "chunk_end": argument + chunk_bytes,
        "chunk_ok": argument + chunk_bytes <= WEIGHT_BYTES and (argument == 0 or (loading and argument == received)),
        "piece_bytes": piece_bytes,
        "piece_end": offset + piece_bytes,
        "piece_ok": offset + piece_bytes <= pixels and offset <= image_received,
        "commit_ok": loading and received == WEIGHT_BYTES and argument == WEIGHT_BYTES and load_crc == image_crc,
        "image_whole": image_received == pixels,
    }


def check_cases():
    """Every type (and one unknown) at every length that is an edge of some rule, with each op;
    then chunks, pieces and commits at the edges of their offsets and of the state."""
    edges = {0, 1, 2, 3, 5, 6, 12, 13, 14, SIZES.pixels, SIZES.pixels + 1, 2 + SIZES.max_piece,
             3 + SIZES.max_piece, 5 + SIZES.max_chunk, 6 + SIZES.max_chunk, SIZES.max_request,
             SIZES.max_request + 1, 0xFFFF}
    quiet = dict(argument=0, offset=0, load_crc=0, loading=0, received=0, image_received=0, image_crc=0)
    for type in (*FrameType, 0x7E):
        for length in sorted(edges):
            for op in (LoadOp.CHUNK, LoadOp.COMMIT, 0x55):
                yield dict(quiet, type=int(type), length=length, op=int(op))
    rng = random.Random(3)
    for _ in range(400):
        received = rng.choice([0, 1, 8, WEIGHT_BYTES - 1, WEIGHT_BYTES])
        image_received = rng.choice([0, 1, 7, SIZES.pixels - 1, SIZES.pixels])
        crc = rng.getrandbits(32)
        yield dict(type=int(rng.choice([FrameType.LOAD_WEIGHTS, FrameType.IMAGE])),
                   length=rng.choice([3, 6, 7, 13, 5 + SIZES.max_chunk, 2 + SIZES.max_piece, 0]),
                   op=int(rng.choice([LoadOp.CHUNK, LoadOp.COMMIT])),
                   argument=rng.choice([0, 1, received, received + 1, WEIGHT_BYTES, WEIGHT_BYTES - 8, 2**32 - 1]),
                   offset=rng.choice([0, 1, image_received, image_received + 1, SIZES.pixels, 0xFFFF]),
                   load_crc=rng.choice([crc, crc ^ 1]), loading=rng.randrange(2), received=received,
                   image_received=image_received, image_crc=crc)


def test_request_checks_follow_the_rules():
    """Three cycles after its inputs settle, each check is what the protocol's rules say."""
    dut = RequestChecks(SIZES, WEIGHT_BYTES)
    cases = list(check_cases())
    # The cases tell every check's two answers apart (else a stuck output would pass).
    for name in ("known", "length_ok", "chunk_ok", "piece_ok", "commit_ok", "image_whole"):
        assert {bool(expected_checks(**case)[name]) for case in cases} == {False, True}, name

    async def tb(ctx):
        for case in cases:
            for name, value in case.items():
                ctx.set(getattr(dut, name), value)
            await ctx.tick().repeat(3)
            expected = expected_checks(**case)
            got = {name: ctx.get(getattr(dut, name)) for name in expected}
            assert got == {name: int(value) for name, value in expected.items()}, case

    simulate(dut, tb)


# --------------------------------------------------------------------------------------------
# BenchTimer


class TimedAccelerator:
    """A Python accelerator for the timer: takes a start when not receiving (and, unless
    ``overlap``, not busy), receives for ``receive`` cycles, then raises done ``tail`` cycles
    later; records the cycle each start was taken and each done was high."""

    def __init__(self, receive: int, tail: int, overlap: bool):
        self.receive, self.tail, self.overlap = receive, tail, overlap
        self.started, self.finished = [], []


async def run_bench(ctx, dut, acc: TimedAccelerator, runs: int, busy_before: int = 0, offer_after: int = 0):
    """Arm, then run the timer with ``acc`` until ``finished``; returns the cycle count."""
    ctx.set(dut.runs, runs)
    ctx.set(dut.arm, 1)
    await ctx.tick()
    ctx.set(dut.arm, 0)
    ctx.set(dut.active, 1)
    cycle, receiving_until, flight = 0, None, []
    for cycle in range(100 * runs + 100):
        receiving = receiving_until is not None and cycle < receiving_until
        done = bool(flight) and flight[0] == cycle
        busy = cycle < busy_before or receiving or len(flight) > done
        ctx.set(dut.busy, busy)
        ctx.set(dut.receiving, receiving)
        ctx.set(dut.done, done)
        ctx.set(dut.offered, cycle >= offer_after)
        if done:
            flight.pop(0)
            acc.finished.append(cycle)
        if ctx.get(dut.start):
            assert cycle >= offer_after, "a start without a pixel on offer"
            assert cycle >= busy_before or acc.started, "the first start while the accelerator was busy"
        if ctx.get(dut.start) and not receiving and (acc.overlap or not busy):
            acc.started.append(cycle)
            receiving_until = cycle + 1 + acc.receive
            flight.append(receiving_until - 1 + acc.tail)
        finished = ctx.get(dut.finished)
        await ctx.tick()
        if finished:
            break
    ctx.set(dut.active, 0)
    return cycle


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("runs", [1, 2, 5])
def test_bench_timer_counts_runs(runs, overlap):
    """``runs`` starts, no more; ``total`` from the edge that took the first start to the one
    that raised the last done, both counted (the accelerator's own ``cycles`` rule: the
    difference of the two cycle numbers); ``first`` likewise for the first run; a start only
    once the accelerator is idle and a pixel is on offer."""
    dut = BenchTimer(24)
    acc = TimedAccelerator(receive=6, tail=4, overlap=overlap)

    async def tb(ctx):
        await run_bench(ctx, dut, acc, runs, busy_before=5, offer_after=3)
        assert len(acc.started) == runs and len(acc.finished) == runs
        assert ctx.get(dut.total) == acc.finished[-1] - acc.started[0]
        assert ctx.get(dut.first) == acc.finished[0] - acc.started[0]
        # Held after the bench, and a second bench counts afresh.
        await ctx.tick().repeat(5)
        assert ctx.get(dut.total) == acc.finished[-1] - acc.started[0]
        acc.started.clear(), acc.finished.clear()
        await run_bench(ctx, dut, acc, runs)
        assert len(acc.started) == runs
        assert ctx.get(dut.total) == acc.finished[-1] - acc.started[0]
        assert ctx.get(dut.first) == acc.finished[0] - acc.started[0]

    simulate(dut, tb)


def test_bench_timer_is_quiet_when_inactive():
    """Not ``active``: no start, and a done does not change the counts."""
    dut = BenchTimer(16)

    async def tb(ctx):
        ctx.set(dut.runs, 3)
        ctx.set(dut.arm, 1)
        await ctx.tick()
        ctx.set(dut.arm, 0)
        ctx.set(dut.offered, 1)
        for k in range(10):
            ctx.set(dut.done, k % 2)
            ctx.set(dut.receiving, k % 3 == 0)
            assert not ctx.get(dut.start)
            await ctx.tick()
        assert ctx.get(dut.total) == 0 and ctx.get(dut.first) == 0

    simulate(dut, tb)
