"""The compact accelerator (hdl/compact.py): its schedule and weight image in Python, then the
RTL against the golden model, weights sent through the ``weights`` port by the harness's ROMs.

Each arithmetic mode gets one harness build holding two weight banks (large random weights and
the shipped weights), shared by the tests of that mode. Icarus (~14 k cycles/s here) runs one or
two images per test (an image is ~40 k cycles, a weight load ~45 k); Verilator runs more, all 40
shipped digits in the reload test.
"""

import itertools

import numpy as np
import pytest

from lenet_fpga.hdl import accelerator
from lenet_fpga.hdl.compact import CompactAccelerator, CompactConfig, plan_layers
from lenet_fpga.model import arith, golden, images, weights
from lenet_fpga.model.network import LENET5, ConvLayer
from lenet_fpga.sim.network import simulate_banks
from rtl_checks import check_bit_exact

SAMPLES = images.load_image_set()
MODES = list(arith.ARITHMETICS)
RANDOM, SHIPPED = 0, 1  # weight banks of every harness
# Behind the board's link the first pixel comes a cycle later than the cycle model assumes (the
# link feeds the pixels through a register, boards/request_handler.py), so an image counts one more.
LINK_PIXEL_DELAY = 1


def _banks(mode: arith.Arithmetic, random_params) -> list[weights.WeightSet]:
    """Large random weights (they overflow in every mode) and the shipped set of that overflow mode."""
    shipped = weights.load(weights.ASSETS / f"lenet5_{mode.overflow}.npz")
    return [weights.WeightSet(random_params(np.random.default_rng(11), 127), {}), shipped]


def _check(run, label):
    check_bit_exact(run, label)
    phases = np.array(list(run.model.values()))
    assert (run.cycles == phases.sum()).all(), f"{label}: cycles {run.cycles.tolist()}, model {phases.sum()}"
    np.testing.assert_array_equal(run.measured_phases(), np.broadcast_to(phases, run.measured_phases().shape),
                                  err_msg=f"{label}: cycles per phase differ from the model {run.model}")


# --------------------------------------------------------------------------------------------
# Schedule, weight image, cycle model (no simulator)


def _loop_offsets(levels) -> list[int]:
    """The pointer offsets a (count, delta) loop nest visits, in order."""
    counts = [count for count, _ in levels]
    counters, pointer, out = [0] * len(levels), 0, [0]
    for _ in range(int(np.prod(counts)) - 1):
        level = next(i for i, c in enumerate(counters) if c < counts[i] - 1)
        counters[level] += 1
        counters[:level] = [0] * level
        pointer += levels[level][1]
        out.append(pointer)
    return out


@pytest.mark.parametrize("lanes", [8, 5])
def test_loops_read_every_conv_window_in_pooling_order(lanes):
    plans, _ = plan_layers(LENET5, lanes)
    for layer, plan in zip(LENET5.layers, plans):
        reads = [[plan.act_base + p + t for t in _loop_offsets(plan.tap_loops)]
                 for p in _loop_offsets(plan.position_loops)]
        if isinstance(layer, ConvLayer):
            w, k = layer.in_size, layer.kernel
            expected = [[plan.act_base + c * w * w + (2 * py + dy + ky) * w + 2 * px + dx + kx
                         for c, ky, kx in itertools.product(range(layer.in_channels), range(k), range(k))]
                        for py, px, dy, dx in itertools.product(range(layer.out_size), range(layer.out_size),
                                                                range(2), range(2))]
        else:
            expected = [[plan.act_base + i for i in range(layer.in_features)]]
        assert reads == expected, plan.name


def test_feature_maps_ping_pong_without_overlap():
    plans, depth = plan_layers(LENET5, 8)
    for before, after in zip(plans, plans[1:]):
        assert after.act_base == before.out_base
    for plan, layer in zip(plans[:-1], LENET5.layers):
        reads = range(plan.act_base, plan.act_base + (layer.in_channels * layer.in_size**2 if isinstance(layer, ConvLayer)
                                                      else layer.in_features))
        writes = range(plan.out_base, plan.out_base + layer.out_features)
        assert not set(reads) & set(writes) and max(writes) < depth, plan.name
    assert depth == 784 + 864  # region 0: the image (largest even map); region 1: conv1's 6x12x12


@pytest.mark.parametrize("lanes", [8, 3])
def test_weight_image_byte_by_byte(lanes, random_params):
    """Every byte of the image, decoded with the documented order, is the right weight, bias or 0."""
    rng = np.random.default_rng(5)
    ws = weights.WeightSet(random_params(rng, 127), {})
    config = CompactConfig(lanes=lanes)
    image = accelerator.weight_image(ws, config)
    plans, _ = plan_layers(LENET5, lanes)
    assert len(image) == sum(p.words for p in plans) * lanes
    codes = np.frombuffer(image, np.int8).astype(np.int64)
    word_of_layer = np.cumsum([0] + [p.words for p in plans])
    for index, code in enumerate(codes):
        word, lane = divmod(index, lanes)
        k = np.searchsorted(word_of_layer, word, side="right") - 1
        plan = plans[k]
        group, term = divmod(word - plan.weight_base, plan.terms)
        output = group * lanes + lane
        if output >= plan.outputs:
            expected = 0
        elif term == 0:
            expected = ws.params[f"{plan.name}.bias"][output]
        else:
            expected = ws.params[f"{plan.name}.weight"].reshape(plan.outputs, -1)[output, term - 1]
        assert code == expected, (index, plan.name, group, term, lane)


def test_cycle_model_and_report():
    """The cycle model and the SPRAM words of LeNet-5 on 8 lanes, worked out by hand from the
    module docstring: per layer ``groups * positions * (1 + taps)`` array cycles, ``lanes + 4``
    to drain between layers, ``4 + lanes of the last group`` after the last one."""
    ws = weights.load()
    rows = accelerator.layer_report(ws, CompactConfig())
    by_name = {row.layer: row for row in rows}
    expected = {
        "input": 784 + 2,                     # the pixels, one in the quantizer, one to set up
        "conv1": 1 * 576 * (1 + 25) + 8 + 4,  # 6 filters: 1 group; 24*24 positions
        "conv2": 2 * 64 * (1 + 150) + 8 + 4,  # 16 filters: 2 groups; 8*8 positions; 6*25 taps
        "fc1": 15 * 1 * (1 + 256) + 8 + 4,    # 120 outputs: 15 groups
        "fc2": 11 * 1 * (1 + 120) + 8 + 4,    # 84 outputs: 11 groups (the last has 4)
        "fc3": 2 * 1 * (1 + 84) + 4 + 2,      # 10 outputs: 2 groups; the last logit is lane 1 of group 2
    }
    assert {name: by_name[name].cycles for name in expected} == expected
    total = sum(row.cycles for row in rows)
    assert total == accelerator.cycles_per_image(ws, CompactConfig()) == sum(expected.values()) == 40_500
    floor = LENET5.macs / 8
    assert total < 1.2 * floor  # one shared array of 8 multipliers, busy 87 % of the time
    # Weight words: a bias word and one word per tap for every group of every layer.
    words = 1 * 26 + 2 * 151 + 15 * 257 + 11 * 121 + 2 * 85
    assert words == 5_684
    spram = sum(row.memory_bits for row in rows if row.memory == "spram")
    assert spram == words * 8 * 8 <= 4 * 256 * 1024  # 8 lanes of 8 bits per word; four 256-kbit SPRAMs
    assert sum(row.memory_bits for row in rows if row.memory == "bram") <= 30 * 4096
    assert {row.multipliers for row in rows if row.macs} == {8}
    # The array's 8 DSP blocks are shared by every layer's row.
    assert {(row.dsp, row.weight_bits) for row in rows if row.macs} == {(8, 8)}
    assert CompactAccelerator(ws, CompactConfig()).dsp_blocks == 8


def test_cycle_model_of_the_network_shipped_for_the_compact_design():
    """lenet5_compact (4,8:120,84) keeps conv2 to the array's 8 lanes, so conv2 is one group:
    25,716 cycles, 1,050 images/s at the iCEBreaker build's 27 MHz PLL clock."""
    ws = weights.load(weights.ASSETS / "lenet5_compact.npz")
    rows = {row.layer: row.cycles for row in accelerator.layer_report(ws, CompactConfig())}
    assert rows == {
        "input": 784 + 2,
        "conv1": 1 * 576 * (1 + 25) + 8 + 4,  # 4 filters: 1 group (half the lanes idle)
        "conv2": 1 * 64 * (1 + 100) + 8 + 4,  # 8 filters: 1 group; 4*25 taps
        "fc1": 15 * 1 * (1 + 128) + 8 + 4,    # 128 inputs (8 x 4 x 4), 120 outputs
        "fc2": 11 * 1 * (1 + 120) + 8 + 4,
        "fc3": 2 * 1 * (1 + 84) + 4 + 2,
        "feature maps": 0,
    }
    assert sum(rows.values()) == 25_716 and 27e6 / 25_716 > 1_000


def test_accelerator_contract():
    """The ``Accelerator`` interface: the same ports as the streaming design, weights to load."""
    from lenet_fpga.hdl.lenet import LeNetAccelerator

    ws = weights.load()
    acc = CompactAccelerator(ws, CompactConfig(ws.arithmetic, lanes=6))
    assert acc.weights_in_bitstream is False and acc.multipliers == 6 and acc.design == "compact"
    assert acc.network == LENET5 and acc.phases == len(LENET5.layers)
    streaming = LeNetAccelerator(ws)
    assert {name: member.flow for name, member in acc.signature.members.items()} == \
        {name: member.flow for name, member in streaming.signature.members.items()}
    assert acc.cycles_per_image == sum(acc.cycle_model().values()) and streaming.cycles_per_image is None


@pytest.mark.parametrize("lanes", [0, 9, True, 2.0])
def test_config_rejects_bad_lanes(lanes):
    with pytest.raises(ValueError, match="lanes"):
        CompactConfig(lanes=lanes)


def test_too_few_lanes_do_not_fit_the_spram():
    with pytest.raises(ValueError, match="weight words"):
        plan_layers(LENET5, 2)


# --------------------------------------------------------------------------------------------
# RTL against the golden model


def _n(simulator: str, icarus: int, verilator: int) -> int:
    return verilator if simulator == "verilator" else icarus


def test_shipped_weights_then_reload(simulator, sim_build, random_params):
    """Shipped weights on the sample digits, then different (random) weights, then the shipped
    ones again: each image matches the golden model of the weights loaded before it."""
    mode = weights.load().arithmetic
    n, m = _n(simulator, 2, len(SAMPLES)), _n(simulator, 1, 2)
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, (m, 28, 28), dtype=np.uint8)
    segments = [(SHIPPED, n), (RANDOM, m)] + ([(SHIPPED, 1)] if simulator == "verilator" else [])
    imgs = np.concatenate([SAMPLES.images[:n], noise, SAMPLES.images[:1]])[: sum(k for _, k in segments)]
    banks = _banks(mode, random_params)
    run = simulate_banks(banks, segments, imgs, CompactConfig(mode), simulator=simulator, build_root=sim_build)
    _check(run, f"shipped weights and reloads, {simulator}")
    assert (run.rtl_class[:n] == SAMPLES.labels[:n]).mean() >= 0.9
    assert not (run.golden_logits[n : n + m] == golden.forward(noise, banks[SHIPPED].params, mode)).all(), \
        "the reloaded weights must change the answers, or the reload proves nothing"


# CI runs one mode (the requantizer's modes have their own tests in test_compact_parts.py); -m slow all four.
@pytest.mark.parametrize("mode", [m if m == MODES[1] else pytest.param(m, marks=pytest.mark.slow) for m in MODES],
                         ids=lambda a: f"{a.rounding}-{a.overflow}")
def test_large_random_weights_every_mode(mode, simulator, sim_build, random_params):
    """Large weights make every layer saturate or wrap: the corner cases of the arithmetic."""
    banks = _banks(mode, random_params)
    rng = np.random.default_rng(11)
    imgs = np.stack([rng.integers(0, 256, (28, 28), dtype=np.uint8), SAMPLES.images[0]])[: _n(simulator, 1, 2)]
    _, trace = golden.forward(imgs, banks[RANDOM].params, mode, trace=True)
    acc = np.concatenate([trace[f"{n}.acc"].reshape(-1) for n in ("conv1", "conv2", "fc1", "fc2")])
    assert (np.abs(acc) >= (arith.QMAX + 1) << arith.FRAC_BITS).any(), "no overflow: the test would prove nothing"
    assert (np.concatenate([trace[n].reshape(-1) for n in ("conv2", "fc1", "fc2")]) > 0).any()
    run = simulate_banks(banks, [(RANDOM, len(imgs))], imgs, CompactConfig(mode), simulator=simulator,
                           build_root=sim_build)
    _check(run, f"random weights, {mode.describe()}, {simulator}")


def test_wrap_weights_in_wrap_mode(simulator, sim_build, random_params):
    ws = weights.load(weights.ASSETS / "lenet5_wrap.npz")
    mode = ws.arithmetic
    assert mode.overflow is arith.Overflow.WRAP
    n = _n(simulator, 1, 8)
    run = simulate_banks(_banks(mode, random_params), [(SHIPPED, n)], SAMPLES.images[:n], CompactConfig(mode),
                           simulator=simulator, build_root=sim_build)
    _check(run, f"wrap weights on {simulator}")


@pytest.mark.slow  # CI simulates 8 lanes everywhere; an odd lane count in the slow set
def test_five_lanes(simulator, sim_build, random_params):
    """Odd lanes: half-used SPRAM words, and groups with fewer outputs than lanes in every layer
    (6 = 5 + 1 conv1 channels, 16 = 3 x 5 + 1, 84 = 16 x 5 + 4, 10 = 2 x 5)."""
    mode = arith.Arithmetic()
    config = CompactConfig(mode, lanes=5)
    banks = _banks(mode, random_params)
    imgs = np.stack([np.random.default_rng(4).integers(0, 256, (28, 28), dtype=np.uint8), SAMPLES.images[3]])
    segments = [(RANDOM, 1)] + ([(SHIPPED, 1)] if simulator == "verilator" else [])
    run = simulate_banks(banks, segments, imgs[: len(segments)], config, simulator=simulator,
                           build_root=sim_build)
    _check(run, f"5 lanes, {simulator}")
    ws = banks[SHIPPED]
    assert run.cycles[0] == accelerator.cycles_per_image(ws, config) > accelerator.cycles_per_image(ws, CompactConfig())


@pytest.mark.slow
def test_thousand_mnist_test_images_verilator(sim_build, mnist_dir):
    from lenet_fpga.model import mnist

    split = mnist.load("test", mnist_dir)
    ws = weights.load()
    run = simulate_banks([ws], [(0, 1000)], split.images[:1000], CompactConfig(ws.arithmetic),
                           simulator="verilator", build_root=sim_build)
    _check(run, "1000 MNIST test images")
    assert (run.rtl_class == split.labels[:1000]).mean() >= 0.97


@pytest.mark.slow
@pytest.mark.verilator
def test_behind_the_uart_link_with_weights_over_the_line(sim_build):
    """The iCEBreaker's design in simulation: UARTLink + CompactAccelerator, the host's
    ``BoardClient`` on a simulated serial line. CLASSIFY is refused until weights are loaded;
    ``load_weights`` sends the whole image in LOAD_WEIGHTS frames, then the RESULTs are golden."""
    from amaranth.back import verilog

    from lenet_fpga.boards import protocol
    from lenet_fpga.boards.link import UARTLink
    from lenet_fpga.model.errors import InputError
    from lenet_fpga.sim import runner

    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))
    ws = weights.load()
    config = CompactConfig(ws.arithmetic)
    divisor = 8  # cycles per bit: the link does not care
    link = UARTLink(CompactAccelerator(ws, config), divisor, 50 * divisor)
    imgs = SAMPLES.images[:2]
    logits = golden.forward(imgs, ws.params, ws.arithmetic)
    cycles = accelerator.cycles_per_image(ws, config) + LINK_PIXEL_DELAY
    data = {
        "divisor": divisor, "timeout_cycles": link.timeout_cycles, "frame_cycles": link.frame_cycles,
        "watchdog_cycles": link.watchdog_cycles, "seed": 9500, "gap_bits": 0.0,
        "images": imgs, "logits": logits, "klass": golden.classify(logits), "logits_new": logits,
        "info": np.frombuffer(link.info.encode(), np.uint8), "cycles_min": cycles, "cycles_max": cycles,
        "in_bitstream": False, "linger_cycles": 0, "chunk": link.sizes.max_chunk,
        "weight_image": np.frombuffer(accelerator.weight_image(ws, config), np.uint8),
        "weights_id": protocol.weights_id(ws.params),
    }
    runner.run(verilog.convert(link, name="uart_link"), "uart_link", "lenet_fpga.sim.tb_link", data,
               simulator="verilator", build_root=sim_build, testcase="link_load")


# --------------------------------------------------------------------------------------------
# Weights in block RAM (hdl/weight_rom.py): in the bitstream, each layer at its code width


def _bitstream_config(ws) -> CompactConfig:
    return CompactConfig(ws.arithmetic, weights_in_bitstream=True)


@pytest.mark.parametrize("name", ["lenet5_pruned_pow2", "lenet5_lowbit"])
def test_compressed_weights_in_block_ram(name, simulator, sim_build):
    """Power-of-two codes everywhere (4- and 3-bit banks), and 8-bit conv layers with ternary and
    3-bit fc layers (three banks): no load, bit-exact, the cycles the model says (one more per
    layer than with SPRAM: the decode's register)."""
    from lenet_fpga.sim.network import simulate

    ws = weights.load(weights.ASSETS / f"{name}.npz")
    config = _bitstream_config(ws)
    accelerator = config.build(ws)
    assert accelerator.weights_in_bitstream and not accelerator.weights_loadable
    spram = accelerator.cycles_per_image - CompactConfig(ws.arithmetic).build(ws).cycles_per_image
    assert spram == len(ws.network.layers)
    n = _n(simulator, 1, 8)
    run = simulate(ws, SAMPLES.images[:n], config, simulator=simulator, build_root=sim_build)
    _check(run, f"{name} from block RAM, {simulator}")


def test_large_random_weights_in_block_ram(simulator, sim_build, random_params):
    """8-bit random weights that overflow every layer, from block RAM (one 8-bit bank): the
    saturation corners through the ROM's path."""
    from lenet_fpga.sim.network import simulate

    mode = arith.Arithmetic()
    ws = weights.WeightSet(random_params(np.random.default_rng(12), 127), {})
    imgs = np.random.default_rng(12).integers(0, 256, (_n(simulator, 1, 3), 28, 28), dtype=np.uint8)
    _, trace = golden.forward(imgs, ws.params, mode, trace=True)
    assert (np.abs(trace["conv2.acc"]) >= (arith.QMAX + 1) << arith.FRAC_BITS).any(), "no overflow"
    run = simulate(ws, imgs, CompactConfig(mode, weights_in_bitstream=True), simulator=simulator,
                   build_root=sim_build)
    _check(run, f"random weights from block RAM, {simulator}")


@pytest.mark.verilator
def test_behind_the_uart_link_with_weights_in_the_bitstream(sim_build):
    """The iCEBreaker's design with ``lenet5_pruned_pow2`` in block RAM behind the link: INFO says
    the weights are valid, in the bitstream and fixed, CLASSIFY answers right away (no load),
    bit-exact, and a load is refused (WEIGHTS_FIXED) without changing that."""
    from amaranth.back import verilog

    from lenet_fpga.boards import protocol
    from lenet_fpga.boards.link import UARTLink
    from lenet_fpga.model.errors import InputError
    from lenet_fpga.sim import runner

    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))
    ws = weights.load(weights.ASSETS / "lenet5_pruned_pow2.npz")
    accelerator = _bitstream_config(ws).build(ws)
    divisor = 8
    link = UARTLink(accelerator, divisor, 50 * divisor, weights_id=protocol.weights_id(ws.params))
    assert link.info.weights_valid and link.info.weights_in_bitstream and link.info.weights_fixed
    imgs = SAMPLES.images[:2]
    logits = golden.forward(imgs, ws.params, ws.arithmetic, ws.network)
    cycles = accelerator.cycles_per_image + LINK_PIXEL_DELAY
    data = {
        "divisor": divisor, "timeout_cycles": link.timeout_cycles, "frame_cycles": link.frame_cycles,
        "watchdog_cycles": link.watchdog_cycles, "seed": 9600, "gap_bits": 0.0,
        "images": imgs, "logits": logits, "klass": golden.classify(logits),
        "info": np.frombuffer(link.info.encode(), np.uint8), "cycles_min": cycles, "cycles_max": cycles,
        "in_bitstream": True, "linger_cycles": 0, "chunk": link.sizes.max_chunk,
    }
    runner.run(verilog.convert(link, name="uart_link"), "uart_link", "lenet_fpga.sim.tb_link", data,
               simulator="verilator", build_root=sim_build, testcase="link_ping,link_images,link_fixed_weights")
