"""The stages of a point, each a call of the flow's own functions:

* ``golden``: accuracy of the golden model (``model.golden.forward``) on the MNIST test set;
  numpy only, so it runs in the worker itself;
* ``rtl``: the design streams images through the RTL (``sim.benchmark.bench_config``, which
  calls ``sim.network.stream``): multipliers, latency, interval, their floors, bit-exactness;
* ``pnr``: out-of-context synthesis and place and route (``boards.pnr.place_and_route``):
  resources and Fmax;
* ``shard``: a slice of an image set through the RTL (``sim.network.simulate``), for
  ``lenet-fpga sim --scheduler``.

A tool stage (rtl, pnr, shard) runs in a process of its own, in a process group of its own
(``isolate.run_in_group``): ``python -m lenet_fpga.explore.stages SPEC.json``. The spec names the
stage, its inputs (files in the point's scratch folder) and where to write the result.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from ..hdl.designs import config_from_fields
from ..model import golden
from ..model import weights as weight_files
from ..model.atomic import atomic_path
from ..model.images import fit_network

# What the rtl stage keeps of bench_config's report (the per-image lists stay out of the results).
RTL_FIELDS = ("multipliers", "dsp_multipliers", "logic_multipliers", "macs", "weight_bits", "latency_cycles",
              "interval_cycles", "serial_floor", "interval_floor", "pixel_bound", "interval_ratio")


def golden_accuracy(weights, images: np.ndarray, labels: np.ndarray) -> dict:
    """The golden model's accuracy on ``images`` (fitted to the network's input) with the
    weights' own arithmetic."""
    started = time.perf_counter()
    fitted = fit_network(images, weights.network)
    logits = golden.forward(fitted, weights.params, weights.arithmetic, weights.network)
    return {"accuracy": golden.accuracy(logits, labels), "images": int(len(images)),
            "seconds": round(time.perf_counter() - started, 3)}


def rtl_stage(spec: dict) -> dict:
    from ..sim.benchmark import bench_config
    from ..sim.runner import prepare_simulator

    ws = weight_files.load(spec["weights"])
    config = config_from_fields(spec["config"], ws.network)
    with np.load(spec["images"]) as npz:
        images = npz["images"]
    prepare_simulator(spec["simulator"])
    report = bench_config("point", config, ws, images, spec["simulator"])
    result = {field: report[field] for field in RTL_FIELDS}
    result.update(images=report["rtl"]["images"], mismatches=report["rtl"]["mismatches"],
                  sim_seconds=report["rtl"]["sim_seconds"])
    return result


def pnr_stage(spec: dict) -> dict:
    from ..boards.pnr import place_and_route

    ws = weight_files.load(spec["weights"])
    config = config_from_fields(spec["config"], ws.network)
    report = place_and_route(ws, config, Path(spec["build_dir"]), device=spec["device"],
                             target_mhz=spec["clock_mhz"], seed=spec["seed"])
    return {"fmax_mhz": report["fmax_mhz"], "timing_met": report["timing_met"],
            "resources": {name: r["used"] for name, r in report["resources"].items()},
            "available": {name: r["available"] for name, r in report["resources"].items()}}


def shard_stage(spec: dict) -> dict:
    from ..sim.network import HarnessDesign, simulate

    ws = weight_files.load(spec["weights"])
    config = config_from_fields(spec["config"], ws.network)
    with np.load(spec["images"]) as npz:
        images = npz["images"]
    design = HarnessDesign(**json.loads(Path(spec["design"]).read_text()))
    run = simulate(ws, images, config, simulator=spec["simulator"], back_to_back=spec["back_to_back"],
                   build_root=spec["build_root"], design=design)
    with atomic_path(spec["arrays"]) as tmp, open(tmp, "wb") as f:
        np.savez(f, rtl_logits=run.rtl_logits, rtl_class=run.rtl_class, golden_logits=run.golden_logits,
                 golden_class=run.golden_class, cycles=run.cycles)
    return {"images": int(len(images)), "sim_seconds": run.sim_seconds, "startup_seconds": run.startup_seconds,
            "simulated_cycles": run.simulated_cycles}


TOOL_STAGES = {"rtl": rtl_stage, "pnr": pnr_stage, "shard": shard_stage}


def main(argv=None) -> int:
    """Run the stage ``SPEC.json`` names; write its result (``seconds``: the stage function's
    own time) to the spec's ``out``. A failure prints its traceback to the log, exit 1."""
    from .isolate import watch_parent

    watch_parent()
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(open(argv[0]).read())
    started = time.perf_counter()
    try:
        result = TOOL_STAGES[spec["stage"]](spec)
    except Exception:
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        return 1
    result["seconds"] = round(time.perf_counter() - started, 3)
    with atomic_path(spec["out"]) as tmp:
        tmp.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
