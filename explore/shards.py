"""``lenet-fpga sim --scheduler``: an image set through the RTL in shards on Dask workers.

The same shards as ``sim --jobs`` (``sim.network.shard_bounds``, one per worker at least and none
longer than ``MAX_CHUNK`` images), each a ``shard`` stage on a worker (``tasks.shard_task``); the
client puts the parts back in order and returns the ``sim.network.NetworkRun`` that
``sim.network.simulate`` would have.
"""

from __future__ import annotations

import os

import numpy as np

from ..model.errors import InputError
from ..sim.network import NetworkRun, shard_bounds
from . import cluster
from ..hdl.designs import config_fields
from .sweep import weight_blob
from .tasks import shard_task


def simulate_on_cluster(weights, images: np.ndarray, config, simulator: str, back_to_back: bool, scheduler: str,
                        workers: int | None = None, progress=None) -> NetworkRun:
    """``images`` through the RTL on the workers of ``scheduler`` (``"local"``: a LocalCluster of
    ``workers`` processes, or fewer when there are fewer shards: one image starts one process);
    ``progress(n)`` after each shard of ``n`` images."""
    blob = weight_blob(weights)
    fields = config_fields(config, weights.network)
    if scheduler == "local":  # no more worker processes than the shards they would share
        requested = workers or os.cpu_count() or 1
        workers = min(requested, len(shard_bounds(len(images), requested)))
    with cluster.open_client(None if scheduler == "local" else scheduler, workers) as client:
        bounds = shard_bounds(len(images), cluster.worker_count(client))
        cancel = cluster.new_cancel_event()
        futures = {client.submit(shard_task, blob, fields, images[start:stop], simulator, back_to_back, None, cancel,
                                 pure=False): (start, stop) for start, stop in bounds}
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
    ordered = [parts[bound] for bound in bounds]
    joined = {name: np.concatenate([p[name] for p in ordered])
              for name in ("rtl_logits", "rtl_class", "golden_logits", "golden_class", "cycles")}
    return NetworkRun(**joined, sim_seconds=float(sum(p["sim_seconds"] for p in ordered)), waves=None)
