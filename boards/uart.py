"""8N1 UART receiver and transmitter: one start bit (0), eight data bits LSB first, one stop bit (1).

``divisor`` is the number of clock cycles per bit, fixed when the design is generated
(``divisor_for`` picks it from the clock and the baud rate). The receiver finds the falling
edge of a start bit, checks the line again half a bit later (a shorter glitch is not a start
bit) and then samples every bit in its middle, so the two ends may disagree on the bit time by
a few percent. Both sides speak Amaranth streams of bytes.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

MIN_DIVISOR = 4  # cycles per bit: the receiver needs a middle to sample in
BAUD_TOLERANCE = 0.02  # the largest baud-rate error divisor_for accepts
DATA_BITS = 8
FRAME_BITS = 1 + DATA_BITS + 1  # start, data, stop


def check_divisor(divisor) -> int:
    if not isinstance(divisor, int) or isinstance(divisor, bool):
        raise TypeError(f"divisor must be an integer number of clock cycles per bit, not {divisor!r}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be at least {MIN_DIVISOR} clock cycles per bit, not {divisor}")
    return divisor


def divisor_for(clk_hz: float, baud: float, tolerance: float = BAUD_TOLERANCE) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``; ValueError if the nearest whole number of
    cycles misses the baud rate by more than ``tolerance`` (2 %) or is below 4."""
    if not clk_hz > 0 or not baud > 0:
        raise ValueError(f"clock ({clk_hz} Hz) and baud rate ({baud}) must be positive")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"a {clk_hz:g} Hz clock is too slow for {baud:g} baud: "
                         f"{clk_hz / baud:.2f} cycles per bit, at least {MIN_DIVISOR} needed")
    error = abs(clk_hz / divisor - baud) / baud
    if error > tolerance:
        raise ValueError(f"{baud:g} baud from a {clk_hz:g} Hz clock: {divisor} cycles per bit gives "
                         f"{clk_hz / divisor:.0f} baud, {error:.1%} off (more than {tolerance:.0%})")
    return divisor


class UARTReceiver(wiring.Component):
    """Bytes from an 8N1 serial line.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least 4).

    Attributes
    ----------
    rx : In(1)
        The serial line, idle high; asynchronous (it goes through a 2-flop synchroniser).
    o : Out(stream.Signature(8))
        Received bytes, held until taken.
    error : Out(1)
        One-cycle pulse when a byte's stop bit was low (framing error): the byte is dropped and
        the receiver waits for the line to go idle (high) before it looks for a start bit again.
    overrun : Out(1)
        One-cycle pulse when a byte completed while the previous one was still not taken; the
        new byte is dropped.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    error: Out(1)
    overrun: Out(1)

    def __init__(self, divisor: int):
        self._divisor = check_divisor(divisor)
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.synchroniser = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self._divisor))
        bit = Signal(range(DATA_BITS))
        shift = Signal(DATA_BITS)

        m.d.sync += [self.error.eq(0), self.overrun.eq(0)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self._divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):  # high again in the middle of the start bit: a glitch
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(self._divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(self._divisor - 1), bit.eq(bit + 1)]
                    with m.If(bit == DATA_BITS - 1):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(~line):
                    m.d.sync += self.error.eq(1)
                    m.next = "BREAK"
                with m.Else():
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                    # Back to hunting half a bit early, so that a sender with a slightly
                    # faster clock can follow with its next start bit.
                    m.next = "IDLE"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """An 8N1 serial line from bytes; back-to-back bytes leave exactly ``10 * divisor`` cycles apart.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least 4).

    Attributes
    ----------
    i : In(stream.Signature(8))
        Bytes to send; a byte is taken when the previous one's stop bit ends.
    tx : Out(1)
        The serial line, driven from a flip-flop, idle high.
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        self._divisor = check_divisor(divisor)
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        rest = Signal(DATA_BITS + 1)  # the bits after the one on the line, next in bit 0
        bits = Signal(range(FRAME_BITS + 1))  # bits left to finish, counting the one on the line
        timer = Signal(range(self._divisor))

        stop_ends = (bits == 1) & (timer == 0)
        m.d.comb += self.i.ready.eq((bits == 0) | stop_ends)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                self.tx.eq(0),
                rest.eq(Cat(self.i.payload, 1)),
                bits.eq(FRAME_BITS),
                timer.eq(self._divisor - 1),
            ]
        with m.Elif(bits != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [bits.eq(bits - 1), timer.eq(self._divisor - 1)]
                with m.If(bits != 1):
                    m.d.sync += [self.tx.eq(rest[0]), rest.eq(rest >> 1)]
                with m.Else():
                    m.d.sync += self.tx.eq(1)
        return m
