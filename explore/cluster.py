"""The Dask plumbing: a client, tasks submitted, results handed over as they come, a progress bar.

One machine: a ``LocalCluster`` with one worker process per core, one thread each (a point's
tools are single-threaded and a worker is busy with one point at a time). A cluster: the address
of a running scheduler (``dask scheduler`` and ``dask worker`` on the machines, or
``dask-jobqueue`` on Slurm/PBS/SGE; see the README's "Exploring designs").

Dask reruns the tasks of a worker that dies on another worker (``distributed.scheduler.
allowed-failures`` times, 3 by default, before it gives up with ``KilledWorker``); the client
still receives one result per task, and the caller writes it once, by key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid


from ..model.errors import InputError
from ..model.progress import progress
from .tasks import EVENT_TOPIC

POLL_S = 0.25
CONNECT_TIMEOUT = "10s"  # to reach a scheduler and hear its handshake
REDRAW_S = 2.0  # at most this long between redraws of the progress bar


def _import_distributed():
    try:
        import dask
        import distributed
    except ImportError:
        raise InputError("this needs Dask: pip install 'lenet-fpga[explore]' (dask[distributed])") from None
    return dask, distributed


def check_address(scheduler: str) -> str:
    """``scheduler`` if it is a Dask address Dask can parse (``tcp://HOST:PORT``, a known
    scheme, a port 1..65535); InputError otherwise, before any work is done."""
    _, distributed = _import_distributed()
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import backends

    try:
        scheme, location = parse_address(scheduler, strict=True)
        if scheme not in backends:
            raise ValueError(f"unknown scheme {scheme!r} (Dask knows {', '.join(sorted(backends))})")
        if scheme in ("tcp", "tls"):
            _, port = parse_host_port(location)
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is not 1..65535")
    except (ValueError, TypeError) as e:
        raise InputError(f"--scheduler {scheduler!r} is not a Dask scheduler's address (tcp://HOST:8786): "
                         f"{str(e).splitlines()[0] if str(e) else e.__class__.__name__}") from None
    return scheduler


@contextlib.contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None, processes: bool = True):
    """A Dask client: to the scheduler at ``scheduler`` (``tcp://HOST:8786``), or to a new
    ``LocalCluster`` of ``workers`` processes (default: one per core; ``processes=False``: workers
    in this process, for tasks that only wait on processes of their own), closed on the way out."""
    dask, distributed = _import_distributed()
    cluster = None
    if scheduler:
        check_address(scheduler)
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
        except Exception as e:  # noqa: BLE001 -- whatever a service that is not Dask makes the client raise
            # (a closed stream, a length header of exabytes: MemoryError, a short frame: struct.error)
            reason = (str(e).splitlines() or [""])[0][:200] or e.__class__.__name__
            raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {reason}") from None
    else:
        # One task per worker thread at a time: a second queued on a busy worker would wait
        # there while another worker is free at the end of a sweep.
        with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
            cluster = distributed.LocalCluster(n_workers=workers or os.cpu_count(), threads_per_worker=1,
                                               processes=processes, dashboard_address=":0",
                                               # TCP on 127.0.0.1 even for workers in this process:
                                               # the in-process transport names itself by the
                                               # machine's IP, which it finds by a route to 8.8.8.8
                                               protocol="tcp://", host="127.0.0.1",
                                               silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def worker_count(client) -> int:
    """Threads over all the workers the scheduler has now (at least 1)."""
    return max(1, sum(client.nthreads().values()))


class Progress:
    """A progress bar (``model.progress``) of finished tasks, with the running and failed counts
    beside it. "running" comes from the workers' start and end events (``tasks.announce``)."""

    def __init__(self, client, keys, desc: str, unit: str, disable: bool = False):
        self.keys = set(keys)  # a shared scheduler also tells us of other sweeps' points
        self.running: set[str] = set()
        self.failed = 0
        self.shown = ""
        self.redrawn = time.monotonic()
        self.bar = progress(total=len(self.keys), desc=desc, unit=unit, disable=disable)
        self.client = client
        client.subscribe_topic(EVENT_TOPIC, self._event)

    def _event(self, event) -> None:
        _, message = event
        if message.get("key") not in self.keys:
            return
        if message.get("event") == "start":
            self.running.add(message["key"])
        else:
            self.running.discard(message["key"])

    def refresh(self) -> None:
        text = f"running {len(self.running)}, failed {self.failed}"
        if text != self.shown:
            self.shown = text
            self.bar.set_postfix_str(text, refresh=True)
        elif time.monotonic() - self.redrawn > REDRAW_S:  # the elapsed time goes on
            self.bar.refresh()
        else:
            return
        self.redrawn = time.monotonic()

    def finished(self, key: str | None, failed: bool, count: int = 1) -> None:
        self.running.discard(key)
        self.failed += failed
        self.bar.update(count)
        self.refresh()

    def close(self) -> None:
        self.client.unsubscribe_topic(EVENT_TOPIC)
        self.bar.close()


def new_cancel_event() -> str:
    """The name of a Dask ``Event`` that tells the running tasks of a sweep to stop their tools."""
    return f"lenet-fpga-cancel-{uuid.uuid4().hex}"


def drain(client, futures: dict, on_result, cancel_event: str | None = None) -> None:
    """Hand each future's result to ``on_result(name, result, error)`` as it finishes
    (``futures``: future -> name; ``error`` is the exception of a task that raised, such as
    ``KilledWorker``). On an interruption, set ``cancel_event``, cancel the rest and re-raise."""
    _, distributed = _import_distributed()
    pending = distributed.as_completed(list(futures))
    try:
        while not pending.is_empty():
            batch = pending.next_batch(block=False)
            if not batch:
                time.sleep(POLL_S)
                on_result(None, None, None)  # a tick: lets the caller refresh its progress
                continue
            for future in batch:
                if future.status == "cancelled":
                    continue
                try:
                    result, error = future.result(), None
                except Exception as e:  # KilledWorker, or a task that raised
                    result, error = None, e
                on_result(futures[future], result, error)
    except BaseException:
        if cancel_event is not None:
            with contextlib.suppress(Exception):
                distributed.Event(cancel_event, client=client).set()
        client.cancel(list(futures))
        raise
