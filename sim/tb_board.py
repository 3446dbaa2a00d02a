"""cocotb side of ``lenet-fpga board-sim`` (``sim/board_sim.py``): the bridge between a
pseudo-terminal and ``BoardSimHarness``, whole bytes at a time.

``tb_data``: ``divisor``, ``flip``, ``drop``, ``seed`` (line noise), ``port_file`` (where the
pseudo-terminal's path is written once it serves), ``stop_file`` (its appearance ends the
simulation), ``alias`` (a symbolic link to create, or ""), ``parent`` (the process that started
the simulation; if it goes, the simulation ends), ``burst_bytes``, ``ring_bytes`` (the
harness's sizes). Hands back (``tb_output``) the bytes each way and the bytes flipped and
dropped.
"""

import errno
import os
import random
import select
import tty

import cocotb
from cocotb.triggers import First, RisingEdge, Timer

from .runner import tb_data, tb_output
from .streams import start_clock_and_reset

CLOCK_NS = 10
IDLE_SLEEP = 0.02  # seconds the simulation waits for the host when there is nothing to do


class Noise:
    """One bit of a byte flipped with probability ``flip``, the byte dropped with ``drop``."""

    def __init__(self, flip: float, drop: float, rng: random.Random):
        self.flip, self.drop, self.rng = flip, drop, rng
        self.flipped = self.dropped = 0

    def __call__(self, data: bytes) -> bytes:
        if not self.flip and not self.drop:
            return data
        out = bytearray()
        for byte in data:
            r = self.rng.random()
            if r < self.drop:
                self.dropped += 1
            elif r < self.drop + self.flip:
                self.flipped += 1
                out.append(byte ^ (1 << self.rng.randrange(8)))
            else:
                out.append(byte)
        return bytes(out)


def open_pty(alias: str) -> tuple[int, int, str]:
    """A pseudo-terminal in raw mode (no echo, no line editing); the master end non-blocking.
    The simulation keeps the slave end open too, so a host closing its end does not end ours."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    path = os.ttyname(slave)
    if alias:
        if os.path.islink(alias):
            os.unlink(alias)
        os.symlink(path, alias)
    return master, slave, path


@cocotb.test()
async def board_sim_serve(dut):
    """Serve the host until the stop file appears or the parent process is gone."""
    data = tb_data()
    divisor, burst, ring = int(data["divisor"]), int(data["burst_bytes"]), int(data["ring_bytes"])
    rng = random.Random(int(data["seed"]))
    to_board = Noise(float(data["flip"]), float(data["drop"]), rng)
    to_host = Noise(float(data["flip"]), float(data["drop"]), rng)
    stop_file, parent, alias = str(data["stop_file"]), int(data["parent"]), str(data["alias"])

    dut.host_bytes.value = 0
    dut.host_count.value = 0
    dut.host_toggle.value = 0
    await start_clock_and_reset(dut)
    master, slave, path = open_pty(alias)
    with open(str(data["port_file"]) + ".tmp", "w") as f:
        f.write(path)
    os.replace(str(data["port_file"]) + ".tmp", str(data["port_file"]))

    # Wake at least four times per ring's worth of bytes, so none is overwritten unread.
    period_ns = ring // 4 * 10 * divisor * CLOCK_NS
    inbound, outbound = bytearray(), bytearray()
    seen = 0
    toggle = 0
    sent = received = 0
    try:
        while not os.path.exists(stop_file) and os.getppid() == parent:
            try:
                chunk = os.read(master, 4096)
            except BlockingIOError:
                chunk = b""
            except OSError as e:  # EIO: no slave end open (cannot happen while we hold one)
                if e.errno != errno.EIO:
                    raise
                chunk = b""
            sent += len(chunk)
            inbound += to_board(chunk)
            if inbound and dut.host_free.value:
                piece = bytes(inbound[:burst])
                del inbound[:burst]
                dut.host_bytes.value = int.from_bytes(piece, "little")
                dut.host_count.value = len(piece)
                toggle ^= 1
                dut.host_toggle.value = toggle

            total = int(dut.board_total.value)
            new = (total - seen) & 0xFFFF
            if new:
                assert new <= ring, f"{new} bytes from the board since the last look, the ring holds {ring}"
                data_ring = int(dut.board_ring.value).to_bytes(ring, "little")
                reply = bytes(data_ring[(seen + k) % ring] for k in range(new))
                seen = total
                received += len(reply)
                outbound += to_host(reply)
            if outbound:
                try:
                    written = os.write(master, bytes(outbound))
                    del outbound[:written]
                except BlockingIOError:
                    pass

            idle = not inbound and not new and not chunk and bool(dut.link_idle.value)
            if idle:
                # Nothing in flight: wait for the host in real time, not in simulated cycles.
                select.select([master], [], [], IDLE_SLEEP)
            if inbound and not dut.host_free.value:
                await First(RisingEdge(dut.host_free), Timer(period_ns, "ns"))
            else:
                await Timer(period_ns, "ns")
    finally:
        os.close(master)
        os.close(slave)
        if alias and os.path.islink(alias):
            os.unlink(alias)
        tb_output(bytes_to_board=sent, bytes_to_host=received, flipped=to_board.flipped + to_host.flipped,
                  dropped=to_board.dropped + to_host.dropped)
