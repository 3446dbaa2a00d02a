"""``lenet-fpga compress``: prune and restrict the weight codes of a trained network, then fine-tune."""

from __future__ import annotations

import json

from . import options
from .train import torch_fields

NAME = "compress"
HELP = "prune and restrict the weight codes of a trained network, then fine-tune it"
DESCRIPTION = """\
Compress a trained network for cheaper hardware: a search picks each layer's channel
count and weight codes against the generator's cost model, the channels of smallest L1
norm are pruned, and the smaller network is fine-tuned with quantization-aware training
on its restricted codes. Writes FILE.npz, FILE.json and FILE-float.npz.

Weight codes (--codes LAYER=CHOICES, LAYER a layer name or all, conv, fc):
  K     K-bit codes c*2^s (K 2..8, the shift s fitted per layer); 8 is every code
  t     ternary {-a, 0, a} (a fitted per layer)
  pK    power of two {0, +-2^e} in K bits (K 2..4: up to 1, 3, 7 exponents, by k-means)
  A/B/C the search may choose among these, cheapest last (e.g. fc=8/4/3/t)

Examples:
  lenet-fpga compress --out pruned.npz --max-macs 155000
  lenet-fpga compress --out small.npz --max-weight-bits 88000 --codes conv=8,fc=6/4/3/t
  lenet-fpga compress --out pow2.npz --codes fc=p3 --epochs 8"""


def add_arguments(parser) -> None:
    positive_int, positive_float = options.positive_int, options.positive_float
    options.data_option(parser)
    options.dataset_options(parser)
    options.weights_option(parser, "the trained network to start from, with its -float.npz if there is one "
                                   "('shipped', the default: the shipped LeNet-5)")
    options.out_weights_option(parser, "where to write the compressed weights")
    parser.add_argument("--start", choices=["codes", "float"], default="codes",
                        help="start from the network's integer codes (/ 64: what the hardware runs, trained for "
                             "Q2.6) or from its float checkpoint (FILE-float.npz; default codes)")
    parser.add_argument("--max-macs", type=positive_int, default=None, metavar="N", help="budget: MACs per image")
    parser.add_argument("--max-weight-bits", type=positive_int, default=None, metavar="N",
                        help="budget: bits of all weight codes (weights x bits per code)")
    parser.add_argument("--max-multipliers", type=positive_int, default=None, metavar="N",
                        help="budget: multipliers of the design the --cost-preset builds")
    parser.add_argument("--max-memory-bits", type=positive_int, default=None, metavar="N",
                        help="budget: block RAM bits of that design")
    parser.add_argument("--max-cycles", type=positive_int, default=None, metavar="N",
                        help="budget: cycles per image of that design's slowest block")
    parser.add_argument("--channels", metavar="LAYER=N[,...]", default=None,
                        help="fix these layers' output channels (the search leaves them alone)")
    parser.add_argument("--codes", metavar="LAYER=CHOICES[,...]", default=None,
                        help="weight codes per layer or group (see above; default 8 everywhere)")
    parser.add_argument("--method", choices=["greedy", "learned"], default="greedy",
                        help="greedy: the search alone; learned: first train per-layer sparsity thresholds and "
                             "bit-width branches with a cost penalty, then search from there (default greedy)")
    parser.add_argument("--tradeoff", type=options.nonnegative_float, default=0.0, metavar="LAMBDA",
                        help="after the budgets hold, keep compressing while the loss rises by less than LAMBDA "
                             "times the cost saved (relative to the source network; default 0: stop at the budgets)")
    parser.add_argument("--cost-preset", default="baseline", metavar="NAME",
                        help="the generator preset whose design the cost model measures (default baseline)")
    parser.add_argument("--cost-weights", metavar="METRIC=W[,...]", default=None,
                        help="weights of the cost metrics in the trade-off (default weight_bits=1,multipliers=1,"
                             "cycles=1; metrics: macs, weight_bits, multipliers, memory_bits, cycles)")
    parser.add_argument("--min-keep", type=positive_float, default=0.25, metavar="FRACTION",
                        help="the search keeps at least this share of each layer's channels (default 0.25)")
    parser.add_argument("--search-images", type=positive_int, default=4000, metavar="N",
                        help="training images that score the search's points (default 4000)")
    parser.add_argument("--learned-epochs", type=positive_int, default=3, metavar="N",
                        help="with --method learned: epochs of learning the sparsity and bit widths (default 3)")
    parser.add_argument("--epochs", type=options.nonnegative_int, default=10, help="fine-tuning epochs (default 10)")
    parser.add_argument("--train-images", type=positive_int, default=None, metavar="N",
                        help="fine-tune (and search) on the first N training images only (default all)")
    parser.add_argument("--lr", type=positive_float, default=None, help="fine-tuning's peak learning rate (default 5e-4)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="images per step (default 128)")
    options.torch_options(parser)
    options.json_option(parser, "print one JSON object (the compressed network, its codes, the source's and its "
                                "accuracy and cost, files written) instead of the text")


def assignments(text: str | None, option: str, value=str) -> dict:
    """``NAME=VALUE,NAME=VALUE`` (in order; a later NAME overrides an earlier one); ``value``
    converts each VALUE (a ValueError, or an argparse type's error, is the user's)."""
    import argparse

    from ..model.errors import InputError

    result = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, item = part.partition("=")
        if not sep or not name.strip() or not item.strip():
            raise InputError(f"{option}: expected NAME=VALUE[,NAME=VALUE...], not {text!r}")
        try:
            result[name.strip()] = value(item.strip())
        except ValueError:
            raise InputError(f"{option}: {name.strip()}={item.strip()} is not a valid value") from None
        except argparse.ArgumentTypeError as e:
            raise InputError(f"{option}: {name.strip()}={item.strip()}: {e}") from None
    return result


def compress_config(args, network, arithmetic):
    """The options as a ``CompressConfig``, checked against the network (errors before any data is read)."""
    from ..model import cost
    from ..model.train import compress

    budgets = {metric: getattr(args, f"max_{metric}") for metric in cost.METRICS
               if getattr(args, f"max_{metric}", None) is not None}
    config = compress.CompressConfig(
        seed=args.seed, epochs=args.epochs, budgets=budgets,
        channels=assignments(args.channels, "--channels", int),
        codes=assignments(args.codes, "--codes"),
        method=args.method, search_images=args.search_images, min_keep=args.min_keep, tradeoff=args.tradeoff,
        preset=args.cost_preset, learned_epochs=args.learned_epochs,
        **({"lr": args.lr} if args.lr is not None else {}),
        **({"batch_size": args.batch_size} if args.batch_size is not None else {}),
        **({"cost_weights": assignments(args.cost_weights, "--cost-weights", options.nonnegative_float)} if args.cost_weights else {}),
    )
    compress.space_from(config, network)
    return config


def run(args) -> int:
    from ..hdl.cost import generator_cost_model
    from ..model import weights
    from ..model.train.flow import TorchOptions, compress

    source = weights.load(args.weights)
    config = compress_config(args, source.network, source.arithmetic)
    cost_model = generator_cost_model(config.preset, source.arithmetic)  # an unknown preset is an error now
    dataset = options.dataset_of(args)
    result = compress(source, args.out, config, cost_model, TorchOptions(**torch_fields(args, dataset)), start=args.start,
                      log=(lambda *_: None) if args.json else print)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    extra = result.extra
    print(result.network.describe())
    print("codes: " + ", ".join(f"{name} {restriction}" for name, restriction in extra["codes"].items()))
    print(f"{'':<14}{'accuracy':>10}{'MACs':>10}{'weight bits':>13}{'multipliers':>13}{'cycles':>9}")
    for label, figures in (("source", extra["source"]), ("compressed", extra["compressed"])):
        acc, c = figures["accuracy"], figures["cost"]
        acc_text = f"{acc:.2%}" if acc is not None else "?"
        print(f"{label:<14}{acc_text:>10}{c['macs']:>10,}{c['weight_bits']:>13,}{c['multipliers']:>13,}"
              f"{c['cycles']:>9,}")
    print(f"(cost model: the '{config.preset}' preset; fixed-point accuracy on the {result.n_images:,} test images"
          + (f" of {dataset.source})" if dataset is not None else ")"))
    print(f"wrote {result.weights}, {weights.manifest_path(result.weights)} and {result.float_weights} in "
          f"{result.seconds:.0f} s")
    return 0
