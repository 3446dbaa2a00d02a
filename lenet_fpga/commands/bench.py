"""``lenet-fpga bench``: per network and preset, accuracy, cost, cycles and (with --pnr) Fmax."""

from __future__ import annotations

import json
from pathlib import Path

from ..hdl.designs import DEFAULT_DESIGN, DESIGNS
from . import options

NAME = "bench"
HELP = "per network and preset: accuracy, MACs, weight bits, multipliers, cycles, Fmax, resources, images/s"
DESCRIPTION = """\
Measure each network (--weights) at each generator preset (--preset): the golden model's
accuracy on the MNIST test set (or on the test images of --dataset), MACs, weight bits, multipliers in DSP blocks and in logic,
each layer's multiply floor, and the latency and interval in cycles of --rtl-images images
streamed bit-exactly through the RTL. With --pnr, also an out-of-context Yosys + nextpnr run
per preset for the ECP5 LFE5U-85F: Fmax, resources and images/s. --plots draws the figures
(cycles_per_layer.png, pareto.png, resources.png); bench-report puts saved --json runs together."""


def add_arguments(parser) -> None:
    parser.add_argument("--design", choices=list(DESIGNS), default=DEFAULT_DESIGN,
                        help=f"the generator to measure: {', '.join(DESIGNS)} (default {DEFAULT_DESIGN}); the "
                             f"presets size the streaming design, the others are measured as they are")
    options.hide(parser.add_argument("--preset", "--configs", metavar="NAME[,NAME...]", default=None,
                                     help="presets to measure (default: all)"), "--configs")
    parser.add_argument("--weights", metavar="FILE.npz", action="append", default=None,
                        help="a network to measure (repeat, or FILE,FILE; 'shipped', the default: the shipped "
                             "LeNet-5)")
    options.data_option(parser)
    options.dataset_options(parser)
    parser.add_argument("--rtl-images", type=options.positive_int, default=8,
                        help="images streamed through the RTL for the interval and the bit-exact check (default 8)")
    options.simulator_option(parser)
    options.build_dir_option(parser)
    parser.add_argument("--pnr", action="store_true",
                        help="also synthesize and place-and-route each preset for the ECP5 LFE5U-85F (out of "
                             "context) for Fmax and resources: minutes for baseline, an hour or more for fast")
    options.time_limit_option(parser, "time_limit_minutes",
                              "with --pnr: stop a preset's synthesis and place-and-route after this long and report "
                              "it as not done (default: no limit)", old=("--pnr-minutes",))
    options.json_option(parser, "print one JSON object instead of the table")
    options.plots_option(parser)


def configs_of(args, ws) -> dict:
    """The designs to measure for ``ws``, by name: the presets of the streaming design, or the
    one configuration of another design."""
    from ..api import design_config
    from ..hdl.designs import GeneratorOptions
    from ..model.errors import InputError
    from ..sim.benchmark import select_configs

    if args.design == DEFAULT_DESIGN:
        return select_configs(args.preset, ws.network, ws.arithmetic, codes=ws.codes)
    if args.preset is not None:
        raise InputError(f"--preset sizes the streaming design; the {args.design} design has no presets")
    return {args.design: design_config(ws, GeneratorOptions(design=args.design))}


def measure(args, plans, data_dir: Path, build_root: Path, dataset=None) -> tuple[list[dict], set, object]:
    """Every (network, preset) of ``plans``: ``bench_config`` and the golden model's accuracy."""
    from ..model.progress import progress

    from ..model import golden
    from ..sim.benchmark import bench_config, bench_images

    results, sources, test_set = [], set(), None
    with progress(total=sum(len(configs) for _, configs in plans), desc="bench", unit="design") as bar:
        for ws, configs in plans:
            network = ws.network
            images, source, test_set = bench_images(args.rtl_images, data_dir, network, dataset)
            sources.add(source)
            accuracy: dict[str, float] = {}  # by arithmetic: presets with the same one agree
            label = ws.path.stem if ws.path else network.spec
            for name, config in configs.items():
                def step(stage, name=name):
                    bar.set_postfix_str(f"{label} {name}: {stage}")

                result = bench_config(name, config, ws, images, args.simulator,
                                      Path("build") / "bench" / label if args.pnr else None, step,
                                      args.time_limit_minutes * 60 if args.time_limit_minutes else None,
                                      build_root=build_root)
                if test_set is not None:
                    key = config.arithmetic.describe()
                    if key not in accuracy:
                        step("golden model on the test set")
                        accuracy[key] = golden.accuracy(
                            golden.forward(test_set.images, ws.params, config.arithmetic, network), test_set.labels)
                    result["accuracy"] = accuracy[key]
                else:
                    result["accuracy"] = None
                results.append(result)
                bar.update()
    return results, sources, test_set


def run(args) -> int:
    from ..model import mnist
    from ..model.atomic import check_output
    from ..model.errors import InputError
    from ..sim import runner
    from ..boards.pnr import PNR_DEVICE, PNR_PACKAGE, PNR_TARGET_MHZ
    from ..sim.benchmark import format_table, weight_sets
    from ..sim.plots import network_label

    if args.rtl_images < 2:
        raise InputError("--rtl-images must be at least 2: the interval is the time between two images")
    if args.time_limit_minutes and not args.pnr:
        raise InputError("--time-limit limits place-and-route: give --pnr as well")
    networks = weight_sets(args.weights)
    plans = [(ws, configs_of(args, ws)) for ws in networks]
    dataset = options.dataset_of(args)
    for ws in networks if dataset is not None else ():
        dataset.check_fits(ws.network)  # before any simulator is built
    if args.plots:
        check_output(Path(args.plots) / "cycles.png", "--plots")
    runner.prepare_simulator(args.simulator)
    build_root = runner.check_build_root(args.build_dir)
    say = (lambda *a, **k: None) if args.json else print
    if args.pnr:
        from ..boards.platforms import toolchain_env

        toolchain_env("ecp5")  # no tools: say so now, not after the simulations
    data_dir = Path(args.data) if args.data else mnist.default_data_dir()
    results, sources, test_set = measure(args, plans, data_dir, build_root, dataset)
    say(format_table(results, max(ws.network.pixels for ws in networks)))
    tested = f"the {len(test_set):,} test images of {dataset.source}" if dataset is not None else \
        "the 10,000 MNIST test images"
    say(f"RTL: {args.rtl_images} images ({', '.join(sorted(sources))}) streamed through {args.simulator}; "
        + (f"accuracy on {tested} (golden model)." if test_set is not None
           else f"accuracy: the MNIST test set is not in {data_dir} (lenet-fpga download)."))
    if args.pnr:
        say(f"Fmax and resources: out-of-context place-and-route for the {PNR_DEVICE} ({PNR_PACKAGE}), "
            f"target {PNR_TARGET_MHZ:g} MHz; images/s = Fmax / interval.")
        for r in results:
            if "pnr_error" in r:
                say(f"{network_label(r)} {r['name']}: {r['pnr_error']}")
    document = {
        "simulator": args.simulator,
        "rtl_images": args.rtl_images,
        "rtl_image_sources": sorted(sources),
        "accuracy_images": len(test_set) if test_set is not None else 0,
        "dataset": None if dataset is None else {"source": dataset.source, "digest": dataset.digest},
        "pnr": {"device": PNR_DEVICE, "package": PNR_PACKAGE, "target_mhz": PNR_TARGET_MHZ,
                "out_of_context": True} if args.pnr else None,
        "configs": results,
    }
    if args.plots:
        from ..sim.plots import bench_figures

        for path in bench_figures(results, Path(args.plots)):
            say(f"plot: {path}")
    if args.json:
        print(json.dumps(document))
    mismatched = [f"{network_label(r)} {r['name']}" for r in results if r["rtl"]["mismatches"]]
    if mismatched:
        say(f"RTL logits differ from the golden model for: {', '.join(mismatched)}")
    failed = [f"{network_label(r)} {r['name']}" for r in results if "pnr_error" in r]
    return 1 if mismatched or failed else 0
