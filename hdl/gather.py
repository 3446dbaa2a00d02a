"""Serial to parallel: ``count`` consecutive codes become one vector.

A pooled map leaves its pooling block channel fastest, one code at a time; the next
convolution wants a whole pixel (all channels) per transfer. The first ``count - 1`` codes of a
vector go into a shift register, and the last one goes with them straight into the output
register, so the shift register is free again at once: the next vector's codes are taken while
the finished one waits for its consumer, and the stream never loses a cycle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import arith
from .datapath import CODE


class Gather(wiring.Component):
    """Groups a code stream into vectors of ``count`` codes, one code per cycle.

    Parameters
    ----------
    count : int
        Codes per output vector.

    Attributes
    ----------
    i : In(stream.Signature(signed(8)))
        Codes.
    o : Out(stream.Signature(data.ArrayLayout(signed(8), count)))
        Element ``n`` is the ``n``-th code received for this vector (element 0 in the low bits).
    """

    def __init__(self, count: int):
        if not isinstance(count, int) or isinstance(count, bool):
            raise TypeError(f"count must be an integer, not {count!r}")
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        self._count = count
        super().__init__({
            "i": In(stream.Signature(CODE)),
            "o": Out(stream.Signature(data.ArrayLayout(CODE, count))),
        })

    @property
    def count(self) -> int:
        return self._count

    def elaborate(self, platform):
        m = Module()
        n = self._count
        index = Signal(range(n))
        # Codes 0 .. n-2 of the vector being gathered, code 0 in the low bits once all are in.
        earlier = Signal(unsigned((n - 1) * arith.WIDTH))

        completes = index == n - 1
        m.d.comb += self.i.ready.eq(~completes | ~self.o.valid | self.o.ready)
        accept = self.i.valid & self.i.ready

        with m.If(accept):
            m.d.sync += index.eq(index + 1)
            if n > 1:
                # Shift in at the top: after n-1 codes the first one has reached the bottom.
                m.d.sync += earlier.eq(Cat(earlier[arith.WIDTH:], self.i.payload))
            with m.If(completes):
                m.d.sync += index.eq(0)

        with m.If(accept & completes):
            m.d.sync += [self.o.payload.eq(Cat(earlier, self.i.payload)), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
