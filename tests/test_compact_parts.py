"""The parts of the compact accelerator (``hdl/compact_parts.py``), each alone in Amaranth's simulator
against expectations worked out here from the geometry and the arithmetic contract. The whole design
against the golden model is ``tests/test_compact_rtl.py``."""

import itertools
import math
import random
from dataclasses import replace

import numpy as np
import pytest
from amaranth.hdl import Module, Mux, Signal
from amaranth.sim import Simulator

from lenet_fpga.hdl.compact import plan_layers
from lenet_fpga.hdl.compact_parts import Finisher, ImageInput, MACArray, Sequencer, WeightStoreLoader
from lenet_fpga.hdl.datapath import accumulator_shape
from lenet_fpga.hdl.spram import WeightStore
from lenet_fpga.model import arith
from lenet_fpga.model.network import ConvLayer, Network

MODES = list(arith.ARITHMETICS)


def _run(module, bench):
    sim = Simulator(module)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# --------------------------------------------------------------------------------------------
# ImageInput


@pytest.mark.parametrize("seed", [1, 2])
def test_image_input_writes_each_code_once_in_order(seed):
    """Two images of 23 pixels offered with gaps, and more pixels than an image: the codes of the
    first 23 (``arith.quantize_pixels``) go to addresses 0..22, each one cycle after its pixel
    is taken, ``last`` with address 22; no pixel is taken before ``open`` or after the 23rd."""
    n = 23
    dut = ImageInput(n)
    rng = random.Random(seed)
    images = [[rng.randrange(256) for _ in range(n + 5)] for _ in range(2)]
    log = {"writes": [], "taken": [], "last": []}

    async def bench(ctx):
        cycle = 0

        async def tick():
            nonlocal cycle
            if ctx.get(dut.we):
                log["writes"].append((cycle, ctx.get(dut.addr), ctx.get(dut.code)))
            if ctx.get(dut.last):
                log["last"].append(cycle)
            if ctx.get(dut.pixels.valid) and ctx.get(dut.pixels.ready):
                log["taken"].append((cycle, ctx.get(dut.pixels.payload)))
            await ctx.tick()
            cycle += 1

        for image in images:
            ctx.set(dut.pixels.valid, 1)  # offered before the image is open: not taken
            ctx.set(dut.pixels.payload, image[0])
            await tick()
            ctx.set(dut.start, 1)
            await tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.open, 1)
            index, refused = 0, 0
            while index < len(image) and refused < 4:  # offer every pixel until 4 are refused in a row
                while rng.random() < 0.3:
                    ctx.set(dut.pixels.valid, 0)
                    await tick()
                ctx.set(dut.pixels.valid, 1)
                ctx.set(dut.pixels.payload, image[index])
                ready = ctx.get(dut.pixels.ready)
                await tick()
                index, refused = (index + 1, 0) if ready else (index, refused + 1)
            ctx.set(dut.pixels.valid, 0)
            for _ in range(3):
                await tick()
            ctx.set(dut.open, 0)

    _run(dut, bench)
    assert len(log["taken"]) == 2 * n, "exactly one image's pixels taken each time"
    for k in range(2):
        taken = log["taken"][k * n : (k + 1) * n]
        writes = log["writes"][k * n : (k + 1) * n]
        assert [p for _, p in taken] == images[k][:n]
        expected = arith.quantize_pixels(np.array(images[k][:n], np.uint8)).tolist()
        assert writes == [(c + 1, a, code) for a, ((c, _), code) in enumerate(zip(taken, expected))]
        assert log["last"][k] == writes[-1][0]
    assert len(log["writes"]) == 2 * n and len(log["last"]) == 2


# --------------------------------------------------------------------------------------------
# Sequencer


def _expected_issues(network: Network, plans, lanes: int, bias_words: bool = True) -> list[list[dict]]:
    """Per layer, the array cycles in order, from the geometry: groups of ``lanes`` outputs; conv
    positions in pooling order (pooled row, pooled column, row and column in the window), each a
    bias cycle then the taps (input channel, kernel row, kernel column); linear: the inputs.
    Without ``bias_words`` a group's weight words are its taps only (the bias cycle shows the
    first); ``group`` counts the groups of the image."""
    layers, group = [], 0
    for layer, plan in zip(network.layers, plans):
        outputs = layer.weight_shape[0]
        groups = math.ceil(outputs / lanes)
        if isinstance(layer, ConvLayer):
            w, k, pool, p = layer.in_size, layer.kernel, layer.pool, layer.out_size
            taps = list(itertools.product(range(layer.in_channels), range(k), range(k)))
            positions = [(py, px, dy, dx) for py, px, dy, dx in itertools.product(range(p), range(p), range(pool),
                                                                                 range(pool))]
            read = lambda pos, tap: (tap[0] * w * w + (pool * pos[0] + pos[2] + tap[1]) * w  # noqa: E731
                                     + pool * pos[1] + pos[3] + tap[2])
            start = lambda pos: pos[2] == pos[3] == 0  # noqa: E731
            end = lambda pos: pos[2] == pos[3] == pool - 1  # noqa: E731
            out = lambda g, pos: g * lanes * p * p + pos[0] * p + pos[1]  # noqa: E731
        else:
            taps, positions = list(range(layer.in_features)), [None]
            read = lambda pos, tap: tap  # noqa: E731
            start = end = lambda pos: True  # noqa: E731
            out = lambda g, pos: g * lanes  # noqa: E731
        terms = 1 + len(taps)
        cycles = []
        for g in range(groups):
            for pos in positions:
                for t in range(terms):
                    cycles.append({
                        "act": None if t == 0 else plan.act_base + read(pos, taps[t - 1]),
                        "weight": plan.weight_base + (g * terms + t if bias_words else g * (terms - 1) + max(0, t - 1)),
                        "group": group + g,
                        "bias": t == 0, "complete": t == terms - 1,
                        "window_start": start(pos), "window_end": end(pos),
                        "addr": plan.out_base + out(g, pos), "lanes": min(lanes, outputs - g * lanes),
                    })
        layers.append(cycles)
        group += groups
    return layers


def _pooled_map(layer) -> int:
    """Distance between two output channels in the feature map: one pooled map (1 for a neuron)."""
    return layer.out_size**2 if isinstance(layer, ConvLayer) else 1


@pytest.mark.parametrize("spec, lanes", [("10/3k3,4k3:6:3", 3), ("12/2k4p3,3k2p1:5:4", 2)])
@pytest.mark.parametrize("bias_words", [True, False], ids=["spram-words", "rom-words"])
def test_sequencer_issues_the_loop_nest(spec, lanes, bias_words):
    """Two images through the sequencer alone. Per layer, the issued addresses and terms are the
    geometry's (``_expected_issues``), in consecutive cycles; the next layer starts the cycle
    after ``pipeline_busy`` (held high for a few random cycles) falls, the first the cycle after
    ``image_done``; after the last layer it waits for ``last_logit``. ``pipeline_busy`` during a
    layer changes nothing. Without bias words (the block RAM weights), each layer's words start
    at its own ``weight_base`` (here bases that overlap, as layers in different ROMs do)."""
    network = Network.parse(spec)
    plans, depth = plan_layers(network, lanes)
    if not bias_words:
        plans = tuple(replace(plan, weight_base=3 * index) for index, plan in enumerate(plans))
    dut = Sequencer(plans, lanes, depth, bias_words=bias_words)
    expected = _expected_issues(network, plans, lanes, bias_words)
    assert [len(cycles) for cycles in expected] == [plan.array_cycles for plan in plans]
    rng = random.Random(7)
    images = []

    async def bench(ctx):
        for _ in range(2):
            assert not ctx.get(dut.busy)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for _ in range(3):
                assert ctx.get(dut.busy) and ctx.get(dut.receiving) and not ctx.get(dut.issuing)
                await ctx.tick()
            ctx.set(dut.image_done, 1)
            await ctx.tick()
            ctx.set(dut.image_done, 0)
            layers = []
            for index in range(len(plans)):
                issued = []
                assert ctx.get(dut.issuing), f"layer {index} starts at once"
                while ctx.get(dut.issuing):
                    term = ctx.get(dut.term)
                    assert (ctx.get(dut.layer), ctx.get(dut.last_layer)) == (index, index == len(plans) - 1)
                    assert ctx.get(dut.out_stride) == _pooled_map(network.layers[index])
                    issued.append({
                        "act": None if term.bias else ctx.get(dut.act_addr), "weight": ctx.get(dut.weight_addr),
                        "group": ctx.get(dut.bias_addr),
                        "bias": bool(term.bias), "complete": bool(term.complete),
                        "window_start": bool(term.position.window_start),
                        "window_end": bool(term.position.window_end),
                        "addr": term.position.addr, "lanes": term.position.lanes,
                    })
                    ctx.set(dut.pipeline_busy, rng.random() < 0.5)
                    await ctx.tick()
                assert not ctx.get(dut.term.complete)
                hold = rng.randrange(5) if index < len(plans) - 1 else 4
                ctx.set(dut.pipeline_busy, 1)
                for _ in range(hold):
                    assert ctx.get(dut.busy) and not ctx.get(dut.issuing)
                    await ctx.tick()
                ctx.set(dut.pipeline_busy, 0)
                if index == len(plans) - 1:
                    for _ in range(3):  # the pipeline is empty, but the logit has not come
                        await ctx.tick()
                        assert ctx.get(dut.busy) and not ctx.get(dut.issuing)
                    ctx.set(dut.last_logit, 1)
                await ctx.tick()  # one cycle to set up the next layer, or to see the last logit
                ctx.set(dut.last_logit, 0)
                layers.append(issued)
            assert not ctx.get(dut.busy)
            images.append(layers)

    _run(dut, bench)
    assert len(images) == 2
    for layers in images:
        for index, (issued, cycles) in enumerate(zip(layers, expected)):
            assert len(issued) == len(cycles), index
            for n, (got, want) in enumerate(zip(issued, cycles)):
                assert got == want, (index, n)


# --------------------------------------------------------------------------------------------
# MAC array


@pytest.mark.parametrize("lanes", [1, 5, 8])
def test_mac_array_accumulates_bias_and_products(lanes):
    """Accumulations of up to 30 terms with random and extreme codes: after a bias cycle lane
    ``l`` holds ``64 * w[l]`` (whatever the activation), after a tap ``acc + x * w[l]``, two
    cycles after the inputs (the product is registered, then added)."""
    taps = 30
    dut = MACArray(lanes, taps)
    assert dut.latency == 2  # the product is registered, then added
    rng = random.Random(lanes)
    code = lambda: rng.choice([-128, 127, -1, 0, 1, rng.randrange(-128, 128)])  # noqa: E731

    async def bench(ctx):
        acc, pending = [0] * lanes, None
        checked = 0
        for _ in range(40):
            for t in range(1 + rng.randrange(1, taps + 1)):
                x, w = code(), [code() for _ in range(lanes)]
                ctx.set(dut.bias, t == 0)
                ctx.set(dut.activation, x)
                ctx.set(dut.weights, w)
                await ctx.tick()
                # After this tick the array holds the term issued one cycle before this one.
                if pending is not None:
                    got = ctx.get(dut.acc)
                    assert [got[lane] for lane in range(lanes)] == pending
                    checked += 1
                acc = [64 * b for b in w] if t == 0 else [a + x * b for a, b in zip(acc, w)]
                pending = list(acc)
        assert checked > 400

    _run(dut, bench)


# --------------------------------------------------------------------------------------------
# Finisher


def _finisher_case(rng: random.Random, lanes: int, window: int, taps: int, last_layer: bool):
    """Random windows: per window, the valid lanes, and per position an address and accumulators
    (mostly near the requantizer's rounding and overflow edges, some anywhere in range)."""
    bound = arith.accumulator_bound(taps)

    def acc():
        edge = rng.choice([0, 64, 127 << 6, 128 << 6, 255 << 6, 256 << 6])
        near = rng.choice([-1, 1]) * edge + rng.randrange(-40, 41)
        return rng.choice([near, rng.randrange(-bound, bound + 1)])

    return [{"lanes": rng.randrange(1, lanes + 1),
             "positions": [(rng.randrange(1 << 9), [acc() for _ in range(lanes)]) for _ in range(window)]}
            for _ in range(12 if not last_layer else 6)]


@pytest.mark.parametrize("mode", MODES, ids=lambda a: f"{a.rounding}-{a.overflow}")
@pytest.mark.parametrize("lanes, window, last_layer", [(8, 4, False), (3, 9, False), (5, 1, False), (4, 1, True)])
def test_finisher_writes_pooled_codes(mode, lanes, window, last_layer):
    """Per window of ``window`` positions, lane ``l < lanes of the window`` writes
    ``max over the window of relu(arith.requantize(acc))`` to ``addr of the last position +
    l * stride``, ``l + 1`` cycles after the last snapshot; other lanes write nothing. In the
    last layer every position gives its raw accumulators, lane by lane, as logits, and nothing is
    written. Snapshots come ``lanes`` to ``lanes + 3`` cycles apart."""
    taps, stride = 150, 37
    rng = random.Random(lanes * 100 + window)
    dut = Finisher(lanes, accumulator_shape(taps), 10, mode)
    windows = _finisher_case(rng, lanes, window, taps, last_layer)
    writes, logits, snapshots, busy = [], [], [], []

    async def bench(ctx):
        cycle = 0

        async def tick():
            nonlocal cycle
            if ctx.get(dut.en):
                writes.append((cycle, ctx.get(dut.addr), ctx.get(dut.data)))
            if ctx.get(dut.logit.valid):
                logits.append((cycle, ctx.get(dut.logit.payload)))
            busy.append(ctx.get(dut.busy))
            await ctx.tick()
            cycle += 1

        ctx.set(dut.stride, stride)
        ctx.set(dut.last_layer, last_layer)
        for win in windows:
            for n, (addr, accs) in enumerate(win["positions"]):
                ctx.set(dut.acc, accs)
                ctx.set(dut.snapshot, 1)
                ctx.set(dut.position, {"window_start": n == 0, "window_end": n == window - 1, "addr": addr,
                                       "lanes": win["lanes"]})
                snapshots.append(cycle)
                await tick()
                ctx.set(dut.snapshot, 0)
                ctx.set(dut.acc, [0] * lanes)  # the snapshot holds them
                for _ in range(lanes - 1 + rng.randrange(4)):
                    await tick()
        for _ in range(lanes + 2):
            await tick()

    _run(dut, bench)
    expected_writes, expected_logits, expected_busy = [], [], [False] * len(busy)
    positions = [p for win in windows for p in win["positions"]]
    for s, (addr, accs) in zip(snapshots, positions):
        expected_busy[s + 1 : s + 1 + lanes] = [True] * lanes
    for k, win in enumerate(windows):
        last_snapshot = snapshots[(k + 1) * window - 1]
        accs = np.array([accs for _, accs in win["positions"]])  # (window, lanes)
        codes = np.maximum(arith.requantize(accs, mode.rounding, mode.overflow), 0)
        addr = win["positions"][-1][0]
        for lane in range(win["lanes"]):
            if last_layer:
                for n in range(window):
                    expected_logits.append((snapshots[k * window + n] + 1 + lane, int(accs[n, lane])))
            else:
                expected_writes.append((last_snapshot + 1 + lane, (addr + lane * stride) % (1 << 10),
                                        int(codes[:, lane].max())))
    assert writes == expected_writes
    assert logits == expected_logits
    assert [bool(b) for b in busy] == expected_busy
    if not last_layer:  # the data tell saturation, wrapping and the rounding modes apart
        raw = np.array([a for p in positions for a in p[1]])
        assert (np.abs(raw) >= 128 << 6).any() and (np.abs(raw) < 128 << 6).any()
        assert ((raw & 63) == 32).any() or ((raw & 63) > 32).any()


# --------------------------------------------------------------------------------------------
# Weight store loader


@pytest.mark.parametrize("lanes", [8, 3])
def test_loader_fills_the_weight_store_in_image_order(lanes):
    """A wrong start, a restart (the byte offered with the pulse is dropped), the image with gaps
    and pauses (``enable`` low: not ready), then bytes past its end, then a restart, the first
    ``lanes + 1`` bytes again and a restart with a different byte offered. Read back, word ``a``
    of the store holds bytes ``lanes * a ...`` of the image, byte ``lanes * a + l`` in lane ``l``
    (the low byte first). 16 words: an address past the end would wrap onto word 0."""
    words = 16
    rng = random.Random(lanes)
    image = bytes(rng.randrange(256) for _ in range(words * lanes))
    m = Module()
    m.submodules.loader = loader = WeightStoreLoader(lanes, words)
    m.submodules.store = store = WeightStore(lanes, words)
    reading, read_addr = Signal(), Signal(range(words))
    m.d.comb += [
        store.wdata.eq(loader.data), store.wlane.eq(loader.lane), store.we.eq(loader.we),
        store.addr.eq(Mux(reading, read_addr, loader.addr)),
    ]
    got = []

    async def send(ctx, byte):
        while rng.random() < 0.2:
            ctx.set(loader.i.valid, 0)
            await ctx.tick()
        ctx.set(loader.i.valid, 1)
        ctx.set(loader.i.payload, byte)
        while rng.random() < 0.1:
            ctx.set(loader.enable, 0)
            assert not ctx.get(loader.i.ready)
            await ctx.tick()
        ctx.set(loader.enable, 1)
        assert ctx.get(loader.i.ready)
        await ctx.tick()
        ctx.set(loader.i.valid, 0)

    async def restart(ctx, byte):
        ctx.set(loader.restart, 1)
        ctx.set(loader.i.valid, byte is not None)
        ctx.set(loader.i.payload, byte or 0)
        await ctx.tick()
        ctx.set(loader.restart, 0)
        ctx.set(loader.i.valid, 0)

    async def bench(ctx):
        ctx.set(loader.enable, 1)
        for byte in bytes(255 - b for b in image[: 2 * lanes + 1]):  # overwritten by the real image
            await send(ctx, byte)
        await restart(ctx, 0x5A)
        for byte in image + bytes(range(1, 2 * lanes + 2)):
            await send(ctx, byte)
        await restart(ctx, None)
        for byte in image[: lanes + 1]:  # the same bytes again, then a restart with another byte offered
            await send(ctx, byte)
        await restart(ctx, image[lanes + 1] ^ 0xFF)
        ctx.set(reading, 1)
        for address in range(words):
            ctx.set(read_addr, address)
            await ctx.tick()
            got.append(ctx.get(store.data))

    _run(m, bench)
    assert got == [int.from_bytes(image[a * lanes : (a + 1) * lanes], "little") for a in range(words)]


def test_no_function_of_the_compact_accelerator_is_over_100_lines():
    """``CompactAccelerator.elaborate`` joins the parts in a few named steps (it was one
    118-line function): every function in hdl/compact.py, decorators included, fits 100 lines."""
    import ast
    import inspect

    from lenet_fpga.hdl import compact

    tree = ast.parse(inspect.getsource(compact))
    lengths = {node.name: node.end_lineno - min([node.lineno] + [d.lineno for d in node.decorator_list]) + 1
               for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert {name: n for name, n in lengths.items() if n > 100} == {}
