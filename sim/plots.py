"""Figures a person would rather look at than read."""

from __future__ import annotations

import math
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


def network_label(result: dict) -> str:
    """A bench row's network: its weights file's name (two files may share a geometry), else
    the geometry."""
    return Path(result["weights"]).stem if result.get("weights") else result["network"]


def _label(result: dict, several_networks: bool) -> str:
    return f"{network_label(result)} {result['name']}" if several_networks else result["name"]


def cycles_per_layer_figure(results: list[dict], path) -> Path:
    """Bars: each layer's cycles per image in each design (the engine's own model), a tick at
    its multiply floor; dashed lines: each design's measured interval. Designs of different
    networks share the layer names they have."""
    plt = _pyplot()
    several = len({network_label(r) for r in results}) > 1
    layers = list(dict.fromkeys(row["layer"] for r in results for row in r["layers"] if row["macs"]))
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(layers) + 2) + 4, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, result in enumerate(results):
        rows = {row["layer"]: row for row in result["layers"]}
        here = [i for i, name in enumerate(layers) if name in rows]
        x = np.array(here) + (k - (len(results) - 1) / 2) * width
        color = colors[k % len(colors)]
        label = _label(result, several)
        ax.bar(x, [rows[layers[i]]["cycles"] for i in here], width, color=color,
               label=f"{label} ({result['multipliers']} multipliers)")
        ax.scatter(x, [rows[layers[i]]["floor"] for i in here], marker="_", s=300, color="black", zorder=3,
                   label="multiply floor" if k == 0 else None)
        ax.axhline(result["interval_cycles"], color=color, linestyle="--", linewidth=1,
                   label=f"{label}: interval {result['interval_cycles']:,.0f} (RTL)")
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


def pareto_front(points: list[tuple[float, float]], higher_x: bool = True, higher_y: bool = True) -> list[int]:
    """Indices of the points no other point beats in both coordinates (ties kept), in x order."""
    def better(a, b):  # a at least as good as b in both, strictly in one
        ax_, ay = (a[0] if higher_x else -a[0]), (a[1] if higher_y else -a[1])
        bx, by = (b[0] if higher_x else -b[0]), (b[1] if higher_y else -b[1])
        return ax_ >= bx and ay >= by and (ax_ > bx or ay > by)

    front = [i for i, p in enumerate(points) if not any(better(q, p) for q in points)]
    return sorted(front, key=lambda i: points[i][0])


MARKERS = "os^Dv<>P*X"


def _styles(results: list[dict]) -> tuple[dict, dict]:
    """A colour per network and a marker per preset, in order of appearance."""
    import matplotlib

    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    networks = list(dict.fromkeys(network_label(r) for r in results))
    presets = list(dict.fromkeys(r["name"] for r in results))
    return ({n: colors[k % len(colors)] for k, n in enumerate(networks)},
            {p: MARKERS[k % len(MARKERS)] for k, p in enumerate(presets)})


def _scatter_with_front(ax, results, styles, x_of, y_of, higher_x, higher_y, xlabel, ylabel, log_x=False,
                        log_y=False):
    colors, markers = styles
    points = [(x_of(r), y_of(r)) for r in results]
    for r, (x, y) in zip(results, points):
        ax.scatter(x, y, color=colors[network_label(r)], marker=markers[r["name"]], s=45, zorder=3)
    front = pareto_front(points, higher_x, higher_y)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="gray", linewidth=1,
            linestyle="--", zorder=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)


def _legend(fig, styles) -> None:
    """One legend under the panels: the networks' colours, the presets' markers, the front."""
    from matplotlib.lines import Line2D

    colors, markers = styles
    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=n) for n, c in colors.items()]
    handles += [Line2D([], [], color="black", marker=m, linestyle="", label=f"preset {p}") for p, m in markers.items()]
    handles.append(Line2D([], [], color="gray", linestyle="--", label="Pareto front"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8, frameon=False)


def pareto_figure(results: list[dict], path) -> Path:
    """Accuracy against throughput, and (with place-and-route) accuracy and throughput against
    LUTs: one point per network (colour) and preset (marker), the Pareto front dashed. Without
    place-and-route the throughput axis is images per million cycles (1e6 / interval)."""
    plt = _pyplot()
    measured = [r for r in results if r.get("accuracy") is not None]
    placed = [r for r in measured if r.get("images_per_second") and r.get("resources")]
    panels = 3 if placed else 1
    shown = placed or measured
    styles = _styles(shown)
    rows = math.ceil((len(styles[0]) + len(styles[1]) + 1) / 5)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5 + 0.25 * rows), squeeze=False)
    axes = axes[0]
    if placed:
        rate, rate_label = (lambda r: r["images_per_second"]), "images per second (Fmax / interval)"
    else:
        rate, rate_label = (lambda r: 1e6 / r["interval_cycles"]), "images per million cycles (1e6 / interval)"
    _scatter_with_front(axes[0], shown, styles, rate, lambda r: 100 * r["accuracy"], True, True, rate_label,
                        "MNIST test accuracy (%)", log_x=True)
    if placed:
        _scatter_with_front(axes[1], placed, styles, lambda r: r["resources"]["luts"],
                            lambda r: 100 * r["accuracy"], False, True, "LUT4 cells", "MNIST test accuracy (%)")
        _scatter_with_front(axes[2], placed, styles, lambda r: r["resources"]["luts"], rate, False, True,
                            "LUT4 cells", rate_label, log_y=True)
    fig.suptitle("Networks and presets: accuracy, throughput, size")
    _legend(fig, styles)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * rows, 1, 1))
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def resources_figure(results: list[dict], path) -> Path:
    """LUTs and DSP blocks against images per second, one point per design (needs place-and-route)."""
    plt = _pyplot()
    placed = [r for r in results if r.get("resources") and r.get("images_per_second")]
    styles = _styles(placed)
    rows = math.ceil((len(styles[0]) + len(styles[1]) + 1) / 5)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4 + 0.25 * rows))
    for ax, key, label in zip(axes, ("luts", "dsp"), ("LUT4 cells", "DSP blocks")):
        _scatter_with_front(ax, placed, styles, lambda r: r["images_per_second"],
                            lambda r, key=key: r["resources"].get(key, 0), True, False,
                            "images per second (Fmax / interval)", label, log_x=True)
        ax.set_ylim(bottom=0)
    fig.suptitle("Resources against throughput (ECP5-85F, out of context)")
    _legend(fig, styles)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * rows, 1, 1))
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def bench_figures(results: list[dict], folder) -> list[Path]:
    """The benchmark's PNGs in ``folder``: cycles per layer; accuracy against throughput (and
    against LUTs) with the Pareto front when the accuracy is known; resources against throughput
    when place-and-route gave numbers."""
    folder = Path(folder)
    paths = [cycles_per_layer_figure(results, folder / "cycles_per_layer.png")]
    if any(r.get("accuracy") is not None for r in results):
        paths.append(pareto_figure(results, folder / "pareto.png"))
    if any(r.get("resources") and r.get("images_per_second") for r in results):
        paths.append(resources_figure(results, folder / "resources.png"))
    return paths
