"""``lenet-fpga eval``: the golden model's accuracy on the MNIST test set, or a data set's."""

from __future__ import annotations

import json
import time

from . import options

NAME = "eval"
HELP = "accuracy of the float and the Q2.6 golden model on the MNIST test set (or --dataset's)"
DESCRIPTION = """\
Run the 10,000 MNIST test images (or the test images of --dataset) through the Q2.6 golden model (numpy, bit-exact with the
hardware) and, when the weights have a float checkpoint beside them, through the float
network; print both accuracies, the network's MACs per image, its weight bits and each
layer's weight codes. --overflow and --rounding evaluate the same weights under another
arithmetic."""


def add_arguments(parser) -> None:
    options.data_option(parser)
    options.dataset_options(parser)
    options.weights_option(parser)
    options.arithmetic_options(parser)
    options.json_option(parser, "print one JSON object: fixed_accuracy (the Q2.6 golden model, measured now), "
                                "float_accuracy (the float checkpoint, if present), recorded_accuracy (what the "
                                "weights' manifest says training measured)")


def run(args) -> int:
    import sys

    from ..model import datasets, golden, weights
    from ..model.codes import weight_bits

    started = time.time()
    ws = weights.load(args.weights)
    arithmetic = options.arithmetic_of(args, ws.arithmetic)
    network = ws.network
    dataset = options.dataset_of(args)
    note = datasets.recorded_note(ws.manifest, dataset, ws.path)
    if note:  # before MNIST is read: it says why MNIST's images may not fit
        print(note, file=sys.stderr)
    split = datasets.fitted_split("test", network, dataset, args.data)
    fixed_logits = golden.forward(split.images, ws.params, arithmetic, network)
    result = {
        "weights": str(ws.path),
        "network": network.spec,
        "n_images": int(len(split.labels)),
        "dataset": None if dataset is None else {"source": dataset.source, "digest": dataset.digest},
        "rounding": str(arithmetic.rounding),
        "overflow": str(arithmetic.overflow),
        **({"activations": [str(f) for f in arithmetic.activations]} if arithmetic.activations else {}),
        "fixed_accuracy": golden.accuracy(fixed_logits, split.labels),
        "macs": network.macs,
        "weight_bits": weight_bits(network, ws.codes),
        "codes": {name: restriction.describe() for name, restriction in ws.codes.items()},
    }
    float_params = weights.load_float(ws)
    if float_params is not None:
        result["float_accuracy"] = golden.accuracy(golden.float_forward(split.images, float_params, network),
                                                   split.labels)
    # What the weights file says its fixed-point accuracy was when it was written (training's figure):
    # equal to fixed_accuracy unless the file or the arithmetic changed since.
    result["recorded_accuracy"] = ws.manifest.get("accuracy", {}).get("fixed")
    result["seconds"] = round(time.time() - started, 2)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"weights          {result['weights']}")
    print(f"network          {network.spec}")
    print(f"arithmetic       {arithmetic.describe()}")
    print(f"test images      {result['n_images']}" + (f" ({dataset.source})" if dataset is not None else ""))
    if "float_accuracy" in result:
        print(f"float accuracy   {result['float_accuracy']:.2%}")
    print(f"fixed accuracy   {result['fixed_accuracy']:.2%}")
    print(f"MACs per image   {result['macs']:,}")
    print(f"weight bits      {result['weight_bits']:,}")
    for name, text in result["codes"].items():
        print(f"{name + ' codes':<17}{text}")
    return 0
