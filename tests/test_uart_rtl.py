# amaranth: UnusedElaboratable=no
"""The 8N1 UART (``boards/uart.py``) bit by bit in cocotb (``sim/tb_link.py``, tests ``uart_*``):
received bytes with random idle gaps and +-2 % baud error, framing errors, glitches shorter than
half a bit, overrun, and the transmitter's exact bit timing. Plus ``divisor_for``.
"""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from lenet_fpga.boards.uart import UARTReceiver, UARTTransmitter, divisor_for
from lenet_fpga.sim import runner

TB = "lenet_fpga.sim.tb_link"
UART_TESTS = "uart_rx_bytes,uart_rx_framing_error_and_glitch,uart_rx_overrun,uart_tx_bit_timing"


class UARTPair(wiring.Component):
    """Test top: a receiver and a transmitter side by side, their ports brought out as they are."""

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    error: Out(1)
    overrun: Out(1)
    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = UARTReceiver(self.divisor)
        m.submodules.transmitter = transmitter = UARTTransmitter(self.divisor)
        m.d.comb += [receiver.rx.eq(self.rx), self.error.eq(receiver.error), self.overrun.eq(receiver.overrun),
                     self.tx.eq(transmitter.tx)]
        wiring.connect(m, wiring.flipped(self.o), receiver.o)
        wiring.connect(m, wiring.flipped(self.i), transmitter.i)
        return m


@pytest.mark.parametrize("divisor", [4, 8, 13])
def test_uart(divisor, simulator, sim_build):
    seed = 7000 + divisor
    rng = np.random.default_rng(seed)
    # The corner bytes, then random ones.
    data = np.concatenate([[0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80], rng.integers(0, 256, 58)]).astype(np.uint8)
    runner.run(verilog.convert(UARTPair(divisor), name="uart_pair"), "uart_pair", TB,
               {"divisor": divisor, "seed": seed, "data": data}, simulator=simulator, build_root=sim_build,
               testcase=UART_TESTS)


@pytest.mark.parametrize("clk_hz,baud,divisor", [
    (25_000_000, 115_200, 217),
    (12_000_000, 115_200, 104),
    (48_000_000, 1_000_000, 48),
    (100_000_000, 9_600, 10_417),
    (460_800, 115_200, 4),
])
def test_divisor_for(clk_hz, baud, divisor):
    assert divisor_for(clk_hz, baud) == divisor
    assert abs(clk_hz / divisor - baud) / baud <= 0.02


@pytest.mark.parametrize("clk_hz,baud,message", [
    (400_000, 115_200, "too slow"),  # 3.5 cycles per bit
    (1_000_000, 230_400, "off"),  # 4 cycles: 250000 baud, 8.5 % fast
    (0, 115_200, "positive"),
])
def test_divisor_for_rejects(clk_hz, baud, message):
    with pytest.raises(ValueError, match=message):
        divisor_for(clk_hz, baud)


@pytest.mark.parametrize("divisor,error", [(3, ValueError), (8.0, TypeError), (True, TypeError)])
def test_uart_rejects_bad_divisor(divisor, error):
    with pytest.raises(error):
        UARTReceiver(divisor)
    with pytest.raises(error):
        UARTTransmitter(divisor)
