"""cocotb testbench for the AXI4-Stream wrapper (``hdl/axis.py``) with cocotbext-axi's
``AxiStreamSource`` (pixels, weights) and ``AxiStreamSink`` (results), both with random pauses:
``tvalid`` gaps on the sources, ``tready`` back-pressure on the sink.

Stimulus (``tb_data``): ``frames`` uint8 [total pixels] and ``lengths`` [N] (frame k is the next
``lengths[k]`` pixels; a length other than the image's is a wrong ``tlast``), optionally
``weights`` uint8 [B] (a weight image sent as one frame before the pixels), ``seed``, ``gaps`` and
``stall`` (the probabilities of a source pausing and the sink refusing, per cycle).

cocotbext-axi samples the bus in its ``RisingEdge`` callbacks and expects the values from before
the edge. A clock made inside the Verilog (``sim/clocked.py``) breaks that on Verilator, whose
callbacks then see the values after the edge (result beats were lost or doubled): this testbench
runs with cocotb's clock (``runner.run(..., clock_inside=False)``). Results
(``tb_output``): ``words`` uint32 (every result frame's words, in arrival order), ``beats`` [N]
(words per frame),
``tlast_errors`` (the wrapper's counter at the end), ``simulated_cycles``.
"""

import logging
import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, with_timeout

from .runner import tb_data, tb_output
from .streams import PERIOD_NS, simulated_cycles, start_clock_and_reset

# Per frame, generous (the compact design takes about 40 k cycles an image, a weight image 45 k
# bytes): a hang must end the run, not the CI job.
TIMEOUT_CYCLES = 400_000


def pauses(rng: random.Random, probability: float):
    """A pause generator: True (pause this cycle) with ``probability``, in bursts now and then."""
    while True:
        if probability and rng.random() < 0.02:
            for _ in range(rng.randrange(1, 30)):
                yield True
        yield rng.random() < probability


@cocotb.test()
async def axis_frames(dut):
    from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

    data = tb_data()
    pixels, lengths = data["frames"], [int(n) for n in data["lengths"]]
    rng = random.Random(int(data.get("seed", 0)))
    gaps, stall = float(data.get("gaps", 0.0)), float(data.get("stall", 0.0))
    for name in ("s_axis_tvalid", "s_axis_weights_tvalid", "m_axis_tready"):
        getattr(dut, name).value = 0
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
    weights = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_weights"), dut.clk, dut.rst)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
    for driver, probability in ((source, gaps), (weights, gaps), (sink, stall)):
        driver.set_pause_generator(pauses(rng, probability))
        driver.log.setLevel(logging.WARNING)  # not every frame's bytes in the log
    await start_clock_and_reset(dut)
    await ClockCycles(dut.clk, 2)

    if "weights" in data:
        image = bytes(data["weights"].astype(np.uint8))
        await weights.send(AxiStreamFrame(image))
        await with_timeout(weights.wait(), TIMEOUT_CYCLES * PERIOD_NS, "ns")
    start = 0
    for n in lengths:
        await source.send(AxiStreamFrame(bytes(pixels[start:start + n].astype(np.uint8))))
        start += n
    words, beats = [], []
    for k in range(len(lengths)):
        frame = await with_timeout(sink.recv(), TIMEOUT_CYCLES * PERIOD_NS, "ns")
        raw = bytes(frame.tdata)
        beats.append(len(raw) // 4)
        words.extend(np.frombuffer(raw[:len(raw) // 4 * 4], "<u4").tolist())
        dut._log.info("result frame %d of %d at cycle %d", k + 1, len(lengths), simulated_cycles())
    await ClockCycles(dut.clk, 20)
    assert sink.empty(), "more result frames than pixel frames"
    tb_output(words=np.array(words, np.uint32), beats=np.array(beats), simulated_cycles=simulated_cycles(),
              tlast_errors=int(dut.tlast_errors.value.to_unsigned()))
