"""Simulation top for the compact accelerator: ``SimHarness``'s one-write image port, plus weight
ROMs that load the accelerator through its ``weights`` byte stream, and per-layer time stamps.

The weights of the compact accelerator are not in its RTL: they arrive as the bytes of its
weight image. Driving 45 k bytes from Python would wake the testbench up on every clock edge, so
the harness holds each weight image in a ROM (one word of ``lanes`` bytes per entry) and streams
it itself, a byte a cycle, when ``load`` is pulsed; Python sleeps until ``loading`` falls. Several images
(``banks``) in one harness let a test reload different weights without a second build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.back import verilog as amaranth_verilog
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..hdl.compact import CompactAccelerator, CompactConfig
from ..model import golden
from ..model.weights import WeightSet
from . import runner
from .harness import SimHarness

TOPLEVEL = "compact_sim"
STAMP_WIDTH = 32


class CompactHarness(wiring.Component):
    """``SimHarness``'s ports, plus ``load`` (a pulse: stream weight bank ``bank`` into the
    accelerator), ``loading`` (high until the last byte is taken) and ``stamps`` (for each
    layer, the cycle of its first array cycle counted from the start, like ``cycles``).

    Parameters
    ----------
    accelerator : CompactAccelerator
    banks : list of WeightSet
        The weight sets the ROMs hold, as ``accelerator`` lays them out.
    """

    def __init__(self, accelerator: CompactAccelerator, banks):
        banks = list(banks)
        if not banks:
            raise ValueError("need at least one weight bank")
        self.accelerator = accelerator
        self.images = SimHarness(accelerator)
        config, lanes, words = accelerator.config, accelerator.lanes, accelerator.words
        self.roms = [Memory(shape=8 * lanes, depth=words, init=CompactAccelerator(ws, config).weight_words())
                     for ws in banks]
        self.n_layers = len(accelerator.plans)
        super().__init__({
            **self.images.signature.members,
            "load": In(1),
            "bank": In(range(max(2, len(banks)))),
            "loading": Out(1),
            "stamps": Out(data.ArrayLayout(STAMP_WIDTH, self.n_layers)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.images = images = self.images
        acc = self.accelerator
        lanes, words = acc.lanes, acc.words
        for name in self.images.signature.members:
            port, inner = getattr(self, name), getattr(images, name)
            m.d.comb += inner.eq(port) if name in ("image", "start") else port.eq(inner)

        # Weight loading: a restart pulse, then a byte a cycle. The read ports hold a word while
        # its bytes go out and fetch the next one with its last byte.
        reads = []
        for k, rom in enumerate(self.roms):
            m.submodules[f"rom{k}"] = rom
            reads.append(rom.read_port())
        bank = Signal.like(self.bank)
        word = Signal(range(words))
        byte = Signal(range(lanes))
        rom_data = Signal(8 * lanes)
        m.d.comb += rom_data.eq(reads[0].data)
        for k, read in enumerate(reads):
            with m.If(bank == k):
                m.d.comb += rom_data.eq(read.data)
        last_byte = byte == lanes - 1
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.load):
                    m.d.comb += acc.weights_restart.eq(1)
                    m.d.sync += [bank.eq(self.bank), word.eq(0), byte.eq(0)]
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [acc.weights.valid.eq(1), acc.weights.payload.eq(rom_data.word_select(byte, 8))]
                with m.If(acc.weights.ready):
                    m.d.sync += byte.eq(Mux(last_byte, 0, byte + 1))
                    with m.If(last_byte):
                        m.d.sync += word.eq(word + 1)
                        with m.If(word == words - 1):
                            m.next = "IDLE"
        # Assignments outside the FSM are continuous, hence defined at time 0 in Icarus.
        idle = fsm.ongoing("IDLE")
        for read in reads:
            m.d.comb += [read.addr.eq(Mux(idle, 0, word + 1)),
                         read.en.eq(idle | (last_byte & acc.weights.ready))]
        m.d.comb += self.loading.eq(~idle)

        # Cycle stamps: ``since`` counts like the accelerator's ``cycles`` (1 in the cycle after start).
        since = Signal(STAMP_WIDTH)
        running = Signal()
        m.d.sync += [since.eq(since + 1), running.eq(acc.running)]
        with m.If(acc.start & ~acc.busy):
            m.d.sync += since.eq(1)
        with m.If(acc.running & ~running):
            for k in range(self.n_layers):
                with m.If(acc.layer == k):
                    m.d.sync += self.stamps[k].eq(since)
        return m


def harness_verilog(banks, config: CompactConfig) -> str:
    accelerator = CompactAccelerator(banks[0], config)
    return amaranth_verilog.convert(CompactHarness(accelerator, banks), name=TOPLEVEL)


@dataclass(frozen=True)
class CompactRun:
    rtl_logits: np.ndarray  # int64 [N,10]
    rtl_class: np.ndarray
    golden_logits: np.ndarray
    golden_class: np.ndarray
    cycles: np.ndarray  # [N]
    stamps: np.ndarray  # [N, layers]: first array cycle of each layer, counted from start
    model: dict[str, int]  # the accelerator's cycle model
    sim_seconds: float
    waves: Path | None

    @property
    def matches(self) -> np.ndarray:
        return (self.rtl_logits == self.golden_logits).all(axis=1) & (self.rtl_class == self.golden_class)

    def measured_phases(self) -> np.ndarray:
        """[N, phases] cycles per phase in ``model`` order (input, then each layer), measured."""
        edges = np.concatenate([np.zeros((len(self.cycles), 1), np.int64), self.stamps,
                                self.cycles[:, None]], axis=1)
        return np.diff(edges, axis=1)


def simulate_compact(banks, segments, images, config: CompactConfig, simulator: str = "verilator",
                     waves: bool = False, build_root=None) -> CompactRun:
    """Load bank ``b`` then classify ``n`` images, for each ``(b, n)`` of ``segments`` in order;
    ``images`` holds all of them in that order. Each image is compared with the golden model of
    the bank loaded before it."""
    banks = list(banks)
    segments = np.asarray(segments, np.int64).reshape(-1, 2)
    images = np.asarray(images, np.uint8)
    if segments[:, 1].sum() != len(images):
        raise ValueError(f"segments ask for {segments[:, 1].sum()} images, {len(images)} given")
    source = harness_verilog(banks, config)
    network = banks[0].network
    result = runner.run(source, TOPLEVEL, f"{__package__}.tb_compact",
                        {"images": images, "segments": segments, "classes": network.classes},
                        simulator=simulator, waves=waves, build_root=build_root)
    golden_logits, start = [], 0
    for bank, n in segments:
        golden_logits.append(golden.forward(images[start : start + n], banks[bank].params, config.arithmetic,
                                            network))
        start += n
    golden_logits = np.concatenate(golden_logits) if golden_logits else np.zeros((0, network.classes), np.int64)
    out = result.outputs
    return CompactRun(
        rtl_logits=out["logits"], rtl_class=out["klass"], golden_logits=golden_logits,
        golden_class=golden.classify(golden_logits), cycles=out["cycles"], stamps=out["stamps"],
        model=CompactAccelerator(banks[0], config).cycle_model(), sim_seconds=result.seconds, waves=result.waves,
    )
