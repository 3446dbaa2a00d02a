"""``lenet-fpga bench-report``: saved ``bench --json`` runs in one table and one set of plots."""

from __future__ import annotations

import json
from pathlib import Path

from . import options

NAME = "bench-report"
HELP = "the table and plots of several saved bench --json runs together"
DESCRIPTION = """\
Tabulate and plot saved `lenet-fpga bench --json` outputs together: one picture of networks
and presets measured in separate runs (each place-and-route takes minutes to an hour). A
network and preset that appears twice keeps the row of the later file."""
EPILOG = """\
example:
  lenet-fpga bench --weights A.npz --preset baseline --pnr --json > a.json
  lenet-fpga bench --weights B.npz --preset fast --pnr --json > b.json
  lenet-fpga bench-report a.json b.json --plots docs/bench"""


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE.json", help="outputs of bench --json")
    options.data_option(parser, "MNIST folder (default: $LENET_FPGA_DATA, else where `lenet-fpga download` puts "
                                "it): rows measured without the test set get the golden model's accuracy from "
                                "their weights file")
    options.plots_option(parser, what="the PNG plots (cycles_per_layer.png, pareto.png, resources.png)")
    options.json_option(parser, "print the merged rows as one JSON object")


def run(args) -> int:
    """The table and plots of several saved ``bench --json`` runs together: a run per network or
    per preset (place-and-route of each takes minutes to an hour) gives one picture of all. A
    network and preset measured twice keeps its last row."""
    from ..model.atomic import check_output
    from ..sim.benchmark import fill_accuracy, format_table, load_bench_document
    from ..sim.plots import network_label

    if args.plots:
        check_output(Path(args.plots) / "cycles.png", "--plots")
    rows: dict[tuple, dict] = {}
    for path in args.files:
        for r in load_bench_document(path)["configs"]:
            rows.pop((network_label(r), r["name"]), None)
            rows[(network_label(r), r["name"])] = {**r, "source": str(path)}
    results = list(rows.values())
    say = (lambda *a, **k: None) if args.json else print
    fill_accuracy(results, Path(args.data) if args.data else None, say, explicit=bool(args.data))
    say(format_table(results, max(r["pixel_bound"] for r in results) if results else 0))
    say(f"from {len(args.files)} bench runs: " + ", ".join(str(p) for p in args.files))
    if args.plots:
        from ..sim.plots import bench_figures

        for path in bench_figures(results, Path(args.plots)):
            say(f"plot: {path}")
    if args.json:
        print(json.dumps({"sources": [str(p) for p in args.files], "configs": results}))
    return 0
