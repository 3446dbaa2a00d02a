"""A register slice for a valid/ready stream whose ``ready`` is a flip-flop.

Every block here takes ``i`` when ``o`` is free or is being taken, so ``i.ready`` depends on
``o.ready`` through logic, and chained blocks make one combinational path from the last block's
ready back to the first block's pipeline enable. Between engines that path would set the clock
period. A skid buffer cuts it: ``i.ready`` only says "the spare register is empty", and a
transfer that arrives while ``o`` is stalled waits in the spare register, so the stream still
moves one transfer per cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class SkidBuffer(wiring.Component):
    """``o`` repeats ``i`` one cycle later, in order, at full rate; ``i.ready`` is registered.

    Parameters
    ----------
    shape : shape-like
        Payload shape of both streams.
    """

    def __init__(self, shape):
        self._shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        # Raw bits: a structured copy of the payload would only add named sub-wires.
        spare = Signal(len(Value.cast(self.i.payload)))
        spare_full = Signal()
        m.d.comb += self.i.ready.eq(~spare_full)
        o_free = ~self.o.valid | self.o.ready

        with m.If(o_free):
            # The output register takes the spare first (it is older), else the input.
            with m.If(spare_full):
                m.d.sync += [self.o.payload.eq(spare), self.o.valid.eq(1), spare_full.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~spare_full):
            # The output is stalled: park the transfer that was accepted this cycle.
            m.d.sync += [spare.eq(self.i.payload), spare_full.eq(1)]
        return m
