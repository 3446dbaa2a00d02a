"""cocotb testbench for ``hdl.linear.LinearEngine``: several images back to back, every output exact.

Stimulus (``tb_data``): ``x`` int [N, in_features] input codes, ``expected`` int [N, out_features]
(the golden outputs), ``seed``, ``stall_in`` / ``stall_out`` (probabilities of a bubble on ``i`` and
of back-pressure on ``o``), ``burst`` (the longest solid back-pressure, in cycles), ``cycle_budget``
(cycles after which the test fails as hung) and ``clean_images``: the first images run without any stall, so the
handshake times give the engine's latency and image period. Returned (``tb_output``): ``got``
[N, out_features], ``latency`` (cycles from image 0's first input transfer to its last output
transfer), ``period`` (between the first input transfers of the last two clean images: with at
least three, the steady state of the two-bank input buffer) and every transfer's cycle.
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, with_timeout

from .runner import tb_data, tb_output
from .streams import HandshakeLog, StreamSink, StreamSource, start_clock_and_reset


@cocotb.test()
async def linear_matches_golden(dut):
    data = tb_data()
    x, expected = data["x"].astype(np.int64), data["expected"].astype(np.int64)
    seed, clean = int(data["seed"]), int(data["clean_images"])
    n_images, in_features = x.shape
    out_features = expected.shape[1]
    dut._log.info(f"seed {seed}: {n_images} images, {in_features} -> {out_features}")

    dut.i__payload.value = 0
    source = StreamSource(dut, "i", rng=random.Random(seed), stall=0.0)
    sink = StreamSink(dut, "o", rng=random.Random(seed + 1), stall=0.0)
    await start_clock_and_reset(dut)
    monitor = HandshakeLog(dut)

    async def feed():
        await source.send((x[:clean] & 0xFF).reshape(-1).tolist())
        source.stall = float(data["stall_in"])
        await source.send((x[clean:] & 0xFF).reshape(-1).tolist())

    async def bursts(stream, base: float, longest: int):
        """Per-cycle stalls at ``base``, now and then a solid stall of up to ``longest`` cycles:
        long enough for a finished output to wait on the one before it."""
        rng = random.Random(seed + 2)
        while True:
            stream.stall = base
            await ClockCycles(dut.clk, rng.randint(1, 3 * longest))
            stream.stall = 1.0
            await ClockCycles(dut.clk, rng.randint(1, longest))

    async def exchange():
        feeder = cocotb.start_soon(feed())
        items = await sink.receive(clean * out_features)
        burster = cocotb.start_soon(bursts(sink, float(data["stall_out"]), int(data["burst"])))
        items += await sink.receive((n_images - clean) * out_features)
        burster.cancel()
        await feeder
        return items

    # A hang (lost handshake, deadlock) must end the test, not the CI job.
    got = await with_timeout(exchange(), 10 * (int(data["cycle_budget"]) + 100), "ns")

    # Nothing more may come out, and the engine must be ready for the next image.
    sink.stall = 0.0
    sink.ready.value = 1
    await ClockCycles(dut.clk, 20)
    await ReadOnly()
    extra = len(monitor.outputs) - n_images * out_features
    idle = bool(dut.i__ready.value)
    await RisingEdge(dut.clk)
    sink.ready.value = 0

    got = np.array(got, np.int64).reshape(n_images, out_features)
    ins, outs = np.array(monitor.inputs), np.array(monitor.outputs)
    latency = int(outs[out_features - 1] - ins[0]) if clean >= 1 else -1
    period = int(ins[(clean - 1) * in_features] - ins[(clean - 2) * in_features]) if clean >= 2 else -1
    tb_output(got=got, latency=latency, period=period, input_cycles=ins, output_cycles=outs)

    bad = np.argwhere(got != expected)
    if bad.size:
        n, j = bad[0]
        raise AssertionError(f"seed {seed}: {len(bad)} mismatches; first image {n} output {j}: "
                             f"rtl {got[n, j]} golden {expected[n, j]}")
    assert extra == 0, f"seed {seed}: {extra} output transfers beyond the {n_images * out_features} expected"
    assert idle, f"seed {seed}: i.ready is low after the last image, the engine did not return to loading"
