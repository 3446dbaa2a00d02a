"""What runs on a Dask worker: a point (``run_point``), the golden stage of a weight file
(``golden_task``), a shard of an image set through the RTL (``shard_task``).

A point runs in a scratch folder of its own on the worker, its stages one after another, and
returns its record. Everything a task needs travels with it (the weight bytes, the images): a
worker needs the same installation as the client, not the same files. A stage that fails, runs out of time or is
cancelled is recorded with the last lines of its logs, and the point goes on with its next stage;
the record says which stages were done (``status`` "done" only if all were).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..model.atomic import atomic_path
from ..sim.runner import BUILD_JOBS_VARIABLE
from .isolate import run_in_group
from .keys import tool_versions

EVENT_TOPIC = "lenet-fpga-explore"
LOG_LINES = 15
CANCEL_POLL_S = 2.0


def _worker():
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):  # not in a Dask task
        return None


def _worker_threads() -> int:
    worker = _worker()
    return worker.state.nthreads if worker is not None else 1


def scratch_root(scratch: str | None) -> Path:
    """``scratch``, else the Dask worker's own local folder, else the system's temporary folder."""
    if scratch:
        root = Path(scratch)
    else:
        worker = _worker()
        root = Path(worker.local_directory if worker else tempfile.gettempdir()) / "lenet-fpga-explore"
    root.mkdir(parents=True, exist_ok=True)
    return root


def simulator_cache(root: Path) -> Path:
    """Where a worker's stages keep their simulator builds: ``$LENET_FPGA_BUILD`` where the
    worker's environment sets it, else one folder in its scratch. The builds are keyed by their
    Verilog and locked (``sim.runner``), so every point and shard of a design on a worker (or on
    workers sharing the folder) builds it once."""
    configured = os.environ.get("LENET_FPGA_BUILD")
    return Path(configured) if configured else root / "sim-cache"


def staged_weights(root: Path, weights: dict) -> Path:
    """The weight files (``weights``: ``sha256``, ``npz`` and ``json`` bytes) in this worker's
    cache, written once (atomically: points on other threads may want them at the same time)."""
    folder = root / "weights"
    path = folder / f"{weights['sha256'][:20]}.npz"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(path.with_suffix(".json")) as tmp:
            tmp.write_bytes(weights["json"])
        with atomic_path(path) as tmp:
            tmp.write_bytes(weights["npz"])
    return path


def announce(event: str, key: str) -> None:
    """Tell the client (``cluster.Progress``) that the point ``key`` started or ended here."""
    worker = _worker()
    if worker is not None:
        worker.log_event(EVENT_TOPIC, {"event": event, "key": key})


def cancel_check(event_name: str | None):
    """``cancelled()`` for ``run_in_group``: true once the client set the Dask ``Event`` of its
    sweep (asked of the scheduler at most every ``CANCEL_POLL_S``)."""
    if event_name is None or _worker() is None:
        return lambda: False
    from distributed import Event

    event, last = Event(event_name), [time.monotonic()]

    def cancelled() -> bool:
        if time.monotonic() - last[0] < CANCEL_POLL_S:
            return False
        last[0] = time.monotonic()
        return event.is_set()

    return cancelled


def log_tail(folder: Path, lines: int = LOG_LINES) -> dict[str, list[str]]:
    """The last lines of the stage's own log and of the tool log written last (nextpnr's, the
    simulator build's, ...): what a reader needs to see why a stage failed."""
    logs = sorted(folder.rglob("*.log"), key=lambda p: p.stat().st_mtime)
    chosen = [p for p in logs if p.name == "stage.log"] + [p for p in logs if p.name != "stage.log"][-1:]
    tail = {}
    for path in chosen:
        text = path.read_text(errors="replace").splitlines()
        tail[str(path.relative_to(folder))] = [line[-300:] for line in text[-lines:]]
    return tail


def _stage_error(outcome, point_limit_s: float | None) -> str:
    if outcome.status == "timeout":
        return f"stopped at the point's time limit ({point_limit_s / 60:g} minutes); its process group was killed"
    if outcome.status == "cancelled":
        return "cancelled; its process group was killed"
    return f"the stage process exited with status {outcome.returncode}"


def run_tool_stage(stage: str, spec: dict, folder: Path, time_limit_s: float | None, cancelled,
                   point_limit_s: float | None = None, sim_cache: Path | None = None) -> dict:
    """Run ``stage`` in its own process group in ``folder``, for at most ``time_limit_s`` (what
    is left of the point's ``point_limit_s``), its simulator builds in ``sim_cache`` (default:
    a folder of its own); its result, or why there is none."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "stage": stage, "out": str(folder / "result.json"), "build_dir": str(folder / "build")}
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "LENET_FPGA_BUILD": str(sim_cache or folder / "sim"), "PYTHONUNBUFFERED": "1"}
    # A worker owns as many cores as it has threads: its Verilator builds run that many jobs
    # (cocotb's default is every core of the machine), unless the environment says otherwise.
    env.setdefault(BUILD_JOBS_VARIABLE, str(_worker_threads()))
    outcome = run_in_group([sys.executable, "-m", f"{__package__}.stages", str(spec_path)], cwd=folder,
                           log=folder / "stage.log", env=env, time_limit_s=time_limit_s, cancelled=cancelled)
    result_path = Path(spec["out"])
    if outcome.status == "done" and result_path.exists():
        result = json.loads(result_path.read_text())
        result.update(status="done", process_seconds=round(outcome.seconds, 3))
        return result
    status = outcome.status if outcome.status != "done" else "failed"
    return {"status": status, "error": _stage_error(outcome, point_limit_s), "log": log_tail(folder),
            "process_seconds": round(outcome.seconds, 3)}


def settle(record: dict) -> dict:
    """Set the record's ``status`` ("done" only if every stage was and the task itself did not
    fail: ``task_error``) and its ``error`` (why not)."""
    failed = [f"{name}: {r.get('error', 'failed')}" for name, r in record["stages"].items() if r.get("status") != "done"]
    if record.get("task_error"):
        failed.insert(0, record["task_error"])
    record["status"] = "failed" if failed else "done"
    record.pop("error", None)
    if failed:
        record["error"] = "; ".join(failed)
    return record


def run_point(task: dict, cancel_event: str | None = None) -> dict:
    """Run one point's tool stages (``task``: see ``commands.Sweep.task``) and return its record.

    The golden stage depends on the weights alone: ``golden_task`` runs it once per weight file
    and the client adds its result to the records of that file's points."""
    started = time.perf_counter()
    key, point = task["key"], task["point"]
    announce("start", key)
    worker = _worker()
    record = {"key": key, "point": point, "stages": {},
              "worker": {"address": worker.address if worker else None, "host": socket.gethostname(),
                         "pid": os.getpid()}}
    versions = tool_versions(point["stages"], point["simulator"])
    if versions != task["versions"]:
        differ = sorted(k for k in set(versions) | set(task["versions"]) if versions.get(k) != task["versions"].get(k))
        record["task_error"] = "this worker's tools differ from the client's: " + ", ".join(
            f"{k} {versions.get(k)} here, {task['versions'].get(k)} there" for k in differ)
        return _finish(settle(record), started, key)
    root = scratch_root(task.get("scratch"))
    folder = root / f"point-{key}"
    shutil.rmtree(folder, ignore_errors=True)  # an earlier attempt of this point on this worker
    folder.mkdir(parents=True)
    try:
        spec = {"weights": str(staged_weights(root, task["weights"])), "config": point["config"],
                "simulator": point["simulator"], "device": point["device"], "clock_mhz": point["clock_mhz"],
                "seed": point["seed"]}
        if "rtl" in point["stages"]:
            spec["images"] = str(folder / "images.npz")
            with open(spec["images"], "wb") as f:
                np.savez(f, images=task["images"])
        limit = task.get("time_limit_s")
        cancelled = cancel_check(cancel_event)
        spent = 0.0
        cache = Path(task["sim_cache"]) if task.get("sim_cache") else simulator_cache(root)
        for stage in ("rtl", "pnr"):
            if stage not in point["stages"]:
                continue
            left = None if limit is None else limit - spent
            if left is not None and left <= 0:
                record["stages"][stage] = {"status": "skipped", "error": "the point's time limit was used up"}
                continue
            result = run_tool_stage(stage, spec, folder / stage, left, cancelled, limit, cache)
            spent += result["process_seconds"]
            record["stages"][stage] = result
        settle(record)
    finally:
        if not task.get("keep_builds"):
            shutil.rmtree(folder, ignore_errors=True)
    return _finish(record, started, key)


def _finish(record: dict, started: float, key: str) -> dict:
    record["task_seconds"] = round(time.perf_counter() - started, 3)
    record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    announce("end", key)
    return record


def golden_task(weights: dict, test_set: dict, scratch: str | None = None) -> dict:
    """The golden stage for one weight file (``test_set``: ``images`` and ``labels``)."""
    from ..model import weights as weight_files
    from .stages import golden_accuracy

    try:
        ws = weight_files.load(staged_weights(scratch_root(scratch), weights))
        return {"status": "done", **golden_accuracy(ws, test_set["images"], test_set["labels"])}
    except Exception as e:  # a failure is the point's data, not the sweep's end
        return {"status": "failed", "error": f"{type(e).__name__}: {e}"}


def shard_task(weights: dict, config: dict, design, images: np.ndarray, simulator: str, back_to_back: bool,
               build_root: str | None = None, scratch: str | None = None, cancel_event: str | None = None) -> dict:
    """``images`` through the RTL (the ``shard`` stage, in its own process group): the arrays of a
    ``sim.network.NetworkRun`` and the shard's times. ``design``: the harness the client made
    (``sim.network.HarnessDesign``). The simulator build is cached in ``build_root`` (the
    client's, on one machine) or the worker's ``simulator_cache``: built once for all its shards."""
    import dataclasses
    import uuid

    root = scratch_root(scratch)
    folder = root / f"shard-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True)
    try:
        spec = {"weights": str(staged_weights(root, weights)), "config": config, "simulator": simulator,
                "back_to_back": back_to_back, "images": str(folder / "images.npz"),
                "design": str(folder / "design.json"), "arrays": str(folder / "arrays.npz"),
                "build_root": build_root or str(simulator_cache(root))}
        with open(spec["images"], "wb") as f:
            np.savez(f, images=images)
        Path(spec["design"]).write_text(json.dumps(dataclasses.asdict(design)))
        result = run_tool_stage("shard", spec, folder, None, cancel_check(cancel_event))
        if result["status"] != "done":
            lines = [line for tail in result.get("log", {}).values() for line in tail]
            raise RuntimeError(f"RTL shard: {result['error']}\n" + "\n".join(lines))
        with np.load(spec["arrays"]) as npz:
            arrays = {name: npz[name] for name in npz.files}
        return {**arrays, **{name: result[name] for name in ("sim_seconds", "startup_seconds", "simulated_cycles",
                                                                "process_seconds")}}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
