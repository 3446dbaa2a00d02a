"""``lenet-fpga import``: a trained PyTorch model as Q2.6 weights."""

from __future__ import annotations

from . import options
from .train import report_trained, weights_outputs

NAME = "import"
HELP = "turn a trained PyTorch LeNet-family model into Q2.6 weights (optionally with QAT)"
DESCRIPTION = """\
Import a trained PyTorch model: a whole nn.Module (torch.save(model, F)) of Conv2d, ReLU,
MaxPool2d, BatchNorm2d (folded), Flatten, Dropout and Linear layers, or its state_dict
(torch.save(model.state_dict(), F); give --pool and --image-size, which it does not say).
Convs must be valid (padding 0, stride 1, square kernels), every hidden layer must have a
ReLU, the last linear layer gives the logits. The model must take pixels as p/255, or give
--normalize for a model trained on (p/255 - MEAN) / STD. Writes FILE.npz, FILE.json and
FILE-float.npz like train. Unpickling a whole module runs code from the file: import
only models you trust."""


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL.pt", help="the torch.save file")
    options.out_weights_option(parser)
    parser.add_argument("--image-size", type=options.positive_int, default=28,
                        help="the model's input side (default 28)")
    parser.add_argument("--pool", type=options.positive_int, default=2,
                        help="max-pool after each conv, for a state_dict (default 2; a module says its own)")
    parser.add_argument("--normalize", metavar="MEAN,STD", default=None,
                        help="fold the model's input normalisation (p/255 - MEAN) / STD into conv1")
    parser.add_argument("--qat-epochs", type=options.nonnegative_int, default=0,
                        help="quantization-aware fine-tuning epochs on MNIST (default 0: round the weights)")
    options.torch_options(parser, seed_help="random seed of the fine-tuning (default 1)")
    options.requantizer_options(parser)
    options.data_option(parser)
    options.json_option(parser, "print one JSON object (the network, the importer's notes, accuracies and files "
                                "written) instead of the text")


def parse_normalize(text: str | None) -> tuple[float, float] | None:
    from ..model.errors import InputError

    if text is None:
        return None
    try:
        mean, std = (float(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"--normalize takes MEAN,STD (e.g. 0.1307,0.3081), not {text!r}") from None
    return mean, std


def run(args) -> int:
    """A PyTorch model -> Q2.6 weights (optionally fine-tuned with QAT), like ``train``'s output."""
    import torch

    from ..model import arith, golden, mnist, weights
    from ..model.train import importer, qat

    out, float_path = weights_outputs(args.out)
    say = (lambda *_: None) if args.json else print
    normalize = parse_normalize(args.normalize)
    imported = importer.from_object(importer.load_torch_file(args.model), args.image_size, args.pool, normalize)
    network = imported.network
    arithmetic = arith.Arithmetic(args.rounding or arith.Rounding.HALF_UP, args.overflow or arith.Overflow.SATURATE)
    say(network.describe())
    for note in imported.notes:
        say(note)
    float_params = imported.params
    test_split = mnist.load("test", args.data).fitted(network)
    training = None
    if args.qat_epochs:
        torch.set_num_threads(args.threads)
        torch.use_deterministic_algorithms(True)
        config = qat.TrainConfig(seed=args.seed, float_epochs=0, qat_epochs=args.qat_epochs)
        train_split = mnist.load("train", args.data).fitted(network)
        _, qat_model, seconds = qat.train(train_split, arithmetic, config, network=network, start=float_params)
        params = qat_model.integer_params()
        training = {**config.__dict__, "seconds": round(seconds, 1), "torch": torch.__version__}
    else:
        params = {name: arith.quantize_weights(value) for name, value in float_params.items()}
    fixed_logits = golden.forward(test_split.images, params, arithmetic, network)
    float_acc = golden.accuracy(golden.float_forward(test_split.images, float_params, network), test_split.labels)
    fixed_acc = golden.accuracy(fixed_logits, test_split.labels)
    manifest = weights.make_manifest(
        arithmetic, network, float_weights=float_path.name,
        accuracy={"float": float_acc, "fixed": fixed_acc, "n_images": len(test_split.labels), "split": "test"},
        source={"imported_from": str(args.model), "notes": list(imported.notes)},
        **({"training": training} if training else {}),
    )
    weights.save_with_float(out, params, manifest, float_params)
    report_trained(args, say, out, float_path, network, arithmetic, float_acc, fixed_acc,
                   f", after {args.qat_epochs} QAT epochs" if args.qat_epochs else ", rounded, no QAT",
                   n_images=len(test_split.labels), qat_epochs=args.qat_epochs, notes=list(imported.notes))
    return 0
