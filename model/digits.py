"""A user's own digit (a PNG, JPEG, ... photo or drawing) made to look like an MNIST digit.

MNIST's digits are white strokes on black, the strokes' bounding box scaled to fit 20x20 and
the digit centred by its centre of mass in 28x28. ``prepare`` does the same to any picture: to
grey, inverted if its background is light (a dark pen on paper), cropped to the ink, scaled
into a 20/28 share of the network's input, centred by mass as far as the ink allows
(``centre_by_mass``). The result is what the golden model and the hardware classify, so it is
shown to the user as well (``ascii_art``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError

INK_SHARE = 20 / 28  # MNIST: the bounding box fills 20 of 28 pixels


def on_white(picture):
    """A picture with transparency composited on white paper (converting it to grey as it is
    would drop the alpha: black strokes on a transparent background, whose hidden colour is
    usually black too, would become all black, a picture with no ink)."""
    from PIL import Image

    if picture.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in picture.info:
        return picture
    rgba = picture.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)


def load_picture(path) -> np.ndarray:
    """A picture file as grey uint8 [H, W] (Pillow reads it)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"picture not found: {path}")
    try:
        with Image.open(path) as picture:
            if getattr(picture, "is_animated", False):
                picture.seek(0)
            grey = on_white(picture).convert("L")
            array = np.asarray(grey, np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read {path} as a picture: {e}") from None
    if array.ndim != 2 or min(array.shape) < 1:
        raise InputError(f"{path}: an empty picture")
    return array


def prepare(grey: np.ndarray, size: int = 28) -> np.ndarray:
    """uint8 [H, W] picture -> uint8 [size, size] MNIST-style digit (white on black)."""
    from PIL import Image

    grey = np.asarray(grey, np.float64)
    if np.median(_border(grey)) > 127:  # a light background: dark ink on paper
        grey = 255 - grey
    grey = np.clip(grey - np.median(_border(grey)), 0, 255)  # the background to black
    if grey.max() <= 0:
        raise InputError("the picture has no ink: every pixel is the background's colour")
    grey = grey * (255 / grey.max())
    rows, cols = np.nonzero(grey > 0.2 * 255)
    crop = grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    box = max(1, round(INK_SHARE * size))
    scale = box / max(crop.shape)
    height, width = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize((width, height), Image.LANCZOS), np.float64)
    canvas = np.zeros((size, size))
    top, left = (size - height) // 2, (size - width) // 2
    canvas[top : top + height, left : left + width] = small
    canvas = centre_by_mass(canvas)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def centre_by_mass(canvas: np.ndarray) -> np.ndarray:
    """``canvas`` shifted by whole pixels to bring its centre of mass to the middle, as MNIST's
    digits are, but never so far that ink leaves the picture: each shift is clamped to what the
    ink's bounding box allows (a heavy bar on a thin stem stops with its foot on the edge, a little
    above the middle). No ink is lost, and none wraps round to the other side; the pixels shifted
    in are black. ``prepare``'s ink box is 20 of 28 pixels, so some shift always fits."""
    size_y, size_x = canvas.shape
    mass = canvas.sum()
    cy = (canvas.sum(axis=1) * np.arange(size_y)).sum() / mass
    cx = (canvas.sum(axis=0) * np.arange(size_x)).sum() / mass
    rows, cols = np.nonzero(canvas)
    dy = int(np.clip(round((size_y - 1) / 2 - cy), -rows.min(), size_y - 1 - rows.max()))
    dx = int(np.clip(round((size_x - 1) / 2 - cx), -cols.min(), size_x - 1 - cols.max()))
    shifted = np.zeros_like(canvas)
    shifted[max(dy, 0) : size_y + min(dy, 0), max(dx, 0) : size_x + min(dx, 0)] = \
        canvas[max(-dy, 0) : size_y - max(dy, 0), max(-dx, 0) : size_x - max(dx, 0)]
    return shifted


def _border(grey: np.ndarray) -> np.ndarray:
    return np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])


def ascii_art(image: np.ndarray) -> str:
    """The digit in characters, darker characters for more ink."""
    shades = " .:-=+*#%@"
    return "\n".join("".join(shades[min(int(p) * len(shades) // 256, len(shades) - 1)] * 2 for p in row)
                     for row in image)
