"""Simulation top: the accelerator behind a one-write image port.

A cocotb testbench that fed 784 pixels through a valid/ready stream would wake Python up on
almost every clock edge, which makes a fast simulator slow. Here the testbench writes the whole
image (784 x 8 bits) in one assignment and pulses ``start``; a shift register streams the pixels
into the accelerator, and Python sleeps until ``done``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out



class SimHarness(wiring.Component):
    """``image`` (pixel k in bits 8k..8k+7, raster order) + ``start`` in; the accelerator's answer out."""

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.pixels = accelerator.network.pixels
        acc_sig = accelerator.signature.members
        super().__init__({
            "image": In(unsigned(8 * self.pixels)),
            "start": In(1),
            "busy": Out(1),
            "receiving": Out(1),
            "done": Out(1),
            "klass": Out(acc_sig["klass"].shape),
            "logits": Out(acc_sig["logits"].shape),
            "cycles": Out(acc_sig["cycles"].shape),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = acc = self.accelerator
        pixels = Signal(unsigned(8 * self.pixels))
        left = Signal(range(self.pixels + 1))
        m.d.comb += [
            acc.start.eq(self.start),
            acc.pixels.payload.eq(pixels[:8]),
            acc.pixels.valid.eq(left != 0),
            self.busy.eq(acc.busy),
            self.receiving.eq(acc.receiving),
            self.done.eq(acc.done),
            self.klass.eq(acc.klass),
            self.logits.eq(acc.logits),
            self.cycles.eq(acc.cycles),
        ]
        with m.If(self.start & ~acc.receiving):
            m.d.sync += [pixels.eq(self.image), left.eq(self.pixels)]
        with m.Elif(acc.pixels.valid & acc.pixels.ready):
            m.d.sync += [pixels.eq(pixels >> 8), left.eq(left - 1)]
        return m
