"""board-run's comparison logic against a pretend board that answers like the RTL link does
(the RTL link itself is tested bit by bit over a simulated UART in test_link_rtl.py)."""

import numpy as np
import pytest

from lenet_fpga.boards import protocol
from lenet_fpga.boards.host import BoardClient
from lenet_fpga.boards.protocol import FrameDecoder, FrameType
from lenet_fpga.boards.run import run_on_board
from lenet_fpga.model import golden, images, weights
from lenet_fpga.model.errors import InputError


class GoldenBoard:
    """A pyserial-like port whose 'board' computes the golden logits; ``wrong`` flips image k's logit 3."""

    def __init__(self, ws, weights_id=None, wrong=()):
        self.ws, self.wrong, self.out, self.count = ws, set(wrong), bytearray(), 0
        wid = protocol.weights_id(ws.params) if weights_id is None else weights_id
        self.info = protocol.BoardInfo(protocol.VERSION, ws.arithmetic, 20, 22, wid).encode()

    def write(self, data):
        for frame in FrameDecoder().feed(bytes(data)):
            if frame.type == FrameType.PING:
                self.out += protocol.encode_frame(FrameType.INFO, self.info)
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
