"""The request handler's rooms (``boards/request_handler.py``), one idea each.

``Watchdog`` counts the cycles a request has waited for the accelerator; ``ArgumentShifter``
collects a request's arguments from its payload bytes as they arrive; ``RequestChecks`` says
whether a request is known, has a good length and fits; ``BenchTimer`` starts a BENCH's runs
back to back and counts their cycles. The handler's FSM says when each of them
runs; what each does at its ports is tested alone in ``tests/test_request_parts.py``.
"""


from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from . import protocol
from .frame_parser import PayloadByte
from .protocol import FrameType, LoadOp

__all__ = ["Watchdog", "ArgumentShifter", "RequestChecks", "BenchTimer"]


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


class RequestChecks(wiring.Component):
    """Every check a request needs before it is carried out, as registers that settle while its
    payload arrives (chained carry chains in one cycle were once the ULX3S build's worst path):
    each output is right three cycles after its inputs last changed.

    Parameters
    ----------
    sizes : protocol.FrameSizes
    weight_bytes : int
        Bytes of the accelerator's weight image.

    Attributes
    ----------
    type, length : In
        The frame's header fields.
    op, argument, offset, load_crc : In
        Its arguments (``ArgumentShifter``).
    loading, received : In
        A load is in progress and has covered bytes 0 .. received - 1 of the weight image.
    image_received : In
        The image buffer holds pixels 0 .. image_received - 1.
    image_crc : In(32)
        The CRC-32 of the weight bytes the accelerator took since the load's first chunk.
    known, length_ok : Out(1)
        The type is one the board serves; the length is one its type (and LOAD_WEIGHTS' op)
        allows.
    chunk_bytes, chunk_end, chunk_ok : Out
        A chunk's data bytes, the image byte after its last, and whether it fits the image and
        continues the load (or starts one at 0).
    piece_bytes, piece_end, piece_ok : Out
        Likewise for an IMAGE piece: it fits the image and starts within the pixels held.
    commit_ok : Out(1)
        A COMMIT's total and CRC-32 are the load's, and the load covered the whole image.
    image_whole : Out(1)
        The image buffer holds a whole image.
    """

    def __init__(self, sizes: protocol.FrameSizes, weight_bytes: int):
        if not isinstance(sizes, protocol.FrameSizes):
            raise TypeError(f"sizes must be a protocol.FrameSizes, not {sizes!r}")
        self._sizes, self._weight_bytes = sizes, weight_bytes
        super().__init__({
            "type": In(8),
            "length": In(16),
            "op": In(8),
            "argument": In(32),
            "offset": In(16),
            "load_crc": In(32),
            "loading": In(1),
            "received": In(range(weight_bytes + 1)),
            "image_received": In(range(sizes.pixels + 1)),
            "image_crc": In(32),
            "known": Out(1),
            "length_ok": Out(1),
            "chunk_bytes": Out(16),
            "chunk_end": Out(range(2**32 + 2**16)),
            "chunk_ok": Out(1),
            "piece_bytes": Out(16),
            "piece_end": Out(range(2**16 + 2**16)),
            "piece_ok": Out(1),
            "commit_ok": Out(1),
            "image_whole": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        sizes, size, pixels = self._sizes, self._weight_bytes, self._sizes.pixels
        kind, length, op, argument, offset = self.type, self.length, self.op, self.argument, self.offset
        is_load, is_piece, is_bench = kind == FrameType.LOAD_WEIGHTS, kind == FrameType.IMAGE, kind == FrameType.BENCH
        m.d.sync += [
            self.known.eq((kind == FrameType.PING) | (kind == FrameType.CLASSIFY) | is_load | is_piece | is_bench),
            self.length_ok.eq(
                ((kind == FrameType.PING) & (length == 0))
                | (is_bench & (length == protocol.BENCH_LENGTH))
                | ((kind == FrameType.CLASSIFY) & ((length == 0) | (length == pixels)))
                | (is_piece & (length > protocol.PIECE_HEADER_BYTES)
                   & (length <= protocol.PIECE_HEADER_BYTES + sizes.max_piece))
                | (is_load & (length != 0) & (length <= sizes.max_request)
                   & ((op != LoadOp.CHUNK) | ((length > protocol.CHUNK_HEADER_BYTES)
                                              & (length <= protocol.CHUNK_HEADER_BYTES + sizes.max_chunk)))
                   & ((op != LoadOp.COMMIT) | (length == protocol.COMMIT_LENGTH)))),
        ]
        chunk_fits, chunk_in_order = Signal(), Signal()
        piece_fits, piece_in_order = Signal(), Signal()
        m.d.sync += [
            self.chunk_bytes.eq(length - protocol.CHUNK_HEADER_BYTES),
            self.chunk_end.eq(argument + self.chunk_bytes),
            chunk_fits.eq(self.chunk_end <= size),
            chunk_in_order.eq((argument == 0) | (self.loading & (argument == self.received))),
            self.piece_bytes.eq(length - protocol.PIECE_HEADER_BYTES),
            self.piece_end.eq(offset + self.piece_bytes),
            piece_fits.eq(self.piece_end <= pixels),
            piece_in_order.eq(offset <= self.image_received),
            self.commit_ok.eq(self.loading & (self.received == size) & (argument == size)
                              & (self.load_crc == self.image_crc)),
            self.image_whole.eq(self.image_received == pixels),
        ]
        m.d.comb += [self.chunk_ok.eq(chunk_in_order & chunk_fits), self.piece_ok.eq(piece_in_order & piece_fits)]
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
