"""``lenet-fpga classify``: your own digit pictures through the golden model, and the RTL."""

from __future__ import annotations

import json

from . import options, simulation

NAME = "classify"
HELP = "classify your own digit pictures (PNG, JPEG, ...) with the golden model, and with --rtl in the " \
       "simulated hardware"
DESCRIPTION = """\
Classify pictures of handwritten digits (any size, dark on light or light on dark): each is
cropped, scaled and centred like an MNIST digit, shown as the network sees it, and classified
by the golden model; with --rtl also by the RTL in a simulator, every logit compared."""


def add_arguments(parser) -> None:
    parser.add_argument("pictures", nargs="+", metavar="PICTURE",
                        help="picture files; any size, dark on light or light on dark: each is cropped, scaled "
                             "and centred like an MNIST digit")
    options.weights_option(parser)
    parser.add_argument("--rtl", action="store_true", help="also run them through the RTL in a simulator")
    options.simulator_option(parser)
    options.arithmetic_options(parser)
    options.lanes_option(parser, design=True)
    options.build_dir_option(parser)
    options.json_option(parser)


def run(args) -> int:
    """A user's own pictures through the golden model, and on request through the RTL."""
    import numpy as np

    from ..api import design_config
    from ..model import digits, golden
    from ..model import images as image_sets
    from ..model import weights as weight_files
    from ..model.errors import InputError
    from ..model.images import fit
    from ..sim import runner

    ws = weight_files.load(args.weights)
    network = ws.network
    if network.input_channels != 1:  # a picture is read as a grey digit
        raise InputError(f"classify reads pictures as grey digits; the network {network.spec} takes "
                         f"{image_sets.describe_channels(network.input_channels)} images (give them to sim --images "
                         f"as an .npz)")
    config = design_config(ws, options.generator_options(args)) if args.rtl else None
    build_root = None
    if args.rtl:
        runner.prepare_simulator(args.simulator)
        build_root = runner.check_build_root(args.build_dir)
    pictures = np.stack([fit(digits.prepare(digits.load_picture(path)), network.image_size)
                         for path in args.pictures])
    arithmetic = config.arithmetic if config is not None else ws.arithmetic
    logits = golden.forward(pictures, ws.params, arithmetic, network)
    classes = golden.classify(logits)
    run = simulation.run_simulation(ws, image_sets.ImageSet(pictures, None), config, args.simulator,
                                    quiet=args.json, build_root=build_root) if args.rtl else None
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
