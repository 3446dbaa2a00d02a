"""cocotb testbench for ``hdl/pool.py``.

The block takes one 8-bit value per transfer on ``i`` and gives ``width`` codes per transfer on
``o``; the bench is ``bench.ValueStreamBench`` (the ``tb_data`` keys and ``tb_output`` are
described there): ``inputs`` holds ``images`` images back to back.
"""

import cocotb

from .bench import ValueStreamBench
from .runner import tb_data


@cocotb.test()
async def pool_matches_golden(dut):
    await ValueStreamBench(dut, tb_data()).run()
