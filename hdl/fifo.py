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

from ..model import arith
from . import datapath


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
    code_bits : int, optional
        For a payload of 8-bit codes that are nonnegative and fit ``code_bits`` bits (ReLU
        outputs of a narrow format): store only those bits of each, zero-extend them again.
    """

    def __init__(self, shape, depth: int, code_bits: int | None = None):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self._depth = depth
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })
        width = len(Value.cast(self.i.payload))
        if code_bits is not None and (width % arith.WIDTH or not 1 <= code_bits <= arith.WIDTH):
            raise ValueError(f"code_bits {code_bits!r} for a payload of {width} bits: 8-bit codes of 1..8 bits")
        # 8-bit codes are stored as they are.
        self._codes = None if code_bits in (None, arith.WIDTH) else (width // arith.WIDTH, code_bits)
        self._fifo = SyncFIFOBuffered(width=width if self._codes is None else width // arith.WIDTH * code_bits,
                                      depth=depth)

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def memory_bits(self) -> int:
        return self._depth * self._fifo.width

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = self._fifo
        written, read = Value.cast(self.i.payload), fifo.r_data
        if self._codes:
            count, bits = self._codes
            written = datapath.pack_codes(datapath.unpack_codes(written, count), bits)
            read = datapath.pack_codes(datapath.unpack_codes(read, count, bits))
        m.d.comb += [
            fifo.w_data.eq(written),
            fifo.w_en.eq(self.i.valid),
            self.i.ready.eq(fifo.w_rdy),
            # The output register takes the next transfer when it is empty or being emptied.
            fifo.r_en.eq(~self.o.valid | self.o.ready),
        ]
        with m.If(fifo.r_en):
            m.d.sync += [self.o.payload.eq(read), self.o.valid.eq(fifo.r_rdy)]
        return m
