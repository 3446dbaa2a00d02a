"""The board side of the host protocol: a UART, the request pipeline and the accelerator behind it.

    rx -> UARTReceiver -> FrameParser --verdict--> RequestHandler --pixels/weights--> accelerator
                               |                        |    ^                            |
                               +--payload bytes---------+    +--busy/receiving/done-------+
    tx <- UARTTransmitter <- ReplySerialiser <--reply--------+   <-- class/logits/cycles --+

``FrameParser`` (``boards/frame_parser.py``) turns bytes into frames and verdicts,
``RequestHandler`` (``boards/request_handler.py``) carries out each request and keeps the
weights' state, ``ReplySerialiser`` (``boards/reply_serialiser.py``) sends the one reply of
each. This module only wires them to the UART and the accelerator, and takes every size from
the accelerator's interface (``hdl.accelerator.Accelerator``): the network's image side and
class count, the logits' width, the weight image, the multipliers, the design, whether the
weights are in the bitstream. ``docs/protocol.md`` is the behaviour on the wire.

The accelerator (and the skid buffers in front of it) sit under a reset the request handler
pulses when its watchdog fires, so a hung accelerator is brought back without a board reset.
"""


from amaranth.hdl import Module, ResetInserter
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..hdl.accelerator import Accelerator
from . import protocol
from .frame_parser import FrameParser
from .reply_serialiser import ReplySerialiser
from .request_handler import RequestHandler
from .uart import FRAME_BITS, UARTReceiver, UARTTransmitter, check_divisor

DEFAULT_WATCHDOG_CYCLES = 1 << 20  # 42 ms at 25 MHz; the shipped network takes 9,801 cycles


def _integer(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    return value


class UARTLink(wiring.Component):
    """A LeNet-family accelerator served over a serial line with the ``protocol`` frames.

    Parameters
    ----------
    accelerator : hdl.accelerator.Accelerator
        It becomes a submodule.
    divisor : int
        Clock cycles per UART bit (``uart.divisor_for``).
    timeout_cycles : int
        An incomplete frame is dropped (with ERROR TIMEOUT) when no byte came for this many
        cycles; at least two byte times (``20 * divisor``).
    weights_id : int
        ``protocol.weights_id`` of the weights in the bitstream, reported in INFO until a load
        (0: not given; ignored when the accelerator has no weights in its bitstream).
    clock_hz : int
        The design's clock, reported in INFO so a host can turn BENCH's cycles into time
        (0: not given).
    frame_cycles : int, optional
        A frame not complete this many cycles after its SYNC is dropped with ERROR TIMEOUT;
        at least the line time of the longest request. Default: twice that, plus
        ``timeout_cycles``.
    watchdog_cycles : int, optional
        How long a request may wait for the accelerator (to start, to take pixels or weight
        bytes, to finish) before the link resets it and answers ERROR HUNG. Default
        ``DEFAULT_WATCHDOG_CYCLES``; at least four times the accelerator's cycles per image
        when it has a cycle model.

    Attributes
    ----------
    rx : In(1)
        Serial line from the host, idle high.
    tx : Out(1)
        Serial line to the host, idle high.
    idle : Out(1)
        Between requests: hunting for a frame, nothing to serve or send (for testbenches).
    info : protocol.BoardInfo
        The INFO payload this link answers PING with after reset.
    sizes : protocol.FrameSizes
        The frame sizes of the accelerator's network.
    weight_bytes : int
        Bytes of the accelerator's weight image (what a load must send).
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    idle: Out(1)

    def __init__(self, accelerator, divisor: int, timeout_cycles: int, *, weights_id: int = 0, clock_hz: int = 0,
                 frame_cycles: int | None = None, watchdog_cycles: int | None = None):
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"accelerator must be an hdl.accelerator.Accelerator, not {type(accelerator).__name__}")
        network = accelerator.network
        try:
            self.sizes = protocol.FrameSizes(network.image_size, network.classes, network.input_channels)
        except ValueError as e:
            raise ValueError(f"the network {network.spec}: {e}") from None
        self._divisor = check_divisor(divisor)
        self._timeout = _integer("timeout_cycles", timeout_cycles)
        byte_cycles = FRAME_BITS * divisor
        if timeout_cycles < 2 * byte_cycles:
            raise ValueError(f"timeout_cycles must cover two byte times ({2 * byte_cycles} cycles "
                             f"at {divisor} cycles per bit), not {timeout_cycles}")
        longest = (self.sizes.max_request + protocol.OVERHEAD_BYTES) * byte_cycles
        self._frame_cycles = 2 * longest + timeout_cycles if frame_cycles is None else _integer("frame_cycles", frame_cycles)
        if self._frame_cycles < longest:
            raise ValueError(f"frame_cycles must cover the longest request's line time ({longest} cycles), "
                             f"not {self._frame_cycles}")
        self._watchdog = DEFAULT_WATCHDOG_CYCLES if watchdog_cycles is None else _integer("watchdog_cycles", watchdog_cycles)
        model = accelerator.cycles_per_image
        least = max(2, 4 * model if model else 2 * self.sizes.pixels)
        if self._watchdog < least:
            raise ValueError(f"watchdog_cycles must be at least {least} (four images of this accelerator, or two "
                             f"cycles per pixel), not {self._watchdog}")
        logit_bits = accelerator.logit_shape.width
        if logit_bits > 8 * protocol.LOGIT_BYTES or len(accelerator.cycles) > 8 * protocol.CYCLES_BYTES:
            raise ValueError(f"{logit_bits}-bit logits or a {len(accelerator.cycles)}-bit cycle counter "
                             f"do not fit the RESULT frame (32 bits each)")
        self.accelerator = accelerator
        self.weight_bytes = len(accelerator.weight_image())
        if not 1 <= self.weight_bytes < 1 << 32:
            raise ValueError(f"a weight image of {self.weight_bytes} bytes cannot be loaded")
        in_bitstream = bool(accelerator.weights_in_bitstream)
        self.info = protocol.BoardInfo(
            protocol.VERSION, accelerator.arithmetic, accelerator.design, logit_bits,
            weights_id if in_bitstream else 0, in_bitstream, in_bitstream, self.weight_bytes,
            network.image_size, network.classes, accelerator.multipliers, clock_hz=_integer("clock_hz", clock_hz),
            weights_fixed=not accelerator.weights_loadable, channels=network.input_channels)
        self.info.encode()  # every field fits
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor

    @property
    def timeout_cycles(self) -> int:
        return self._timeout

    @property
    def frame_cycles(self) -> int:
        return self._frame_cycles

    @property
    def watchdog_cycles(self) -> int:
        return self._watchdog

    def elaborate(self, platform):
        m = Module()
        acc, info = self.accelerator, self.info
        m.submodules.receiver = receiver = UARTReceiver(self._divisor)
        m.submodules.transmitter = transmitter = UARTTransmitter(self._divisor)
        m.submodules.parser = parser = FrameParser(self.sizes.max_request, self._timeout, self._frame_cycles)
        m.submodules.handler = handler = RequestHandler(acc.signature, self.weight_bytes, info.weights_in_bitstream,
                                                        info.weights_id, self._watchdog,
                                                        weights_loadable=not info.weights_fixed)
        m.submodules.serialiser = serialiser = ReplySerialiser(info, acc.logit_shape)
        m.submodules.accelerator = ResetInserter(handler.accelerator_reset)(acc)

        m.d.comb += [receiver.rx.eq(self.rx), self.tx.eq(transmitter.tx)]
        wiring.connect(m, receiver.o, parser.i)
        wiring.connect(m, parser.payload, handler.payload)
        wiring.connect(m, parser.verdict, handler.verdict)
        m.d.comb += [handler.header.eq(parser.header), handler.dropped.eq(parser.dropped)]

        wiring.connect(m, handler.accelerator, acc)

        wiring.connect(m, handler.reply, serialiser.i)
        wiring.connect(m, serialiser.o, transmitter.i)
        m.d.comb += [serialiser.klass.eq(acc.klass), serialiser.logits.eq(acc.logits), serialiser.cycles.eq(acc.cycles),
                     serialiser.weights_id.eq(handler.weights_id), serialiser.weights_flags.eq(handler.weights_flags),
                     serialiser.load_received.eq(handler.load_received),
                     serialiser.image_received.eq(handler.image_received),
                     serialiser.bench_runs.eq(handler.bench_runs), serialiser.bench_first.eq(handler.bench_first),
                     serialiser.bench_total.eq(handler.bench_total)]
        m.d.comb += self.idle.eq(parser.hunting & handler.idle & transmitter.i.ready)
        return m
