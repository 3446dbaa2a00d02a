"""board-run's comparison logic against a pretend board that answers like the RTL link does
(``fake_board.py``; the RTL link itself is tested bit by bit over a simulated UART in
test_link_rtl.py, and board-run against the simulated board in test_board_sim.py), its weight
loading (``--weights``), and what it keeps when a run fails half-way."""

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from fake_board import FakeBoard
from lenet_fpga.boards import protocol
from lenet_fpga.boards.host import BoardClient
from lenet_fpga.boards.protocol import FrameType
from lenet_fpga.hdl.designs import GeneratorOptions
from lenet_fpga.boards.run import board_weight_image, load_board_weights, run_on_board
from lenet_fpga.model import golden, images, weights
from lenet_fpga.model.errors import InputError

WRAP_WEIGHTS = Path(weights.__file__).parent / "assets" / "lenet5_wrap.npz"


@lru_cache(maxsize=None)
def image_of(path) -> bytes:
    """The ULX3S (baseline) weight image of a weight file; building the design takes a second."""
    return board_weight_image(weights.load(path))


class GoldenBoard(FakeBoard):
    """The pretend board of fake_board.py answering with the golden model of ``ws``; ``wrong``
    flips logit 3 of the images with those indices. A load (of the baseline design's image)
    makes it answer with the weight set in ``loadable`` whose image it received, or with
    nonsense if none matches."""

    def __init__(self, ws, weights_id=None, wrong=(), loadable=(), valid=True):
        self.ws, self.wrong, self.count = ws, set(wrong), 0
        self.loadable = {image_of(path): weights.load(path) for path in loadable}
        wid = protocol.weights_id(ws.params) if weights_id is None else weights_id
        super().__init__(len(image_of(None)), True, self.golden, self.swap, ws.network, ws.arithmetic, wid)
        self.valid = valid
        if not valid:
            self.weights_id = 0

    def golden(self, pixels: bytes):
        side = self.ws.network.image_size
        image = np.frombuffer(pixels, np.uint8).reshape(1, side, side)
        logits = golden.forward(image, self.ws.params, self.arithmetic, self.ws.network)[0]  # the board's arithmetic
        if self.count in self.wrong:
            logits[3] += 1
        self.count += 1
        return logits

    def swap(self, image: bytes):
        self.ws = self.loadable.get(image, weights.WeightSet(
            {name: np.ones_like(value) for name, value in self.ws.params.items()}, self.ws.manifest))

    @property
    def request_types(self):
        return [f.type for f in self.requests]


def test_board_run_all_match():
    ws, samples = weights.load(), images.load_image_set().head(5)
    result = run_on_board(BoardClient(GoldenBoard(ws)), ws, samples, quiet=True)
    assert result["total"]["images"] == 5 and result["total"]["mismatches"] == 0
    assert result["total"]["board_accuracy"] == 1.0 and result["total"]["cycles_per_image"] == 9759


def test_board_run_counts_a_wrong_logit():
    ws, samples = weights.load(), images.load_image_set().head(4)
    result = run_on_board(BoardClient(GoldenBoard(ws, wrong={2})), ws, samples, quiet=True)
    assert result["total"]["mismatches"] == 1
    assert [e["match"] for e in result["images"]] == [True, True, False, True]


def test_board_run_refuses_a_board_with_other_weights():
    ws = weights.load()
    board = GoldenBoard(ws, weights_id=protocol.weights_id(ws.params) ^ 1)
    with pytest.raises(InputError, match="other weights"):
        run_on_board(BoardClient(board), ws, images.load_image_set().head(1), quiet=True)


def test_board_run_cli_missing_port_is_a_clean_error(capsys):
    from lenet_fpga.cli import main

    assert main(["board-run", "--port", "/dev/does-not-exist", "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lenet-fpga board-run: error:") and "Traceback" not in err


def test_board_run_loads_other_weights_first():
    """The board holds the shipped weights; the wrap-trained ones are loaded, then every answer is theirs."""
    shipped, other = weights.load(), weights.load(WRAP_WEIGHTS)
    board = GoldenBoard(shipped, loadable=[WRAP_WEIGHTS])
    client = BoardClient(board)
    info = load_board_weights(client, other, image_of(WRAP_WEIGHTS), quiet=True)
    assert info.weights_valid and info.weights_id == protocol.weights_id(other.params)
    # ceil(image / 784) chunks and a commit.
    assert board.request_types.count(FrameType.LOAD_WEIGHTS) == -(-len(image_of(WRAP_WEIGHTS)) // 784) + 1
    result = run_on_board(client, other, images.load_image_set().head(4), quiet=True)
    assert result["total"]["mismatches"] == 0
    # Nothing is loaded when the board already holds the weights.
    board.requests.clear()
    load_board_weights(client, other, image_of(WRAP_WEIGHTS), quiet=True)
    assert FrameType.LOAD_WEIGHTS not in board.request_types


def test_board_weight_image_is_the_boards_design():
    shipped = weights.load()
    image = image_of(None)
    assert len(image) == len(image_of(WRAP_WEIGHTS)) and image != image_of(WRAP_WEIGHTS)
    assert 44_190 <= len(image) < 46_000  # the codes, and the padding of the linear engines' last words
    assert len(board_weight_image(shipped, options=GeneratorOptions(lanes=(10,)))) != len(image) or board_weight_image(shipped, options=GeneratorOptions(lanes=(10,))) != image
    with pytest.raises(InputError, match="preset"):
        board_weight_image(shipped, options=GeneratorOptions(preset="nonesuch"))


def test_board_run_weight_errors():
    shipped = weights.load()
    board = GoldenBoard(shipped)
    board.weight_bytes -= 1  # a board built with another configuration
    with pytest.raises(InputError, match=f"expects a weight image of {board.weight_bytes:,} bytes"):
        load_board_weights(BoardClient(board), weights.load(WRAP_WEIGHTS), image_of(WRAP_WEIGHTS), quiet=True)
    assert FrameType.LOAD_WEIGHTS not in board.request_types
    board = GoldenBoard(shipped, valid=False)  # an interrupted load
    with pytest.raises(InputError, match="no valid weights"):
        run_on_board(BoardClient(board), shipped, images.load_image_set().head(1), quiet=True)


def test_board_with_weights_in_its_bitstream():
    """A board whose weights cannot be replaced (INFO: fixed): its own weights run without a
    load; other weights are refused before any request, saying how to get them onto it."""
    shipped = weights.load()
    board = GoldenBoard(shipped)
    board.fixed = True
    client = BoardClient(board)
    assert client.ping().weights_fixed
    load_board_weights(client, shipped, image_of(None), quiet=True)
    with pytest.raises(InputError, match="in its bitstream .* cannot be replaced .*lenet-fpga build --weights"):
        load_board_weights(client, weights.load(WRAP_WEIGHTS), image_of(WRAP_WEIGHTS), quiet=True)
    assert FrameType.LOAD_WEIGHTS not in board.request_types


def test_board_run_cli_loads_weights(monkeypatch, capsys):
    """``board-run --weights FILE`` end to end on the pretend board (no serial port)."""
    from lenet_fpga.boards import host
    from lenet_fpga.cli import main

    board = GoldenBoard(weights.load(), loadable=[WRAP_WEIGHTS])
    monkeypatch.setattr(host, "open_serial", lambda *args: board)
    assert main(["board-run", "--port", "fake", "--weights", str(WRAP_WEIGHTS), "--n", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["mismatches"] == 0 and out["total"]["images"] == 3
    assert FrameType.LOAD_WEIGHTS in board.request_types


def test_board_run_survives_a_corrupted_result_and_a_busy():
    """One corrupted RESULT and one BUSY no longer end the run: the requests are sent again, the
    answers are all golden, and the retries are reported."""
    ws, samples = weights.load(), images.load_image_set().head(4)
    board = GoldenBoard(ws)
    board.actions = {2: "garble", 5: "busy"}
    result = run_on_board(BoardClient(board), ws, samples, quiet=True)
    total = result["total"]
    assert total["complete"] and total["images"] == 4 and total["mismatches"] == 0
    assert total["retries"] == {"no reply": 1, "BUSY": 1}


def test_board_run_keeps_the_results_of_a_run_that_fails(monkeypatch, capsys):
    """A board that stops answering after two images: the JSON holds those two, says the run is
    not complete and why, and the command ends with one error line (exit 2)."""
    from lenet_fpga.boards import host
    from lenet_fpga.cli import main

    board = GoldenBoard(weights.load())
    # Request 0 is board-run's PING, 1 run_on_board's, then one CLASSIFY per image.
    board.actions = {k: "silent" for k in range(4, 10_000)}
    monkeypatch.setattr(host, "open_serial", lambda *args: board)
    assert main(["board-run", "--port", "fake", "--n", "5", "--json"]) == 2
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert [e["index"] for e in out["images"]] == [0, 1] and all(e["match"] for e in out["images"])
    assert out["total"]["complete"] is False and out["total"]["requested"] == 5
    assert "image 2" in out["total"]["error"] and "no reply" in out["total"]["error"]
    # Image 2: the whole image unanswered, then its first piece sent again, each wait twice the
    # last from the measured one (at least the floor, 0.05 s) up to MAX_WAIT (10 s), until the
    # waits in vain add up to the client's patience (30 s): at the floor 0.05 x (1 + 2 + ... +
    # 128) = 12.75 s, then two 10 s waits, 10 tries; fewer if the measured round trips were longer.
    assert set(out["total"]["retries"]) == {"no reply"} and 3 <= out["total"]["retries"]["no reply"] <= 10
    assert "no good reply from the board for 3" in out["total"]["error"]
    assert captured.err.count("\n") == 1 and "stopped after 2 of 5 images" in captured.err


def test_board_run_refuses_a_board_with_another_network():
    ws = weights.load()
    board = GoldenBoard(ws)
    board.sizes = protocol.FrameSizes(32, 10)
    with pytest.raises(InputError, match="32x32 images"):
        run_on_board(BoardClient(board), ws, images.load_image_set().head(1), quiet=True)


def test_board_run_refuses_absurd_baud_rates(capsys):
    from lenet_fpga.cli import main

    assert main(["board-run", "--port", "loop://", "--baud", "1", "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert "at least 1200" in err and "Traceback" not in err


def bench_cli(monkeypatch, capsys, board, *options) -> tuple[int, str]:
    from lenet_fpga.boards import host
    from lenet_fpga.cli import main

    monkeypatch.setattr(host, "open_serial", lambda *args: board)
    code = main(["board-run", "--port", "fake", *options])
    return code, capsys.readouterr().out


def test_board_run_bench(monkeypatch, capsys):
    """``--bench 5``: the first digit stored, classified (golden) and run 5 times; cycles per image
    is what each run after the first added, images/s that at the clock INFO reports."""
    board = GoldenBoard(weights.load())
    code, out = bench_cli(monkeypatch, capsys, board, "--bench", "5", "--json")
    bench = json.loads(out)["bench"]
    first, interval = FakeBoard.cycles, FakeBoard.interval
    assert code == 0 and bench["match"] and board.benches == [5]
    assert (bench["runs"], bench["first_run_cycles"], bench["total_cycles"]) == (5, first, first + 4 * interval)
    assert bench["cycles_per_image"] == interval and bench["mean_cycles_per_run"] == (first + 4 * interval) / 5
    assert (bench["clock_hz"], bench["clock_from"]) == (25e6, "INFO")
    assert bench["images_per_second"] == pytest.approx(25e6 / interval)
    golden_class = int(golden.classify(golden.forward(images.load_image_set().images[:1], board.ws.params)[0]))
    assert bench["bench_class"] == bench["classify_class"] == bench["golden_class"] == golden_class
    assert board.request_types == [FrameType.PING] * 2 + [FrameType.IMAGE, FrameType.CLASSIFY, FrameType.BENCH]

    code, out = bench_cli(monkeypatch, capsys, GoldenBoard(weights.load()), "--bench")
    assert code == 0 and "100 runs of image 0 back to back" in out
    assert f"{25e6 / interval:,.0f} images/s at 25 MHz (the board's clock, from INFO)" in out


def test_board_run_bench_without_a_clock_in_info(monkeypatch, capsys):
    board = GoldenBoard(weights.load())
    board.clock_hz = 0
    code, out = bench_cli(monkeypatch, capsys, board, "--bench", "1", "--board", "icebreaker")
    assert code == 0 and board.benches == [1]
    assert (f"{FakeBoard.cycles:,} accelerator cycles per image: {12e6 / FakeBoard.cycles:,.0f} images/s at 12 MHz "
            "(assumed: the icebreaker's clock; the board's INFO gives none)") in out


def test_board_run_bench_class_differs(monkeypatch, capsys):
    """A last run whose class is not CLASSIFY's is a mismatch: exit 1, and said so."""
    board = GoldenBoard(weights.load())
    carry_out = board._carry_out

    def other_class(frame, error):
        reply = carry_out(frame, error)
        if frame.type != FrameType.BENCH:
            return reply
        result = protocol.parse_bench(protocol.FrameDecoder().feed(reply)[0], board.sizes)
        wrong = protocol.BenchResult(result.runs, (result.klass + 1) % 10, result.first_cycles, result.total_cycles)
        return protocol.encode_frame(FrameType.BENCH_RESULT, wrong.encode(), frame.seq)

    board._carry_out = other_class
    code, out = bench_cli(monkeypatch, capsys, board, "--bench", "2")
    assert code == 1 and "DIFFER" in out


def test_board_run_bench_refuses_counts_a_bench_cannot_carry(capsys):
    from lenet_fpga.cli import main

    for runs in ("0", "65536"):
        with pytest.raises(SystemExit):
            main(["board-run", "--port", "fake", "--bench", runs])
        assert "1 to 65535" in capsys.readouterr().err


def test_board_run_progress_in_a_log_is_plain_lines(capsys):
    """Standard error captured (as in a log file or a pipe): the weight load and the run report
    their progress in whole lines, not tqdm's carriage-return redraws; no time passes between
    updates here, so each writes just its last line."""
    ws = weights.load(WRAP_WEIGHTS)
    board = GoldenBoard(weights.load(), loadable=[WRAP_WEIGHTS])
    client = BoardClient(board)
    load_board_weights(client, ws, image_of(WRAP_WEIGHTS))
    run_on_board(client, ws, images.load_image_set().head(5))
    err = capsys.readouterr().err
    assert "\r" not in err
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith(("weights", "board"))] == [
        "weights", "board"]


def test_board_run_keeps_the_results_when_the_board_goes_away(monkeypatch, capsys):
    """The port fails (pyserial's SerialException, an OSError) after two images, as when the
    board is unplugged: the two results are printed, the run is not complete, and the command
    ends with one error line (exit 2), not a traceback."""
    serial = pytest.importorskip("serial")
    from lenet_fpga.boards import host
    from lenet_fpga.cli import main

    board = GoldenBoard(weights.load())
    real_classify, done = BoardClient.classify, []

    def classify(self, image):
        if len(done) == 2:
            raise serial.SerialException("device reports readiness to read but returned no data")
        done.append(1)
        return real_classify(self, image)

    monkeypatch.setattr(BoardClient, "classify", classify)
    monkeypatch.setattr(host, "open_serial", lambda *args: board)
    assert main(["board-run", "--port", "fake", "--n", "5", "--json"]) == 2
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert [e["index"] for e in out["images"]] == [0, 1] and out["total"]["complete"] is False
    assert "image 2" in out["total"]["error"] and "serial line failed" in out["total"]["error"]
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1


def test_board_run_with_activation_formats():
    """A board built for the 4-bit-activation network answers its golden logits; a Q2.6 board
    against that file, or that board against a Q2.6 file, is refused before any image."""
    act4 = weights.load(weights.ASSETS / "lenet5_act4.npz")
    samples = images.load_image_set().head(3)
    result = run_on_board(BoardClient(GoldenBoard(act4)), act4, samples, quiet=True)
    assert result["total"]["mismatches"] == 0 and "UQ2.2" in result["total"]["arithmetic"]
    q26 = weights.WeightSet(act4.params, {**act4.manifest, "activations": None}, act4.path)
    for board_ws, file_ws, words in ((q26, act4, "Q2.6 activations"), (act4, q26, "other than Q2.6")):
        with pytest.raises(InputError, match=words):
            run_on_board(BoardClient(GoldenBoard(board_ws)), file_ws, samples, quiet=True)
