"""Sliding KxK windows over a pixel stream: a line buffer, a shift window and an output snapshot.

Pixels arrive one vector (all channels of one pixel) per cycle in raster order. A block RAM of
``size`` words keeps, for every column, the last K-1 rows of that column; with the new pixel it
gives the K-tall column that enters a shift register of the K-1 previous columns. Whenever a
pixel completes a valid window, the whole KxK x channels window is copied into an output
register, so the shift register keeps taking pixels (the row starts that complete no window
included) while the consumer works on the copy.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model import arith
from .datapath import CODE, narrowed, pack_codes, unpack_codes


def pixel_layout(channels: int) -> data.ArrayLayout:
    """One pixel of a feature map: element c is channel c (channel 0 in the low bits)."""
    return data.ArrayLayout(CODE, channels)


def window_layout(channels: int, kernel: int) -> data.ArrayLayout:
    """One window: element [c][ky * kernel + kx] is channel c at (row0 + ky, col0 + kx)."""
    return data.ArrayLayout(data.ArrayLayout(CODE, kernel * kernel), channels)


class WindowGenerator(wiring.Component):
    """Every valid KxK window of a square feature map, in raster order of its top-left corner.

    Parameters
    ----------
    channels : int
        Codes per pixel vector.
    size : int
        Side of the square input map; ``size * size`` pixels make an image, and the next image
        may follow at once.
    kernel : int
        Side K of the window.
    code_bits : int
        Bits of each stored code: below 8, the codes are nonnegative (ReLU outputs of a narrow
        format, ``Fixed.stored_bits``) and the line buffer holds only their low bits.
    registered_ready : bool
        Take a pixel that completes a window only while the snapshot is empty (not also in the
        cycle the consumer takes it), and load the snapshot a cycle later, from the history
        columns that have moved on by one and one more column kept for this. The snapshot's
        load enable, which fans out to every bit of the window, is then a flip-flop: neither
        the consumer's handshake nor the producer's ``valid`` reaches it (they set a large
        design's Fmax). The price is two cycles per window while the consumer waits for
        windows, so it suits a consumer that takes a window every few cycles at most.

    Attributes
    ----------
    i : In(stream.Signature(pixel_layout(channels)))
        Pixel vectors in raster order (row, column).
    o : Out(stream.Signature(window_layout(channels, kernel)))
        One window per valid position, ``(size - K + 1) ** 2`` per image.
    memory_bits : int
        Bits of the line buffer.
    """

    def __init__(self, channels: int, size: int, kernel: int = 5, registered_ready: bool = False,
                 code_bits: int = arith.WIDTH):
        for label, value in (("channels", channels), ("size", size), ("kernel", kernel)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{label} must be an integer, not {value!r}")
        if channels < 1:
            raise ValueError(f"channels must be at least 1, not {channels}")
        if kernel < 2:
            raise ValueError(f"kernel must be at least 2, not {kernel}")
        if size < kernel:
            raise ValueError(f"size ({size}) must be at least the kernel ({kernel})")
        if not 1 <= code_bits <= arith.WIDTH:
            raise ValueError(f"code_bits must be 1..{arith.WIDTH}, not {code_bits!r}")
        self._channels, self._size, self._kernel = channels, size, kernel
        self._registered_ready = bool(registered_ready)
        self._code_bits = code_bits
        super().__init__({
            "i": In(stream.Signature(pixel_layout(channels))),
            "o": Out(stream.Signature(window_layout(channels, kernel))),
        })
        # Word of column x: rows row-K+1 .. row-1 at x (oldest in the low bits), each `channels` codes.
        self.line_memory = Memory(shape=unsigned((kernel - 1) * channels * code_bits), depth=size, init=[])
        self._line_read = self.line_memory.read_port()
        self._line_write = self.line_memory.write_port()

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def size(self) -> int:
        return self._size

    @property
    def kernel(self) -> int:
        return self._kernel

    @property
    def memory_bits(self) -> int:
        return self._size * (self._kernel - 1) * self._channels * self._code_bits

    def elaborate(self, platform):
        m = Module()
        k, ch, size = self._kernel, self._channels, self._size
        m.submodules.line_memory = self.line_memory
        rd, wr = self._line_read, self._line_write

        row = Signal(range(size))
        col = Signal(range(size))
        next_col = Signal(range(size))
        next_row = Signal(range(size))
        m.d.comb += [next_col.eq(wrap_increment(col, size)), next_row.eq(wrap_increment(row, size))]

        # row >= K-1 and col >= K-1 kept as flip-flops beside the counters: "the next pixel
        # completes a window" then starts from registers, not comparators, on its way to the
        # load enables of the whole window (a large design's worst path).
        row_full, col_full = Signal(), Signal()
        completes = row_full & col_full
        # A pixel that completes a window needs the snapshot register free (or, unless
        # registered_ready, freed this cycle); registered_ready loads it a cycle late (``load``).
        load = Signal()
        free = ~self.o.valid & ~load if self._registered_ready else ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(~completes | free)
        accept = self.i.valid & self.i.ready

        # The read data must be the current column's word when its pixel arrives. The address
        # is a register one column ahead and the read happens only when a pixel is taken, so
        # the handshake reaches the line buffer only as its output register's enable (an
        # address that depended on it crossed the whole LUT RAM and set Fmax).
        ahead = Signal(range(size), init=1)
        m.d.comb += [rd.addr.eq(ahead), rd.en.eq(accept)]
        # Narrow codes are cut to their stored bits here too, so the columns after it shrink.
        pixel = [narrowed(code, self._code_bits) for code in unpack_codes(self.i.payload.as_value(), ch)]
        bits = self._code_bits
        older = unpack_codes(rd.data, (k - 1) * ch, bits)  # [ky * ch + c], ky = 0 the oldest row
        m.d.comb += [
            wr.addr.eq(col),
            wr.en.eq(accept),
            wr.data.eq(Cat(rd.data[ch * bits:], pack_codes(pixel, bits))),
        ]

        # The newest column: codes [c * k + ky].
        column = pack_codes([older[ky * ch + c] if ky < k - 1 else pixel[c] for c in range(ch) for ky in range(k)])
        # The K-1 columns before it, oldest first.
        history = [Signal(unsigned(k * ch * arith.WIDTH), name=f"column{kx}") for kx in range(k - 1)]

        def window_of(columns):  # K columns, oldest first -> the window layout
            codes = [unpack_codes(v, k * ch) for v in columns]
            return pack_codes([codes[kx][c * k + ky] for c in range(ch) for ky in range(k) for kx in range(k)])

        with m.If(accept):
            m.d.sync += [history[kx].eq(history[kx + 1]) for kx in range(k - 2)]
            m.d.sync += history[k - 2].eq(column)
            m.d.sync += [col.eq(next_col), col_full.eq(next_col >= k - 1), ahead.eq(wrap_increment(ahead, size))]
            with m.If(col == size - 1):
                m.d.sync += [row.eq(next_row), row_full.eq(next_row >= k - 1)]

        if self._registered_ready:
            # A cycle after the pixel: its column is history[k - 2] now, and the window's first
            # column has moved out of the history into ``oldest``.
            oldest = Signal(unsigned(k * ch * arith.WIDTH), name="column_oldest")
            with m.If(accept):
                m.d.sync += oldest.eq(history[0])
            m.d.sync += load.eq(accept & completes)
            taken, window = load, window_of([oldest, *history])
        else:
            taken, window = accept & completes, window_of([*history, column])
        with m.If(taken):
            m.d.sync += [self.o.payload.eq(window), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


def wrap_increment(counter: Signal, modulo: int):
    """``(counter + 1) % modulo`` without a divider."""
    return Mux(counter == modulo - 1, 0, counter + 1)
