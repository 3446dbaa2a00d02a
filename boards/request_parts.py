"""The request handler's rooms (``boards/request_handler.py``), one idea each.

``Watchdog`` counts the cycles a request has waited for the accelerator; ``ArgumentShifter``
collects a request's arguments from its payload bytes as they arrive; ``BenchTimer`` starts a
BENCH's runs back to back and counts their cycles. The handler's FSM says when each of them
runs; what each does at its ports is tested alone in ``tests/test_request_parts.py``.
"""


from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .frame_parser import PayloadByte

__all__ = ["Watchdog", "ArgumentShifter", "BenchTimer"]


class Watchdog(wiring.Component):
    """Counts the cycles spent waiting and says when there were ``limit`` of them.

    The count starts over from 0 in a cycle with ``clear`` (which wins over ``run``), goes up by
    one in a cycle with ``run`` and holds otherwise. ``expired`` is a register: it is high in
    the cycle after one in which the count stood at ``limit - 1``, so a wait that runs from a
    ``clear`` on sees it in its ``limit``-th cycle of ``run``. The count wraps after that: a
    watchdog is cleared before it is used again.

    Parameters
    ----------
    limit : int
        At least 2.

    Attributes
    ----------
    run, clear : In(1)
    expired : Out(1)
    """

    run: In(1)
    clear: In(1)
    expired: Out(1)

    def __init__(self, limit: int):
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an integer, not {limit!r}")
        if limit < 2:
            raise ValueError(f"limit must be at least 2, not {limit}")
        self._limit = limit
        super().__init__()

    @property
    def limit(self) -> int:
        return self._limit

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self._limit))
        m.d.sync += self.expired.eq(count == self._limit - 1)
        with m.If(self.clear):
            m.d.sync += count.eq(0)
        with m.Elif(self.run):
            m.d.sync += count.eq(count + 1)
        return m


class ArgumentShifter(wiring.Component):
    """A request's arguments, taken from its payload bytes as they arrive (by their index).

    LOAD_WEIGHTS' ``op`` (byte 0), ``argument`` (its offset or total, bytes 1..4), ``load_id``
    (5..8) and ``load_crc`` (9..12); IMAGE's ``offset`` (0..1), which is also BENCH's runs.
    Little-endian: each byte is shifted in from the top, so a field holds its value once its
    last byte has come (a cycle after it), whatever the frame's type. The fields keep their
    values until bytes with their indices come again.

    Attributes
    ----------
    payload : In(stream.Signature(PayloadByte, always_ready=True))
        From the parser.
    op : Out(8)
    argument, load_id, load_crc : Out(32)
    offset : Out(16)
    """

    payload: In(stream.Signature(PayloadByte, always_ready=True))
    op: Out(8)
    argument: Out(32)
    load_id: Out(32)
    load_crc: Out(32)
    offset: Out(16)

    def elaborate(self, platform):
        m = Module()
        index, byte = self.payload.payload.index, self.payload.payload.byte

        def shift(field, first: int, last: int):
            with m.If((index >= first) & (index <= last)):
                m.d.sync += field.eq(Cat(field[8:], byte))

        with m.If(self.payload.valid):
            with m.If(index == 0):
                m.d.sync += self.op.eq(byte)
            shift(self.argument, 1, 4)
            shift(self.load_id, 5, 8)
            shift(self.load_crc, 9, 12)
            shift(self.offset, 0, 1)
        return m


class BenchTimer(wiring.Component):
    """Starts a BENCH's ``runs`` one after another and counts the cycles they take.

    A run has started when the accelerator takes a start; the timer sees that as ``receiving``
    rising (a start is the only thing that opens the pixel input), one cycle after the edge that
    took it: ``run_started`` is high in that cycle. ``arm`` (one cycle, before ``active``) loads
    a new bench of ``runs`` runs. While ``active``, ``start`` asks for the next run as long as
    runs are left to start and a pixel is on ``offered`` (the first only once the accelerator
    is not ``busy``, so that no earlier image's done is counted); each ``done`` ends a run, and
    ``finished`` is high with the last one's.

    ``total`` counts the clock edges from the one that took the first run's start to the one
    that raised the last run's done, both counted, as the accelerator's ``cycles`` counts one
    image; ``first`` is that count at the first run's done. Both hold their values after the
    bench.

    Parameters
    ----------
    total_bits : int
        Width of ``total``.

    Attributes
    ----------
    runs : In(16)
    arm, active : In(1)
    busy, receiving, done, offered : In(1)
        The accelerator's, and whether a pixel is on offer to it.
    start, run_started, finished : Out(1)
    first : Out(32)
    total : Out(total_bits)
    """

    def __init__(self, total_bits: int):
        if isinstance(total_bits, bool) or not isinstance(total_bits, int) or total_bits < 1:
            raise TypeError(f"total_bits must be a positive integer, not {total_bits!r}")
        super().__init__({
            "runs": In(16),
            "arm": In(1),
            "active": In(1),
            "busy": In(1),
            "receiving": In(1),
            "done": In(1),
            "offered": In(1),
            "start": Out(1),
            "run_started": Out(1),
            "finished": Out(1),
            "first": Out(32),
            "total": Out(total_bits),
        })

    def elaborate(self, platform):
        m = Module()
        to_start = Signal(16)  # runs the accelerator has not taken a start for
        to_finish = Signal(16)  # runs whose done has not come
        started = Signal()  # the first run has started: the count runs
        was_receiving = Signal()
        m.d.sync += was_receiving.eq(self.receiving)
        m.d.comb += [self.run_started.eq(self.receiving & ~was_receiving),
                     self.finished.eq(self.done & (to_finish == 1))]
        with m.If(self.arm):
            m.d.sync += [to_start.eq(self.runs), to_finish.eq(self.runs), started.eq(0)]
        with m.If(self.active):
            m.d.comb += self.start.eq((to_start != 0) & self.offered & (started | ~self.busy))
            with m.If(self.run_started):
                m.d.sync += [to_start.eq(to_start - 1), started.eq(1)]
            with m.If(self.run_started & ~started):
                m.d.sync += self.total.eq(2)  # the edge that took the start, and this one
            with m.Elif(~self.finished):
                m.d.sync += self.total.eq(self.total + 1)
            with m.If(self.done):
                m.d.sync += to_finish.eq(to_finish - 1)
                with m.If(to_finish == self.runs):
                    m.d.sync += self.first.eq(self.total)
        return m
