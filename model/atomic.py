"""Write files all-or-nothing: a failed or interrupted write never leaves half a file behind.

An output is written to a temporary file beside it, then renamed over it. A rename replaces the
directory entry, whatever it was, so what may stand at an output path is decided here, once:

* nothing, or a regular file: replaced;
* a symlink to a regular file (or to where one can be made beside an existing file): written
  through, as ``>`` in a shell would: the link's target is replaced atomically and the link stays;
* a dangling symlink: refused: following it would create a file wherever the link points, the
  classic way to make another user's program write where it should not;
* a device node, a FIFO or a socket: refused in one line. Writing into one in place cannot be
  all-or-nothing (a FIFO's reader would see half a file from a failed run) and renaming over one
  would destroy it (as root, ``-o /dev/null`` would replace the system's own); to discard an
  output, write it to a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from .errors import InputError
from .files import special_kind


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    Write through an open file object: np.savez given a path would append ``.npz`` to it.
    """
    path = _write_target(Path(path), f"cannot write {path}")
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
    parent = _write_target(path, what).parent
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


def _write_target(path: Path, prefix: str) -> Path:
    """The file a write to ``path`` replaces: ``path`` itself, or the regular file a symlink at
    ``path`` leads to; refuses what must not be replaced (see the module's docstring)."""
    try:
        mode = os.lstat(path).st_mode
        if not stat.S_ISLNK(mode):
            kind, target = special_kind(mode), path
        else:
            target = Path(os.path.realpath(path))
            try:
                kind = special_kind(os.stat(target).st_mode)
            except (FileNotFoundError, NotADirectoryError):
                raise InputError(f"{prefix}: {path} is a symlink to {target}, which does not exist (a link is "
                                 f"followed only to an existing file)") from None
    except (FileNotFoundError, NotADirectoryError):  # nothing there: the callers' own checks say why not
        return path
    except OSError as e:  # a symlink loop, no permission
        raise InputError(f"{prefix}: cannot look at {path}: {e.strerror or e}") from None
    if kind == "a folder":
        raise InputError(f"{prefix}: {path} is a folder, not a file")
    if kind is not None:
        raise InputError(f"{prefix}: {path} is {kind}; outputs are written whole as regular files, never into "
                         f"or over a special file")
    return target
