"""A first-in first-out queue between two stream blocks, for a producer that must run ahead.

conv2 can only start an image once conv1 has produced five pooled rows of it. Without room in
between, conv1 is held back by conv2's back-pressure while conv2 finishes the previous image,
so conv2 then waits through the next image's warm-up: the interval between images becomes
conv2's work plus that warm-up. A queue that holds one whole pooled map lets conv1 run ahead,
and conv2 starts the next image the cycle it finishes the last one.
"""

from __future__ import annotations

from amaranth.hdl import Module, Value
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out


class StreamFIFO(wiring.Component):
    """``depth`` transfers of ``shape`` in order; block RAM for a deep queue, then a register.

    The register holds the transfer on ``o``: a block RAM's output is slow (5.8 ns of clock to
    output on an ECP5 DP16KD), so it goes straight into flip-flops and no logic follows it in the
    same cycle. It adds a cycle of latency, not of throughput: it refills while ``o`` is taken.

    Parameters
    ----------
    shape : shape-like
        Payload shape of both streams.
    depth : int
        Transfers it holds.
    """

    def __init__(self, shape, depth: int):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self._depth = depth
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })
        self._fifo = SyncFIFOBuffered(width=len(Value.cast(self.i.payload)), depth=depth)

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def memory_bits(self) -> int:
        return self._depth * self._fifo.width

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = self._fifo
        m.d.comb += [
            fifo.w_data.eq(Value.cast(self.i.payload)),
            fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
            # The output register takes the next transfer when it is empty or being emptied.
            fifo.r_en.eq(~self.o.valid | self.o.ready),
        ]
        with m.If(fifo.r_en):
            m.d.sync += [self.o.payload.eq(fifo.r_data), self.o.valid.eq(fifo.r_rdy)]
        return m
