"""The board's reply serialiser (``boards/reply_serialiser.py``) alone, in Amaranth's simulator:
a reply request and the live state in, bytes out under a consumer that is ready on a random
pattern. Every reply is decoded with the host's ``FrameDecoder`` and its payload compared with
the host's own encoders (``BoardInfo.encode``, ``result_payload``, ...)."""

import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.sim import Simulator

from lenet_fpga.boards import protocol
from lenet_fpga.boards.protocol import ErrorCode, FrameDecoder, FrameType
from lenet_fpga.boards.reply_serialiser import ReplySerialiser
from lenet_fpga.model import arith

LOGIT_BITS = 24
INFO = protocol.BoardInfo(protocol.VERSION, arith.Arithmetic("floor", "saturate"), "compact", LOGIT_BITS, 0,
                          False, False, 45_066, 28, 10, 8, clock_hz=12_000_000)


def serialise(requests, state: dict, seed: int, info=INFO) -> tuple[bytes, list[int]]:
    """Send ``requests`` [(type, seq, code)] one after the other, each offered in the cycle after
    the previous one was done; returns the bytes and the cycle of each ``i.ready``."""
    dut = ReplySerialiser(info, signed(LOGIT_BITS))
    rng = random.Random(seed)
    out, done = bytearray(), []

    async def bench(ctx):
        for name, value in state.items():
            if name == "logits":
                for j, logit in enumerate(value):
                    ctx.set(dut.logits[j], int(logit))
            else:
                ctx.set(getattr(dut, name), value)
        pending = list(requests)
        cycle = 0
        while pending and cycle < 20_000:
            type, seq, code = pending[0]
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload.type, type)
            ctx.set(dut.i.payload.seq, seq)
            ctx.set(dut.i.payload.code, code)
            ready = rng.random() < 0.6
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                out.append(ctx.get(dut.o.payload))
            if ctx.get(dut.i.ready):
                done.append(cycle)
                pending.pop(0)
            await ctx.tick()
            cycle += 1
        ctx.set(dut.i.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return bytes(out), done


STATE = {"klass": 7, "cycles": 0xDEADBEEF, "weights_id": 0xCAFEF00D,
         "weights_flags": protocol.WEIGHTS_VALID | protocol.WEIGHTS_LOADING, "load_received": 12_345,
         "image_received": 700,
         # A bench of 65,535 runs whose count needs more than 32 bits.
         "bench_runs": 0xFFFF, "bench_first": 0x89ABCDEF, "bench_total": 0x0123_4567_89AB_CDEF,
         # The 24-bit extremes and small values of both signs: the sign extension to int32 shows.
         "logits": [-(1 << 23), (1 << 23) - 1, -1, 0, 1, -3_000_000, 2_097_151, -2_097_152, 12345, -54321]}


def test_every_reply_type():
    requests = [(FrameType.INFO, 1, 0), (FrameType.RESULT, 2, 0), (FrameType.WEIGHTS_LOADED, 3, 0),
                (FrameType.IMAGE_STORED, 4, 0), (FrameType.ERROR, 5, ErrorCode.HUNG), (FrameType.BENCH_RESULT, 6, 0)]
    data, done = serialise(requests, STATE, seed=8200)
    frames = FrameDecoder().feed(data)
    assert [(f.type, f.seq, f.crc_ok) for f in frames] == [(t, s, True) for t, s, _ in requests]
    assert len(data) == sum(len(f.encode()) for f in frames), "bytes outside the frames"
    # INFO: the constant fields of INFO, the live weights id, flags and load progress.
    expected_info = dataclasses.replace(INFO, weights_id=0xCAFEF00D, weights_valid=True, loading=True,
                                        load_received=12_345).encode()
    assert frames[0].payload == expected_info
    sizes = INFO.sizes
    assert frames[1].payload == protocol.result_payload(7, STATE["logits"], 0xDEADBEEF, sizes)
    assert frames[2].payload == protocol.loaded_payload(12_345, True)
    assert frames[3].payload == protocol.stored_payload(700)
    assert frames[4].payload == bytes([ErrorCode.HUNG])
    assert frames[5].payload == protocol.BenchResult(0xFFFF, 7, 0x89ABCDEF, 0x0123_4567_89AB_CDEF).encode()
    # Without a load in progress INFO counts no bytes of one; WEIGHTS_LOADED still says the last.
    state = dict(STATE, weights_flags=protocol.WEIGHTS_VALID)
    data, _ = serialise([(FrameType.INFO, 1, 0), (FrameType.WEIGHTS_LOADED, 2, 0)], state, seed=8202)
    info, loaded = FrameDecoder().feed(data)
    assert protocol.parse_info(info).load_received == 0 and protocol.parse_loaded(loaded) == (12_345, True)


def test_replies_back_to_back_and_their_pace():
    """A reply requested in the cycle after the last one was done (the BUSY after a reply) goes
    out whole, after it: 7 bytes, each taken at least a cycle apart."""
    requests = [(FrameType.ERROR, 9, ErrorCode.BAD_CRC), (FrameType.ERROR, 9, ErrorCode.BUSY)]
    data, done = serialise(requests, STATE, seed=8201)
    frames = FrameDecoder().feed(data)
    assert [(f.type, f.seq, f.payload) for f in frames] == [(FrameType.ERROR, 9, b"\x01"), (FrameType.ERROR, 9, b"\x05")]
    assert done[1] - done[0] >= protocol.OVERHEAD_BYTES + 1


@pytest.mark.parametrize("seed", range(8210, 8214))
def test_random_results(seed):
    rng = np.random.default_rng(seed)
    state = dict(STATE, klass=int(rng.integers(10)), cycles=int(rng.integers(1 << 32)),
                 logits=rng.integers(-(1 << 23), 1 << 23, 10).tolist())
    data, _ = serialise([(FrameType.RESULT, int(rng.integers(256)), 0)], state, seed)
    (frame,) = FrameDecoder().feed(data)
    klass, logits, cycles = protocol.parse_result(frame, INFO.sizes)
    assert (klass, cycles) == (state["klass"], state["cycles"]) and logits.tolist() == state["logits"], f"seed {seed}"


def test_other_network_sizes():
    """A 12-class network: RESULT has 12 logits, INFO says 12."""
    info = dataclasses.replace(INFO, classes=12, image_size=32)
    state = dict(STATE, logits=list(range(-6, 6)), klass=11)
    data, _ = serialise([(FrameType.RESULT, 0, 0), (FrameType.INFO, 1, 0)], state, 8220, info=info)
    result, info_frame = FrameDecoder().feed(data)
    assert protocol.parse_result(result, info.sizes)[1].tolist() == list(range(-6, 6))
    assert protocol.parse_info(info_frame).sizes == protocol.FrameSizes(32, 12)


def test_refuses_wide_logits():
    with pytest.raises(ValueError, match="logits"):
        ReplySerialiser(INFO, signed(33))
