"""cocotb testbench for ``hdl/pool.py`` (and, through ``StreamBench``, the other one-code-in blocks).

The block takes one 8-bit value per transfer on ``i`` and gives ``width`` codes per transfer on
``o`` (first code in the low bits). The caller (the pytest launcher) computes the golden answer
and passes, in ``tb_data``:

* ``inputs``: [n_inputs] integers, ``images`` equal groups back to back (an image for
  ``MaxPool``, any grouping for the others); negative codes are sent as their 8-bit pattern;
* ``expected``: codes [n_outputs, width];
* ``stalls``: [runs, 2] probabilities (input bubble, output back-pressure); the whole stream is
  sent once per row, without a reset in between;
* ``seed`` for the stalls; ``measure``: if true, first a run without stalls that counts cycles.

It hands back (``tb_output``) ``got``, every run's outputs concatenated, and when measuring:
``latency`` [images], the cycles from a group's first input handshake to its last output
handshake (both counted) when each group waits for the previous one's last output, and
``finish``, the cycle of each group's last output when they are sent back to back (its
differences are the sustained cycles per group).
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge, with_timeout

from .runner import tb_data, tb_output
from .streams import StreamSink, StreamSource, start_clock_and_reset, unpack

CLOCK_NS = 10


class HandshakeLog:
    """The cycle numbers of every ``i`` and ``o`` transfer (cycle 0 = the first one watched)."""

    def __init__(self, dut):
        self.dut, self.inputs, self.outputs = dut, [], []
        cocotb.start_soon(self._watch())

    async def _watch(self):
        dut, cycle = self.dut, 0
        while True:
            await ReadOnly()
            if dut.i__valid.value and dut.i__ready.value:
                self.inputs.append(cycle)
            if dut.o__valid.value and dut.o__ready.value:
                self.outputs.append(cycle)
            await RisingEdge(dut.clk)
            cycle += 1


def check(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: got {got.shape[0]} outputs, expected {expected.shape[0]}"
    bad = np.flatnonzero((got != expected).any(axis=1))
    assert bad.size == 0, (f"{what}: {bad.size} of {len(expected)} outputs differ; first at output {bad[0]}: "
                           f"rtl {got[bad[0]].tolist()} golden {expected[bad[0]].tolist()}")


class StreamBench:
    """Sends ``inputs`` through the block and compares what comes out with ``expected``."""

    def __init__(self, dut, data):
        self.dut = dut
        self.words = [int(x) & 0xFF for x in data["inputs"].tolist()]
        self.expected = data["expected"]
        self.width = self.expected.shape[1]
        self.images = int(data["images"])
        self.seed = int(data["seed"])
        self.stalls = data["stalls"].tolist()
        self.measuring = bool(data["measure"])

    async def transfer(self, words, count, source, sink) -> np.ndarray:
        """Send ``words`` and collect ``count`` outputs as codes [count, width].

        Returns when both are done: inputs that end no block (dropped rows) may come after
        the last output.
        """
        sending = cocotb.start_soon(source.send(words))
        # Generous: every transfer on both sides stalled, times four.
        cycles = 4 * (len(words) / (1 - source.stall) + count / (1 - sink.stall)) + 1000
        got = await with_timeout(sink.receive(count), int(cycles) * CLOCK_NS, "ns")
        await with_timeout(sending, int(cycles) * CLOCK_NS, "ns")
        return np.array([unpack(w, self.width) for w in got], dtype=np.int64).reshape(count, self.width)

    async def measure(self) -> dict[str, np.ndarray]:
        per_in, per_out = len(self.words) // self.images, len(self.expected) // self.images
        source, sink = StreamSource(self.dut, "i"), StreamSink(self.dut, "o", signed=False)
        log = HandshakeLog(self.dut)
        for n in range(self.images):
            got = await self.transfer(self.words[n * per_in : (n + 1) * per_in], per_out, source, sink)
            check(got, self.expected[n * per_out : (n + 1) * per_out], f"group {n} alone, no stalls")
        inputs, outputs = np.array(log.inputs), np.array(log.outputs)
        latency = outputs[per_out - 1 :: per_out] - inputs[::per_in] + 1
        start = len(log.outputs)
        got = await self.transfer(self.words, len(self.expected), source, sink)
        check(got, self.expected, "back to back, no stalls")
        finish = np.array(log.outputs[start:])[per_out - 1 :: per_out]
        return {"latency": latency, "finish": finish}

    async def run(self) -> None:
        """Clock and reset, the optional measurement, then the stream once per stall pair."""
        await start_clock_and_reset(self.dut)
        results = await self.measure() if self.measuring else {}
        rng = random.Random(self.seed)
        got = []
        for in_stall, out_stall in self.stalls:
            source = StreamSource(self.dut, "i", random.Random(rng.random()), stall=in_stall)
            sink = StreamSink(self.dut, "o", random.Random(rng.random()), stall=out_stall, signed=False)
            got.append(await self.transfer(self.words, len(self.expected), source, sink))
            tb_output(got=np.concatenate(got), **results)  # what is there so far, should the next check fail
            check(got[-1], self.expected, f"seed {self.seed}, stalls in {in_stall} out {out_stall}")


@cocotb.test()
async def pool_matches_golden(dut):
    await StreamBench(dut, tb_data()).run()
