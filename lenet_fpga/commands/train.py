"""``lenet-fpga train``: train a LeNet-family network and export its Q2.6 weights."""

from __future__ import annotations

import json
from pathlib import Path

from . import options

NAME = "train"
HELP = "train a LeNet-family network (float, then quantization-aware) and export Q2.6 weights"
DESCRIPTION = """\
Train a LeNet-family network on MNIST, or on a data set of your own (--dataset): float
training, then quantization-aware training for the chosen Q2.6 arithmetic. Writes FILE.npz,
FILE.json and FILE-float.npz.

Network specs (--network): [SIZE[xCHANNELS]/]CONVS:HIDDEN[:CLASSES]
  CONVS   filters of each conv layer, comma-separated; a conv may add kK (kernel,
          default 5) and pP (max-pool, default 2): 6k5p2
  HIDDEN  widths of the hidden fully connected layers (may be empty)
  CLASSES outputs of the last layer (default 10), SIZE the input side (default 28;
          MNIST digits are centred in a larger input, and refused by a smaller one),
          CHANNELS the input channels (default 1, grey; 3 for RGB).
          With --dataset, SIZE, CHANNELS and CLASSES default to the data set's, and
          without --network the network is LeNet-5's layers at the data set's size,
          channels and classes
  6,16:120,84      LeNet-5 (the default)
  4,10:60,40       a smaller network
  32/6,16:120,84   LeNet-5 as published: 32x32 input
  32x3/6,16:120,84 the same for 32x32 RGB images
or a .json file: {"image_size": 28, "convs": [{"channels": 6, "kernel": 5, "pool": 2}, ...],
                  "hidden": [120, 84], "classes": 10} (and "input_channels": 3 for RGB)"""

def add_arguments(parser) -> None:
    options.data_option(parser)
    options.dataset_options(parser)
    parser.add_argument("--network", "--geometry", metavar="SPEC", default=None,
                        help="the network to train (see above; default 6,16:120,84, LeNet-5)")
    parser.add_argument("--epochs", type=options.positive_int, default=20, help="float training epochs (default 20)")
    parser.add_argument("--qat-epochs", type=options.nonnegative_int, default=10,
                        help="quantization-aware epochs (default 10)")
    parser.add_argument("--lr", type=options.positive_float, default=None,
                        help="float training's peak learning rate (default 2e-3)")
    parser.add_argument("--batch-size", type=options.positive_int, default=None, help="images per step (default 128)")
    parser.add_argument("--from", dest="start_from", metavar="FILE.npz", default=None,
                        help="start from these weights (their float checkpoint if it is there, else their codes / 64) "
                             "instead of a random initialisation; the network is theirs")
    parser.add_argument("--train-images", type=options.positive_int, default=None, metavar="N",
                        help="train on the first N training images only (a quick try; default all)")
    options.torch_options(parser)
    options.requantizer_options(parser)
    options.activations_option(parser)
    options.out_weights_option(parser)
    options.json_option(parser, "print one JSON object (the network, accuracies and files written) instead of "
                                "the text")


# ---- shared by train, import and compress ----

def network_from_text(text: str | None, dataset=None):
    """``--network``: a compact spec (``6,16:120,84``) or a JSON file holding ``Network.to_dict``;
    with a ``dataset``, the image size and classes it leaves out are the data set's."""
    from ..model.documents import read_json
    from ..model.errors import InputError
    from ..model.network import LENET5, Network

    if text is None:
        return LENET5 if dataset is None else dataset.default_network()
    defaults = {} if dataset is None else {"image_size": dataset.image_size, "classes": dataset.classes,
                                           "input_channels": dataset.channels}
    if text.endswith(".json"):
        try:
            value = read_json(text, "--network file")
        except InputError as e:
            raise InputError(f"--network: {e}") from None
        try:
            return Network.from_dict(value, **defaults)
        except InputError as e:
            raise InputError(f"--network {text}: {e}") from None
    return Network.parse(text, **defaults)


def torch_fields(args, dataset=None) -> dict:
    """The options every training run shares (``model.train.flow.TorchOptions``' fields);
    ``dataset``: what ``--dataset`` names, already read (``options.dataset_of``)."""
    return {"seed": args.seed, "threads": args.threads, "data_dir": args.data,
            "train_images": getattr(args, "train_images", None), "dataset": dataset}


def trained_arithmetic(args):
    """--rounding/--overflow to train for (half-up and saturate where not given)."""
    from ..model import arith

    return arith.Arithmetic(args.rounding or arith.Rounding.HALF_UP, args.overflow or arith.Overflow.SATURATE)


def activations_of(args) -> tuple:
    """--activations, parsed (empty: not given)."""
    from ..model.train import formats

    return () if args.activations is None else formats.parse(args.activations)


def activation_cost_of(activations: tuple):
    """What ``--activations auto`` weighs a layer's width against: the generator's memory bits
    (None for other ``activations``: the design is not asked for)."""
    from ..model.train import formats

    if not any(isinstance(item, formats.Auto) for item in activations):
        return None
    from ..hdl.cost import activation_memory_bits

    return activation_memory_bits


def report_trained(args, result, extra: str = "") -> None:
    """The last lines of train and import, or their JSON object."""
    if args.json:
        print(json.dumps(result.to_dict()))
        return
    print(f"float accuracy {result.float_accuracy:.2%}, fixed-point accuracy {result.fixed_accuracy:.2%} "
          f"({result.arithmetic.describe()}{extra})")
    print(f"wrote {result.weights}, {Path(result.weights).with_suffix('.json')} and {result.float_weights}")


def run(args) -> int:
    from ..model.train.flow import TrainOptions, train

    dataset = options.dataset_of(args)
    activations = activations_of(args)
    wanted = TrainOptions(**torch_fields(args, dataset),
                          network=None if args.network is None else network_from_text(args.network, dataset),
                          epochs=args.epochs, qat_epochs=args.qat_epochs, lr=args.lr, batch_size=args.batch_size,
                          start_from=args.start_from, arithmetic=trained_arithmetic(args),
                          activations=activations, activation_cost=activation_cost_of(activations))
    result = train(args.out, wanted, log=(lambda *_: None) if args.json else print)
    report_trained(args, result)
    return 0
