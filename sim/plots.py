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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    return path


def cycles_per_layer_figure(results: list[dict], path) -> Path:
    """Bars: each layer's cycles per image in each preset (the engine's own model), a tick at its
    multiply floor; dashed lines: each preset's measured interval."""
    plt = _pyplot()
    layers = [row["layer"] for row in results[0]["layers"] if row["macs"]]
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(layers) + 2) + 3, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, result in enumerate(results):
        rows = {row["layer"]: row for row in result["layers"]}
        x = np.arange(len(layers)) + (k - (len(results) - 1) / 2) * width
        color = colors[k % len(colors)]
        ax.bar(x, [rows[name]["cycles"] for name in layers], width, color=color,
               label=f"{result['name']} ({result['multipliers']} multipliers)")
        ax.scatter(x, [rows[name]["floor"] for name in layers], marker="_", s=300, color="black", zorder=3,
                   label="multiply floor" if k == 0 else None)
        ax.axhline(result["interval_cycles"], color=color, linestyle="--", linewidth=1,
                   label=f"{result['name']}: interval {result['interval_cycles']:,.0f} (RTL)")
    ax.axhline(results[0]["pixel_bound"], color="gray", linestyle=":", linewidth=1,
               label=f"pixel input bound {results[0]['pixel_bound']}")
    ax.set_xticks(np.arange(len(layers)), layers)
    ax.set_yscale("log")
    ax.set_ylabel("cycles per image")
    ax.set_title("Cycles per layer (engine model) against the multiply floor")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def resources_figure(results: list[dict], path) -> Path:
    """LUTs and DSPs against images per second, one point per preset (needs place-and-route)."""
    plt = _pyplot()
    placed = [r for r in results if r.get("resources") and r.get("images_per_second")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in zip(axes, ("luts", "dsp"), ("LUTs", "DSP multipliers")):
        for r in placed:
            ax.scatter(r["images_per_second"], r["resources"].get(key, 0))
            ax.annotate(r["name"], (r["images_per_second"], r["resources"].get(key, 0)),
                        textcoords="offset points", xytext=(5, 5), fontsize=9)
        ax.set_xlabel("images per second (Fmax / interval)")
        ax.set_ylabel(label)
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    fig.suptitle("Resources against throughput (ECP5-85F, out of context)")
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def bench_figures(results: list[dict], folder) -> list[Path]:
    """The benchmark's PNGs in ``folder``: cycles per layer, and resources against throughput
    when place-and-route gave numbers."""
    folder = Path(folder)
    paths = [cycles_per_layer_figure(results, folder / "cycles_per_layer.png")]
    if any(r.get("resources") and r.get("images_per_second") for r in results):
        paths.append(resources_figure(results, folder / "resources.png"))
    return paths
