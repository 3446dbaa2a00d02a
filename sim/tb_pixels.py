"""cocotb testbench for ``hdl/pixels.py`` and ``hdl/gather.py``.

Both are one-value-in stream blocks like ``MaxPool``, so they share its bench
(``bench.ValueStreamBench``): the same ``tb_data`` keys (``inputs``, ``expected``, ``images``,
``stalls``, ``seed``, ``measure``) and the same ``tb_output`` (``got``, ``latency``, ``finish``).
For ``PixelQuantizer`` the inputs are raw pixels 0..255 and ``expected`` has one code per row;
for ``Gather(count)`` ``expected`` has ``count`` codes per row.
"""

import cocotb

from .bench import ValueStreamBench
from .runner import tb_data


@cocotb.test()
async def stream_block_matches_golden(dut):
    await ValueStreamBench(dut, tb_data()).run()
