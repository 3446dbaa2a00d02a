"""``lenet-fpga train``: train a LeNet-family network and export its Q2.6 weights."""

from __future__ import annotations

import json
from pathlib import Path

from . import options

NAME = "train"
HELP = "train a LeNet-family network (float, then quantization-aware) and export Q2.6 weights"
DESCRIPTION = """\
Train a LeNet-family network on MNIST: float training, then quantization-aware training
for the chosen Q2.6 arithmetic. Writes FILE.npz, FILE.json and FILE-float.npz.

Network specs (--network): [SIZE/]CONVS:HIDDEN[:CLASSES]
  CONVS   filters of each conv layer, comma-separated; a conv may add kK (kernel,
          default 5) and pP (max-pool, default 2): 6k5p2
  HIDDEN  widths of the hidden fully connected layers (may be empty)
  CLASSES outputs of the last layer (default 10), SIZE the input side (default 28;
          MNIST digits are centred in a larger input, cropped to a smaller one)
  6,16:120,84      LeNet-5 (the default)
  4,10:60,40       a smaller network
  32/6,16:120,84   LeNet-5 as published: 32x32 input
or a .json file: {"image_size": 28, "convs": [{"channels": 6, "kernel": 5, "pool": 2}, ...],
                  "hidden": [120, 84], "classes": 10}"""

# numpy's and torch's seeds are 64-bit at most
MAX_SEED = 2**63 - 1


def add_arguments(parser) -> None:
    options.data_option(parser)
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
                        help="train on the first N of the 60,000 training images only (a quick try; default all)")
    options.torch_options(parser)
    options.requantizer_options(parser)
    options.out_weights_option(parser)
    options.json_option(parser, "print one JSON object (the network, accuracies and files written) instead of "
                                "the text")


# ---- shared by train, import and compress ----

def network_from_text(text: str | None):
    """``--network``: a compact spec (``6,16:120,84``) or a JSON file holding ``Network.to_dict``."""
    from ..model.errors import InputError
    from ..model.network import LENET5, Network

    if text is None:
        return LENET5
    if text.endswith(".json"):
        path = Path(text)
        try:
            value = json.loads(path.read_text())
        except OSError as e:
            raise InputError(f"--network: cannot read {path}: {e.strerror or e}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise InputError(f"--network: {path} is not valid JSON ({e.__class__.__name__})") from None
        return Network.from_dict(value)
    return Network.parse(text)


def weights_outputs(out) -> tuple[Path, Path]:
    """``--out FILE.npz``: the weights file and its float checkpoint, both checked writable
    (with the manifest) before any work."""
    from ..model import weights
    from ..model.atomic import check_output
    from ..model.errors import InputError

    out = Path(out)
    if out.suffix != ".npz":
        raise InputError(f"--out must name an .npz file, got {out}")
    float_path = out.with_name(out.stem + "-float.npz")
    for path in (out, weights.manifest_path(out), float_path):
        check_output(path, "--out")
    return out, float_path


def check_seed(seed: int) -> None:
    from ..model.errors import InputError

    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"--seed must be 0..{MAX_SEED}, not {seed}")


def files_written(out: Path, float_path: Path) -> dict:
    from ..model import weights

    return {"weights": str(out), "manifest": str(weights.manifest_path(out)), "float_weights": str(float_path)}


def report_trained(args, say, out, float_path, network, arithmetic, float_acc, fixed_acc, extra="", **more) -> None:
    """The last lines of train and import, or their JSON object."""
    from ..model import weights

    if args.json:
        print(json.dumps({**files_written(out, float_path), "network": network.spec,
                          "arithmetic": arithmetic.describe(), "float_accuracy": float_acc,
                          "fixed_accuracy": fixed_acc, **more}))
        return
    say(f"float accuracy {float_acc:.2%}, Q2.6 accuracy {fixed_acc:.2%} ({arithmetic.describe()}{extra})")
    say(f"wrote {out}, {weights.manifest_path(out)} and {float_path}")


def run(args) -> int:
    import numpy as np
    import torch

    from ..model import arith, golden, mnist, weights
    from ..model.train import qat
    from ..model.errors import InputError

    out, float_path = weights_outputs(args.out)
    check_seed(args.seed)
    say = (lambda *_: None) if args.json else print
    start = None
    if args.start_from is not None:
        begin = weights.load(args.start_from)
        if args.network is not None and network_from_text(args.network) != begin.network:
            raise InputError(f"--network {args.network} is not the network of --from {args.start_from} "
                             f"({begin.network.spec})")
        start = weights.load_float(begin) or {name: value.astype(np.float32) / arith.SCALE
                                              for name, value in begin.params.items()}
        network = begin.network
    else:
        network = network_from_text(args.network)
    if network.classes < mnist.CLASSES:
        raise InputError(f"the network {network.spec} has {network.classes} classes; MNIST needs {mnist.CLASSES}")
    arithmetic = arith.Arithmetic(args.rounding or arith.Rounding.HALF_UP, args.overflow or arith.Overflow.SATURATE)
    config = qat.TrainConfig(seed=args.seed, float_epochs=args.epochs, qat_epochs=args.qat_epochs,
                             **({"lr": args.lr} if args.lr is not None else {}),
                             **({"batch_size": args.batch_size} if args.batch_size is not None else {}))
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    train_split = mnist.load("train", args.data).fitted(network)
    if args.train_images is not None:
        train_split = mnist.Split(train_split.images[: args.train_images], train_split.labels[: args.train_images])
    test_split = mnist.load("test", args.data).fitted(network)
    say(network.describe())
    say(f"training for {arithmetic.describe()}: {config}")
    float_model, qat_model, seconds = qat.train(train_split, arithmetic, config, network=network, start=start)

    params = qat_model.integer_params()
    fixed_logits = golden.forward(test_split.images, params, arithmetic, network)
    with torch.no_grad():
        fake_logits = qat_model.integer_logits(torch.from_numpy(test_split.images.copy())).numpy()
    mismatches = int((fake_logits != fixed_logits).any(axis=1).sum())
    if mismatches:  # the contract is broken: do not ship weights that train and hardware disagree on
        raise RuntimeError(f"fake-quant and golden model disagree on {mismatches} test images")
    float_params = float_model.float_params()
    float_acc = golden.accuracy(golden.float_forward(test_split.images, float_params, network), test_split.labels)
    fixed_acc = golden.accuracy(fixed_logits, test_split.labels)

    manifest = weights.make_manifest(
        arithmetic,
        network,
        float_weights=float_path.name,
        accuracy={"float": float_acc, "fixed": fixed_acc, "n_images": len(test_split.labels), "split": "test"},
        training={**config.__dict__, "seconds": round(seconds, 1), "torch": torch.__version__,
                  "train_images": len(train_split.labels),
                  **({"started_from": str(args.start_from)} if args.start_from else {})},
    )
    weights.save_with_float(out, params, manifest, float_params)
    report_trained(args, say, out, float_path, network, arithmetic, float_acc, fixed_acc,
                   n_images=len(test_split.labels), seconds=round(seconds, 1))
    return 0
