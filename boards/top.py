"""A board top: the accelerator behind the UART link, on the board's clock (or a PLL's) and serial pins.

The accelerator is the one the design configuration builds (``config.build``): the streaming
``LeNetAccelerator`` (weights in block RAM initial values) or the ``CompactAccelerator``
(weights in SPRAM, sent over the link after configuration)."""

from __future__ import annotations

from amaranth.hdl import ClockDomain, Module
from amaranth.lib import io, wiring

from ..model.weights import WeightSet
from . import protocol
from .link import UARTLink
from .platforms import Board
from .uart import divisor_for

DEFAULT_BAUD = 115_200
TIMEOUT_SECONDS = 0.1  # an incomplete frame is dropped after this much silence; the accelerator's watchdog


class BoardTop(wiring.Component):
    """Everything a bitstream holds: the accelerator + UARTLink, wired to ``uart`` 0."""

    def __init__(self, weights: WeightSet, config, board: Board, baud: int = DEFAULT_BAUD):
        self.board = board
        self.divisor = divisor_for(board.clock_hz, baud)
        accelerator = config.build(weights)
        self.accelerator = accelerator
        # INFO names the weights the bitstream carries; a design that loads them at run time has none.
        cycles = int(board.clock_hz * TIMEOUT_SECONDS)
        self.link = UARTLink(accelerator, self.divisor, cycles, watchdog_cycles=cycles, clock_hz=round(board.clock_hz),
                             weights_id=protocol.weights_id(weights.params) if accelerator.weights_in_bitstream else 0)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        if platform is not None:
            if self.board.pll is not None:
                m.domains.sync = ClockDomain("sync")
                m.submodules.clock = self.board.pll.domain()
            # Raw ports and explicit buffers (the implicit ones of ``request`` are deprecated);
            # other UART pins a board has (the ULX3S' RTS and DTR) stay unused.
            uart = platform.request("uart", 0, dir="-")
            m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
            m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
            m.d.comb += [self.link.rx.eq(rx.i), tx.o.eq(self.link.tx)]
        return m
