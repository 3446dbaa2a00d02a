"""cocotb testbench for the convolution blocks (``hdl/window.py``, ``hdl/conv.py``).

Both blocks take pixel vectors on ``i`` and give a stream on ``o``; the bench is
``bench.StreamBench`` (the shared ``tb_data`` keys and ``tb_output`` are described there), with,
in ``tb_data``:

* ``pixels``: codes [n_pixels, C], ``images`` images back to back in raster order;
* ``expected``: codes [n_outputs, width] (``width`` codes per output payload, first in the low
  bits: a whole window for ``WindowGenerator``, 1 for ``ConvEngine``);
* ``cycles``: about how many cycles the whole stream takes without stalls (sets the timeouts).

``latency`` and ``finish`` count per image.
"""

import cocotb

from .bench import CLOCK_NS, StreamBench
from .runner import tb_data
from .streams import pack


def _timeout_ns(cycles: int, in_stall: float, out_stall: float) -> int:
    """A hang must fail the test quickly, a slow run must not: three times the stalled estimate."""
    return int(cycles / ((1 - in_stall) * (1 - out_stall)) * 3 + 2000) * CLOCK_NS


class ConvBench(StreamBench):
    group = "image"

    def __init__(self, dut, data):
        super().__init__(dut, data, [pack(p) for p in data["pixels"].tolist()])
        self.cycles = int(data["cycles"])

    def timeout_ns(self, words: int, count: int, in_stall: float, out_stall: float) -> int:
        return _timeout_ns(self.cycles * words // len(self.words), in_stall, out_stall)


@cocotb.test()
async def stream_matches_golden(dut):
    await ConvBench(dut, tb_data()).run()
