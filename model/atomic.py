"""Write files all-or-nothing: a failed or interrupted write never leaves half a file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import InputError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    Write through an open file object: np.savez given a path would append ``.npz`` to it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; the result should look like any other file
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)


def check_output(path, what: str = "output") -> Path:
    """Refuse, before any work, an output path that cannot be written: a folder, a path under a
    file, a folder that is not writable. Leaves no file and no folder behind."""
    path = Path(path)
    if str(path) == "" or path.name in ("", ".", ".."):
        raise InputError(f"{what}: {str(path)!r} is not a file name")
    if path.is_dir():
        raise InputError(f"{what}: {path} is a folder, not a file")
    parent = path.parent
    while not parent.exists():  # the first folder that exists must be writable (we may create the rest)
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{what}: cannot write {path}: {parent} is not a folder")
    try:  # a real probe: permissions alone do not tell (root, read-only mounts, /proc)
        fd, probe = tempfile.mkstemp(prefix=".lenet-fpga-probe.", dir=parent)
    except OSError:
        raise InputError(f"{what}: cannot write {path}: {parent} is not writable") from None
    os.close(fd)
    os.unlink(probe)
    return path
