"""cocotb testbench for the compact accelerator behind ``CompactHarness``: load weights from the
harness's ROMs, classify images, and report logits, classes, cycles and per-layer stamps.

Stimulus (``tb_data``): ``images`` uint8 [N,28,28] and ``segments`` int [S,2]: for each row
``(bank, n)``, load weight bank ``bank``, then classify the next ``n`` images.
"""

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from .runner import tb_data, tb_output
from .streams import start_clock_and_reset, unpack
from .tb_lenet import classify

# A weight image is about 45 k bytes, a byte a cycle; a hang must end the test, not the CI job.
LOAD_TIMEOUT_CYCLES = 200_000


async def load_weights(dut, bank: int) -> None:
    dut.bank.value = bank
    dut.load.value = 1
    await RisingEdge(dut.clk)
    dut.load.value = 0
    await ReadOnly()
    if dut.loading.value:
        await cocotb.triggers.with_timeout(FallingEdge(dut.loading), LOAD_TIMEOUT_CYCLES * 10, "ns")
    await RisingEdge(dut.clk)


@cocotb.test()
async def run_images(dut):
    stimulus = tb_data()
    images, segments = stimulus["images"], stimulus["segments"]
    dut.start.value = 0
    dut.image.value = 0
    dut.load.value = 0
    dut.bank.value = 0
    await start_clock_and_reset(dut)
    n_layers = None
    logits, klass, cycles, stamps = [], [], [], []
    index = 0
    for bank, n in segments:
        await load_weights(dut, int(bank))
        for image in images[index : index + int(n)]:
            lg, k, c = await classify(dut, image)
            n_layers = n_layers or len(dut.stamps) // 32
            logits.append(lg)
            klass.append(k)
            cycles.append(c)
            stamps.append(unpack(dut.stamps.value.to_unsigned(), n_layers, 32))
        index += int(n)
    tb_output(logits=np.array(logits, np.int64).reshape(-1, int(tb_data()["classes"])), klass=np.array(klass, np.int64),
              cycles=np.array(cycles, np.int64), stamps=np.array(stamps, np.int64).reshape(len(cycles), -1))
