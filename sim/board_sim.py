"""``lenet-fpga board-sim``: a board without a board. The board's own design (the ``UARTLink`` and
the accelerator ``config.build(weights)`` of the ULX3S or the iCEBreaker) runs in Verilator
behind a pseudo-terminal, so ``lenet-fpga board-run --port /dev/pts/N`` talks to it through
pyserial exactly as to a real board.

The bridge between the pseudo-terminal and the simulated UART moves whole bytes, never bits:
``BoardSimHarness`` puts an 8N1 transmitter and receiver of the harness's own (the board's
``UARTTransmitter``/``UARTReceiver``, at the same divisor) on the link's ``rx`` and ``tx`` pins,
so every bit on the simulated wire is made and sampled in RTL. Python (``sim/tb_board.py``)
hands the transmitter up to ``BURST_BYTES`` bytes in one wide write and reads what the receiver
collected from a ring of ``RING_BYTES`` bytes, waking once per burst or every ``RING_BYTES / 4``
byte times, not once per clock or per bit, and it sleeps in ``select`` while the board is idle
and the host silent.

cocotbext-uart was not used: its UART source and sink are Python coroutines that wake on every
bit of every byte, the very cost this bridge avoids, and the repository's own bit-level model
(``sim/serial_line.SerialLine``, used where the bits themselves are under test) has the same cost.
The RTL pair here is the board's own UART, already tested bit by bit in ``test_uart_rtl.py``.

Line noise (``flip``, ``drop``) is added in the bridge, per byte and per direction, from a
seeded random sequence: a flipped byte has one random bit inverted, a dropped byte never
arrives.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..boards import protocol
from ..boards.link import UARTLink
from ..boards.uart import FRAME_BITS, UARTReceiver, UARTTransmitter, check_divisor
from ..model.errors import InputError

TOPLEVEL = "board_sim"
BURST_BYTES = 64  # host -> board bytes per write into the simulator
RING_BYTES = 64  # board -> host bytes the harness holds until Python reads them
DEFAULT_DIVISOR = 4  # clock cycles per bit in the simulation: the fewest the UART takes (the ULX3S has 217)
TIMEOUT_BYTES = 64  # the simulated board's gap timeout, in byte times


class BoardSimHarness(wiring.Component):
    """The board's ``UARTLink`` between a byte-burst input and a byte ring (see the module docstring).

    Parameters
    ----------
    link : UARTLink

    Attributes
    ----------
    host_bytes : In(8 * BURST_BYTES)
        Bytes for the board, byte k in bits 8k..8k+7.
    host_count : In(range(BURST_BYTES + 1))
        How many of them to send.
    host_toggle : In(1)
        Changing it hands ``host_bytes``/``host_count`` over (taken only while ``host_free``).
    host_free : Out(1)
        The last burst has been handed to the transmitter: a new one may be written.
    board_ring : Out(8 * RING_BYTES)
        Bytes from the board: byte n of the stream at byte ``n % RING_BYTES``.
    board_total : Out(16)
        Bytes from the board so far (modulo 65,536).
    link_idle : Out(1)
        The link's ``idle``, and the harness's transmitter idle too.
    """

    def __init__(self, link: UARTLink):
        if not isinstance(link, UARTLink):
            raise TypeError(f"link must be a UARTLink, not {type(link).__name__}")
        self.link = link
        super().__init__({
            "host_bytes": In(8 * BURST_BYTES),
            "host_count": In(range(BURST_BYTES + 1)),
            "host_toggle": In(1),
            "host_free": Out(1),
            "board_ring": Out(8 * RING_BYTES),
            "board_total": Out(16),
            "link_idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.host_tx = host_tx = UARTTransmitter(link.divisor)
        m.submodules.host_rx = host_rx = UARTReceiver(link.divisor)
        m.d.comb += [link.rx.eq(host_tx.tx), host_rx.rx.eq(link.tx)]

        burst = Signal(8 * BURST_BYTES)
        left = Signal(range(BURST_BYTES + 1))
        taken = Signal()  # the value of host_toggle last taken
        m.d.comb += [host_tx.i.payload.eq(burst[:8]), host_tx.i.valid.eq(left != 0),
                     self.host_free.eq((left == 0) & (taken == self.host_toggle))]
        with m.If(host_tx.i.valid & host_tx.i.ready):
            m.d.sync += [burst.eq(burst[8:]), left.eq(left - 1)]  # a slice: see sim/harness.py
        with m.Elif((left == 0) & (taken != self.host_toggle)):
            m.d.sync += [burst.eq(self.host_bytes), left.eq(self.host_count), taken.eq(self.host_toggle)]

        index = Signal(range(RING_BYTES))
        m.d.comb += host_rx.o.ready.eq(1)
        with m.If(host_rx.o.valid):
            m.d.sync += [self.board_ring.word_select(index, 8).eq(host_rx.o.payload), index.eq(index + 1),
                         self.board_total.eq(self.board_total + 1)]
        m.d.comb += self.link_idle.eq(link.idle & host_tx.i.ready & (left == 0))
        return m


def simulated_link(weights, config, divisor: int = DEFAULT_DIVISOR, clock_hz: float = 0) -> UARTLink:
    """The link and accelerator a board's bitstream holds (``boards/top.py``), at ``divisor``
    clock cycles per bit, with a gap timeout of ``TIMEOUT_BYTES`` byte times. INFO reports
    ``clock_hz``, the simulated board's nominal clock (the simulation itself has none)."""
    check_divisor(divisor)
    accelerator = config.build(weights)
    weights_id = protocol.weights_id(weights.params) if accelerator.weights_in_bitstream else 0
    return UARTLink(accelerator, divisor, TIMEOUT_BYTES * FRAME_BITS * divisor, weights_id=weights_id,
                    clock_hz=round(clock_hz))


@dataclass
class LineNoise:
    """What the bridge does to each byte, each way: ``flip`` the fraction that get one bit
    inverted, ``drop`` the fraction that are lost; ``seed`` for the random sequence."""

    flip: float = 0.0
    drop: float = 0.0
    seed: int = 1

    def __post_init__(self):
        for name in ("flip", "drop"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise InputError(f"--{name} must be a fraction of the bytes between 0 and 1, not {value}")
        if self.flip + self.drop > 1:
            raise InputError(f"--flip {self.flip} and --drop {self.drop} add up to more than all the bytes")

    def describe(self) -> str:
        if not self.flip and not self.drop:
            return "a clean line"
        return f"{self.flip:.2%} of bytes with a bit flipped and {self.drop:.2%} dropped, each way (seed {self.seed})"


class BoardSim:
    """The simulated board, running in a thread (the simulator is a child process): a context
    manager whose ``port`` is the pseudo-terminal's path once it is serving.

    Parameters
    ----------
    link : UARTLink
        ``simulated_link(...)``.
    noise : LineNoise
    simulator : str
        ``verilator`` (default) or ``icarus`` (much slower).
    build_root : path, optional
        Where the simulator build is cached (default build/sim).
    alias : path, optional
        A symbolic link to the port to create (like socat's ``link=``).
    """

    def __init__(self, link: UARTLink, noise: LineNoise = LineNoise(), simulator: str = "verilator",
                 build_root=None, alias=None):
        self.link, self.noise, self.simulator = link, noise, simulator
        self.build_root = build_root
        self.alias = None if alias is None else Path(alias)
        self.port: str | None = None
        self.stats: dict = {}
        self._folder = tempfile.TemporaryDirectory(prefix="lenet-board-sim-")
        self._port_file = Path(self._folder.name) / "port"
        self._stop_file = Path(self._folder.name) / "stop"
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        # Set when the simulation's thread ends. Waited on instead of Thread.join: a join cut
        # short by Ctrl-C or SIGTERM marks the thread finished while it still runs (CPython
        # 3.11's bpo-45274 handling), and the next join would return at once, before the
        # simulation had removed its files.
        self._done = threading.Event()

    def _run(self, verilog: str) -> None:
        from . import runner

        try:
            data = {"divisor": self.link.divisor, "flip": self.noise.flip, "drop": self.noise.drop,
                    "seed": self.noise.seed, "port_file": str(self._port_file), "stop_file": str(self._stop_file),
                    "alias": str(self.alias or ""), "parent": os.getpid(),
                    "burst_bytes": BURST_BYTES, "ring_bytes": RING_BYTES}
            result = runner.run(verilog, TOPLEVEL, "lenet_fpga.sim.tb_board", data, simulator=self.simulator,
                                build_root=self.build_root)
            self.stats = {k: int(v) for k, v in result.outputs.items()}
        except BaseException as e:  # shown by start() or stop()
            self._error = e
        finally:
            self._done.set()

    def start(self, timeout: float = 1800.0) -> str:
        """Build (cached) and start the simulation; return the port once it serves."""
        from amaranth.back import verilog

        from . import runner

        runner.prepare_simulator(self.simulator)
        text = verilog.convert(BoardSimHarness(self.link), name=TOPLEVEL)
        self._thread = threading.Thread(target=self._run, args=(text,), name="board-sim", daemon=True)
        self._thread.start()
        started = time.monotonic()
        while not self._port_file.exists():
            if self._done.is_set():
                raise InputError(f"the simulated board did not start: {self._error}")
            if time.monotonic() - started > timeout:
                self.stop()
                raise InputError(f"the simulated board did not start within {timeout:.0f} s")
            time.sleep(0.05)
        self.port = self._port_file.read_text().strip()
        return self.port

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the simulation to finish and wait for it."""
        self._stop_file.touch()
        if self._thread is not None:
            self._done.wait(timeout)
        self._folder.cleanup()

    def wait(self) -> None:
        """Block until the simulation ends (it ends when stopped, or when this process dies)."""
        while self._thread is not None and not self._done.wait(0.5):
            pass
        if self._error is not None and not self._stop_file.exists():
            raise InputError(f"the simulated board stopped: {self._error}")

    def __enter__(self) -> "BoardSim":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def terminate_as_interrupt():
    """While inside, SIGTERM (``kill``, a service manager, a test harness stopping the process)
    raises KeyboardInterrupt in the main thread as Ctrl-C does, so the same clean-up runs: the
    simulation is told to stop, its data files leave the build cache, its temporary folder goes.
    SIGTERM's default action would end the process on the spot and leave all three behind."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
