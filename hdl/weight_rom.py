"""The compact design's weights in block RAM with initial values: valid from configuration.

The SPRAM weight store (``hdl/spram.py``) holds every code at 8 bits and must be loaded after
power-up, because SPRAM has no initial contents. Block RAM has, and a compressed network's codes
need fewer bits (``model.codes``): a layer of ``k``-bit codes needs ``lanes * k`` bits a word.
So this store keeps each layer at its own code width, in one ROM per width (*bank*; layers of
the same width share one), and turns every lane's stored field back into its int8 code before
the array, which therefore does not change.

Layout
------
The tap words of the SPRAM weight image (``compact.weight_words``: per group of ``lanes``
outputs a bias word, then a word per tap), each lane's code as its stored field
(``Restriction.stored``, ``k`` bits, lane 0 in the low bits). A layer's words start at its
``weight_base`` in its bank (``rom_layout`` rebases the plans; the sequencer runs with
``bias_words=False``). The biases (8-bit codes, a word of ``lanes`` per group, about 30 words)
are in a small table in logic, addressed by the group's number in the image
(``Sequencer.bias_addr``).

Timing: two cycles from address to ``data``, one more than SPRAM: the block RAM's read, then the
decode and the choice between bias and tap word in a register (so the block RAM's slow output
does not run through the decode into the DSP blocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model import arith
from ..model.codes import PLAIN, Restriction, Uniform
from .datapath import CODE, LOGIC_MEMORY

# iCE40 SB_RAM40_4K: 4 kbit in one of these (depth, width) shapes.
EBR_SHAPES = ((256, 16), (512, 8), (1024, 4), (2048, 2))
ROM_LATENCY = 2  # address -> data: the block RAM's read, the decode register


def ebr_blocks(width: int, depth: int) -> int:
    """iCE40 block RAMs (SB_RAM40_4K) a ``width`` x ``depth`` memory needs in its best shape."""
    if width <= 0 or depth <= 0:
        return 0
    return min(math.ceil(width / w) * math.ceil(depth / d) for d, w in EBR_SHAPES)


@dataclass(frozen=True)
class RomLayout:
    """Where every layer's words are: ``banks``, the ``plans`` rebased into them, the bias
    table (a word of ``lanes`` int8 codes per group, in image order) and each layer's
    restriction."""

    lanes: int
    banks: tuple[tuple[int, tuple[str, ...], tuple[int, ...]], ...]  # (bits, layers, words)
    plans: tuple
    biases: tuple[tuple[int, ...], ...]
    restrictions: tuple[Restriction, ...]  # by layer

    def bank_of(self, layer: int) -> int:
        bits = self.restrictions[layer].bits
        return next(i for i, (b, _, _) in enumerate(self.banks) if b == bits)

    @property
    def blocks(self) -> int:
        """iCE40 block RAMs of the banks (the bias table is logic)."""
        return sum(ebr_blocks(self.lanes * bits, len(words)) for bits, _, words in self.banks)

    @property
    def bits(self) -> int:
        """Bits the banks hold (the unused lanes of a layer's last group included)."""
        return sum(self.lanes * bits * len(words) for bits, _, words in self.banks)


def rom_layout(plans, words, restrictions: dict[str, Restriction], lanes: int) -> RomLayout:
    """The banks of ``plans`` (``compact.plan_layers``) whose SPRAM image is ``words``
    (``compact.weight_words``); ``restrictions`` by layer name (missing: 8-bit codes)."""
    per_layer = tuple(restrictions.get(plan.name, PLAIN) for plan in plans)
    widths = sorted({r.bits for r in per_layer}, reverse=True)
    banks, rebased, biases = [], list(plans), []
    for bits in widths:
        names, contents = [], []
        for i, plan in enumerate(plans):
            if per_layer[i].bits != bits:
                continue
            names.append(plan.name)
            rebased[i] = replace(plan, weight_base=len(contents))
            layer_words = words[plan.weight_base : plan.weight_base + plan.words]
            for index, word in enumerate(layer_words):
                if index % plan.terms == 0:  # a bias word: its codes go to the bias table
                    continue
                fields = per_layer[i].stored(np.asarray(word, np.int64))
                contents.append(sum(int(f) << (bits * lane) for lane, f in enumerate(fields)))
        banks.append((bits, tuple(names), tuple(contents)))
    for plan in plans:
        for g in range(plan.groups):
            biases.append(tuple(int(c) for c in words[plan.weight_base + g * plan.terms]))
    return RomLayout(lanes, tuple(banks), tuple(rebased), tuple(biases), per_layer)


def choose(values, index):
    """``values[index]`` as a chain of ``Mux``: a continuous assignment in Verilog (an ``Array``
    becomes an ``always @*`` block, which Icarus leaves at X until ``index`` first changes)."""
    result = values[-1]
    for k in range(len(values) - 2, -1, -1):
        result = Mux(index == k, values[k], result)
    return result


def decoded(field, restriction: Restriction):
    """The int8 code of a ``restriction.bits``-bit stored field, as logic."""
    if isinstance(restriction, Uniform):  # c << shift: no table
        return field.as_signed() << restriction.shift
    return choose([Const(int(v), CODE) for v in restriction.decode_table], field)


class WeightROM(wiring.Component):
    """The weight store of the compact design with its weights in block RAM (see the module
    docstring); the same word on ``data`` as ``WeightStore`` gives, one cycle later.

    Attributes
    ----------
    addr : In(address_bits)
        The word in the current layer's bank (the sequencer's ``weight_addr``).
    bias_addr : In(range(groups))
        The group's number in the image (the sequencer's ``bias_addr``).
    bias : In(1)
        The word addressed is the group's bias word.
    layer : In(range(layers))
        The layer whose word is addressed.
    data : Out(ArrayLayout(CODE, lanes))
        The codes of the word addressed ``ROM_LATENCY`` cycles earlier.
    """

    def __init__(self, layout: RomLayout, address_bits: int):
        self.layout = layout
        groups = max(1, len(layout.biases))
        super().__init__({
            "addr": In(address_bits),
            "bias_addr": In(range(groups)),
            "bias": In(1),
            "layer": In(range(max(2, len(layout.plans)))),
            "data": Out(data.ArrayLayout(CODE, layout.lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        layout, lanes = self.layout, self.layout.lanes
        fields = []  # per bank: the word read, as lanes fields
        for i, (bits, names, words) in enumerate(layout.banks):
            rom = Memory(shape=lanes * bits, depth=max(1, len(words)), init=words)
            m.submodules[f"bank{i}_{bits}bit"] = rom
            port = rom.read_port()
            m.d.comb += port.addr.eq(self.addr)
            fields.append([port.data[bits * lane : bits * (lane + 1)] for lane in range(lanes)])
        # The bias table is small (a word per group) and wide: in logic, no block RAM.
        bias_table = Memory(shape=lanes * arith.WIDTH, depth=max(1, len(layout.biases)),
                            init=[sum((c & 0xFF) << (8 * lane) for lane, c in enumerate(word))
                                  for word in layout.biases],
                            attrs=LOGIC_MEMORY)
        m.submodules.bias_table = bias_table
        bias_port = bias_table.read_port()
        bias_word, was_bias = bias_port.data, Signal()
        m.d.comb += bias_port.addr.eq(self.bias_addr)
        m.d.sync += was_bias.eq(self.bias)

        layer = Signal.like(self.layer)  # of the words the banks give now
        m.d.sync += layer.eq(self.layer)
        for lane in range(lanes):
            code = Signal(CODE, name=f"code{lane}")
            m.d.comb += code.eq(choose([decoded(fields[layout.bank_of(index)][lane], restriction)
                                        for index, restriction in enumerate(layout.restrictions)], layer))
            bias_code = bias_word[8 * lane : 8 * (lane + 1)].as_signed()
            m.d.sync += self.data[lane].eq(Mux(was_bias, bias_code, code))
        return m

