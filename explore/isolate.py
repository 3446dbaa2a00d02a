"""Run a tool stage in a process group of its own, and stop the whole group.

A stage starts processes of its own (a Verilator build and simulation, Yosys, nextpnr), and
stopping only the Python process that started them would leave them running, for hours in
nextpnr's case. So the stage runs as the leader of a new session (``start_new_session``: a new
process group too), and a time-out, a cancellation or an error of the caller kills the group.

The group is killed before its leader is reaped (``waitid`` with ``WNOWAIT``): while the leader is
a zombie its process-group ID cannot be taken by another process, so the signal reaches only the
stage's own processes. When the caller itself dies (a worker killed), nothing is left to do that:
``watch_parent``, called in the stage process, kills the group when its parent goes away.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.2
# After SIGTERM, how long the group has to finish before SIGKILL.
GRACE_S = 3.0


@dataclass(frozen=True)
class Outcome:
    status: str  # "done" (exit 0), "failed" (other exit), "timeout", "cancelled"
    returncode: int | None
    seconds: float
    pgid: int


def _exited(pid: int) -> bool:
    """Has ``pid`` (our child) exited? Does not reap it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop_group(process: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """SIGTERM the group of ``process`` (its leader), SIGKILL it after ``grace_s``, reap the leader."""
    pgid = process.pid
    _kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not _exited(process.pid):
        time.sleep(0.05)
    _kill_group(pgid, signal.SIGKILL)  # members that outlive the leader too
    process.wait()


def run_in_group(argv: list[str], *, cwd, log: Path, env: dict | None = None, time_limit_s: float | None = None,
                 cancelled=lambda: False) -> Outcome:
    """Run ``argv`` as a new session, its output to ``log``; wait for it, at most ``time_limit_s``,
    and stop its whole group on a time-out, when ``cancelled()`` turns true (asked every
    ``POLL_S``), or when the caller is interrupted. The group is gone when this returns."""
    started = time.monotonic()
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        status = None
        while not _exited(process.pid):
            if time_limit_s is not None and time.monotonic() - started > time_limit_s:
                status = "timeout"
                break
            if cancelled():
                status = "cancelled"
                break
            time.sleep(POLL_S)
    except BaseException:
        stop_group(process)
        raise
    if status is not None:
        stop_group(process)
        return Outcome(status, None, time.monotonic() - started, process.pid)
    _kill_group(process.pid, signal.SIGKILL)  # anything the stage left behind (its leader is a zombie)
    returncode = process.wait()
    return Outcome("done" if returncode == 0 else "failed", returncode, time.monotonic() - started, process.pid)


def watch_parent(interval_s: float = 1.0) -> None:
    """In a stage process: kill our own process group as soon as our parent is gone (a worker
    that was killed cannot stop its stages; they stop themselves)."""
    if os.getpgrp() != os.getpid():
        return  # not the leader of a group of our own (run by hand): nothing of ours to kill
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(interval_s)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
