"""A data set of the user's own: labelled grey or colour images as a train and a test ``Split``,
read from an ``.npz`` or a folder of PNGs, every defect an InputError in one line.

Formats (docs in README.md, "A data set of your own"):

* ``.npz`` with ``train_images``, ``train_labels``, ``test_images``, ``test_labels``; or with
  ``images`` and ``labels`` only, split deterministically (``split_off``). Images uint8
  ``[N,S,S]`` or ``[N,1,S,S]`` (grey) or ``[N,C,S,S]`` (C channels, kept as they are; square,
  pixels 0..255: floats are refused, not guessed at); labels integers 0..K-1, one per image.
  With ``grey``, C = 3 is converted to grey (ITU-R 601-2 luma, exactly as Pillow's
  ``convert("L")``).
* a folder ``train/<class>/*.png`` and ``test/<class>/*.png``, or ``<class>/*.png`` only (split
  as above). Class folders named by whole numbers are those labels (``0``..``9``); otherwise the
  names are sorted and numbered from 0 (``cat``, ``dog`` -> 0, 1; ``Dataset.class_names``). PNGs
  grey (mode L or 1), or RGB whose three channels are equal in every pixel, make a grey set;
  one colour PNG makes the set RGB (its alpha dropped, grey PNGs as three equal channels),
  unless ``grey`` (then each is Pillow's ``convert("L")``). Every image the same square size.

The images keep their size and channels: ``Split.fitted(network)`` centres smaller ones in a
larger network input, and a data set with larger images than the network's, or another channel
count, is refused, naming both (``check_fits``).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import file_mode, regular_file, special_kind
from .images import channels_of, describe_channels
from .mnist import Split
from .mnist import load as load_mnist
from .network import MAX_INPUT_CHANNELS, MAX_SIZE, Network
from .npz import MAX_BYTES, read_npz

# A test split of 1/6 of the images when the data set has no test part of its own (MNIST's
# 10,000 of 70,000 is 1/7; a sixth keeps a small set's test part large enough to mean something).
TEST_FRACTION = 1 / 6
SPLIT_SEED = 0  # the permutation that picks the test images: the same set always splits the same
MAX_SIDE = 1024  # an image side; the network's own limits refuse far less than this
MAX_FILES = 500_000  # PNGs in a folder data set
MAX_PNG_BYTES = 16 * 2**20  # one PNG file
MAX_CLASSES = MAX_SIZE
GREY_HINT = "give --grey to convert the images to grey"
NPZ_NAMES = ("train_images", "train_labels", "test_images", "test_labels", "images", "labels")


@dataclass(frozen=True)
class Dataset:
    """A user's labelled images: ``train`` and ``test`` splits (images uint8 [N,S,S] grey or
    [N,C,S,S] with C > 1 channels, labels int64 [N]), ``classes`` (the largest label + 1, or the
    class folders), the images' ``image_size`` S, the ``source`` path, ``class_names`` (folder names, or None), ``digest``
    (sha256 of the arrays: the same images and labels give the same digest whatever the format),
    ``split`` (``"own"``: the source has its test part; else the fraction split off) and
    ``converted`` (colour images converted to grey with ``grey``)."""

    train: Split
    test: Split
    classes: int
    image_size: int
    source: str
    class_names: tuple[str, ...] | None = None
    digest: str = ""
    split: str = "own"
    converted: bool = False

    @property
    def channels(self) -> int:
        """Channels of every image: 1 (grey, [N,S,S]) or C ([N,C,S,S])."""
        return channels_of(self.train.images)

    def check_fits(self, network: Network) -> None:
        """Refuse ``network`` when its input has another channel count than the images, the
        images are larger than its input or it has fewer outputs than the data set has classes
        (smaller images are centred in its input by ``fitted``)."""
        if self.channels != network.input_channels:
            hint = "" if network.input_channels != 1 else (
                (f": {GREY_HINT}, or " if self.channels == 3 else ": give ")
                + f"a network with a {self.image_size}x{self.channels}/... input")
            raise InputError(f"the data set {self.source}'s images are {describe_channels(self.channels)}; the network "
                             f"{network.spec} takes {describe_channels(network.input_channels)}{hint}")
        if self.image_size > network.image_size:
            raise InputError(f"the data set {self.source} has {self.image_size}x{self.image_size} images; the network "
                             f"{network.spec} takes {network.image_size}x{network.image_size} (smaller images are "
                             f"centred, larger ones are not cropped): give a network with a "
                             f"{self.image_size}/... input")
        if self.classes > network.classes:
            raise InputError(f"the data set {self.source} has {self.classes} classes; the network {network.spec} has "
                             f"{network.classes} outputs")

    def default_network(self) -> Network:
        """LeNet-5's layers at the data set's image size and classes (``train`` without a network)."""
        from .network import LENET5, NetworkError

        try:
            return Network(LENET5.convs, LENET5.hidden, self.classes, self.image_size, self.channels)
        except NetworkError as e:
            raise InputError(f"LeNet-5's layers do not fit the data set's {self.image_size}x{self.image_size} images "
                             f"({e}); give a network (--network) that does") from None

    def fitted(self, network: Network, split: str = "test") -> Split:
        """The ``split`` (``"train"`` or ``"test"``) at ``network``'s input size, after ``check_fits``."""
        self.check_fits(network)
        return {"train": self.train, "test": self.test}[split].fitted(network)

    def to_manifest(self) -> dict:
        """What a weights manifest records of the data set it was trained on."""
        return {"source": self.source, "digest": self.digest, "image_size": self.image_size,
                "classes": self.classes, "train_images": len(self.train.labels), "test_images": len(self.test.labels),
                "split": self.split, "grey_converted": self.converted,
                **({"channels": self.channels} if self.channels != 1 else {}),
                **({"class_names": list(self.class_names)} if self.class_names is not None else {})}


def recorded_note(manifest: dict, dataset: Dataset | None, weights_path) -> str | None:
    """A remark when weights trained on one data set (their manifest's ``dataset``) are run on
    another, or on MNIST; None when they agree (or the manifest records none)."""
    recorded = manifest.get("dataset") if isinstance(manifest, dict) else None
    if not isinstance(recorded, dict):
        return None
    if dataset is None:
        return (f"note: {weights_path} was trained on the data set {recorded.get('source')}; these are MNIST's "
                f"images (give --dataset)")
    if recorded.get("digest") != dataset.digest:
        return (f"note: {weights_path} was trained on the data set {recorded.get('source')} (digest "
                f"{str(recorded.get('digest'))[:12]}); {dataset.source} gives other images or labels (digest "
                f"{dataset.digest[:12]}: another file, or split with another --test-fraction)")
    return None


def load_dataset(path, grey: bool = False, test_fraction: float | None = None) -> Dataset:
    """Read a data set: an ``.npz`` file or a folder of PNGs (the module docstring has the
    formats). ``grey`` converts colour images to grey instead of refusing them;
    ``test_fraction`` (default 1/6) is the share split off as the test set of a source without
    one, and an error for a source with its own."""
    if test_fraction is not None and not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise InputError(f"--test-fraction must be a number between 0 and 1 (both excluded), not {test_fraction}")
    path = Path(path)
    if special_kind(file_mode(path, "data set")) == "a folder":
        parts, names, converted = _read_folder(path, grey)
    else:
        regular_file(path, "data set")
        parts, converted = _read_npz(path, grey)
        names = None
    return _assemble(path, parts, names, converted, test_fraction)


def _assemble(path: Path, parts: dict, names, converted: bool, test_fraction: float | None) -> Dataset:
    """The splits from ``parts`` (``{"train": (images, labels), "test": ...}`` or ``{"all": ...}``)."""
    where = str(path)
    if "all" in parts:
        images, labels = parts["all"]
        fraction = TEST_FRACTION if test_fraction is None else test_fraction
        train, test = split_off(images, labels, fraction, where)
        split = f"{fraction:.4g} of {len(labels):,} images split off as the test set (seed {SPLIT_SEED})"
    else:
        if test_fraction is not None:
            raise InputError(f"--test-fraction splits a data set without a test part; {where} has its own test images")
        train, test = (Split(*parts[name]) for name in ("train", "test"))
        split = "own"
    size, test_size = train.images.shape[-1], test.images.shape[-1]
    if test_size != size:
        raise InputError(f"{where}: the training images are {size}x{size}, the test images "
                         f"{test_size}x{test_size}; all must be the same size")
    channels = [channels_of(split.images) for split in (train, test)]
    if channels[0] != channels[1]:
        raise InputError(f"{where}: the training images are {describe_channels(channels[0])}, the test images "
                         f"{describe_channels(channels[1])}; all must have the same channels")
    top = max(int(train.labels.max()), int(test.labels.max()))
    classes = len(names) if names is not None else top + 1
    if classes < 2:
        raise InputError(f"{where}: every label is 0; a classifier needs at least 2 classes")
    return Dataset(train, test, classes, size, where, names, digest(train, test), split, converted)


def split_off(images: np.ndarray, labels: np.ndarray, fraction: float, where: str) -> tuple[Split, Split]:
    """A train and a test split of one set: ``round(N * fraction)`` images (at least one, and at
    least one left to train on) picked by a permutation with seed ``SPLIT_SEED``, each split in
    the set's own order. A set sorted by class still gets every class in both."""
    n = len(labels)
    n_test = min(max(1, round(n * fraction)), n - 1)
    if n < 2:
        raise InputError(f"{where}: {n} image; at least 2 are needed to split off a test set")
    chosen = np.zeros(n, bool)
    chosen[np.random.default_rng(SPLIT_SEED).permutation(n)[:n_test]] = True
    return Split(images[~chosen], labels[~chosen]), Split(images[chosen], labels[chosen])


def digest(train: Split, test: Split) -> str:
    """sha256 of the splits' shapes, pixels and labels (as int64): the data, not its file."""
    h = hashlib.sha256()
    for split in (train, test):
        h.update(repr(split.images.shape).encode())
        h.update(np.ascontiguousarray(split.images).tobytes())
        h.update(np.ascontiguousarray(split.labels, dtype="<i8").tobytes())
    return h.hexdigest()


# ---- .npz ----

def _read_npz(path: Path, grey: bool) -> tuple[dict, bool]:
    arrays = read_npz(path, "data set")
    have = set(arrays)
    unknown = sorted(have - set(NPZ_NAMES))
    if have >= {"train_images", "train_labels", "test_images", "test_labels"}:
        names = {"train": ("train_images", "train_labels"), "test": ("test_images", "test_labels")}
        unknown += sorted(have & {"images", "labels"})
    elif have >= {"images", "labels"} and not have & {"train_images", "train_labels", "test_images", "test_labels"}:
        names = {"all": ("images", "labels")}
    else:
        raise InputError(f"data set {path} must hold train_images, train_labels, test_images and test_labels, or "
                         f"images and labels; it has {', '.join(sorted(have)) or 'nothing'}")
    if unknown:
        raise InputError(f"data set {path}: unexpected array(s) {', '.join(unknown)} beside "
                         f"{', '.join(n for pair in names.values() for n in pair)}")
    parts, converted = {}, False
    for part, (image_name, label_name) in names.items():
        images, was_colour = _npz_images(arrays[image_name], f"{path}: {image_name}", grey)
        converted |= was_colour
        parts[part] = (images, _labels(arrays[label_name], len(images), f"{path}: {label_name}"))
    return parts, converted


def _npz_images(images: np.ndarray, where: str, grey: bool) -> tuple[np.ndarray, bool]:
    """uint8 [N,S,S] from [N,S,S] or [N,1,S,S], or from [N,3,S,S] with ``grey``; [N,C,S,S] from
    C > 1 channels otherwise."""
    if images.dtype != np.uint8:
        raise InputError(f"{where} must be uint8 pixels 0..255, not {images.dtype} (scale and round them first: "
                         f"np.round(x * 255).astype(np.uint8) for floats in 0..1)")
    if images.ndim not in (3, 4) or images.shape[-1] != images.shape[-2]:
        raise InputError(f"{where} must be [N,S,S] or [N,C,S,S] with square SxS images, not {list(images.shape)}")
    converted = False
    if images.ndim == 4:
        channels = images.shape[1]
        if channels == 3 and grey:
            images, converted = luma(images), True
        elif channels == 1:
            images = images[:, 0]
        elif grey:
            raise InputError(f"{where} has {channels} channels ({list(images.shape)}); --grey converts RGB "
                             f"images (3 channels) only")
        elif not 1 <= channels <= MAX_INPUT_CHANNELS:
            raise InputError(f"{where} has {channels} channels ({list(images.shape)}); a network takes 1 to "
                             f"{MAX_INPUT_CHANNELS}")
    _check_images(images, where)
    return np.ascontiguousarray(images), converted


def luma(images: np.ndarray) -> np.ndarray:
    """[N,3,S,S] RGB as [N,S,S] grey: L = 0.299 R + 0.587 G + 0.114 B in Pillow's own fixed point
    (weights in 1/65536, rounded), so an .npz and a PNG of the same picture give the same grey."""
    r, g, b = (images[:, k].astype(np.uint32) for k in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _check_images(images: np.ndarray, where: str) -> None:
    if len(images) == 0:
        raise InputError(f"{where}: no images")
    side = images.shape[-1]
    if not 1 <= side <= MAX_SIDE:
        raise InputError(f"{where}: {side}x{side} images; at most {MAX_SIDE}x{MAX_SIDE}")


def _labels(labels: np.ndarray, n: int, where: str) -> np.ndarray:
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{where} must be whole numbers (class 0, 1, ...), not {labels.dtype}")
    if labels.shape != (n,):
        raise InputError(f"{where} must be one label per image: shape [{n}], not {list(labels.shape)}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise InputError(f"{where}: label {low}; labels are classes 0, 1, ...")
    if high >= MAX_CLASSES:
        raise InputError(f"{where}: label {high}; at most {MAX_CLASSES:,} classes")
    return labels.astype(np.int64)


# ---- a folder of PNGs ----

def _read_folder(root: Path, grey: bool) -> tuple[dict, tuple[str, ...] | None, bool]:
    subfolders = _folders(root)
    if "train" in subfolders or "test" in subfolders:
        if not {"train", "test"} <= set(subfolders):
            have, missing = ("train", "test") if "train" in subfolders else ("test", "train")
            raise InputError(f"data set {root} has {have}/ but no {missing}/ (give both, or put the class folders "
                             f"in {root} itself)")
        layout = {"train": root / "train", "test": root / "test"}
    else:
        layout = {"all": root}
    per_part = {part: {name: folder / name for name in _folders(folder)} for part, folder in layout.items()}
    all_names = sorted(set().union(*per_part.values()))
    if not all_names:
        raise InputError(f"data set {root} has no class folders (<class>/*.png, or train/<class>/*.png and "
                         f"test/<class>/*.png)")
    label_of, names = class_labels(all_names, root)
    budget = _Budget(root)
    parts, converted = {}, False
    for part, classes in per_part.items():
        images, labels = [], []
        for name in sorted(classes, key=label_of.get):
            files = sorted(f for f in os.listdir(classes[name]) if f.lower().endswith(".png"))
            if not files:
                raise InputError(f"data set {root}: class folder {classes[name]} has no .png files")
            for file in files:
                image, was_colour = read_png(classes[name] / file, grey, budget)
                converted |= was_colour
                images.append(image)
                labels.append(label_of[name])
        where = str(layout[part])
        sizes = {image.shape[-2:] for image in images}
        if len(sizes) > 1:
            shown = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
            raise InputError(f"data set {where}: the images have different sizes ({shown}); all must be the same "
                             f"square size")
        parts[part] = (images, np.asarray(labels, np.int64))
    # One colour PNG makes the whole set RGB: the grey ones become three equal channels.
    colour = any(image.ndim == 3 for images, _ in parts.values() for image in images)
    for part, (images, labels) in parts.items():
        parts[part] = (np.stack([np.stack([image] * 3) if colour and image.ndim == 2 else image for image in images]),
                       labels)
    return parts, names, converted


def _folders(folder: Path) -> list[str]:
    """The names of ``folder``'s subfolders (hidden ones left out)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
    except OSError as e:
        raise InputError(f"cannot read data set folder {folder}: {e.strerror or e}") from None


def class_labels(names: list[str], root: Path) -> tuple[dict[str, int], tuple[str, ...] | None]:
    """Each class folder's label: its number when every name is a whole number (then the class
    names are None), else its place among the sorted names."""
    if all(re.fullmatch(r"\d+", name) for name in names):
        numbers = {name: int(name) for name in names}
        if len(set(numbers.values())) < len(numbers):
            raise InputError(f"data set {root}: class folders {', '.join(names)} name the same number twice")
        if max(numbers.values()) >= MAX_CLASSES:
            raise InputError(f"data set {root}: class folder {max(numbers.values())}; at most {MAX_CLASSES:,} classes")
        return numbers, None
    if len(names) > MAX_CLASSES:
        raise InputError(f"data set {root}: {len(names):,} class folders; at most {MAX_CLASSES:,} classes")
    return {name: k for k, name in enumerate(names)}, tuple(names)


class _Budget:
    """Counts the files and pixels read: a folder data set stops at ``MAX_FILES`` PNGs and
    ``MAX_BYTES`` of pixels, as an ``.npz`` does at its size."""

    def __init__(self, root: Path):
        self.root, self.files, self.pixels = root, 0, 0

    def take(self, pixels: int) -> None:
        self.files += 1
        self.pixels += pixels
        if self.files > MAX_FILES:
            raise InputError(f"data set {self.root} has more than {MAX_FILES:,} PNGs")
        if self.pixels > MAX_BYTES:
            raise InputError(f"data set {self.root} has more than {MAX_BYTES:,} pixels")


def read_png(path: Path, grey: bool = False, budget: _Budget | None = None) -> tuple[np.ndarray, bool]:
    """One PNG as uint8 [S,S] grey or [3,S,S] RGB (a colour PNG without ``grey``), and whether it
    was converted from colour (``grey``); its size is checked from the header before any pixel is
    inflated."""
    from PIL import Image, UnidentifiedImageError

    regular_file(path, "image")
    if path.stat().st_size > MAX_PNG_BYTES:
        raise InputError(f"image {path} is larger than {MAX_PNG_BYTES:,} bytes")
    try:
        with Image.open(path, formats=["PNG"]) as image:
            width, height = image.size
            if width != height:
                raise InputError(f"image {path} is {width}x{height}; images must be square")
            if not 1 <= width <= MAX_SIDE:
                raise InputError(f"image {path} is {width}x{height}; at most {MAX_SIDE}x{MAX_SIDE}")
            if budget is not None:
                budget.take(width * height)
            return _pixels(image, path, grey)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path} as a PNG: {e}") from None


def _pixels(image, path: Path, grey: bool) -> tuple[np.ndarray, bool]:
    mode = image.mode
    if mode in ("L", "1"):
        return np.asarray(image.convert("L"), np.uint8), False
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        raise InputError(f"image {path} has {mode} pixels (16-bit or more); save it with 8-bit pixels")
    rgb = np.asarray(image.convert("RGB"), np.uint8)  # a colour PNG's alpha is dropped
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return np.ascontiguousarray(rgb[..., 0]), False  # grey saved as colour: nothing lost
    if grey:
        return np.asarray(image.convert("L"), np.uint8), True
    return np.ascontiguousarray(np.moveaxis(rgb, -1, 0)), False


def describe(dataset: Dataset) -> str:
    """One line: where, how many, what size, how many classes."""
    names = f" ({', '.join(dataset.class_names[:6])}{', ...' if len(dataset.class_names) > 6 else ''})" \
        if dataset.class_names else ""
    split = "" if dataset.split == "own" else f"; {dataset.split}"
    colour = {1: "grey", 3: "RGB"}.get(dataset.channels, f"{dataset.channels}-channel")
    return (f"data set {dataset.source}: {len(dataset.train.labels):,} training and {len(dataset.test.labels):,} test "
            f"images, {dataset.image_size}x{dataset.image_size} {colour}, {dataset.classes} classes{names}{split}"
            + ("; converted from colour to grey" if dataset.converted else ""))


def fitted_split(split: str, network: Network, dataset: Dataset | None = None, data_dir=None) -> Split:
    """The ``split`` (``"train"`` or ``"test"``) of ``dataset`` at ``network``'s input size, or
    MNIST's (from ``data_dir``) when there is no data set."""
    if dataset is not None:
        return dataset.fitted(network, split)
    return load_mnist(split, data_dir).fitted(network, "MNIST")
