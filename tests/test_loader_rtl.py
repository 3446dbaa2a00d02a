"""The weight loader (``hdl/loader.py``): the image layout, and the RTL writing exactly the image's
bytes into every memory (Amaranth simulator, memory contents read back word by word)."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, Shape, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from lenet_fpga.hdl import accelerator, loader
from lenet_fpga.hdl.lenet import StreamingConfig, LeNetAccelerator
from lenet_fpga.hdl.loader import WeightLoader, image_size, weight_image, word_bytes
from lenet_fpga.model import weights

# Widths that are and are not whole bytes, a one-bit and a one-word memory, signed and structured
# shapes: the loader must not care.
SHAPES = [
    (unsigned(200), 6),
    (unsigned(12), 5),
    (signed(8), 7),
    (unsigned(1), 3),
    (unsigned(40), 1),
    (data.ArrayLayout(signed(8), 3), 4),
    (signed(24), 10),
]


def random_init(rng: random.Random, shape, depth: int) -> list:
    if isinstance(shape, data.ArrayLayout):
        return [[rng.randrange(-128, 128) for _ in range(shape.length)] for _ in range(depth)]
    s = shape
    if s.signed:
        return [rng.randrange(-(1 << (s.width - 1)), 1 << (s.width - 1)) for _ in range(depth)]
    return [rng.getrandbits(s.width) for _ in range(depth)]


def make_memories(seed: int) -> list[Memory]:
    rng = random.Random(seed)
    return [Memory(shape=shape, depth=depth, init=random_init(rng, shape, depth)) for shape, depth in SHAPES]


def unpack(memories, image: bytes) -> list[list[int]]:
    """The image cut back into words (raw unsigned bit patterns, bits above the width dropped)."""
    words, position = [], 0
    for memory in memories:
        n, width = word_bytes(memory), Shape.cast(memory.shape).width
        row = []
        for _ in range(memory.depth):
            row.append(int.from_bytes(image[position : position + n], "little") & ((1 << width) - 1))
            position += n
        words.append(row)
    assert position == len(image)
    return words


def test_image_layout_by_hand():
    a = Memory(shape=unsigned(12), depth=2, init=[0xABC, 0x123])
    b = Memory(shape=signed(8), depth=2, init=[-1, 5])
    c = Memory(shape=data.ArrayLayout(signed(8), 3), depth=1, init=[[1, -2, 3]])
    assert weight_image([a, b, c]) == bytes([0xBC, 0x0A, 0x23, 0x01, 0xFF, 0x05, 0x01, 0xFE, 0x03])
    assert image_size([a, b, c]) == 9 and [word_bytes(m) for m in (a, b, c)] == [2, 1, 3]
    with pytest.raises(ValueError, match="twice"):
        WeightLoader([a, a])
    with pytest.raises(TypeError, match="Memory"):
        WeightLoader([a, object()])
    with pytest.raises(ValueError, match="at least one"):
        weight_image([])


def load_and_read(memories, stream: list, seed: int, restart_at: set[int] = frozenset()):
    """Simulate a loader on ``memories``: send ``stream`` (bytes, with random idle cycles; a
    restart pulse before the bytes at the indices in ``restart_at``), then read every word back.

    Returns (words per memory, complete before the last byte, complete at the end)."""
    m = Module()
    for k, memory in enumerate(memories):
        m.submodules[f"mem{k}"] = memory
    m.submodules.loader = dut = WeightLoader(memories)
    got, flags = [], {}

    async def bench(ctx):
        rng = random.Random(seed)
        for k, byte in enumerate(stream):
            if k in restart_at:
                ctx.set(dut.restart, 1)
                ctx.set(dut.i.valid, rng.random() < 0.5)  # a byte with the pulse must be dropped
                ctx.set(dut.i.payload, rng.randrange(256))
                await ctx.tick()
                ctx.set(dut.restart, 0)
            while rng.random() < 0.3:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            if k == len(stream) - 1:
                flags["before_last"] = ctx.get(dut.complete)
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, byte)
            assert ctx.get(dut.i.ready)
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        await ctx.tick()
        flags["end"] = ctx.get(dut.complete)
        for memory in memories:
            got.append([ctx.get(memory.data[address]) for address in range(memory.depth)])

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, flags.get("before_last"), flags["end"]


def raw_words(memories, got) -> list[list[int]]:
    """Simulator values (ints, or structured views) -> raw unsigned bit patterns."""
    return [[loader.raw_word(memory, value) for value in row] for memory, row in zip(memories, got)]


def test_loader_writes_the_image_bit_exact():
    seed = 4100
    old = make_memories(seed)
    new = make_memories(seed + 1)
    image = weight_image(new)
    assert weight_image(old) != image and len(image) == image_size(old)
    # Half an image of noise, a restart, then the image, then extra bytes the loader must drop.
    rng = random.Random(seed)
    noise = [rng.randrange(256) for _ in range(len(image) // 2)]
    extra = [rng.randrange(256) for _ in range(5)]
    stream = noise + list(image) + extra
    got, _, complete = load_and_read(old, stream, seed, restart_at={len(noise)})
    expected = unpack(new, image)
    got = raw_words(old, got)
    for k, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"seed {seed}: memory {k} ({SHAPES[k]}) holds {g}, the image says {e}"
    assert got == raw_words(new, [list(memory.init) for memory in new])
    assert complete


def test_loader_complete_flag_and_partial_load():
    """``complete`` rises with the last byte only; a partial load leaves the rest untouched."""
    seed = 4200
    old = make_memories(seed)
    image = weight_image(make_memories(seed + 1))
    got, before_last, complete = load_and_read(old, list(image), seed)
    assert complete and not before_last
    old = make_memories(seed)
    cut = len(image) - word_bytes(old[-1]) * 2 - 1  # stop inside the last memory's third-last word
    got, _, complete = load_and_read(old, list(image[:cut]), seed)
    assert not complete
    words = raw_words(old, got)
    expected = unpack(old, image)
    original = raw_words(old, [list(memory.init) for memory in old])
    assert words[:-1] == expected[:-1]
    assert words[-1][:-3] == expected[-1][:-3] and words[-1][-3:] == original[-1][-3:]


def test_accelerator_weight_memories_and_image(random_params):
    """The accelerator's weight image is its conv and linear weight and bias memories, and the
    image of other weights differs from the shipped one in the memories' words only."""
    ws = weights.load()
    config = StreamingConfig(ws.arithmetic)
    acc = LeNetAccelerator(ws, config)
    memories = acc.weight_memories()
    names = {id(getattr(block, attr)): f"{name}.{attr}" for name, block in acc.engines.items()
             for attr in ("weight_memory", "bias_memory") if hasattr(block, attr)}
    assert [names[id(memory)] for memory in memories] == [
        f"{layer}.{attr}" for layer in ("conv1", "conv2", "fc1", "fc2", "fc3")
        for attr in ("weight_memory", "bias_memory")]
    image = acc.weight_image()
    assert acc.weights_in_bitstream is True
    assert len(image) == image_size(memories) == acc.weight_loader.size
    n_params = sum(p.size for p in ws.params.values())
    assert n_params <= len(image) < 1.1 * n_params, f"{len(image)} bytes for {n_params} codes"
    other = weights.WeightSet(random_params(np.random.default_rng(4300)), ws.manifest)
    other_image = accelerator.weight_image(other, config)
    assert len(other_image) == len(image) and other_image != image
