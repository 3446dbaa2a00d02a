"""The AXI4-Stream wrapper's control (hdl/axis.py) in Amaranth's simulator, around a small
stand-in accelerator: frames with random ``tvalid`` gaps, a sink with random and long
``tready`` back-pressure, early and missing ``tlast``, weight frames between images. Every frame
gets one answer, in order, equal to the stand-in's model; the queue limit holds (pixels stall
while every place is taken, none are dropped). The real designs: test_axis.py (cocotb).
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.sim import Simulator

from lenet_fpga.hdl.accelerator import Accelerator
from lenet_fpga.hdl.axis import AxiStreamAccelerator, parse_result
from lenet_fpga.hdl.lenet import StreamingConfig
from lenet_fpga.hdl.report import LayerRow
from lenet_fpga.model import weights
from lenet_fpga.model.network import ConvSpec, Network

NET = Network(convs=(ConvSpec(2, kernel=3),), hidden=(), classes=4, image_size=6)
PIXELS, CLASSES = NET.pixels, NET.classes
LATENCY = 12  # cycles from an image's last pixel to its done


def model(pixels, weight_sum: int) -> tuple[int, list[int]]:
    """The stand-in's answer: logit j = (sum of pixels k with k % classes == j) - 300 j + the
    byte sum of the last weight image; class = the first pixel's low two bits."""
    p = np.asarray(pixels, np.int64)
    logits = [int(p[j::CLASSES].sum()) - 300 * j + weight_sum for j in range(CLASSES)]
    return int(p[0]) & 3, logits


class StandIn(Accelerator):
    """``model`` with the accelerator's handshake: ``overlap`` takes a new start as soon as the
    pixels are in (like the streaming design), else only after done (like the compact one, whose
    ``receiving`` stays high until done). It refuses pixels on an irregular pattern."""

    design = "streaming"
    weights_in_bitstream = True

    def __init__(self, overlap: bool):
        self.overlap = overlap
        nothing = {name: np.zeros(shape, np.int8) for name, shape in NET.parameter_shapes.items()}
        manifest = weights.make_manifest(StreamingConfig().arithmetic, NET)
        super().__init__(weights.WeightSet(nothing, manifest), StreamingConfig(linear_lanes=1), logits=signed(20))

    def weight_image(self) -> bytes:
        return b""

    def layer_report(self):
        return [LayerRow("standin", macs=0, multipliers=0, dsp=0, weight_bits=0, memory_bits=0, memory="bram",
                         cycles=PIXELS)]

    def elaborate(self, platform):
        m = Module()
        remaining = Signal(range(PIXELS + 1))
        column = Signal(range(CLASSES))
        first = Signal()
        sums = [Signal(signed(20), name=f"sum{j}") for j in range(CLASSES)]
        klass = Signal(2)
        weight_sum = Signal(signed(20))
        pattern = Signal(5, init=1)
        m.d.sync += pattern.eq(Cat(pattern[1:], pattern[0] ^ pattern[2]))
        # The delay line from the last pixel to done: (valid, class, logits) per stage.
        line = [(Signal(name=f"v{k}"), Signal(2, name=f"k{k}"), [Signal(signed(20), name=f"l{k}_{j}")
                                                                for j in range(CLASSES)]) for k in range(LATENCY)]
        finished = Signal()  # the cycle after the last pixel: the sums are complete
        running = (remaining != 0) | finished | Cat(v for v, _, _ in line).any()
        m.d.comb += [self.receiving.eq((remaining != 0) if self.overlap else running),
                     self.busy.eq(running),
                     self.pixels.ready.eq((remaining != 0) & (pattern[0] | pattern[1]))]
        with m.If(self.start & ~self.receiving):
            m.d.sync += [remaining.eq(PIXELS), column.eq(0), first.eq(1)] + [s.eq(0) for s in sums]
        last = Signal()
        with m.If(self.pixels.valid & self.pixels.ready):
            m.d.sync += [remaining.eq(remaining - 1), column.eq(column + 1), first.eq(0)]
            with m.If(column == CLASSES - 1):
                m.d.sync += column.eq(0)
            with m.If(first):
                m.d.sync += klass.eq(self.pixels.payload[:2])
            for j, s in enumerate(sums):
                with m.If(column == j):
                    m.d.sync += s.eq(s + self.pixels.payload)
            m.d.comb += last.eq(remaining == 1)
        # Stage 0 takes the image a cycle after its last pixel, when the sums are complete.
        m.d.sync += finished.eq(last)
        v0, k0, l0 = line[0]
        m.d.sync += [v0.eq(finished), k0.eq(klass)] + [lj.eq(s - 300 * j + weight_sum) for j, (lj, s) in
                                                        enumerate(zip(l0, sums))]
        for (v, k, lg), (pv, pk, plg) in zip(line[1:], line):
            m.d.sync += [v.eq(pv), k.eq(pk)] + [a.eq(b) for a, b in zip(lg, plg)]
        vn, kn, ln = line[-1]
        m.d.sync += self.done.eq(vn)  # with the answer it announces, as the real designs
        with m.If(vn):
            m.d.sync += [self.klass.eq(kn)] + [self.logits[j].eq(ln[j]) for j in range(CLASSES)]
        # Weights: the byte sum since the last restart, added to every logit; always ready.
        m.d.comb += self.weights.ready.eq(1)
        with m.If(self.weights_restart):
            m.d.sync += weight_sum.eq(0)
        with m.Elif(self.weights.valid):
            m.d.sync += weight_sum.eq(weight_sum + self.weights.payload)
        return m


def frames_of(rng, n_images: int, wrong: bool):
    """Pixel frames: lists of (pixel, tlast). With ``wrong``, some end early or run on."""
    frames, kinds = [], []
    for _ in range(n_images):
        kind = rng.choice(["ok", "ok", "early", "late"]) if wrong else "ok"
        length = {"ok": PIXELS, "early": rng.randrange(1, PIXELS), "late": PIXELS + rng.randrange(1, 40)}[kind]
        pixels = [rng.randrange(256) for _ in range(length)]
        frames.append([(p, k == length - 1) for k, p in enumerate(pixels)])
        kinds.append(kind)
    return frames, kinds


def expected(frames, kinds, weight_sums):
    out = []
    for frame, kind, ws in zip(frames, kinds, weight_sums):
        pixels = [p for p, _ in frame][:PIXELS]
        pixels += [0] * (PIXELS - len(pixels))
        klass, logits = model(pixels, ws)
        out.append((klass, kind != "ok", logits))
    return out


def run(overlap: bool, frames, depth: int, seed: int, gaps: float, stall: float, weights_before=None,
        long_stall: int = 0):
    """Send ``frames`` (a weight frame first where ``weights_before[i]`` is bytes), collect the
    answers; returns the answers and what was watched."""
    dut = AxiStreamAccelerator(StandIn(overlap), depth=depth)
    rng = random.Random(seed)
    weights_before = weights_before or {}
    got, seen = [], {"max_outstanding": 0, "errors": 0, "stalled_full": 0, "cycles": 0}
    beats: list[int] = []

    async def testbench(ctx):
        queue = []  # what the sources send, in order: ("w", bytes) or ("p", frame)
        for i, frame in enumerate(frames):
            if i in weights_before:
                queue.append(("w", [(b, k == len(weights_before[i]) - 1) for k, b in enumerate(weights_before[i])]))
            queue.append(("p", frame))
        kind, items = queue.pop(0) if queue else (None, [])
        index, started, cycle = 0, 0, 0
        while len(got) < len(frames):
            cycle += 1
            assert cycle < 200_000, "hung"
            # Source: the current item, with random gaps in tvalid.
            offer = kind is not None and rng.random() >= gaps
            for prefix, on in (("s_axis_", kind == "p"), ("s_axis_weights_", kind == "w")):
                valid = offer and on
                ctx.set(getattr(dut, prefix + "tvalid"), valid)
                if valid:
                    ctx.set(getattr(dut, prefix + "tdata"), items[index][0])
                    ctx.set(getattr(dut, prefix + "tlast"), items[index][1])
            # Sink: random back-pressure, and a long stall at first.
            ready = cycle > long_stall and rng.random() >= stall
            ctx.set(dut.m_axis_tready, ready)
            fired_in = offer and ctx.get(dut.s_axis_tready if kind == "p" else dut.s_axis_weights_tready)
            if ctx.get(dut.m_axis_tvalid) and ready:
                beats.append(ctx.get(dut.m_axis_tdata))
                if ctx.get(dut.m_axis_tlast):
                    assert len(beats) == 1 + CLASSES
                    got.append(parse_result(beats))
                    beats.clear()
            if kind == "p" and offer and index == 0 and not fired_in and started - len(got) >= depth:
                seen["stalled_full"] += 1
            seen["errors"] += ctx.get(dut.tlast_error)
            await ctx.tick()
            if fired_in:
                index += 1
                if kind == "p" and index == 1:
                    started += 1
                if index == len(items):
                    kind, items = queue.pop(0) if queue else (None, [])
                    index = 0
            seen["max_outstanding"] = max(seen["max_outstanding"], started - len(got))
        seen["cycles"] = cycle
        seen["counter"] = ctx.get(dut.tlast_errors)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return got, seen


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapping", "one-at-a-time"])
def test_random_gaps_and_backpressure_every_answer_in_order(overlap):
    rng = random.Random(1)
    frames, kinds = frames_of(rng, 12, wrong=False)
    got, seen = run(overlap, frames, depth=2, seed=2, gaps=0.3, stall=0.5, long_stall=400)
    assert got == expected(frames, kinds, [0] * len(frames))
    assert seen["errors"] == 0
    # The sink held everything for 400 cycles: the pixel input stalled with every place taken,
    # and never more images than places were between the input and the sink.
    assert seen["stalled_full"] > 0
    assert seen["max_outstanding"] == 2


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapping", "one-at-a-time"])
def test_wrong_tlast_is_flagged_and_the_next_frame_is_an_image(overlap):
    rng = random.Random(3)
    frames, kinds = frames_of(rng, 16, wrong=True)
    assert {"early", "late", "ok"} <= set(kinds)
    got, seen = run(overlap, frames, depth=3, seed=4, gaps=0.2, stall=0.3)
    assert got == expected(frames, kinds, [0] * len(frames))
    wrong = sum(kind != "ok" for kind in kinds)
    assert seen["errors"] == wrong == seen["counter"]


def test_early_tlast_on_the_first_pixel_and_a_long_run_on():
    frames = [[(7, True)], [(k % 256, False) for k in range(3 * PIXELS)] + [(1, True)],
              [(k, k == PIXELS - 1) for k in range(PIXELS)]]
    kinds = ["early", "late", "ok"]
    got, seen = run(True, frames, depth=2, seed=5, gaps=0.0, stall=0.0)
    assert got == expected(frames, kinds, [0] * 3)
    assert seen["errors"] == 2


def test_weight_frames_between_images():
    """A weight frame waits for the images in flight; the answers after it use its weights."""
    rng = random.Random(6)
    frames, kinds = frames_of(rng, 6, wrong=False)
    images = {2: bytes([5, 6, 7]), 4: bytes(range(1, 41))}
    sums, current = [], 0
    for i in range(len(frames)):
        current = sum(images[i]) if i in images else current
        sums.append(current)
    got, seen = run(True, frames, depth=2, seed=7, gaps=0.3, stall=0.3, weights_before=images)
    assert got == expected(frames, kinds, sums)


def test_rejects_what_does_not_fit():
    with pytest.raises(ValueError, match="depth"):
        AxiStreamAccelerator(StandIn(True), depth=0)
    with pytest.raises(TypeError):
        AxiStreamAccelerator(object())
