"""Simulation top for any accelerator (``hdl.accelerator.Accelerator``): a one-write image port,
weight images in ROMs that the harness streams into the ``weights`` port itself, and phase stamps.

A cocotb testbench that fed the pixels (or 45 k weight bytes) through a valid/ready stream would
wake Python up on almost every clock edge, which makes a fast simulator slow. Here the testbench
writes the whole image (``network.pixels`` x 8 bits) in one assignment and pulses ``start``; a
shift register streams the pixels into the accelerator, and Python sleeps until ``done``.
Likewise a pulse on ``load`` streams weight bank ``bank`` (a ROM holding one weight image) into
the accelerator, a byte a cycle after a ``weights_restart``, and Python sleeps until ``loading``
falls. A design whose weights are not in its bitstream (the compact one) needs a load first;
several banks let a test switch weights without a second build.

If the accelerator has a ``phase`` signal (the layer it works on, 1-based, 0 between layers),
``stamps`` holds for every phase the cycle it began, counted from the start like ``cycles``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..hdl.accelerator import Accelerator

STAMP_WIDTH = 32


class SimHarness(wiring.Component):
    """``image`` (byte k of the pixel stream in bits 8k..8k+7: raster order, each pixel's channels
    one after another) + ``start`` in; the answer out.

    Parameters
    ----------
    accelerator : Accelerator
    banks : list of bytes
        Weight images (``Accelerator.weight_image`` of the weights to load), one ROM each.

    Attributes
    ----------
    load, bank, loading : only with ``banks``
        A pulse on ``load`` streams bank ``bank`` into the accelerator; ``loading`` is high until
        its last byte is taken.
    stamps : only if the accelerator has a ``phase``
        The cycle (since start) at which each phase 1, 2, ... of the last image began.
    """

    def __init__(self, accelerator: Accelerator, banks=()):
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"accelerator must be an Accelerator, not {type(accelerator).__name__}")
        self.accelerator = accelerator
        self.pixels = accelerator.network.pixels
        self.banks = [bytes(image) for image in banks]
        if any(not image for image in self.banks):
            raise ValueError("a weight bank is empty")
        self.phases = accelerator.phases
        # The accelerator's own members (the same shapes), but not its streams: the harness feeds them.
        ports = accelerator.signature.members
        members = {"image": In(unsigned(8 * self.pixels)),
                   **{name: ports[name] for name in ("start", "busy", "receiving", "done", "klass", "logits", "cycles")}}
        if self.banks:
            members |= {"load": In(1), "bank": In(range(max(2, len(self.banks)))), "loading": Out(1)}
        if self.phases:
            members["stamps"] = Out(data.ArrayLayout(STAMP_WIDTH, self.phases))
        super().__init__(members)

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
            # A slice, not ``>> 8``: Amaranth checks a shift by a constant for loops as if it were a
            # variable shift, every output bit against every input bit (6,272 squared here, 4 s).
            m.d.sync += [pixels.eq(pixels[8:]), left.eq(left - 1)]
        if self.banks:
            self._weight_roms(m, acc)
        if self.phases:
            self._phase_stamps(m, acc)
        return m

    def _weight_roms(self, m: Module, acc: Accelerator) -> None:
        """``load``: a restart pulse, then every byte of the bank, one per cycle the accelerator
        takes one. A ROM's read data is the byte addressed one cycle earlier, so the address
        runs one ahead of the byte on offer and moves on with each transfer."""
        bank = Signal.like(self.bank)
        sent = Signal(range(max(len(image) for image in self.banks) + 1))
        active = Signal()
        fire = acc.weights.valid & acc.weights.ready
        lengths = [len(image) for image in self.banks]
        last = Signal()
        for k, length in enumerate(lengths):
            with m.If(bank == k):
                m.d.comb += last.eq(sent == length - 1)
        for k, image in enumerate(self.banks):
            rom = Memory(shape=8, depth=len(image), init=list(image))
            m.submodules[f"rom{k}"] = rom
            read = rom.read_port()
            m.d.comb += read.addr.eq(Mux(active, sent + fire, 0))
            with m.If(bank == k):
                m.d.comb += acc.weights.payload.eq(read.data)
        m.d.comb += [acc.weights.valid.eq(active), self.loading.eq(active)]
        with m.If(self.load & ~active):
            m.d.comb += acc.weights_restart.eq(1)
            m.d.sync += [bank.eq(self.bank), sent.eq(0), active.eq(1)]
        with m.Elif(fire):
            m.d.sync += sent.eq(sent + 1)
            with m.If(last):
                m.d.sync += active.eq(0)

    def _phase_stamps(self, m: Module, acc: Accelerator) -> None:
        """``since`` counts like the accelerator's ``cycles`` (1 in the cycle after start)."""
        since = Signal(STAMP_WIDTH)
        phase = Signal.like(acc.phase)
        m.d.sync += [since.eq(since + 1), phase.eq(acc.phase)]
        with m.If(acc.start & ~acc.receiving):
            m.d.sync += since.eq(1)
        with m.If((acc.phase != phase) & (acc.phase != 0)):
            for k in range(self.phases):
                with m.If(acc.phase == k + 1):
                    m.d.sync += self.stamps[k].eq(since)
