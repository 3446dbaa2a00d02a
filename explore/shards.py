"""``lenet-fpga sim --scheduler``: an image set through the RTL in shards on Dask workers.

The same shards as ``sim --jobs`` (``sim.network.shard_bounds``, one per worker at least and none
longer than ``MAX_CHUNK`` images), each a ``shard`` stage on a worker (``tasks.shard_task``); the
client puts the parts back in order and returns the ``sim.network.NetworkRun`` that
``sim.network.simulate`` would have.

The client makes the design's Verilog once (or finds it: ``sim.design_cache``) and sends it to
each worker once (``scatter``). On one machine (``"local"``) it also builds the simulator first,
in its own build folder, which the workers then share: a worker starts simulating at once, and
the next command finds the build. A remote worker builds once per design in its cache
(``tasks.simulator_cache``).
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..hdl.designs import config_fields
from ..model.errors import InputError
from ..sim import runner
from ..sim.network import TOPLEVEL, NetworkRun, harness_design, shard_bounds
from . import cluster
from .sweep import weight_blob
from .tasks import shard_task

# What each shard returns besides its arrays, summed over the shards.
SUMMED = ("sim_seconds", "startup_seconds", "process_seconds", "simulated_cycles")


def simulate_on_cluster(weights, images: np.ndarray, config, simulator: str, back_to_back: bool, scheduler: str,
                        workers: int | None = None, progress=None, build_root=None, stage=None) -> NetworkRun:
    """``images`` through the RTL on the workers of ``scheduler`` (``"local"``: a LocalCluster of
    ``workers`` processes, or fewer when there are fewer shards: one image starts one process);
    ``stage`` is told what happens ("cluster", "build" on one machine, "simulate"), ``progress(n)``
    after each shard of ``n`` images."""
    local = scheduler == "local"
    blob = weight_blob(weights)
    fields = config_fields(config, weights.network)
    build_root = runner.check_build_root(build_root)
    if local:  # no more worker processes than the shards they would share
        requested = workers or os.cpu_count() or 1
        workers = min(requested, len(shard_bounds(len(images), requested)))
    design = harness_design(weights, config, False, build_root)  # the Verilog, made once (or found)
    if stage:
        stage("cluster")
    started = time.monotonic()
    # A shard's work runs in a process of its own (tasks.shard_task), which its worker only
    # waits for: on one machine the workers are threads of this process, which start in a
    # fraction of the time worker processes take.
    with cluster.open_client(None if local else scheduler, workers, processes=not local) as client:
        bounds = shard_bounds(len(images), cluster.worker_count(client))
        shared = client.scatter(design, broadcast=True)  # a megabyte of Verilog: once per worker
        cluster_seconds = time.monotonic() - started
        parts, build_seconds = _run_shards(client, design, shared, blob, fields, images, bounds, simulator,
                                           back_to_back, build_root if local else None, progress, stage)
    ordered = [parts[bound] for bound in bounds]
    joined = {name: np.concatenate([p[name] for p in ordered])
              for name in ("rtl_logits", "rtl_class", "golden_logits", "golden_class", "cycles")}
    summed = {name: sum(p[name] for p in ordered) for name in SUMMED}
    return NetworkRun(**joined, sim_seconds=float(summed["sim_seconds"]), waves=None,
                      startup_seconds=float(summed["startup_seconds"]), build_seconds=build_seconds,
                      model=design.cycle_model, simulated_cycles=int(summed["simulated_cycles"]),
                      cluster_seconds=cluster_seconds,
                      # The shard processes' time outside the simulators: Python, imports, the golden model.
                      overhead_seconds=float(summed["process_seconds"] - summed["sim_seconds"]
                                             - summed["startup_seconds"]))


def _run_shards(client, design, shared, blob, fields, images, bounds, simulator, back_to_back, build_root, progress,
                stage) -> tuple[dict, float]:
    """Each shard's result by its bounds, and the seconds of the build the client made first
    (``build_root``: on one machine, the workers share the client's builds)."""
    build_seconds = 0.0
    if build_root is not None:
        if stage:
            stage("build")
        _, build_seconds = runner.build(design.verilog, TOPLEVEL, simulator, False, build_root)
    if stage:
        stage("simulate")
    cancel = cluster.new_cancel_event()
    futures = {client.submit(shard_task, blob, fields, shared, images[start:stop], simulator, back_to_back,
                             None if build_root is None else str(build_root), None, cancel, pure=False): (start, stop)
               for start, stop in bounds}
    parts = {}

    def on_result(bound, part, error):
        if bound is None:
            return
        if error is not None:
            raise InputError(f"images {bound[0]}..{bound[1] - 1}: {error}")
        parts[bound] = part
        if progress:
            progress(bound[1] - bound[0])

    cluster.drain(client, futures, on_result, cancel)
    return parts, build_seconds
