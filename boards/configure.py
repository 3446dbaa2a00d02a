"""The design a user's generator options make, where the answer depends on a board.

Two choices are the board's, not the generator's: whether a compressed network's weights fit the
iCE40 UP5K's block RAM beside the UART link's frame buffer (``--compact-weights auto``), and how
many multipliers a board's FPGA has in DSP blocks (a streaming design that needs more builds its
later layers' from logic). Every command that turns options into a design configuration calls
``design_config`` here, so those answers are given once.
"""

from __future__ import annotations

from dataclasses import replace

from ..hdl import compact
from ..hdl.designs import GeneratorOptions, design
from ..hdl.weight_rom import ebr_blocks, rom_layout
from ..model import arith
from ..model.weights import WeightSet
from .platforms import BOARDS, Board
from .protocol import frame_buffer_bytes

ICE40_BLOCK_RAM_BITS = 4096  # one SB_RAM40_4K


def weights_fit_up5k(weights: WeightSet, config: compact.CompactConfig) -> bool:
    """Whether the weights in block RAM (``weights_in_bitstream``) fit the iCE40 UP5K's block
    RAMs beside the only other one the design then has: a board link's frame buffer (the pixel
    table is in logic and the feature maps in SPRAM)."""
    plans, _ = compact.plan_layers(weights.network, config.lanes)
    layout = rom_layout(plans, compact.weight_words(weights.params, plans, config.lanes), weights.codes, config.lanes)
    link_buffer = ebr_blocks(arith.WIDTH, frame_buffer_bytes(weights.network.pixels))
    return layout.blocks + link_buffer <= BOARDS["icebreaker"].block_ram_bits // ICE40_BLOCK_RAM_BITS


def design_config(weights: WeightSet, options: GeneratorOptions = GeneratorOptions(), board: Board | None = None):
    """The configuration ``options`` ask for, for ``weights``' network. With a ``board``, the
    design is the one it builds (``Board.accelerator``), and a streaming design whose multipliers
    need more DSP blocks than its FPGA has builds the later layers' from logic, unless
    ``options.soft_multipliers`` names the layers itself."""
    if board is not None:
        options = replace(options, design=board.accelerator)
    chosen = design(options.design)
    config = chosen.configure(weights, options, weights_fit=weights_fit_up5k)
    if board is not None and options.soft_multipliers is None:
        config = chosen.fit_dsp_blocks(config, weights, board.multipliers)
    return config
