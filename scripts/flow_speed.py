"""The flow's own speed (issue 29's table): ``lenet-fpga sim`` on the MNIST test images with
plain simulator processes and on a local Dask cluster, one and two jobs, and where each run's
time went. Prints a Markdown table; run it on an idle machine.

    .venv/bin/python scripts/flow_speed.py --n 1500 --n 10000 [--data DIR] [--json FILE]
    .venv/bin/python scripts/flow_speed.py --explore docs/explore-speed.toml

The simulator model is built (or found in the build folder) first, so the rows compare running,
not building; ``lenet-fpga sim --mnist --jobs 2 --build-dir EMPTY_DIR`` measures a run with its build.
``--explore GRID`` runs the sweep with one and with two workers instead, each from empty build
and results folders (the builds are most of an RTL stage's work).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

WAYS = (("processes", ["--jobs", "1"]), ("processes", ["--jobs", "2"]),
        ("Dask local", ["--scheduler", "local", "--jobs", "1"]), ("Dask local", ["--scheduler", "local", "--jobs", "2"]))
FIELDS = ("build_seconds", "cluster_seconds", "startup_seconds", "sim_seconds", "overhead_seconds")


def sim(n: int, way: list[str], data: str | None) -> dict:
    command = [str(Path(sys.executable).with_name("lenet-fpga")), "sim", "--mnist", "--n", str(n), "--json", *way]
    command += ["--data", data] if data else []
    started = time.monotonic()
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    total = json.loads(out)["total"]
    total["command_seconds"] = round(time.monotonic() - started, 2)
    return total


def explore(grid: str, jobs: int, data: str | None) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="flow-speed-") as folder:
        command = [str(Path(sys.executable).with_name("lenet-fpga")), "explore", "--grid", grid, "--jobs", str(jobs),
                   "--results", f"{folder}/results.jsonl", "--build-dir", f"{folder}/sim", "--json"]
        command += ["--data", data] if data else []
        started = time.monotonic()
        out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        return {"command_seconds": round(time.monotonic() - started, 2), **out["summary"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="images (repeatable; default 1500)")
    parser.add_argument("--data", default=None, help="the MNIST folder (default: lenet-fpga's)")
    parser.add_argument("--json", default=None, help="also write every run's summary to this file")
    parser.add_argument("--explore", metavar="GRID", default=None,
                        help="time an explore sweep of this grid with 1 and 2 workers instead")
    args = parser.parse_args()
    if args.explore:
        runs = {jobs: explore(args.explore, jobs, args.data) for jobs in (1, 2)}
        print("| workers | command s | sweep wall s | points done | engine s/point | stage processes s/point |")
        print("|---|---|---|---|---|---|")
        for jobs, r in runs.items():
            t = r["timing"]
            print(f"| {jobs} | {r['command_seconds']:.1f} | {t['wall_seconds']:.1f} | {r['done']} of {r['points']} | "
                  f"{t['engine_overhead_per_point']:.2f} | {t['stage_process_overhead_per_point']:.2f} |")
        print(f"speed-up {runs[1]['command_seconds'] / runs[2]['command_seconds']:.2f}x")
        if args.json:
            Path(args.json).write_text(json.dumps(runs, indent=1))
        return 0
    sim(2, ["--jobs", "1"], args.data)  # the build, outside the table
    rows = []
    print("| images | path | jobs | command s | wall s | x jobs 1 | build | cluster | start-ups | simulation | "
          "shard processes | simulated cycles/image | mismatches |")
    print("|" + "---|" * 13)
    for n in args.n or [1500]:
        single = {}
        for path, way in WAYS:
            t = sim(n, way, args.data)
            jobs = int(way[way.index("--jobs") + 1])
            single.setdefault(path, t["command_seconds"])
            rows.append({"images": n, "path": path, "jobs": jobs, **t})
            print(f"| {n:,} | {path} | {jobs} | {t['command_seconds']:.1f} | {t['wall_seconds']:.1f} | "
                  f"{single[path] / t['command_seconds']:.2f} | "
                  + " | ".join(f"{t[f]:.1f}" if f in t else "-" for f in FIELDS)
                  + f" | {t['simulated_cycles_per_image']:,.0f} | {t['mismatches']} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
