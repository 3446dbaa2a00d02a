"""Width converters between streams of codes: ``Gather`` (narrow to wide) and ``Serialize``.

A pooled map leaves its pooling block channel fastest, one code at a time; the next
convolution wants a whole pixel (all channels) per transfer. The first ``count - 1`` codes of a
vector go into a shift register, and the last one goes with them straight into the output
register, so the shift register is free again at once: the next vector's codes are taken while
the finished one waits for its consumer, and the stream never loses a cycle. A transfer may
already carry several codes (``lanes``), when the producer computes several channels at once.

``Serialize`` goes the other way, for a linear engine that takes one code per transfer.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import arith
from . import datapath
from .datapath import CODE


class Gather(wiring.Component):
    """Groups a code stream into vectors of ``count`` codes, one code per cycle.

    Parameters
    ----------
    count : int
        Codes per output vector.
    lanes : int
        Codes per input transfer, a divisor of ``count``.

    Attributes
    ----------
    i : In(stream.Signature(datapath.code_vector(lanes)))
        Codes, ``lanes`` per transfer (the first in the low bits).
    o : Out(stream.Signature(data.ArrayLayout(signed(8), count)))
        Element ``n`` is the ``n``-th code received for this vector (element 0 in the low bits).
    """

    def __init__(self, count: int, lanes: int = 1):
        for label, value in (("count", count), ("lanes", lanes)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{label} must be an integer, not {value!r}")
            if value < 1:
                raise ValueError(f"{label} must be at least 1, not {value}")
        if count % lanes:
            raise ValueError(f"lanes ({lanes}) must divide count ({count})")
        self._count, self._lanes = count, lanes
        super().__init__({
            "i": In(stream.Signature(datapath.code_vector(lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(CODE, count))),
        })

    @property
    def count(self) -> int:
        return self._count

    def elaborate(self, platform):
        m = Module()
        n = self._count // self._lanes  # transfers per vector
        step = self._lanes * arith.WIDTH
        index = Signal(range(n))
        # Transfers 0 .. n-2 of the vector being gathered, the first in the low bits once all are in.
        earlier = Signal(unsigned((n - 1) * step))

        completes = index == n - 1
        m.d.comb += self.i.ready.eq(~completes | ~self.o.valid | self.o.ready)
        accept = self.i.valid & self.i.ready

        with m.If(accept):
            m.d.sync += index.eq(index + 1)
            if n > 1:
                # Shift in at the top: after n-1 codes the first one has reached the bottom.
                m.d.sync += earlier.eq(Cat(earlier[step:], self.i.payload))
            with m.If(completes):
                m.d.sync += index.eq(0)

        with m.If(accept & completes):
            m.d.sync += [self.o.payload.eq(Cat(earlier, self.i.payload)), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


class Serialize(wiring.Component):
    """Vectors of ``count`` codes out one code per transfer, the first (low bits) first.

    Attributes
    ----------
    i : In(stream.Signature(datapath.code_vector(count)))
    o : Out(stream.Signature(signed(8)))
    cycles_per_vector : int
        ``count``: a new vector is taken in the cycle its predecessor's last code leaves.
    """

    def __init__(self, count: int):
        if not isinstance(count, int) or isinstance(count, bool):
            raise TypeError(f"count must be an integer, not {count!r}")
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        self._count = count
        super().__init__({
            "i": In(stream.Signature(datapath.code_vector(count))),
            "o": Out(stream.Signature(CODE)),
        })

    @property
    def count(self) -> int:
        return self._count

    def elaborate(self, platform):
        m = Module()
        n = self._count
        pending = Signal(unsigned(n * arith.WIDTH))  # the vector being sent, next code in the low bits
        left = Signal(range(n + 1))  # codes of it not yet sent
        sent = self.o.valid & self.o.ready
        m.d.comb += [
            self.o.valid.eq(left != 0),
            self.o.payload.eq(pending[:arith.WIDTH]),
            self.i.ready.eq((left == 0) | ((left == 1) & self.o.ready)),
        ]
        with m.If(sent):
            m.d.sync += [pending.eq(pending[arith.WIDTH:]), left.eq(left - 1)]  # a slice: see sim/harness.py
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [pending.eq(Value.cast(self.i.payload)), left.eq(n)]
        return m
