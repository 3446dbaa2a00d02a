"""Figures a person would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model.atomic import atomic_path


def digits_figure(images: np.ndarray, labels, rtl_class, matches, path, columns: int = 10) -> Path:
    """A grid of the digits, each titled with the RTL's class; red where it differs from the
    label, a red frame where the RTL's logits differ from the golden model's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(images) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.3))
    for k, ax in enumerate(np.asarray(axes).reshape(-1)):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(images):
            ax.axis("off")
            continue
        ax.imshow(images[k], cmap="gray_r", vmin=0, vmax=255)
        right = labels is None or rtl_class[k] == labels[k]
        ax.set_title(f"RTL {rtl_class[k]}", fontsize=9, color="black" if right else "red")
        for spine in ax.spines.values():
            spine.set_color("black" if matches[k] else "red")
            spine.set_linewidth(1 if matches[k] else 3)
    fig.suptitle(f"{int(np.sum(matches))} of {len(images)} images bit-exact with the golden model", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return path
