"""The board's request handling: what the link does with each frame the parser ends.

Every verdict gets one reply, decided in this order: the parser's own (TIMEOUT, TOO_LONG for a
LEN above the largest request, BAD_CRC: with a bad CRC nothing else can be trusted), then
TYPE, then LEN, then the request's own rules. A request is carried out only after its CRC has
checked:

* PING: INFO.
* CLASSIFY with the image's pixels: the checked bytes stream from the frame buffer into the
  accelerator; RESULT when it is done. CLASSIFY without payload does the same with the image
  assembled from IMAGE pieces.
* IMAGE (a piece of an image): its checked bytes are copied into the image buffer at their
  offset. A piece may start anywhere up to the pixels held gap-free so far (so sending the
  last piece again after a lost reply is harmless), and then the board holds exactly up to its
  end. Nothing reaches the image buffer before the piece's CRC has checked.
* BENCH: the image assembled from IMAGE pieces streams into the accelerator ``runs`` times
  back to back, each run started as soon as the accelerator takes a start; BENCH_RESULT when
  the last run is done, with the cycles counted here from the first run's start to the last
  run's done (and to the first run's done).
* LOAD_WEIGHTS chunk: the checked bytes stream into the accelerator's ``weights``; the
  CRC-32 of every byte the accelerator takes since the load's first chunk is kept. COMMIT sets
  the weights valid only if the load covered the image in order, its total is the image size,
  and its CRC-32 is the one kept: a corrupted image whose chunks each had a good CRC-8 never
  becomes valid.

The weights' ``valid`` flag is set at reset iff they are in the bitstream, cleared by a chunk
at offset 0 and by any load request the board refuses, and set only by a good commit, so the
board never answers with a mix of two weight sets.

A watchdog bounds everything that waits for the accelerator (start, pixels, done, weight
bytes): after ``watchdog_cycles`` the board resets the accelerator (``accelerator_reset``; the
weight memories keep their contents), ends a load in progress (weights invalid) and answers
ERROR HUNG. A request's wait starts at its first cycle; a BENCH's starts again at each start
the accelerator takes and at each done, so it bounds every run, not the whole bench.

The frame buffer holds one frame's data (an image, a chunk or a piece) while its CRC is
checked; the image buffer holds the pieces. Both are one block RAM: the image buffer is the
upper part, at the next power of two, so an address is the byte's index and one bit.
"""


from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..hdl.skid import SkidBuffer
from . import protocol
from .frame_parser import FrameHeader, ParseStatus, PayloadByte
from .protocol import ErrorCode, FrameType, LoadOp
from .reply_serialiser import ReplyRequest


class RequestHandler(wiring.Component):
    """Carries out the requests the ``FrameParser`` ends (see the module docstring).

    Parameters
    ----------
    sizes : protocol.FrameSizes
        The network's frame sizes.
    weight_bytes : int
        Bytes of the accelerator's weight image.
    weights_in_bitstream : bool
        The weights are valid from configuration.
    weights_loadable : bool
        A load can replace them; else every LOAD_WEIGHTS is refused (``WEIGHTS_FIXED``) and the
        weights stay valid.
    weights_id : int
        INFO's weights id until the first load (0 when not in the bitstream).
    watchdog_cycles : int
        How long the board waits for the accelerator before it resets it.

    Attributes
    ----------
    header, payload, verdict, dropped : In
        From the parser.
    reply : Out(stream.Signature(ReplyRequest))
        To the serialiser.
    weights_id, weights_flags, load_received, image_received : Out
        The state the serialiser reports (``load_received``: bytes of the last or current load).
    pixels, weights : Out(stream.Signature(8))
        To the accelerator, each through a skid buffer.
    start, weights_restart : Out(1)
        To the accelerator.
    busy, receiving, done : In(1)
        From the accelerator.
    bench_runs, bench_first, bench_total : Out
        The last BENCH's runs, the cycles of its first run and of all its runs (BENCH_RESULT).
    accelerator_reset : Out(1)
        A one-cycle pulse when the watchdog fires; resets the accelerator (and the skid buffers).
    idle : Out(1)
        No request in hand.
    """

    def __init__(self, sizes: protocol.FrameSizes, weight_bytes: int, weights_in_bitstream: bool,
                 weights_id: int, watchdog_cycles: int, weights_loadable: bool = True):
        if not isinstance(sizes, protocol.FrameSizes):
            raise TypeError(f"sizes must be a protocol.FrameSizes, not {sizes!r}")
        for name, value in (("weight_bytes", weight_bytes), ("weights_id", weights_id),
                            ("watchdog_cycles", watchdog_cycles)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if not 1 <= weight_bytes < 1 << 32:
            raise ValueError(f"a weight image of {weight_bytes} bytes cannot be loaded")
        if not 0 <= weights_id < 1 << 32:
            raise ValueError(f"weights id {weights_id} does not fit u32")
        if watchdog_cycles < 2:
            raise ValueError(f"watchdog_cycles must be at least 2, not {watchdog_cycles}")
        self._sizes = sizes
        self._weight_bytes = weight_bytes
        self._in_bitstream = bool(weights_in_bitstream)
        self._loadable = bool(weights_loadable)
        if not (self._loadable or self._in_bitstream):
            raise ValueError("weights that cannot be loaded must be in the bitstream")
        self._weights_id = weights_id if weights_in_bitstream else 0
        self._watchdog = watchdog_cycles
        # The frame buffer at [0, area), the image buffer at [area, area + pixels).
        self._area_bits = protocol.frame_area_bits(sizes.pixels)
        # A bench's runs re-arm the watchdog at each start and each done (2 x runs times), so
        # it lasts less than 2 x runs x watchdog cycles: a counter this wide cannot overflow.
        self.bench_bits = (2 * protocol.MAX_BENCH_RUNS * watchdog_cycles).bit_length()
        if self.bench_bits > 8 * 8:
            raise ValueError(f"a bench of {protocol.MAX_BENCH_RUNS} runs with a watchdog of {watchdog_cycles} "
                             f"cycles could overflow BENCH_RESULT's u64 count")
        super().__init__({
            "header": In(FrameHeader),
            "payload": In(stream.Signature(PayloadByte, always_ready=True)),
            "verdict": In(stream.Signature(ParseStatus)),
            "dropped": In(1),
            "reply": Out(stream.Signature(ReplyRequest)),
            "weights_id": Out(32),
            "weights_flags": Out(8),
            "load_received": Out(32),
            "image_received": Out(16),
            "pixels": Out(stream.Signature(8)),
            "weights": Out(stream.Signature(8)),
            "start": Out(1),
            "weights_restart": Out(1),
            "busy": In(1),
            "receiving": In(1),
            "done": In(1),
            "bench_runs": Out(16),
            "bench_first": Out(32),
            "bench_total": Out(self.bench_bits),
            "accelerator_reset": Out(1),
            "idle": Out(1),
        })

    @property
    def buffer_depth(self) -> int:
        return protocol.frame_buffer_bytes(self._sizes.pixels)

    def elaborate(self, platform):
        m = Module()
        sizes, size, area = self._sizes, self._weight_bytes, self._area_bits
        pixels = sizes.pixels
        header, verdict = self.header, self.verdict

        m.submodules.buffer = buffer = Memory(shape=8, depth=self.buffer_depth, init=[])
        write, read = buffer.write_port(), buffer.read_port()
        # The buffer's bytes reach the accelerator through a register: a block RAM's output is
        # slow (5.8 ns on the ECP5), and into the weight loader's logic it was the board build's
        # worst path. The watchdog's reset empties them with the accelerator.
        reset = self.accelerator_reset
        m.submodules.pixel_slice = pixel_slice = ResetInserter(reset)(SkidBuffer(8))
        m.submodules.weight_slice = weight_slice = ResetInserter(reset)(SkidBuffer(8))
        wiring.connect(m, pixel_slice.o, wiring.flipped(self.pixels))
        wiring.connect(m, weight_slice.o, wiring.flipped(self.weights))
        m.submodules.image_crc = image_crc = catalog.CRC32_ISO_HDLC(8).create()
        m.d.comb += [image_crc.data.eq(self.weights.payload),
                     image_crc.valid.eq(self.weights.valid & self.weights.ready)]

        # Weights. A reset does not restore the memories' contents, so it must not restore the
        # flag that names them either: only configuration sets it. A load in progress is
        # forgotten (the loader restarts too), so it must begin again at offset 0.
        valid = Signal(init=self._in_bitstream, reset_less=True)
        weights_id = Signal(32, init=self._weights_id, reset_less=True)  # of the valid weights
        loading = Signal()  # chunks so far covered bytes 0 .. received - 1 of a new image
        received = Signal(range(size + 1))
        # A chunk at offset 0 starts a new image: a pulse in LOAD's first cycle, straight from this
        # flip-flop (it resets the loader's counters and the CRC-32 across the chip).
        restart = Signal()
        m.d.comb += [self.weights_restart.eq(restart), image_crc.start.eq(restart)]
        image_received = Signal(range(pixels + 1))  # image buffer bytes 0 .. image_received - 1 hold pieces
        m.d.comb += [self.weights_id.eq(weights_id), self.load_received.eq(received),
                     self.weights_flags.eq(Cat(valid, Const(self._in_bitstream, 1), loading,
                                               Const(not self._loadable, 1))),
                     self.image_received.eq(image_received)]

        # Arguments from the payload as it arrives: LOAD_WEIGHTS' op (byte 0), offset or total
        # (1..4), weights id (5..8) and CRC-32 (9..12); IMAGE's offset (0..1), which is also
        # BENCH's runs. Little-endian, shifted in from the top.
        got = self.payload.valid
        index, byte = self.payload.payload.index, self.payload.payload.byte
        op = Signal(8)
        argument = Signal(32)
        load_id = Signal(32)
        load_crc = Signal(32)
        offset = Signal(16)
        with m.If(got):
            with m.If(index == 0):
                m.d.sync += op.eq(byte)
            with m.If((index >= 1) & (index <= 4)):
                m.d.sync += argument.eq(Cat(argument[8:], byte))
            with m.If((index >= 5) & (index <= 8)):
                m.d.sync += load_id.eq(Cat(load_id[8:], byte))
            with m.If((index >= 9) & (index <= 12)):
                m.d.sync += load_crc.eq(Cat(load_crc[8:], byte))
            with m.If(index <= 1):
                m.d.sync += offset.eq(Cat(offset[8:], byte))

        # Data bytes into the frame buffer, through registers (a byte time passes before the
        # next): an image from payload byte 0, a chunk after its 5-byte header, a piece after
        # its offset. Any frame writes there; only a checked one is used.
        kind, length = header.type, header.length
        skip = Signal(range(protocol.CHUNK_HEADER_BYTES + 1))
        with m.Switch(kind):
            with m.Case(FrameType.LOAD_WEIGHTS):
                m.d.comb += skip.eq(protocol.CHUNK_HEADER_BYTES)
            with m.Case(FrameType.IMAGE):
                m.d.comb += skip.eq(protocol.PIECE_HEADER_BYTES)
        write_address = Signal.like(write.addr)
        write_data = Signal(8)
        write_enable = Signal()
        m.d.comb += [write.addr.eq(write_address), write.data.eq(write_data), write.en.eq(write_enable)]
        m.d.sync += [write_address.eq(Cat((index - skip)[:area], 0)), write_data.eq(byte),
                     write_enable.eq(got & (index >= skip))]

        # Every check a request needs, as registers that settle while the payload arrives
        # (chained carry chains in one cycle were once the ULX3S build's worst path).
        is_load, is_piece, is_bench = kind == FrameType.LOAD_WEIGHTS, kind == FrameType.IMAGE, kind == FrameType.BENCH
        known, length_ok = Signal(), Signal()
        m.d.sync += [
            known.eq((kind == FrameType.PING) | (kind == FrameType.CLASSIFY) | is_load | is_piece | is_bench),
            length_ok.eq(
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
        chunk_bytes = Signal.like(length)
        chunk_end = Signal(range(2**32 + 2**16))
        chunk_fits = Signal()
        chunk_in_order = Signal()
        piece_bytes = Signal.like(length)
        piece_end = Signal(range(2**16 + 2**16))
        piece_fits = Signal()
        piece_in_order = Signal()
        commit_ok = Signal()
        image_whole = Signal()
        m.d.sync += [
            chunk_bytes.eq(length - protocol.CHUNK_HEADER_BYTES),
            chunk_end.eq(argument + chunk_bytes),
            chunk_fits.eq(chunk_end <= size),
            chunk_in_order.eq((argument == 0) | (loading & (argument == received))),
            piece_bytes.eq(length - protocol.PIECE_HEADER_BYTES),
            piece_end.eq(offset + piece_bytes),
            piece_fits.eq(piece_end <= pixels),
            piece_in_order.eq(offset <= image_received),
            commit_ok.eq(loading & (received == size) & (argument == size) & (load_crc == image_crc.crc)),
            image_whole.eq(image_received == pixels),
        ]

        # The reply being asked for.
        reply_type = Signal(8)
        reply_code = Signal(8)
        m.d.comb += [self.reply.payload.type.eq(reply_type), self.reply.payload.seq.eq(header.seq),
                     self.reply.payload.code.eq(reply_code)]
        answering_busy = Signal()

        def reply(type: FrameType, error: ErrorCode | None = None):
            m.d.sync += reply_type.eq(type)
            if error is not None:
                m.d.sync += reply_code.eq(error)
            m.next = "REPLY"

        def refuse_load():
            """A load request the board will not carry out: the weights are not valid after it."""
            m.d.sync += [valid.eq(0), weights_id.eq(0), loading.eq(0)]
            reply(FrameType.ERROR, ErrorCode.BAD_LOAD)

        # The watchdog: cycles spent waiting for the accelerator in this request.
        watch = Signal(range(self._watchdog))
        expired = Signal()
        m.d.sync += expired.eq(watch == self._watchdog - 1)
        m.d.sync += reset.eq(0)

        def guarded(load: bool = False, progress=None):
            """A state that waits for the accelerator: the watchdog runs (from 0 again after
            ``progress``)."""
            m.d.sync += watch.eq(watch + 1)
            if progress is not None:
                with m.If(progress):
                    m.d.sync += watch.eq(0)
            with m.If(expired):
                m.d.sync += reset.eq(1)
                if load:
                    m.d.sync += [valid.eq(0), weights_id.eq(0), loading.eq(0)]
                reply(FrameType.ERROR, ErrorCode.HUNG)

        position = Signal(range(pixels + 1))  # next buffer byte to feed or copy
        from_pieces = Signal()  # the image to classify is the one in the image buffer

        def feed(sink, count):
            """Stream buffer bytes 0 .. count-1 into ``sink``; returns the condition under which
            the last one goes. The read port's data is the byte addressed one cycle ago: address
            the next one on a transfer, the same one otherwise."""
            fire = sink.ready
            m.d.comb += [sink.valid.eq(1), sink.payload.eq(read.data),
                         read.addr.eq(Cat((position + fire)[:area], from_pieces))]
            with m.If(fire):
                m.d.sync += position.eq(position + 1)
            return fire & (position == count - 1)

        copy_left = Signal.like(piece_bytes)
        copy_to = Signal(16)
        primed = Signal()  # the buffer's read port holds the byte at ``position``

        # BENCH. A run is started when the accelerator takes a start; the handler sees that
        # as ``receiving`` rising (a start is the only thing that opens the pixel input), one
        # cycle after the edge that took it.
        runs = offset
        to_feed = Signal(16)  # runs whose pixels have not all gone into the pixel skid buffer
        to_start = Signal(16)  # runs the accelerator has not taken a start for
        to_finish = Signal(16)  # runs whose done has not come
        started = Signal()  # the first run has started: the count runs
        was_receiving = Signal()
        m.d.sync += was_receiving.eq(self.receiving)
        run_started = self.receiving & ~was_receiving
        elapsed = Signal(self.bench_bits)  # edges since the first run's start, both ends counted
        first = Signal(32)  # ``elapsed`` at the first run's done: RESULT's cycles of that run
        m.d.comb += [self.bench_runs.eq(runs), self.bench_first.eq(first), self.bench_total.eq(elapsed)]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.sync += [watch.eq(0), answering_busy.eq(0), position.eq(0)]
                with m.If(verdict.valid):
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                with m.If(verdict.payload == ParseStatus.TIMEOUT):
                    reply(FrameType.ERROR, ErrorCode.TIMEOUT)
                with m.Elif(verdict.payload == ParseStatus.TOO_LONG):
                    reply(FrameType.ERROR, ErrorCode.TOO_LONG)
                with m.Elif(verdict.payload == ParseStatus.BAD_CRC):
                    reply(FrameType.ERROR, ErrorCode.BAD_CRC)
                with m.Elif(~known):
                    reply(FrameType.ERROR, ErrorCode.UNKNOWN_TYPE)
                with m.Elif(~length_ok):
                    reply(FrameType.ERROR, ErrorCode.BAD_LENGTH)
                with m.Elif(kind == FrameType.PING):
                    reply(FrameType.INFO)
                with m.Elif(kind == FrameType.CLASSIFY):
                    with m.If(~valid):
                        reply(FrameType.ERROR, ErrorCode.NO_WEIGHTS)
                    with m.Elif((length == 0) & ~image_whole):
                        reply(FrameType.ERROR, ErrorCode.BAD_IMAGE)
                    with m.Else():
                        m.d.sync += from_pieces.eq(length == 0)
                        m.next = "START"
                with m.Elif(is_bench):
                    with m.If(runs == 0):
                        reply(FrameType.ERROR, ErrorCode.BAD_RUNS)
                    with m.Elif(~valid):
                        reply(FrameType.ERROR, ErrorCode.NO_WEIGHTS)
                    with m.Elif(~image_whole):
                        reply(FrameType.ERROR, ErrorCode.BAD_IMAGE)
                    with m.Else():
                        m.d.sync += [to_feed.eq(runs), to_start.eq(runs), to_finish.eq(runs), started.eq(0),
                                     primed.eq(0)]
                        m.next = "BENCH"
                with m.Elif(is_piece):
                    with m.If(piece_in_order & piece_fits):
                        m.d.sync += [copy_left.eq(piece_bytes), copy_to.eq(offset), primed.eq(0)]
                        m.next = "COPY"
                    with m.Else():
                        reply(FrameType.ERROR, ErrorCode.BAD_IMAGE)
                # LOAD_WEIGHTS (read-only weights: chosen here, not by a constant in the logic)
                if not self._loadable:
                    with m.Else():
                        reply(FrameType.ERROR, ErrorCode.WEIGHTS_FIXED)
                else:
                    with m.Elif(self.busy):
                        reply(FrameType.ERROR, ErrorCode.BUSY)
                    with m.Elif(op == LoadOp.CHUNK):
                        with m.If(chunk_in_order & chunk_fits):
                            m.d.sync += [restart.eq(argument == 0), received.eq(chunk_end), loading.eq(1),
                                         from_pieces.eq(0)]
                            with m.If(argument == 0):
                                m.d.sync += [valid.eq(0), weights_id.eq(0)]
                            m.next = "LOAD"
                        with m.Else():
                            refuse_load()
                    with m.Elif((op == LoadOp.COMMIT) & commit_ok):
                        m.d.sync += [valid.eq(1), weights_id.eq(load_id), loading.eq(0)]
                        reply(FrameType.WEIGHTS_LOADED)
                    with m.Else():
                        refuse_load()

            # CLASSIFY: stream the checked image into the accelerator, wait for its answer.
            with m.State("START"):
                guarded()
                m.d.comb += read.addr.eq(Cat(Const(0, area), from_pieces))
                with m.If(~self.busy & ~expired):
                    m.d.comb += self.start.eq(1)
                    m.next = "FEED"
            with m.State("FEED"):
                guarded()
                with m.If(feed(pixel_slice.i, pixels) & ~expired):
                    m.next = "WAIT"
            with m.State("WAIT"):
                guarded()
                with m.If(self.done & ~expired):
                    reply(FrameType.RESULT)

            # BENCH: three things at once. The image buffer streams into the pixel skid buffer
            # ``runs`` times over, without a gap between runs, so the next run's first pixel is
            # on offer when its start is taken; ``start`` is held while runs are left to start
            # (the first only once the accelerator is idle, so that no earlier image's done is
            # counted); the dones are counted down.
            with m.State("BENCH"):
                guarded(progress=run_started | self.done)
                feeding = (to_feed != 0) & primed
                fire = feeding & pixel_slice.i.ready
                last_pixel = position == pixels - 1
                after = Mux(fire, Mux(last_pixel, 0, position + 1), position)
                m.d.comb += [pixel_slice.i.valid.eq(feeding), pixel_slice.i.payload.eq(read.data),
                             read.addr.eq(Cat(after[:area], 1))]
                m.d.sync += [position.eq(after), primed.eq(1)]
                with m.If(fire & last_pixel):
                    m.d.sync += to_feed.eq(to_feed - 1)

                m.d.comb += self.start.eq((to_start != 0) & self.pixels.valid & (started | ~self.busy))
                with m.If(run_started):
                    m.d.sync += [to_start.eq(to_start - 1), started.eq(1)]

                finished = self.done & (to_finish == 1)
                with m.If(run_started & ~started):
                    m.d.sync += elapsed.eq(2)  # the edge that took the start, and this one
                with m.Elif(~finished):
                    m.d.sync += elapsed.eq(elapsed + 1)
                with m.If(self.done):
                    m.d.sync += to_finish.eq(to_finish - 1)
                    with m.If(to_finish == runs):
                        m.d.sync += first.eq(elapsed)
                with m.If(finished & ~expired):
                    reply(FrameType.BENCH_RESULT)

            # IMAGE piece: copy the checked bytes from the frame buffer into the image buffer.
            with m.State("COPY"):
                m.d.comb += read.addr.eq(position[:area])
                m.d.sync += [position.eq(position + 1), primed.eq(1)]
                with m.If(primed):  # read.data is frame byte position - 1
                    m.d.sync += [write_address.eq(Cat(copy_to[:area], 1)), write_data.eq(read.data),
                                 write_enable.eq(1), copy_to.eq(copy_to + 1), copy_left.eq(copy_left - 1)]
                    with m.If(copy_left == 1):
                        m.d.sync += image_received.eq(piece_end)
                        reply(FrameType.IMAGE_STORED)

            # LOAD_WEIGHTS chunk: (restart the image, then) stream the checked bytes into it, and
            # wait until the accelerator has taken the last one (the CRC-32 counts what it took).
            with m.State("LOAD"):
                guarded(load=True)
                m.d.comb += read.addr.eq(0)
                m.d.sync += restart.eq(0)  # a one-cycle pulse
                with m.If(~expired):
                    m.next = "LOAD_FEED"
            with m.State("LOAD_FEED"):
                guarded(load=True)
                with m.If(feed(weight_slice.i, chunk_bytes) & ~expired):
                    m.next = "LOAD_DRAIN"
            with m.State("LOAD_DRAIN"):
                guarded(load=True)
                with m.If(~self.weights.valid & ~expired):
                    reply(FrameType.WEIGHTS_LOADED)

            with m.State("REPLY"):
                m.d.comb += self.reply.valid.eq(1)
                with m.If(self.reply.ready):
                    # Bytes that came while this request was served were dropped: say so once.
                    with m.If(self.dropped & ~answering_busy):
                        m.d.sync += [answering_busy.eq(1), reply_type.eq(FrameType.ERROR),
                                     reply_code.eq(ErrorCode.BUSY)]
                    with m.Else():
                        m.d.comb += verdict.ready.eq(1)
                        m.next = "IDLE"

        m.d.comb += self.idle.eq(fsm.ongoing("IDLE"))
        return m
