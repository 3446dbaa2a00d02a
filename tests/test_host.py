"""The host client (``boards/host.py``) against the pretend board of ``fake_board.py``: replies
matched to requests by SEQ, retries after BAD_CRC, TIMEOUT, BUSY and lost or corrupted replies
(bounded and counted), images in pieces once the line has lost one, weight loads retried per
chunk and resumed from the board's INFO, benches of the stored image, and bounded read
timeouts."""

import time

import numpy as np
import pytest

from fake_board import FakeBoard, NoisyLine, SlowLine, simple_answer
from lenet_fpga.boards import protocol
from lenet_fpga.boards.host import MIN_BAUD, MIN_WAIT, PATIENT_TRIES, BoardClient, LineErrors, RoundTrips, BoardError, open_serial, serial_timeout
from lenet_fpga.boards.protocol import ErrorCode, FrameType
from lenet_fpga.model.errors import InputError

SIZES = protocol.FrameSizes(28, 10)


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)


def expected(img: np.ndarray) -> np.ndarray:
    return simple_answer(img.tobytes(), 10)


def test_ping_and_classify_with_sequence_numbers():
    board = FakeBoard()
    client = BoardClient(board, seq=250)
    info = client.ping()
    assert (info.image_size, info.classes, info.weights_id, info.multipliers) == (28, 10, 1, 110)
    klass, logits, cycles = client.classify(image(3))
    np.testing.assert_array_equal(logits, expected(image(3)))
    assert klass == np.argmax(expected(image(3))) and cycles == 9759
    assert [(f.type, f.seq) for f in board.requests] == [(FrameType.PING, 251), (FrameType.CLASSIFY, 252)]
    assert not client.retried


def test_noise_and_corrupt_frames_before_the_reply_are_skipped():
    """A SYNC with an absurd LEN, and a frame with a bad CRC (whose payload hides nothing): the
    client resynchronises on the next SYNC each time and takes the real reply."""
    board = FakeBoard()
    bad = bytearray(protocol.encode_frame(FrameType.INFO, bytes(21), 0))
    bad[-1] ^= 0xFF
    board.noise = bytes([0x00, 0x13, protocol.SYNC, 0x99, 0x00, 0xFF, 0xFF, 0x42]) + bytes(bad)
    client = BoardClient(board)
    assert client.ping().version == protocol.VERSION and not client.retried


def test_a_stray_error_from_an_earlier_request_is_not_the_reply():
    """The board sends an extra ERROR BUSY after a reply when bytes came while it was busy; if it
    arrives after the host cleared its input, it lands before the next reply. Its SEQ is the
    earlier request's: the client skips it. (Without SEQ matching it would be taken.)"""
    board = FakeBoard()
    client = BoardClient(board)
    client.ping()
    board.actions = {1: "stale"}
    assert client.ping().version == protocol.VERSION and not client.retried
    board.actions = {2: "stale"}
    with pytest.raises(BoardError, match="BUSY"):
        client.transact(protocol.ping_request(client.next_seq()), seq=None)


@pytest.mark.parametrize("request_bytes,code", [
    (protocol.encode_frame(FrameType.CLASSIFY, bytes(10), 1), ErrorCode.BAD_LENGTH),
    (protocol.encode_frame(FrameType.LOAD_WEIGHTS, bytes(3)[:0], 1), ErrorCode.BAD_LENGTH),
    (protocol.encode_frame(0x06, bytes(3), 1), ErrorCode.UNKNOWN_TYPE),
    (protocol.encode_frame(FrameType.BENCH, bytes(2), 1), ErrorCode.BAD_RUNS),
    (protocol.load_commit_request(100, 7, 0, 1), ErrorCode.BAD_LOAD),
    (protocol.ping_request(1)[:-1] + b"\x00", ErrorCode.BAD_CRC),
])
def test_transact_raises_the_board_error(request_bytes, code):
    with pytest.raises(BoardError, match=code.name) as info:
        BoardClient(FakeBoard()).transact(request_bytes, seq=1)
    assert info.value.code == code and isinstance(info.value, InputError)
    assert info.value.retryable == (code == ErrorCode.BAD_CRC)


def test_ping_is_sent_again_after_each_kind_of_trouble_and_counted():
    board = FakeBoard()
    board.actions = {0: "corrupt", 1: "busy", 2: "timeout", 3: "garble", 4: "silent", 5: "lose"}
    client = BoardClient(board, retries=6)
    assert client.ping().version == protocol.VERSION
    assert client.retried == {"BAD_CRC": 1, "BUSY": 1, "TIMEOUT": 1, "no reply": 3}
    board = FakeBoard()
    board.actions = {k: "corrupt" for k in range(3)}
    with pytest.raises(BoardError, match="BAD_CRC") as info:
        BoardClient(board, retries=2).ping()
    assert info.value.code == ErrorCode.BAD_CRC and len(board.requests) == 3


def test_classify_survives_a_corrupted_result_and_a_busy():
    """A corrupted RESULT: the image goes again in pieces, and the answer is right; the next
    image, with nothing lost, goes whole again. A BUSY: the whole image is simply sent again."""
    board = FakeBoard()
    client = BoardClient(board, piece_bytes=100)
    client.ping()
    board.actions = {1: "garble"}
    assert client.classify(image(4))[1].tolist() == expected(image(4)).tolist()
    kinds = [f.type for f in board.requests[1:]]
    # The whole image, then 8 pieces (7 of 100 pixels, one of 84), then CLASSIFY without pixels.
    assert kinds == [FrameType.CLASSIFY] + [FrameType.IMAGE] * 8 + [FrameType.CLASSIFY]
    assert [len(f.payload) for f in board.requests[2:10]] == [102] * 7 + [86] and board.requests[-1].payload == b""
    assert client.classify(image(5))[1].tolist() == expected(image(5)).tolist()
    assert [f.type for f in board.requests[11:]] == [FrameType.CLASSIFY]
    board.actions = {len(board.requests): "busy"}
    assert client.classify(image(6))[1].tolist() == expected(image(6)).tolist()
    assert [f.type for f in board.requests[12:]] == [FrameType.CLASSIFY, FrameType.CLASSIFY]
    assert client.retried == {"no reply": 1, "BUSY": 1}


def test_a_lost_piece_reply_and_a_lost_result():
    board = FakeBoard()
    client = BoardClient(board, piece_bytes=392)
    client.ping()
    # Request 1: the whole image (corrupted); 2: piece 0, carried out, its reply lost; 3: piece 0
    # again; 4: piece 1; 5: CLASSIFY, its RESULT lost; 6: CLASSIFY again.
    board.actions = {1: "corrupt", 2: "lose", 5: "lose"}
    assert client.classify(image(7))[1].tolist() == expected(image(7)).tolist()
    offsets = [int.from_bytes(f.payload[:2], "little") for f in board.requests if f.type == FrameType.IMAGE]
    assert offsets == [0, 0, 392] and client.retried == {"BAD_CRC": 1, "no reply": 2}


@pytest.mark.parametrize("seed", [9001, 9002])
def test_a_noisy_line_with_one_percent_of_bytes_corrupted(seed):
    """1 % of the bytes flipped and 0.2 % dropped, both ways: every answer is still right."""
    board = FakeBoard()
    client = BoardClient(NoisyLine(board, flip=0.01, drop=0.002, seed=seed))
    for k in range(30):
        assert client.classify(image(k))[1].tolist() == expected(image(k)).tolist(), f"seed {seed}, image {k}"
    assert sum(client.retried.values()) > 10, client.retried


def load_image(n: int = 100, seed: int = 5) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def chunk_offsets(board: FakeBoard) -> list[int]:
    return [int.from_bytes(f.payload[1:5], "little") for f in board.requests_of(FrameType.LOAD_WEIGHTS)
            if f.payload[0] == protocol.LoadOp.CHUNK]


def test_load_weights():
    board, weights = FakeBoard(), load_image()
    client = BoardClient(board)
    progress = []
    info = client.load_weights(weights, 0xABCD1234, progress.append, chunk=30)
    assert bytes(board.memory) == weights and progress == [30, 30, 30, 10]
    assert info.weights_valid and info.weights_id == 0xABCD1234 and not info.loading
    commit = board.requests_of(FrameType.LOAD_WEIGHTS)[-1].payload
    assert commit == bytes([1]) + (100).to_bytes(4, "little") + (0xABCD1234).to_bytes(4, "little") + \
        protocol.crc32(weights).to_bytes(4, "little")
    assert client.classify(np.zeros((28, 28), np.uint8))[2] == 9759


def test_load_retries_are_per_chunk():
    """Every chunk's first attempt arrives corrupted: with one retry per chunk the load completes
    (a budget of one retry shared by the whole load would not). After the first corrupted chunk
    the chunks shrink to ``piece_bytes``."""
    board, weights = FakeBoard(), load_image()
    client = BoardClient(board, retries=1, piece_bytes=20)
    board.actions = {k: "corrupt" for k in range(1, 11, 2)}  # request 0 is the PING; 1..10 the chunks
    client.load_weights(weights, 9, chunk=30)
    assert bytes(board.memory) == weights and board.valid
    assert chunk_offsets(board) == [0, 0, 20, 20, 40, 40, 60, 60, 80, 80]
    assert client.retried["BAD_CRC"] == 5


def test_a_lost_chunk_reply_is_resolved_from_info():
    """A chunk taken but its reply lost: INFO says the board holds its bytes, the load goes on
    (no resend, no restart). A chunk lost on the way: INFO says the bytes before it, it is sent
    again."""
    board, weights = FakeBoard(), load_image()
    client = BoardClient(board, piece_bytes=30)
    # 0 PING, 1 chunk 0, 2 chunk 30 (taken, reply lost), 3 PING, 4 chunk 60, 5 chunk 90 (lost on
    # the way), 6 PING, 7 chunk 90 again.
    board.actions = {2: "lose", 5: "silent"}
    progress = []
    client.load_weights(weights, 9, progress.append, chunk=30)
    assert bytes(board.memory) == weights and board.valid and sum(progress) == 100 and min(progress) > 0
    assert chunk_offsets(board) == [0, 30, 60, 90, 90]
    assert client.retried == {"no reply": 2}


def test_a_load_the_board_lost_starts_over():
    board, weights = FakeBoard(), load_image()
    client = BoardClient(board)

    def forget():  # a board reset in the middle of the load: the reply to chunk 1 never comes
        board.loading = False
    original = board._carry_out

    def carry_out(frame, error):
        if len(board.requests) == 3:
            forget()
            return protocol.encode_frame(FrameType.ERROR, b"\x04", 0)  # (never read: lost below)
        return original(frame, error)

    board._carry_out = carry_out
    board.actions = {2: "lose"}
    progress = []
    client.load_weights(weights, 9, progress.append, chunk=50)
    assert bytes(board.memory) == weights and board.valid and sum(progress) == 100 and -50 in progress


def test_a_lost_commit_reply():
    board, weights = FakeBoard(), load_image()
    board.actions = {4: "lose"}  # 0 PING, 1..3 chunks, 4 commit
    info = BoardClient(board).load_weights(weights, 0x55, chunk=40)
    assert info.weights_valid and info.weights_id == 0x55
    assert len([f for f in board.requests_of(FrameType.LOAD_WEIGHTS) if f.payload[0] == 1]) == 1


def test_load_weights_errors():
    weights = load_image()
    with pytest.raises(BoardError, match="expects a 100-byte weight image, this one has 99"):
        BoardClient(FakeBoard()).load_weights(weights[:99], 1)
    board = FakeBoard()
    board.actions = {1: "corrupt", 2: "corrupt"}
    with pytest.raises(BoardError, match="at byte 0 of 100.*BAD_CRC") as info:
        BoardClient(board).load_weights(weights, 1, retries=1)
    assert info.value.code == ErrorCode.BAD_CRC
    assert board.valid, "a first chunk that never arrived leaves the old weights valid"
    board = FakeBoard()
    board.actions = {2: "corrupt"}
    with pytest.raises(BoardError, match="at byte 30"):
        BoardClient(board).load_weights(weights, 1, chunk=30, retries=0)
    assert not board.valid, "the board must not answer after half a load"
    with pytest.raises(BoardError, match="NO_WEIGHTS.*load weights first"):
        BoardClient(board).classify(np.zeros((28, 28), np.uint8))
    with pytest.raises(InputError, match="u32"):
        BoardClient(board).load_weights(weights, -1)
    with pytest.raises(ValueError, match="chunk"):
        BoardClient(FakeBoard()).load_weights(weights, 1, chunk=785)


def test_errors_on_silence_and_wrong_reply():
    board = FakeBoard()
    client = BoardClient(board, retries=0)
    board.actions = {0: "silent"}
    with pytest.raises(BoardError, match="timeout: no reply") as info:
        client.ping()
    assert info.value.retryable and info.value.code is None
    board.actions = {1: "garble"}
    with pytest.raises(BoardError, match="1 frames with a bad CRC"):
        client.ping()
    seq = client.next_seq()
    board.outbox += protocol.encode_frame(FrameType.RESULT, bytes(45), seq)[:20]  # cut short
    with pytest.raises(BoardError, match="incomplete reply"):
        client._read_reply(seq, 45)
    board.actions = {}
    client = BoardClient(board)
    client.ping()
    board._carry_out = lambda frame, error: protocol.encode_frame(FrameType.RESULT, bytes(45), frame.seq)
    with pytest.raises(BoardError, match="expected INFO, got a RESULT") as info:
        client.ping()
    assert not info.value.retryable
    board._carry_out = lambda frame, error: protocol.encode_frame(FrameType.ERROR, b"\x63", frame.seq)
    with pytest.raises(BoardError, match="99") as info:
        BoardClient(board).ping()
    assert info.value.code == 99
    with pytest.raises(TypeError, match="pyserial-like"):
        BoardClient(object())


def test_bench_of_the_stored_image():
    """The image goes into the board's buffer in one IMAGE piece, CLASSIFY without pixels answers
    for it, and BENCH runs it: the runs echoed, the board's counts as they came."""
    board = FakeBoard()
    client = BoardClient(board)
    client.ping()
    client.store_image(image(8))
    assert bytes(board.image) == image(8).tobytes() and board.image_received == 784
    klass, logits, cycles = client.classify_stored()
    assert logits.tolist() == expected(image(8)).tolist() and cycles == FakeBoard.cycles
    result = client.bench(5)
    assert result == protocol.BenchResult(5, klass, FakeBoard.cycles, FakeBoard.cycles + 4 * FakeBoard.interval)
    assert result.cycles_per_image == FakeBoard.interval and board.benches == [5]
    assert [(f.type, len(f.payload)) for f in board.requests] == [
        (FrameType.PING, 0), (FrameType.IMAGE, 786), (FrameType.CLASSIFY, 0), (FrameType.BENCH, 2)]


def test_bench_errors():
    board = FakeBoard()
    client = BoardClient(board)
    with pytest.raises(BoardError, match="BAD_IMAGE.*BENCH") as info:
        client.bench(3)
    assert info.value.code == ErrorCode.BAD_IMAGE and not info.value.retryable
    for bad in (0, 1 << 16):
        with pytest.raises(ValueError, match="runs"):
            client.bench(bad)
    with pytest.raises(ValueError, match="seconds"):
        client.bench(1, -1.0)
    client.store_image(image(9))
    board.valid = False
    with pytest.raises(BoardError, match="NO_WEIGHTS"):
        client.bench(3)
    board.valid = True
    # A board that ran another number of runs than asked: not taken for the answer.
    original = board._carry_out
    board._carry_out = lambda frame, error: protocol.encode_frame(
        FrameType.BENCH_RESULT, protocol.BenchResult(4, 0, 10, 40).encode(), frame.seq)
    with pytest.raises(BoardError, match="4 times; 5 were asked"):
        client.bench(5)
    board._carry_out = original
    assert board.benches == []


def test_a_lost_bench_reply_runs_it_again_and_a_noisy_line_stores_in_pieces():
    board = FakeBoard()
    client = BoardClient(board, piece_bytes=200)
    client.ping()
    board.actions = {1: "corrupt", 6: "lose"}  # 1 the whole image; 2..5 its pieces; 6 the bench
    client.store_image(image(10))
    assert bytes(board.image) == image(10).tobytes()
    assert [len(f.payload) for f in board.requests_of(FrameType.IMAGE)] == [786, 202, 202, 202, 186]
    assert client.bench(7).runs == 7 and board.benches == [7, 7]
    assert client.retried == {"BAD_CRC": 1, "no reply": 1}


class TimedBoard(FakeBoard):
    """Records the read timeout the client set for the first read after each request (the
    client sets what is left of the try's wait before each read)."""

    def __init__(self):
        super().__init__()
        self.timeouts = []
        self._fresh = False

    def write(self, data):
        self._fresh = True
        return super().write(data)

    def read(self, n):
        if self._fresh:
            self.timeouts.append(self.timeout)
            self._fresh = False
        return super().read(n)


def test_read_timeouts_follow_the_exchange():
    """With set_timeout(T) for the longest exchange (a 789-byte chunk and a 45-byte RESULT, 7 bytes
    of framing each: 848 bytes), each request waits T x its own exchange's bytes / 848, at least
    0.2 s: a whole image 10 x (791 + 52) / 848, a 16-pixel piece 10 x (25 + 9) / 848 = 0.40 s."""
    board = TimedBoard()
    client = BoardClient(board, piece_bytes=16)
    client.ping()
    client.set_timeout(10.0)
    client.classify(image(1))
    board.actions = {len(board.requests): "corrupt"}
    client.classify(image(2))
    whole, piece = 10 * (791 + 52) / 848, 10 * (25 + 9) / 848
    assert board.timeouts[1] == pytest.approx(whole, rel=1e-3) and board.timeouts[3] == pytest.approx(piece, rel=1e-3)
    assert board.timeouts[-1] == pytest.approx(10 * (7 + 52) / 848, rel=1e-3)  # CLASSIFY without pixels
    client.set_timeout(0.65)
    client.ping()
    assert board.timeouts[-1] == pytest.approx(0.2, rel=1e-3)


def test_a_bench_waits_for_its_runs():
    """A BENCH's reply comes after its runs: the read timeout of that one exchange is the usual
    one (9 + 15 bytes and 7 of framing: 10 x 31 / 848 of the longest) plus the seconds the runs
    may take; with waits from measured round trips, the measured wait plus those seconds."""
    board = TimedBoard()
    client = BoardClient(board)
    client.ping()
    client.store_image(image(11))
    client.set_timeout(10.0)
    client.bench(3, seconds=4.0)
    client.ping()
    assert board.timeouts[-2] == pytest.approx(10 * 31 / 848 + 4.0, rel=1e-3)
    assert board.timeouts[-1] == pytest.approx(10 * (7 + 25 + 7) / 848, rel=1e-3), "the next exchange waits as usual"
    client.timeout = None
    client.bench(3, seconds=4.0)
    # The fake board answers at once: the measured wait is the floor, MIN_WAIT.
    assert board.timeouts[-1] == pytest.approx(MIN_WAIT + 4.0, rel=1e-3)
    client.ping()
    assert board.timeouts[-1] == pytest.approx(MIN_WAIT, rel=1e-3)


def test_read_timeouts_are_bounded():
    # The longest exchange of LeNet-5: a 789-byte chunk and a 45-byte RESULT with their 7-byte
    # overheads, 10 bits a byte, twice over, plus half a second.
    bits = 10 * (789 + 45 + 14)
    assert serial_timeout(115_200, SIZES) == pytest.approx(0.5 + 2 * bits / 115_200)  # 0.65 s
    assert serial_timeout(MIN_BAUD, SIZES) == pytest.approx(0.5 + 2 * bits / MIN_BAUD)  # 14.6 s
    assert serial_timeout(115_200) < 0.52  # a PING and its INFO
    for baud in (1, MIN_BAUD - 1, 0):
        with pytest.raises(InputError, match="at least 1200"):
            serial_timeout(baud)


def test_client_over_pyserial_loopback():
    """``loop://`` echoes the request: a good frame with the request's own SEQ, but a PING."""
    pytest.importorskip("serial")
    port = open_serial("loop://", 115_200, timeout=0.2)
    try:
        with pytest.raises(BoardError, match="expected INFO, got a PING"):
            BoardClient(port).ping()
    finally:
        port.close()


def test_open_serial_errors():
    pytest.importorskip("serial")
    with pytest.raises(BoardError, match="cannot open"):
        open_serial("/dev/nonexistent-lenet-board", 115_200)
    with pytest.raises(InputError, match="baud rate"):
        open_serial("loop://", 1)


# --------------------------------------------------------------------------------------------
# A client that adapts to the line (the defaults: no fixed timeout, pieces or retry count)


def test_the_error_rate_is_the_most_likely_one_and_sets_the_piece_size():
    """Exchanges of 20 bytes of which 36 % got through: (1 - e) ** 20 = 0.36 gives e = 1 -
    0.36 ** (1/20) = 4.98 %. Pixels per attempt p (1 - e) ** (p + o) peak where 1/p = -ln(1 - e):
    p = 19.6 at that rate, 99.5 at 1 %; a clean line sends whole images."""
    line = LineErrors(window=100)
    for k in range(100):
        line.add(20, k % 25 < 9)  # 36 of 100 through
    assert line.rate() == pytest.approx(1 - 0.36 ** (1 / 20), rel=1e-6)
    assert line.best_piece(784) == 20 and line.best_piece(12) == 12
    for _ in range(100):
        line.add(100, True)
    assert line.rate() == 0 and line.best_piece(784) == 784, "the window forgets the old losses"
    for k in range(100):
        line.add(50, k >= 39)  # 0.99 ** 50 = 0.605: 61 of 100 through, 39 lost
    assert line.rate() == pytest.approx(1 - 0.61 ** (1 / 50), rel=1e-6)
    assert line.best_piece(784) == round(-1 / np.log(0.61 ** (1 / 50)))
    assert 99 <= line.best_piece(784) <= 101


def test_round_trips_give_the_wait():
    """RFC 6298: the first sample s gives smoothed s, deviation s/2, a wait of s + 4 s/2 = 3 s; the
    next sample t: deviation 3/4 s/2 + 1/4 |s - t|, smoothed 7/8 s + 1/8 t. An exchange in a
    larger class than measured waits in proportion to its bytes; a smaller one as the larger."""
    trips = RoundTrips(floor=0.01, ceiling=5.0)
    assert trips.timeout(1, 40) is None
    trips.add(1, 40, 0.1)  # PING, 40 bytes: class 6 (32..63)
    assert trips.timeout(1, 40) == pytest.approx(0.3)
    trips.add(1, 40, 0.2)
    smoothed, deviation = 7 / 8 * 0.1 + 1 / 8 * 0.2, 3 / 4 * 0.05 + 1 / 4 * 0.1
    assert trips.timeout(1, 40) == pytest.approx(smoothed + 4 * deviation)
    assert trips.timeout(1, 10) == pytest.approx(smoothed + 4 * deviation), "a shorter exchange as the longer"
    assert trips.timeout(1, 400) == pytest.approx((smoothed + 4 * deviation) * 10), "a longer one scaled by bytes"
    assert trips.timeout(2, 40) == pytest.approx(smoothed + 4 * deviation), "another type: from every type's"
    trips.add(2, 59, 1.0)  # a CLASSIFY: the accelerator's time too
    assert trips.timeout(2, 59) == pytest.approx(3.0) and trips.timeout(1, 40) < 1
    assert trips.timeout(2, 5000) == 5.0, "at most the ceiling"
    fast = RoundTrips(floor=0.05, ceiling=5.0, byte_seconds=10 / 115_200)
    fast.add(1, 40, 0.0001)
    assert fast.timeout(1, 40) == pytest.approx(0.05 + 40 * 10 / 115_200), "at least the floor and the line time"


@pytest.mark.parametrize("seed", [5001, 5002])
def test_five_percent_of_bytes_corrupted_and_one_percent_dropped(seed):
    """5 % of the bytes flipped and 1 % dropped, both ways (a 59-byte CLASSIFY exchange gets
    through 2.8 % of the time): every answer is right; the client measures an error rate of
    about 6 % and sends pieces of about 1/0.06 = 16 pixels, no whole image."""
    board = FakeBoard()
    client = BoardClient(NoisyLine(board, flip=0.05, drop=0.01, seed=seed))
    for k in range(5):
        assert client.classify(image(k))[1].tolist() == expected(image(k)).tolist(), f"seed {seed}, image {k}"
    assert 0.035 < client.line.rate() < 0.09
    pieces = [len(f.payload) - 2 for f in board.requests_of(FrameType.IMAGE)]
    assert 8 <= np.median(pieces) <= 30, np.median(pieces)
    assert sum(client.retried.values()) > 100, client.retried


def test_pieces_shrink_after_losses_and_grow_back():
    """A clean line: whole images. 5 % of the bytes flipped: pieces of about 20 pixels. Clean
    again: the pieces grow as the losses leave the window, until whole images go again."""
    board = FakeBoard()
    line = NoisyLine(board, flip=0.0, seed=3)
    client = BoardClient(line)

    def sent(k):
        start = len(board.requests)
        assert client.classify(image(k))[1].tolist() == expected(image(k)).tolist()
        return [f for f in board.requests[start:] if f.crc_ok]

    assert [f.type for f in sent(0)] == [FrameType.PING, FrameType.CLASSIFY]
    line.flip = 0.05
    for k in range(1, 4):
        frames = sent(k)
    noisy = [len(f.payload) - 2 for f in frames if f.type == FrameType.IMAGE]
    assert max(noisy) < 50
    line.flip = 0.0
    sizes = []
    for k in range(4, 40):
        frames = sent(k)
        sizes.append(max([len(f.payload) - 2 for f in frames if f.type == FrameType.IMAGE], default=784))
        if [f.type for f in frames] == [FrameType.CLASSIFY]:
            break
    assert [f.type for f in frames] == [FrameType.CLASSIFY] and len(frames[0].payload) == 784, "whole again"
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1], sizes


def test_the_first_ping_tries_short_and_often():
    """Nothing measured yet: the first try waits FIRST_WAIT (0.25 s), each unanswered try twice
    the last; a board that takes 0.6 s is heard on the third try (0.25, 0.5, 1 s), not after one
    10 s wait, and from then on the measured round trip sets the waits: the next images go
    without a retry."""
    line = SlowLine(FakeBoard(), delay=0.6)
    client = BoardClient(line)
    started = time.monotonic()
    assert client.ping().version == protocol.VERSION
    assert time.monotonic() - started < 0.25 + 0.5 + 1.0 + 0.2
    assert client.retried == {"no reply": 2} or client.retried["no reply"] <= 2, client.retried
    before = sum(client.retried.values())
    for k in range(2):
        assert client.classify(image(k))[1].tolist() == expected(image(k)).tolist()
    assert sum(client.retried.values()) == before


def test_a_board_that_slows_down_is_waited_for():
    """A simulated board on a machine that gets loaded: its round trips go from 0.05 s to 0.8 s
    (past every wait measured so far). The client's waits grow with the late replies it sees,
    and no request is given up; the answers are right."""
    line = SlowLine(FakeBoard(), delay=0.05)
    client = BoardClient(line, patience=10.0)
    for k in range(3):
        client.classify(image(k))
    line.delay = 0.8
    for k in range(3, 6):
        assert client.classify(image(k))[1].tolist() == expected(image(k)).tolist()
    assert 0 < client.retried["no reply"] < 10, client.retried


def test_a_board_that_answers_is_tried_patient_tries_times():
    """Every reply spoiled (a flipped bit), each try slow: past the patience in seconds the
    client keeps trying while the board answers, and gives up only once PATIENT_TRIES tries got
    spoiled replies; a good reply before that is taken."""
    board = FakeBoard()
    board.actions = {k: "garble" for k in range(1, PATIENT_TRIES)}  # the PING first is clean
    client = BoardClient(SlowLine(board, delay=0.002), patience=0.01)
    client.ping()
    assert client.classify(image(0))[1].tolist() == expected(image(0)).tolist()  # try PATIENT_TRIES
    assert client.retried == {"no reply": PATIENT_TRIES - 1}, client.retried  # spoiled, so none good

    board = FakeBoard()
    board.actions = {k: "garble" for k in range(1, 10 * PATIENT_TRIES)}
    client = BoardClient(SlowLine(board, delay=0.002), patience=0.01)
    client.ping()
    with pytest.raises(BoardError, match=r"no good reply from the board for 0 s"):
        client.classify(image(0))
    assert len(board.requests) == 1 + PATIENT_TRIES + 1, len(board.requests)


def test_a_silent_board_is_given_up_after_patience():
    """No reply at all: waits of 0.25, 0.5, 1, 2 s add up past a patience of 3 s on the fifth try."""
    board = FakeBoard()
    board.actions = {k: "silent" for k in range(100)}
    client = BoardClient(board, patience=3.0)
    with pytest.raises(BoardError, match="no good reply from the board for 4 s .5 tries") as info:
        client.ping()
    assert info.value.code is None and client.retried == {"no reply": 4}
