"""The host <-> board wire format: the one definition used by the host client, the UART link's
RTL generator (its constants and lengths come from here) and the tests. ``docs/protocol.md``
is the prose version of this file.

A frame is ``SYNC TYPE LEN_LO LEN_HI PAYLOAD[LEN] CRC``: SYNC is 0xA5, LEN counts payload bytes
(little-endian), CRC is CRC-8 (polynomial 0x07, initial value 0, no reflection, no final XOR)
over TYPE, LEN and PAYLOAD. The host sends one request and waits for its one reply; every
complete request frame gets exactly one reply, an ERROR frame if the board could not do it.
Multi-byte numbers are little-endian; logits are two's-complement int32.

New weights travel as the accelerator's *weight image* (``LeNetAccelerator.weight_image``) in
LOAD_WEIGHTS chunks of up to ``MAX_CHUNK`` bytes, in order from offset 0, then a commit with
the total length and the weights id. The board answers CLASSIFY with ERROR NO_WEIGHTS from the
first chunk until a commit that matches a complete, gap-free load.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

import numpy as np

from ..model import arith
from ..model.errors import InputError
from ..model.network import LENET5

# Version 2 of the protocol carries LeNet-5's images and logits only.
IMAGE_SIZE, N_CLASSES = LENET5.image_size, LENET5.classes

SYNC = 0xA5
VERSION = 2  # INFO byte 0; bump on any incompatible change of this file (2: weight loading)
CRC_POLY = 0x07
CRC_INIT = 0x00
HEADER_BYTES = 4  # SYNC, TYPE, LEN_LO, LEN_HI
OVERHEAD_BYTES = HEADER_BYTES + 1  # ... and the CRC
MAX_LENGTH = 0xFFFF  # what the 2-byte LEN field can say

IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE  # CLASSIFY payload: raster-order uint8 pixels
LOGIT_BYTES = 4  # each logit travels as int32, whatever the accumulator width
RESULT_LENGTH = 1 + N_CLASSES * LOGIT_BYTES + 4  # class u8, logits int32[10], cycles u32
INFO_LENGTH = 13  # see BoardInfo
# LOAD_WEIGHTS: an operation byte, then a u32, then the chunk's bytes or the commit's weights id.
CHUNK_HEADER_BYTES = 5  # op, offset u32
MAX_CHUNK = IMAGE_BYTES  # the board buffers a chunk where it buffers an image, and checks it first
COMMIT_LENGTH = 9  # op, total u32, weights id u32
LOADED_LENGTH = 5  # WEIGHTS_LOADED: bytes received u32, weights flags u8
WEIGHTS_VALID = 0x01  # weights flags (INFO and WEIGHTS_LOADED): the board will classify
WEIGHTS_IN_BITSTREAM = 0x02  # weights flags (INFO): the design's memories have initial values


class FrameType(enum.IntEnum):
    """The TYPE byte. Requests have the top bit clear, replies set."""

    PING = 0x01  # host -> board, no payload; reply INFO
    CLASSIFY = 0x02  # host -> board, 784 pixels; reply RESULT
    LOAD_WEIGHTS = 0x03  # host -> board, a LoadOp and its arguments; reply WEIGHTS_LOADED
    INFO = 0x81  # board -> host, BoardInfo
    RESULT = 0x82  # board -> host, class, logits, cycles
    WEIGHTS_LOADED = 0x83  # board -> host, bytes received u32, weights flags u8
    ERROR = 0xEE  # board -> host, one ErrorCode byte


class LoadOp(enum.IntEnum):
    """Byte 0 of a LOAD_WEIGHTS payload."""

    CHUNK = 0x00  # offset u32, then 1..MAX_CHUNK image bytes
    COMMIT = 0x01  # total u32 (the image size), weights id u32


class ErrorCode(enum.IntEnum):
    """The payload byte of an ERROR frame: why the board did not carry out a request."""

    BAD_CRC = 1  # the frame's CRC byte does not match
    BAD_LENGTH = 2  # LEN is not the length this type needs
    UNKNOWN_TYPE = 3  # TYPE is not a request this board implements
    TIMEOUT = 4  # a frame stopped arriving: no byte for longer than the board's timeout
    BUSY = 5  # bytes arrived while the board was serving a request (they were dropped), or a
    #           load request came while an image was in flight
    NO_WEIGHTS = 6  # CLASSIFY while the board holds no valid weights (a load is incomplete)
    BAD_LOAD = 7  # a LOAD_WEIGHTS the board refused: unknown op, chunk out of order or past the
    #               image's end, commit that does not match; the weights are invalid after it


# The requests a board of this version carries out, and the payload length each must have
# (LOAD_WEIGHTS: see ``load_length_ok``).
REQUEST_LENGTHS = {FrameType.PING: 0, FrameType.CLASSIFY: IMAGE_BYTES}
REQUESTS = (FrameType.PING, FrameType.CLASSIFY, FrameType.LOAD_WEIGHTS)
REPLY_LENGTHS = {FrameType.INFO: INFO_LENGTH, FrameType.RESULT: RESULT_LENGTH, FrameType.ERROR: 1,
                 FrameType.WEIGHTS_LOADED: LOADED_LENGTH}
# The longest frame either side sends; a decoder treats a longer LEN as line noise.
MAX_PAYLOAD = max(*REQUEST_LENGTHS.values(), *REPLY_LENGTHS.values(), CHUNK_HEADER_BYTES + MAX_CHUNK)


def load_length_ok(op: int, length: int) -> bool:
    """Whether a LOAD_WEIGHTS payload of ``length`` bytes starting with ``op`` has a good LEN.
    An unknown op with any LEN >= 1 passes this check (and is refused with BAD_LOAD)."""
    if length < 1:
        return False
    if op == LoadOp.CHUNK:
        return CHUNK_HEADER_BYTES < length <= CHUNK_HEADER_BYTES + MAX_CHUNK
    if op == LoadOp.COMMIT:
        return length == COMMIT_LENGTH
    return True


class ProtocolError(InputError):
    """A frame that does not follow this protocol (wrong type, length or CRC)."""


# --------------------------------------------------------------------------------------------
# CRC-8


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY if crc & 0x80 else crc << 1) & 0xFF
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc8(data: bytes, crc: int = CRC_INIT) -> int:
    """CRC-8 of ``data`` (polynomial 0x07, MSB first); pass ``crc`` to continue a running CRC."""
    for byte in bytes(data):
        crc = _CRC_TABLE[crc ^ byte]
    return crc


# --------------------------------------------------------------------------------------------
# Frames


@dataclass(frozen=True)
class Frame:
    """One decoded frame. ``crc_ok`` is false for a frame whose CRC byte did not match."""

    type: int
    payload: bytes
    crc_ok: bool = True

    def encode(self) -> bytes:
        return encode_frame(self.type, self.payload)

    def describe(self) -> str:
        try:
            name = FrameType(self.type).name
        except ValueError:
            name = f"type 0x{self.type:02X}"
        return f"{name} frame with {len(self.payload)} payload bytes"


def encode_frame(type: int, payload: bytes = b"") -> bytes:
    """SYNC, TYPE, LEN (2 bytes LE), PAYLOAD, CRC-8 over TYPE, LEN and PAYLOAD."""
    type = int(type)
    payload = bytes(payload)
    if not 0 <= type <= 0xFF:
        raise ValueError(f"frame type must be a byte, not {type}")
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"payload of {len(payload)} bytes does not fit the 16-bit LEN field")
    body = bytes([type]) + len(payload).to_bytes(2, "little") + payload
    return bytes([SYNC]) + body + bytes([crc8(body)])


class FrameDecoder:
    """Incremental frame parser: ``feed`` it bytes as they come, it returns the complete frames.

    Bytes before a SYNC are skipped (counted in ``skipped``). A candidate frame whose LEN exceeds
    ``max_payload`` is taken for noise. A frame with a bad CRC is returned with ``crc_ok`` false,
    and the search for the next SYNC restarts at the byte after its SYNC, so a real frame hidden
    behind garbage that happened to contain 0xA5 is still found.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD):
        if not isinstance(max_payload, int) or not 0 <= max_payload <= MAX_LENGTH:
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
            length = buf[2] | buf[3] << 8
            if length > self.max_payload:
                self.skipped += 1
                del buf[:1]
                continue
            total = OVERHEAD_BYTES + length
            if len(buf) < total:
                break
            body = bytes(buf[1 : total - 1])
            crc_ok = crc8(body) == buf[total - 1]
            frames.append(Frame(body[0], body[HEADER_BYTES - 1 :], crc_ok))
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
        return OVERHEAD_BYTES + (buf[2] | buf[3] << 8) - len(buf)

    def reset(self) -> None:
        self._buffer.clear()


def _expect(frame: Frame, type: FrameType) -> bytes:
    if not frame.crc_ok:
        raise ProtocolError(f"{frame.describe()} has a bad CRC")
    if frame.type != type:
        raise ProtocolError(f"expected {type.name}, got a {frame.describe()}")
    if len(frame.payload) != REPLY_LENGTHS.get(type, REQUEST_LENGTHS.get(type)):
        raise ProtocolError(f"{frame.describe()}: a {type.name} payload has "
                            f"{REPLY_LENGTHS.get(type, REQUEST_LENGTHS.get(type))} bytes")
    return frame.payload


# --------------------------------------------------------------------------------------------
# Payloads


def ping_request() -> bytes:
    return encode_frame(FrameType.PING)


def classify_request(image) -> bytes:
    """The CLASSIFY frame for one uint8 [28,28] image (raster order)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InputError(f"image must be uint8 pixels 0..255, got dtype {image.dtype}")
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise InputError(f"image must have shape [{IMAGE_SIZE},{IMAGE_SIZE}], got {list(image.shape)}")
    return encode_frame(FrameType.CLASSIFY, np.ascontiguousarray(image).tobytes())


def result_payload(klass: int, logits, cycles: int) -> bytes:
    """The RESULT payload: class u8, 10 logits int32 LE, cycles u32 LE."""
    logits = np.asarray(logits, dtype=np.int64)
    if logits.shape != (N_CLASSES,):
        raise ValueError(f"need {N_CLASSES} logits, got shape {list(logits.shape)}")
    if not 0 <= klass < N_CLASSES or not 0 <= cycles < 1 << 32:
        raise ValueError(f"class {klass} or cycles {cycles} out of range")
    if (logits < -(1 << 31)).any() or (logits >= 1 << 31).any():
        raise ValueError("logits must fit int32")
    return bytes([klass]) + logits.astype("<i4").tobytes() + int(cycles).to_bytes(4, "little")


def parse_result(frame: Frame) -> tuple[int, np.ndarray, int]:
    """A RESULT frame -> (class, logits int64 [10], cycles from start to done)."""
    payload = _expect(frame, FrameType.RESULT)
    klass = payload[0]
    if klass >= N_CLASSES:
        raise ProtocolError(f"RESULT names class {klass}; there are {N_CLASSES}")
    logits = np.frombuffer(payload, "<i4", N_CLASSES, offset=1).astype(np.int64)
    cycles = int.from_bytes(payload[1 + N_CLASSES * LOGIT_BYTES :], "little")
    return klass, logits, cycles


def error_payload(code: ErrorCode) -> bytes:
    return bytes([ErrorCode(code)])


def parse_error(frame: Frame) -> int:
    """An ERROR frame -> its code (an ErrorCode when known, else the raw byte)."""
    code = _expect(frame, FrameType.ERROR)[0]
    try:
        return ErrorCode(code)
    except ValueError:
        return code


def load_chunk_request(offset: int, chunk: bytes) -> bytes:
    """The LOAD_WEIGHTS frame carrying ``chunk`` (1..MAX_CHUNK bytes) at byte ``offset`` of the image."""
    chunk = bytes(chunk)
    if not 1 <= len(chunk) <= MAX_CHUNK:
        raise ValueError(f"a chunk has 1..{MAX_CHUNK} bytes, not {len(chunk)}")
    if not 0 <= offset < 1 << 32:
        raise ValueError(f"offset {offset} does not fit u32")
    return encode_frame(FrameType.LOAD_WEIGHTS, bytes([LoadOp.CHUNK]) + offset.to_bytes(4, "little") + chunk)


def load_commit_request(total: int, weights_id: int) -> bytes:
    """The LOAD_WEIGHTS frame that ends a load of ``total`` bytes and names the weights."""
    if not 0 <= total < 1 << 32 or not 0 <= weights_id < 1 << 32:
        raise ValueError(f"total {total} or weights id {weights_id} does not fit u32")
    return encode_frame(FrameType.LOAD_WEIGHTS, bytes([LoadOp.COMMIT]) + total.to_bytes(4, "little")
                        + weights_id.to_bytes(4, "little"))


def image_chunks(image: bytes, chunk: int = MAX_CHUNK) -> list[tuple[int, bytes]]:
    """(offset, bytes) of the chunks that carry ``image``, in order."""
    image = bytes(image)
    if not image:
        raise ValueError("the weight image is empty")
    if not 1 <= chunk <= MAX_CHUNK:
        raise ValueError(f"chunk size must be 1..{MAX_CHUNK}, not {chunk}")
    return [(offset, image[offset : offset + chunk]) for offset in range(0, len(image), chunk)]


def load_frames(image: bytes, weights_id: int, chunk: int = MAX_CHUNK) -> list[bytes]:
    """Every request frame of a load: the chunks, then the commit."""
    return ([load_chunk_request(offset, data) for offset, data in image_chunks(image, chunk)]
            + [load_commit_request(len(image), weights_id)])


def loaded_payload(received: int, valid: bool) -> bytes:
    """The WEIGHTS_LOADED payload: image bytes received gap-free so far u32, weights flags u8."""
    return int(received).to_bytes(4, "little") + bytes([WEIGHTS_VALID if valid else 0])


def parse_loaded(frame: Frame) -> tuple[int, bool]:
    """A WEIGHTS_LOADED frame -> (bytes received, weights valid)."""
    payload = _expect(frame, FrameType.WEIGHTS_LOADED)
    return int.from_bytes(payload[:4], "little"), bool(payload[4] & WEIGHTS_VALID)


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
    """The INFO payload (13 bytes): what the board's accelerator was generated with, and the
    state of its weights.

    ========  ======================================================================
    byte      meaning
    ========  ======================================================================
    0         protocol ``VERSION``
    1         arithmetic flags: bit 0 rounding floor (else half-up), bit 1 overflow
              wrap (else saturate); other bits 0
    2         linear engine lanes (of the first linear engine)
    3         logit accumulator width in bits (the RESULT logits are sign-extended from it)
    4..7      ``weights_id`` of the valid weights, u32 LE: the bitstream's (0: not given)
              or the last committed load's; 0 while no weights are valid
    8         weights flags: bit 0 ``WEIGHTS_VALID``, bit 1 ``WEIGHTS_IN_BITSTREAM``
    9..12     bytes of the weight image a load must send, u32 LE
    ========  ======================================================================
    """

    version: int
    arithmetic: arith.Arithmetic
    linear_lanes: int
    logit_bits: int
    weights_id: int
    weights_valid: bool = True
    weights_in_bitstream: bool = True
    image_bytes: int = 0

    def encode(self) -> bytes:
        flags = (self.arithmetic.rounding is arith.Rounding.FLOOR) | (self.arithmetic.overflow is arith.Overflow.WRAP) << 1
        weights = WEIGHTS_VALID * bool(self.weights_valid) | WEIGHTS_IN_BITSTREAM * bool(self.weights_in_bitstream)
        for name, value, limit in (("version", self.version, 0xFF), ("linear_lanes", self.linear_lanes, 0xFF),
                                   ("logit_bits", self.logit_bits, 32), ("weights_id", self.weights_id, 0xFFFFFFFF),
                                   ("image_bytes", self.image_bytes, 0xFFFFFFFF)):
            if not 0 <= value <= limit:
                raise ValueError(f"{name} {value} does not fit the INFO payload (0..{limit})")
        return (bytes([self.version, flags, self.linear_lanes, self.logit_bits])
                + self.weights_id.to_bytes(4, "little") + bytes([weights])
                + self.image_bytes.to_bytes(4, "little"))


def parse_info(frame: Frame) -> BoardInfo:
    if frame.crc_ok and frame.type == FrameType.INFO and frame.payload[:1] != bytes([VERSION]):
        version = frame.payload[0] if frame.payload else "none"
        raise ProtocolError(f"the board speaks protocol version {version}, this host version {VERSION}")
    payload = _expect(frame, FrameType.INFO)
    flags = payload[1]
    arithmetic = arith.Arithmetic(arith.Rounding.FLOOR if flags & 1 else arith.Rounding.HALF_UP,
                                  arith.Overflow.WRAP if flags & 2 else arith.Overflow.SATURATE)
    return BoardInfo(payload[0], arithmetic, payload[2], payload[3], int.from_bytes(payload[4:8], "little"),
                     bool(payload[8] & WEIGHTS_VALID), bool(payload[8] & WEIGHTS_IN_BITSTREAM),
                     int.from_bytes(payload[9:13], "little"))
