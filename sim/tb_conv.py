"""cocotb testbench for the convolution blocks (``hdl/window.py``, ``hdl/conv.py``).

Both blocks take pixel vectors on ``i`` and give a stream on ``o``; the caller (the pytest
launcher) computes the golden answer and passes, in ``tb_data``:

* ``pixels``: codes [n_pixels, C], ``images`` images back to back in raster order;
* ``expected``: codes [n_outputs, width] (``width`` codes per output payload, first in the low
  bits: a whole window for ``WindowGenerator``, 1 for ``ConvEngine``);
* ``stalls``: [runs, 2] probabilities (input bubble, output back-pressure); the whole stream is
  sent once per row, without a reset in between;
* ``seed`` for the stalls; ``measure``: if true, first a run without stalls that counts cycles;
* ``cycles``: about how many cycles the whole stream takes without stalls (sets the timeouts).

It hands back (``tb_output``) ``got``, every run's outputs concatenated, and when measuring:
``latency`` [images], the cycles from an image's first input handshake to its last output
handshake (both counted) when each image waits for the previous one's last output, and
``finish``, the cycle of each image's last output when they are sent back to back (its
differences are the sustained cycles per image).
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge, with_timeout

from .runner import tb_data, tb_output
from .streams import StreamSink, StreamSource, pack, start_clock_and_reset, unpack

CLOCK_NS = 10


def _timeout_ns(cycles: int, in_stall: float, out_stall: float) -> int:
    """A hang must fail the test quickly, a slow run must not: three times the stalled estimate."""
    return int(cycles / ((1 - in_stall) * (1 - out_stall)) * 3 + 2000) * CLOCK_NS


def _check(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: got {got.shape[0]} outputs, expected {expected.shape[0]}"
    bad = np.flatnonzero((got != expected).any(axis=1))
    assert bad.size == 0, (f"{what}: {bad.size} of {len(expected)} outputs differ; first at output {bad[0]}: "
                           f"rtl {got[bad[0]].tolist()} golden {expected[bad[0]].tolist()}")


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


class StreamBench:
    def __init__(self, dut, data):
        self.dut = dut
        self.words = [pack(p) for p in data["pixels"].tolist()]
        self.expected = data["expected"]
        self.width = self.expected.shape[1]
        self.images = int(data["images"])
        self.cycles = int(data["cycles"])

    async def transfer(self, words, count, source, sink) -> np.ndarray:
        """Send ``words`` and collect ``count`` outputs as codes [count, width]."""
        cocotb.start_soon(source.send(words))
        timeout = _timeout_ns(self.cycles * len(words) // len(self.words), source.stall, sink.stall)
        got = await with_timeout(sink.receive(count), timeout, "ns")
        return np.array([unpack(w, self.width) for w in got], dtype=np.int64).reshape(count, self.width)

    async def measure(self) -> dict[str, np.ndarray]:
        per_in, per_out = len(self.words) // self.images, len(self.expected) // self.images
        source, sink = StreamSource(self.dut, "i"), StreamSink(self.dut, "o", signed=False)
        log = HandshakeLog(self.dut)
        for n in range(self.images):
            got = await self.transfer(self.words[n * per_in : (n + 1) * per_in], per_out, source, sink)
            _check(got, self.expected[n * per_out : (n + 1) * per_out], f"image {n} alone, no stalls")
        inputs, outputs = np.array(log.inputs), np.array(log.outputs)
        latency = outputs[per_out - 1 :: per_out] - inputs[::per_in] + 1
        start = len(log.outputs)
        got = await self.transfer(self.words, len(self.expected), source, sink)
        _check(got, self.expected, "back to back, no stalls")
        finish = np.array(log.outputs[start:])[per_out - 1 :: per_out]
        return {"latency": latency, "finish": finish}


@cocotb.test()
async def stream_matches_golden(dut):
    data = tb_data()
    bench = StreamBench(dut, data)
    seed = int(data["seed"])
    rng = random.Random(seed)
    await start_clock_and_reset(dut)
    results = await bench.measure() if bool(data["measure"]) else {}
    got = []
    for in_stall, out_stall in data["stalls"].tolist():
        source = StreamSource(dut, "i", random.Random(rng.random()), stall=in_stall)
        sink = StreamSink(dut, "o", random.Random(rng.random()), stall=out_stall, signed=False)
        got.append(await bench.transfer(bench.words, len(bench.expected), source, sink))
        tb_output(got=np.concatenate(got), **results)  # what is there so far, should the next check fail
        _check(got[-1], bench.expected, f"seed {seed}, stalls in {in_stall} out {out_stall}")
