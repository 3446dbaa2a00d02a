"""The cocotb bench shared by the stream-block testbenches (``tb_conv``, ``tb_pool``, ``tb_pixels``).

The block under test takes a stream on ``i`` and gives ``width`` codes per transfer on ``o``
(first code in the low bits). The caller (the pytest launcher) computes the golden answer and
passes, in ``tb_data``, besides the block's inputs (see each testbench):

* ``expected``: codes [n_outputs, width], ``images`` equal groups back to back;
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
from cocotb.triggers import with_timeout

from .runner import tb_output
from .streams import HandshakeLog, StreamSink, StreamSource, pack, start_clock_and_reset, unpack

CLOCK_NS = 10


def check(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: got {got.shape[0]} outputs, expected {expected.shape[0]}"
    bad = np.flatnonzero((got != expected).any(axis=1))
    assert bad.size == 0, (f"{what}: {bad.size} of {len(expected)} outputs differ; first at output {bad[0]}: "
                           f"rtl {got[bad[0]].tolist()} golden {expected[bad[0]].tolist()}")


class StreamBench:
    """Sends ``words`` through the block and compares what comes out with ``expected``.

    A subclass gives ``timeout_ns``; ``group`` names a group in the messages, and
    ``wait_for_source`` makes ``transfer`` also wait until every input has been taken.
    """

    group = "group"
    wait_for_source = False

    def __init__(self, dut, data, words: list[int]):
        self.dut = dut
        self.words = words
        self.expected = data["expected"]
        self.width = self.expected.shape[1]
        self.images = int(data["images"])
        self.seed = int(data["seed"])
        self.stalls = data["stalls"].tolist()
        self.measuring = bool(data["measure"])

    def timeout_ns(self, words: int, count: int, in_stall: float, out_stall: float) -> int:
        """How long sending ``words`` inputs and receiving ``count`` outputs may take."""
        raise NotImplementedError

    async def transfer(self, words, count, source, sink) -> np.ndarray:
        """Send ``words`` and collect ``count`` outputs as codes [count, width]."""
        sending = cocotb.start_soon(source.send(words))
        timeout = self.timeout_ns(len(words), count, source.stall, sink.stall)
        got = await with_timeout(sink.receive(count), timeout, "ns")
        if self.wait_for_source:
            await with_timeout(sending, timeout, "ns")
        return np.array([unpack(w, self.width) for w in got], dtype=np.int64).reshape(count, self.width)

    async def measure(self) -> dict[str, np.ndarray]:
        per_in, per_out = len(self.words) // self.images, len(self.expected) // self.images
        source, sink = StreamSource(self.dut, "i"), StreamSink(self.dut, "o", signed=False)
        log = HandshakeLog(self.dut)
        for n in range(self.images):
            got = await self.transfer(self.words[n * per_in : (n + 1) * per_in], per_out, source, sink)
            check(got, self.expected[n * per_out : (n + 1) * per_out], f"{self.group} {n} alone, no stalls")
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


class ValueStreamBench(StreamBench):
    """For blocks that take codes in flat transfers (``MaxPool``, ``PixelQuantizer``, ``Gather``...).

    ``tb_data["inputs"]``: [n_inputs] integers, one 8-bit value per transfer, or [n_inputs, lanes]
    codes, ``lanes`` per transfer (the first in the low bits); negative codes are sent as their
    8-bit pattern.
    ``transfer`` returns when both sides are done: inputs that end no block (dropped rows) may
    come after the last output.
    """

    wait_for_source = True

    def __init__(self, dut, data):
        inputs = np.asarray(data["inputs"])
        rows = inputs.reshape(len(inputs), -1).tolist()
        super().__init__(dut, data, [pack(row) for row in rows])

    def timeout_ns(self, words: int, count: int, in_stall: float, out_stall: float) -> int:
        # Generous: every transfer on both sides stalled, times four.
        cycles = 4 * (words / (1 - in_stall) + count / (1 - out_stall)) + 1000
        return int(cycles) * CLOCK_NS
