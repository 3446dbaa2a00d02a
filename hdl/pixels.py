"""The first stage of the network: raw 8-bit pixels to Q2.6 input codes, by table look-up.

``arith.quantize_pixels`` is the definition; the 256-entry table is built from it when the
design is generated, so there is no second formula to get wrong. The table is a ROM with a
synchronous read port (a block RAM or LUTs, as the synthesizer likes; with ``in_logic`` always
LUTs, for a design that needs every block RAM), and the stage holds its output until it is
taken, like any other stream stage.
"""

import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model import arith
from .datapath import CODE, LOGIC_MEMORY

PIXEL = unsigned(8)


def pixel_table() -> list[int]:
    """Code of every pixel value 0..255, from the arithmetic contract."""
    return arith.quantize_pixels(np.arange(arith.PIXEL_MAX + 1, dtype=np.uint8)).tolist()


class PixelQuantizer(wiring.Component):
    """Pixel 0..255 -> Q2.6 code 0..64, exactly ``arith.quantize_pixels``; one pixel per cycle.

    Parameters
    ----------
    in_logic : bool
        Build the table from logic, never from a block RAM.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(8)))
        Raw pixels.
    o : Out(stream.Signature(signed(8)))
        Their codes, in the same order, one cycle later.
    memory_bits : int
        Bits of the look-up table.
    """

    i: In(stream.Signature(PIXEL))
    o: Out(stream.Signature(CODE))

    def __init__(self, in_logic: bool = False):
        super().__init__()
        self.table = Memory(shape=CODE, depth=arith.PIXEL_MAX + 1, init=pixel_table(),
                            attrs=LOGIC_MEMORY if in_logic else None)

    @property
    def memory_bits(self) -> int:
        return self.table.depth * arith.WIDTH

    def elaborate(self, platform):
        m = Module()
        m.submodules.table = self.table
        rd = self.table.read_port()

        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        accept = self.i.valid & self.i.ready
        # The read register is the output register: it only loads on a transfer, so it holds
        # the code while the consumer stalls.
        m.d.comb += [rd.addr.eq(self.i.payload), rd.en.eq(accept), self.o.payload.eq(rd.data)]
        with m.If(accept):
            m.d.sync += self.o.valid.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
