"""What kind of file a path is, so that an input is only opened when reading it can end.

Opening a FIFO for reading blocks until something writes to it, and a character device such as
``/dev/zero`` never ends: a user who names one by mistake would see a command hang. Inputs are
checked with ``regular_file`` before they are opened; outputs (``atomic.check_output``) use
``special_kind`` to refuse what a rename would destroy.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_kind(mode: int) -> str | None:
    """``None`` for a regular file, else what the ``st_mode`` says it is (``"a FIFO (named pipe)"``)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def file_mode(path, what: str) -> int:
    """``os.stat(path).st_mode`` (through links), or an InputError in one line naming ``what``."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from None


def regular_file(path, what: str) -> Path:
    """``path`` if it is (or links to) a regular file; else an InputError in one line, without
    opening it (``what`` names the file's role: ``"model file"``)."""
    path = Path(path)
    kind = special_kind(file_mode(path, what))
    if kind is not None:
        raise InputError(f"{what} {path} is {kind}, not a regular file")
    return path
