"""The board side of the host protocol: a UART, a frame parser and the accelerator behind it.

    rx -> UARTReceiver -> parser (SYNC TYPE LEN_LO LEN_HI PAYLOAD CRC) -> image buffer
                                                   |                          |
    tx <- UARTTransmitter <- reply serialiser <- verdict            pixels -> accelerator

The parser takes every received byte the cycle it arrives and checks the CRC-8 byte by byte,
with the polynomial from ``protocol``. A CLASSIFY payload goes into a 784-byte buffer; only when
its CRC has checked is the buffer streamed into the accelerator, so a corrupted image is never
classified. Every complete request gets one reply: INFO, RESULT, or ERROR with the reason (bad
CRC, wrong LEN for the type, unknown type; a frame that stops arriving for ``timeout_cycles``
gets ERROR TIMEOUT). After any reply the parser hunts for SYNC again, so the board stays
usable whatever the line carried.

The protocol is request/reply: bytes that arrive while the link serves a request (after the
request's CRC byte, until its reply's last bit) are dropped, and the link then sends one extra
ERROR BUSY so the host knows.

Weight loading: a LOAD_WEIGHTS chunk is buffered in the same 784-byte buffer as an image and
checked (CRC, LEN, offset) before any byte of it reaches the accelerator's ``weights`` stream,
so a corrupted chunk writes nothing and may be sent again. The link keeps a ``valid`` flag:
set at reset iff the accelerator's ``weights_in_bitstream``, cleared by a chunk at offset 0
(which also pulses ``weights_restart``) and by any load request it refuses, set only by a
commit whose total equals the image size after chunks that covered the image in order without
gaps. CLASSIFY while not valid gets ERROR NO_WEIGHTS, so the board never answers with a mix of
two weight sets.
"""

from contextlib import contextmanager

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..hdl.accelerator import Accelerator
from ..hdl.skid import SkidBuffer
from . import protocol
from .protocol import ErrorCode, FrameType
from .uart import FRAME_BITS, UARTReceiver, UARTTransmitter, check_divisor



def _crc8_taps() -> list[list[int]]:
    """For each bit of the next CRC, the bits of ``crc ^ byte`` it is the XOR of.

    CRC-8 is linear over GF(2), so one byte's eight shift-and-XOR steps are run here on symbols
    (a bit is the set of input bits it XORs) instead of being unrolled into nested Muxes, which
    would grow threefold per step.
    """
    bits = [{k} for k in range(8)]  # bit k of the register, as a set of input bit indices
    for _ in range(8):
        msb = bits[7]
        bits = [set()] + bits[:7]
        bits = [b ^ msb if protocol.CRC_POLY >> k & 1 else b for k, b in enumerate(bits)]
    return [sorted(b) for b in bits]


_CRC8_TAPS = _crc8_taps()


def crc8_next(crc: Value, byte: Value) -> Value:
    """``protocol.crc8`` over one more byte, as logic: one XOR tree per CRC bit."""
    x = crc ^ byte
    return Cat(*(Cat(*(x[k] for k in taps)).xor() for taps in _CRC8_TAPS))


class UARTLink(wiring.Component):
    """A LeNet accelerator served over a serial line with the ``protocol`` frames.

    Parameters
    ----------
    accelerator : wiring.Component
        A ``LeNetAccelerator`` (or anything with its ports, ``hdl.lenet.accelerator_ports``,
        and its ``weight_image()`` and ``weights_in_bitstream``). It becomes a submodule.
    divisor : int
        Clock cycles per UART bit (``uart.divisor_for``).
    timeout_cycles : int
        An incomplete frame is dropped (with ERROR TIMEOUT) when no byte came for this many
        cycles; at least two byte times (``20 * divisor``).
    weights_id : int
        ``protocol.weights_id`` of the weights in the bitstream, reported in INFO until a load
        (0: not given; ignored when the accelerator has no weights in its bitstream).

    Attributes
    ----------
    rx : In(1)
        Serial line from the host, idle high.
    tx : Out(1)
        Serial line to the host, idle high.
    info : protocol.BoardInfo
        The INFO payload this link answers PING with after reset.
    image_bytes : int
        Bytes of the accelerator's weight image (what a load must send).
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)

    def __init__(self, accelerator, divisor: int, timeout_cycles: int, *, weights_id: int = 0):
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"accelerator must be an hdl.accelerator.Accelerator, not {type(accelerator).__name__}")
        network = accelerator.network
        if (network.image_size, network.classes) != (protocol.IMAGE_SIZE, protocol.N_CLASSES):
            raise ValueError(f"protocol version {protocol.VERSION} carries {protocol.IMAGE_SIZE}x{protocol.IMAGE_SIZE} "
                             f"images and {protocol.N_CLASSES} logits; the network {network.spec} has "
                             f"{network.image_size}x{network.image_size} and {network.classes}")
        self._divisor = check_divisor(divisor)
        if not isinstance(timeout_cycles, int) or isinstance(timeout_cycles, bool):
            raise TypeError(f"timeout_cycles must be an integer, not {timeout_cycles!r}")
        if timeout_cycles < 2 * FRAME_BITS * divisor:
            raise ValueError(f"timeout_cycles must cover two byte times ({2 * FRAME_BITS * divisor} cycles "
                             f"at {divisor} cycles per bit), not {timeout_cycles}")
        logit_bits = accelerator.logits.shape().elem_shape.width
        if logit_bits > 8 * protocol.LOGIT_BYTES or len(accelerator.cycles) > 32:
            raise ValueError(f"{logit_bits}-bit logits or a {len(accelerator.cycles)}-bit cycle counter "
                             f"do not fit the RESULT frame (32 bits each)")
        config = accelerator.config
        self.accelerator = accelerator
        self._timeout = timeout_cycles
        self.image_bytes = len(accelerator.weight_image())
        if not 1 <= self.image_bytes < 1 << 32:
            raise ValueError(f"a weight image of {self.image_bytes} bytes cannot be loaded")
        in_bitstream = accelerator.weights_in_bitstream
        lanes = config.lanes if config.design == "compact" else config.lanes_of(0, len(network.linear_layers))
        self.info = protocol.BoardInfo(protocol.VERSION, config.arithmetic, lanes, logit_bits,
                                       weights_id if in_bitstream else 0, in_bitstream, in_bitstream,
                                       self.image_bytes)
        self._info_bytes = self.info.encode()
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor

    @property
    def timeout_cycles(self) -> int:
        return self._timeout

    def elaborate(self, platform):
        m = Module()
        acc = self.accelerator
        m.submodules.receiver = receiver = UARTReceiver(self._divisor)
        m.submodules.transmitter = transmitter = UARTTransmitter(self._divisor)
        m.submodules.accelerator = acc
        # The checked payload of a CLASSIFY (an image) or of a LOAD_WEIGHTS chunk.
        m.submodules.image = image = Memory(shape=8, depth=protocol.MAX_CHUNK, init=[])
        write, read = image.write_port(), image.read_port()
        # The buffer's bytes reach the accelerator through a register: a block RAM's output is
        # slow (5.8 ns on the ECP5), and into the weight loader's logic it was the board build's
        # worst path.
        m.submodules.pixel_slice = pixel_slice = SkidBuffer(8)
        m.submodules.weight_slice = weight_slice = SkidBuffer(8)
        wiring.connect(m, pixel_slice.o, acc.pixels)
        wiring.connect(m, weight_slice.o, acc.weights)

        m.d.comb += [receiver.rx.eq(self.rx), self.tx.eq(transmitter.tx)]
        # Every byte is taken the cycle it arrives (parsed or dropped): the receiver never overruns.
        m.d.comb += receiver.o.ready.eq(1)
        got, byte = receiver.o.valid, receiver.o.payload

        # Request being parsed.
        kind = Signal(8)
        length = Signal(16)
        count = Signal(16)
        crc = Signal(8)
        idle = Signal(range(self._timeout))  # cycles since the last byte of an incomplete frame
        timed_out = idle == self._timeout - 1
        # LOAD_WEIGHTS arguments: payload byte 0, bytes 1..4 (offset or total), bytes 5..8 (id).
        op = Signal(8)
        argument = Signal(32)
        load_id = Signal(32)
        # Weights. A reset does not restore the memories' contents, so it must not restore the
        # flag that names them either: only configuration sets it. A load in progress is
        # forgotten (the loader restarts too), so it must begin again at offset 0.
        size = self.image_bytes
        valid = Signal(init=self.info.weights_valid, reset_less=True)
        weights_id = Signal(32, init=self.info.weights_id, reset_less=True)  # of the valid weights
        loading = Signal()  # chunks so far covered bytes 0 .. received - 1 of a new image
        received = Signal(range(size + 1))
        restart = Signal()  # the chunk being fed starts a new image
        # Reply being sent.
        reply_kind = Signal(8)
        reply_length = Signal(range(protocol.MAX_PAYLOAD + 1))
        code = Signal(8)
        sent = Signal(range(protocol.MAX_PAYLOAD + protocol.OVERHEAD_BYTES + 1))
        reply_crc = Signal(8)
        # The reply byte is a register one cycle behind ``sent`` (the byte mux and the CRC after
        # it were one path, the board build's worst); it is offered only once it has settled.
        reply_byte = Signal(8)
        byte_settled = Signal()
        dropped = Signal()  # bytes came while serving a request
        answering_busy = Signal()
        pixel = Signal(range(protocol.MAX_CHUNK))  # next buffer byte to feed
        drop = Signal()
        with m.If(drop):
            m.d.sync += dropped.eq(1)

        def reply(kind: FrameType, error: ErrorCode | None = None):
            m.d.sync += [reply_kind.eq(kind), reply_length.eq(protocol.REPLY_LENGTHS[kind]), sent.eq(0),
                         reply_crc.eq(protocol.CRC_INIT), byte_settled.eq(0)]
            if error is not None:
                m.d.sync += code.eq(error)
            m.next = "REPLY"

        def refuse_load():
            """A load request the board will not carry out: the weights are not valid after it."""
            m.d.sync += [valid.eq(0), weights_id.eq(0), loading.eq(0)]
            reply(FrameType.ERROR, ErrorCode.BAD_LOAD)

        @contextmanager
        def feed(sink, count):
            """Stream buffer bytes 0 .. count-1 into ``sink``; the body runs as the last one goes.
            The read port's data is the byte addressed one cycle ago: address the next one on a
            transfer, the same one otherwise."""
            fire = sink.ready
            m.d.comb += [sink.valid.eq(1), sink.payload.eq(read.data), read.addr.eq(pixel + fire)]
            with m.If(fire):
                m.d.sync += pixel.eq(pixel + 1)
                with m.If(pixel == count - 1):
                    yield

        def frame_byte(next_state: str, *actions):
            """A parser state: on a byte update the CRC and move on; on a long gap, time out."""
            with m.If(got):
                m.d.sync += [crc.eq(crc8_next(crc, byte)), idle.eq(0), *actions]
                m.next = next_state
            with m.Elif(timed_out):
                reply(FrameType.ERROR, ErrorCode.TIMEOUT)
            with m.Else():
                m.d.sync += idle.eq(idle + 1)

        is_load = kind == FrameType.LOAD_WEIGHTS
        # A chunk's size, where it would end and whether that fits follow length and offset a
        # few registers behind: all settle long before the CRC byte comes, and the three chained
        # carry chains in one cycle were the board design's worst path.
        chunk_bytes = Signal.like(length)
        chunk_end = Signal(range(2 ** 32 + 2 ** 16))
        chunk_fits = Signal()
        m.d.sync += [chunk_bytes.eq(length - protocol.CHUNK_HEADER_BYTES),
                     chunk_end.eq(argument + chunk_bytes), chunk_fits.eq(chunk_end <= size)]
        with m.FSM() as fsm:
            with m.State("HUNT"):
                with m.If(got & (byte == protocol.SYNC)):
                    m.d.sync += [crc.eq(protocol.CRC_INIT), idle.eq(0)]
                    m.next = "TYPE"
            with m.State("TYPE"):
                frame_byte("LEN_LO", kind.eq(byte))
            with m.State("LEN_LO"):
                frame_byte("LEN_HI", length[:8].eq(byte))
            with m.State("LEN_HI"):
                frame_byte("PAYLOAD", length[8:].eq(byte), count.eq(0))
                with m.If(got & (byte == 0) & (length[:8] == 0)):
                    m.next = "CHECK"
            with m.State("PAYLOAD"):
                # Into the buffer: a CLASSIFY's pixels, a LOAD_WEIGHTS' bytes after its header.
                image_frame = (kind == FrameType.CLASSIFY) & (length == protocol.IMAGE_BYTES)
                chunk_frame = is_load & (count >= protocol.CHUNK_HEADER_BYTES) & (
                    length <= protocol.CHUNK_HEADER_BYTES + protocol.MAX_CHUNK)
                m.d.comb += [write.addr.eq(Mux(is_load, count - protocol.CHUNK_HEADER_BYTES, count)),
                             write.data.eq(byte), write.en.eq(got & (image_frame | chunk_frame))]
                frame_byte("PAYLOAD", count.eq(count + 1))
                with m.If(got):
                    with m.If(count == 0):
                        m.d.sync += op.eq(byte)
                    # Little-endian u32s shifted in from the top.
                    with m.If((count >= 1) & (count <= 4)):
                        m.d.sync += argument.eq(Cat(argument[8:], byte))
                    with m.If((count >= 5) & (count <= 8)):
                        m.d.sync += load_id.eq(Cat(load_id[8:], byte))
                    with m.If(count == length - 1):
                        m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(got):
                    known = Const(0)
                    length_ok = Const(0)
                    for request, request_length in protocol.REQUEST_LENGTHS.items():
                        known |= kind == request
                        length_ok |= (kind == request) & (length == request_length)
                    known |= is_load
                    length_ok |= is_load & (length != 0) & (
                        (op != protocol.LoadOp.CHUNK) | ((length > protocol.CHUNK_HEADER_BYTES) & (
                            length <= protocol.CHUNK_HEADER_BYTES + protocol.MAX_CHUNK))) & (
                        (op != protocol.LoadOp.COMMIT) | (length == protocol.COMMIT_LENGTH))
                    with m.If(byte != crc):
                        reply(FrameType.ERROR, ErrorCode.BAD_CRC)
                    with m.Elif(~known):
                        reply(FrameType.ERROR, ErrorCode.UNKNOWN_TYPE)
                    with m.Elif(~length_ok):
                        reply(FrameType.ERROR, ErrorCode.BAD_LENGTH)
                    with m.Elif(kind == FrameType.PING):
                        reply(FrameType.INFO)
                    with m.Elif(kind == FrameType.CLASSIFY):
                        with m.If(valid):
                            m.next = "START"
                        with m.Else():
                            reply(FrameType.ERROR, ErrorCode.NO_WEIGHTS)
                    with m.Elif(acc.busy):  # a load request: no weight may change under an image
                        reply(FrameType.ERROR, ErrorCode.BUSY)
                    with m.Elif(op == protocol.LoadOp.CHUNK):
                        fresh = argument == 0
                        in_order = fresh | (loading & (argument == received))
                        with m.If(in_order & chunk_fits):
                            m.d.sync += [valid.eq(0), weights_id.eq(0), loading.eq(1), restart.eq(fresh),
                                         received.eq(chunk_end)]
                            m.next = "LOAD"
                        with m.Else():
                            refuse_load()
                    with m.Elif(op == protocol.LoadOp.COMMIT):
                        with m.If(loading & (received == size) & (argument == size)):
                            m.d.sync += [valid.eq(1), weights_id.eq(load_id), loading.eq(0)]
                            reply(FrameType.WEIGHTS_LOADED)
                        with m.Else():
                            refuse_load()
                    with m.Else():
                        refuse_load()
                with m.Elif(timed_out):
                    reply(FrameType.ERROR, ErrorCode.TIMEOUT)
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)

            # CLASSIFY: stream the checked image into the accelerator, wait for its answer.
            with m.State("START"):
                m.d.comb += read.addr.eq(0)
                with m.If(~acc.busy):
                    m.d.comb += acc.start.eq(1)
                    m.d.sync += pixel.eq(0)
                    m.next = "FEED"
            with m.State("FEED"):
                with feed(pixel_slice.i, protocol.IMAGE_BYTES):
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(acc.done):
                    reply(FrameType.RESULT)

            # LOAD_WEIGHTS chunk: (restart the image, then) stream the checked bytes into it.
            with m.State("LOAD"):
                m.d.comb += [read.addr.eq(0), acc.weights_restart.eq(restart)]
                m.d.sync += pixel.eq(0)
                m.next = "LOAD_FEED"
            with m.State("LOAD_FEED"):
                with feed(weight_slice.i, chunk_bytes):
                    reply(FrameType.WEIGHTS_LOADED)

            with m.State("REPLY"):
                m.d.comb += transmitter.i.valid.eq(byte_settled)
                m.d.sync += byte_settled.eq(1)
                with m.If(transmitter.i.valid & transmitter.i.ready):
                    m.d.sync += [sent.eq(sent + 1), byte_settled.eq(0)]
                    with m.If((sent != 0) & (sent != reply_length + protocol.HEADER_BYTES)):
                        m.d.sync += reply_crc.eq(crc8_next(reply_crc, transmitter.i.payload))
                    with m.If(sent == reply_length + protocol.HEADER_BYTES):  # the CRC byte went
                        with m.If((dropped | drop) & ~answering_busy):
                            m.d.sync += [dropped.eq(0), answering_busy.eq(1)]
                            reply(FrameType.ERROR, ErrorCode.BUSY)
                        with m.Else():
                            m.d.sync += [dropped.eq(0), answering_busy.eq(0)]
                            m.next = "HUNT"

        # Bytes that arrive while a request is served are dropped; the BUSY reply that says so
        # does not itself count them, so one request gets at most one BUSY.
        serving = (fsm.ongoing("START") | fsm.ongoing("FEED") | fsm.ongoing("WAIT") | fsm.ongoing("LOAD")
                   | fsm.ongoing("LOAD_FEED") | fsm.ongoing("REPLY"))
        m.d.comb += drop.eq(got & serving & ~answering_busy)
        self._serialise(m, reply_byte, reply_kind, reply_length, code, sent, reply_crc, valid, weights_id, received)
        m.d.sync += transmitter.i.payload.eq(reply_byte)
        return m

    def _serialise(self, m, out, reply_kind, reply_length, code, sent, reply_crc, valid, weights_id, received):
        """Byte ``sent`` of the reply frame onto ``out``: header, payload, CRC."""
        acc = self.accelerator
        klass = Signal(8)
        logits = [Signal(signed(8 * protocol.LOGIT_BYTES), name=f"logit{j}") for j in range(len(acc.logits))]
        cycles = Signal(32)
        m.d.comb += [klass.eq(acc.klass), cycles.eq(acc.cycles)]
        m.d.comb += [logit.eq(acc.logits[j]) for j, logit in enumerate(logits)]  # sign-extends
        # Payloads as byte vectors, behind HEADER_BYTES of padding so that ``sent`` indexes them.
        pad = Const(0, 8 * protocol.HEADER_BYTES)
        result = Cat(pad, klass, *logits, cycles)
        info_bytes = self._info_bytes
        flags = Cat(valid, Const(self.info.weights_in_bitstream, 1), Const(0, 6))
        # INFO: the static bytes 0..3 and 9..12, the weights' id and flags as they are now.
        info = Cat(pad, Const(int.from_bytes(info_bytes[:4], "little"), 32), weights_id, flags,
                   Const(int.from_bytes(info_bytes[9:], "little"), 8 * (len(info_bytes) - 9)))
        received_u32 = Signal(32)
        m.d.comb += received_u32.eq(received)
        loaded = Cat(pad, received_u32, flags)
        payload = Signal(8)
        with m.Switch(reply_kind):
            with m.Case(FrameType.RESULT):
                m.d.comb += payload.eq(result.word_select(sent, 8))
            with m.Case(FrameType.INFO):
                m.d.comb += payload.eq(info.word_select(sent, 8))
            with m.Case(FrameType.WEIGHTS_LOADED):
                m.d.comb += payload.eq(loaded.word_select(sent, 8))
            with m.Default():
                m.d.comb += payload.eq(code)
        with m.If(sent == 0):
            m.d.comb += out.eq(protocol.SYNC)
        with m.Elif(sent == 1):
            m.d.comb += out.eq(reply_kind)
        with m.Elif(sent == 2):
            m.d.comb += out.eq(reply_length[:8])
        with m.Elif(sent == 3):
            m.d.comb += out.eq(reply_length[8:])
        with m.Elif(sent == reply_length + protocol.HEADER_BYTES):
            m.d.comb += out.eq(reply_crc)
        with m.Else():
            m.d.comb += out.eq(payload)
