"""board-run's comparison logic against a pretend board that answers like the RTL link does
(the RTL link itself is tested bit by bit over a simulated UART in test_link_rtl.py), and its
weight loading (``--weights``)."""

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from lenet_fpga.boards import protocol
from lenet_fpga.boards.host import BoardClient
from lenet_fpga.boards.protocol import ErrorCode, FrameDecoder, FrameType
from lenet_fpga.boards.run import board_weight_image, load_board_weights, run_on_board
from lenet_fpga.model import golden, images, weights
from lenet_fpga.model.errors import InputError

WRAP_WEIGHTS = Path(weights.__file__).parent / "assets" / "lenet5_wrap.npz"


@lru_cache(maxsize=None)
def image_of(path) -> bytes:
    """The ULX3S (baseline) weight image of a weight file; building the design takes a second."""
    return board_weight_image(weights.load(path))


class GoldenBoard:
    """A pyserial-like port whose 'board' computes the golden logits; ``wrong`` flips image k's logit 3.

    It takes loads like the RTL link (simplified: no error cases) and afterwards answers with the
    weight set in ``loadable`` whose image it received, or with nonsense if none matches.
    """

    def __init__(self, ws, weights_id=None, wrong=(), loadable=(), valid=True):
        self.ws, self.wrong, self.out, self.count = ws, set(wrong), bytearray(), 0
        self.wid = protocol.weights_id(ws.params) if weights_id is None else weights_id
        self.valid = valid
        self.loadable = {image_of(path): weights.load(path) for path in loadable}
        self.image_bytes = len(image_of(None))
        self.memory, self.received, self.requests = bytearray(), 0, []

    @property
    def info(self):
        return protocol.BoardInfo(protocol.VERSION, self.ws.arithmetic, 20, 22, self.wid if self.valid else 0,
                                  self.valid, True, self.image_bytes).encode()

    def _load(self, payload):
        op, argument = payload[0], int.from_bytes(payload[1:5], "little")
        if op == protocol.LoadOp.CHUNK and argument == len(self.memory):
            self.valid = False
            self.memory += payload[5:]
            return protocol.encode_frame(FrameType.WEIGHTS_LOADED, protocol.loaded_payload(len(self.memory), False))
        if op == protocol.LoadOp.COMMIT and argument == len(self.memory) == self.image_bytes:
            self.valid, self.wid = True, int.from_bytes(payload[5:9], "little")
            self.ws = self.loadable.get(bytes(self.memory), weights.WeightSet(
                {name: np.ones_like(value) for name, value in self.ws.params.items()}, self.ws.manifest))
            self.memory = bytearray()
            return protocol.encode_frame(FrameType.WEIGHTS_LOADED, protocol.loaded_payload(self.image_bytes, True))
        return protocol.encode_frame(FrameType.ERROR, protocol.error_payload(ErrorCode.BAD_LOAD))

    def write(self, data):
        for frame in FrameDecoder().feed(bytes(data)):
            self.requests.append(frame.type)
            if frame.type == FrameType.PING:
                self.out += protocol.encode_frame(FrameType.INFO, self.info)
            elif frame.type == FrameType.LOAD_WEIGHTS:
                self.out += self._load(frame.payload)
            elif not self.valid:
                self.out += protocol.encode_frame(FrameType.ERROR, protocol.error_payload(ErrorCode.NO_WEIGHTS))
            else:
                image = np.frombuffer(frame.payload, np.uint8).reshape(1, 28, 28)
                logits = golden.forward(image, self.ws.params, self.ws.arithmetic)[0]
                if self.count in self.wrong:
                    logits[3] += 1
                payload = protocol.result_payload(int(golden.classify(logits)), logits, 9759)
                self.out += protocol.encode_frame(FrameType.RESULT, payload)
                self.count += 1
        return len(data)

    def read(self, n):
        data = bytes(self.out[:n])
        del self.out[:n]
        return data

    def reset_input_buffer(self):
        self.out.clear()

    def close(self):
        pass


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
    assert board.requests.count(FrameType.LOAD_WEIGHTS) == -(-len(image_of(WRAP_WEIGHTS)) // protocol.MAX_CHUNK) + 1
    result = run_on_board(client, other, images.load_image_set().head(4), quiet=True)
    assert result["total"]["mismatches"] == 0
    # Nothing is loaded when the board already holds the weights.
    board.requests.clear()
    load_board_weights(client, other, image_of(WRAP_WEIGHTS), quiet=True)
    assert FrameType.LOAD_WEIGHTS not in board.requests


def test_board_weight_image_is_the_boards_design():
    shipped = weights.load()
    image = image_of(None)
    assert len(image) == len(image_of(WRAP_WEIGHTS)) and image != image_of(WRAP_WEIGHTS)
    assert 44_190 <= len(image) < 46_000  # the codes, and the padding of the linear engines' last words
    assert len(board_weight_image(shipped, lanes=(10,))) != len(image) or board_weight_image(shipped, lanes=(10,)) != image
    with pytest.raises(InputError, match="preset"):
        board_weight_image(shipped, preset="nonesuch")


def test_board_run_weight_errors():
    shipped = weights.load()
    board = GoldenBoard(shipped)
    board.image_bytes -= 1  # a board built with another configuration
    with pytest.raises(InputError, match=f"expects a weight image of {board.image_bytes:,} bytes"):
        load_board_weights(BoardClient(board), weights.load(WRAP_WEIGHTS), image_of(WRAP_WEIGHTS), quiet=True)
    assert FrameType.LOAD_WEIGHTS not in board.requests
    board = GoldenBoard(shipped, valid=False)  # an interrupted load
    with pytest.raises(InputError, match="no valid weights"):
        run_on_board(BoardClient(board), shipped, images.load_image_set().head(1), quiet=True)


def test_board_run_cli_loads_weights(monkeypatch, capsys):
    """``board-run --weights FILE`` end to end on the pretend board (no serial port)."""
    from lenet_fpga.boards import run
    from lenet_fpga.cli import main

    board = GoldenBoard(weights.load(), loadable=[WRAP_WEIGHTS])
    monkeypatch.setattr(run, "open_serial", lambda path, baud: board)
    assert main(["board-run", "--port", "fake", "--weights", str(WRAP_WEIGHTS), "--n", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["mismatches"] == 0 and out["total"]["images"] == 3
    assert FrameType.LOAD_WEIGHTS in board.requests
