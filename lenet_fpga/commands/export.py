"""``lenet-fpga export``: the integer network as an ONNX or QONNX graph other tools run."""

from __future__ import annotations

import json
import sys

from . import options

NAME = "export"
HELP = "write the integer network as an ONNX or QONNX graph that gives the golden model's logits"
DESCRIPTION = """\
Write the weights' integer network as a graph other tools run: ONNX (run it with onnxruntime)
or QONNX (Quant nodes, for qonnx's executor, hls4ml and FINN). It takes what the accelerator
takes, uint8 pixels [N,1,S,S], and gives the golden model's logits exactly: int32 [N,classes]
in units of 1/4096 (docs/export.md). Before writing, the graph runs on the 40 shipped digits
and every logit is compared with the golden model's; the file is written only if all are
equal (--no-check skips this). Needs the onnx extra: pip install 'lenet-fpga[onnx]'."""


def add_arguments(parser) -> None:
    from ..model.export_onnx import FORMATS

    options.weights_option(parser)
    parser.add_argument("--format", choices=FORMATS, default="onnx",
                        help="onnx: plain ONNX, tensors in code units (onnxruntime); qonnx: real values with "
                             "QONNX Quant nodes (qonnx's executor, hls4ml, FINN); default onnx")
    parser.add_argument("--out", required=True, metavar="FILE.onnx", help="the graph to write")
    options.arithmetic_options(parser)
    parser.add_argument("--batch", type=options.positive_int, default=None, metavar="N",
                        help="a fixed batch size (FINN and qonnx's executor take fixed shapes; FINN uses 1); "
                             "default: any (the symbolic dimension N)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="do not run the graph on the shipped digits against the golden model before writing "
                             "(needs only the onnx package, and for qonnx the qonnx package)")
    options.json_option(parser, "print one JSON object: the file, its format, nodes, each layer's largest "
                                "accumulator, and the check (logits compared and equal)")


def run(args) -> int:
    from ..api import export_onnx, sample_digits
    from ..model import weights as weight_files

    ws = weight_files.load(args.weights)
    images, which = _check_images(ws.network, sample_digits().images) if args.check else (None, None)
    result = export_onnx(ws, args.format, out=args.out, options=options.generator_options(args),
                         check_images=images, batch=args.batch)
    report = {**result.to_dict(), "weights": str(ws.path), "written": result.path is not None}
    if args.json:
        print(json.dumps(report))
    elif result.exact:
        print(f"wrote {result.path} ({args.format}, network {result.network}, {result.arithmetic}, "
              f"{report['nodes']} nodes)")
        if args.check:
            runtime = "onnxruntime" if args.format == "onnx" else "qonnx's executor"
            print(f"checked in {runtime} on {result.checked_images} {which}: {result.equal_logits} of "
                  f"{result.checked_logits} logits equal to the golden model's")
    if not result.exact:
        print(f"lenet-fpga export: error: the {args.format} graph differs from the golden model in "
              f"{result.checked_logits - result.equal_logits} of {result.checked_logits} logits; {args.out} not written "
              f"(a bug: please report it)", file=sys.stderr)
        return 1
    return 0


def _check_images(network, digits):
    """The shipped digits at the network's size, or for a network smaller than they are or with
    colour input, the same number of seeded random images; and what they are."""
    import numpy as np

    from ..model.images import fit

    if digits.shape[-1] <= network.image_size and network.input_channels == 1:
        return fit(digits, network.image_size), "shipped digits"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (len(digits), *network.input_shape), dtype=np.uint8), "random images"
