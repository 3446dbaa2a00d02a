"""Reading the JSON and TOML documents a user hands the tool (manifests, grids, bench outputs,
network files): every way a document can fail to be read becomes one ``InputError`` naming the
file, never a traceback.

Besides a missing or unreadable file and bad syntax, Python's own parsers raise ``ValueError``
for an integer literal of more than 4300 digits (the int-string conversion limit, a guard
against quadratic-time parsing) and ``RecursionError`` for deeply nested arrays; neither is a
``JSONDecodeError``, so a reader that catches only that shows a traceback.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from .errors import InputError
from .files import special_kind


def _parse(parse, text: str, where: str, kind: str):
    try:
        return parse(text)
    except RecursionError:
        raise InputError(f"{where} is nested too deeply to be read as {kind}") from None
    except ValueError as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors, as is the digit limit
        reason = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise InputError(f"{where} cannot be read: it is not valid {kind} ({reason})") from None


def parse_json(text: str, where: str):
    """``text`` as JSON; ``where`` names it in the error (a file, an option)."""
    return _parse(json.loads, text, where, "JSON")


def read_text(path, what: str = "", kind: str = "text") -> str:
    """The UTF-8 text of ``path``; ``what`` (e.g. "weights manifest") begins the error, ``kind``
    (e.g. "JSON") is what it was to be."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    try:
        special = special_kind(os.stat(path).st_mode)
    except OSError:
        special = None  # the read below says why it cannot be read
    if special not in (None, "a folder"):  # a FIFO or a device: reading it might never end
        raise InputError(f"{label} is {special}, not a regular file")
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label} is a folder, not a file") from None
    except PermissionError:
        raise InputError(f"{label} cannot be read: permission denied") from None
    except OSError as e:
        raise InputError(f"{label} cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(f"{label} cannot be read: it is not valid {kind} (not UTF-8 text)") from None


def read_json(path, what: str = ""):
    """The JSON document in ``path`` (any JSON value: the caller checks its shape)."""
    path = Path(path)
    return parse_json(read_text(path, what, "JSON"), f"{what} {path}" if what else str(path))


def read_toml(path, what: str = "") -> dict:
    """The TOML document in ``path``."""
    path = Path(path)
    return _parse(tomllib.loads, read_text(path, what, "TOML"), f"{what} {path}" if what else str(path), "TOML")
