"""``lenet-fpga demo``: the shipped network on the shipped digits, golden model and RTL side by side."""

from __future__ import annotations

import json
from pathlib import Path

from . import options, simulation

NAME = "demo"
HELP = "the shipped network on the shipped digits: golden model and RTL simulation"
DESCRIPTION = """\
The README's first command: the 40 shipped sample digits through the golden model and through
the RTL in a simulator, printed ten to a row (label, the golden model's class, the RTL's class,
and whether all ten logits are equal bit for bit), with a summary of cycles and mismatches.
Draws the digits with the RTL's answers into the --plots folder (demo.png)."""

PICTURE = "demo.png"


def add_arguments(parser) -> None:
    options.weights_option(parser)
    options.simulator_option(parser)
    options.arithmetic_options(parser)
    options.lanes_option(parser, design=True)
    options.build_dir_option(parser)
    options.plots_option(parser, default="build", what=f"the digits with the RTL's answers ({PICTURE})")
    options.hidden_alias(parser, "--plot", dest="plot_file", metavar="FILE.png")
    options.json_option(parser, "print one JSON object (every digit's classes and logits, the summary, the "
                                "picture) instead of the text")


def picture_path(args) -> Path | None:
    """``--plots DIR``: DIR/demo.png ('' for none); the old ``--plot FILE.png`` names the file itself."""
    given = getattr(args, "plot_file", None)
    if given is not None:
        return Path(given) if given else None
    return Path(args.plots) / PICTURE if args.plots else None


def run(args) -> int:
    from ..api import design_config
    from ..model import images as image_sets
    from ..model import weights as weight_files
    from ..model.atomic import check_output
    from ..sim import runner

    ws = weight_files.load(args.weights)
    image_set = image_sets.load_image_set(None).fitted(ws.network)
    config = design_config(ws, options.generator_options(args))
    picture = picture_path(args)
    if picture is not None:
        check_output(picture, "--plots" if getattr(args, "plot_file", None) is None else "--plot")
    simulator = args.simulator
    runner.prepare_simulator(simulator)
    build_root = runner.check_build_root(args.build_dir)
    say = (lambda *_: None) if args.json else print
    accuracy = ws.manifest.get("accuracy", {}).get("fixed")
    say(f"network {ws.network.spec}, {config.arithmetic.describe()}, weights {ws.path.name}"
        + (f" (MNIST test accuracy {accuracy:.2%} in the golden model)" if accuracy is not None else ""))
    run = simulation.run_simulation(ws, image_set, config, simulator, quiet=args.json, build_root=build_root)
    summary = simulation.summary(run, image_set, config, simulator)
    if picture is not None:
        from ..sim.plots import digits_figure

        summary["plot"] = str(digits_figure(image_set.images, image_set.labels, run.rtl_class, run.matches, picture))
    if args.json:
        print(json.dumps({"network": ws.network.spec, "weights": str(ws.path), "recorded_accuracy": accuracy,
                          "images": simulation.per_image(run, image_set), "total": summary}))
        return 1 if run.mismatches else 0
    print("\n(exact: all ten RTL logits equal the golden model's, bit for bit)\n")
    for start in range(0, len(image_set), 10):
        row = range(start, min(start + 10, len(image_set)))
        print("label  " + " ".join(f"{int(image_set.labels[k]):>2}" for k in row))
        print("golden " + " ".join(f"{int(run.golden_class[k]):>2}" for k in row))
        print("RTL    " + " ".join(f"{int(run.rtl_class[k]):>2}" for k in row))
        print("exact  " + " ".join(" =" if run.matches[k] else " X" for k in row))
        print()
    print(simulation.format_summary(summary))
    if "plot" in summary:
        print(f"picture of the digits and the RTL's answers: {summary['plot']}")
    return 1 if run.mismatches else 0
