"""Image sets for the simulator and the board: an ``.npz`` with ``images`` uint8 [N,28,28] and
optional ``labels``. The shipped set holds 40 MNIST test digits (4 of each class)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .network import IMAGE_SIZE
from .npz import read_npz
from .weights import ASSETS

SAMPLES = Path(str(ASSETS / "samples.npz"))


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8 [N,28,28]
    labels: np.ndarray | None  # [N] or None
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.images)

    def head(self, n: int | None) -> "ImageSet":
        if n is None:
            return self
        if n < 1:
            raise InputError(f"--n must be at least 1, got {n}")
        if n > len(self):
            raise InputError(f"asked for {n} images, {self.path or 'the set'} has {len(self)}")
        labels = None if self.labels is None else self.labels[:n]
        return ImageSet(self.images[:n], labels, self.path)


def check_image_array(images, where: str = "images") -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise InputError(f"{where}: images must be uint8 pixels 0..255, got dtype {images.dtype}")
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise InputError(f"{where}: images must have shape [N,28,28], got {list(images.shape)}")
    if len(images) == 0:
        raise InputError(f"{where}: no images")
    return images


def load_image_set(path=None) -> ImageSet:
    """Read an image set; ``None`` means the shipped sample digits."""
    path = Path(path) if path is not None else SAMPLES
    if not path.is_file():
        raise InputError(f"image file not found: {path}")
    arrays = read_npz(path, "images")
    if "images" not in arrays:
        raise InputError(f"{path} has no 'images' array (it has: {', '.join(arrays) or 'nothing'})")
    images = check_image_array(arrays["images"], str(path))
    labels = arrays.get("labels")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"{path}: labels must be {len(images)} integers, got {labels.dtype} {list(labels.shape)}")
    return ImageSet(images, labels, path)
