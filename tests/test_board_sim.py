"""``lenet-fpga board-sim`` end to end: the ULX3S's own design (UART link + the baseline streaming
accelerator) in Verilator behind a pseudo-terminal, and the unchanged ``lenet-fpga board-run``
talking to it through pyserial. Every answer must equal the golden model's, computed here; on a
line that corrupts 1 % of the bytes too. ``board-run --bench`` measures the board's own cycles,
which must be the simulated accelerator's (``lenet-fpga sim``). (The iCEBreaker's design, which
loads its weights over the line first, is in the slow set.)"""

import json
from pathlib import Path

import numpy as np
import pytest

from lenet_fpga.boards.configure import design_config
from lenet_fpga.boards.platforms import board
from lenet_fpga.cli import main
from lenet_fpga.model import golden, images, weights
from lenet_fpga.model.errors import InputError
from lenet_fpga.sim import runner
from lenet_fpga.sim.board_sim import BoardSim, LineNoise, simulated_link
from lenet_fpga.sim.network import stream

pytestmark = pytest.mark.verilator
DIVISOR = 4  # the fewest cycles per bit the UART takes: the fastest simulated line
WRAP_WEIGHTS = Path(weights.__file__).parent / "assets" / "lenet5_wrap.npz"


@pytest.fixture(scope="module")
def verilator():
    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))


def config_of(name: str, ws):
    return design_config(ws, board=board(name))


def design(name: str):
    ws = weights.load()
    return ws, simulated_link(ws, config_of(name, ws), DIVISOR, board(name).clock_hz)


def board_run(capsys, port: str, *options) -> tuple[int, dict]:
    code = main(["board-run", "--port", port, "--json", *options])
    return code, json.loads(capsys.readouterr().out)


def check_golden(result: dict, ws, n: int) -> None:
    """Every board answer equals the golden model's, computed here, for the first ``n`` digits."""
    digits = images.load_image_set().head(n)
    expected = golden.forward(digits.images, ws.params, ws.arithmetic, ws.network)
    got = np.array([e["board_logits"] for e in result["images"]])
    assert got.shape == expected.shape and (got == expected).all()
    assert [e["board_class"] for e in result["images"]] == golden.classify(expected).tolist()


def test_board_run_on_the_simulated_ulx3s(verilator, sim_build, capsys):
    """The 40 shipped digits over a clean simulated line: all complete, bit-exact, nothing
    spoiled. Then
    the wrap-trained weights loaded over the line (45 KB) and three digits answered with them, in
    the board's arithmetic."""
    ws, link = design("ulx3s-85f")
    with BoardSim(link, LineNoise(), build_root=sim_build) as sim:
        code, result = board_run(capsys, sim.port)
        total = result["total"]
        assert code == 0 and total["complete"] and total["images"] == 40 and total["mismatches"] == 0
        # A clean line spoils nothing; a loaded machine may stall the simulator past a wait
        # measured from its round trips, and that request is sent again (still bit-exact).
        assert set(total["retries"]) <= {"no reply"}, total["retries"]
        check_golden(result, ws, 40)

        code, result = board_run(capsys, sim.port, "--weights", str(WRAP_WEIGHTS), "--n", "3")
    other = weights.load(WRAP_WEIGHTS)
    assert code == 0 and result["total"]["complete"] and result["total"]["mismatches"] == 0
    check_golden(result, weights.WeightSet(other.params, ws.manifest), 3)  # the board's arithmetic


def sim_cycles(capsys, monkeypatch, sim_build, *options) -> int:
    """``lenet-fpga sim``'s cycles per image for the first shipped digit, one image at a time."""
    monkeypatch.setenv("LENET_FPGA_BUILD", str(sim_build))
    assert main(["sim", "--n", "1", "--simulator", "verilator", "--json", *options]) == 0
    return json.loads(capsys.readouterr().out)["total"]["cycles_per_image"]


def test_board_run_bench_on_the_simulated_ulx3s(verilator, sim_build, capsys):
    """``board-run --bench 5`` on the ULX3S design against ``lenet-fpga sim``'s back-to-back run
    (``sim.network.stream``, which ``sim --stream`` reports) of five copies of the digit, each
    started as soon as the pixel input closes, its pixels one a cycle from the cycle after: the
    first run takes the first image's cycles (it had the pipeline to itself: the latency that
    ``lenet-fpga sim`` measures one image at a time too), the bench the cycles from the first
    start to the last done, and its cycles per image are the mean gap between the dones.
    Images/s at the ULX3S's 25 MHz, which INFO reports."""
    ws, link = design("ulx3s-85f")
    assert link.info.clock_hz == 25_000_000
    with BoardSim(link, LineNoise(), build_root=sim_build) as sim:
        code, result = board_run(capsys, sim.port, "--bench", "5")
    bench = result["bench"]
    assert code == 0 and bench["match"] and bench["runs"] == 5
    digit = images.load_image_set().images[:1]
    run = stream(ws, np.repeat(digit, 5, axis=0), config_of("ulx3s-85f", ws), build_root=sim_build)
    assert run.cycles[0] == run.done_at[0] - run.taken[0] + 1, "stream's clock numbers count as the accelerator"
    assert bench["first_run_cycles"] == run.latency
    assert bench["total_cycles"] == run.done_at[-1] - run.taken[0] + 1
    assert bench["cycles_per_image"] == (run.done_at[-1] - run.done_at[0]) / 4
    assert (bench["clock_hz"], bench["clock_from"]) == (25e6, "INFO")
    assert bench["images_per_second"] == pytest.approx(25e6 / bench["cycles_per_image"])
    print(f"board-sim ULX3S bench: {bench}")


@pytest.mark.parametrize("n,flip,drop", [
    (8, 0.01, 0.0),
    (2, 0.05, 0.0),
    pytest.param(40, 0.01, 0.002, marks=pytest.mark.slow),
    pytest.param(40, 0.05, 0.0, marks=pytest.mark.slow),
    pytest.param(40, 0.02, 0.005, marks=pytest.mark.slow),
])
def test_board_run_on_a_noisy_line(verilator, sim_build, capsys, n, flip, drop):
    """1 % and 5 % of the bytes each way with a bit flipped (and, slow, some lost): the client
    measures the line, sends requests again and images in pieces sized to the error rate, waits
    as long as the simulator's measured round trips say (longer on a loaded machine) and gives up
    only after 30 s without a good reply; every answer is still bit-exact. (At 5 % a 59-byte
    CLASSIFY exchange gets through 0.95 ** 59 = 4.8 % of the time.)"""
    ws, link = design("ulx3s-85f")
    with BoardSim(link, LineNoise(flip=flip, drop=drop, seed=11), build_root=sim_build) as sim:
        code, result = board_run(capsys, sim.port, "--n", str(n))
    total = result["total"]
    assert code == 0 and total["complete"] and total["images"] == n and total["mismatches"] == 0, total
    check_golden(result, ws, n)
    # The noise was there, and was felt: about the fraction asked for flipped, requests sent again.
    stats = sim.stats
    flipped = stats["flipped"] / (stats["bytes_to_board"] + stats["bytes_to_host"])
    assert 0.6 * flip < flipped < 1.4 * flip, stats
    assert total["retries"].get("BAD_CRC", 0) > 0 and sum(total["retries"].values()) > n, total["retries"]
    print(f"board-sim, {flip:.0%} flipped, {drop:.1%} dropped: {n} digits at {total['images_per_second_over_link']} "
          f"digits/s, retries {total['retries']}")


@pytest.mark.slow
def test_board_run_on_the_simulated_icebreaker(verilator, sim_build, capsys, monkeypatch):
    """The compact design holds no weights after configuration: board-run loads them over the
    line (45 KB), then the answers are golden. Its runs do not overlap, and the next starts in
    the cycle of the last one's done: ``--bench 5`` takes exactly five times the cycles
    ``lenet-fpga sim`` measures for the digit, which is also the design's cycle model."""
    ws, link = design("icebreaker")
    assert not link.info.weights_valid and link.info.clock_hz == 12_000_000
    with BoardSim(link, LineNoise(), build_root=sim_build) as sim:
        code, result = board_run(capsys, sim.port, "--board", "icebreaker", "--n", "5")
        assert code == 0 and result["total"]["complete"] and result["total"]["mismatches"] == 0
        check_golden(result, ws, 5)
        code, result = board_run(capsys, sim.port, "--board", "icebreaker", "--bench", "5")
    bench = result["bench"]
    one = sim_cycles(capsys, monkeypatch, sim_build, "--design", "compact")
    assert one == link.accelerator.cycles_per_image
    assert code == 0 and bench["match"] and bench["first_run_cycles"] == bench["cycles_per_image"] == one
    assert bench["total_cycles"] == 5 * one and bench["images_per_second"] == pytest.approx(12e6 / one)
    print(f"board-sim iCEBreaker bench: {bench}")


def test_board_run_on_the_simulated_icebreaker_with_weights_in_its_bitstream(verilator, sim_build, capsys,
                                                                            monkeypatch):
    """A compressed network that fits the UP5K's block RAM is built into the bitstream (the
    default): the board classifies right after configuration, board-run --weights finds them
    there and loads nothing, the answers are golden, and the bench is the cycle model's."""
    path = weights.ASSETS / "lenet5_pruned_pow2.npz"
    ws = weights.load(path)
    link = simulated_link(ws, config_of("icebreaker", ws), DIVISOR, board("icebreaker").clock_hz)
    assert link.info.weights_valid and link.info.weights_fixed
    with BoardSim(link, LineNoise(), build_root=sim_build) as sim:
        code, result = board_run(capsys, sim.port, "--board", "icebreaker", "--weights", str(path), "--n", "3")
        assert code == 0 and result["total"]["complete"] and result["total"]["mismatches"] == 0
        check_golden(result, ws, 3)
        code, result = board_run(capsys, sim.port, "--board", "icebreaker", "--weights", str(path), "--bench", "3")
    bench = result["bench"]
    assert code == 0 and bench["match"] and bench["first_run_cycles"] == link.accelerator.cycles_per_image
    assert bench["total_cycles"] == 3 * link.accelerator.cycles_per_image


@pytest.mark.parametrize("options,message", [
    (["--divisor", "3"], "at least 4 clock cycles per bit"),
    (["--flip", "2"], "--flip: must be a fraction from 0 to 1"),
    (["--flip", "nan"], "--flip: must be a finite number"),
    (["--flip", "0.6", "--drop", "0.6"], "more than all the bytes"),
])
def test_board_sim_refuses_bad_options(capsys, options, message):
    try:
        code = main(["board-sim", *options])
    except SystemExit as e:  # argparse refuses a value its type does not take
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
