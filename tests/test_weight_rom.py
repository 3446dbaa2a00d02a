"""The compact design's weights in block RAM (``hdl/weight_rom.py``): the layout of the banks and
the bias table in Python, the ROM's decode of every code of every restriction in Amaranth's
simulator, and the choice ``--compact-weights auto`` makes. The whole design with these
weights runs against the golden model in test_compact_rtl.py."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from lenet_fpga.boards.request_handler import RequestHandler
from lenet_fpga.boards.configure import design_config, weights_fit_up5k
from lenet_fpga.hdl.designs import GeneratorOptions
from lenet_fpga.hdl import compact
from lenet_fpga.hdl.compact import CompactConfig, plan_layers, weight_words
from lenet_fpga.hdl.accelerator import AcceleratorSignature
from lenet_fpga.hdl.compact_parts import WEIGHT_ADDRESS_BITS
from lenet_fpga.hdl.weight_rom import ROM_LATENCY, WeightROM, ebr_blocks, rom_layout
from lenet_fpga.model import weights
from lenet_fpga.model.codes import PLAIN, PowerOfTwo, Ternary, Uniform, codes_to_manifest
from lenet_fpga.model.network import ConvSpec, Network

LANES = 8
# conv1 and fc2 share the 3-bit bank with different decodes; conv2 has more weights (270)
# than there are 8-bit codes, so every code of every form is in the ROM.
NETWORK = Network(convs=(ConvSpec(5, kernel=3), ConvSpec(6, kernel=3)), hidden=(12,), classes=10, image_size=14)
CODES = {"conv1": PowerOfTwo((0, 2, 5)), "conv2": PLAIN, "fc1": Ternary(37), "fc2": Uniform(3, 2)}


def every_code_weights(seed: int = 0) -> weights.WeightSet:
    """Weights of ``NETWORK`` that use every level of each layer's restriction, shuffled."""
    rng = np.random.default_rng(seed)
    params = {}
    for layer in NETWORK.layers:
        levels = CODES[layer.name].levels
        n = int(np.prod(layer.weight_shape))
        assert n >= len(levels), f"{layer.name} is too small to hold every code"
        params[f"{layer.name}.weight"] = rng.permutation(levels[np.arange(n) % len(levels)]).reshape(
            layer.weight_shape).astype(np.int8)
        params[f"{layer.name}.bias"] = rng.integers(-128, 128, layer.weight_shape[0]).astype(np.int8)
    manifest = weights.make_manifest(weights.load().arithmetic, NETWORK, codes=codes_to_manifest(CODES))
    return weights.WeightSet(params, manifest)


def test_block_ram_shapes():
    # iCE40 SB_RAM40_4K: 256x16, 512x8, 1024x4, 2048x2; the cheapest shape wins.
    assert ebr_blocks(16, 256) == ebr_blocks(8, 512) == ebr_blocks(2, 2048) == 1
    assert ebr_blocks(16, 257) == 2
    assert ebr_blocks(24, 3408) == 21  # 3 x 7 of 512x8 (256x16 would take 2 x 14)
    assert ebr_blocks(64, 325) == 8
    assert ebr_blocks(32, 0) == 0


@pytest.mark.parametrize("name", ["lenet5_pruned_pow2", "lenet5_small", "lenet5_lowbit", "lenet5_compact"])
def test_layout_holds_the_weight_image(name):
    """Each bank holds its layers' tap words at their code width, each layer from its rebased
    ``weight_base``; decoding them gives the SPRAM image's codes back; the bias table holds the
    bias words in image order."""
    ws = weights.load(weights.ASSETS / f"{name}.npz")
    plans, _ = plan_layers(ws.network, LANES)
    words = weight_words(ws.params, plans, LANES)
    layout = rom_layout(plans, words, ws.codes, LANES)
    assert sorted(bits for bits, _, _ in layout.banks) == sorted({r.bits for r in ws.codes.values()})
    biases = []
    for i, (plan, rebased) in enumerate(zip(plans, layout.plans)):
        bits, names, contents = layout.banks[layout.bank_of(i)]
        assert plan.name in names and bits == ws.codes[plan.name].bits
        table = ws.codes[plan.name].decode_table
        for g in range(plan.groups):
            biases.append(tuple(words[plan.weight_base + g * plan.terms]))
            for t in range(1, plan.terms):
                stored = contents[rebased.weight_base + g * (plan.terms - 1) + t - 1]
                codes = [int(table[(stored >> (bits * lane)) & ((1 << bits) - 1)]) for lane in range(LANES)]
                assert codes == list(words[plan.weight_base + g * plan.terms + t]), (plan.name, g, t)
    assert list(layout.biases) == biases
    for bits, names, contents in layout.banks:  # a bank's layers follow each other, nothing else
        assert len(contents) == sum(p.groups * (p.terms - 1) for p in plans if p.name in names)
    assert layout.bits == sum(len(c) * LANES * b for b, _, c in layout.banks)


def test_block_rams_of_the_shipped_networks():
    """What decides ``--compact-weights auto``: the compressed networks that fit the UP5K's 30
    block RAMs beside the link's buffer (4; the pixel table is in logic)."""
    blocks = {}
    for name in ("lenet5_pruned_pow2", "lenet5_small", "lenet5_lowbit", "lenet5_compact", "lenet5_saturate"):
        ws = weights.load(weights.ASSETS / f"{name}.npz")
        blocks[name] = compact.CompactConfig(weights_in_bitstream=True).build(ws).rom.blocks
        assert weights_fit_up5k(ws, CompactConfig()) == (blocks[name] <= 26), name
    assert blocks == {"lenet5_pruned_pow2": 23, "lenet5_small": 24, "lenet5_lowbit": 26, "lenet5_compact": 56,
                      "lenet5_saturate": 92}
    # The link's buffer as ``weights_fit_up5k`` counts it is the request handler's.
    handler = RequestHandler(AcceleratorSignature(Network()), 100, True, 0, 10_000)
    assert ebr_blocks(8, handler.buffer_depth) == 4


def test_rom_decodes_every_code_of_every_form():
    """Amaranth's simulator: every word of every layer through ``WeightROM`` (the tap words at
    their rebased addresses, the bias words from the bias table) comes out as the SPRAM image's
    int8 codes, ``ROM_LATENCY`` cycles after its address."""
    ws = every_code_weights()
    plans, _ = plan_layers(ws.network, LANES)
    words = weight_words(ws.params, plans, LANES)
    layout = rom_layout(plans, words, ws.codes, LANES)
    reads = []  # (layer, addr, bias_addr, bias, expected codes)
    group_number = 0
    for i, (plan, rebased) in enumerate(zip(plans, layout.plans)):
        for g in range(plan.groups):
            first_tap = rebased.weight_base + g * (plan.terms - 1)
            for t in range(plan.terms):
                addr = first_tap + max(0, t - 1)
                reads.append((i, addr, group_number, t == 0, list(words[plan.weight_base + g * plan.terms + t])))
            group_number += 1
    dut = WeightROM(layout, WEIGHT_ADDRESS_BITS)
    seen = []

    async def bench(ctx):
        for k in range(len(reads) + ROM_LATENCY):
            if k < len(reads):
                layer, addr, bias_addr, bias, _ = reads[k]
                ctx.set(dut.layer, layer)
                ctx.set(dut.addr, addr)
                ctx.set(dut.bias_addr, bias_addr)
                ctx.set(dut.bias, bias)
            await ctx.tick()
            if k >= ROM_LATENCY - 1:
                seen.append([ctx.get(dut.data[lane]) for lane in range(LANES)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for k, (layer, _, _, _, expected) in enumerate(reads):
        assert seen[k] == expected, f"read {k} (layer {plans[layer].name}): {seen[k]} != {expected}"
    levels = {name: set(r.levels.tolist()) for name, r in CODES.items()}
    for name in CODES:  # every level was read, so the test covered every decode
        used = {int(c) for plan_index, *_, codes in reads if plans[plan_index].name == name for c in codes}
        assert levels[name] <= used | {0}, name


def test_auto_choice_on_the_command_line():
    def config(name, where):
        options = GeneratorOptions(design="compact", compact_weights=where)
        return design_config(weights.load(weights.ASSETS / f"{name}.npz"), options)

    assert config("lenet5_pruned_pow2", "auto").weights_in_bitstream
    assert not config("lenet5_compact", "auto").weights_in_bitstream  # 56 block RAMs
    assert not config("lenet5_pruned_pow2", "spram").weights_in_bitstream
    assert config("lenet5_compact", "bitstream").weights_in_bitstream  # in simulation any size builds
