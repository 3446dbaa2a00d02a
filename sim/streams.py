"""cocotb drivers for Amaranth streams, which Verilog flattens to ``<name>__payload``,
``<name>__valid`` and ``<name>__ready``.

A transfer happens at a rising edge where valid and ready were both high just before it, so both
sides look at the settled signals in the ReadOnly phase and act after the edge. Optional random
stalls (bubbles on the source, back-pressure on the sink) come from a seeded ``random.Random``.
"""

from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from ..model import arith
from . import clocked


def pack(codes, width: int = arith.WIDTH) -> int:
    """Codes -> one unsigned integer, the first in the low bits (Amaranth's Cat/array order)."""
    word = 0
    for i, code in enumerate(codes):
        word |= (int(code) & ((1 << width) - 1)) << (i * width)
    return word


def unpack(word: int, count: int, width: int = arith.WIDTH) -> list[int]:
    """The inverse of ``pack``: signed codes."""
    mask, sign = (1 << width) - 1, 1 << (width - 1)
    return [(((word >> (i * width)) & mask) ^ sign) - sign for i in range(count)]


class StreamSource:
    """Drives ``<name>__payload``/``__valid`` and watches ``__ready``."""

    def __init__(self, dut, name: str, rng: random.Random | None = None, stall: float = 0.0):
        self.clk = dut.clk
        self.payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.rng, self.stall = rng or random.Random(0), stall
        self.valid.value = 0

    async def send(self, payloads) -> None:
        for payload in payloads:
            while self.stall and self.rng.random() < self.stall:
                self.valid.value = 0
                await RisingEdge(self.clk)
            self.payload.value = int(payload)
            self.valid.value = 1
            while True:
                await ReadOnly()
                fired = bool(self.ready.value)
                await RisingEdge(self.clk)
                if fired:
                    break
        self.valid.value = 0


class StreamSink:
    """Drives ``<name>__ready`` and collects payloads (unsigned integers, or signed with ``signed``)."""

    def __init__(self, dut, name: str, rng: random.Random | None = None, stall: float = 0.0, signed: bool = True):
        self.clk = dut.clk
        self.payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.rng, self.stall, self.signed = rng or random.Random(1), stall, signed
        self.ready.value = 0

    async def receive(self, count: int) -> list[int]:
        items: list[int] = []
        while len(items) < count:
            self.ready.value = 0 if (self.stall and self.rng.random() < self.stall) else 1
            await ReadOnly()
            if self.valid.value and self.ready.value:
                value = self.payload.value
                items.append(value.to_signed() if self.signed else value.to_unsigned())
            await RisingEdge(self.clk)
        self.ready.value = 0
        return items


class HandshakeLog:
    """The cycle numbers of every ``i`` and ``o`` transfer (cycle 0 = the first one watched)."""

    def __init__(self, dut):
        self.dut, self.inputs, self.outputs = dut, [], []
        cocotb.start_soon(self._watch())

    async def _watch(self):
        dut, cycle = self.dut, 0
        while True:
            await ReadOnly()
            if dut.i__valid.value and dut.i__ready.value:
                self.inputs.append(cycle)
            if dut.o__valid.value and dut.o__ready.value:
                self.outputs.append(cycle)
            await RisingEdge(dut.clk)
            cycle += 1


# The clock of ``start_clock_and_reset``, made by cocotb or by the design's wrapper.
PERIOD_NS = 2 * clocked.HALF_PERIOD_NS


def simulated_cycles() -> int:
    """Clock cycles simulated so far."""
    return int(get_sim_time("ns")) // PERIOD_NS


async def start_clock_and_reset(dut, cycles: int = 2) -> None:
    """A ``PERIOD_NS`` clock on ``clk`` (unless the top module makes it: ``sim.clocked``); ``rst``
    held high for ``cycles`` edges."""
    if os.environ.get(clocked.CLOCK_VARIABLE) != clocked.CLOCK_INSIDE:
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
