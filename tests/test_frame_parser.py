"""The board's frame parser (``boards/frame_parser.py``) alone, in Amaranth's simulator: bytes in
at chosen cycles, payload bytes and verdicts out. Frames are built with ``protocol.encode_frame``
(a table CRC-8, checked against amaranth.lib.crc's software model in test_protocol.py); the
parser checks them with amaranth.lib.crc's hardware CRC."""

import random

import pytest
from amaranth.sim import Simulator

from lenet_fpga.boards import protocol
from lenet_fpga.boards.frame_parser import FrameParser, ParseStatus

MAX, GAP, FRAME = 20, 60, 600  # longest payload, longest gap, longest frame (cycles)
SPACING = 5  # cycles between bytes (a real UART byte is at least 40)


def schedule(data: bytes, start: int = 10, spacing: int = SPACING) -> dict[int, int]:
    return {start + k * spacing: b for k, b in enumerate(data)}


def simulate(bytes_at: dict[int, int], cycles: int, hold: int = 3) -> dict:
    """Run the parser with ``bytes_at`` (cycle -> byte); a verdict is taken ``hold`` cycles after
    it appears. Returns the payload strobes (cycle, byte, index), the verdicts (cycle, status,
    type, seq, length) and whether ``dropped`` was seen with each."""
    dut = FrameParser(MAX, GAP, FRAME)
    out = {"payload": [], "verdicts": [], "dropped": []}

    async def bench(ctx):
        held = 0
        for cycle in range(cycles):
            byte = bytes_at.get(cycle)
            ctx.set(dut.i.valid, byte is not None)
            ctx.set(dut.i.payload, 0 if byte is None else byte)
            valid = ctx.get(dut.verdict.valid)
            take = valid and held >= hold
            ctx.set(dut.verdict.ready, take)
            if ctx.get(dut.payload.valid):
                out["payload"].append((cycle, ctx.get(dut.payload.payload.byte), ctx.get(dut.payload.payload.index)))
            if valid and held == 0:
                header = ctx.get(dut.header)
                out["verdicts"].append((cycle, ctx.get(dut.verdict.payload), header.type, header.seq, header.length))
            if take:
                out["dropped"].append(bool(ctx.get(dut.dropped)))
            held = held + 1 if valid and not take else 0
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


def test_a_frame_after_noise():
    """Noise without SYNC is skipped; the frame's payload comes out byte by byte with its index
    (a SYNC inside the payload is just a byte), then one OK verdict with TYPE, SEQ and LEN."""
    frame = protocol.encode_frame(0x42, b"\x01\xa5\x03", seq=7)
    data = bytes([0x00, 0x13, 0x5A, 0xFF]) + frame
    out = simulate(schedule(data), 200)
    assert [(b, i) for _, b, i in out["payload"]] == [(0x01, 0), (0xA5, 1), (0x03, 2)]
    (cycle, status, type, seq, length), = out["verdicts"]
    assert (status, type, seq, length) == (ParseStatus.OK, 0x42, 7, 3)
    last = 10 + (len(data) - 1) * SPACING  # the CRC byte's cycle
    assert last < cycle <= last + 3, f"verdict at cycle {cycle}, CRC byte at {last}"


def test_an_empty_payload_and_a_longest_one():
    at = schedule(protocol.encode_frame(protocol.FrameType.PING, seq=200))
    at.update(schedule(protocol.encode_frame(0x03, bytes(range(MAX)), seq=1), start=60))
    out = simulate(at, 400)
    assert [v[1:] for v in out["verdicts"]] == [(ParseStatus.OK, 0x01, 200, 0), (ParseStatus.OK, 0x03, 1, MAX)]
    assert [b for _, b, _ in out["payload"]] == list(range(MAX))


@pytest.mark.parametrize("position", [1, 2, 6, 7, -1])  # TYPE, SEQ, a payload byte, another, the CRC
def test_a_flipped_bit_is_a_bad_crc(position):
    frame = bytearray(protocol.encode_frame(0x02, b"\x10\x20\x30\x40", seq=9))
    frame[position] ^= 0x08
    out = simulate(schedule(bytes(frame)), 200)
    assert [v[1] for v in out["verdicts"]] == [ParseStatus.BAD_CRC]


def test_a_length_above_the_largest_is_refused_at_once():
    """LEN = MAX + 1: the verdict comes right after LEN's second byte, before any payload byte;
    the payload that follows arrives while the verdict is held and is dropped."""
    frame = protocol.encode_frame(0x03, bytes(MAX + 1), seq=5)
    out = simulate(schedule(frame), 400, hold=200)
    len_hi = 10 + 4 * SPACING
    (cycle, status, type, seq, length), = out["verdicts"]
    assert status == ParseStatus.TOO_LONG and (type, seq, length) == (0x03, 5, MAX + 1)
    assert len_hi < cycle < len_hi + SPACING, f"verdict at cycle {cycle}, LEN_HI at {len_hi}"
    assert out["payload"] == [] and out["dropped"] == [True]


def test_a_frame_that_stops_times_out_after_the_gap():
    frame = protocol.encode_frame(0x02, bytes(10), seq=1)[:9]  # header and 4 payload bytes
    out = simulate(schedule(frame), 300)
    last = 10 + 8 * SPACING
    (cycle, status, *_), = out["verdicts"]
    assert status == ParseStatus.TIMEOUT and last + GAP <= cycle <= last + GAP + 3, (cycle, last)


def test_a_dribbling_sender_is_cut_off_at_the_frame_deadline():
    """A byte every GAP - 2 cycles never trips the gap timeout, but the frame (26 bytes, 1,508
    cycles) cannot finish inside FRAME = 600 cycles from its SYNC."""
    frame = protocol.encode_frame(0x03, bytes(MAX), seq=2)
    assert len(frame) * (GAP - 2) > FRAME
    out = simulate(schedule(frame, spacing=GAP - 2), 900)
    (cycle, status, *_), = out["verdicts"]
    assert status == ParseStatus.TIMEOUT and 10 + FRAME <= cycle <= 10 + FRAME + 3, cycle


def test_bytes_while_a_verdict_is_held_are_dropped():
    """A second frame arriving while the first one's verdict waits is dropped (``dropped``); a
    third one, after the verdict was taken, is parsed."""
    first, second = protocol.encode_frame(0x01, seq=1), protocol.encode_frame(0x01, seq=2)
    third = protocol.encode_frame(0x01, seq=3)
    at = schedule(first)
    at.update(schedule(second, start=60))
    at.update(schedule(third, start=300))
    out = simulate(at, 600, hold=150)
    assert [(v[1], v[3]) for v in out["verdicts"]] == [(ParseStatus.OK, 1), (ParseStatus.OK, 3)]
    assert out["dropped"] == [True, False]


def test_random_frames_between_noise():
    """(At least two noise bytes between frames: the time a verdict is held, in which the board
    would be sending its reply.)"""
    seed = 8100
    rng = random.Random(seed)
    stream, expected = bytearray(), []
    for _ in range(25):
        noise = bytes(rng.choice([b for b in range(256) if b != protocol.SYNC]) for _ in range(rng.randrange(2, 6)))
        type, seq = rng.randrange(256), rng.randrange(256)
        payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, MAX, rng.randrange(MAX + 1)])))
        stream += noise + protocol.encode_frame(type, payload, seq)
        expected.append((type, seq, payload))
    out = simulate(schedule(bytes(stream)), 10 + SPACING * len(stream) + 50)
    got, payloads = [], iter(out["payload"])
    for _, status, type, seq, length in out["verdicts"]:
        assert status == ParseStatus.OK, f"seed {seed}"
        got.append((type, seq, bytes(next(payloads)[1] for _ in range(length))))
    assert got == expected, f"seed {seed}"


def test_bad_parameters():
    with pytest.raises(ValueError, match="max_length"):
        FrameParser(protocol.MAX_LENGTH + 1, GAP, FRAME)
    with pytest.raises(TypeError):
        FrameParser(MAX, 10.0, FRAME)
    with pytest.raises(ValueError, match="at least 2"):
        FrameParser(MAX, 1, FRAME)
