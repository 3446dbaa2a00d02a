"""A queue at the end of a pipeline that never stalls: results reserve their place when issued.

An engine whose every register waits for "the output is free" has one enable net that reaches
thousands of flip-flops and, through the window generator, the line buffer's address: on an
ECP5 that net set the clock period. Here the pipeline runs freely instead. When the engine issues
the step that will finish a result, it reserves a slot in this queue; it issues nothing while
every slot is reserved. A reserved result arrives some cycles later and always finds room, so
back-pressure on ``o`` holds only the issue logic, never the datapath.

A result is registered on its way in: the logic that makes it (a requantizer) and the queue's
LUT RAM, which the placer may put some way off, get a cycle each.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

# Enough for a result every cycle through a pipeline of up to DEPTH - 3 stages without a gap
# (the input register, and the reservation is released the cycle the result leaves). 16 words
# fit one LUT RAM per 4 bits.
DEPTH = 16


class ResultQueue(wiring.Component):
    """Results in order; ``room`` says whether one more may be reserved.

    Parameters
    ----------
    shape : shape-like
        Payload shape of ``i`` and ``o``.
    depth : int
        Results it holds (and reservations it allows).

    Attributes
    ----------
    reserve : In(1)
        A result is issued this cycle; it will arrive on ``i`` later. Only while ``room``.
    room : Out(1)
        Fewer than ``depth`` results are reserved and not yet taken from ``o``; a register
        compare, so the issue logic that reads it stays short.
    i : In(stream.Signature(shape))
        The reserved results, when the pipeline delivers them; ``i.ready`` is always 1.
    o : Out(stream.Signature(shape))
        The results, in order; a result can leave two cycles after it came in.
    """

    def __init__(self, shape, depth: int = DEPTH):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self._depth = depth
        super().__init__({
            "reserve": In(1),
            "room": Out(1),
            "i": In(stream.Signature(shape, always_ready=True)),
            "o": Out(stream.Signature(shape)),
        })

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFO(width=len(Value.cast(self.i.payload)), depth=self._depth)
        reserved = Signal(range(self._depth + 1))  # issued and not yet taken from o
        taken = self.o.valid & self.o.ready
        m.d.sync += reserved.eq(reserved + self.reserve - taken)
        arriving, arriving_valid = Signal.like(fifo.w_data), Signal()
        m.d.sync += [arriving.eq(Value.cast(self.i.payload)), arriving_valid.eq(self.i.valid)]
        m.d.comb += [
            self.room.eq(reserved != self._depth),
            fifo.w_data.eq(arriving),
            fifo.w_en.eq(arriving_valid),
            self.o.payload.eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
        ]
        return m
