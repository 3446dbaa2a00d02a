"""The host side of the board protocol: send a request frame, wait for its one reply.

``BoardClient`` needs only a byte port with pyserial's blocking methods (``write``, ``read(n)``
returning fewer bytes on timeout, ``reset_input_buffer``), so the same client drives a real
board through ``open_serial`` and the simulated one in ``sim/tb_link.py``. Everything that can
go wrong on the board or on the line comes back as a ``BoardError``.
"""

from __future__ import annotations

import numpy as np

from ..model.errors import InputError
from . import protocol
from .protocol import ErrorCode, Frame, FrameDecoder, FrameType

ERROR_TEXT = {
    ErrorCode.BAD_CRC: "the board received the request with a bad CRC (noise on the line?)",
    ErrorCode.BAD_LENGTH: "the board rejected the request's length",
    ErrorCode.UNKNOWN_TYPE: "the board does not know this request type",
    ErrorCode.TIMEOUT: "the request stopped arriving before it was complete (board timeout)",
    ErrorCode.BUSY: "the board was busy with an earlier request and dropped bytes",
    ErrorCode.NO_WEIGHTS: ("the board holds no valid weights (a weight load was started and not completed, "
                           "or its bitstream has none): load weights first, e.g. board-run --weights FILE.npz"),
    ErrorCode.BAD_LOAD: ("the board refused the weight-load request (chunk out of order or past the image's end, "
                         "or a commit that does not match the bytes loaded); it holds no valid weights now"),
}
# Errors after which the board has not taken a chunk, so the same chunk may be sent again.
RETRY_CODES = (ErrorCode.BAD_CRC, ErrorCode.TIMEOUT, ErrorCode.BUSY)
# Bytes the client reads, at most, while looking for one reply among line noise.
MAX_REPLY_BYTES = 4 * (protocol.MAX_PAYLOAD + protocol.OVERHEAD_BYTES)


class BoardError(InputError):
    """The board answered ERROR, or its reply was corrupt, late or not the one expected.

    ``code`` is the board's ``ErrorCode`` for an ERROR reply, else None.
    """

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class BoardClient:
    """Requests to a LeNet board over a pyserial-like ``port``.

    Parameters
    ----------
    port
        An object with ``write(bytes)``, ``read(n) -> bytes`` (fewer than ``n`` on timeout) and
        ``reset_input_buffer()``; its read timeout must cover the board's longest reply.
    """

    def __init__(self, port):
        for method in ("write", "read", "reset_input_buffer"):
            if not callable(getattr(port, method, None)):
                raise TypeError(f"port has no {method}() method; expected a pyserial-like port")
        self.port = port

    def transact(self, request: bytes) -> Frame:
        """Send ``request`` (raw bytes, normally one encoded frame) and return the reply frame.

        Raises BoardError on an ERROR reply, a reply with a bad CRC, or no complete reply
        before the port's read timeout.
        """
        self.port.reset_input_buffer()
        self.port.write(bytes(request))
        reply = self._read_frame()
        if reply.type == FrameType.ERROR:
            try:
                code = protocol.parse_error(reply)
            except protocol.ProtocolError as e:
                raise BoardError(f"malformed ERROR reply: {e}") from None
            text = ERROR_TEXT.get(code, "unknown error code")
            name = code.name if isinstance(code, ErrorCode) else str(code)
            raise BoardError(f"board error {int(code)} ({name}): {text}", code)
        return reply

    def ping(self) -> protocol.BoardInfo:
        """PING -> the board's INFO (protocol version, arithmetic, lanes, logit width, weights id)."""
        return self._parse(protocol.parse_info, self.transact(protocol.ping_request()))

    def classify(self, image) -> tuple[int, np.ndarray, int]:
        """One uint8 [28,28] image -> (class, logits int64 [10], accelerator cycles)."""
        return self._parse(protocol.parse_result, self.transact(protocol.classify_request(image)))

    def load_weights(self, image: bytes, weights_id: int, progress=None, retries: int = 3,
                     chunk: int = protocol.MAX_CHUNK) -> protocol.BoardInfo:
        """Load a weight image (``accelerator.weight_image()`` of an accelerator built with the
        new weights and the board's configuration) and commit it under ``weights_id``.

        Parameters
        ----------
        image : bytes
            The whole image; its length must be the board's (INFO ``image_bytes``).
        weights_id : int
            ``protocol.weights_id`` of the weights, reported by the board's INFO afterwards.
        progress : callable, optional
            Called with the number of image bytes of each chunk the board acknowledged (and
            with minus the bytes acknowledged so far when the load restarts from byte 0), so
            ``tqdm.update`` fits.
        retries : int
            How many times a chunk is sent again after an error that left it untaken (bad CRC,
            timeout, busy); a lost or corrupt reply restarts the load from byte 0 instead, as
            long as retries are left.
        chunk : int
            Image bytes per frame (at most ``protocol.MAX_CHUNK``).

        Returns
        -------
        protocol.BoardInfo
            The board's INFO after the commit (weights valid, ``weights_id`` as given).

        Raises BoardError if the board does not take the image; it then holds no valid weights
        (or, if not even the first chunk arrived, its old ones).
        """
        image = bytes(image)
        if not isinstance(weights_id, int) or not 0 <= weights_id < 1 << 32:
            raise InputError(f"weights id must be a u32, not {weights_id!r}")
        info = self.ping()
        if info.image_bytes != len(image):
            raise BoardError(f"the board expects a {info.image_bytes}-byte weight image, this one has {len(image)} "
                             f"bytes: was the board built with another configuration (--preset, --lanes)?")
        chunks = protocol.image_chunks(image, chunk)
        left = retries
        k = 0
        while k < len(chunks):
            offset, data = chunks[k]
            try:
                received, _ = self._parse(protocol.parse_loaded,
                                          self.transact(protocol.load_chunk_request(offset, data)))
            except BoardError as e:
                if left <= 0 or (e.code is not None and e.code not in RETRY_CODES):
                    raise BoardError(f"weight load failed at byte {offset} of {len(image)}: {e}", e.code) from None
                left -= 1
                if e.code is None and k:  # no trustworthy reply: did the board take the chunk?
                    if progress is not None:
                        progress(-offset)
                    k = 0
                continue
            if received != offset + len(data):
                raise BoardError(f"weight load: the board reports {received} bytes received after the chunk at "
                                 f"{offset}, expected {offset + len(data)}")
            if progress is not None:
                progress(len(data))
            k += 1
        try:
            received, valid = self._parse(protocol.parse_loaded,
                                          self.transact(protocol.load_commit_request(len(image), weights_id)))
        except BoardError as e:
            raise BoardError(f"weight load: the board refused the commit: {e}", e.code) from None
        info = self.ping()
        if not valid or not info.weights_valid or info.weights_id != weights_id:
            raise BoardError(f"weight load: after the commit the board reports weights valid={info.weights_valid}, "
                             f"id {info.weights_id:08x} (expected {weights_id:08x})")
        return info

    @staticmethod
    def _parse(parser, frame: Frame):
        try:
            return parser(frame)
        except protocol.ProtocolError as e:
            raise BoardError(f"unexpected reply: {e}") from None

    def _read_frame(self) -> Frame:
        decoder = FrameDecoder()
        total = 0
        while total < MAX_REPLY_BYTES:
            wanted = decoder.needed()
            chunk = self.port.read(wanted)
            total += len(chunk)
            frames = decoder.feed(chunk)
            if frames:
                if not frames[0].crc_ok:
                    raise BoardError(f"the board's reply ({frames[0].describe()}) has a bad CRC")
                return frames[0]
            if len(chunk) < wanted:
                what = "an incomplete reply" if total > decoder.skipped else "no reply"
                raise BoardError(f"timeout: {what} from the board ({total} bytes)")
        raise BoardError(f"no valid frame in {total} bytes from the board (wrong baud rate?)")


def serial_timeout(baud: int) -> float:
    """A read timeout that covers sending the longest request and reading its reply, with margin."""
    bits = 10 * (protocol.MAX_PAYLOAD + protocol.RESULT_LENGTH + 2 * protocol.OVERHEAD_BYTES)
    return 0.5 + 2 * bits / baud


def open_serial(path: str, baud: int, timeout: float | None = None):
    """Open a serial port (a device path, or a pyserial URL such as ``loop://``) as 8N1 at ``baud``.

    Needs pyserial (``pip install 'lenet-fpga[boards]'``). Raises BoardError if the port
    cannot be opened.
    """
    try:
        import serial
    except ImportError:
        raise InputError("talking to a board needs pyserial: pip install pyserial") from None
    if not isinstance(baud, int) or baud <= 0:
        raise InputError(f"baud rate must be a positive integer, not {baud!r}")
    try:
        return serial.serial_for_url(
            path, baudrate=baud, bytesize=serial.EIGHTBITS, parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE, timeout=serial_timeout(baud) if timeout is None else timeout,
        )
    except (serial.SerialException, ValueError) as e:
        raise BoardError(f"cannot open serial port {path}: {e}") from None
