"""cocotb drivers for an 8N1 serial line, bit by bit on the DUT's pins (as cocotbext-axi splits
a bus into a source and a monitor).

``SerialSource`` drives a pin the DUT receives on (``rx``): it sleeps a bit time between writes
(one wake-up per run of equal bits), so Python wakes once per bit, not per clock.
``SerialMonitor`` decodes a pin the DUT sends on (``tx``), sampling in the middle of each bit
and failing on a glitch or a framing error. ``SerialLine`` is the host's end of a cable, one of
each; ``SimulatedSerialPort`` puts pyserial's blocking ``write``/``read``/
``reset_input_buffer`` on top of it with ``cocotb.task.resume``, so code written for a real
port (``boards.host.BoardClient``) runs unchanged in a ``cocotb.task.bridge`` thread against
the simulated board.

Times are in the simulator's picoseconds; the DUT's clock period is ``CLOCK_NS``.
"""

from __future__ import annotations

import itertools
import random

import cocotb
from cocotb.task import resume
from cocotb.triggers import Event, FallingEdge, First, Timer
from cocotb.utils import get_sim_time

__all__ = ["CLOCK_NS", "now_ps", "frame_bits", "SerialSource", "SerialMonitor", "SerialLine",
           "SimulatedSerialPort"]

CLOCK_NS = 10


def now_ps() -> int:
    return round(get_sim_time("ps"))


def frame_bits(byte: int) -> list[int]:
    """The line levels of one 8N1 frame: a start bit, the data bits LSB first, a stop bit."""
    return [0, *((byte >> k) & 1 for k in range(8)), 1]


class SerialSource:
    """Sends bytes (or raw levels) on ``pin``, idle high, at ``bit_ps`` per bit.

    ``gap_bits`` > 0 adds a random idle time (0 .. gap_bits bit times, any number of clock
    cycles, so the start bits fall at every phase of the receiver's bit timer) after each byte;
    ``rate`` scales the bit time sent with (1.02 = a host 2 % slow).

    Attributes
    ----------
    sent_bytes : int
        Bytes sent so far.
    last_sent_ps : int
        When the last sent byte's stop bit ended.
    """

    def __init__(self, pin, clk, bit_ps: int, rng: random.Random | None = None, gap_bits: float = 0.0):
        self.pin, self.clk, self.bit_ps = pin, clk, bit_ps
        self.rng, self.gap_bits = rng or random.Random(0), gap_bits
        self.rate = 1.0
        self.sent_bytes = 0
        self.last_sent_ps = 0
        self.pin.value = 1

    async def send_bits(self, bits) -> None:
        """Raw line levels, a bit time each (to send what no UART would)."""
        # Bit times are whole clock periods (at rate 1), so starting on a falling edge keeps every
        # write away from the rising edges: no race between our write and the DUT's sampling.
        await FallingEdge(self.clk)
        await self._bits(bits)

    async def _bits(self, bits) -> None:
        # One wake-up per run of equal bits, not per bit (a zero pixel is two runs, not ten):
        # the same line, several times faster to simulate.
        bit_time = round(self.bit_ps * self.rate)
        for level, run in itertools.groupby(bits):
            self.pin.value = level
            await Timer(bit_time * len(list(run)), "ps")

    async def dribble(self, data: bytes, gap_cycles: int) -> None:
        """``data`` with ``gap_cycles`` of idle line after every byte."""
        for byte in bytes(data):
            await self.send(bytes([byte]))
            await Timer(gap_cycles * CLOCK_NS, "ns")

    async def send(self, data: bytes) -> None:
        await FallingEdge(self.clk)
        self.sent_bytes += len(data)
        if not self.gap_bits:
            await self._bits([bit for byte in bytes(data) for bit in frame_bits(byte)])
            self.last_sent_ps = now_ps()
            return
        for byte in bytes(data):
            await self._bits(frame_bits(byte))
            self.last_sent_ps = now_ps()
            gap_cycles = self.rng.randrange(int(self.gap_bits * self.bit_ps / (CLOCK_NS * 1000)) + 1)
            if gap_cycles:
                await Timer(gap_cycles * CLOCK_NS, "ns")


class SerialMonitor:
    """Receives the bytes sent on ``pin`` at ``bit_ps`` per bit, from the moment it is made.

    Attributes
    ----------
    received : bytearray
        Bytes received and not yet ``read`` (a test may clear it).
    received_bytes : int
        Bytes received so far.
    last_stop_ps : int
        When the last received byte's stop bit ended.
    """

    def __init__(self, pin, bit_ps: int):
        self.pin, self.bit_ps = pin, bit_ps
        self.received = bytearray()
        self.received_bytes = 0
        self.last_stop_ps = 0
        self._arrived = Event()
        self._listener = cocotb.start_soon(self._listen())

    async def _listen(self) -> None:
        while True:
            await FallingEdge(self.pin)
            await Timer(self.bit_ps // 2, "ps")
            assert int(self.pin.value) == 0, f"tx: a glitch, not a start bit, at {now_ps()} ps"
            byte = 0
            for k in range(8):
                await Timer(self.bit_ps, "ps")
                byte |= int(self.pin.value) << k
            await Timer(self.bit_ps, "ps")
            assert int(self.pin.value) == 1, f"tx: framing error (stop bit low) at {now_ps()} ps"
            self.last_stop_ps = now_ps() + self.bit_ps // 2
            self.received.append(byte)
            self.received_bytes += 1
            self._arrived.set()

    async def read(self, count: int, timeout_ps: int) -> bytes:
        """Up to ``count`` received bytes; fewer if ``timeout_ps`` passes first (like pyserial)."""
        deadline = now_ps() + timeout_ps
        while len(self.received) < count and now_ps() < deadline:
            self._arrived.clear()
            await First(self._arrived.wait(), Timer(deadline - now_ps(), "ps"))
        data = bytes(self.received[:count])
        del self.received[:count]
        return data


class SerialLine:
    """The host end of a simulated 8N1 cable on the DUT's ``rx`` (``source`` drives it) and
    ``tx`` (``monitor`` reads it), at ``divisor`` clock cycles per bit."""

    def __init__(self, dut, divisor: int, rng: random.Random | None = None, gap_bits: float = 0.0):
        self.bit_ps = divisor * CLOCK_NS * 1000
        self.source = SerialSource(dut.rx, dut.clk, self.bit_ps, rng, gap_bits)
        self.monitor = SerialMonitor(dut.tx, self.bit_ps)

    async def send(self, data: bytes) -> None:
        await self.source.send(data)

    async def read(self, count: int, timeout_ps: int) -> bytes:
        return await self.monitor.read(count, timeout_ps)


class SimulatedSerialPort:
    """pyserial's blocking port interface over a ``SerialLine``, for code in a bridge thread;
    its read timeout is in simulated clock cycles (``timeout`` in seconds is ignored)."""

    def __init__(self, line: SerialLine, timeout_cycles: int):
        self.line = line
        self.timeout_ps = timeout_cycles * CLOCK_NS * 1000
        self.timeout = None
        self._send = resume(line.send)
        self._read = resume(line.read)

    def write(self, data: bytes) -> int:
        self._send(bytes(data))
        return len(data)

    def read(self, count: int) -> bytes:
        return self._read(count, self.timeout_ps)

    def reset_input_buffer(self) -> None:
        self.line.monitor.received.clear()
