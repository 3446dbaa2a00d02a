"""Whole-network simulation: generate the design, run images through it, compare with the golden model.

Any design configuration (``StreamingConfig`` or ``CompactConfig``) goes through the same
harness (``SimHarness``) and the same testbenches; a design without weights in its bitstream
gets them loaded from the harness's ROMs before its first image. Three ways to run images:

* ``simulate``: one image at a time (``tb_lenet``), each image's ``cycles`` is its latency;
  the images can be sharded across several simulator processes (``jobs``);
* ``simulate_banks``: one image at a time, with several weight sets loaded in turn;
* ``stream``: back to back (``tb_stream``), the next image taken as soon as the accelerator's
  pixel input closes; gives the latency of the first image and the interval between images.

Runs of one design share one cached simulator build.
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.back import verilog as amaranth_verilog

from ..hdl.accelerator import Accelerator
from ..model import golden
from ..model.weights import WeightSet
from . import design_cache, runner
from .harness import SimHarness
from .waves import readable_verilog

TOPLEVEL = "lenet_sim"
# Images per simulator run when sharding: each run pays ~1 s to start the simulator and Python
# (2,000 images back to back take about 20 s on Verilator), and a run is the unit of progress
# and of work handed to a job.
MAX_CHUNK = 2000


@dataclass(frozen=True)
class NetworkRun:
    rtl_logits: np.ndarray  # int64 [N,C]
    rtl_class: np.ndarray  # [N]
    golden_logits: np.ndarray
    golden_class: np.ndarray
    cycles: np.ndarray  # [N] start -> done
    sim_seconds: float  # simulating, summed over the runs (the testbenches' own time)
    waves: Path | None
    startup_seconds: float = 0.0  # launching the simulator runs, summed
    build_seconds: float = 0.0  # building the simulator (0 when the build was cached)
    stamps: np.ndarray | None = None  # [N, phases]: the cycle each phase began (designs with phases)
    model: dict[str, int] | None = None  # the design's cycle model per phase, where it has one
    simulated_cycles: int = 0  # clock cycles the simulators ran through the images, summed over the runs
    cluster_seconds: float = 0.0  # starting a Dask cluster (or reaching one) and sending it the design
    overhead_seconds: float = 0.0  # on Dask workers: the shard processes' time outside their simulators

    @property
    def matches(self) -> np.ndarray:
        return (self.rtl_logits == self.golden_logits).all(axis=1) & (self.rtl_class == self.golden_class)

    @property
    def mismatches(self) -> int:
        return int((~self.matches).sum())

    def measured_phases(self) -> np.ndarray:
        """[N, phases + 1] cycles per phase in ``model`` order (the input, then each phase)."""
        edges = np.concatenate([np.zeros((len(self.cycles), 1), np.int64), self.stamps, self.cycles[:, None]], axis=1)
        return np.diff(edges, axis=1)


def harness_verilog(accelerator: Accelerator, banks=(), readable: bool = False) -> str:
    """The simulation top's Verilog; ``readable`` keeps anonymous wires out of waveforms."""
    harness = SimHarness(accelerator, banks)
    return readable_verilog(harness, TOPLEVEL) if readable else amaranth_verilog.convert(harness, name=TOPLEVEL)


def _design(weights: WeightSet, config) -> tuple[Accelerator, list[bytes]]:
    """The accelerator, and the weight banks its harness needs (none if the weights are in it)."""
    accelerator = config.build(weights)
    return accelerator, [] if accelerator.weights_in_bitstream else [accelerator.weight_image()]


@dataclass(frozen=True)
class HarnessDesign:
    """A design in its simulation harness, ready to build and run: what a simulator run needs,
    so that a process (a Dask worker's) given it generates nothing again."""

    verilog: str
    loads_weights: bool  # the harness streams the weights in after reset (not in the bitstream)
    phases: int  # the accelerator's phases (0: it has no ``phase`` signal)
    cycle_model: dict[str, int] | None


def harness_design(weights: WeightSet, config, waves: bool = False, cache_root=None) -> HarnessDesign:
    """``config``'s accelerator for ``weights`` in its harness (``waves``: readable Verilog),
    kept in (and taken from) ``cache_root`` if given (``design_cache``)."""
    if cache_root is not None:
        digest = design_cache.key(weights, config, waves)
        fields = design_cache.load(cache_root, digest)
        if fields is not None:
            return HarnessDesign(**fields)
    accelerator, banks = _design(weights, config)
    design = HarnessDesign(harness_verilog(accelerator, banks, readable=waves), bool(banks), accelerator.phases,
                           accelerator.cycle_model())
    if cache_root is not None:
        design_cache.store(cache_root, digest, dataclasses.asdict(design))
    return design


def shard_bounds(n: int, jobs: int, chunk: int | None = None) -> list[tuple[int, int]]:
    """``[start, stop)`` of each simulator run: ``chunk`` images each, or (``None``) at least
    one run per job and none longer than ``MAX_CHUNK``, all about the same size."""
    if n < 1:
        return []
    if chunk is None:
        runs = max(jobs, math.ceil(n / MAX_CHUNK))
        runs = min(n, math.ceil(runs / jobs) * jobs)  # whole rounds of jobs keep every job busy
        chunk = math.ceil(n / runs)
    return [(start, min(start + chunk, n)) for start in range(0, n, chunk)]


def simulate(
    weights: WeightSet,
    images: np.ndarray,
    config,
    simulator: str = "verilator",
    waves: bool = False,
    chunk: int | None = None,
    progress=None,
    build_root=None,
    jobs: int = 1,
    back_to_back: bool = False,
    stage=None,
    design: HarnessDesign | None = None,
) -> NetworkRun:
    """Run ``images`` through the RTL, in chunks (one simulator run each, up to ``jobs`` at
    once), and through the golden model.

    One image at a time (``tb_lenet``), so each image's ``cycles`` is its latency; or, with
    ``back_to_back``, each chunk streamed (``tb_stream``): fewer simulated cycles per image
    (the interval instead of the latency), and ``cycles`` then includes the time an image
    waits behind the one before it. The simulator is built first (cached, and under a lock, so
    parallel runs share it); ``stage`` is told what happens ("build", then "simulate") and
    ``progress`` the images each finished run covered. ``waves`` needs a single run (every run
    would write the same file). ``design``: the harness already made (``harness_design``).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if waves and jobs > 1:
        raise ValueError("waves need a single simulator run (jobs=1)")
    network = weights.network
    design = design or harness_design(weights, config, waves, runner.check_build_root(build_root))
    bounds = shard_bounds(len(images), jobs, len(images) if waves else chunk)
    testbench = f"{__package__}.{'tb_stream' if back_to_back else 'tb_lenet'}"
    if stage:
        stage("build")
    _, build_seconds = runner.build(design.verilog, TOPLEVEL, simulator, waves, build_root)
    if stage:
        stage("simulate")

    def one(bound):
        start, stop = bound
        data = {"images": images[start:stop], "classes": network.classes}
        if design.loads_weights:  # every simulator run starts from reset: load the weights first
            data["load" if back_to_back else "segments"] = np.array([[0, stop - start]])
        return runner.run(design.verilog, TOPLEVEL, testbench, data, simulator=simulator, waves=waves,
                          build_root=build_root)

    parts: dict[tuple[int, int], runner.SimResult] = {}
    # Threads are enough: each run is a simulator subprocess; Python only waits for it.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one, bound): bound for bound in bounds}
        try:
            for future in as_completed(futures):
                parts[futures[future]] = future.result()
                if progress:
                    progress(futures[future][1] - futures[future][0])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    ordered = [parts[bound] for bound in bounds]
    keys = ("logits", "klass", "cycles") + (("stamps",) if design.phases and not back_to_back else ())
    keys += ("simulated_cycles",)
    outputs = {key: np.concatenate([np.atleast_1d(p.outputs[key]) for p in ordered]) for key in keys}
    golden_logits = golden.forward(images, weights.params, config.arithmetic, network)
    return NetworkRun(
        rtl_logits=outputs["logits"],
        rtl_class=outputs["klass"],
        golden_logits=golden_logits,
        golden_class=golden.classify(golden_logits),
        cycles=outputs["cycles"],
        # Simulator time summed over the runs (more than the wall time when they overlap).
        sim_seconds=sum(p.tb_seconds for p in ordered),
        startup_seconds=sum(p.startup_seconds for p in ordered),
        build_seconds=build_seconds,
        waves=ordered[-1].waves if ordered else None,
        stamps=outputs.get("stamps"),
        model=design.cycle_model,
        simulated_cycles=int(outputs["simulated_cycles"].sum()),
    )


def simulate_banks(banks, segments, images, config, simulator: str = "verilator", waves: bool = False,
                   build_root=None) -> NetworkRun:
    """Load weight set ``banks[b]`` then classify ``n`` images, for each ``(b, n)`` of ``segments``
    in order; ``images`` holds all of them in that order. Each image is compared with the golden
    model of the weights loaded before it. The weight sets must be for one network; the design
    is built with the first (its weights, if in the bitstream, are replaced by the first load)."""
    banks = list(banks)
    segments = np.asarray(segments, np.int64).reshape(-1, 2)
    images = np.asarray(images, np.uint8)
    if segments[:, 1].sum() != len(images):
        raise ValueError(f"segments ask for {segments[:, 1].sum()} images, {len(images)} given")
    network = banks[0].network
    if any(ws.network != network for ws in banks):
        raise ValueError("the weight banks are for different networks")
    accelerator = config.build(banks[0])
    images_of = [accelerator.weight_image()] + [config.build(ws).weight_image() for ws in banks[1:]]
    source = harness_verilog(accelerator, images_of)
    result = runner.run(source, TOPLEVEL, f"{__package__}.tb_lenet",
                        {"images": images, "segments": segments, "classes": network.classes},
                        simulator=simulator, waves=waves, build_root=build_root)
    golden_logits, start = [], 0
    for bank, n in segments:
        golden_logits.append(golden.forward(images[start : start + n], banks[bank].params, config.arithmetic, network))
        start += n
    golden_logits = np.concatenate(golden_logits) if golden_logits else np.zeros((0, network.classes), np.int64)
    out = result.outputs
    return NetworkRun(
        rtl_logits=out["logits"], rtl_class=out["klass"], golden_logits=golden_logits,
        golden_class=golden.classify(golden_logits), cycles=out["cycles"], sim_seconds=result.tb_seconds,
        startup_seconds=result.startup_seconds, build_seconds=result.build_seconds, waves=result.waves,
        stamps=out["stamps"] if accelerator.phases else None, model=accelerator.cycle_model(),
        simulated_cycles=int(out["simulated_cycles"]),
    )


@dataclass(frozen=True)
class StreamRun:
    """Images streamed back to back: what came out and when."""

    rtl_logits: np.ndarray  # int64 [N,10]
    rtl_class: np.ndarray  # [N]
    golden_logits: np.ndarray  # int64 [N,10]
    cycles: np.ndarray  # [N] the accelerator's own start -> done count (queueing included)
    taken: np.ndarray  # [N] clock cycle at which each image's start was taken
    done_at: np.ndarray  # [N] clock cycle at which each image's done rose
    matches: np.ndarray  # [N] bool: all ten logits equal the golden model's
    sim_seconds: float

    @property
    def mismatches(self) -> int:
        return int((~self.matches).sum())

    @property
    def latency(self) -> int:
        """Cycles from start to done of the first image, which had the pipeline to itself."""
        return int(self.cycles[0])

    @property
    def interval(self) -> float:
        """Cycles between results in the steady state: the mean gap between the ``done`` pulses
        of the second half of the images (the first gaps may still show the pipeline filling)."""
        if len(self.done_at) < 2:
            raise ValueError("the interval needs at least two images")
        gaps = np.diff(self.done_at.astype(np.int64))
        return float(gaps[len(gaps) // 2 :].mean())


def stream(
    weights: WeightSet,
    images: np.ndarray,
    config,
    simulator: str = "verilator",
    build_root=None,
) -> StreamRun:
    """Stream ``images`` back to back through the RTL in one simulator run (``tb_stream``)."""
    design = harness_design(weights, config, cache_root=runner.check_build_root(build_root))
    network = weights.network
    golden_logits = golden.forward(images, weights.params, config.arithmetic, network)
    data = {"images": images, "golden": golden_logits, "classes": network.classes}
    if design.loads_weights:
        data["load"] = np.array(1)
    result = runner.run(design.verilog, TOPLEVEL, f"{__package__}.tb_stream", data,
                        simulator=simulator, build_root=build_root)
    out = result.outputs
    return StreamRun(
        rtl_logits=out["logits"],
        rtl_class=out["klass"],
        golden_logits=golden_logits,
        cycles=out["cycles"],
        taken=out["taken"],
        done_at=out["done_at"],
        matches=out["matches"] & (out["klass"] == golden.classify(golden_logits)),
        sim_seconds=result.tb_seconds,
    )
