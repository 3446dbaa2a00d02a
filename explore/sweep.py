"""A sweep: a grid of designs through the flow's stages on Dask workers (``lenet-fpga explore``,
``lenet_fpga/commands/explore.py``, drives it).

The client reads the grid, loads every weight file and resolves every design (a bad input is an
error before any work), keys each point, skips the points the results file has, runs the rest on
the workers, and writes each point's record as it comes. At the end: a table of every point of
the grid, the Pareto fronts, and their picture.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..model import mnist
from ..model import weights as weight_files
from . import cluster, keys
from .grid import Grid, Point, expand
from .results import ResultsFile
from .tasks import golden_task, run_point, settle

DEFAULT_RESULTS = Path("build") / "explore" / "results.jsonl"


def weight_blob(ws) -> dict:
    """A weight file as it travels to the workers: its bytes, its manifest's, their digest."""
    npz, manifest = ws.path.read_bytes(), weight_files.manifest_path(ws.path).read_bytes()
    return {"npz": npz, "json": manifest, "sha256": keys.digest(npz, manifest)}


class Sweep:
    """A grid's points with their keys and everything the client sends with them."""

    def __init__(self, grid: Grid, data_dir=None, check_tools: bool = True):
        self.grid = grid
        weight_sets = {name: weight_files.load(name)
                       for name in dict.fromkeys(grid.weights)}
        self.blobs = {name or "shipped": weight_blob(ws) for name, ws in weight_sets.items()}
        points = expand(grid, weight_sets)
        self.test_set = None
        if "golden" in grid.stages:
            split = mnist.load("test", data_dir)  # InputError, saying where it looked, if absent
            self.test_set = {"images": split.images, "labels": split.labels}
        self.images = {}  # network spec -> the RTL stage's images
        if "rtl" in grid.stages:
            from ..sim.benchmark import bench_images

            for ws in weight_sets.values():
                if ws.network.spec not in self.images:
                    self.images[ws.network.spec] = bench_images(grid.rtl_images, data_dir, ws.network)[0]
        if check_tools:  # workers of this machine: missing tools are an error now, not one per point
            if "rtl" in grid.stages:
                from ..sim.runner import prepare_simulator

                prepare_simulator(grid.simulator)
            if "pnr" in grid.stages:
                from ..boards.platforms import toolchain_env

                toolchain_env("ecp5")
        self.versions = keys.tool_versions(grid.stages, grid.simulator)
        inputs = {"weights": {name: blob["sha256"] for name, blob in self.blobs.items()},
                  "images": {spec: keys.digest(images.tobytes(), str(images.shape).encode())
                             for spec, images in self.images.items()},
                  "test_set": None if self.test_set is None else keys.digest(
                      self.test_set["images"].tobytes(), self.test_set["labels"].tobytes()),
                  "versions": self.versions}
        self.grid_points = len(points)
        self.points: dict[str, Point] = {}
        for point in points:  # grid points with equal keys are one point: the first names it
            self.points.setdefault(keys.point_key(point, inputs), point)

    def task(self, key: str, scratch: str | None, keep_builds: bool, sim_cache: str | None = None) -> dict:
        """What ``tasks.run_point`` gets for the point ``key`` (``sim_cache``: the simulator
        builds' folder, when the workers share the client's)."""
        point = self.points[key]
        return {"key": key, "point": point.describe(), "weights": self.blobs[point.weights],
                "images": self.images.get(point.network), "versions": self.versions,
                "time_limit_s": None if self.grid.time_limit_minutes is None else self.grid.time_limit_minutes * 60,
                "scratch": scratch, "keep_builds": keep_builds, "sim_cache": sim_cache}


def run(sweep: Sweep, keys_to_run: list[str], results: ResultsFile, client, scratch=None, keep_builds=False,
        quiet=False, sim_cache=None) -> dict:
    """Run the points ``keys_to_run`` on ``client``'s workers; append each record to ``results``
    once. Returns the run's timing (``wall_seconds``, ``workers``).

    The golden stage runs once per weight file, as a task of its own; a point's record waits on
    the client for its weight file's golden result (it is a few seconds of numpy, submitted
    first). The points do not depend on it as Dask tasks: a task with a dependency goes to the
    worker that holds it, and one worker would get every point of the file."""
    cancel = cluster.new_cancel_event()
    nonce = cancel[-8:]  # this run's task names: never a result of another run's task of the same name
    started = time.monotonic()
    futures = {}
    with_golden = "golden" in sweep.grid.stages
    if with_golden:
        [test_set] = client.scatter([sweep.test_set], broadcast=True)
        for name in dict.fromkeys(sweep.points[k].weights for k in keys_to_run):
            blob = sweep.blobs[name]
            future = client.submit(golden_task, blob, test_set, scratch, pure=False,
                                   key=f"explore-golden-{blob['sha256'][:20]}-{nonce}")
            futures[future] = ("golden", name)
    for key in keys_to_run:
        # Largest designs first (their builds take longest): the last points to start are short
        # ones, and no worker waits long for another at the end.
        future = client.submit(run_point, sweep.task(key, scratch, keep_builds, sim_cache), cancel, pure=False,
                               key=f"explore-point-{key}-{nonce}", priority=sweep.points[key].multipliers)
        futures[future] = ("point", key)
    written = set(results.read())
    goldens: dict[str, dict] = {}
    waiting: list[dict] = []  # point records whose golden result has not come yet
    progress = cluster.Progress(client, keys_to_run, "explore", "point", disable=quiet)

    def write(record):
        key = record["key"]
        if with_golden:
            record["stages"] = {"golden": goldens[record["point"]["weights"]], **record["stages"]}
            settle(record)
        if key not in written:  # a point's record is written once, whatever Dask did to get it
            results.append(record)
            written.add(key)
        progress.finished(key, record["status"] != "done")

    def on_result(name, result, error):
        if name is None:
            progress.refresh()
            return
        kind, name = name
        if kind == "golden":
            goldens[name] = result if error is None else {"status": "failed", "error": f"{type(error).__name__}: {error}"}
            for record in [r for r in waiting if r["point"]["weights"] == name]:
                waiting.remove(record)
                write(record)
            return
        if error is not None:  # the task itself failed: KilledWorker after repeated worker deaths
            result = settle({"key": name, "point": sweep.points[name].describe(), "stages": {},
                             "task_error": f"{type(error).__name__}: {error}"})
        if with_golden and result["point"]["weights"] not in goldens:
            waiting.append(result)
        else:
            write(result)

    try:
        cluster.drain(client, futures, on_result, cancel)
    finally:
        progress.close()
    return {"wall_seconds": time.monotonic() - started, "workers": cluster.worker_count(client)}


def short_name(record: dict, with_weights: bool = False) -> str:
    """The point as the fronts name it: its design, the part and seed with place and route, and
    (``with_weights``: the sweep has several weight files) the weight file's name."""
    point = record["point"]
    name = point["design"]
    if "pnr" in point["stages"]:
        name += f" {point['device'].removeprefix('LFE5U-')} s{point['seed']}"
    if with_weights:
        name = f"{Path(point['weights']).stem}: {name}"
    return name


def timing(records: list[dict], run_info: dict) -> dict:
    """Where a run's time went: the stage functions, the stage processes around them, the rest of
    the tasks, stages that failed or ran out of time, and what is left of the workers' time
    (Dask, and workers idle at the end)."""
    stage = process = task = lost = 0.0
    goldens = set()
    for r in records:
        task += r.get("task_seconds", 0.0)
        for name, s in r.get("stages", {}).items():
            if name == "golden":
                goldens.add((r["point"]["weights"], s.get("seconds", 0.0)))
            elif s.get("status") == "done":
                stage += s["seconds"]
                process += s["process_seconds"]
            else:  # a failed or stopped stage: its time is the point's, not the engine's
                lost += s.get("process_seconds", 0.0)
                task -= s.get("process_seconds", 0.0)
    golden = sum(seconds for _, seconds in goldens)
    points = max(len(records), 1)
    worker_seconds = run_info["wall_seconds"] * run_info["workers"]
    return {"points": len(records), "workers": run_info["workers"], "wall_seconds": round(run_info["wall_seconds"], 1),
            "stage_function_seconds": round(stage + golden, 1), "failed_stage_seconds": round(lost, 1),
            "stage_process_overhead_per_point": round((process - stage) / points, 2),
            "task_overhead_per_point": round((task - process) / points, 2),
            "engine_overhead_per_point": round((worker_seconds - stage - golden - lost) / points, 2)}
