"""cocotb testbench for the whole network: every image's ten logits, class and cycle count.

Stimulus (``tb_data``): ``images`` uint8 [N,S,S] and ``classes`` (the logits per image). The comparison with the golden model happens
in the caller (``sim.network.simulate``), which gets ``logits``, ``klass`` and ``cycles`` back,
so the same run serves the tests, ``lenet-fpga sim`` and the benchmarks.
"""

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from .runner import tb_data, tb_output
from .streams import start_clock_and_reset, unpack

# Generous: the design takes about 10 k cycles; a hang must end the test, not the CI job.
TIMEOUT_CYCLES = 200_000


async def classify(dut, image: np.ndarray) -> tuple[list[int], int, int]:
    dut.image.value = int.from_bytes(image.astype(np.uint8).reshape(-1).tobytes(), "little")
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    await cocotb.triggers.with_timeout(RisingEdge(dut.done), TIMEOUT_CYCLES * 10, "ns")
    await ReadOnly()
    classes = int(tb_data()["classes"])
    width = len(dut.logits) // classes
    logits = unpack(dut.logits.value.to_unsigned(), classes, width)
    result = logits, dut.klass.value.to_unsigned(), dut.cycles.value.to_unsigned()
    await RisingEdge(dut.clk)
    return result


@cocotb.test()
async def run_images(dut):
    images = tb_data()["images"]
    dut.start.value = 0
    dut.image.value = 0
    await start_clock_and_reset(dut)
    logits, klass, cycles = [], [], []
    for image in images:
        lg, k, c = await classify(dut, image)
        logits.append(lg)
        klass.append(k)
        cycles.append(c)
    tb_output(logits=np.array(logits, np.int64), klass=np.array(klass), cycles=np.array(cycles))
