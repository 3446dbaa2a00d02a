"""Progress of long work: a tqdm bar on a terminal, a few plain lines anywhere else.

tqdm redraws its bar with a carriage return several times a second. On a terminal that is one
line; in a log file or a pipe every redraw stays, and a one-point ``explore`` left a 28 KB log of
them. ``progress`` therefore gives tqdm only when the stream is a terminal; otherwise a
``PlainProgress`` that writes whole lines, at most one every ``PLAIN_INTERVAL_S`` seconds and a
last one when the work ends (``disable``: nothing at all). Both take the calls the flow makes of
a tqdm bar: iteration, ``update``, ``set_postfix_str``, ``set_postfix``, ``set_description``,
``reset``, ``refresh``, ``close`` and ``with``.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

PLAIN_INTERVAL_S = 10.0  # a plain line at most this often (and the last one)


def progress(iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it",
             unit_scale: bool = False, disable: bool = False, leave: bool = True, file=None):
    """A progress bar over ``iterable`` or up to ``total``, written to ``file`` (standard error
    by default): tqdm's own if ``file`` is a terminal, else a ``PlainProgress``."""
    file = sys.stderr if file is None else file
    if _is_terminal(file):
        return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, disable=disable,
                    leave=leave, file=file)
    return PlainProgress(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, disable=disable,
                         file=file)


def _is_terminal(file) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class PlainProgress:
    """Progress as whole lines (``desc: n/total unit, elapsed s, postfix``) for a file or pipe.

    A line is written when the count or postfix has changed and ``interval_s`` has passed since the
    last one, and once more at ``close`` (or when the iterable runs out) if anything is unsaid.
    ``clock`` is where the time comes from (seconds)."""

    def __init__(self, iterable=None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 unit_scale: bool = False, disable: bool = False, file=None,
                 interval_s: float = PLAIN_INTERVAL_S, clock=time.monotonic):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit, self.unit_scale = total, desc, unit, unit_scale
        self.disable, self.file, self.interval_s, self.clock = disable, file, interval_s, clock
        self.n = 0
        self.postfix = ""
        self.started = self.last_line = clock()
        self.unsaid = False
        self.closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n: int = 1) -> None:
        self.n += n
        self._changed()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)
        self._changed()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.set_postfix_str(", ".join(f"{key}={value}" for key, value in items.items()), refresh)

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc
        self._changed()

    def reset(self, total: int | None = None) -> None:
        """Count from 0 again (and from now: tqdm's rate starts over too)."""
        self.n, self.started = 0, self.clock()
        if total is not None:
            self.total = total
        self._changed()

    def refresh(self) -> None:
        """A line if one is due (a long wait with no news still says how long it has been)."""
        self.unsaid = True
        self._changed()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.unsaid:
            self._write()

    def _changed(self) -> None:
        self.unsaid = True
        if not self.closed and self.clock() - self.last_line >= self.interval_s:
            self._write()

    def _count(self, n) -> str:
        return tqdm.format_sizeof(n) if self.unit_scale else f"{n:,}"

    def _write(self) -> None:
        self.last_line, self.unsaid = self.clock(), False
        if self.disable or self.file is None:
            return
        done = self._count(self.n) + (f"/{self._count(self.total)}" if self.total else "")
        text = f"{self.desc}: " if self.desc else ""
        text += f"{done} {self.unit}, {self.last_line - self.started:.0f} s"
        if self.postfix:
            text += f", {self.postfix}"
        self.file.write(text + "\n")
        self.file.flush()
