"""Pareto fronts of a sweep: the points no other point beats on both of two measures.

A point's measures come from its stages (``metrics``): accuracy (golden), multipliers, interval
and latency (rtl), LUTs, DSP blocks and Fmax (pnr), and images per second, at Fmax when place
and route gave one (Fmax / interval, as ``lenet-fpga bench`` reports it) and at the point's clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Front:
    title: str
    x: str  # a metrics name
    y: str
    x_larger_better: bool
    y_larger_better: bool


FRONTS = (
    Front("images/s against LUTs", "luts", "images_per_second", False, True),
    Front("images/s against DSP blocks", "dsp", "images_per_second", False, True),
    Front("accuracy against images/s", "images_per_second", "accuracy", True, True),
    Front("images/s at the clock against multipliers", "multipliers", "images_per_second_at_clock", False, True),
    Front("accuracy against images/s at the clock", "images_per_second_at_clock", "accuracy", True, True),
)

LABELS = {"luts": "LUTs", "dsp": "DSP blocks", "images_per_second": "images/s at Fmax",
          "accuracy": "golden accuracy (MNIST test set)", "multipliers": "multipliers",
          "images_per_second_at_clock": "images/s at the point's clock"}


def metrics(record: dict) -> dict:
    """The measures of one results record (a measure its stages did not give is absent)."""
    stages, point = record.get("stages", {}), record.get("point", {})
    found = {}

    def done(name):
        stage = stages.get(name) or {}
        return stage if stage.get("status") == "done" else None

    if (golden := done("golden")) is not None:
        found["accuracy"] = golden["accuracy"]
    if (rtl := done("rtl")) is not None:
        found.update({k: rtl[k] for k in ("multipliers", "dsp_multipliers", "interval_cycles", "latency_cycles",
                                          "mismatches") if k in rtl})
        if point.get("clock_mhz") and rtl.get("interval_cycles"):
            found["images_per_second_at_clock"] = point["clock_mhz"] * 1e6 / rtl["interval_cycles"]
    if (pnr := done("pnr")) is not None:
        found.update({k: v for k, v in pnr.get("resources", {}).items() if k in ("luts", "dsp", "flip_flops",
                                                                                 "block_ram")})
        if pnr.get("fmax_mhz") is not None:
            found["fmax_mhz"] = pnr["fmax_mhz"]
            if found.get("interval_cycles"):
                found["images_per_second"] = pnr["fmax_mhz"] * 1e6 / found["interval_cycles"]
    return found


def pareto_front(values: list[tuple[float, float]], x_larger_better: bool, y_larger_better: bool) -> list[int]:
    """Indices of the points of ``values`` that no other point dominates (at least as good on
    both measures and better on one), ordered by x. Equal points do not dominate each other."""
    signs = (1 if x_larger_better else -1, 1 if y_larger_better else -1)
    scored = [(signs[0] * x, signs[1] * y) for x, y in values]

    def dominated(i):
        a = scored[i]
        return any(b[0] >= a[0] and b[1] >= a[1] and b != a for b in scored)

    return sorted((i for i in range(len(values)) if not dominated(i)), key=lambda i: values[i][0])


def fronts(records: list[dict]) -> list[dict]:
    """Every front the records have data for: its points (``[x, y, key]``) and which are on it.
    The fronts at the point's clock are left out where Fmax gave images/s."""
    measured = [(r["key"], metrics(r)) for r in records if r.get("status") == "done"]
    have_fmax = any("images_per_second" in m for _, m in measured)
    found = []
    for front in FRONTS:
        if have_fmax and front.y == "accuracy" and front.x == "images_per_second_at_clock":
            continue
        points = [(m[front.x], m[front.y], key) for key, m in measured if front.x in m and front.y in m]
        if not points:
            continue
        on = pareto_front([(x, y) for x, y, _ in points], front.x_larger_better, front.y_larger_better)
        found.append({"front": front, "points": points, "on_front": on})
    return found
