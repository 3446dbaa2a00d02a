"""cocotb testbench for the whole network, one image at a time: every image's logits, class and
cycle count (and phase stamps, for a design that has phases).

Stimulus (``tb_data``): ``images`` uint8 [N,S,S] or [N,C,S,S], ``classes`` (logits per image) and optionally
``segments`` int [K,2]: for each row ``(bank, n)``, load weight bank ``bank`` (``SimHarness``'s
ROMs), then classify the next ``n`` images. Without segments no weights are loaded. The
comparison with the golden model happens in the caller (``sim.network``), which gets
``logits``, ``klass``, ``cycles`` and ``stamps`` back, so the same run serves the tests,
``lenet-fpga sim`` and the benchmarks.
"""

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from ..model.images import stream_order
from .runner import tb_data, tb_output
from .streams import simulated_cycles, start_clock_and_reset, unpack

# Generous: an image takes 1 to 50 k cycles, a weight load about 45 k; a hang must end the test,
# not the CI job.
TIMEOUT_CYCLES = 400_000
STAMP_WIDTH = 32


async def classify(dut, image: np.ndarray, classes: int) -> tuple[list[int], int, int]:
    dut.image.value = int.from_bytes(stream_order(image).tobytes(), "little")
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    await cocotb.triggers.with_timeout(RisingEdge(dut.done), TIMEOUT_CYCLES * 10, "ns")
    await ReadOnly()
    width = len(dut.logits) // classes
    logits = unpack(dut.logits.value.to_unsigned(), classes, width)
    result = logits, dut.klass.value.to_unsigned(), dut.cycles.value.to_unsigned()
    await RisingEdge(dut.clk)
    return result


async def load_weights(dut, bank: int) -> None:
    """Stream weight bank ``bank`` into the accelerator; return when its last byte is taken."""
    dut.bank.value = bank
    dut.load.value = 1
    await RisingEdge(dut.clk)
    dut.load.value = 0
    await ReadOnly()
    if dut.loading.value:
        await cocotb.triggers.with_timeout(FallingEdge(dut.loading), TIMEOUT_CYCLES * 10, "ns")
    await RisingEdge(dut.clk)


@cocotb.test()
async def run_images(dut):
    data = tb_data()
    images, classes = data["images"], int(data["classes"])
    segments = data["segments"] if "segments" in data else [(-1, len(images))]
    dut.start.value = 0
    dut.image.value = 0
    if "segments" in data:
        dut.load.value = 0
        dut.bank.value = 0
    await start_clock_and_reset(dut)
    phases = len(dut.stamps) // STAMP_WIDTH if hasattr(dut, "stamps") else 0
    logits, klass, cycles, stamps = [], [], [], []
    index = 0
    for bank, n in segments:
        if bank >= 0:
            await load_weights(dut, int(bank))
        for image in images[index : index + int(n)]:
            lg, k, c = await classify(dut, image, classes)
            logits.append(lg)
            klass.append(k)
            cycles.append(c)
            if phases:
                stamps.append(unpack(dut.stamps.value.to_unsigned(), phases, STAMP_WIDTH))
        index += int(n)
    tb_output(logits=np.array(logits, np.int64).reshape(-1, classes), klass=np.array(klass, np.int64),
              cycles=np.array(cycles, np.int64), stamps=np.array(stamps, np.int64).reshape(len(cycles), phases),
              simulated_cycles=simulated_cycles())
