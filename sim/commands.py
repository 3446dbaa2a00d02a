"""The ``sim`` and ``demo`` subcommands: the RTL against the golden model on real images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..hdl.commands import config_from_args
from ..model import images as image_sets
from ..model import weights as weight_files
from ..model.errors import InputError
from . import runner
from .network import simulate


def _run(ws, image_set, config, simulator, waves, quiet=False):
    with tqdm(total=len(image_set), desc=f"simulating ({simulator})", unit="image", disable=quiet) as bar:
        return simulate(ws, image_set.images, config, simulator=simulator, waves=waves,
                        chunk=len(image_set) if waves else 100, progress=bar.update)


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
    image_set = image_sets.load_image_set(args.images).head(args.n)
    runner.prepare_simulator(args.simulator)
    run = _run(ws, image_set, config, args.simulator, args.waves, quiet=args.json)
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
    if args.waves:
        if run.waves is None:
            raise InputError("the simulator wrote no waveform file")
        target = Path(args.waves_file or f"lenet_sim{run.waves.suffix}")
        shutil.copyfile(run.waves, target)
        summary["waves"] = str(target)
    if args.json:
        print(json.dumps({"images": per_image, "total": summary}))
    else:
        print(f"{'#':>3} {'label':>5} {'golden':>6} {'rtl':>4} {'cycles':>7}  logits equal")
        for e in per_image:
            print(f"{e['index']:>3} {e.get('label', '-'):>5} {e['golden_class']:>6} {e['rtl_class']:>4} "
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
        f"{s['simulated_cycles_per_second']:,} simulated cycles/s",
    ]
    if "rtl_accuracy" in s:
        lines.append(f"RTL accuracy on these images {s['rtl_accuracy']:.1%}")
    return "\n".join(lines)


def cmd_demo(args) -> int:
    """The README's main job: shipped weights, shipped digits, golden model and RTL side by side."""
    ws = weight_files.load(None)
    image_set = image_sets.load_image_set(None)
    config = config_from_args(args, ws)
    simulator = args.simulator
    runner.prepare_simulator(simulator)
    print(f"LeNet-5, {config.arithmetic.describe()}, weights {ws.path.name} "
          f"(MNIST test accuracy {ws.manifest['accuracy']['fixed']:.2%} in the golden model)")
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
