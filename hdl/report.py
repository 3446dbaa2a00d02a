"""A design's report, one row per block with memory or multipliers: what ``verilog`` prints,
what ``bench`` and the board build check against the FPGA, and what the compression search's
cost model adds up. Every generator returns these rows (``Accelerator.layer_report``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

MEMORY_KINDS = ("bram", "spram", "logic")


@dataclass(frozen=True)
class LayerRow:
    """One block of a design.

    Attributes
    ----------
    layer : str
        The network's layer name, or the block's (``input``, ``feature maps``, ``pool1``, ...).
    macs : int
        Multiply-accumulates per image (0 for a block that is not a layer).
    multipliers : int
        Products a cycle; the compact design's layer rows all name its one shared array.
    dsp : int
        DSP blocks those products take on an FPGA that has them (half for packed pairs, none
        for shift-and-select products).
    weight_bits : int
        Bits of one stored weight code (0 for a block without weights).
    memory_bits : int
        Bits of the block's memories.
    memory : str
        Where they are: ``bram``, ``spram`` or ``logic``.
    cycles : int
        The block alone for one image (0 where it has no cycles of its own).
    """

    layer: str
    macs: int
    multipliers: int
    dsp: int
    weight_bits: int
    memory_bits: int
    memory: str
    cycles: int

    def __post_init__(self):
        if self.memory not in MEMORY_KINDS:
            raise ValueError(f"memory must be one of {MEMORY_KINDS}, not {self.memory!r}")

    def to_dict(self) -> dict:
        """The row as ``--json`` prints it."""
        return asdict(self)
