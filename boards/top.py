"""A board top: the accelerator behind the UART link, on the board's clock and serial pins."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring

from ..hdl.lenet import AcceleratorConfig, LeNetAccelerator
from ..model.weights import WeightSet
from . import protocol
from .link import UARTLink
from .platforms import Board
from .uart import divisor_for

DEFAULT_BAUD = 115_200
TIMEOUT_SECONDS = 0.1  # an incomplete frame is dropped after this much silence


class BoardTop(wiring.Component):
    """Everything a bitstream holds: LeNetAccelerator + UARTLink, wired to ``uart`` 0."""

    def __init__(self, weights: WeightSet, config: AcceleratorConfig, board: Board, baud: int = DEFAULT_BAUD):
        self.board = board
        self.divisor = divisor_for(board.clock_hz, baud)
        accelerator = LeNetAccelerator(weights, config)
        self.accelerator = accelerator
        self.link = UARTLink(accelerator, self.divisor, int(board.clock_hz * TIMEOUT_SECONDS),
                             weights_id=protocol.weights_id(weights.params))
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        if platform is not None:
            uart = platform.request("uart", 0)
            m.d.comb += [self.link.rx.eq(uart.rx.i), uart.tx.o.eq(self.link.tx)]
        return m
