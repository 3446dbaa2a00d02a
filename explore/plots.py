"""The Pareto fronts of a sweep as one PNG: a panel per front, every point grey, the front in red
and named."""

from __future__ import annotations

from pathlib import Path

from ..model.atomic import atomic_path
from .pareto import LABELS

COLUMNS = 3


def fronts_figure(found: list[dict], names: dict[str, str], path, title: str) -> Path:
    """``found``: ``pareto.fronts``; ``names``: a point's key -> its short name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    columns = min(COLUMNS, len(found))
    rows = -(-len(found) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.reshape(-1)[len(found):]:
        ax.axis("off")
    for ax, entry in zip(axes.reshape(-1), found):
        front, points, on = entry["front"], entry["points"], entry["on_front"]
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=18, color="0.6", zorder=2, label="points")
        xs, ys = [points[i][0] for i in on], [points[i][1] for i in on]
        # The front's staircase: the edge of what its points dominate.
        ax.plot(xs, ys, "o-", color="tab:red", markersize=5, zorder=3, label="Pareto front",
                drawstyle="steps-pre" if front.x_larger_better else "steps-post")
        spots: dict[tuple, list[str]] = {}  # points at the same place share one label
        for i in on:
            spots.setdefault(points[i][:2], []).append(names.get(points[i][2], points[i][2][:8]))
        ax.margins(0.12)
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        for (x, y), labels in spots.items():
            right, low = (x - x0) > 0.5 * (x1 - x0), (y - y0) < 0.3 * (y1 - y0)  # keep the label inside
            ax.annotate("\n".join(labels), (x, y), fontsize=7, textcoords="offset points",
                        xytext=(-5 if right else 5, 5 if low else -5), ha="right" if right else "left",
                        va="bottom" if low else "top")
        for axis, metric in ((ax.xaxis, front.x), (ax.yaxis, front.y)):
            if metric.startswith("images_per_second"):
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
        ax.set_xlabel(LABELS.get(front.x, front.x), fontsize=8)
        ax.set_ylabel(LABELS.get(front.y, front.y), fontsize=8)
        ax.set_title(front.title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return path
