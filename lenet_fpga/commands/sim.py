"""``lenet-fpga sim``: images through the RTL in a simulator, compared with the golden model."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from . import options, simulation

NAME = "sim"
HELP = "run images through the RTL in a simulator and compare with the golden model"
DESCRIPTION = """\
Run images through the generated RTL in a simulator (Verilator or Icarus, through cocotb)
and compare every logit with the golden model's: the shipped digits, a file of your own
(--images), the 10,000 MNIST test images (--mnist) or the test images of a data set of
your own (--dataset). Prints each image's classes and
cycles and a summary; --jobs or --scheduler shard the images across simulator processes.
Simulator builds are cached in --build-dir; --waves writes a waveform there too (with a
GTKWave layout beside it)."""

MAX_ROWS = 100


def add_arguments(parser) -> None:
    options.simulator_option(parser)
    options.weights_option(parser)
    parser.add_argument("--images", metavar="FILE.npz", default=None,
                        help="images uint8 [N,S,S] (S up to the network's input size) and optional labels "
                             "(default: the 40 shipped test digits)")
    parser.add_argument("--n", type=options.positive_int, default=None, help="only the first N images")
    parser.add_argument("--mnist", action="store_true",
                        help="the 10,000 MNIST test images instead (see --data, --stream)")
    options.data_option(parser)
    options.dataset_options(parser)
    options.jobs_option(parser, 1, "simulator processes to shard the images across (default 1)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:8786|local", default=None,
                        help="shard the images across the workers of this Dask scheduler instead ('local': a local "
                             "cluster of --jobs worker processes); needs the explore extra")
    parser.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                        help="send the images back to back: fewer simulated cycles, and each image's cycles then "
                             "include its wait behind the previous one (default: on with --mnist, else off)")
    options.arithmetic_options(parser)
    options.lanes_option(parser, design=True)
    options.build_dir_option(parser)
    parser.add_argument("--waves", action="store_true",
                        help="write a waveform to open in GTKWave (.fst from icarus, .vcd from verilator)")
    parser.add_argument("--waves-file", metavar="FILE", default=None,
                        help="where to put it (default: lenet_sim.fst or .vcd in the build folder, --build-dir)")
    options.json_option(parser)


def waves_path(args) -> Path:
    """Where ``--waves`` writes: ``--waves-file``, else ``lenet_sim.fst`` (icarus) or ``.vcd``
    (verilator) in the simulator build folder."""
    from ..sim import runner

    if args.waves_file:
        return Path(args.waves_file)
    suffix = ".fst" if args.simulator == "icarus" else ".vcd"
    return runner.check_build_root(args.build_dir) / f"lenet_sim{suffix}"


def check_waves_options(args) -> None:
    from ..model.errors import InputError

    if args.waves and args.jobs > 1:
        raise InputError("--waves writes one waveform from one simulator run; use --jobs 1")
    if args.waves_file and not args.waves:
        raise InputError("--waves-file names the waveform --waves writes: give --waves as well")
    if args.waves and args.scheduler:
        raise InputError("--waves writes one waveform from one simulator run here; leave out --scheduler")


def save_waves(run, waves_target: Path, ws, config) -> dict:
    """Copy the run's waveform to ``waves_target`` and write a GTKWave layout beside it."""
    import shutil

    from ..hdl.accelerator import read_design
    from ..model.atomic import atomic_path
    from ..model.errors import InputError
    from ..sim.network import TOPLEVEL
    from ..sim.runner import discard_waves
    from ..sim.waves import gtkw_layout

    if run.waves is None:
        raise InputError("the simulator wrote no waveform file")
    try:
        with atomic_path(waves_target) as tmp:
            shutil.copyfile(run.waves, tmp)
    finally:  # the run's own waveform folder in the build cache (sim/runner.py)
        discard_waves(run.waves)
    layout = waves_target.with_suffix(".gtkw")
    with atomic_path(layout) as tmp:
        tmp.write_text(read_design(ws, config, lambda design: gtkw_layout(design, waves_target.name, TOPLEVEL)))
    return {"waves": str(waves_target), "gtkw": str(layout)}


def print_text(rows: list[dict], summary: dict) -> None:
    # A row per image is readable for the shipped digits, not for the 10,000 of --mnist.
    shown = rows if len(rows) <= MAX_ROWS else [e for e in rows if not e["match"]][:MAX_ROWS]
    if len(shown) < len(rows):
        print(f"({len(rows)} images: only those whose logits differ are listed)")
    if shown:
        print(f"{'#':>5} {'label':>5} {'golden':>6} {'rtl':>4} {'cycles':>7}  logits equal")
    for e in shown:
        print(f"{e['index']:>5} {e.get('label', '-'):>5} {e['golden_class']:>6} {e['rtl_class']:>4} "
              f"{e['cycles']:>7}  {'yes' if e['match'] else 'NO'}")
    print(simulation.format_summary(summary))
    if "waves" in summary:
        print(f"waveform: {summary['waves']} (open with: gtkwave {summary['gtkw']}: the handshakes and "
              f"each block's key signals, grouped)")


def run(args) -> int:
    from ..api import design_config
    from ..model import weights as weight_files
    from ..model.atomic import check_output
    from ..sim import runner

    if args.scheduler and args.scheduler != "local":
        from ..explore.cluster import check_address

        check_address(args.scheduler)
    ws = weight_files.load(args.weights)
    config = design_config(ws, options.generator_options(args))
    image_set = simulation.image_set_of(args, ws.network)
    check_waves_options(args)
    waves_target = check_output(waves_path(args), "--waves-file") if args.waves else None
    runner.prepare_simulator(args.simulator)
    build_root = runner.check_build_root(args.build_dir)
    started = time.monotonic()
    # The accelerator's timing does not depend on the pixels, so a large set is run for its
    # logits, and back to back is then the faster way (the interval instead of the latency).
    back_to_back = args.stream if args.stream is not None else args.mnist
    run = simulation.run_simulation(ws, image_set, config, args.simulator, args.waves, quiet=args.json,
                                    jobs=args.jobs, back_to_back=back_to_back, scheduler=args.scheduler,
                                    build_root=build_root)
    rows = simulation.per_image(run, image_set)
    summary = simulation.summary(run, image_set, config, args.simulator)
    summary["jobs"] = args.jobs
    if args.scheduler:
        summary["scheduler"] = args.scheduler
    summary["back_to_back"] = back_to_back
    summary["wall_seconds"] = round(time.monotonic() - started, 2)
    if args.waves:
        summary.update(save_waves(run, waves_target, ws, config))
    if args.json:
        print(json.dumps({"images": rows, "total": summary}))
    else:
        print_text(rows, summary)
    return 1 if run.mismatches else 0
