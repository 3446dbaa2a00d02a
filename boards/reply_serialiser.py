"""The board's reply serialiser: one reply frame, ``SYNC TYPE SEQ LEN PAYLOAD CRC``, onto a byte
stream (the UART transmitter).

A reply is asked for with its TYPE, the SEQ of the request it answers and, for ERROR, the
code. The payloads are read from the board's live state as they go out: the accelerator's
class, logits and cycles for RESULT; the weights' id, flags and load progress for INFO and
WEIGHTS_LOADED; the image pieces received for IMAGE_STORED; the last bench's runs and cycle
counts and the accelerator's class for BENCH_RESULT. INFO's other fields (the network, the
arithmetic, the design, the clock) are constants of the bitstream.

Byte ``sent`` of the frame is chosen by a wide multiplexer in two registered steps (the payload
byte of the frame's TYPE, then the frame byte: header, payload or CRC) and offered to the
transmitter only once both have settled, two cycles after ``sent`` moved. The UART takes a byte
every few hundred cycles, so the two cycles cost nothing; in one step the multiplexer was the
iCEBreaker build's worst path (36 ns, 27.5 MHz), and with the CRC after it once the ULX3S'. The CRC-16 is
``amaranth.lib.crc``'s CRC-16/MODBUS over the bytes as the transmitter takes them, sent low
byte first.
"""


from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from . import protocol
from .protocol import FrameType

ReplyRequest = data.StructLayout({"type": 8, "seq": 8, "code": 8})


class ReplySerialiser(wiring.Component):
    """Reply frames onto ``o`` (see the module docstring).

    Parameters
    ----------
    info : protocol.BoardInfo
        The board's INFO at reset: its constant fields go into every INFO reply.
    logit_shape : shape
        Shape of one of the accelerator's logits (at most 32 bits; sign-extended to int32).

    Attributes
    ----------
    i : In(stream.Signature(ReplyRequest))
        The reply to send, held valid while it is sent; ``ready`` in the cycle the last CRC byte
        is handed on.
    o : Out(stream.Signature(8))
        Bytes for the transmitter.
    klass, logits, cycles : In
        The accelerator's answer (RESULT).
    weights_id, weights_flags, load_received : In
        The weights' state (INFO, WEIGHTS_LOADED); ``load_received`` counts the bytes of the last
        or current load (INFO shows it only while ``WEIGHTS_LOADING``).
    image_received : In
        Pixels of the image received in pieces (IMAGE_STORED).
    bench_runs, bench_first, bench_total : In
        The last bench's runs, its first run's cycles and its total cycles (BENCH_RESULT).
    """

    def __init__(self, info: protocol.BoardInfo, logit_shape):
        self._info = info
        self._sizes = info.sizes
        shape = Shape.cast(logit_shape)
        if not shape.signed or shape.width > 8 * protocol.LOGIT_BYTES:
            raise ValueError(f"logits must be signed and at most {8 * protocol.LOGIT_BYTES} bits, not {shape}")
        self._info_bytes = info.encode()
        super().__init__({
            "i": In(stream.Signature(ReplyRequest)),
            "o": Out(stream.Signature(8)),
            "klass": In(8),
            "logits": In(data.ArrayLayout(logit_shape, info.classes)),
            "cycles": In(8 * protocol.CYCLES_BYTES),
            "weights_id": In(32),
            "weights_flags": In(8),
            "load_received": In(32),
            "image_received": In(16),
            "bench_runs": In(16),
            "bench_first": In(32),
            "bench_total": In(64),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = catalog.CRC16_MODBUS(8).create()
        sizes = self._sizes
        header = protocol.HEADER_BYTES
        longest = sizes.max_reply + protocol.OVERHEAD_BYTES

        kind = Signal(8)
        seq = Signal(8)
        code = Signal(8)
        length = Signal(16)
        end = Signal(range(longest))  # index of the first CRC byte
        tail = Signal(range(longest))  # ... and of the second, the last
        sent = Signal(range(longest))
        # How many of the two steps hold byte ``sent``: 2 = o.payload holds it.
        settled = Signal(range(3))

        payload = self._payload_byte(m, kind, code, sent)  # the payload byte ``sent``, first step
        payload_r = Signal(8)
        m.d.sync += payload_r.eq(payload)
        byte = Signal(8)
        with m.Switch(sent):
            with m.Case(0):
                m.d.comb += byte.eq(protocol.SYNC)
            with m.Case(1):
                m.d.comb += byte.eq(kind)
            with m.Case(2):
                m.d.comb += byte.eq(seq)
            with m.Case(3):
                m.d.comb += byte.eq(length[:8])
            with m.Case(4):
                m.d.comb += byte.eq(length[8:])
            with m.Default():
                m.d.comb += byte.eq(payload_r)
        with m.If(sent == end):
            m.d.comb += byte.eq(crc.crc[:8])
        with m.Elif(sent == tail):
            m.d.comb += byte.eq(crc.crc[8:])

        m.d.comb += [crc.data.eq(self.o.payload), self.o.valid.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.i.valid):
                    request = self.i.payload
                    m.d.sync += [kind.eq(request.type), seq.eq(request.seq), code.eq(request.code), sent.eq(0),
                                 settled.eq(0)]
                    with m.Switch(request.type):
                        for type in (FrameType.INFO, FrameType.RESULT, FrameType.WEIGHTS_LOADED, FrameType.IMAGE_STORED,
                                     FrameType.BENCH_RESULT):
                            with m.Case(type):
                                n = sizes.reply_length(type)
                                m.d.sync += [length.eq(n), end.eq(header + n), tail.eq(header + n + 1)]
                        with m.Default():
                            n = protocol.ERROR_LENGTH
                            m.d.sync += [length.eq(n), end.eq(header + n), tail.eq(header + n + 1)]
                    m.d.comb += crc.start.eq(1)
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.o.valid.eq(settled == 2)
                m.d.sync += self.o.payload.eq(byte)
                with m.If(settled != 2):
                    m.d.sync += settled.eq(settled + 1)
                with m.If(self.o.valid & self.o.ready):
                    m.d.sync += [sent.eq(sent + 1), settled.eq(0)]
                    # The CRC covers TYPE .. PAYLOAD: not SYNC, not itself.
                    m.d.comb += crc.valid.eq((sent != 0) & (sent != end) & (sent != tail))
                    with m.If(sent == tail):
                        m.d.comb += self.i.ready.eq(1)
                        m.next = "IDLE"
        return m

    def _payload_byte(self, m: Module, kind, code, sent) -> Signal:
        """The payload byte at frame index ``sent`` of a reply of type ``kind`` (an ERROR's is
        its ``code``), from the state the handler and the accelerator report."""
        sizes, header = self._sizes, protocol.HEADER_BYTES
        # Payloads as byte vectors behind HEADER_BYTES of padding, so that ``sent`` indexes them.
        pad = Const(0, 8 * header)
        logits = [Signal(signed(8 * protocol.LOGIT_BYTES), name=f"logit{j}") for j in range(sizes.classes)]
        m.d.comb += [logit.eq(self.logits[j]) for j, logit in enumerate(logits)]  # sign-extends
        result = Cat(pad, self.klass, *logits, self.cycles)
        static = self._info_bytes

        def constant(first: int, last: int):
            return Const(int.from_bytes(static[first:last], "little"), 8 * (last - first))

        # INFO counts the bytes of a load only while one is in progress.
        in_progress = Mux(self.weights_flags & protocol.WEIGHTS_LOADING, self.load_received, 0)
        info = Cat(pad, constant(0, 4), self.weights_id, self.weights_flags, constant(9, 13), in_progress,
                   constant(17, protocol.INFO_LENGTH))
        loaded = Cat(pad, self.load_received, self.weights_flags & protocol.WEIGHTS_VALID)
        stored = Cat(pad, self.image_received)
        bench = Cat(pad, self.bench_runs, self.klass, self.bench_first, self.bench_total)

        payload = Signal(8)
        with m.Switch(kind):
            with m.Case(FrameType.RESULT):
                m.d.comb += payload.eq(result.word_select(sent, 8))
            with m.Case(FrameType.INFO):
                m.d.comb += payload.eq(info.word_select(sent, 8))
            with m.Case(FrameType.WEIGHTS_LOADED):
                m.d.comb += payload.eq(loaded.word_select(sent, 8))
            with m.Case(FrameType.IMAGE_STORED):
                m.d.comb += payload.eq(stored.word_select(sent, 8))
            with m.Case(FrameType.BENCH_RESULT):
                m.d.comb += payload.eq(bench.word_select(sent, 8))
            with m.Default():
                m.d.comb += payload.eq(code)
        return payload
