"""MNIST's four IDX ``.gz`` files: read them (checking md5, magic number and size) and download them.

IDX layout: a big-endian header (magic 0x00000803 for images, 0x00000801 for labels, then the
count, then rows and columns for images) followed by uint8 data.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import struct
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import InputError
from .images import fit_network

# The originals' sizes in bytes: a download stops at them, whatever the server sends.
SIZES = {
    "train-images-idx3-ubyte.gz": 9_912_422,
    "train-labels-idx1-ubyte.gz": 28_881,
    "t10k-images-idx3-ubyte.gz": 1_648_877,
    "t10k-labels-idx1-ubyte.gz": 4_542,
}
# The originals' reference md5 sums (of the .gz files).
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
CLASSES = 10  # digits 0..9
# Where the files are published. Any mirror with the same four file names works (--mirror).
DEFAULT_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
ENV_DATA = "LENET_FPGA_DATA"


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N,S,S] (MNIST: [N,28,28]), or [N,C,S,S]
    labels: np.ndarray  # uint8 [N]

    def fitted(self, network, where: str = "the images") -> "Split":
        """The images at ``network``'s input size, centred (``images.fit_network``: the channel
        counts must agree; ``where`` names the images in that error)."""
        return Split(fit_network(self.images, network, where), self.labels)


def default_data_dir() -> Path:
    """$LENET_FPGA_DATA, else the user's data folder (``$XDG_DATA_HOME/lenet-fpga/mnist``, by
    default ``~/.local/share/lenet-fpga/mnist``), which ``lenet-fpga download`` fills."""
    if os.environ.get(ENV_DATA):
        return Path(os.environ[ENV_DATA])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "lenet-fpga" / "mnist"


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_idx(path: Path, magic: int, count: int | None = None) -> np.ndarray:
    """Parse one gzip-compressed IDX file; every defect becomes an InputError naming the file."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise InputError(f"MNIST file not found: {path}") from None
    except PermissionError as e:
        raise InputError(f"MNIST file {path} cannot be read: {e.strerror or e}") from None
    except (OSError, EOFError, zlib.error) as e:  # bad gzip header, bad deflate data, truncated, bad CRC
        raise InputError(f"MNIST file {path} is corrupt or truncated: {e}") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"MNIST file {path} is too short for an IDX header")
    (found,) = struct.unpack(">i", raw[:4])
    if found != magic:
        raise InputError(f"MNIST file {path} has magic number {found}, expected {magic}")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    if count is not None and dims[0] != count:
        raise InputError(f"MNIST file {path} holds {dims[0]} items, expected {count}")
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise InputError(f"MNIST file {path} has {len(raw) - header} data bytes, its header promises {size}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load(split: str = "test", data_dir=None, verify_md5: bool = True) -> Split:
    """Read the train or test split from a folder holding the four original ``.gz`` files."""
    if split not in SPLITS:
        raise InputError(f"unknown MNIST split {split!r}; use one of {sorted(SPLITS)}")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    image_file, label_file, count = SPLITS[split]
    for name in (image_file, label_file):
        path = data_dir / name
        try:
            if not path.is_file():
                raise InputError(f"MNIST file not found: {path} (run `lenet-fpga download --data {data_dir}`)")
            if verify_md5 and md5sum(path) != FILES[name]:
                raise InputError(f"MNIST file {path} fails its md5 check (corrupt or not the original)")
        except OSError as e:  # a folder or file without read permission
            raise InputError(f"MNIST file {path} cannot be read: {e.strerror or e}") from None
    images = read_idx(data_dir / image_file, IMAGE_MAGIC, count)
    labels = read_idx(data_dir / label_file, LABEL_MAGIC, count)
    if images.shape[1:] != (28, 28):
        raise InputError(f"MNIST images in {data_dir / image_file} are {images.shape[1:]}, not 28x28")
    if labels.max(initial=0) > 9:
        raise InputError(f"MNIST labels in {data_dir / label_file} go beyond 9")
    return Split(images=images, labels=labels)


def download(data_dir, mirror: str = DEFAULT_MIRROR, progress=None, timeout: float = 60) -> list[Path]:
    """Fetch any of the four files that are missing or fail md5; each lands complete or not at all.

    ``progress(name, done_bytes, total_bytes)`` is called as bytes arrive.
    """
    check_mirror(mirror)
    data_dir = Path(data_dir)
    made = [folder for folder in (data_dir, *data_dir.parents) if not folder.exists()]
    try:
        return _download_each(data_dir, mirror, progress, timeout)
    except BaseException:  # a failure or Ctrl-C: remove the folders made for the files, if still empty
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _download_each(data_dir: Path, mirror: str, progress, timeout: float) -> list[Path]:
    fetched = []
    for name, md5 in FILES.items():
        path = data_dir / name
        if path.is_file() and md5sum(path) == md5:
            continue
        url = mirror.rstrip("/") + "/" + name
        size = SIZES[name]
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(path) as tmp:
                done = 0
                with open(tmp, "wb") as f:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        done += len(block)
                        if done > size:  # a server that never stops must not fill the disk
                            raise InputError(f"{url} sent more than the {size:,} bytes the file has; nothing "
                                             f"was saved")
                        f.write(block)
                        if progress:
                            progress(name, done, size)
                if md5sum(tmp) != md5:
                    raise InputError(f"downloaded {url} fails its md5 check; nothing was saved")
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise InputError(f"cannot download {url}: {type(e).__name__}: {e}") from None
        fetched.append(path)
    return fetched


def check_mirror(mirror) -> str:
    """A mirror is an http, https or file URL (of the folder holding the four files)."""
    parsed = urllib.parse.urlsplit(mirror) if isinstance(mirror, str) else None
    if parsed is None or parsed.scheme not in ("http", "https", "file") or (parsed.scheme != "file" and not parsed.netloc):
        raise InputError(f"--mirror must be an http://, https:// or file:// URL of a folder, not {mirror!r}")
    return mirror
