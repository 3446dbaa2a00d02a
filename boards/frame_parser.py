"""The board's frame parser: ``SYNC TYPE SEQ LEN_LO LEN_HI PAYLOAD CRC_LO CRC_HI`` from a byte
stream, one verdict per frame.

It takes every byte the cycle it arrives (the UART receiver never overruns). Between frames
it hunts for SYNC and ignores everything else. Inside a frame it checks the CRC-16 byte by
byte with ``amaranth.lib.crc`` (the catalogue's CRC-16/MODBUS, ``protocol.crc16``): the CRC
bytes go into the CRC register too, and a good frame leaves its residue, 0. It passes each
payload byte on as it comes (``payload``: the byte and its index), and ends the frame with a
verdict: the CRC checked, it did not, the frame stopped arriving (no byte for ``gap_cycles``,
or not complete ``frame_cycles`` after its SYNC), or its LEN is above ``max_length``. That last
one is given as soon as LEN has arrived, so no sender can hold the board in a frame longer than
the longest request, and ``frame_cycles`` bounds how long a sender dribbling one byte just
inside the gap time can hold it.

The verdict is held until it is taken (``verdict.ready``): the board serves one request at a
time, and bytes that arrive meanwhile are dropped, which ``dropped`` says, so the board can tell
the host (ERROR BUSY). Then the parser hunts for SYNC again.
"""


from amaranth.hdl import Module, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.wiring import In, Out

from . import protocol


class ParseStatus(enum.Enum, shape=2):
    """How a frame ended."""

    OK = 0  # the CRC byte matched
    BAD_CRC = 1  # it did not: TYPE, SEQ and LEN cannot be trusted either
    TIMEOUT = 2  # a gap longer than gap_cycles, or the frame's deadline passed
    TOO_LONG = 3  # LEN above max_length: refused as soon as LEN arrived


FrameHeader = data.StructLayout({"type": 8, "seq": 8, "length": 16})
PayloadByte = data.StructLayout({"byte": 8, "index": 16})


class FrameParser(wiring.Component):
    """Frames from bytes; one ``verdict`` per frame (see the module docstring).

    Parameters
    ----------
    max_length : int
        The longest payload the board takes (``FrameSizes.max_request``); a longer LEN ends the
        frame with ``TOO_LONG`` at once.
    gap_cycles : int
        A frame with no byte for this many cycles ends with ``TIMEOUT``.
    frame_cycles : int
        A frame not complete this many cycles after its SYNC ends with ``TIMEOUT``.

    Attributes
    ----------
    i : In(stream.Signature(8))
        Received bytes; always taken.
    header : Out(FrameHeader)
        TYPE, SEQ and LEN of the frame being parsed, or of the frame the verdict is about.
    payload : Out(stream.Signature(PayloadByte, always_ready=True))
        Each payload byte as it arrives, with its index from 0 (before the CRC is known).
    verdict : Out(stream.Signature(ParseStatus))
        Valid from the end of a frame until taken; bytes are dropped meanwhile.
    dropped : Out(1)
        A byte was dropped since the verdict became valid.
    hunting : Out(1)
        Between frames, looking for SYNC.
    """

    i: In(stream.Signature(8))
    header: Out(FrameHeader)
    payload: Out(stream.Signature(PayloadByte, always_ready=True))
    verdict: Out(stream.Signature(ParseStatus))
    dropped: Out(1)
    hunting: Out(1)

    def __init__(self, max_length: int, gap_cycles: int, frame_cycles: int):
        for name, value in (("max_length", max_length), ("gap_cycles", gap_cycles), ("frame_cycles", frame_cycles)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
        if not 0 <= max_length <= protocol.MAX_LENGTH:
            raise ValueError(f"max_length must be 0..{protocol.MAX_LENGTH}, not {max_length}")
        if gap_cycles < 2 or frame_cycles < 2:
            raise ValueError(f"gap_cycles ({gap_cycles}) and frame_cycles ({frame_cycles}) must be at least 2")
        self._max_length = max_length
        self._gap_cycles = gap_cycles
        self._frame_cycles = frame_cycles
        super().__init__()

    @property
    def max_length(self) -> int:
        return self._max_length

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = catalog.CRC16_MODBUS(8).create()
        got, byte = self.i.valid, self.i.payload
        m.d.comb += [self.i.ready.eq(1), crc.data.eq(byte)]

        header = self.header
        remaining = Signal(16)  # payload bytes still to come
        gap = Signal(range(self._gap_cycles))  # cycles since the last byte
        age = Signal(range(self._frame_cycles))  # cycles since SYNC
        # Registered, so the two counters' comparisons end at a flip-flop; a byte that arrives
        # in the cycle the flag is seen still wins.
        expired = Signal()
        m.d.sync += expired.eq((gap == self._gap_cycles - 1) | (age == self._frame_cycles - 1))

        def conclude(status: ParseStatus):
            m.d.sync += self.verdict.payload.eq(status)
            m.next = "HELD"

        def frame_byte(next_state: str, *actions):
            """A state inside a frame: a byte goes into the CRC and moves on; a long gap or an
            old frame ends it."""
            m.d.sync += age.eq(age + 1)
            with m.If(got):
                m.d.comb += crc.valid.eq(1)
                m.d.sync += [gap.eq(0), *actions]
                m.next = next_state
            with m.Elif(expired):
                conclude(ParseStatus.TIMEOUT)
            with m.Else():
                m.d.sync += gap.eq(gap + 1)

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += self.hunting.eq(1)
                m.d.sync += [gap.eq(0), age.eq(0), expired.eq(0)]
                with m.If(got & (byte == protocol.SYNC)):
                    m.d.comb += crc.start.eq(1)
                    m.d.sync += header.eq(0)
                    m.next = "TYPE"
            with m.State("TYPE"):
                frame_byte("SEQ", header.type.eq(byte))
            with m.State("SEQ"):
                frame_byte("LEN_LO", header.seq.eq(byte))
            with m.State("LEN_LO"):
                frame_byte("LEN_HI", header.length[:8].eq(byte))
            with m.State("LEN_HI"):
                frame_byte("LENGTH", header.length[8:].eq(byte))
            with m.State("LENGTH"):
                # One cycle after LEN_HI (the next byte is a byte time away): LEN's checks start
                # from registers.
                m.d.sync += [age.eq(age + 1), remaining.eq(header.length), self.payload.payload.index.eq(0)]
                with m.If(header.length > self._max_length):
                    conclude(ParseStatus.TOO_LONG)
                with m.Elif(header.length == 0):
                    m.next = "CRC_LO"
                with m.Else():
                    m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += self.payload.valid.eq(got)
                frame_byte("PAYLOAD", remaining.eq(remaining - 1))
                with m.If(got & (remaining == 1)):
                    m.next = "CRC_LO"
            with m.State("CRC_LO"):
                frame_byte("CRC_HI")
            with m.State("CRC_HI"):
                frame_byte("CHECK")
            with m.State("CHECK"):
                # The CRC register has taken both CRC bytes: a good frame leaves the residue (0).
                with m.If(crc.match_detected):
                    conclude(ParseStatus.OK)
                with m.Else():
                    conclude(ParseStatus.BAD_CRC)
            with m.State("HELD"):
                m.d.comb += self.verdict.valid.eq(1)
                with m.If(got):
                    m.d.sync += self.dropped.eq(1)
                with m.If(self.verdict.ready):
                    m.d.sync += self.dropped.eq(0)
                    m.next = "HUNT"

        m.d.comb += self.payload.payload.byte.eq(byte)
        with m.If(self.payload.valid):
            m.d.sync += self.payload.payload.index.eq(self.payload.payload.index + 1)
        return m
