"""The ``sim`` and ``demo`` subcommands: the RTL against the golden model on real images."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..hdl.commands import config_from_args
from ..model import images as image_sets
from ..model import weights as weight_files
from ..model.errors import InputError
from . import runner
from .network import simulate

MAX_ROWS = 100


def _run(ws, image_set, config, simulator, waves, quiet=False, jobs=1, back_to_back=False, scheduler=None):
    with tqdm(total=len(image_set), desc=f"simulating ({simulator})", unit="image", disable=quiet) as bar:
        if scheduler:  # shards on Dask workers (explore/shards.py), the same shards as --jobs
            from ..explore.shards import simulate_on_cluster

            return simulate_on_cluster(ws, image_set.images, config, simulator, back_to_back, scheduler,
                                       workers=jobs if scheduler == "local" else None, progress=bar.update)
        return simulate(ws, image_set.images, config, simulator=simulator, waves=waves, jobs=jobs,
                        back_to_back=back_to_back, progress=bar.update)


def _image_set(args, network) -> image_sets.ImageSet:
    """``--images FILE``, ``--mnist`` (the MNIST test set) or the shipped digits; ``--n`` first;
    at the network's input size."""
    if getattr(args, "mnist", False):
        if args.images is not None:
            raise InputError("--images and --mnist both name the images; give one")
        from ..model import mnist

        data = getattr(args, "data", None)
        split = mnist.load("test", data)
        image_set = image_sets.ImageSet(split.images, split.labels, Path(data or mnist.default_data_dir()))
    else:
        image_set = image_sets.load_image_set(args.images)
    return image_set.head(args.n).fitted(network)


def _summary(run, image_set, config, simulator) -> dict:
    cycles = run.cycles.astype(np.int64)
    total = {
        "images": int(len(cycles)),
        "mismatches": run.mismatches,
        "cycles_per_image": float(cycles.mean()),
        "cycles_min": int(cycles.min()),
        "cycles_max": int(cycles.max()),
        "simulator": simulator,
        "sim_seconds": round(run.sim_seconds, 2),
        "simulated_cycles_per_second": round(float(cycles.sum()) / max(run.sim_seconds, 1e-9)),
        "arithmetic": config.arithmetic.describe(),
    }
    if image_set.labels is not None:
        total["rtl_accuracy"] = float((run.rtl_class == image_set.labels).mean())
    return total


def cmd_sim(args) -> int:
    ws = weight_files.load(args.weights)
    config = config_from_args(args, ws)
    image_set = _image_set(args, ws.network)
    jobs = getattr(args, "jobs", 1)
    if args.waves and jobs > 1:
        raise InputError("--waves writes one waveform from one simulator run; use --jobs 1")
    scheduler = getattr(args, "scheduler", None)
    if args.waves and scheduler:
        raise InputError("--waves writes one waveform from one simulator run here; leave out --scheduler")
    runner.prepare_simulator(args.simulator)
    started = time.monotonic()
    # The accelerator's timing does not depend on the pixels, so a large set is run for its
    # logits, and back to back is then the faster way (the interval instead of the latency).
    back_to_back = getattr(args, "stream", None)
    if back_to_back is None:
        back_to_back = bool(getattr(args, "mnist", False))
    run = _run(ws, image_set, config, args.simulator, args.waves, quiet=args.json, jobs=jobs,
               back_to_back=back_to_back, scheduler=scheduler)
    per_image = []
    for k in range(len(image_set)):
        entry = {
            "index": k,
            "rtl_logits": run.rtl_logits[k].tolist(),
            "rtl_class": int(run.rtl_class[k]),
            "golden_logits": run.golden_logits[k].tolist(),
            "golden_class": int(run.golden_class[k]),
            "match": bool(run.matches[k]),
            "cycles": int(run.cycles[k]),
        }
        if image_set.labels is not None:
            entry["label"] = int(image_set.labels[k])
        per_image.append(entry)
    summary = _summary(run, image_set, config, args.simulator)
    summary["jobs"] = jobs
    if scheduler:
        summary["scheduler"] = scheduler
    summary["back_to_back"] = back_to_back
    summary["wall_seconds"] = round(time.monotonic() - started, 2)
    if args.waves:
        if run.waves is None:
            raise InputError("the simulator wrote no waveform file")
        target = Path(args.waves_file or f"lenet_sim{run.waves.suffix}")
        shutil.copyfile(run.waves, target)
        summary["waves"] = str(target)
    if args.json:
        print(json.dumps({"images": per_image, "total": summary}))
    else:
        # A row per image is readable for the shipped digits, not for the 10,000 of --mnist.
        shown = per_image if len(per_image) <= MAX_ROWS else [e for e in per_image if not e["match"]][:MAX_ROWS]
        if len(shown) < len(per_image):
            print(f"({len(per_image)} images: only those whose logits differ are listed)")
        if shown:
            print(f"{'#':>5} {'label':>5} {'golden':>6} {'rtl':>4} {'cycles':>7}  logits equal")
        for e in shown:
            print(f"{e['index']:>5} {e.get('label', '-'):>5} {e['golden_class']:>6} {e['rtl_class']:>4} "
                  f"{e['cycles']:>7}  {'yes' if e['match'] else 'NO'}")
        print(_format_summary(summary))
        if "waves" in summary:
            print(f"waveform: {summary['waves']} (open with: gtkwave {summary['waves']})")
    return 1 if run.mismatches else 0


def _format_summary(s: dict) -> str:
    lines = [
        f"{s['images']} images on {s['simulator']}, {s['arithmetic']}: "
        f"{s['mismatches']} mismatches against the golden model",
        f"cycles per image {s['cycles_per_image']:.0f} (min {s['cycles_min']}, max {s['cycles_max']}); "
        f"{s['simulated_cycles_per_second']:,} simulated cycles/s per simulator"
        if not s.get("back_to_back") else
        f"cycles from start to done with the images back to back {s['cycles_per_image']:.0f} "
        f"(min {s['cycles_min']}, max {s['cycles_max']})",
    ]
    if "wall_seconds" in s:
        lines.append(f"wall time {s['wall_seconds']:.1f} s with " + (
            f"{s['jobs']} simulator job(s)" if "scheduler" not in s else f"the Dask workers of {s['scheduler']}"))
    if "rtl_accuracy" in s:
        lines.append(f"RTL accuracy on these images {s['rtl_accuracy']:.1%}")
    return "\n".join(lines)


def cmd_demo(args) -> int:
    """The README's main job: shipped weights, shipped digits, golden model and RTL side by side."""
    ws = weight_files.load(getattr(args, "weights", None))
    image_set = image_sets.load_image_set(None).fitted(ws.network)
    config = config_from_args(args, ws)
    simulator = args.simulator
    runner.prepare_simulator(simulator)
    accuracy = ws.manifest.get("accuracy", {}).get("fixed")
    print(f"network {ws.network.spec}, {config.arithmetic.describe()}, weights {ws.path.name}"
          + (f" (MNIST test accuracy {accuracy:.2%} in the golden model)" if accuracy is not None else ""))
    run = _run(ws, image_set, config, simulator, waves=False)
    print("\n(exact: all ten RTL logits equal the golden model's, bit for bit)\n")
    for start in range(0, len(image_set), 10):
        row = range(start, min(start + 10, len(image_set)))
        print("label  " + " ".join(f"{int(image_set.labels[k]):>2}" for k in row))
        print("golden " + " ".join(f"{int(run.golden_class[k]):>2}" for k in row))
        print("RTL    " + " ".join(f"{int(run.rtl_class[k]):>2}" for k in row))
        print("exact  " + " ".join(" =" if run.matches[k] else " X" for k in row))
        print()
    print(_format_summary(_summary(run, image_set, config, simulator)))
    if args.plot:
        from .plots import digits_figure

        path = digits_figure(image_set.images, image_set.labels, run.rtl_class, run.matches, args.plot)
        print(f"picture of the digits and the RTL's answers: {path}")
    return 1 if run.mismatches else 0
