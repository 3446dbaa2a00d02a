"""Max-pooling of a channel-fastest activation stream, with one row of running maxima.

The input is one feature map per image in (row, column, channel) order, which is the order a
convolution engine produces it in. A size x size block of one channel is spread over ``size``
input rows, so the block's running maximum has to wait for the rows below: a small memory of
``(width // size) * channels`` codes keeps one running maximum per (pooled column, channel).
The first value of a block overwrites its entry, the others take the maximum with it, and the
last one (bottom-right corner) leaves as the result instead of being written back. Trailing
rows and columns that make no whole block are taken and dropped, like ``golden.maxpool``.

With ``lanes`` > 1 a transfer carries that many consecutive channels (what a convolution engine
computing several filters at once produces) and they are pooled side by side.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model import arith
from . import datapath


class MaxPool(wiring.Component):
    """``size`` x ``size`` max-pooling with stride ``size`` (signed compare), one input per cycle.

    Parameters
    ----------
    channels : int
        Codes per pixel of the input map (the fastest-varying index of the stream).
    height, width : int
        Size of the input map; the next image may follow at once.
    size : int
        Side of the pooling block, also its stride.
    lanes : int
        Channels per transfer, a divisor of ``channels``.
    code_bits : int
        Bits of each stored code: below 8 the codes are nonnegative (ReLU outputs of a narrow
        format) and the row buffer holds only their low bits.

    Attributes
    ----------
    i : In(stream.Signature(datapath.code_vector(lanes)))
        ``height * width * channels`` codes per image, order (row, column, channel), ``lanes``
        codes per transfer (the first in the low bits).
    o : Out(stream.Signature(datapath.code_vector(lanes)))
        ``(height // size) * (width // size) * channels`` codes per image, order
        (pooled row, pooled column, channel).
    memory_bits : int
        Bits of the running-maximum row buffer.
    cycles_per_image : int
        Cycles one image occupies the input: one per code, the block never stalls its producer
        unless the consumer stalls it.
    """

    def __init__(self, channels: int, height: int, width: int, size: int = 2, lanes: int = 1,
                 code_bits: int = arith.WIDTH):
        for label, value in (("channels", channels), ("height", height), ("width", width), ("size", size),
                             ("lanes", lanes)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{label} must be an integer, not {value!r}")
            if value < 1:
                raise ValueError(f"{label} must be at least 1, not {value}")
        if height < size or width < size:
            raise ValueError(f"the map ({height}x{width}) must be at least one pooling block ({size}x{size})")
        if channels % lanes:
            raise ValueError(f"lanes ({lanes}) must divide channels ({channels})")
        self._channels, self._height, self._width, self._size = channels, height, width, size
        self._lanes = lanes
        if not 1 <= code_bits <= arith.WIDTH:
            raise ValueError(f"code_bits must be 1..{arith.WIDTH}, not {code_bits!r}")
        self._code_bits = code_bits
        super().__init__({
            "i": In(stream.Signature(datapath.code_vector(lanes))),
            "o": Out(stream.Signature(datapath.code_vector(lanes))),
        })
        # Entry pooled_column * groups + group: the maxima so far of that block's lanes channels.
        self.row_memory = Memory(shape=unsigned(lanes * code_bits), depth=(width // size) * (channels // lanes),
                                 init=[])

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def height(self) -> int:
        return self._height

    @property
    def width(self) -> int:
        return self._width

    @property
    def size(self) -> int:
        return self._size

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def memory_bits(self) -> int:
        return self.row_memory.depth * self.row_memory.shape.width

    @property
    def cycles_per_image(self) -> int:
        return self._height * self._width * self._channels // self._lanes

    def elaborate(self, platform):
        m = Module()
        ch, h, w, k = self._channels // self._lanes, self._height, self._width, self._size
        m.submodules.row_memory = memory = self.row_memory
        # The read address runs one code ahead, so the entry is there when its code arrives. With
        # one channel group an entry is read the cycle after it was written: then the read must
        # be transparent (a bypass multiplexer); with more, the same entry is never that close.
        wr = memory.write_port()
        rd = memory.read_port(transparent_for=(wr,) if ch == 1 else ())

        channel = Signal(range(ch))  # channel group
        col, row = Signal(range(w)), Signal(range(h))
        dx, dy = Signal(range(k)), Signal(range(k))  # position inside the block
        base = Signal(range(memory.depth + ch))  # pooled column * channels (past the end on dropped columns)
        # base + channel of the code at the input, and of the next code to come.
        addr, next_addr = Signal.like(base), Signal.like(base)

        inside = (col < w // k * k) & (row < h // k * k)
        first = (dx == 0) & (dy == 0)
        last = (dx == k - 1) & (dy == k - 1)
        emits = inside & last
        # Only a code that completes a block needs the output register free.
        m.d.comb += self.i.ready.eq(~emits | ~self.o.valid | self.o.ready)
        accept = self.i.valid & self.i.ready

        bits = self._code_bits
        codes = [datapath.narrowed(code, bits) for code in datapath.unpack_codes(Value.cast(self.i.payload),
                                                                                 self._lanes)]
        kept = datapath.unpack_codes(rd.data, self._lanes, bits)
        maxima = [Mux(first | (code > old), code, old) for code, old in zip(codes, kept)]
        maximum = datapath.pack_codes(maxima)
        m.d.comb += [
            rd.addr.eq(next_addr),
            wr.addr.eq(addr),
            wr.data.eq(datapath.pack_codes(maxima, bits)),
            wr.en.eq(accept & inside & ~last),
        ]

        with m.If(accept & emits):
            m.d.sync += [self.o.payload.eq(maximum), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # Counters: channel fastest, then column (with dx and base), then row (with dy).
        m.d.comb += next_addr.eq(addr)
        m.d.sync += addr.eq(next_addr)
        with m.If(accept):
            m.d.comb += next_addr.eq(addr + 1)
            m.d.sync += channel.eq(channel + 1)
            with m.If(channel == ch - 1):
                m.d.comb += next_addr.eq(base)
                m.d.sync += [channel.eq(0), col.eq(col + 1), dx.eq(dx + 1)]
                with m.If(dx == k - 1):
                    m.d.comb += next_addr.eq(base + ch)
                    m.d.sync += [dx.eq(0), base.eq(base + ch)]
                with m.If(col == w - 1):
                    m.d.comb += next_addr.eq(0)
                    m.d.sync += [col.eq(0), dx.eq(0), base.eq(0), row.eq(row + 1), dy.eq(dy + 1)]
                    with m.If(dy == k - 1):
                        m.d.sync += dy.eq(0)
                    with m.If(row == h - 1):
                        m.d.sync += [row.eq(0), dy.eq(0)]
        return m
