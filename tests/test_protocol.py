"""The wire format (``boards/protocol.py``) and the host client (``boards/host.py``), in pure Python.

The client is run against ``FakeBoard``, a byte port that answers like the RTL link does (one
reply per complete frame, decided in the same order: CRC, type, length), and that can be told to
misbehave (stay silent, corrupt its reply, add noise); and once against pyserial's ``loop://``.
"""

import random

import numpy as np
import pytest

from lenet_fpga.boards import protocol
from lenet_fpga.boards.host import BoardClient, BoardError, open_serial, serial_timeout
from lenet_fpga.boards.protocol import ErrorCode, Frame, FrameDecoder, FrameType
from lenet_fpga.model import arith
from lenet_fpga.model.errors import InputError


# --------------------------------------------------------------------------------------------
# CRC-8


@pytest.mark.parametrize("data,crc", [
    (b"123456789", 0xF4),  # the catalogue check value of CRC-8 (poly 0x07, init 0, no reflection)
    (b"", 0x00),
    (b"\x00", 0x00),
    (b"\x01", 0x07),
    (b"\x80", 0x89),
    (b"\xff", 0xF3),
])
def test_crc8_known_values(data, crc):
    assert protocol.crc8(data) == crc


def bitwise_crc8(data: bytes) -> int:
    """The textbook definition: a shift register, one bit at a time, MSB first."""
    crc = 0
    for byte in data:
        for bit in range(7, -1, -1):
            feedback = (crc >> 7 & 1) ^ (byte >> bit & 1)
            crc = (crc << 1) & 0xFF
            if feedback:
                crc ^= protocol.CRC_POLY
    return crc


def test_crc8_matches_bitwise_definition_and_continues():
    rng = random.Random(1234)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
        assert protocol.crc8(data) == bitwise_crc8(data), f"seed 1234, data {data.hex()}"
        cut = rng.randrange(len(data) + 1)
        assert protocol.crc8(data[cut:], protocol.crc8(data[:cut])) == protocol.crc8(data)


def test_crc8_detects_every_single_bit_error():
    frame = protocol.encode_frame(FrameType.CLASSIFY, bytes(range(256)) * 3 + bytes(16))
    body = frame[1:-1]
    for position in range(len(body)):
        for bit in range(8):
            damaged = bytearray(body)
            damaged[position] ^= 1 << bit
            assert protocol.crc8(damaged) != frame[-1], f"flip of bit {bit} of byte {position} not detected"


# --------------------------------------------------------------------------------------------
# Frames


def test_encode_frame_layout():
    frame = protocol.encode_frame(FrameType.RESULT, bytes(range(45)))
    assert frame[0] == 0xA5 and frame[1] == 0x82 and frame[2:4] == (45).to_bytes(2, "little")
    assert frame[4:-1] == bytes(range(45)) and frame[-1] == protocol.crc8(frame[1:-1])
    assert protocol.ping_request() == bytes([0xA5, 0x01, 0x00, 0x00, protocol.crc8(b"\x01\x00\x00")])
    with pytest.raises(ValueError):
        protocol.encode_frame(0x100)
    with pytest.raises(ValueError):
        protocol.encode_frame(FrameType.CLASSIFY, bytes(protocol.MAX_LENGTH + 1))


def test_type_and_error_codes_are_the_documented_ones():
    assert {t.name: int(t) for t in FrameType} == {
        "PING": 0x01, "CLASSIFY": 0x02, "LOAD_WEIGHTS": 0x03,
        "INFO": 0x81, "RESULT": 0x82, "WEIGHTS_LOADED": 0x83, "ERROR": 0xEE}
    assert {e.name: int(e) for e in ErrorCode} == {
        "BAD_CRC": 1, "BAD_LENGTH": 2, "UNKNOWN_TYPE": 3, "TIMEOUT": 4, "BUSY": 5, "NO_WEIGHTS": 6, "BAD_LOAD": 7}
    assert {o.name: int(o) for o in protocol.LoadOp} == {"CHUNK": 0, "COMMIT": 1}
    assert protocol.REQUEST_LENGTHS == {FrameType.PING: 0, FrameType.CLASSIFY: 784}
    assert protocol.RESULT_LENGTH == 45 and protocol.INFO_LENGTH == 13 and protocol.LOADED_LENGTH == 5
    assert protocol.MAX_CHUNK == 784 and protocol.MAX_PAYLOAD == 789  # a full chunk and its header


def random_frames(rng: random.Random, n: int) -> list[tuple[int, bytes]]:
    frames = []
    for _ in range(n):
        length = rng.choice([0, 1, 45, rng.randrange(protocol.MAX_PAYLOAD + 1)])
        frames.append((rng.randrange(256), bytes(rng.randrange(256) for _ in range(length))))
    return frames


def test_decoder_round_trip_with_split_feeds():
    seed = 42
    rng = random.Random(seed)
    frames = random_frames(rng, 30)
    stream = b"".join(protocol.encode_frame(t, p) for t, p in frames)
    decoder = FrameDecoder()
    got = []
    position = 0
    while position < len(stream):  # chunks of 0 .. 40 bytes, frames split anywhere
        step = rng.randrange(41)
        got += decoder.feed(stream[position : position + step])
        position += step
    assert [(f.type, f.payload) for f in got] == frames, f"seed {seed}"
    assert all(f.crc_ok for f in got) and decoder.skipped == 0


def test_decoder_byte_by_byte_and_needed():
    frame = protocol.encode_frame(FrameType.RESULT, bytes(45))
    decoder = FrameDecoder()
    for k, byte in enumerate(frame):
        assert decoder.needed() == (4 - k if k < 4 else len(frame) - k)
        got = decoder.feed(bytes([byte]))
        assert got == ([] if k < len(frame) - 1 else [Frame(FrameType.RESULT, bytes(45))])
    assert decoder.needed() == 4


def test_decoder_resynchronises_after_garbage():
    seed = 7
    rng = random.Random(seed)
    frames = random_frames(rng, 20)
    stream = b""
    for t, p in frames:
        # Garbage, sometimes holding SYNC bytes and a bogus header with a huge LEN.
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
        if rng.random() < 0.3:
            garbage += bytes([protocol.SYNC, 0x42, 0xFF, 0xFF])
        stream += garbage + protocol.encode_frame(t, p)
    decoder = FrameDecoder()
    got = []
    for k in range(0, len(stream), 97):
        got += decoder.feed(stream[k : k + 97])
    good = [(f.type, f.payload) for f in got if f.crc_ok]
    assert good == frames, f"seed {seed}: {len(good)} good frames of {len(frames)}"
    assert decoder.skipped > 0


def test_decoder_reports_a_bad_crc_and_finds_the_next_frame():
    bad = bytearray(protocol.encode_frame(FrameType.INFO, bytes(8)))
    bad[6] ^= 0x10
    good = protocol.encode_frame(FrameType.ERROR, b"\x04")
    frames = FrameDecoder().feed(bytes(bad) + good)
    assert [(f.type, f.crc_ok) for f in frames] == [(FrameType.INFO, False), (FrameType.ERROR, True)]


def test_decoder_finds_a_frame_inside_a_bad_frame():
    """A lone SYNC in noise makes a bogus candidate; the real frame inside it is still found."""
    good = protocol.encode_frame(FrameType.ERROR, b"\x01")
    frames = FrameDecoder().feed(bytes([protocol.SYNC, 0x00, 0x02, 0x00]) + good)
    assert frames[-1] == Frame(FrameType.ERROR, b"\x01") and not frames[0].crc_ok


def test_decoder_length_limit():
    decoder = FrameDecoder(max_payload=10)
    assert decoder.feed(protocol.encode_frame(0x10, bytes(11))) == []
    assert decoder.feed(protocol.encode_frame(0x10, bytes(10))) == [Frame(0x10, bytes(10))]
    with pytest.raises(ValueError):
        FrameDecoder(max_payload=-1)


# --------------------------------------------------------------------------------------------
# Payloads


def test_classify_request():
    image = np.random.default_rng(5).integers(0, 256, (28, 28), dtype=np.uint8)
    frame = FrameDecoder().feed(protocol.classify_request(image))[0]
    assert frame.type == FrameType.CLASSIFY and len(frame.payload) == 784
    assert frame.payload[28 * 3 + 5] == image[3, 5], "not raster order"
    np.testing.assert_array_equal(np.frombuffer(frame.payload, np.uint8).reshape(28, 28), image)
    assert protocol.classify_request(np.asfortranarray(image)) == protocol.classify_request(image)
    with pytest.raises(InputError, match="uint8"):
        protocol.classify_request(image.astype(np.int64))
    with pytest.raises(InputError, match="shape"):
        protocol.classify_request(image[:27])


def test_result_round_trip_and_layout():
    logits = np.array([-(1 << 31), (1 << 31) - 1, -1, 0, 1, -3_000_000, 2_097_151, -2_097_152, 12345, -54321])
    payload = protocol.result_payload(7, logits, 0xDEADBEEF)
    assert len(payload) == 45 and payload[0] == 7
    assert payload[1:5] == bytes([0x00, 0x00, 0x00, 0x80]) and payload[9:13] == b"\xff\xff\xff\xff"
    assert payload[41:] == bytes([0xEF, 0xBE, 0xAD, 0xDE])
    klass, got, cycles = protocol.parse_result(Frame(FrameType.RESULT, payload))
    assert klass == 7 and cycles == 0xDEADBEEF and got.dtype == np.int64
    np.testing.assert_array_equal(got, logits)


@pytest.mark.parametrize("frame,message", [
    (Frame(FrameType.RESULT, bytes(44)), "45 bytes"),
    (Frame(FrameType.INFO, bytes([protocol.VERSION]) + bytes(7)), "expected RESULT"),
    (Frame(FrameType.RESULT, bytes(45), crc_ok=False), "bad CRC"),
    (Frame(FrameType.RESULT, bytes([10]) + bytes(44)), "class 10"),
])
def test_parse_result_rejects(frame, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.parse_result(frame)


def test_info_round_trip():
    info = protocol.BoardInfo(protocol.VERSION, arith.Arithmetic("floor", "wrap"), 20, 22, 0xCAFEF00D,
                              True, False, 45_066)
    payload = info.encode()
    assert payload == bytes([protocol.VERSION, 0b11, 20, 22, 0x0D, 0xF0, 0xFE, 0xCA, 0b01, 0x0A, 0xB0, 0x00, 0x00])
    assert protocol.BoardInfo(2, arith.Arithmetic(), 1, 24, 0, False, True, 1).encode()[8] == 0b10
    assert protocol.parse_info(Frame(FrameType.INFO, payload)) == info
    assert protocol.BoardInfo(1, arith.Arithmetic(), 1, 24, 0).encode()[1] == 0
    with pytest.raises(protocol.ProtocolError, match="version 9"):
        protocol.parse_info(Frame(FrameType.INFO, bytes([9]) + payload[1:]))
    with pytest.raises(ValueError):
        protocol.BoardInfo(1, arith.Arithmetic(), 256, 24, 0).encode()


def test_load_frames_layout():
    chunk = protocol.load_chunk_request(0x010203, b"\x7f\x80")
    assert chunk == protocol.encode_frame(FrameType.LOAD_WEIGHTS, bytes([0, 0x03, 0x02, 0x01, 0x00, 0x7F, 0x80]))
    commit = protocol.load_commit_request(45_066, 0xCAFEF00D)
    assert commit[4:-1] == bytes([1]) + (45_066).to_bytes(4, "little") + bytes([0x0D, 0xF0, 0xFE, 0xCA])
    assert len(protocol.load_chunk_request(7, bytes(784))) == protocol.OVERHEAD_BYTES + protocol.MAX_PAYLOAD
    for bad in (b"", bytes(785)):
        with pytest.raises(ValueError, match="chunk"):
            protocol.load_chunk_request(0, bad)
    with pytest.raises(ValueError):
        protocol.load_commit_request(1 << 32, 0)
    image = bytes(range(256)) * 7
    chunks = protocol.image_chunks(image)
    assert [o for o, _ in chunks] == [0, 784, 1568] and b"".join(c for _, c in chunks) == image
    assert [len(c) for _, c in protocol.image_chunks(image, 500)] == [500, 500, 500, 292]
    frames = protocol.load_frames(image, 5)
    assert len(frames) == 4 and frames[-1] == protocol.load_commit_request(len(image), 5)
    with pytest.raises(ValueError, match="empty"):
        protocol.image_chunks(b"")
    with pytest.raises(ValueError, match="chunk size"):
        protocol.image_chunks(image, 785)


@pytest.mark.parametrize("op,length,ok", [
    (0, 0, False), (0, 5, False), (0, 6, True), (0, 789, True), (0, 790, False),
    (1, 9, True), (1, 8, False), (1, 10, False), (2, 1, True), (0xFF, 300, True),
])
def test_load_length_ok(op, length, ok):
    assert protocol.load_length_ok(op, length) is ok


def test_loaded_round_trip():
    payload = protocol.loaded_payload(45_066, True)
    assert payload == bytes([0x0A, 0xB0, 0, 0, protocol.WEIGHTS_VALID])
    assert protocol.parse_loaded(Frame(FrameType.WEIGHTS_LOADED, payload)) == (45_066, True)
    assert protocol.parse_loaded(Frame(FrameType.WEIGHTS_LOADED, protocol.loaded_payload(3, False))) == (3, False)
    with pytest.raises(protocol.ProtocolError, match="5 bytes"):
        protocol.parse_loaded(Frame(FrameType.WEIGHTS_LOADED, bytes(4)))


def test_weights_id_depends_on_every_code():
    from lenet_fpga.model import weights

    params = weights.load().params
    wid = protocol.weights_id(params)
    assert wid == protocol.weights_id(dict(reversed(list(params.items())))), "must not depend on dict order"
    changed = dict(params)
    changed["fc3.bias"] = params["fc3.bias"].copy()
    changed["fc3.bias"][9] ^= 1
    assert protocol.weights_id(changed) != wid
    assert 0 <= wid < 1 << 32


# --------------------------------------------------------------------------------------------
# The host client


class FakeBoard:
    """A pyserial-like port with a board behind it that answers as the RTL link does, weight
    loading included (``memory`` is what the accelerator's weight memories hold).

    Misbehaviour on request: ``silent``, ``corrupt_reply``, ``noise``, ``reply_with``; for
    loads, ``corrupt_requests`` (indices of requests that arrive with a bad CRC), ``lose_replies``
    (indices of requests carried out whose reply is lost) and ``busy`` (refuse loads with BUSY).
    """

    def __init__(self, image_bytes: int = 100, in_bitstream: bool = True):
        self.image_bytes = image_bytes
        self.in_bitstream = in_bitstream
        self.valid, self.weights_id = in_bitstream, 1 if in_bitstream else 0
        self.loading, self.received = False, 0
        self.memory = bytearray(image_bytes)
        self.inbox = bytearray()  # what the host wrote, not yet parsed
        self.outbox = bytearray()  # what the board sent, not yet read
        self.silent = False
        self.corrupt_reply = False
        self.noise = b""
        self.reply_with: bytes | None = None
        self.corrupt_requests: set[int] = set()
        self.lose_replies: set[int] = set()
        self.busy = False
        self.requests: list[Frame] = []

    @property
    def info(self) -> bytes:
        return protocol.BoardInfo(protocol.VERSION, arith.Arithmetic(), 20, 22, self.weights_id if self.valid else 0,
                                  self.valid, self.in_bitstream, self.image_bytes).encode()

    def _load(self, payload: bytes) -> bytes:
        """The link's LOAD_WEIGHTS rules (boards/link.py), returning the reply payload or ERROR."""
        op, argument = payload[0], int.from_bytes(payload[1:5], "little")
        error = protocol.encode_frame(FrameType.ERROR, protocol.error_payload(ErrorCode.BAD_LOAD))
        if self.busy:
            return protocol.encode_frame(FrameType.ERROR, protocol.error_payload(ErrorCode.BUSY))
        if op == protocol.LoadOp.CHUNK:
            data = payload[protocol.CHUNK_HEADER_BYTES:]
            in_order = argument == 0 or (self.loading and argument == self.received)
            if in_order and argument + len(data) <= self.image_bytes:
                self.valid, self.loading, self.received = False, True, argument + len(data)
                self.memory[argument : argument + len(data)] = data
                return protocol.encode_frame(FrameType.WEIGHTS_LOADED, protocol.loaded_payload(self.received, False))
        elif op == protocol.LoadOp.COMMIT:
            if self.loading and self.received == self.image_bytes == argument:
                self.valid, self.loading = True, False
                self.weights_id = int.from_bytes(payload[5:9], "little")
                return protocol.encode_frame(FrameType.WEIGHTS_LOADED, protocol.loaded_payload(self.received, True))
        self.valid, self.loading = False, False
        return error

    def write(self, data: bytes) -> int:
        self.inbox += data
        decoder = FrameDecoder(max_payload=protocol.MAX_LENGTH)
        for frame in decoder.feed(bytes(self.inbox)):
            self.requests.append(frame)
            self._answer(frame)
        return len(data)

    def _answer(self, frame: Frame) -> None:
        self.inbox.clear()
        index = len(self.requests) - 1
        if self.silent:
            return

        def error(code):
            return protocol.encode_frame(FrameType.ERROR, protocol.error_payload(code))

        if self.reply_with is not None:
            reply = self.reply_with
        elif not frame.crc_ok or index in self.corrupt_requests:
            reply = error(ErrorCode.BAD_CRC)
        elif frame.type not in protocol.REQUESTS:
            reply = error(ErrorCode.UNKNOWN_TYPE)
        elif frame.type == FrameType.LOAD_WEIGHTS:
            ok = protocol.load_length_ok(frame.payload[0], len(frame.payload)) if frame.payload else False
            reply = self._load(frame.payload) if ok else error(ErrorCode.BAD_LENGTH)
            if index in self.lose_replies:
                return
        elif len(frame.payload) != protocol.REQUEST_LENGTHS[frame.type]:
            reply = error(ErrorCode.BAD_LENGTH)
        elif frame.type == FrameType.PING:
            reply = protocol.encode_frame(FrameType.INFO, self.info)
        elif not self.valid:
            reply = error(ErrorCode.NO_WEIGHTS)
        else:
            pixels = np.frombuffer(frame.payload, np.uint8).astype(np.int64)
            logits = np.array([pixels[j::10].sum() - 1000 * j for j in range(10)])
            reply = protocol.encode_frame(FrameType.RESULT,
                                          protocol.result_payload(int(np.argmax(logits)), logits, 9759))
        if self.corrupt_reply:
            reply = bytearray(reply)
            reply[5] ^= 0x01
        self.outbox += self.noise + reply

    def read(self, n: int) -> bytes:
        data = bytes(self.outbox[:n])
        del self.outbox[:n]
        return data

    def reset_input_buffer(self) -> None:
        self.outbox.clear()


def test_client_ping_and_classify():
    board = FakeBoard()
    client = BoardClient(board)
    info = client.ping()
    assert info.linear_lanes == 20 and info.logit_bits == 22 and info.weights_id == 1
    image = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    klass, logits, cycles = client.classify(image)
    expected = np.array([image.reshape(-1)[j::10].astype(np.int64).sum() - 1000 * j for j in range(10)])
    np.testing.assert_array_equal(logits, expected)
    assert klass == np.argmax(expected) and cycles == 9759
    assert [f.type for f in board.requests] == [FrameType.PING, FrameType.CLASSIFY]


def test_client_skips_noise_before_the_reply():
    board = FakeBoard()
    board.noise = bytes([0x00, 0x13, protocol.SYNC, 0x99, 0xFF, 0xFF, 0x42])  # a SYNC with an absurd LEN
    assert BoardClient(board).ping().version == protocol.VERSION


@pytest.mark.parametrize("request_bytes,code", [
    (protocol.encode_frame(FrameType.CLASSIFY, bytes(10)), ErrorCode.BAD_LENGTH),
    (protocol.encode_frame(FrameType.LOAD_WEIGHTS, bytes(3)), ErrorCode.BAD_LENGTH),
    (protocol.encode_frame(0x04, bytes(3)), ErrorCode.UNKNOWN_TYPE),
    (protocol.load_commit_request(100, 7), ErrorCode.BAD_LOAD),
    (protocol.ping_request()[:-1] + b"\x00", ErrorCode.BAD_CRC),
])
def test_client_raises_the_board_error(request_bytes, code):
    with pytest.raises(BoardError, match=code.name) as info:
        BoardClient(FakeBoard()).transact(request_bytes)
    assert info.value.code == code and isinstance(info.value, InputError)


def load_image(n: int = 100, seed: int = 5) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def test_client_load_weights():
    board, image = FakeBoard(), load_image()
    client = BoardClient(board)
    progress = []
    info = client.load_weights(image, 0xABCD1234, progress.append, chunk=30)
    assert bytes(board.memory) == image and sum(progress) == len(image) and progress == [30, 30, 30, 10]
    assert info.weights_valid and info.weights_id == 0xABCD1234 and info.image_bytes == 100
    kinds = [(f.type, f.payload[:1]) for f in board.requests]
    assert kinds == [(FrameType.PING, b"")] + [(FrameType.LOAD_WEIGHTS, b"\x00")] * 4 + [
        (FrameType.LOAD_WEIGHTS, b"\x01"), (FrameType.PING, b"")]
    assert client.classify(np.zeros((28, 28), np.uint8))[2] == 9759


def test_client_load_weights_retries_a_corrupted_chunk_and_restarts_after_a_lost_reply():
    image = load_image()
    board = FakeBoard()
    board.corrupt_requests = {2}  # the second chunk arrives with a bad CRC: sent again
    progress = []
    BoardClient(board).load_weights(image, 9, progress.append, chunk=30)
    assert bytes(board.memory) == image and sum(progress) == 100
    assert [int.from_bytes(f.payload[1:5], "little") for f in board.requests[1:-2]] == [0, 30, 30, 60, 90]
    board = FakeBoard()
    board.lose_replies = {3}  # the third chunk is taken but its reply lost: the load starts over
    progress = []
    BoardClient(board).load_weights(image, 9, progress.append, chunk=30)
    assert bytes(board.memory) == image and sum(progress) == 100 and -60 in progress
    assert [int.from_bytes(f.payload[1:5], "little") for f in board.requests[1:-2]] == [0, 30, 60, 0, 30, 60, 90]


def test_client_load_weights_errors():
    image = load_image()
    with pytest.raises(BoardError, match="expects a 100-byte weight image, this one has 99"):
        BoardClient(FakeBoard()).load_weights(image[:99], 1)
    board = FakeBoard()
    board.corrupt_requests = {1, 2}
    with pytest.raises(BoardError, match="at byte 0 of 100.*BAD_CRC") as info:
        BoardClient(board).load_weights(image, 1, retries=1)
    assert info.value.code == ErrorCode.BAD_CRC
    assert board.valid, "a first chunk that never arrived leaves the old weights valid"
    board = FakeBoard()
    board.busy = True
    with pytest.raises(BoardError, match="BUSY"):
        BoardClient(board).load_weights(image, 1, retries=2)
    assert len(board.requests) == 4 and board.valid
    board = FakeBoard()
    board.corrupt_requests = {2}
    with pytest.raises(BoardError, match="at byte 30") as info:
        BoardClient(board).load_weights(image, 1, chunk=30, retries=0)
    assert not board.valid, "the board must not answer after half a load"
    with pytest.raises(BoardError, match="NO_WEIGHTS.*load weights first"):
        BoardClient(board).classify(np.zeros((28, 28), np.uint8))
    with pytest.raises(InputError, match="u32"):
        BoardClient(board).load_weights(image, -1)


def test_client_errors_on_silence_corruption_and_wrong_reply():
    board = FakeBoard()
    client = BoardClient(board)
    board.silent = True
    with pytest.raises(BoardError, match="timeout: no reply"):
        client.ping()
    board.silent, board.corrupt_reply = False, True
    with pytest.raises(BoardError, match="bad CRC"):
        client.ping()
    board.corrupt_reply = False
    board.reply_with = protocol.encode_frame(FrameType.RESULT, bytes(45))
    with pytest.raises(BoardError, match="expected INFO, got a RESULT"):
        client.ping()
    board.reply_with = protocol.encode_frame(FrameType.RESULT, bytes(45))[:20]  # cut short
    with pytest.raises(BoardError, match="incomplete reply"):
        client.ping()
    board.reply_with = protocol.encode_frame(FrameType.ERROR, b"\x63")
    with pytest.raises(BoardError, match="99") as info:
        client.ping()
    assert info.value.code == 99
    with pytest.raises(TypeError, match="pyserial-like"):
        BoardClient(object())


def test_client_over_pyserial_loopback():
    """``loop://`` echoes the request: the client sees a PING where it wanted INFO."""
    pytest.importorskip("serial")
    port = open_serial("loop://", 115_200, timeout=0.2)
    try:
        with pytest.raises(BoardError, match="PING"):
            BoardClient(port).ping()
    finally:
        port.close()
    assert 0.5 < serial_timeout(115_200) < 1.0 and serial_timeout(9_600) > 1.6


def test_open_serial_errors():
    pytest.importorskip("serial")
    with pytest.raises(BoardError, match="cannot open"):
        open_serial("/dev/nonexistent-lenet-board", 115_200)
    with pytest.raises(InputError, match="baud"):
        open_serial("loop://", 0)
