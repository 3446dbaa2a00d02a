"""The queue before conv2 (hdl/fifo.py), in Amaranth's simulator.

A producer offers numbered transfers at random and a consumer takes them at random, sometimes
refusing for long bursts. Every transfer must come out once and in order, the queue must hold
``depth`` transfers (plus its output register) while the consumer waits, and with both sides
always willing one transfer must pass every cycle.
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from lenet_fpga.hdl.fifo import StreamFIFO


def simulate(depth: int, seed: int | None, bursty_ready=None, count: int = 200):
    """``seed`` None: producer and consumer always willing; with a seed, the consumer is
    ``bursty_ready`` (the conftest fixture). Returns what came out, the most
    transfers held at once, and the cycle each transfer left."""
    dut = StreamFIFO(unsigned(12), depth)
    rng = random.Random(seed)
    seen = {"got": [], "held": 0, "left_at": []}

    async def testbench(ctx):
        sent = 0
        consumer = None if seed is None else bursty_ready(rng, 3 * depth, 0.6)
        for cycle in range(count * 20):
            if seed is None:
                offer, ready = sent < count, True
            else:
                ready = next(consumer)
                offer = sent < count and rng.random() < 0.8
            ctx.set(dut.i.valid, offer)
            ctx.set(dut.i.payload, sent)
            ctx.set(dut.o.ready, ready)
            if offer and ctx.get(dut.i.ready):
                sent += 1
            if ctx.get(dut.o.valid) and ready:
                seen["got"].append(ctx.get(dut.o.payload))
                seen["left_at"].append(cycle)
            seen["held"] = max(seen["held"], sent - len(seen["got"]))
            await ctx.tick()
            if len(seen["got"]) == count:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return seen


@pytest.mark.parametrize("depth", [1, 2, 5, 64])
def test_stream_fifo_keeps_order_and_fills(depth, bursty_ready):
    seen = simulate(depth, depth, bursty_ready)
    assert seen["got"] == list(range(200))
    assert seen["held"] == depth + 1  # the memory's transfers and the output register's


@pytest.mark.parametrize("depth", [3, 64])  # from 3: Amaranth's buffered FIFO of 2 alternates
def test_stream_fifo_passes_a_transfer_every_cycle(depth):
    seen = simulate(depth, seed=None)
    assert seen["got"] == list(range(200))
    left = seen["left_at"]
    assert left[-1] - left[0] == len(left) - 1, "a gap in the stream"


def test_stream_fifo_rejects_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        StreamFIFO(unsigned(8), 0)
