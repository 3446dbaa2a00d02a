"""Single-port RAM of the iCE40 UltraPlus (SPRAM) and a wide weight store built from it.

The UP5K has four SB_SPRAM256KA blocks: 16 K words of 16 bits each, one address for reading and
writing, write enables per nibble, and no initial contents. Yosys only infers them from a memory
without initial values, which an Amaranth ``Memory`` never is (it always carries an ``init``), so
``SPRAM`` instantiates the primitive when it is elaborated for an iCE40 platform and is an
Amaranth ``Memory`` with the same port behaviour everywhere else (simulation, other FPGAs).

Port behaviour (both forms): on a clock edge with ``we`` low, ``data_out`` becomes the word at
``addr``; with ``we`` high, the nibbles selected by ``mask`` are written and ``data_out`` keeps
its value (SB_SPRAM256KA's read-during-write behaviour).
"""

import math

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

SPRAM_DEPTH = 16 * 1024  # words of one SB_SPRAM256KA
SPRAM_WIDTH = 16
SPRAM_BLOCKS = 4  # on the iCE40 UP5K
SPRAM_BITS = SPRAM_DEPTH * SPRAM_WIDTH


def uses_spram_primitive(platform) -> bool:
    """True when ``platform`` builds for an iCE40 UltraPlus, which has SB_SPRAM256KA."""
    try:
        from amaranth.vendor import SiliconBluePlatform
    except ImportError:  # pragma: no cover - amaranth without vendor support
        return False
    if not isinstance(platform, SiliconBluePlatform):
        return False
    if not platform.device.startswith("iCE40UP"):
        raise ValueError(f"SPRAM needs an iCE40 UltraPlus device, not {platform.device}")
    return True


class SPRAM(wiring.Component):
    """One 16 K x 16-bit single-port RAM: SB_SPRAM256KA on an iCE40 UltraPlus, a Memory elsewhere.

    Parameters
    ----------
    depth : int
        Words the simulation model holds (at most 16 K; the primitive always has 16 K). Writes
        to higher addresses must not happen.

    Attributes
    ----------
    addr : In(14)
    data_in : In(16)
    mask : In(4)
        Nibble write enables (bit k writes bits 4k..4k+3).
    we : In(1)
    data_out : Out(16)
    """

    addr: In(14)
    data_in: In(SPRAM_WIDTH)
    mask: In(4)
    we: In(1)
    data_out: Out(SPRAM_WIDTH)

    def __init__(self, depth: int = SPRAM_DEPTH):
        if not 1 <= depth <= SPRAM_DEPTH:
            raise ValueError(f"an SPRAM holds 1..{SPRAM_DEPTH} words, not {depth}")
        self.depth = depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        if uses_spram_primitive(platform):
            m.submodules.spram = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=self.addr, i_DATAIN=self.data_in, i_MASKWREN=self.mask, i_WREN=self.we,
                i_CHIPSELECT=1, i_CLOCK=ClockSignal("sync"),
                i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,  # POWEROFF is active low
                o_DATAOUT=self.data_out,
            )
            return m
        m.submodules.memory = memory = Memory(shape=SPRAM_WIDTH, depth=self.depth, init=[])
        write = memory.write_port(granularity=4)
        read = memory.read_port()
        m.d.comb += [
            write.addr.eq(self.addr),
            read.addr.eq(self.addr),
            write.data.eq(self.data_in),
            write.en.eq(Mux(self.we, self.mask, 0)),
            read.en.eq(~self.we),  # the primitive's output holds during a write
            self.data_out.eq(read.data),
        ]
        return m


class WeightStore(wiring.Component):
    """``lanes`` 8-bit codes per word, side by side in ``ceil(lanes / 2)`` SPRAMs.

    Lane ``l`` of a word is byte ``l % 2`` (low byte first) of SPRAM ``l // 2``. Words are read
    whole and written one byte (lane) at a time, through the same address.

    Attributes
    ----------
    addr : In(14)
    data : Out(8 * lanes)
        The word addressed one cycle earlier, lane 0 in the low bits (read when ``we`` is low).
    wdata : In(8)
    wlane : In(range(lanes))
        The lane ``wdata`` is written to when ``we`` is high.
    we : In(1)
    """

    def __init__(self, lanes: int, words: int):
        blocks = math.ceil(lanes / 2)
        if blocks > SPRAM_BLOCKS or words > SPRAM_DEPTH:
            raise ValueError(f"{lanes} lanes x {words} words need more than the {SPRAM_BLOCKS} SPRAMs "
                             f"of {SPRAM_DEPTH} x {SPRAM_WIDTH} bits")
        self.lanes, self.words = lanes, words
        self.blocks = [SPRAM(words) for _ in range(blocks)]
        super().__init__({
            "addr": In(14),
            "data": Out(8 * lanes),
            "wdata": In(8),
            "wlane": In(range(lanes)),
            "we": In(1),
        })

    @property
    def bits(self) -> int:
        """Bits of weights it holds (the SPRAM capacity used)."""
        return self.lanes * 8 * self.words

    def elaborate(self, platform):
        m = Module()
        outputs = []
        for k, block in enumerate(self.blocks):
            m.submodules[f"spram{k}"] = block
            low, high = self.wlane == 2 * k, self.wlane == 2 * k + 1
            m.d.comb += [
                block.addr.eq(self.addr),
                block.data_in.eq(Cat(self.wdata, self.wdata)),
                block.mask.eq(Cat(low, low, high, high)),
                block.we.eq(self.we & (low | high)),
            ]
            outputs.append(block.data_out)
        m.d.comb += self.data.eq(Cat(*outputs))
        return m


class PingPongMaps(wiring.Component):
    """Feature maps in two SPRAMs, one per ping-pong region: a layer reads one and writes the
    other, so each single-port RAM only reads or only writes while a layer runs.

    For the compact design with its weights in block RAM (the SPRAMs are then free, and the
    block RAM is needed for the weights). Addresses are the feature-map RAM's (the regions'
    bases included), so each SPRAM holds its region at the addresses the sequencer uses.

    A write is registered here and reaches the SPRAM a cycle later: the SPRAMs sit in the
    corners of the UP5K, and the finisher's requantizer straight into one was the iCEBreaker
    build's worst path (39 ns). A layer's last write then lands in the cycle in which the
    sequencer sets up the next layer, whose first read comes a cycle after.

    Attributes
    ----------
    write_region : In(1)
        The region (SPRAM) written; the other one is read.
    read_addr : In(14)
    read_data : Out(8)
        The code at ``read_addr`` one cycle earlier.
    write_addr : In(14)
    write_data : In(8)
    write_en : In(1)
    """

    read_addr: In(14)
    read_data: Out(8)
    write_addr: In(14)
    write_data: In(8)
    write_en: In(1)
    write_region: In(1)

    def __init__(self, depth: int):
        if not 1 <= depth <= SPRAM_DEPTH:
            raise ValueError(f"feature maps of {depth} codes do not fit one SPRAM of {SPRAM_DEPTH} words")
        self.depth = depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        write_addr, write_data = Signal.like(self.write_addr), Signal.like(self.write_data)
        write_en, write_region = Signal(), Signal()
        m.d.sync += [write_addr.eq(self.write_addr), write_data.eq(self.write_data), write_en.eq(self.write_en),
                     write_region.eq(self.write_region)]
        reads = []
        for region in range(2):
            m.submodules[f"region{region}"] = ram = SPRAM(self.depth)
            written = write_region == region
            m.d.comb += [
                ram.addr.eq(Mux(written, write_addr, self.read_addr)),
                ram.data_in.eq(write_data),
                ram.mask.eq(0b0011),
                ram.we.eq(written & write_en),
            ]
            reads.append(ram.data_out[:8])
        read_region = Signal()  # of the word on the outputs
        m.d.sync += read_region.eq(~self.write_region)
        m.d.comb += self.read_data.eq(Mux(read_region, reads[1], reads[0]))
        return m
