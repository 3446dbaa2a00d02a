"""Reading user-supplied ``.npz`` files, where every kind of damage is an InputError."""

from __future__ import annotations

import tokenize
import zipfile

import numpy as np

from .errors import InputError


def read_npz(path, what: str) -> dict[str, np.ndarray]:
    """All arrays of ``path`` (no pickles); ``what`` names the file's role in the error."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, tokenize.TokenError) as e:
        # numpy re-parses a damaged .npy header with Python's tokenizer, hence TokenError
        raise InputError(f"cannot read {what} {path}: {e}") from None
