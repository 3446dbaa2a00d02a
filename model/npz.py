"""Reading user-supplied ``.npz`` files, where every kind of damage is an InputError.

A zip member's data is inflated only after its declared size has been checked: against the
array the caller expects (``limits``: the most bytes each named array can take) and against a
bound for the whole file. Without that, a 1 MB archive of zeros declaring a gigabyte took a
gigabyte of memory before it was refused (deflate compresses zeros about 1,000 to 1). Each
member's ``.npy`` header is read too (a few hundred bytes of inflation): numpy allocates the
array the header claims before reading it, so the claim must match the member's size.
"""

from __future__ import annotations

import math
import tokenize
import zipfile
import zlib

import numpy as np

from .errors import InputError

MAX_BYTES = 256 * 2**20  # any file read whole: 340,000 MNIST-sized images; the weights are far smaller
HEADER_BYTES = 4096  # room for an .npy header beside its data (numpy writes 128 bytes for these arrays)


def read_npz(path, what: str, limits: dict[str, int] | None = None, max_bytes: int = MAX_BYTES) -> dict[str, np.ndarray]:
    """All arrays of ``path`` (no pickles); ``what`` names the file's role in the error.
    ``limits`` maps the names of the arrays expected to the most data bytes each may hold (an
    array not named may hold none); ``max_bytes`` bounds the whole file, inflated."""
    try:
        with zipfile.ZipFile(path) as archive:
            _check_sizes(archive, f"cannot read {what} {path}", limits, max_bytes)
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, tokenize.TokenError, zlib.error,
            NotImplementedError, RuntimeError, KeyError, SyntaxError) as e:
        # numpy re-parses a damaged .npy header with Python's tokenizer, hence TokenError; a
        # compressed archive's damaged deflate stream raises zlib.error when the array is read;
        # a flipped flag bit makes zipfile see an encrypted member (RuntimeError) or an unknown
        # compression method (NotImplementedError)
        raise InputError(f"cannot read {what} {path}: {e}") from None


def _check_sizes(archive: zipfile.ZipFile, where: str, limits: dict[str, int] | None, max_bytes: int) -> None:
    total = 0
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        limit = max_bytes if limits is None else limits.get(name, 0) + HEADER_BYTES
        total += info.file_size
        if info.file_size > limit or total > max_bytes:
            raise InputError(f"{where}: {name} declares {info.file_size:,} bytes once inflated, more than the "
                             f"{min(limit, max_bytes):,} it may hold (a damaged or hostile file); nothing was inflated")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(member)
            claimed = math.prod(shape) * dtype.itemsize + member.tell()
        if not dtype.hasobject and claimed != info.file_size:  # object arrays are refused by np.load
            raise InputError(f"{where}: {name}'s header says {list(shape)} {dtype} ({claimed:,} bytes with "
                             f"the header), the archive holds {info.file_size:,}")
