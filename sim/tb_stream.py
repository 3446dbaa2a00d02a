"""cocotb testbench that streams images into the accelerator back to back.

The next image's ``start`` is held high from the moment the previous one was taken, so the
accelerator takes it as soon as its pixel input closes (``receiving`` low): the images overlap
inside the pipeline as they would behind a fast host. Python wakes up twice per image (once when
an image is taken, once when a result is out) and sleeps on signal edges in between; the clock
runs in the simulator.

Stimulus (``tb_data``): ``images`` uint8 [N,S,S] or [N,C,S,S], ``classes`` (C, the logits per image),
optionally ``golden`` int64 [N,C] (the golden model's logits) and ``load`` (load weight bank 0
first, for a design without weights in its bitstream). Results (``tb_output``): ``logits``
[N,C], ``klass`` [N],
``cycles`` [N] (the accelerator's own start-to-done count), ``simulated_cycles`` (all the run's
clock cycles, reset and weight load included), ``taken`` [N] and ``done_at`` [N]
(clock cycle numbers, 0 = the first edge after reset, of the edge that took each image's start
and of the edge after which each image's ``done`` was high), and ``matches`` [N] bool when
golden logits were given. A mismatch is logged with its time but does not fail the test, so the
caller gets every number; a hang does.
"""

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge, with_timeout

from ..model.images import stream_order
from .runner import tb_data, tb_output
from .streams import PERIOD_NS, simulated_cycles, start_clock_and_reset, unpack
from .tb_lenet import load_weights

# Per image, generous: a hang must end the run, not the CI job.
TIMEOUT_CYCLES = 200_000


def image_word(image: np.ndarray) -> int:
    """Byte k of the pixel stream (``stream_order``) in bits 8k..8k+7, as the harness's ``image``
    port wants."""
    return int.from_bytes(stream_order(image).tobytes(), "little")


class Clock:
    """Cycle numbers from simulation time, counted from a chosen edge."""

    def __init__(self):
        self.origin = 0

    def now(self) -> int:
        return simulated_cycles() - self.origin


async def feed(dut, words: list[int], clock: Clock, taken: list[int]) -> None:
    """Offer each image until the accelerator takes it, then offer the next at once."""
    for word in words:
        dut.image.value = word
        dut.start.value = 1
        # ``receiving`` rises at exactly the edge that took the start (it is low before any take).
        await with_timeout(RisingEdge(dut.receiving), TIMEOUT_CYCLES * PERIOD_NS, "ns")
        taken.append(clock.now())
    dut.start.value = 0


@cocotb.test()
async def stream_images(dut):
    data = tb_data()
    images = data["images"]
    golden = data.get("golden")
    dut.start.value = 0
    dut.image.value = 0
    if "load" in data:
        dut.load.value = 0
        dut.bank.value = 0
    await start_clock_and_reset(dut)
    if "load" in data:  # a design without weights in its bitstream: load bank 0 first
        await load_weights(dut, 0)
    clock = Clock()
    clock.origin = clock.now()
    words = [image_word(image) for image in images]
    taken: list[int] = []
    feeder = cocotb.start_soon(feed(dut, words, clock, taken))
    classes = int(data["classes"])
    width = len(dut.logits) // classes
    logits, klass, cycles, done_at, matches = [], [], [], [], []
    for k in range(len(images)):
        # ``done`` pulses for one cycle, at least ten cycles apart (one per logit), so no rising
        # edge is missed while this coroutine reads the previous answer.
        await with_timeout(RisingEdge(dut.done), TIMEOUT_CYCLES * PERIOD_NS, "ns")
        done_at.append(clock.now())
        await ReadOnly()
        row = unpack(dut.logits.value.to_unsigned(), classes, width)
        logits.append(row)
        klass.append(dut.klass.value.to_unsigned())
        cycles.append(dut.cycles.value.to_unsigned())
        if golden is not None:
            matches.append(row == golden[k].tolist())
            if not matches[-1]:
                dut._log.error("image %d differs from the golden model at cycle %d: rtl %s golden %s",
                               k, done_at[-1], row, golden[k].tolist())
    await feeder
    outputs = dict(logits=np.array(logits, np.int64), klass=np.array(klass), cycles=np.array(cycles),
                   taken=np.array(taken), done_at=np.array(done_at), simulated_cycles=simulated_cycles())
    if golden is not None:
        outputs["matches"] = np.array(matches, bool)
    tb_output(**outputs)
