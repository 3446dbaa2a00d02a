"""The ``sim`` and ``demo`` subcommands: the RTL against the golden model on real images."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..hdl.commands import config_from_args, describe_config
from ..model import images as image_sets
from ..model import weights as weight_files
from ..model.atomic import atomic_path, check_output
from ..model.errors import InputError
from . import runner
from .network import TOPLEVEL, simulate
from .waves import gtkw_layout
from ..hdl.accelerator import read_design

MAX_ROWS = 100


def _run(ws, image_set, config, simulator, waves, quiet=False, jobs=1, back_to_back=False, scheduler=None):
    """The simulation with a progress bar: the simulator's build (minutes for Verilator, cached
    after), then the images, so the bar's rate is the images' own; or the shards on Dask workers."""
    with tqdm(total=len(image_set), desc=f"building the {simulator} model", unit="image", disable=quiet) as bar:
        if scheduler:  # shards on Dask workers (explore/shards.py), the same shards as --jobs
            from ..explore.shards import simulate_on_cluster

            bar.set_description(f"simulating ({simulator}, Dask)")
            return simulate_on_cluster(ws, image_set.images, config, simulator, back_to_back, scheduler,
                                       workers=jobs if scheduler == "local" else None, progress=bar.update)

        def stage(name):
            if name == "simulate":
                bar.set_description(f"simulating ({simulator})")
                bar.reset(total=len(image_set))  # the rate counts from here

        return simulate(ws, image_set.images, config, simulator=simulator, waves=waves, jobs=jobs,
                        back_to_back=back_to_back, progress=bar.update, stage=stage)


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
    return image_set.head(args.n).fitted(network).checked_labels(network)


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
        "startup_seconds": round(run.startup_seconds, 2),
        "build_seconds": round(run.build_seconds, 2),
        # The testbench's own time only: the build and the simulator's start-up are reported apart.
        "simulated_cycles_per_second": round(float(cycles.sum()) / max(run.sim_seconds, 1e-9)),
        "arithmetic": config.arithmetic.describe(),
        "design": describe_config(config),
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
    if args.waves_file and not args.waves:
        raise InputError("--waves-file names the waveform --waves writes: give --waves as well")
    scheduler = getattr(args, "scheduler", None)
    if args.waves and scheduler:
        raise InputError("--waves writes one waveform from one simulator run here; leave out --scheduler")
    waves_target = None
    if args.waves:
        suffix = ".fst" if args.simulator == "icarus" else ".vcd"
        waves_target = check_output(args.waves_file or f"lenet_sim{suffix}", "--waves-file")
    runner.prepare_simulator(args.simulator)
    runner.check_build_root()
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
        with atomic_path(waves_target) as tmp:
            shutil.copyfile(run.waves, tmp)
        summary["waves"] = str(waves_target)
        layout = waves_target.with_suffix(".gtkw")
        with atomic_path(layout) as tmp:
            tmp.write_text(read_design(ws, config, lambda design: gtkw_layout(design, waves_target.name, TOPLEVEL)))
        summary["gtkw"] = str(layout)
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
            print(f"waveform: {summary['waves']} (open with: gtkwave {summary['gtkw']}: the handshakes and "
                  f"each block's key signals, grouped)")
    return 1 if run.mismatches else 0


def _format_summary(s: dict) -> str:
    lines = [
        f"{s['images']} images on {s['simulator']} ({s['design']}), {s['arithmetic']}: "
        f"{s['mismatches']} mismatches against the golden model",
        f"cycles per image {s['cycles_per_image']:.0f} (min {s['cycles_min']}, max {s['cycles_max']}); "
        f"{s['simulated_cycles_per_second']:,} simulated cycles/s per simulator (build {s['build_seconds']:.1f} s, "
        f"start-up {s['startup_seconds']:.1f} s, simulation {s['sim_seconds']:.1f} s)"
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
    if args.plot:
        check_output(args.plot, "--plot")
    simulator = args.simulator
    runner.prepare_simulator(simulator)
    runner.check_build_root()
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


def cmd_classify(args) -> int:
    """A user's own pictures through the golden model, and on request through the RTL."""
    from ..model import digits, golden
    from ..model.images import fit

    ws = weight_files.load(args.weights)
    network = ws.network
    config = config_from_args(args, ws) if args.rtl else None
    if args.rtl:
        runner.prepare_simulator(args.simulator)
        runner.check_build_root()
    pictures = np.stack([fit(digits.prepare(digits.load_picture(path)), network.image_size)
                         for path in args.pictures])
    arithmetic = config.arithmetic if config is not None else ws.arithmetic
    logits = golden.forward(pictures, ws.params, arithmetic, network)
    classes = golden.classify(logits)
    run = _run(ws, image_sets.ImageSet(pictures, None), config, args.simulator, False, quiet=args.json) \
        if args.rtl else None
    answers = []
    for k, path in enumerate(args.pictures):
        entry = {"picture": str(path), "class": int(classes[k]), "logits": logits[k].tolist()}
        if run is not None:
            entry.update(rtl_class=int(run.rtl_class[k]), rtl_logits=run.rtl_logits[k].tolist(),
                         match=bool(run.matches[k]), cycles=int(run.cycles[k]))
        answers.append(entry)
    if args.json:
        print(json.dumps({"network": network.spec, "arithmetic": arithmetic.describe(), "pictures": answers}))
    else:
        for k, entry in enumerate(answers):
            print(f"{entry['picture']}: as the network sees it ({network.image_size}x{network.image_size}):")
            print(digits.ascii_art(pictures[k]))
            line = f"class {entry['class']} (golden model, logits {entry['logits']})"
            if run is not None:
                line += (f"; RTL class {entry['rtl_class']}, "
                         f"{'every logit equal' if entry['match'] else 'LOGITS DIFFER'}, {entry['cycles']} cycles")
            print(line + "\n")
    return 1 if run is not None and run.mismatches else 0
