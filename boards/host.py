"""The host side of the board protocol: send a request frame, wait for the reply with its SEQ.

``BoardClient`` needs only a byte port with pyserial's blocking methods (``write``, ``read(n)``
returning fewer bytes on timeout, ``reset_input_buffer``), so the same client drives a real
board through ``open_serial``, the simulated one in ``sim/serial_line.py`` and ``lenet-fpga
board-sim`` through a pseudo-terminal. Everything that can go wrong on the board or on the line
comes back as a ``BoardError``.

A serial line loses and corrupts bytes, so the client:

* matches every reply to its request by SEQ: a late reply to an earlier request, or the ERROR
  BUSY the board adds after one, is skipped, never taken for the answer;
* resynchronises on the next SYNC after a frame with a bad CRC;
* sends a request again when the board answered BAD_CRC, TIMEOUT, BUSY or TOO_LONG (it carried
  out nothing) or no good reply came, counted in ``retried``, until ``patience`` passes without
  a good reply (and, while the board answers at all, ``PATIENT_TRIES`` tries: on a line that
  spoils 5 % of the bytes a 59-byte CLASSIFY exchange gets through once in 21 tries);
* waits for each reply as long as the round trips it has measured say (``RoundTrips``), so a
  slow board, such as a simulated one on a loaded machine, gets longer waits, and a lost reply
  on a fast one costs little; before anything is measured it tries short and often;
* estimates the fraction of bytes the line spoils from the exchanges it has seen
  (``LineErrors``) and sizes IMAGE pieces and weight chunks to it: whole images on a clean
  line, 99-pixel pieces at 1 %, 19 at 5 % (a whole-image exchange, 843 bytes on the line, gets
  through once in about 4,800 tries at 1 %);
* resumes a weight load where the board's INFO says it stands when a chunk's reply was lost;
* waits for a BENCH's reply as long as its runs take on the board, on top of the line time.
"""

from __future__ import annotations

import collections
import math
import random
import time

import numpy as np

from ..model.errors import InputError
from . import protocol
from .protocol import ErrorCode, Frame, FrameDecoder, FrameType, LoadOp

ERROR_TEXT = {
    ErrorCode.BAD_CRC: "the board received the request with a bad CRC (noise on the line?)",
    ErrorCode.BAD_LENGTH: "the board rejected the request's length",
    ErrorCode.UNKNOWN_TYPE: "the board does not know this request type",
    ErrorCode.TIMEOUT: "the request stopped arriving before it was complete (board timeout)",
    ErrorCode.BUSY: "the board was busy with an earlier request and dropped bytes",
    ErrorCode.NO_WEIGHTS: ("the board holds no valid weights (a weight load was started and not completed, "
                           "or its bitstream has none): load weights first, e.g. board-run --weights FILE.npz"),
    ErrorCode.BAD_LOAD: ("the board refused the weight-load request (chunk out of order or past the image's end, "
                         "or a commit whose size or CRC-32 does not match the bytes loaded); it holds no valid "
                         "weights now"),
    ErrorCode.BAD_IMAGE: ("the board refused an image piece (out of order or past the image's end), or holds no "
                          "whole image for a CLASSIFY without pixels or a BENCH"),
    ErrorCode.HUNG: ("the accelerator did not finish within the board's watchdog time; the board reset it "
                     "(a weight load in progress was ended)"),
    ErrorCode.TOO_LONG: ("the board refused the request's length as longer than any it takes (a length corrupted "
                         "on the line, or a board built for a smaller network)"),
    ErrorCode.BAD_RUNS: "the board refused a BENCH of 0 runs",
    ErrorCode.WEIGHTS_FIXED: ("the board's weights are in its bitstream (read-only memory) and cannot be replaced: "
                              "build it with the weights you want (`lenet-fpga build --weights FILE.npz`), or with "
                              "--compact-weights spram to load them at run time"),
}
RETRY_CODES = protocol.RETRY_CODES
MIN_BAUD = 1200  # below this a read timeout that covers the longest exchange runs into minutes
PIECE_BYTES = 16  # pixels (or weight bytes) per frame once the line has shown noise, with fixed pieces
MIN_REPLY_WAIT = 0.2  # seconds: the shortest read timeout with fixed time-outs (set_timeout)
FIRST_WAIT = 0.25  # seconds: a try's wait while no round trip is measured (doubled after each silent one)
MIN_WAIT = 0.05  # seconds: the shortest wait measured round trips give (a USB adapter's latency timer is 16 ms)
MAX_WAIT = 10.0  # seconds: the longest wait for one reply, however slow the board has been
PATIENCE = 30.0  # seconds without a good reply after which a request is given up
# ... but not before this many of its tries got bytes back (spoiled): on a line that spoils 5 % of
# the bytes a 59-byte exchange fails 150 tries in a row once in 1,600, however slow the board
PATIENT_TRIES = 150
MAX_RESTARTS = 10  # weight loads the board ended that are started over, without a retries limit


# ----------------------------------------------------------------------------------------------
# What the client learns about the line


class RoundTrips:
    """Round-trip times of good exchanges, and the read timeout they give for the next one.

    Per request type and size class (exchanges of 2^k..2^(k+1)-1 bytes on the line: a CLASSIFY
    waits for the accelerator, a PING of the same size does not), a smoothed round trip and its
    mean deviation, as TCP keeps them (RFC 6298: gains 1/8 and 1/4, timeout = smoothed + 4
    deviations). An exchange of a size not measured yet takes the nearest larger class's timeout
    of its type (a longer exchange bounds a shorter one), or the nearest smaller one's scaled up by
    the bytes, or, for a type not measured yet, the same from every type's. Each attempt has its
    own SEQ, so a reply is never taken for another attempt's (Karn's rule holds by construction),
    and a reply that comes too late for its own attempt is measured all the same.

    ``timeout(n)`` is at least ``floor`` plus the line time of ``n`` bytes (``byte_seconds``
    each: 10 bits at the baud rate; 0 on a pseudo-terminal), and at most ``ceiling``.
    """

    def __init__(self, floor: float, ceiling: float, byte_seconds: float = 0.0):
        self.floor, self.ceiling, self.byte_seconds = floor, ceiling, byte_seconds
        self._classes: dict[tuple[int, int], tuple[float, float, int]] = {}  # (type, class) -> (smoothed, deviation, bytes)

    def add(self, kind: int, exchange_bytes: int, seconds: float) -> None:
        key = (kind, exchange_bytes.bit_length())
        if key not in self._classes:
            self._classes[key] = (seconds, seconds / 2, exchange_bytes)
            return
        smoothed, deviation, _ = self._classes[key]
        deviation = 0.75 * deviation + 0.25 * abs(smoothed - seconds)
        self._classes[key] = (0.875 * smoothed + 0.125 * seconds, deviation, exchange_bytes)

    def timeout(self, kind: int | None, exchange_bytes: int) -> float | None:
        """Seconds to wait for the reply to an exchange of this many bytes starting with a
        request of type ``kind`` (None: any); None while nothing is measured."""
        same = [key for key in self._classes if key[0] == kind]
        keys = same or list(self._classes)
        if not keys:
            return None
        size = exchange_bytes.bit_length()
        larger = [key for key in keys if key[1] >= size]
        if larger:
            smoothed, deviation, _ = self._classes[min(larger, key=lambda key: (key[1], -self._classes[key][0]))]
            wait = smoothed + 4 * deviation
        else:
            smoothed, deviation, measured_bytes = self._classes[max(keys, key=lambda key: (key[1], self._classes[key][0]))]
            wait = (smoothed + 4 * deviation) * exchange_bytes / measured_bytes
        return min(self.ceiling, max(wait, self.floor + exchange_bytes * self.byte_seconds))


class LineErrors:
    """The fraction of bytes the line spoils, estimated from how exchanges of known sizes fared,
    and the piece size that carries most pixels per byte sent at that rate.

    An exchange of ``n`` bytes (request and reply) gets through when none of its bytes is hit:
    with a per-byte error rate ``e``, with probability ``(1 - e) ** n``. The estimate is the
    maximum-likelihood ``e`` over the last ``window`` exchanges that got through or were lost to
    the line (not those the board was too busy for). A piece of ``p`` pixels with ``o`` bytes of
    framing carries ``p (1 - e) ** (p + o)`` pixels per attempt on average, most at ``p = -1 /
    ln(1 - e)`` whatever ``o`` is: 99 pixels at 1 %, 19 at 5 %, whole images on a clean line.
    """

    def __init__(self, window: int = 64):
        self._outcomes: collections.deque = collections.deque(maxlen=window)

    def add(self, exchange_bytes: int, got_through: bool) -> None:
        self._outcomes.append((exchange_bytes, got_through))

    def rate(self) -> float:
        """The estimated fraction of bytes spoiled (0 before any exchange was lost)."""
        counts = collections.Counter(self._outcomes)
        lost = [(n, c) for (n, ok), c in counts.items() if not ok]
        if not lost:
            return 0.0
        through = sum(n * c for (n, ok), c in counts.items() if ok)
        # d/dq of the log-likelihood in q = 1 - e decreases in q: bisect for its zero.
        low, high = 0.5, 1.0 - 1e-9
        for _ in range(40):
            q = (low + high) / 2
            slope = through / q - sum(c * n * q ** (n - 1) / (1 - q ** n) for n, c in lost)
            low, high = (q, high) if slope > 0 else (low, q)
        return 1.0 - (low + high) / 2

    def best_piece(self, largest: int) -> int:
        """Pixels (or weight bytes) per frame, 1..``largest``, for the estimated error rate."""
        e = self.rate()
        if e <= 0:
            return largest
        return max(1, min(largest, round(-1 / math.log1p(-e))))


class BoardError(InputError):
    """The board answered ERROR, or no good reply to the request came.

    ``code`` is the board's ``ErrorCode`` for an ERROR reply, else None. ``retryable``: the
    board carried out nothing it was asked (an ERROR in ``protocol.RETRY_CODES``), or it is
    unknown whether it did because no good reply came (``code`` None).
    """

    def __init__(self, message: str, code: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.retryable = retryable

    @property
    def reason(self) -> str:
        """A short name for counting retries: the error code's, or ``no reply``."""
        if self.code is None:
            return "no reply"
        return self.code.name if isinstance(self.code, ErrorCode) else f"error {self.code}"


class BoardClient:
    """Requests to a LeNet board over a pyserial-like ``port``.

    Parameters
    ----------
    port
        An object with ``write(bytes)``, ``read(n) -> bytes`` (fewer than ``n`` on timeout),
        ``reset_input_buffer()`` and a settable ``timeout``.
    retries : int, optional
        At most this many further attempts of one request (of one IMAGE piece, of one weight
        chunk). Default None: no count; a request is given up after ``patience``.
    piece_bytes : int, optional
        Fixed pixels per IMAGE piece and bytes per weight chunk once the line has lost a frame.
        Default None: sized to the error rate the client measures (``LineErrors``).
    seq : int, optional
        SEQ of the first request (default: random, so a stale reply from an earlier session is
        unlikely to match).
    patience : float
        Seconds without a good reply (counting the waits of tries that got no answer at all, so a
        port that returns at once gives up as a slow one does) after which a request is given up.
    byte_seconds : float
        Line time of one byte (10 / baud; 0 on a pseudo-terminal): the least any wait may be.

    Each try waits for its reply as long as the round trips measured so far say (``RoundTrips``:
    the smoothed round trip of exchanges of its size plus four deviations), doubled after each
    try that got no answer at all, up to ``MAX_WAIT``; while nothing is measured (the first
    PING) ``FIRST_WAIT``, doubled so too. A slow board, such as a simulated one on a loaded
    machine, therefore only makes the measured round trips longer. After a frame with a bad CRC
    (perhaps the reply itself) the search for another goes on only as long as a short exchange
    takes. With ``set_timeout`` the waits are fixed instead, in proportion to each exchange's
    bytes, as the user asked. A reply is also given up when four replies' worth of bytes came
    without it (a line that babbles noise cannot hold the client).

    Attributes
    ----------
    info : protocol.BoardInfo or None
        The last INFO received.
    retried : collections.Counter
        Requests sent again, by reason (``BAD_CRC``, ``TIMEOUT``, ``BUSY``, ``no reply``).
    round_trips : RoundTrips
    line : LineErrors
    """

    def __init__(self, port, retries: int | None = None, piece_bytes: int | None = None,
                 seq: int | None = None, patience: float = PATIENCE, byte_seconds: float = 0.0):
        for method in ("write", "read", "reset_input_buffer"):
            if not callable(getattr(port, method, None)):
                raise TypeError(f"port has no {method}() method; expected a pyserial-like port")
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
            raise ValueError(f"retries must be a whole number >= 0 or None, not {retries!r}")
        if piece_bytes is not None and (isinstance(piece_bytes, bool) or not isinstance(piece_bytes, int)
                                        or piece_bytes < 1):
            raise ValueError(f"piece_bytes must be a whole number >= 1 or None, not {piece_bytes!r}")
        if not 0 < patience < math.inf:
            raise ValueError(f"patience must be a positive number of seconds, not {patience!r}")
        if not 0 <= byte_seconds < 1:
            raise ValueError(f"byte_seconds must be 0 or a small positive number, not {byte_seconds!r}")
        self.port = port
        self.retries = retries
        self.piece_bytes = piece_bytes
        self.patience = float(patience)
        self._seq = random.randrange(256) if seq is None else int(seq) & 0xFF
        self.timeout: float | None = None  # fixed: seconds for the longest exchange; None: measured
        self.info: protocol.BoardInfo | None = None
        self.retried: collections.Counter = collections.Counter()
        self.round_trips = RoundTrips(MIN_WAIT, MAX_WAIT, byte_seconds)
        self.line = LineErrors()
        self._noisy = False  # with fixed pieces: the line has lost a frame
        self._extra_wait = 0.0  # seconds the board works before it replies (a BENCH's runs)
        self._backoff = 1  # the wait's factor: doubled after each try that got nothing back at all
        self._trying_since: float | None = None  # when the tries since the last good reply began
        self._silent_wait = 0.0  # seconds waited in vain, nothing coming back, since bytes last came
        self._heard_tries = 0  # tries since the last good reply that got bytes back, all spoiled
        self._last = (0, 0.0, False)  # the last try: its exchange's bytes, its wait, whether nothing came
        self._sent: dict[int, tuple[float, int, int]] = {}  # SEQ -> (sent at, type, bytes) of recent tries

    # ----------------------------------------------------------------------------------------
    # One exchange

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def transact(self, request: bytes, seq: int | None = None, max_payload: int | None = None,
                 reply_payload: int | None = None) -> Frame:
        """Send ``request`` (raw bytes, normally one encoded frame) and return the first good reply
        frame whose SEQ is ``seq`` (any SEQ if None). One attempt, no retry. ``max_payload``:
        longer frames are noise (default: the longest reply); ``reply_payload``: the reply's
        expected length, for the read timeout (default ``max_payload``).

        Raises BoardError on an ERROR reply, or (``retryable``, ``code`` None) when no good
        matching reply comes before the reply timeout.
        """
        max_payload = self._max_reply() if max_payload is None else max_payload
        exchange = len(request) + (max_payload if reply_payload is None else reply_payload) + protocol.OVERHEAD_BYTES
        kind = request[1] if len(request) > 1 else None
        wait = self._wait(exchange, kind)
        self._last = (exchange, wait or 0.0, False)
        if self._trying_since is None:
            self._trying_since = time.monotonic()
        self.port.reset_input_buffer()
        started = time.monotonic()
        if seq is not None and not self._extra_wait:
            self._sent[seq] = (started, kind, len(request))
            while len(self._sent) > 8:
                del self._sent[next(iter(self._sent))]
        self.port.write(bytes(request))
        reply = self._read_reply(seq, max_payload, wait, reply_payload)
        self._sent.pop(reply.seq, None)
        if reply.type == FrameType.ERROR:
            try:
                code = protocol.parse_error(reply)
            except protocol.ProtocolError as e:
                raise BoardError(f"malformed ERROR reply: {e}") from None
            text = ERROR_TEXT.get(code, "unknown error code")
            name = code.name if isinstance(code, ErrorCode) else str(code)
            raise BoardError(f"board error {int(code)} ({name}): {text}", code, code in RETRY_CODES)
        exchange = len(request) + len(reply.payload) + protocol.OVERHEAD_BYTES
        if not self._extra_wait:  # a bench's reply waits for its runs: not a round trip of the line
            self.round_trips.add(kind, exchange, time.monotonic() - started)
        self.line.add(exchange, True)
        self._trying_since, self._silent_wait, self._backoff, self._heard_tries = None, 0.0, 1, 0
        return reply

    def _wait(self, exchange_bytes: int, kind: int | None = None) -> float | None:
        """Seconds to wait for the reply to an exchange of this many bytes (see the class
        docstring); None: the port's own timeout (fixed mode before INFO sized it)."""
        if self.timeout is not None:
            sizes = self.info.sizes if self.info is not None else None
            longest = (sizes.max_request + sizes.max_reply if sizes else protocol.INFO_LENGTH) \
                + 2 * protocol.OVERHEAD_BYTES
            return max(MIN_REPLY_WAIT, self.timeout * min(1.0, exchange_bytes / longest)) + self._extra_wait
        measured = self.round_trips.timeout(kind, exchange_bytes)
        if measured is None:
            measured = max(FIRST_WAIT, MIN_WAIT + exchange_bytes * self.round_trips.byte_seconds)
        return min(MAX_WAIT, measured * self._backoff) + self._extra_wait

    def _tail_wait(self) -> float:
        """After a frame with a bad CRC: how long another frame right behind it may take."""
        if self.timeout is not None:
            return MIN_REPLY_WAIT
        short = protocol.OVERHEAD_BYTES + protocol.ERROR_LENGTH
        return min(MAX_WAIT, self.round_trips.timeout(None, short) or FIRST_WAIT)

    def _max_reply(self) -> int:
        return max(protocol.FIXED_REPLY_LENGTHS.values()) if self.info is None else self.info.sizes.max_reply

    def _read_reply(self, seq: int | None, max_payload: int, wait: float | None = None,
                    reply_payload: int | None = None) -> Frame:
        """The first good frame with SEQ ``seq``, read within ``wait`` seconds (None: the port's
        own timeout for each read). A frame with a bad CRC and the ``reply_payload`` length
        expected is taken for the reply, spoiled: the try ends at once."""
        decoder = FrameDecoder(max_payload)
        limit = 4 * (max_payload + protocol.OVERHEAD_BYTES)
        total = corrupt = stale = 0
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            wanted = decoder.needed()
            if deadline is not None:
                self.port.timeout = max(0.0, deadline - time.monotonic())
            chunk = self.port.read(wanted)
            total += len(chunk)
            for frame in decoder.feed(chunk):
                if not frame.crc_ok:
                    corrupt += 1
                    if deadline is not None and len(frame.payload) == reply_payload and self.timeout is None:
                        deadline = time.monotonic()  # the reply itself, spoiled: nothing more will come
                    elif deadline is not None:
                        # The reply itself may be what was corrupted: look on for the next SYNC,
                        # but only as long as a frame right behind the bad one would take.
                        deadline = min(deadline, time.monotonic() + self._tail_wait())
                elif seq is not None and frame.seq != seq:
                    stale += 1
                    if frame.type != FrameType.ERROR and frame.seq in self._sent:
                        # the reply to an earlier try, too late for it: its round trip all the same
                        sent_at, kind, request_bytes = self._sent.pop(frame.seq)
                        self.round_trips.add(kind, request_bytes + len(frame.payload) + protocol.OVERHEAD_BYTES,
                                             time.monotonic() - sent_at)
                else:
                    return frame
            if len(chunk) < wanted or total > limit:
                if corrupt or stale:
                    what = f"{corrupt} frames with a bad CRC and {stale} replies to other requests"
                elif total > decoder.skipped:
                    what = "an incomplete reply"
                else:
                    what = "no reply"
                if total == 0:  # nothing at all came: perhaps the wait was too short
                    self._last = (self._last[0], self._last[1], True)
                raise BoardError(f"timeout: {what} from the board ({total} bytes; is it a board with protocol "
                                 f"version {protocol.VERSION} at this baud rate?)", None, True)

    def _exchange(self, type: FrameType, payload: bytes, expect: FrameType) -> Frame:
        """One attempt of one request; a good reply of another type is a BoardError (not retryable)."""
        seq = self.next_seq()
        expected = None if self.info is None else max(self.info.sizes.reply_length(expect), protocol.ERROR_LENGTH)
        reply = self.transact(protocol.encode_frame(type, payload, seq), seq, reply_payload=expected)
        if reply.type != expect:
            raise BoardError(f"unexpected reply: expected {expect.name}, got a {reply.describe()}")
        return reply

    def _request(self, type: FrameType, payload, expect: FrameType, parser, *, while_clean: bool = False):
        """``_exchange`` and ``parser`` of the reply, sent again after a retryable error until
        ``_give_up`` says so; with ``while_clean``, given up (None) instead as soon as the line
        has lost a frame. ``payload``: bytes, or a function giving each attempt's."""
        attempt = 0
        while True:
            try:
                return self._parse(parser, self._exchange(type, payload() if callable(payload) else payload, expect))
            except BoardError as e:
                self._give_up(e, attempt, self.retries)
                attempt += 1
                self._line_trouble(e)
                if while_clean and not self._clean():
                    return None

    def _give_up(self, error: BoardError, attempt: int, retries: int | None, since: float | None = None) -> None:
        """Raise ``error`` unless another attempt is due: it is retryable, ``attempt`` (0 for the
        first) is below ``retries``, and the tries have not gone without a good reply for
        ``patience`` seconds (since ``since``, default the last good reply). While the board
        answers, however spoiled, that takes ``PATIENT_TRIES`` tries too: on a loaded machine a
        simulated board's tries are slow, and patience in seconds alone would give up a request
        that a few more tries get through; a board that went silent is given up on time alone."""
        if not error.retryable or (retries is not None and attempt >= retries):
            raise error
        since = self._trying_since if since is None else since
        waited = time.monotonic() - since if since is not None else 0.0
        if self._silent_wait > self.patience or (waited > self.patience and self._heard_tries >= PATIENT_TRIES):
            waited = max(waited, self._silent_wait)
            raise BoardError(f"no good reply from the board for {waited:.0f} s ({attempt + 1} tries of this "
                             f"request); the last: {error}", error.code) from None

    def _line_trouble(self, error: BoardError) -> None:
        """Count a retry; what the line lost feeds the error rate, a try that got nothing at all
        doubles the next wait."""
        self.retried[error.reason] += 1
        exchange, wait, silent = self._last
        if error.code != ErrorCode.BUSY:
            self._noisy = True
            self.line.add(exchange, False)
        if silent:
            self._silent_wait += wait
            self._backoff = min(self._backoff * 2, 1 << 10)
        else:  # something came back within the wait: it was long enough
            self._silent_wait, self._backoff = 0.0, 1
            self._heard_tries += 1

    def _clean(self) -> bool:
        """Does the line look clean enough for a whole image in one frame?"""
        sizes = self.sizes
        return self._piece(sizes.max_piece) >= sizes.pixels

    def _piece(self, largest: int) -> int:
        """Pixels (or weight bytes) for the next piece (or chunk), at most ``largest``."""
        if self.piece_bytes is None:
            return self.line.best_piece(largest)
        return min(self.piece_bytes, largest) if self._noisy else largest

    @staticmethod
    def _parse(parser, frame: Frame):
        try:
            return parser(frame)
        except protocol.ProtocolError as e:
            raise BoardError(f"unexpected reply: {e}") from None

    # ----------------------------------------------------------------------------------------
    # Requests

    def ping(self) -> protocol.BoardInfo:
        """PING -> the board's INFO (protocol version, arithmetic, network, weights' state)."""
        self.info = self._request(FrameType.PING, b"", FrameType.INFO, protocol.parse_info)
        return self.info

    def set_timeout(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the reply to the longest exchange (a full chunk or a whole
        image), proportionally less for shorter ones; sets the port's ``timeout`` per request."""
        if not seconds > 0:
            raise ValueError(f"timeout must be positive, not {seconds!r}")
        self.timeout = float(seconds)

    @property
    def sizes(self) -> protocol.FrameSizes:
        if self.info is None:
            self.ping()
        return self.info.sizes

    def classify(self, image) -> tuple[int, np.ndarray, int]:
        """One uint8 [side, side] image -> (class, logits int64 [classes], accelerator cycles)."""
        sizes = self.sizes
        pixels = protocol.image_pixels(image, sizes)

        def result(frame):
            return protocol.parse_result(frame, sizes)

        if self._clean():
            # a whole image while the line is clean; in pieces once it has lost a frame
            answer = self._request(FrameType.CLASSIFY, pixels, FrameType.RESULT, result, while_clean=True)
            if answer is not None:
                return answer
        before = sum(self.retried.values())
        self._store_pieces(pixels)
        answer = self.classify_stored()
        if sum(self.retried.values()) == before:
            self._noisy = False  # a whole image in pieces without a retry: try whole images again
        return answer

    def _store_pieces(self, pixels: bytes) -> None:
        """``pixels`` into the board's image buffer in IMAGE pieces, each retried; each attempt's
        piece as long as ``_piece`` says at that moment (shorter after losses, longer after
        successes)."""
        sizes = self.sizes
        offset, sent = 0, 0

        def piece() -> bytes:
            nonlocal sent
            data = pixels[offset : offset + self._piece(sizes.max_piece)]
            sent = len(data)
            return offset.to_bytes(2, "little") + data

        while offset < len(pixels):
            held = self._request(FrameType.IMAGE, piece, FrameType.IMAGE_STORED, protocol.parse_stored)
            if held != offset + sent:
                raise BoardError(f"the board holds {held} pixels after the piece at {offset}, "
                                 f"expected {offset + sent}")
            offset = held

    def store_image(self, image) -> None:
        """One uint8 [side, side] image into the board's image buffer, for ``classify_stored`` and
        ``bench``: in one IMAGE piece while the line is clean, in pieces once it has lost a frame."""
        sizes = self.sizes
        pixels = protocol.image_pixels(image, sizes)
        if self._clean():
            held = self._request(FrameType.IMAGE, bytes(protocol.PIECE_HEADER_BYTES) + pixels,
                                 FrameType.IMAGE_STORED, protocol.parse_stored, while_clean=True)
            if held == len(pixels):
                return
            if held is not None:
                raise BoardError(f"the board holds {held} pixels after a whole image, expected {len(pixels)}")
        self._store_pieces(pixels)

    def classify_stored(self) -> tuple[int, np.ndarray, int]:
        """CLASSIFY without pixels: the image in the board's image buffer -> (class, logits, cycles)."""
        sizes = self.sizes
        return self._request(FrameType.CLASSIFY, b"", FrameType.RESULT,
                             lambda frame: protocol.parse_result(frame, sizes))

    def bench(self, runs: int, seconds: float = 0.0) -> protocol.BenchResult:
        """BENCH: the image in the board's image buffer (``store_image``) through the accelerator
        ``runs`` times back to back -> the board's own cycle counts (``protocol.BenchResult``).

        The board replies only after the last run, so the read timeout of this exchange is the
        usual one plus ``seconds``, what the runs may take on the board. A bench whose reply was
        lost is run again (it changes nothing on the board).
        """
        protocol.bench_request(runs)  # checks runs
        if not seconds >= 0:
            raise ValueError(f"seconds must be 0 or more, not {seconds!r}")
        sizes = self.sizes
        self._extra_wait = float(seconds)
        try:
            result = self._request(FrameType.BENCH, int(runs).to_bytes(protocol.BENCH_LENGTH, "little"),
                                   FrameType.BENCH_RESULT, lambda frame: protocol.parse_bench(frame, sizes))
        finally:
            self._extra_wait = 0.0
        if result.runs != runs:
            raise BoardError(f"the board ran the image {result.runs} times; {runs} were asked for")
        return result

    def load_weights(self, image: bytes, weights_id: int, progress=None, retries: int | None = None,
                     chunk: int | None = None) -> protocol.BoardInfo:
        """Load a weight image (``accelerator.weight_image()`` of an accelerator built with the
        new weights and the board's configuration) and commit it under ``weights_id`` with its
        CRC-32.

        Parameters
        ----------
        image : bytes
            The whole image; its length must be the board's (INFO ``weight_bytes``).
        weights_id : int
            ``protocol.weights_id`` of the weights, reported by the board's INFO afterwards.
        progress : callable, optional
            Called with the number of image bytes of each chunk the board took (and with minus
            the bytes taken so far when the load starts over from byte 0), so a progress bar's
            ``update`` fits.
        retries : int, optional
            Attempts of each chunk after the first (default: the client's ``retries``; None:
            until ``patience`` passes without a chunk taken).
        chunk : int, optional
            Image bytes per frame (default and at most the board's largest chunk); smaller once
            the line has lost a frame, as IMAGE pieces are.

        Returns
        -------
        protocol.BoardInfo
            The board's INFO after the commit (weights valid, ``weights_id`` as given).

        Raises BoardError if the board does not take the image; it then holds no valid weights
        (or, if not even the first chunk arrived, its old ones).
        """
        image = bytes(image)
        if isinstance(weights_id, bool) or not isinstance(weights_id, int) or not 0 <= weights_id < 1 << 32:
            raise InputError(f"weights id must be a u32, not {weights_id!r}")
        retries = self.retries if retries is None else retries
        info = self.ping()
        sizes = info.sizes
        if info.weight_bytes != len(image):
            raise BoardError(f"the board expects a {info.weight_bytes}-byte weight image, this one has {len(image)} "
                             f"bytes: was the board built with another configuration (--preset, --lanes)?")
        step = sizes.max_chunk if chunk is None else chunk
        if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= sizes.max_chunk:
            raise ValueError(f"chunk must be 1..{sizes.max_chunk}, not {chunk!r}")
        image_crc = protocol.crc32(image)
        report = progress or (lambda _: None)
        offset, attempts, restarts = 0, 0, 0
        stalled_since = None  # the first failed try of this chunk (INFO's replies are not progress)

        def failed(e: BoardError, what: str):
            return BoardError(f"weight load failed at byte {offset} of {len(image)}: {what}: {e}", e.code)

        while offset < len(image):
            data = image[offset : offset + self._piece(step)]
            payload = bytes([LoadOp.CHUNK]) + offset.to_bytes(4, "little") + data
            try:
                received, _ = self._parse(protocol.parse_loaded,
                                          self._exchange(FrameType.LOAD_WEIGHTS, payload, FrameType.WEIGHTS_LOADED))
            except BoardError as e:
                stalled_since = stalled_since or self._trying_since
                try:
                    self._give_up(e, attempts, retries, stalled_since)
                except BoardError as final:
                    raise failed(final, "the chunk was not taken") from None
                attempts += 1
                self._line_trouble(e)
                if e.code is None:  # no good reply: did the board take the chunk? Its INFO says.
                    state = self.ping()
                    if state.loading and state.load_received == offset + len(data):
                        received = offset + len(data)
                    elif state.loading and state.load_received == offset:
                        continue
                    else:  # the load ended on the board: start over
                        restarts += 1
                        if restarts > (MAX_RESTARTS if retries is None else retries):
                            raise failed(e, "the load ended on the board too often") from None
                        report(-offset)
                        offset, attempts, stalled_since = 0, 0, None
                        continue
                else:
                    continue
            if received != offset + len(data):
                raise BoardError(f"weight load: the board reports {received} bytes received after the chunk at "
                                 f"{offset}, expected {offset + len(data)}")
            report(len(data))
            offset, attempts, stalled_since = received, 0, None

        self._commit_load(len(image), image_crc, weights_id, retries)
        info = self.ping()
        if not info.weights_valid or info.weights_id != weights_id:
            raise BoardError(f"weight load: after the commit the board reports weights valid={info.weights_valid}, "
                             f"id {info.weights_id:08x} (expected {weights_id:08x})")
        return info

    def _commit_load(self, total: int, image_crc: int, weights_id: int, retries: int | None) -> None:
        """COMMIT a load of ``total`` bytes whose CRC-32 is ``image_crc`` under ``weights_id``,
        with up to ``retries`` more attempts (None: until ``patience`` passes); a commit whose
        reply was lost is recognised by the board's INFO (weights valid under this id, no load in
        progress)."""
        commit = bytes([LoadOp.COMMIT]) + total.to_bytes(4, "little") + weights_id.to_bytes(4, "little") \
            + image_crc.to_bytes(4, "little")
        attempt, stalled_since = 0, None
        while True:
            try:
                self._parse(protocol.parse_loaded, self._exchange(FrameType.LOAD_WEIGHTS, commit, FrameType.WEIGHTS_LOADED))
                return
            except BoardError as e:
                stalled_since = stalled_since or self._trying_since
                try:
                    self._give_up(e, attempt, retries, stalled_since)
                except BoardError as final:
                    raise BoardError(f"weight load: the board refused the commit: {final}", e.code) from None
                attempt += 1
                self._line_trouble(e)
                if e.code is None:
                    state = self.ping()
                    if state.weights_valid and state.weights_id == weights_id and not state.loading:
                        return  # the commit was taken, its reply lost
                    if not (state.loading and state.load_received == total):
                        raise BoardError("weight load: the board lost the load before the commit "
                                         f"(INFO: loading={state.loading}, {state.load_received} bytes)") from None


def serial_timeout(baud: int, sizes: protocol.FrameSizes | None = None) -> float:
    """A read timeout that covers sending the longest request of a board with these frame sizes
    and reading its reply, with margin; without ``sizes``, a PING and its INFO. (For LeNet-5 at
    115200 baud 0.65 s; at ``MIN_BAUD`` 14.6 s.)"""
    if sizes is None:
        payloads = protocol.INFO_LENGTH
    else:
        payloads = sizes.max_request + sizes.max_reply
    bits = 10 * (payloads + 2 * protocol.OVERHEAD_BYTES)
    return 0.5 + 2 * bits / check_baud(baud)


def check_baud(baud) -> int:
    if isinstance(baud, bool) or not isinstance(baud, int) or baud < MIN_BAUD:
        raise InputError(f"baud rate must be a whole number of at least {MIN_BAUD}, not {baud!r}: "
                         f"the board's UART runs at 115200 unless it was built with --baud")
    return baud


def open_serial(path: str, baud: int, timeout: float | None = None):
    """Open a serial port (a device path, a pseudo-terminal of ``lenet-fpga board-sim``, or a
    pyserial URL such as ``loop://``) as 8N1 at ``baud``.

    Raises BoardError if the port cannot be opened, InputError for a baud rate below
    ``MIN_BAUD``.
    """
    try:
        import serial
    except ImportError:
        raise InputError("talking to a board needs pyserial: pip install pyserial") from None
    check_baud(baud)
    try:
        return serial.serial_for_url(
            path, baudrate=baud, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE, timeout=serial_timeout(baud) if timeout is None else timeout,
        )
    except (serial.SerialException, ValueError, OSError) as e:
        raise BoardError(f"cannot open serial port {path}: {e}") from None
