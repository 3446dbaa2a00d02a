"""cocotb testbench: the RTL requantizer against ``arith.requantize`` on every given accumulator."""

import cocotb
import numpy as np
from cocotb.triggers import Timer

from .runner import tb_data, tb_output


@cocotb.test()
async def requantize_matches_golden(dut):
    data = tb_data()
    got = []
    for acc in data["acc"].tolist():
        dut.acc.value = acc
        await Timer(1, unit="ns")
        got.append(dut.code.value.to_signed())
    got = np.array(got)
    tb_output(code=got)
    bad = np.flatnonzero(got != data["expected"])
    assert bad.size == 0, f"{bad.size} mismatches, first acc={data['acc'][bad[0]]}: rtl {got[bad[0]]} golden {data['expected'][bad[0]]}"
