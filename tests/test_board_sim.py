"""``lenet-fpga board-sim`` end to end: the ULX3S's own design (UART link + the baseline streaming
accelerator) in Verilator behind a pseudo-terminal, and the unchanged ``lenet-fpga board-run``
talking to it through pyserial. Every answer must equal the golden model's, computed here; on a
line that corrupts 1 % of the bytes too. (The iCEBreaker's design, which loads its weights over
the line first, is in the slow set.)"""

import json
from pathlib import Path

import numpy as np
import pytest

from lenet_fpga.boards.build import board_config
from lenet_fpga.boards.platforms import board
from lenet_fpga.cli import main
from lenet_fpga.model import golden, images, weights
from lenet_fpga.model.errors import InputError
from lenet_fpga.sim import runner
from lenet_fpga.sim.board_sim import BoardSim, LineNoise, simulated_link

pytestmark = pytest.mark.verilator
DIVISOR = 4  # the fewest cycles per bit the UART takes: the fastest simulated line
WRAP_WEIGHTS = Path(weights.__file__).parent / "assets" / "lenet5_wrap.npz"


@pytest.fixture(scope="module")
def verilator():
    try:
        runner.prepare_simulator("verilator")
    except InputError as e:
        pytest.skip(str(e))


def design(name: str):
    from types import SimpleNamespace

    ws = weights.load()
    options = SimpleNamespace(preset="baseline", lanes=None, filters=None, soft_multipliers=None, rounding=None,
                              overflow=None)
    return ws, simulated_link(ws, board_config(board(name), options, ws), DIVISOR)


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
    """The 40 shipped digits over a clean simulated line: all complete, bit-exact, no retry. Then
    the wrap-trained weights loaded over the line (45 KB) and three digits answered with them, in
    the board's arithmetic."""
    ws, link = design("ulx3s-85f")
    with BoardSim(link, LineNoise(), build_root=sim_build) as sim:
        code, result = board_run(capsys, sim.port)
        total = result["total"]
        assert code == 0 and total["complete"] and total["images"] == 40 and total["mismatches"] == 0
        assert total["retries"] == {}
        check_golden(result, ws, 40)

        code, result = board_run(capsys, sim.port, "--weights", str(WRAP_WEIGHTS), "--n", "3")
    other = weights.load(WRAP_WEIGHTS)
    assert code == 0 and result["total"]["complete"] and result["total"]["mismatches"] == 0
    check_golden(result, weights.WeightSet(other.params, ws.manifest), 3)  # the board's arithmetic


@pytest.mark.parametrize("n,drop", [
    (8, 0.0),
    pytest.param(40, 0.0, marks=pytest.mark.slow),
    pytest.param(40, 0.002, marks=pytest.mark.slow),
])
def test_board_run_on_a_noisy_line(verilator, sim_build, capsys, n, drop):
    """1 % of the bytes each way with a bit flipped (and, slow, 0.2 % lost): the client sends
    requests again and images in pieces, and every answer is still bit-exact."""
    ws, link = design("ulx3s-85f")
    with BoardSim(link, LineNoise(flip=0.01, drop=drop, seed=11), build_root=sim_build) as sim:
        code, result = board_run(capsys, sim.port, "--n", str(n))
    total = result["total"]
    assert code == 0 and total["complete"] and total["images"] == n and total["mismatches"] == 0, total
    check_golden(result, ws, n)
    # The noise was there, and was felt: about 1 % of the bytes flipped, requests sent again.
    stats = sim.stats
    flipped = stats["flipped"] / (stats["bytes_to_board"] + stats["bytes_to_host"])
    assert 0.006 < flipped < 0.014, stats
    assert total["retries"].get("BAD_CRC", 0) > 0 and sum(total["retries"].values()) > n, total["retries"]


@pytest.mark.slow
def test_board_run_on_the_simulated_icebreaker(verilator, sim_build, capsys):
    """The compact design holds no weights after configuration: board-run loads them over the
    line (45 KB), then the answers are golden."""
    ws, link = design("icebreaker")
    assert not link.info.weights_valid
    with BoardSim(link, LineNoise(), build_root=sim_build) as sim:
        code, result = board_run(capsys, sim.port, "--board", "icebreaker", "--n", "5")
    assert code == 0 and result["total"]["complete"] and result["total"]["mismatches"] == 0
    check_golden(result, ws, 5)


@pytest.mark.parametrize("options,message", [
    (["--divisor", "3"], "at least 4 clock cycles per bit"),
    (["--flip", "2"], "--flip must be a fraction"),
    (["--flip", "nan"], "--flip must be a fraction"),
    (["--flip", "0.6", "--drop", "0.6"], "more than all the bytes"),
])
def test_board_sim_refuses_bad_options(capsys, options, message):
    assert main(["board-sim", *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
