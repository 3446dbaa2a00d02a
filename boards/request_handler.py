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

The watchdog, the argument shifter, the request checks and the bench timer are components of
their own (``boards/request_parts.py``), each tested at its ports; the FSM here says when each
runs. The image buffer and its pieces stay here: they share the block RAM, its write registers
and its read port with the frame buffer and the feeding of the accelerator.
"""


from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..hdl.accelerator import AcceleratorSignature
from ..hdl.skid import SkidBuffer
from . import protocol
from .frame_parser import FrameHeader, ParseStatus, PayloadByte
from .protocol import ErrorCode, FrameType, LoadOp
from .request_parts import ArgumentShifter, BenchTimer, RequestChecks, Watchdog
from .reply_serialiser import ReplyRequest


class RequestHandler(wiring.Component):
    """Carries out the requests the ``FrameParser`` ends (see the module docstring).

    Parameters
    ----------
    accelerator : hdl.accelerator.AcceleratorSignature
        The accelerator's ports; the handler's frame sizes are its network's.
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
    accelerator : Out(AcceleratorSignature.flip())
        To the accelerator: ``pixels`` and ``weights`` each through a skid buffer, ``start`` and
        ``weights_restart``; from it ``busy``, ``receiving`` and ``done`` (its answer goes
        straight to the serialiser).
    bench_runs, bench_first, bench_total : Out
        The last BENCH's runs, the cycles of its first run and of all its runs (BENCH_RESULT).
    accelerator_reset : Out(1)
        A one-cycle pulse when the watchdog fires; resets the accelerator (and the skid buffers).
    idle : Out(1)
        No request in hand.
    """

    def __init__(self, accelerator: AcceleratorSignature, weight_bytes: int, weights_in_bitstream: bool,
                 weights_id: int, watchdog_cycles: int, weights_loadable: bool = True):
        if not isinstance(accelerator, AcceleratorSignature):
            raise TypeError(f"accelerator must be an AcceleratorSignature, not {accelerator!r}")
        network = accelerator.network
        sizes = protocol.FrameSizes(network.image_size, network.classes, network.input_channels)
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
            "accelerator": Out(accelerator.flip()),
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
        acc = self.accelerator
        m.submodules.buffer = buffer = Memory(shape=8, depth=self.buffer_depth, init=[])
        # The buffer's bytes reach the accelerator through a register: a block RAM's output is
        # slow (5.8 ns on the ECP5), and into the weight loader's logic it was the board build's
        # worst path. The watchdog's reset empties them with the accelerator.
        reset = self.accelerator_reset
        m.submodules.pixel_slice = pixel_slice = ResetInserter(reset)(SkidBuffer(8))
        m.submodules.weight_slice = weight_slice = ResetInserter(reset)(SkidBuffer(8))
        wiring.connect(m, pixel_slice.o, wiring.flipped(acc.pixels))
        wiring.connect(m, weight_slice.o, wiring.flipped(acc.weights))
        m.submodules.image_crc = image_crc = catalog.CRC32_ISO_HDLC(8).create()
        m.d.comb += [image_crc.data.eq(acc.weights.payload),
                     image_crc.valid.eq(acc.weights.valid & acc.weights.ready)]
        m.submodules.arguments = arguments = ArgumentShifter()
        wiring.connect(m, wiring.flipped(self.payload), arguments.payload)
        m.submodules.watchdog = watchdog = Watchdog(self._watchdog)
        m.submodules.bench_timer = timer = BenchTimer(self.bench_bits)
        m.d.comb += [timer.runs.eq(arguments.offset), timer.busy.eq(acc.busy), timer.receiving.eq(acc.receiving),
                     timer.done.eq(acc.done), timer.offered.eq(acc.pixels.valid),
                     self.bench_runs.eq(arguments.offset), self.bench_first.eq(timer.first),
                     self.bench_total.eq(timer.total)]

        m.submodules.checks = checks = RequestChecks(self._sizes, self._weight_bytes)
        r = _Requests(self, m, buffer, image_crc, arguments, checks, watchdog, timer)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += watchdog.clear.eq(1)
                m.d.sync += [r.answering_busy.eq(0), r.position.eq(0)]
                with m.If(self.verdict.valid):
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                r.decide()

            # CLASSIFY: stream the checked image into the accelerator, wait for its answer.
            with m.State("START"):
                r.guarded()
                m.d.comb += r.read.addr.eq(Cat(Const(0, self._area_bits), r.from_pieces))
                with m.If(~acc.busy & ~watchdog.expired):
                    m.d.comb += acc.start.eq(1)
                    m.next = "FEED"
            with m.State("FEED"):
                r.guarded()
                with m.If(r.feed(pixel_slice.i, self._sizes.pixels) & ~watchdog.expired):
                    m.next = "WAIT"
            with m.State("WAIT"):
                r.guarded()
                with m.If(acc.done & ~watchdog.expired):
                    r.reply(FrameType.RESULT)

            with m.State("BENCH"):
                r.bench(pixel_slice.i)
            with m.State("COPY"):
                r.copy()

            # LOAD_WEIGHTS chunk: (restart the image, then) stream the checked bytes into it, and
            # wait until the accelerator has taken the last one (the CRC-32 counts what it took).
            with m.State("LOAD"):
                r.guarded(load=True)
                m.d.comb += r.read.addr.eq(0)
                m.d.sync += r.restart.eq(0)  # a one-cycle pulse
                with m.If(~watchdog.expired):
                    m.next = "LOAD_FEED"
            with m.State("LOAD_FEED"):
                r.guarded(load=True)
                with m.If(r.feed(weight_slice.i, r.checks.chunk_bytes) & ~watchdog.expired):
                    m.next = "LOAD_DRAIN"
            with m.State("LOAD_DRAIN"):
                r.guarded(load=True)
                with m.If(~acc.weights.valid & ~watchdog.expired):
                    r.reply(FrameType.WEIGHTS_LOADED)

            with m.State("REPLY"):
                r.answer()

        m.d.comb += self.idle.eq(fsm.ongoing("IDLE"))
        return m


class _Requests:
    """The handler's registers and the actions of its FSM's states, for one elaboration of a
    ``RequestHandler`` into ``m`` (the closures of one ``elaborate``, given names)."""

    def __init__(self, handler: RequestHandler, m: Module, buffer, image_crc, arguments: ArgumentShifter,
                 checks: RequestChecks, watchdog: Watchdog, timer: BenchTimer):
        self.handler, self.m = handler, m
        self.arguments, self.checks, self.image_crc = arguments, checks, image_crc
        self.watchdog, self.timer = watchdog, timer
        self.write, self.read = buffer.write_port(), buffer.read_port()
        self.area = handler._area_bits
        self.pixels = handler._sizes.pixels
        self._weights_state()
        self._frame_writes()
        self._checks()

        # The reply being asked for.
        self.reply_type = Signal(8)
        self.reply_code = Signal(8)
        payload = handler.reply.payload
        m.d.comb += [payload.type.eq(self.reply_type), payload.seq.eq(handler.header.seq),
                     payload.code.eq(self.reply_code)]
        self.answering_busy = Signal()
        m.d.sync += handler.accelerator_reset.eq(0)

        self.position = Signal(range(self.pixels + 1))  # next buffer byte to feed or copy
        self.from_pieces = Signal()  # the image to classify is the one in the image buffer
        self.copy_left = Signal.like(self.checks.piece_bytes)
        self.copy_to = Signal(16)
        self.primed = Signal()  # the buffer's read port holds the byte at ``position``
        self.to_feed = Signal(16)  # BENCH runs whose pixels have not all gone into the pixel skid buffer

    def _weights_state(self):
        """Weights. A reset does not restore the memories' contents, so it must not restore the
        flag that names them either: only configuration sets it. A load in progress is
        forgotten (the loader restarts too), so it must begin again at offset 0."""
        handler, m = self.handler, self.m
        self.valid = Signal(init=handler._in_bitstream, reset_less=True)
        self.weights_id = Signal(32, init=handler._weights_id, reset_less=True)  # of the valid weights
        self.loading = Signal()  # chunks so far covered bytes 0 .. received - 1 of a new image
        self.received = Signal(range(handler._weight_bytes + 1))
        # A chunk at offset 0 starts a new image: a pulse in LOAD's first cycle, straight from this
        # flip-flop (it resets the loader's counters and the CRC-32 across the chip).
        self.restart = Signal()
        m.d.comb += [handler.accelerator.weights_restart.eq(self.restart), self.image_crc.start.eq(self.restart)]
        # image buffer bytes 0 .. image_received - 1 hold pieces
        self.image_received = Signal(range(self.pixels + 1))
        m.d.comb += [handler.weights_id.eq(self.weights_id), handler.load_received.eq(self.received),
                     handler.weights_flags.eq(Cat(self.valid, Const(handler._in_bitstream, 1), self.loading,
                                                  Const(not handler._loadable, 1))),
                     handler.image_received.eq(self.image_received)]

    def _frame_writes(self):
        """Data bytes into the frame buffer, through registers (a byte time passes before the
        next): an image from payload byte 0, a chunk after its 5-byte header, a piece after its
        offset. Any frame writes there; only a checked one is used. COPY writes the image
        buffer through the same registers."""
        m, write, payload = self.m, self.write, self.handler.payload
        skip = Signal(range(protocol.CHUNK_HEADER_BYTES + 1))
        with m.Switch(self.handler.header.type):
            with m.Case(FrameType.LOAD_WEIGHTS):
                m.d.comb += skip.eq(protocol.CHUNK_HEADER_BYTES)
            with m.Case(FrameType.IMAGE):
                m.d.comb += skip.eq(protocol.PIECE_HEADER_BYTES)
        self.write_address = Signal.like(write.addr)
        self.write_data = Signal(8)
        self.write_enable = Signal()
        index = payload.payload.index
        m.d.comb += [write.addr.eq(self.write_address), write.data.eq(self.write_data),
                     write.en.eq(self.write_enable)]
        m.d.sync += [self.write_address.eq(Cat((index - skip)[:self.area], 0)),
                     self.write_data.eq(payload.payload.byte),
                     self.write_enable.eq(payload.valid & (index >= skip))]

    def _checks(self):
        """The checks a request needs (``RequestChecks``), from the frame, its arguments and the
        weights' and the image buffer's state."""
        checks, args = self.checks, self.arguments
        self.m.d.comb += [checks.type.eq(self.handler.header.type), checks.length.eq(self.handler.header.length),
                          checks.op.eq(args.op), checks.argument.eq(args.argument), checks.offset.eq(args.offset),
                          checks.load_crc.eq(args.load_crc), checks.loading.eq(self.loading),
                          checks.received.eq(self.received), checks.image_received.eq(self.image_received),
                          checks.image_crc.eq(self.image_crc.crc)]

    def reply(self, type: FrameType, error: ErrorCode | None = None):
        self.m.d.sync += self.reply_type.eq(type)
        if error is not None:
            self.m.d.sync += self.reply_code.eq(error)
        self.m.next = "REPLY"

    def forget_weights(self):
        """The weights are not valid after this request (nor is a load in progress)."""
        self.m.d.sync += [self.valid.eq(0), self.weights_id.eq(0), self.loading.eq(0)]

    def refuse_load(self):
        """A load request the board will not carry out: the weights are not valid after it."""
        self.forget_weights()
        self.reply(FrameType.ERROR, ErrorCode.BAD_LOAD)

    def guarded(self, load: bool = False, progress=None):
        """A state that waits for the accelerator: the watchdog runs (from 0 again after
        ``progress``); when it expires, the accelerator is reset and the answer is HUNG."""
        m, watchdog = self.m, self.watchdog
        m.d.comb += watchdog.run.eq(1)
        if progress is not None:
            m.d.comb += watchdog.clear.eq(progress)
        with m.If(watchdog.expired):
            m.d.sync += self.handler.accelerator_reset.eq(1)
            if load:
                self.forget_weights()
            self.reply(FrameType.ERROR, ErrorCode.HUNG)

    def feed(self, sink, count):
        """Stream buffer bytes 0 .. count-1 into ``sink``; returns the condition under which
        the last one goes. The read port's data is the byte addressed one cycle ago: address
        the next one on a transfer, the same one otherwise."""
        m, position = self.m, self.position
        fire = sink.ready
        m.d.comb += [sink.valid.eq(1), sink.payload.eq(self.read.data),
                     self.read.addr.eq(Cat((position + fire)[:self.area], self.from_pieces))]
        with m.If(fire):
            m.d.sync += position.eq(position + 1)
        return fire & (position == count - 1)

    def decide(self):
        """A frame's verdict: its reply, or the state that carries it out."""
        m, handler, verdict = self.m, self.handler, self.handler.verdict
        kind, length = handler.header.type, handler.header.length
        runs, valid = self.arguments.offset, self.valid
        with m.If(verdict.payload == ParseStatus.TIMEOUT):
            self.reply(FrameType.ERROR, ErrorCode.TIMEOUT)
        with m.Elif(verdict.payload == ParseStatus.TOO_LONG):
            self.reply(FrameType.ERROR, ErrorCode.TOO_LONG)
        with m.Elif(verdict.payload == ParseStatus.BAD_CRC):
            self.reply(FrameType.ERROR, ErrorCode.BAD_CRC)
        with m.Elif(~self.checks.known):
            self.reply(FrameType.ERROR, ErrorCode.UNKNOWN_TYPE)
        with m.Elif(~self.checks.length_ok):
            self.reply(FrameType.ERROR, ErrorCode.BAD_LENGTH)
        with m.Elif(kind == FrameType.PING):
            self.reply(FrameType.INFO)
        with m.Elif(kind == FrameType.CLASSIFY):
            with m.If(~valid):
                self.reply(FrameType.ERROR, ErrorCode.NO_WEIGHTS)
            with m.Elif((length == 0) & ~self.checks.image_whole):
                self.reply(FrameType.ERROR, ErrorCode.BAD_IMAGE)
            with m.Else():
                m.d.sync += self.from_pieces.eq(length == 0)
                m.next = "START"
        with m.Elif(kind == FrameType.BENCH):
            with m.If(runs == 0):
                self.reply(FrameType.ERROR, ErrorCode.BAD_RUNS)
            with m.Elif(~valid):
                self.reply(FrameType.ERROR, ErrorCode.NO_WEIGHTS)
            with m.Elif(~self.checks.image_whole):
                self.reply(FrameType.ERROR, ErrorCode.BAD_IMAGE)
            with m.Else():
                m.d.comb += self.timer.arm.eq(1)
                m.d.sync += [self.to_feed.eq(runs), self.primed.eq(0)]
                m.next = "BENCH"
        with m.Elif(kind == FrameType.IMAGE):
            with m.If(self.checks.piece_ok):
                m.d.sync += [self.copy_left.eq(self.checks.piece_bytes), self.copy_to.eq(self.arguments.offset),
                             self.primed.eq(0)]
                m.next = "COPY"
            with m.Else():
                self.reply(FrameType.ERROR, ErrorCode.BAD_IMAGE)
        # LOAD_WEIGHTS (read-only weights: chosen here, not by a constant in the logic)
        if not handler._loadable:
            with m.Else():
                self.reply(FrameType.ERROR, ErrorCode.WEIGHTS_FIXED)
        else:
            self._decide_load()

    def _decide_load(self):
        m, op, argument = self.m, self.arguments.op, self.arguments.argument
        with m.Elif(self.handler.accelerator.busy):
            self.reply(FrameType.ERROR, ErrorCode.BUSY)
        with m.Elif(op == LoadOp.CHUNK):
            with m.If(self.checks.chunk_ok):
                m.d.sync += [self.restart.eq(argument == 0), self.received.eq(self.checks.chunk_end),
                             self.loading.eq(1), self.from_pieces.eq(0)]
                with m.If(argument == 0):
                    m.d.sync += [self.valid.eq(0), self.weights_id.eq(0)]
                m.next = "LOAD"
            with m.Else():
                self.refuse_load()
        with m.Elif((op == LoadOp.COMMIT) & self.checks.commit_ok):
            m.d.sync += [self.valid.eq(1), self.weights_id.eq(self.arguments.load_id), self.loading.eq(0)]
            self.reply(FrameType.WEIGHTS_LOADED)
        with m.Else():
            self.refuse_load()

    def bench(self, sink):
        """BENCH: three things at once. The image buffer streams into the pixel skid buffer
        ``runs`` times over, without a gap between runs, so the next run's first pixel is on
        offer when its start is taken; the ``BenchTimer`` starts the runs and counts the dones."""
        m, timer, acc, position = self.m, self.timer, self.handler.accelerator, self.position
        self.guarded(progress=timer.run_started | acc.done)
        m.d.comb += [timer.active.eq(1), acc.start.eq(timer.start)]
        feeding = (self.to_feed != 0) & self.primed
        fire = feeding & sink.ready
        last_pixel = position == self.pixels - 1
        after = Mux(fire, Mux(last_pixel, 0, position + 1), position)
        m.d.comb += [sink.valid.eq(feeding), sink.payload.eq(self.read.data),
                     self.read.addr.eq(Cat(after[:self.area], 1))]
        m.d.sync += [position.eq(after), self.primed.eq(1)]
        with m.If(fire & last_pixel):
            m.d.sync += self.to_feed.eq(self.to_feed - 1)
        with m.If(timer.finished & ~self.watchdog.expired):
            self.reply(FrameType.BENCH_RESULT)

    def copy(self):
        """IMAGE piece: copy the checked bytes from the frame buffer into the image buffer."""
        m, position = self.m, self.position
        m.d.comb += self.read.addr.eq(position[:self.area])
        m.d.sync += [position.eq(position + 1), self.primed.eq(1)]
        with m.If(self.primed):  # read.data is frame byte position - 1
            m.d.sync += [self.write_address.eq(Cat(self.copy_to[:self.area], 1)), self.write_data.eq(self.read.data),
                         self.write_enable.eq(1), self.copy_to.eq(self.copy_to + 1),
                         self.copy_left.eq(self.copy_left - 1)]
            with m.If(self.copy_left == 1):
                m.d.sync += self.image_received.eq(self.checks.piece_end)
                self.reply(FrameType.IMAGE_STORED)

    def answer(self):
        """REPLY: offer the reply; once taken, release the verdict."""
        m, handler = self.m, self.handler
        m.d.comb += handler.reply.valid.eq(1)
        with m.If(handler.reply.ready):
            # Bytes that came while this request was served were dropped: say so once.
            with m.If(handler.dropped & ~self.answering_busy):
                m.d.sync += [self.answering_busy.eq(1), self.reply_type.eq(FrameType.ERROR),
                             self.reply_code.eq(ErrorCode.BUSY)]
            with m.Else():
                m.d.comb += handler.verdict.ready.eq(1)
                m.next = "IDLE"
