"""Image sets for the simulator and the board: an ``.npz`` with ``images`` uint8 [N,S,S] (grey) or
[N,C,S,S] (C channels) and optional ``labels``. The shipped set holds 40 MNIST test digits (4 of
each class, 28x28, grey).

A network whose input is larger gets the images centred in it (``fit``): a 32x32 network sees
each 28x28 digit with a 2-pixel black border, as the original LeNet-5 did. Images larger than
the network's input are refused, not cropped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .network import Network
from .npz import read_npz
from .weights import ASSETS

SAMPLES = Path(str(ASSETS / "samples.npz"))


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8 [N,S,S], or [N,C,S,S]
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

    def checked_labels(self, network: Network) -> "ImageSet":
        """Refuse labels that are not classes of ``network`` (a label 12 for a 10-class network
        would only ever count as a wrong answer)."""
        if self.labels is not None and len(self.labels) and int(self.labels.max()) >= network.classes:
            raise InputError(f"{self.path or 'images'}: label {int(self.labels.max())} is not one of the "
                             f"{network.classes} classes of the network {network.spec}")
        return self

    def fitted(self, network: Network) -> "ImageSet":
        """The images at ``network``'s input size (``fit_network``)."""
        return ImageSet(fit_network(self.images, network, str(self.path or "the images")), self.labels, self.path)


def channels_of(images: np.ndarray) -> int:
    """Channels of a batch: [N,S,S] is grey (1), [N,C,S,S] has C."""
    return 1 if np.ndim(images) == 3 else np.shape(images)[1]


def describe_channels(channels: int) -> str:
    return {1: "grey (1 channel)", 3: "RGB (3 channels)"}.get(channels, f"{channels} channels")


def fit_network(images: np.ndarray, network: Network, where: str = "the images") -> np.ndarray:
    """``images`` centred in ``network``'s input (``fit``), after refusing a channel count other
    than the network's in one line naming both."""
    have = channels_of(images)
    if have != network.input_channels:
        raise InputError(f"{where}: the images are {describe_channels(have)}; the network {network.spec} takes "
                         f"{describe_channels(network.input_channels)}")
    if have == 1 and np.ndim(images) == 4:
        images = np.asarray(images)[:, 0]
    return fit(images, network.image_size)


def stream_order(image) -> np.ndarray:
    """One image's bytes in the order the accelerator takes them: raster order (row 0 left to
    right, then row 1, ...), each pixel's channels one after another (channel-interleaved), so
    [S,S] as it is and [C,S,S] as [S,S,C], flattened."""
    image = np.asarray(image, np.uint8)
    return (image if image.ndim == 2 else np.moveaxis(image, 0, -1)).reshape(-1)


def fit(images: np.ndarray, size: int) -> np.ndarray:
    """Square images [N,S,S] with S <= size centred in [N,size,size] on a black border (an odd
    difference puts the extra pixel at the bottom and right)."""
    images = np.asarray(images)
    have = images.shape[-1]
    if have > size:
        raise InputError(f"the images are {have}x{have}; the network takes {size}x{size} (smaller images are "
                         f"centred in it, larger ones are not cropped)")
    if have == size:
        return images
    before = (size - have) // 2
    pad = [(0, 0)] * (images.ndim - 2) + [(before, size - have - before)] * 2
    return np.pad(images, pad)


def check_image_array(images, where: str = "images") -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise InputError(f"{where}: images must be uint8 pixels 0..255, got dtype {images.dtype}")
    if images.ndim not in (3, 4) or images.shape[-1] != images.shape[-2] or images.shape[-1] < 1 or \
            (images.ndim == 4 and images.shape[1] < 1):
        raise InputError(f"{where}: images must have shape [N,S,S] or [N,C,S,S] (square), got {list(images.shape)}")
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
        if len(labels) and labels.min() < 0:
            raise InputError(f"{path}: labels must be class numbers (0 and up), got {int(labels.min())}")
    return ImageSet(images, labels, path)
