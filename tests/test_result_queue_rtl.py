"""The output queue of the non-stalling engines (hdl/result_queue.py), in Amaranth's simulator.

A model pipeline reserves a place whenever ``room`` allows and delivers each result a fixed
number of cycles later, whatever the consumer does; the consumer's ``ready`` is random and
sometimes low for long bursts. Every result must come out once and in order, the queue must
really fill (``room`` low while results are still in flight), and reservations never exceed
the depth.
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from lenet_fpga.hdl.result_queue import ResultQueue


def simulate(depth: int, latency: int, seed: int, bursty_ready, count: int = 300):
    dut = ResultQueue(unsigned(16), depth)
    rng = random.Random(seed)
    seen = {"got": [], "full_cycles": 0, "max_reserved": 0}

    async def testbench(ctx):
        in_flight = [None] * latency  # result issued `latency` cycles ago arrives at index 0
        issued, reserved = 0, 0
        consumer = bursty_ready(rng, 3 * depth, 0.7)
        for _ in range(count * 8):
            ready = next(consumer)
            ctx.set(dut.o.ready, ready)
            # Issue: reserve when there is room.
            room = ctx.get(dut.room)
            issue = bool(room) and issued < count and rng.random() < 0.9
            ctx.set(dut.reserve, issue)
            if not room and any(v is not None for v in in_flight):
                seen["full_cycles"] += 1
            # Delivery: the result issued `latency` cycles ago, no questions asked.
            arriving = in_flight.pop(0)
            ctx.set(dut.i.valid, arriving is not None)
            ctx.set(dut.i.payload, arriving or 0)
            in_flight.append(issued if issue else None)
            if ctx.get(dut.o.valid) and ready:
                seen["got"].append(ctx.get(dut.o.payload))
                reserved -= 1
            reserved += issue
            issued += issue
            seen["max_reserved"] = max(seen["max_reserved"], reserved)
            await ctx.tick()
            if len(seen["got"]) == count:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return seen


@pytest.mark.parametrize("depth,latency", [(16, 9), (16, 14), (4, 6), (1, 1)])
def test_result_queue_keeps_order_and_never_overflows(depth, latency, bursty_ready):
    seen = simulate(depth, latency, depth * 100 + latency, bursty_ready)
    assert seen["got"] == list(range(300))
    assert seen["max_reserved"] == depth  # it did fill, and never beyond
    assert seen["full_cycles"] > 0  # full while results were still on their way


def test_result_queue_rejects_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        ResultQueue(unsigned(8), 0)
