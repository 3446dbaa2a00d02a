"""The wire format (``boards/protocol.py``) in pure Python: CRCs, frames, the decoder, the sizes a
network gives the frames, and every payload's layout, each derived by hand. The host client is
tested in test_host.py."""

import random
import zlib

import numpy as np
import pytest
from amaranth.lib.crc import catalog

from lenet_fpga.boards import protocol
from lenet_fpga.boards.protocol import ErrorCode, Frame, FrameDecoder, FrameSizes, FrameType
from lenet_fpga.model import arith
from lenet_fpga.model.errors import InputError

LENET = FrameSizes(28, 10)


# --------------------------------------------------------------------------------------------
# CRCs


@pytest.mark.parametrize("data,crc", [
    (b"123456789", 0x4B37),  # the catalogue check value of CRC-16/MODBUS
    (b"", 0xFFFF),  # the initial value, no final XOR
    (b"\x00", 0x40BF),
    (b"\x01", 0x807E),
])
def test_crc16_known_values(data, crc):
    assert protocol.crc16(data) == crc


def bitwise_crc16(data: bytes) -> int:
    """The textbook definition of a reflected CRC: a shift register moving right, one bit at a
    time, least significant bit first, polynomial 0x8005 reversed (0xA001)."""
    crc = 0xFFFF
    for byte in data:
        for bit in range(8):
            feedback = (crc ^ (byte >> bit)) & 1
            crc >>= 1
            if feedback:
                crc ^= 0xA001
    return crc


def test_crc16_is_the_textbook_one_and_amaranths_and_continues():
    """The host's table CRC against the bit-serial definition and against amaranth.lib.crc's
    software model of the catalogue entry the RTL instantiates."""
    rng = random.Random(1234)
    amaranth_crc16 = catalog.CRC16_MODBUS(8)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
        assert protocol.crc16(data) == bitwise_crc16(data) == amaranth_crc16.compute(data), f"seed 1234, data {data.hex()}"
        cut = rng.randrange(len(data) + 1)
        assert protocol.crc16(data[cut:], protocol.crc16(data[:cut])) == protocol.crc16(data)


def test_a_frame_leaves_the_crc_residue():
    """The board checks a frame by running its CRC bytes through the CRC too: sent low byte
    first, they leave the register at the algorithm's residue, 0."""
    frame = protocol.encode_frame(0x42, b"\x01\x02\x03", seq=5)
    assert catalog.CRC16_MODBUS(8).residue() == 0
    assert protocol.crc16(frame[1:]) == 0 and protocol.crc16(frame[1:-1]) != 0


def test_crc32_is_the_catalogue_one():
    assert protocol.crc32(b"123456789") == 0xCBF43926  # the catalogue check value of CRC-32/ISO-HDLC
    rng = random.Random(99)
    amaranth_crc32 = catalog.CRC32_ISO_HDLC(8)
    for n in (1, 7, 784, 3000):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert protocol.crc32(data) == amaranth_crc32.compute(data) == zlib.crc32(data)


def test_crc16_detects_every_single_and_double_bit_error_of_a_frame():
    frame = protocol.encode_frame(FrameType.CLASSIFY, bytes(range(256)) * 3 + bytes(16), seq=77)
    body = frame[1:]
    bits = 8 * len(body)
    rng = random.Random(5)
    flips = [(k,) for k in range(bits)] + [tuple(rng.sample(range(bits), 2)) for _ in range(3000)]
    for flip in flips:
        damaged = bytearray(body)
        for k in flip:
            damaged[k // 8] ^= 1 << (k % 8)
        assert protocol.crc16(damaged) != 0, f"flip of bits {flip} not detected"


# --------------------------------------------------------------------------------------------
# Frames


def test_encode_frame_layout():
    frame = protocol.encode_frame(FrameType.RESULT, bytes(range(45)), seq=0x3C)
    assert frame[:5] == bytes([0xA5, 0x82, 0x3C, 45, 0]) and frame[5:-2] == bytes(range(45))
    assert frame[-2:] == protocol.crc16(frame[1:-2]).to_bytes(2, "little") and len(frame) == 45 + 7
    crc = protocol.crc16(b"\x01\x09\x00\x00")
    assert protocol.ping_request(9) == bytes([0xA5, 0x01, 0x09, 0x00, 0x00, crc & 0xFF, crc >> 8])
    for bad in ((0x100, b"", 0), (1, b"", 256), (1, bytes(protocol.MAX_LENGTH + 1), 0)):
        with pytest.raises(ValueError):
            protocol.encode_frame(*bad)


def test_type_and_error_codes_are_the_documented_ones():
    assert {t.name: int(t) for t in FrameType} == {
        "PING": 0x01, "CLASSIFY": 0x02, "LOAD_WEIGHTS": 0x03, "IMAGE": 0x04, "BENCH": 0x05,
        "INFO": 0x81, "RESULT": 0x82, "WEIGHTS_LOADED": 0x83, "IMAGE_STORED": 0x84, "BENCH_RESULT": 0x85, "ERROR": 0xEE}
    assert {e.name: int(e) for e in ErrorCode} == {
        "BAD_CRC": 1, "BAD_LENGTH": 2, "UNKNOWN_TYPE": 3, "TIMEOUT": 4, "BUSY": 5, "NO_WEIGHTS": 6, "BAD_LOAD": 7,
        "BAD_IMAGE": 8, "HUNG": 9, "TOO_LONG": 10, "BAD_RUNS": 11,
        "WEIGHTS_FIXED": 12}
    assert {o.name: int(o) for o in protocol.LoadOp} == {"CHUNK": 0, "COMMIT": 1}
    assert protocol.VERSION == 4


def random_frames(rng: random.Random, n: int) -> list[tuple[int, bytes, int]]:
    frames = []
    for _ in range(n):
        length = rng.choice([0, 1, 45, rng.randrange(800)])
        frames.append((rng.randrange(256), bytes(rng.randrange(256) for _ in range(length)), rng.randrange(256)))
    return frames


def test_decoder_round_trip_with_split_feeds():
    seed = 42
    rng = random.Random(seed)
    frames = random_frames(rng, 30)
    stream = b"".join(protocol.encode_frame(t, p, s) for t, p, s in frames)
    decoder = FrameDecoder()
    got = []
    position = 0
    while position < len(stream):  # chunks of 0 .. 40 bytes, frames split anywhere
        step = rng.randrange(41)
        got += decoder.feed(stream[position : position + step])
        position += step
    assert [(f.type, f.payload, f.seq) for f in got] == frames, f"seed {seed}"
    assert all(f.crc_ok for f in got) and decoder.skipped == 0


def test_decoder_byte_by_byte_and_needed():
    frame = protocol.encode_frame(FrameType.RESULT, bytes(45), 3)
    decoder = FrameDecoder()
    for k, byte in enumerate(frame):
        assert decoder.needed() == (5 - k if k < 5 else len(frame) - k)
        got = decoder.feed(bytes([byte]))
        assert got == ([] if k < len(frame) - 1 else [Frame(FrameType.RESULT, bytes(45), 3)])
    assert decoder.needed() == 5


def test_decoder_resynchronises_after_garbage():
    seed = 7
    rng = random.Random(seed)
    frames = random_frames(rng, 20)
    stream = b""
    for t, p, s in frames:
        # Garbage, sometimes holding SYNC bytes and a bogus header with a huge LEN.
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
        if rng.random() < 0.3:
            garbage += bytes([protocol.SYNC, 0x42, 0x00, 0xFF, 0xFF])
        stream += garbage + protocol.encode_frame(t, p, s)
    decoder = FrameDecoder(max_payload=800)
    got = []
    for k in range(0, len(stream), 97):
        got += decoder.feed(stream[k : k + 97])
    good = [(f.type, f.payload, f.seq) for f in got if f.crc_ok]
    assert good == frames, f"seed {seed}: {len(good)} good frames of {len(frames)}"
    assert decoder.skipped > 0


def test_decoder_reports_a_bad_crc_and_finds_the_next_frame():
    bad = bytearray(protocol.encode_frame(FrameType.INFO, bytes(8)))
    bad[7] ^= 0x10
    good = protocol.encode_frame(FrameType.ERROR, b"\x04")
    frames = FrameDecoder().feed(bytes(bad) + good)
    assert [(f.type, f.crc_ok) for f in frames] == [(FrameType.INFO, False), (FrameType.ERROR, True)]


def test_decoder_finds_a_frame_inside_a_bad_frame():
    """A lone SYNC in noise makes a bogus candidate; the real frame inside it is still found."""
    good = protocol.encode_frame(FrameType.ERROR, b"\x01", 4)
    frames = FrameDecoder().feed(bytes([protocol.SYNC, 0x00, 0x00, 0x02, 0x00]) + good)
    assert frames[-1] == Frame(FrameType.ERROR, b"\x01", 4) and not frames[0].crc_ok


def test_decoder_length_limit():
    decoder = FrameDecoder(max_payload=10)
    assert decoder.feed(protocol.encode_frame(0x10, bytes(11))) == []
    assert decoder.feed(protocol.encode_frame(0x10, bytes(10))) == [Frame(0x10, bytes(10))]
    with pytest.raises(ValueError):
        FrameDecoder(max_payload=-1)


# --------------------------------------------------------------------------------------------
# The sizes a network gives the frames


def test_frame_sizes_of_lenet5_and_of_another_network():
    # LeNet-5 on MNIST: 28 x 28 = 784 pixels; RESULT 1 + 10 x 4 + 4 = 45; the longest request a
    # full chunk, 5 + 784 = 789; the longest reply INFO (25) or RESULT (45).
    assert (LENET.pixels, LENET.result_length, LENET.max_request, LENET.max_reply) == (784, 45, 789, 45)
    # 32 x 32 input, 12 classes: 1024; 1 + 48 + 4 = 53; 5 + 1024 = 1029.
    other = FrameSizes(32, 12)
    assert (other.pixels, other.result_length, other.max_request, other.max_reply) == (1024, 53, 1029, 53)
    # A 2 x 2 network: INFO is the longest reply (25 > 1 + 8 + 4) and the commit the longest request (13 > 5 + 4).
    tiny = FrameSizes(2, 2)
    assert (tiny.max_reply, tiny.max_request) == (25, 13)
    assert [tiny.reply_length(t) for t in (FrameType.INFO, FrameType.RESULT, FrameType.BENCH_RESULT)] == [25, 13, 15]
    for bad in ((0, 10), (256, 10), (28, 1), (28, 256)):
        with pytest.raises(ValueError):
            FrameSizes(*bad)


@pytest.mark.parametrize("type,length,op,ok", [
    (FrameType.PING, 0, None, True), (FrameType.PING, 1, None, False),
    (FrameType.CLASSIFY, 784, None, True), (FrameType.CLASSIFY, 0, None, True), (FrameType.CLASSIFY, 783, None, False),
    (FrameType.IMAGE, 3, None, True), (FrameType.IMAGE, 786, None, True), (FrameType.IMAGE, 2, None, False),
    (FrameType.IMAGE, 787, None, False),
    (FrameType.LOAD_WEIGHTS, 0, None, False), (FrameType.LOAD_WEIGHTS, 5, 0, False), (FrameType.LOAD_WEIGHTS, 6, 0, True),
    (FrameType.LOAD_WEIGHTS, 789, 0, True), (FrameType.LOAD_WEIGHTS, 790, 0, False),
    (FrameType.LOAD_WEIGHTS, 13, 1, True), (FrameType.LOAD_WEIGHTS, 12, 1, False), (FrameType.LOAD_WEIGHTS, 14, 1, False),
    (FrameType.LOAD_WEIGHTS, 1, 2, True), (FrameType.LOAD_WEIGHTS, 789, 0xFF, True), (FrameType.LOAD_WEIGHTS, 790, 0xFF, False),
    (FrameType.BENCH, 2, None, True), (FrameType.BENCH, 0, None, False), (FrameType.BENCH, 3, None, False),
    (0x06, 0, None, False), (FrameType.INFO, 25, None, False),
])
def test_request_lengths(type, length, op, ok):
    assert LENET.request_length_ok(type, length, op) is ok


# --------------------------------------------------------------------------------------------
# Payloads


def test_classify_and_piece_requests():
    image = np.random.default_rng(5).integers(0, 256, (28, 28), dtype=np.uint8)
    frame = FrameDecoder().feed(protocol.classify_request(image, LENET, seq=4))[0]
    assert (frame.type, frame.seq, len(frame.payload)) == (FrameType.CLASSIFY, 4, 784)
    assert frame.payload[28 * 3 + 5] == image[3, 5], "not raster order"
    assert protocol.classify_request(np.asfortranarray(image), LENET) == protocol.classify_request(image, LENET)
    with pytest.raises(InputError, match="uint8"):
        protocol.classify_request(image.astype(np.int64), LENET)
    with pytest.raises(InputError, match=r"shape \[32,32\]"):
        protocol.classify_request(image, FrameSizes(32, 10))
    assert FrameDecoder().feed(protocol.classify_pieces_request(6))[0] == Frame(FrameType.CLASSIFY, b"", 6)
    piece = protocol.image_piece_request(0x0102, b"\x07\x08", LENET, seq=1)
    assert piece == protocol.encode_frame(FrameType.IMAGE, bytes([0x02, 0x01, 0x07, 0x08]), 1)
    for bad in (b"", bytes(785)):
        with pytest.raises(ValueError, match="piece"):
            protocol.image_piece_request(0, bad, LENET)
    assert [(o, len(p)) for o, p in protocol.pieces(bytes(100), 32, 784)] == [(0, 32), (32, 32), (64, 32), (96, 4)]


def test_result_round_trip_and_layout():
    logits = np.array([-(1 << 31), (1 << 31) - 1, -1, 0, 1, -3_000_000, 2_097_151, -2_097_152, 12345, -54321])
    payload = protocol.result_payload(7, logits, 0xDEADBEEF, LENET)
    assert len(payload) == 45 and payload[0] == 7
    assert payload[1:5] == bytes([0x00, 0x00, 0x00, 0x80]) and payload[9:13] == b"\xff\xff\xff\xff"
    assert payload[41:] == bytes([0xEF, 0xBE, 0xAD, 0xDE])
    klass, got, cycles = protocol.parse_result(Frame(FrameType.RESULT, payload), LENET)
    assert klass == 7 and cycles == 0xDEADBEEF and got.dtype == np.int64
    np.testing.assert_array_equal(got, logits)
    twelve = FrameSizes(28, 12)
    payload = protocol.result_payload(11, np.arange(12), 5, twelve)
    assert len(payload) == 53 and protocol.parse_result(Frame(FrameType.RESULT, payload), twelve)[0] == 11


@pytest.mark.parametrize("frame,message", [
    (Frame(FrameType.RESULT, bytes(44)), "45 bytes"),
    (Frame(FrameType.INFO, bytes([protocol.VERSION]) + bytes(20)), "expected RESULT"),
    (Frame(FrameType.RESULT, bytes(45), crc_ok=False), "bad CRC"),
    (Frame(FrameType.RESULT, bytes([10]) + bytes(44)), "class 10"),
])
def test_parse_result_rejects(frame, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.parse_result(frame, LENET)


def test_info_round_trip_and_layout():
    info = protocol.BoardInfo(protocol.VERSION, arith.Arithmetic("floor", "wrap"), "compact", 22, 0xCAFEF00D,
                              True, False, 45_066, 28, 10, 300, True, 0x010203, 85_000_000)
    payload = info.encode()
    assert payload == bytes([4, 0b11, 1, 22, 0x0D, 0xF0, 0xFE, 0xCA, 0b101, 0x0A, 0xB0, 0x00, 0x00,
                             0x03, 0x02, 0x01, 0x00, 28, 10, 0x2C, 0x01, 0x40, 0xFF, 0x10, 0x05])
    assert protocol.parse_info(Frame(FrameType.INFO, payload)) == info
    assert info.sizes == LENET
    fixed = protocol.BoardInfo(**{**info.__dict__, "weights_in_bitstream": True, "weights_fixed": True})
    assert fixed.encode()[8] == 0b1111  # valid, in the bitstream, loading, fixed
    assert protocol.parse_info(Frame(FrameType.INFO, fixed.encode())) == fixed
    with pytest.raises(protocol.ProtocolError, match="version 2"):
        protocol.parse_info(Frame(FrameType.INFO, bytes([2]) + payload[1:13]))
    with pytest.raises(protocol.ProtocolError, match="design 5"):
        protocol.parse_info(Frame(FrameType.INFO, payload[:2] + b"\x05" + payload[3:]))
    with pytest.raises(protocol.ProtocolError, match="1 classes cannot travel"):
        protocol.parse_info(Frame(FrameType.INFO, payload[:18] + b"\x01" + payload[19:]))
    for bad in (dict(design="other"), dict(multipliers=1 << 16), dict(logit_bits=33), dict(image_size=300),
                dict(clock_hz=1 << 32)):
        with pytest.raises(ValueError):
            protocol.BoardInfo(**{**info.__dict__, **bad}).encode()


def test_load_frames_layout():
    chunk = protocol.load_chunk_request(0x010203, b"\x7f\x80", LENET, seq=2)
    assert chunk == protocol.encode_frame(FrameType.LOAD_WEIGHTS, bytes([0, 0x03, 0x02, 0x01, 0x00, 0x7F, 0x80]), 2)
    commit = protocol.load_commit_request(45_066, 0xCAFEF00D, 0x11223344)
    assert commit[5:-2] == (bytes([1]) + (45_066).to_bytes(4, "little") + bytes([0x0D, 0xF0, 0xFE, 0xCA])
                            + bytes([0x44, 0x33, 0x22, 0x11]))
    assert len(protocol.load_chunk_request(7, bytes(784), LENET)) == protocol.OVERHEAD_BYTES + LENET.max_request
    for bad in (b"", bytes(785)):
        with pytest.raises(ValueError, match="chunk"):
            protocol.load_chunk_request(0, bad, LENET)
    with pytest.raises(ValueError):
        protocol.load_commit_request(1 << 32, 0, 0)
    with pytest.raises(ValueError, match="nothing"):
        protocol.pieces(b"", 10, 784)
    with pytest.raises(ValueError, match="piece size"):
        protocol.pieces(bytes(10), 785, 784)


def test_loaded_and_stored_round_trip():
    payload = protocol.loaded_payload(45_066, True)
    assert payload == bytes([0x0A, 0xB0, 0, 0, protocol.WEIGHTS_VALID])
    assert protocol.parse_loaded(Frame(FrameType.WEIGHTS_LOADED, payload)) == (45_066, True)
    assert protocol.parse_loaded(Frame(FrameType.WEIGHTS_LOADED, protocol.loaded_payload(3, False))) == (3, False)
    with pytest.raises(protocol.ProtocolError, match="5 bytes"):
        protocol.parse_loaded(Frame(FrameType.WEIGHTS_LOADED, bytes(4)))
    assert protocol.stored_payload(0x0310) == bytes([0x10, 0x03])
    assert protocol.parse_stored(Frame(FrameType.IMAGE_STORED, bytes([0x10, 0x03]))) == 784


def test_bench_frames_layout_and_round_trip():
    assert protocol.bench_request(0x1234, seq=9) == protocol.encode_frame(FrameType.BENCH, bytes([0x34, 0x12]), 9)
    for bad in (0, 1 << 16, -1, True):
        with pytest.raises(ValueError, match="runs"):
            protocol.bench_request(bad)
    result = protocol.BenchResult(5, 7, 9_801, 0x1_0000_0001)
    payload = result.encode()
    assert payload == bytes([5, 0, 7, 0x49, 0x26, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]) and len(payload) == 15
    assert protocol.parse_bench(Frame(FrameType.BENCH_RESULT, payload), LENET) == result
    # The interval after the first run: (total - first) / (runs - 1); one run: its own cycles.
    assert protocol.BenchResult(5, 7, 9_801, 9_801 + 4 * 6_144).cycles_per_image == 6_144
    assert protocol.BenchResult(1, 7, 9_801, 9_801).cycles_per_image == 9_801


@pytest.mark.parametrize("payload,message", [
    (protocol.BenchResult(3, 10, 5, 20).encode(), "class 10"),
    (bytes(2) + bytes(13), "0 runs"),
    (protocol.BenchResult(3, 1, 50, 20).encode(), "50 cycles for the first and 20"),
    (bytes(14), "15 bytes"),
])
def test_parse_bench_rejects(payload, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.parse_bench(Frame(FrameType.BENCH_RESULT, payload), LENET)


def test_weights_id_depends_on_every_code():
    from lenet_fpga.model import weights

    params = weights.load().params
    wid = protocol.weights_id(params)
    assert wid == protocol.weights_id(dict(reversed(list(params.items())))), "must not depend on dict order"
    name = sorted(params)[-1]
    changed = dict(params)
    changed[name] = params[name].copy()
    changed[name].flat[0] ^= 1
    assert protocol.weights_id(changed) != wid
    assert 0 <= wid < 1 << 32


def test_info_says_whether_the_activation_formats_are_q2_6():
    """Bit 2 of the arithmetic flags: the board's formats are not all Q2.6 (which they are, the
    host takes from the weights file); the parsed INFO keeps only the two modes and the flag."""
    formats = arith.Arithmetic("half-up", "saturate", ("UQ2.2", "UQ3.1", "UQ3.1", "UQ3.1"))
    info = protocol.BoardInfo(protocol.VERSION, formats, "streaming", 22, 1, True, True, 0, 28, 10, 110)
    payload = info.encode()
    assert payload[1] == 0b100
    parsed = protocol.parse_info(Frame(FrameType.INFO, payload))
    assert parsed.activation_formats and parsed.arithmetic == arith.Arithmetic()
    assert parsed.encode() == payload
    with pytest.raises(protocol.ProtocolError, match="arithmetic flags 0x80"):  # bits 3..6: input channels
        protocol.parse_info(Frame(FrameType.INFO, payload[:1] + b"\x80" + payload[2:]))
