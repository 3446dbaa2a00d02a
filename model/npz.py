"""Reading user-supplied ``.npz`` files, where every kind of damage is an InputError."""

from __future__ import annotations

import tokenize
import zipfile
import zlib

import numpy as np

from .errors import InputError


def read_npz(path, what: str) -> dict[str, np.ndarray]:
    """All arrays of ``path`` (no pickles); ``what`` names the file's role in the error."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, tokenize.TokenError, zlib.error,
            NotImplementedError, RuntimeError, KeyError) as e:
        # numpy re-parses a damaged .npy header with Python's tokenizer, hence TokenError; a
        # compressed archive's damaged deflate stream raises zlib.error when the array is read;
        # a flipped flag bit makes zipfile see an encrypted member (RuntimeError) or an unknown
        # compression method (NotImplementedError)
        raise InputError(f"cannot read {what} {path}: {e}") from None
