"""The host <-> board wire format: the one definition used by the host client, the UART link's
RTL generator (its constants and lengths come from here) and the tests. ``docs/protocol.md``
is the prose version of this file.

A frame is ``SYNC TYPE SEQ LEN_LO LEN_HI PAYLOAD[LEN] CRC_LO CRC_HI``: SYNC is 0xA5, SEQ is
the request's sequence number (a reply carries the SEQ of the request it answers), LEN counts
payload bytes (little-endian), CRC is CRC-16/MODBUS (polynomial 0x8005 reflected, initial value
0xFFFF, no final XOR; little-endian on the wire, as Modbus RTU sends it) over TYPE, SEQ, LEN
and PAYLOAD. The host sends one request and waits for the reply with
its SEQ; every complete request frame gets exactly one reply, an ERROR frame if the board could
not do it. Multi-byte numbers are little-endian; logits are two's-complement int32.

The network travels: INFO says the image side and the class count, and everything whose length
depends on them (CLASSIFY's pixels, RESULT's logits, the largest chunk) follows from those two
numbers through ``FrameSizes``; nothing here names an image size or a class count.

New weights travel as the accelerator's *weight image* (``Accelerator.weight_image``) in
LOAD_WEIGHTS chunks, in order from offset 0, then a commit with the total length, the weights
id and the CRC-32 of the whole image, which the board checks before the weights become valid.
An image can travel whole in one CLASSIFY or in IMAGE pieces (short frames, for a noisy line)
followed by a CLASSIFY without payload. BENCH runs the image the pieces assembled through the
accelerator a given number of times back to back and answers with the board's own cycle count,
so a host can see the accelerator's throughput, which the serial line hides.
"""

from __future__ import annotations

import enum
import hashlib
import zlib
from dataclasses import dataclass

import numpy as np

from ..hdl.designs import DESIGN_NAMES
from ..model import arith
from ..model.errors import InputError
from ..model.images import stream_order
from ..model.network import MAX_INPUT_CHANNELS

SYNC = 0xA5
VERSION = 4  # INFO byte 0; bump on any incompatible change of this file
# 2: weight loading; 3: SEQ in every frame, CRC-16 instead of CRC-8, the network's sizes in
#    INFO, IMAGE pieces, the commit's CRC-32, refusal of an over-long LEN, frame deadline and
#    accelerator watchdog, BENCH and the board's clock in INFO.
HEADER_BYTES = 5  # SYNC, TYPE, SEQ, LEN_LO, LEN_HI
CRC_BYTES = 2
OVERHEAD_BYTES = HEADER_BYTES + CRC_BYTES
MAX_LENGTH = 0xFFFF  # what the 2-byte LEN field can say

LOGIT_BYTES = 4  # each logit travels as int32, whatever the accumulator width
CYCLES_BYTES = 4  # RESULT's cycle count, u32
INFO_LENGTH = 25  # see BoardInfo
ERROR_LENGTH = 1
# LOAD_WEIGHTS: an operation byte, then a u32, then the chunk's bytes or the commit's fields.
CHUNK_HEADER_BYTES = 5  # op, offset u32
COMMIT_LENGTH = 13  # op, total u32, weights id u32, CRC-32 u32
LOADED_LENGTH = 5  # WEIGHTS_LOADED: bytes received u32, weights flags u8
PIECE_HEADER_BYTES = 2  # IMAGE: offset u16, then the pixels
STORED_LENGTH = 2  # IMAGE_STORED: pixels of the image received gap-free u16
BENCH_LENGTH = 2  # BENCH: runs u16
BENCH_RESULT_LENGTH = 15  # BENCH_RESULT: runs u16, class u8, first run's cycles u32, total cycles u64
MAX_BENCH_RUNS = 0xFFFF
WEIGHTS_VALID = 0x01  # weights flags (INFO and WEIGHTS_LOADED): the board will classify
WEIGHTS_IN_BITSTREAM = 0x02  # weights flags (INFO): the design's memories have initial values
WEIGHTS_LOADING = 0x04  # weights flags (INFO): a load is in progress (INFO's load_received counts it)
WEIGHTS_FIXED = 0x08  # weights flags (INFO): the weights are in read-only memory; a load is refused
# INFO byte 1, bits 3..6: input channels - 1. Grey is 0, so a grey board's INFO is what it was
# before channels, and a host that does not know them refuses a colour board's flags.
CHANNELS_SHIFT = 3
DESIGNS = DESIGN_NAMES  # INFO byte 2: the accelerator's ``design``, by its index in the registry


class FrameType(enum.IntEnum):
    """The TYPE byte. Requests have the top bit clear, replies set."""

    PING = 0x01  # host -> board, no payload; reply INFO
    CLASSIFY = 0x02  # host -> board, the image's pixels (or none: the pieces sent); reply RESULT
    LOAD_WEIGHTS = 0x03  # host -> board, a LoadOp and its arguments; reply WEIGHTS_LOADED
    IMAGE = 0x04  # host -> board, offset u16 and pixels: a piece of an image; reply IMAGE_STORED
    BENCH = 0x05  # host -> board, runs u16: the assembled image that many times; reply BENCH_RESULT
    INFO = 0x81  # board -> host, BoardInfo
    RESULT = 0x82  # board -> host, class, logits, cycles
    WEIGHTS_LOADED = 0x83  # board -> host, bytes received u32, weights flags u8
    IMAGE_STORED = 0x84  # board -> host, pixels received u16
    BENCH_RESULT = 0x85  # board -> host, runs u16, class u8, first run's cycles u32, total cycles u64
    ERROR = 0xEE  # board -> host, one ErrorCode byte


class LoadOp(enum.IntEnum):
    """Byte 0 of a LOAD_WEIGHTS payload."""

    CHUNK = 0x00  # offset u32, then 1..max_chunk image bytes
    COMMIT = 0x01  # total u32 (the image size), weights id u32, CRC-32 of the image u32


class ErrorCode(enum.IntEnum):
    """The payload byte of an ERROR frame: why the board did not carry out a request."""

    BAD_CRC = 1  # the frame's CRC byte does not match
    BAD_LENGTH = 2  # LEN is not a length this type can have (the frame's CRC checked)
    UNKNOWN_TYPE = 3  # TYPE is not a request this board implements
    TIMEOUT = 4  # a frame stopped arriving (a gap longer than the board's timeout), or took
    #              longer than the board's frame deadline
    BUSY = 5  # bytes arrived while the board was serving a request (they were dropped), or a
    #           load request came while an image was in flight
    NO_WEIGHTS = 6  # CLASSIFY while the board holds no valid weights (a load is incomplete)
    BAD_LOAD = 7  # a LOAD_WEIGHTS the board refused: unknown op, chunk out of order or past the
    #               image's end, commit that does not match (total or CRC-32); the weights are
    #               invalid after it
    BAD_IMAGE = 8  # an IMAGE piece past what the board holds or past the image's end, or a
    #                CLASSIFY without pixels or a BENCH before a whole image was sent in pieces
    HUNG = 9  # the accelerator did not finish within the board's watchdog time; the board
    #           reset it (a load in progress is ended, the weights invalid)
    TOO_LONG = 10  # LEN above the board's largest request, refused as soon as LEN arrived, before
    #                the CRC could be checked: a LEN corrupted on the line, or a request for another board
    BAD_RUNS = 11  # a BENCH asking for 0 runs
    WEIGHTS_FIXED = 12  # a LOAD_WEIGHTS to a board whose weights are in read-only memory (its bitstream)


# Errors after which the board has carried out nothing, and which a corrupted frame can cause:
# the request may be sent again as it is.
RETRY_CODES = (ErrorCode.BAD_CRC, ErrorCode.TIMEOUT, ErrorCode.BUSY, ErrorCode.TOO_LONG)


class ProtocolError(InputError):
    """A frame that does not follow this protocol (wrong type, length or CRC)."""


# --------------------------------------------------------------------------------------------
# CRCs: the catalogue's CRC-16/MODBUS for frames, CRC-32/ISO-HDLC (zlib's) for weight images.
# The RTL uses amaranth.lib.crc with the same catalogue entries; tests check these against it.
#
# Why 16 bits: on a line that corrupts 1 % of bytes, 2.6 % of the 25-byte frames of a 16-pixel
# piece carry two or more bad bytes, and an 8-bit CRC (protocol version 2) lets 1 in 256 of
# those through: about one image in 140 sent in pieces would reach the accelerator corrupted.
# CRC-16/MODBUS misses 1 in 65,536, and none with up to three flipped bits in frames up to 4 KB.

CRC16_POLY_REFLECTED = 0xA001  # 0x8005 bit-reversed: the register shifts right
CRC16_INIT = 0xFFFF


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ CRC16_POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC16_TABLE = _crc16_table()


def crc16(data: bytes, crc: int = CRC16_INIT) -> int:
    """CRC-16/MODBUS of ``data``; pass ``crc`` to continue a running CRC."""
    for byte in bytes(data):
        crc = (crc >> 8) ^ _CRC16_TABLE[(crc ^ byte) & 0xFF]
    return crc


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC (zlib's, Ethernet's) of ``data``: what a COMMIT carries."""
    return zlib.crc32(bytes(data)) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# The lengths a network gives the frames


def _u(value: int, bits: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 1 << bits:
        raise ValueError(f"{name} {value!r} does not fit u{bits}")
    return int(value)


def frame_area_bits(pixels: int) -> int:
    """Address bits of the board's frame area: a request's payload bytes (at most ``pixels``)."""
    return max(1, (pixels - 1).bit_length())


def frame_buffer_bytes(pixels: int) -> int:
    """The board's frame buffer: the frame area, then one image (``RequestHandler``)."""
    return (1 << frame_area_bits(pixels)) + pixels


@dataclass(frozen=True)
class FrameSizes:
    """Every frame length that depends on the board's network: its image side, class count and
    input channels (INFO bytes 17 and 18, and bits 3..6 of byte 1). The board's buffer holds one
    image, so a LOAD_WEIGHTS chunk and an IMAGE piece carry at most ``pixels`` bytes."""

    image_size: int
    classes: int
    channels: int = 1

    def __post_init__(self):
        if not 1 <= _u(self.image_size, 8, "image size") or not 2 <= _u(self.classes, 8, "class count") \
                or not 1 <= _u(self.channels, 8, "channels") <= MAX_INPUT_CHANNELS:
            raise ValueError(f"a {self.image_size}-pixel side, {self.channels} channel(s) and {self.classes} classes "
                             f"cannot travel in protocol version {VERSION} (side 1..255, 1..{MAX_INPUT_CHANNELS} "
                             f"channels, 2..255 classes)")
        if self.pixels >= 1 << 16:  # IMAGE's offset and IMAGE_STORED's count are u16
            raise ValueError(f"an image of {self.pixels:,} bytes ({self.image_size}x{self.image_size}x{self.channels}) "
                             f"cannot travel in protocol version {VERSION} (at most 65,535)")

    @property
    def pixels(self) -> int:
        """CLASSIFY's payload: uint8 pixels in raster order, a pixel's channels one after another."""
        return self.image_size**2 * self.channels

    @property
    def image_shape(self) -> tuple[int, ...]:
        """An image's array shape: [side, side] grey, [channels, side, side] otherwise."""
        side = self.image_size
        return (side, side) if self.channels == 1 else (self.channels, side, side)

    @property
    def result_length(self) -> int:
        """RESULT: class u8, the logits int32, cycles u32."""
        return 1 + self.classes * LOGIT_BYTES + CYCLES_BYTES

    @property
    def max_chunk(self) -> int:
        return self.pixels

    @property
    def max_piece(self) -> int:
        return self.pixels

    @property
    def max_request(self) -> int:
        """The longest request payload: a full LOAD_WEIGHTS chunk. The board refuses a longer LEN
        as soon as it arrives."""
        return max(self.pixels, CHUNK_HEADER_BYTES + self.max_chunk, PIECE_HEADER_BYTES + self.max_piece,
                   COMMIT_LENGTH)

    def reply_length(self, type: FrameType) -> int:
        return {**FIXED_REPLY_LENGTHS, FrameType.RESULT: self.result_length}[FrameType(type)]

    @property
    def max_reply(self) -> int:
        return max(self.result_length, *FIXED_REPLY_LENGTHS.values())

    def request_length_ok(self, type: int, length: int, op: int | None = None) -> bool:
        """Whether a request of ``type`` may have ``length`` payload bytes (``op``: a LOAD_WEIGHTS
        payload's first byte). An unknown op with any LEN from 1 to ``max_request`` passes (and is
        refused with BAD_LOAD)."""
        if type == FrameType.PING:
            return length == 0
        if type == FrameType.CLASSIFY:
            return length in (0, self.pixels)
        if type == FrameType.IMAGE:
            return PIECE_HEADER_BYTES < length <= PIECE_HEADER_BYTES + self.max_piece
        if type == FrameType.BENCH:
            return length == BENCH_LENGTH
        if type == FrameType.LOAD_WEIGHTS:
            if not 1 <= length <= self.max_request:
                return False
            if op == LoadOp.CHUNK:
                return CHUNK_HEADER_BYTES < length <= CHUNK_HEADER_BYTES + self.max_chunk
            if op == LoadOp.COMMIT:
                return length == COMMIT_LENGTH
            return True
        return False


REQUESTS = (FrameType.PING, FrameType.CLASSIFY, FrameType.LOAD_WEIGHTS, FrameType.IMAGE, FrameType.BENCH)
# Replies whose length does not depend on the network.
FIXED_REPLY_LENGTHS = {FrameType.INFO: INFO_LENGTH, FrameType.WEIGHTS_LOADED: LOADED_LENGTH,
                       FrameType.IMAGE_STORED: STORED_LENGTH, FrameType.BENCH_RESULT: BENCH_RESULT_LENGTH,
                       FrameType.ERROR: ERROR_LENGTH}


# --------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True)
class Frame:
    """One decoded frame. ``crc_ok`` is false for a frame whose CRC byte did not match."""

    type: int
    payload: bytes
    seq: int = 0
    crc_ok: bool = True

    def encode(self) -> bytes:
        return encode_frame(self.type, self.payload, self.seq)

    def describe(self) -> str:
        try:
            name = FrameType(self.type).name
        except ValueError:
            name = f"type 0x{self.type:02X}"
        return f"{name} frame (SEQ {self.seq}) with {len(self.payload)} payload bytes"


def encode_frame(type: int, payload: bytes = b"", seq: int = 0) -> bytes:
    """SYNC, TYPE, SEQ, LEN (2 bytes LE), PAYLOAD, CRC-16 (2 bytes LE) over TYPE, SEQ, LEN and PAYLOAD."""
    type, seq = int(type), int(seq)
    payload = bytes(payload)
    if not 0 <= type <= 0xFF or not 0 <= seq <= 0xFF:
        raise ValueError(f"frame type ({type}) and SEQ ({seq}) must be bytes")
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"payload of {len(payload)} bytes does not fit the 16-bit LEN field")
    body = bytes([type, seq]) + len(payload).to_bytes(2, "little") + payload
    return bytes([SYNC]) + body + crc16(body).to_bytes(CRC_BYTES, "little")


class FrameDecoder:
    """Incremental frame parser: ``feed`` it bytes as they come, it returns the complete frames.

    Bytes before a SYNC are skipped (counted in ``skipped``). A candidate frame whose LEN exceeds
    ``max_payload`` is taken for noise. A frame with a bad CRC is returned with ``crc_ok`` false,
    and the search for the next SYNC restarts at the byte after its SYNC, so a real frame hidden
    behind garbage that happened to contain 0xA5 is still found.
    """

    def __init__(self, max_payload: int = MAX_LENGTH):
        if isinstance(max_payload, bool) or not isinstance(max_payload, int) or not 0 <= max_payload <= MAX_LENGTH:
            raise ValueError(f"max_payload must be an integer 0..{MAX_LENGTH}, not {max_payload!r}")
        self.max_payload = max_payload
        self.skipped = 0
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        buf = self._buffer
        while True:
            start = buf.find(SYNC)
            if start < 0:
                self.skipped += len(buf)
                buf.clear()
                break
            self.skipped += start
            del buf[:start]
            if len(buf) < HEADER_BYTES:
                break
            length = buf[3] | buf[4] << 8
            if length > self.max_payload:
                self.skipped += 1
                del buf[:1]
                continue
            total = OVERHEAD_BYTES + length
            if len(buf) < total:
                break
            body = bytes(buf[1 : total - CRC_BYTES])
            crc_ok = crc16(body) == int.from_bytes(buf[total - CRC_BYTES : total], "little")
            frames.append(Frame(body[0], body[HEADER_BYTES - 1 :], body[1], crc_ok))
            if crc_ok:
                del buf[:total]
            else:
                self.skipped += 1
                del buf[:1]
        return frames

    def needed(self) -> int:
        """How many more bytes would complete the frame now being collected (at least 1)."""
        buf = self._buffer
        if len(buf) < HEADER_BYTES:
            return HEADER_BYTES - len(buf)
        return OVERHEAD_BYTES + (buf[3] | buf[4] << 8) - len(buf)

    def reset(self) -> None:
        self._buffer.clear()


def _expect(frame: Frame, type: FrameType, length: int) -> bytes:
    if not frame.crc_ok:
        raise ProtocolError(f"{frame.describe()} has a bad CRC")
    if frame.type != type:
        raise ProtocolError(f"expected {type.name}, got a {frame.describe()}")
    if len(frame.payload) != length:
        raise ProtocolError(f"{frame.describe()}: a {type.name} payload has {length} bytes")
    return frame.payload


# --------------------------------------------------------------------------------------------
# Requests


def ping_request(seq: int = 0) -> bytes:
    return encode_frame(FrameType.PING, b"", seq)


def image_pixels(image, sizes: FrameSizes) -> bytes:
    """A uint8 [side, side] image (or [channels, side, side]) as CLASSIFY's bytes: raster order,
    a pixel's channels one after another (``images.stream_order``)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InputError(f"image must be uint8 pixels 0..255, got dtype {image.dtype}")
    if image.shape != sizes.image_shape:
        raise InputError(f"image must have shape [{','.join(map(str, sizes.image_shape))}] (the board's network), "
                         f"got {list(image.shape)}")
    return stream_order(image).tobytes()


def classify_request(image, sizes: FrameSizes, seq: int = 0) -> bytes:
    """The CLASSIFY frame carrying one whole uint8 [side, side] image (raster order)."""
    return encode_frame(FrameType.CLASSIFY, image_pixels(image, sizes), seq)


def classify_pieces_request(seq: int = 0) -> bytes:
    """The CLASSIFY frame without pixels: classify the image the IMAGE pieces assembled."""
    return encode_frame(FrameType.CLASSIFY, b"", seq)


def image_piece_request(offset: int, piece: bytes, sizes: FrameSizes, seq: int = 0) -> bytes:
    """The IMAGE frame carrying ``piece`` (1..max_piece pixels) at pixel ``offset`` of an image."""
    piece = bytes(piece)
    if not 1 <= len(piece) <= sizes.max_piece:
        raise ValueError(f"a piece has 1..{sizes.max_piece} pixels, not {len(piece)}")
    return encode_frame(FrameType.IMAGE, _u(offset, 16, "offset").to_bytes(2, "little") + piece, seq)


def load_chunk_request(offset: int, chunk: bytes, sizes: FrameSizes, seq: int = 0) -> bytes:
    """The LOAD_WEIGHTS frame carrying ``chunk`` (1..max_chunk bytes) at byte ``offset`` of the image."""
    chunk = bytes(chunk)
    if not 1 <= len(chunk) <= sizes.max_chunk:
        raise ValueError(f"a chunk has 1..{sizes.max_chunk} bytes, not {len(chunk)}")
    return encode_frame(FrameType.LOAD_WEIGHTS,
                        bytes([LoadOp.CHUNK]) + _u(offset, 32, "offset").to_bytes(4, "little") + chunk, seq)


def load_commit_request(total: int, weights_id: int, image_crc: int, seq: int = 0) -> bytes:
    """The LOAD_WEIGHTS frame that ends a load of ``total`` bytes whose CRC-32 is ``image_crc``
    and names the weights."""
    return encode_frame(FrameType.LOAD_WEIGHTS, bytes([LoadOp.COMMIT]) + _u(total, 32, "total").to_bytes(4, "little")
                        + _u(weights_id, 32, "weights id").to_bytes(4, "little")
                        + _u(image_crc, 32, "CRC-32").to_bytes(4, "little"), seq)


def bench_request(runs: int, seq: int = 0) -> bytes:
    """The BENCH frame: run the image assembled from IMAGE pieces ``runs`` times (1..65,535)."""
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or not 1 <= runs <= MAX_BENCH_RUNS:
        raise ValueError(f"a bench has 1..{MAX_BENCH_RUNS} runs, not {runs!r}")
    return encode_frame(FrameType.BENCH, int(runs).to_bytes(BENCH_LENGTH, "little"), seq)


def pieces(data: bytes, size: int, largest: int) -> list[tuple[int, bytes]]:
    """(offset, bytes) of the pieces of ``size`` bytes (at most ``largest``) that carry ``data``, in order."""
    data = bytes(data)
    if not data:
        raise ValueError("nothing to send: no bytes")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= largest:
        raise ValueError(f"piece size must be 1..{largest}, not {size!r}")
    return [(offset, data[offset : offset + size]) for offset in range(0, len(data), size)]


# --------------------------------------------------------------------------------------------
# Replies


def result_payload(klass: int, logits, cycles: int, sizes: FrameSizes) -> bytes:
    """The RESULT payload: class u8, the logits int32 LE, cycles u32 LE."""
    logits = np.asarray(logits, dtype=np.int64)
    if logits.shape != (sizes.classes,):
        raise ValueError(f"need {sizes.classes} logits, got shape {list(logits.shape)}")
    if not 0 <= klass < sizes.classes or not 0 <= cycles < 1 << 32:
        raise ValueError(f"class {klass} or cycles {cycles} out of range")
    if (logits < -(1 << 31)).any() or (logits >= 1 << 31).any():
        raise ValueError("logits must fit int32")
    return bytes([klass]) + logits.astype("<i4").tobytes() + int(cycles).to_bytes(4, "little")


def parse_result(frame: Frame, sizes: FrameSizes) -> tuple[int, np.ndarray, int]:
    """A RESULT frame -> (class, logits int64 [classes], cycles from start to done)."""
    payload = _expect(frame, FrameType.RESULT, sizes.result_length)
    klass = payload[0]
    if klass >= sizes.classes:
        raise ProtocolError(f"RESULT names class {klass}; there are {sizes.classes}")
    logits = np.frombuffer(payload, "<i4", sizes.classes, offset=1).astype(np.int64)
    cycles = int.from_bytes(payload[1 + sizes.classes * LOGIT_BYTES :], "little")
    return klass, logits, cycles


def error_payload(code: ErrorCode) -> bytes:
    return bytes([ErrorCode(code)])


def parse_error(frame: Frame) -> int:
    """An ERROR frame -> its code (an ErrorCode when known, else the raw byte)."""
    code = _expect(frame, FrameType.ERROR, ERROR_LENGTH)[0]
    try:
        return ErrorCode(code)
    except ValueError:
        return code


def loaded_payload(received: int, valid: bool) -> bytes:
    """The WEIGHTS_LOADED payload: image bytes received gap-free so far u32, weights flags u8."""
    return _u(received, 32, "received").to_bytes(4, "little") + bytes([WEIGHTS_VALID if valid else 0])


def parse_loaded(frame: Frame) -> tuple[int, bool]:
    """A WEIGHTS_LOADED frame -> (bytes received, weights valid)."""
    payload = _expect(frame, FrameType.WEIGHTS_LOADED, LOADED_LENGTH)
    return int.from_bytes(payload[:4], "little"), bool(payload[4] & WEIGHTS_VALID)


def stored_payload(received: int) -> bytes:
    """The IMAGE_STORED payload: pixels of the image held gap-free from pixel 0, u16."""
    return _u(received, 16, "received").to_bytes(2, "little")


def parse_stored(frame: Frame) -> int:
    return int.from_bytes(_expect(frame, FrameType.IMAGE_STORED, STORED_LENGTH), "little")


@dataclass(frozen=True)
class BenchResult:
    """The BENCH_RESULT payload (15 bytes): what the board's own cycle counter saw while it ran
    one image ``runs`` times back to back, each run started as soon as the accelerator could
    take it.

    ========  ======================================================================
    byte      meaning
    ========  ======================================================================
    0..1      runs, u16 (the request's)
    2         class of the last run
    3..6      cycles of the first run, u32: from the edge that took its start to the
              one that raised its done, both counted (RESULT's cycles; the pipeline
              was empty)
    7..14     total cycles, u64: from the edge that took the first run's start to
              the one that raised the last run's done, both counted
    ========  ======================================================================
    """

    runs: int
    klass: int
    first_cycles: int
    total_cycles: int

    def encode(self) -> bytes:
        if not 1 <= self.runs <= MAX_BENCH_RUNS:
            raise ValueError(f"a bench has 1..{MAX_BENCH_RUNS} runs, not {self.runs}")
        return (self.runs.to_bytes(2, "little") + bytes([_u(self.klass, 8, "class")])
                + _u(self.first_cycles, 32, "first run's cycles").to_bytes(4, "little")
                + _u(self.total_cycles, 64, "total cycles").to_bytes(8, "little"))

    @property
    def cycles_per_image(self) -> float:
        """Cycles each run after the first added (the interval between results once the
        accelerator is busy: 1 / throughput); the first run's cycles for a single run."""
        if self.runs == 1:
            return float(self.total_cycles)
        return (self.total_cycles - self.first_cycles) / (self.runs - 1)


def parse_bench(frame: Frame, sizes: FrameSizes) -> BenchResult:
    """A BENCH_RESULT frame -> BenchResult (its class checked against the network's)."""
    payload = _expect(frame, FrameType.BENCH_RESULT, BENCH_RESULT_LENGTH)
    result = BenchResult(int.from_bytes(payload[:2], "little"), payload[2], int.from_bytes(payload[3:7], "little"),
                         int.from_bytes(payload[7:], "little"))
    if result.klass >= sizes.classes:
        raise ProtocolError(f"BENCH_RESULT names class {result.klass}; there are {sizes.classes}")
    if result.runs == 0 or result.first_cycles > result.total_cycles:
        raise ProtocolError(f"BENCH_RESULT of {result.runs} runs says {result.first_cycles} cycles for the first "
                            f"and {result.total_cycles} in all")
    return result


def weights_id(params: dict[str, np.ndarray]) -> int:
    """A 32-bit fingerprint of a weight set (state-dict layout): the first 4 bytes of SHA-256
    over every parameter name and its int8 codes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode() + b"\0")
        digest.update(np.ascontiguousarray(params[name], dtype=np.int8).tobytes())
    return int.from_bytes(digest.digest()[:4], "little")


@dataclass(frozen=True)
class BoardInfo:
    """The INFO payload (25 bytes): what the board's accelerator was generated for and with,
    its clock, and the state of its weights.

    ========  ======================================================================
    byte      meaning
    ========  ======================================================================
    0         protocol ``VERSION``
    1         arithmetic flags: bit 0 rounding floor (else half-up), bit 1 overflow
              wrap (else saturate), bit 2 activation formats other than Q2.6 (those of the
              weights it was built for); bits 3..6 input channels - 1 (0: grey); bit 7 0
    2         design: index into ``DESIGNS`` (0 streaming, 1 compact)
    3         logit accumulator width in bits (the RESULT logits are sign-extended from it)
    4..7      ``weights_id`` of the valid weights, u32: the bitstream's (0: not given)
              or the last committed load's; 0 while no weights are valid
    8         weights flags: ``WEIGHTS_VALID``, ``WEIGHTS_IN_BITSTREAM``, ``WEIGHTS_LOADING``,
              ``WEIGHTS_FIXED``
    9..12     bytes of the weight image a load must send, u32
    13..16    bytes of the load in progress received gap-free, u32 (0 when none)
    17        image side: CLASSIFY carries side x side pixels (of channels bytes each)
    18        classes: RESULT carries that many logits
    19..20    multipliers in the accelerator, u16
    21..24    the design's clock in Hz, u32 (0: the bitstream does not say)
    ========  ======================================================================
    """

    version: int
    arithmetic: arith.Arithmetic
    design: str
    logit_bits: int
    weights_id: int
    weights_valid: bool
    weights_in_bitstream: bool
    weight_bytes: int
    image_size: int
    classes: int
    multipliers: int
    loading: bool = False
    load_received: int = 0
    clock_hz: int = 0
    weights_fixed: bool = False  # in read-only memory: LOAD_WEIGHTS is refused (WEIGHTS_FIXED)
    # The hidden layers' activation formats are not all Q2.6. Which they are the board does not
    # say: they come with the weights it was built for (``arithmetic`` holds the two modes only).
    activation_formats: bool = False
    channels: int = 1  # input channels; grey (1) leaves INFO as it was before channels

    @property
    def activation_formats_flag(self) -> bool:
        return self.activation_formats or bool(self.arithmetic.activations or self.arithmetic.modes)

    @property
    def sizes(self) -> FrameSizes:
        return FrameSizes(self.image_size, self.classes, self.channels)

    @property
    def flags(self) -> int:
        return (WEIGHTS_VALID * bool(self.weights_valid) | WEIGHTS_IN_BITSTREAM * bool(self.weights_in_bitstream)
                | WEIGHTS_LOADING * bool(self.loading) | WEIGHTS_FIXED * bool(self.weights_fixed))

    def encode(self) -> bytes:
        if self.design not in DESIGNS:
            raise ValueError(f"design {self.design!r} is not one of {DESIGNS}")
        if not 1 <= self.logit_bits <= 8 * LOGIT_BYTES:
            raise ValueError(f"{self.logit_bits}-bit logits do not fit RESULT's int32")
        self.sizes  # checks image_size, classes and channels
        a = self.arithmetic
        arithmetic = ((a.rounding is arith.Rounding.FLOOR) | (a.overflow is arith.Overflow.WRAP) << 1
                      | self.activation_formats_flag << 2 | (self.channels - 1) << CHANNELS_SHIFT)
        return (bytes([_u(self.version, 8, "version"), arithmetic, DESIGNS.index(self.design), self.logit_bits])
                + _u(self.weights_id, 32, "weights id").to_bytes(4, "little") + bytes([self.flags])
                + _u(self.weight_bytes, 32, "weight image size").to_bytes(4, "little")
                + _u(self.load_received, 32, "load received").to_bytes(4, "little")
                + bytes([self.image_size, self.classes]) + _u(self.multipliers, 16, "multipliers").to_bytes(2, "little")
                + _u(self.clock_hz, 32, "clock").to_bytes(4, "little"))


def parse_info(frame: Frame) -> BoardInfo:
    if frame.crc_ok and frame.type == FrameType.INFO and frame.payload[:1] != bytes([VERSION]):
        version = frame.payload[0] if frame.payload else "none"
        raise ProtocolError(f"the board speaks protocol version {version}, this host version {VERSION}")
    payload = _expect(frame, FrameType.INFO, INFO_LENGTH)
    flags, weights = payload[1], payload[8]
    if payload[2] >= len(DESIGNS):
        raise ProtocolError(f"INFO names design {payload[2]}, not one of {DESIGNS}")
    if flags & ~0b111_1111:
        raise ProtocolError(f"INFO: arithmetic flags {flags:#04x} have bits this host does not know")
    channels = (flags >> CHANNELS_SHIFT & 0b1111) + 1
    arithmetic = arith.Arithmetic(arith.Rounding.FLOOR if flags & 1 else arith.Rounding.HALF_UP,
                                  arith.Overflow.WRAP if flags & 2 else arith.Overflow.SATURATE)
    try:
        FrameSizes(payload[17], payload[18], channels)
    except ValueError as e:
        raise ProtocolError(f"INFO: {e}") from None
    return BoardInfo(payload[0], arithmetic, DESIGNS[payload[2]], payload[3], int.from_bytes(payload[4:8], "little"),
                     bool(weights & WEIGHTS_VALID), bool(weights & WEIGHTS_IN_BITSTREAM),
                     int.from_bytes(payload[9:13], "little"), payload[17], payload[18],
                     int.from_bytes(payload[19:21], "little"), bool(weights & WEIGHTS_LOADING),
                     int.from_bytes(payload[13:17], "little"), int.from_bytes(payload[21:25], "little"),
                     bool(weights & WEIGHTS_FIXED), bool(flags & 4), channels)
