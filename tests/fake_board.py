"""A pretend board for the host-side tests: a pyserial-like port whose board answers every request
by the protocol's rules, in the RTL link's order (CRC, type, length, then the request's own
rules: weight loads in order with the commit's total and CRC-32 checked, image pieces up to
what is held, benches of the image held), and that misbehaves on request. The RTL link itself is tested bit by bit in
test_link_rtl.py; this one lets the host client's retries and its use by board-run be tested
in milliseconds.
"""

import random
import time
import zlib

import numpy as np

from lenet_fpga.boards import protocol
from lenet_fpga.boards.protocol import ErrorCode, FrameDecoder, FrameType, LoadOp
from lenet_fpga.model import arith
from lenet_fpga.model.network import LENET5

# What may happen to the request with a given index (0 = the first request the board sees):
ACTIONS = (
    "corrupt",  # it arrives with a bad CRC: ERROR BAD_CRC, nothing done
    "timeout",  # it stops arriving: ERROR TIMEOUT, nothing done
    "busy",  # ERROR BUSY, nothing done
    "silent",  # it never arrives: no reply
    "lose",  # carried out, its reply lost
    "garble",  # carried out, its reply arrives with a flipped bit
    "stale",  # carried out, but first a stray ERROR BUSY with the previous request's SEQ arrives
)


def simple_answer(pixels: bytes, classes: int) -> np.ndarray:
    """Logit j = sum of the pixels k with k % classes == j, minus 1000 j."""
    x = np.frombuffer(pixels, np.uint8).astype(np.int64)
    return np.array([x[j::classes].sum() - 1000 * j for j in range(classes)])


class FakeBoard:
    """See the module docstring.

    Parameters
    ----------
    weight_bytes : int
        Size of the weight image it loads.
    in_bitstream : bool
        Weights valid from the start (with id 1).
    answer : callable(pixels bytes) -> logits, optional
        Default ``simple_answer``.
    on_commit : callable(image bytes), optional
        Called with the loaded image when a commit is taken.
    network : model.network.Network
        Its image side and class count.
    clock_hz : int
        What INFO reports as its clock.

    Attributes
    ----------
    actions : dict[int, str]
        Request index -> one of ``ACTIONS``.
    noise : bytes
        Sent before every reply.
    requests : list of protocol.Frame
        Every request frame it decoded (good CRC or not).
    memory : bytearray
        What the weight memories hold.
    cycles, interval : int
        Cycles of an image alone (RESULT's, a bench's first run) and of each further run of a bench.
    benches : list of int
        The runs of every BENCH it carried out.
    """

    cycles, interval = 9759, 6144

    def __init__(self, weight_bytes: int = 100, in_bitstream: bool = True, answer=None, on_commit=None,
                 network=LENET5, arithmetic: arith.Arithmetic = arith.Arithmetic(), weights_id: int = 1,
                 clock_hz: int = 25_000_000):
        self.sizes = protocol.FrameSizes(network.image_size, network.classes)
        self.weight_bytes, self.in_bitstream = weight_bytes, in_bitstream
        self.arithmetic = arithmetic
        self.valid, self.weights_id = in_bitstream, weights_id if in_bitstream else 0
        self.loading, self.received, self.crc = False, 0, 0
        self.memory = bytearray(weight_bytes)
        self.image, self.image_received = bytearray(self.sizes.pixels), 0
        self.answer = answer or (lambda pixels: simple_answer(pixels, self.sizes.classes))
        self.on_commit = on_commit
        self.actions: dict[int, str] = {}
        self.noise = b""
        self.requests: list[protocol.Frame] = []
        self.outbox = bytearray()
        self.last_seq = 0
        self.timeout = None
        self.clock_hz = clock_hz
        self.benches: list[int] = []

    @property
    def info(self) -> protocol.BoardInfo:
        return protocol.BoardInfo(protocol.VERSION, self.arithmetic, "streaming", 22, self.weights_id if self.valid else 0,
                                  self.valid, self.in_bitstream, self.weight_bytes, self.sizes.image_size,
                                  self.sizes.classes, 110, self.loading, self.received if self.loading else 0,
                                  self.clock_hz, getattr(self, "fixed", False))

    def requests_of(self, type: FrameType) -> list[protocol.Frame]:
        return [f for f in self.requests if f.type == type and f.crc_ok]

    # The pyserial side.

    def write(self, data: bytes) -> int:
        for frame in FrameDecoder().feed(bytes(data)):
            self.requests.append(frame)
            action = self.actions.get(len(self.requests) - 1)
            reply = self._reply(frame, action)
            if reply is not None:
                self.outbox += self.noise + reply
            if frame.crc_ok:
                self.last_seq = frame.seq
        return len(data)

    def read(self, n: int) -> bytes:
        data = bytes(self.outbox[:n])
        del self.outbox[:n]
        return data

    def reset_input_buffer(self) -> None:
        self.outbox.clear()

    def close(self) -> None:
        pass

    # The board.

    def _reply(self, frame: protocol.Frame, action: str | None) -> bytes | None:
        def error(code):
            return protocol.encode_frame(FrameType.ERROR, protocol.error_payload(code), frame.seq)

        if action == "silent":
            return None
        if action == "corrupt" or not frame.crc_ok:
            return error(ErrorCode.BAD_CRC)
        if action == "timeout":
            return error(ErrorCode.TIMEOUT)
        if action == "busy":
            return error(ErrorCode.BUSY)
        reply = self._carry_out(frame, error)
        if action == "lose":
            return None
        if action == "garble":
            reply = bytearray(reply)
            reply[protocol.HEADER_BYTES] ^= 0x04
            return bytes(reply)
        if action == "stale":
            return protocol.encode_frame(FrameType.ERROR, protocol.error_payload(ErrorCode.BUSY), self.last_seq) + reply
        return reply

    def _carry_out(self, frame: protocol.Frame, error) -> bytes:
        sizes, payload, seq = self.sizes, frame.payload, frame.seq
        if frame.type not in protocol.REQUESTS:
            return error(ErrorCode.UNKNOWN_TYPE)
        if not sizes.request_length_ok(frame.type, len(payload), payload[0] if payload else None):
            return error(ErrorCode.BAD_LENGTH)
        if frame.type == FrameType.PING:
            return protocol.encode_frame(FrameType.INFO, self.info.encode(), seq)
        if frame.type == FrameType.CLASSIFY:
            if not self.valid:
                return error(ErrorCode.NO_WEIGHTS)
            if not payload and self.image_received != sizes.pixels:
                return error(ErrorCode.BAD_IMAGE)
            pixels = payload or bytes(self.image)
            logits = self.answer(pixels)
            return protocol.encode_frame(FrameType.RESULT, protocol.result_payload(int(np.argmax(logits)), logits,
                                                                                   self.cycles, sizes), seq)
        if frame.type == FrameType.BENCH:
            runs = int.from_bytes(payload, "little")
            if runs == 0:
                return error(ErrorCode.BAD_RUNS)
            if not self.valid:
                return error(ErrorCode.NO_WEIGHTS)
            if self.image_received != sizes.pixels:
                return error(ErrorCode.BAD_IMAGE)
            self.benches.append(runs)
            klass = int(np.argmax(self.answer(bytes(self.image))))
            total = self.cycles + (runs - 1) * self.interval
            return protocol.encode_frame(FrameType.BENCH_RESULT,
                                         protocol.BenchResult(runs, klass, self.cycles, total).encode(), seq)
        if frame.type == FrameType.IMAGE:
            offset, data = int.from_bytes(payload[:2], "little"), payload[2:]
            if offset > self.image_received or offset + len(data) > sizes.pixels:
                return error(ErrorCode.BAD_IMAGE)
            self.image[offset : offset + len(data)] = data
            self.image_received = offset + len(data)
            return protocol.encode_frame(FrameType.IMAGE_STORED, protocol.stored_payload(self.image_received), seq)
        op, argument = payload[0], int.from_bytes(payload[1:5], "little")
        if op == LoadOp.CHUNK:
            data = payload[protocol.CHUNK_HEADER_BYTES:]
            if (argument == 0 or (self.loading and argument == self.received)) and argument + len(data) <= self.weight_bytes:
                if argument == 0:
                    self.valid, self.weights_id, self.loading, self.crc = False, 0, True, 0
                self.memory[argument : argument + len(data)] = data
                self.received = argument + len(data)
                self.crc = zlib.crc32(data, self.crc)
                return protocol.encode_frame(FrameType.WEIGHTS_LOADED, protocol.loaded_payload(self.received, False), seq)
        elif op == LoadOp.COMMIT:
            image_crc = int.from_bytes(payload[9:13], "little")
            if self.loading and self.received == self.weight_bytes == argument and image_crc == self.crc:
                self.valid, self.loading = True, False
                self.weights_id = int.from_bytes(payload[5:9], "little")
                if self.on_commit is not None:
                    self.on_commit(bytes(self.memory))
                return protocol.encode_frame(FrameType.WEIGHTS_LOADED, protocol.loaded_payload(self.received, True), seq)
        self.valid, self.weights_id, self.loading = False, 0, False
        return error(ErrorCode.BAD_LOAD)


class NoisyLine:
    """A port between a host and ``board`` that corrupts each byte, both ways, with probability
    ``flip`` (one bit flipped) and drops it with probability ``drop``; seeded."""

    def __init__(self, board: FakeBoard, flip: float, drop: float = 0.0, seed: int = 0):
        self.board, self.flip, self.drop = board, flip, drop
        self.rng = random.Random(seed)
        self.incoming = bytearray()

    def _damage(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            r = self.rng.random()
            if r < self.drop:
                continue
            out.append(byte ^ (1 << self.rng.randrange(8)) if r < self.drop + self.flip else byte)
        return bytes(out)

    def write(self, data: bytes) -> int:
        self.board.write(self._damage(data))
        self.incoming += self._damage(self.board.read(1 << 20))
        return len(data)

    def read(self, n: int) -> bytes:
        data = bytes(self.incoming[:n])
        del self.incoming[:n]
        return data

    def reset_input_buffer(self) -> None:
        self.incoming.clear()


class SlowLine:
    """A port between a host and ``board`` whose replies arrive ``delay`` seconds (real time)
    after their request, as from a simulated board on a loaded machine: a read waits for them up
    to the port's ``timeout``, and a reply the host stopped waiting for arrives during its next
    try (clearing the input drops only what has arrived). ``delay`` may be changed on the way."""

    def __init__(self, board: FakeBoard, delay: float):
        self.board, self.delay = board, delay
        self.timeout = None
        self.pending: list[tuple[float, bytes]] = []  # (arrives at, bytes)
        self.arrived = bytearray()

    def _arrive(self) -> float | None:
        """Move what has arrived by now; return when the next byte arrives (None: nothing pending)."""
        now = time.monotonic()
        while self.pending and self.pending[0][0] <= now:
            self.arrived += self.pending.pop(0)[1]
        return self.pending[0][0] if self.pending else None

    def write(self, data: bytes) -> int:
        self.board.write(data)
        reply = self.board.read(1 << 20)
        if reply:
            self.pending.append((time.monotonic() + self.delay, reply))
        return len(data)

    def read(self, n: int) -> bytes:
        deadline = time.monotonic() + (self.timeout if self.timeout is not None else 1.0)
        while True:
            upcoming = self._arrive()
            if len(self.arrived) >= n or upcoming is None or upcoming > deadline:
                break
            time.sleep(max(0.0, upcoming - time.monotonic()))
        if len(self.arrived) < n:
            time.sleep(max(0.0, deadline - time.monotonic()))
        data = bytes(self.arrived[:n])
        del self.arrived[:n]
        return data

    def reset_input_buffer(self) -> None:
        self._arrive()
        self.arrived.clear()
