"""``lenet-fpga import``: a trained PyTorch or ONNX model as Q2.6 weights."""

from __future__ import annotations

from . import options
from .train import activation_cost_of, activations_of, report_trained, torch_fields, trained_arithmetic

NAME = "import"
HELP = "turn a trained PyTorch, ONNX or QONNX LeNet-family model into Q2.6 weights (optionally with QAT)"
DESCRIPTION = """\
Import a trained PyTorch model: a whole nn.Module (torch.save(model, F)) of Conv2d, ReLU,
MaxPool2d, BatchNorm2d (folded), Flatten, Dropout and Linear layers, or its state_dict
(torch.save(model.state_dict(), F); give --pool and --image-size, which it does not say).
Convs must be valid (padding 0, stride 1, square kernels), every hidden layer must have a
ReLU, the last linear layer gives the logits. The model must take pixels as p/255, or give
--normalize for a model trained on (p/255 - MEAN) / STD. Writes FILE.npz, FILE.json and
FILE-float.npz like train. A state_dict is read without running anything from the file;
a whole module can only be unpickled by running code from the file, so it needs
--trust-pickle (see docs/import.md); its class is imported from the file's folder or
--module-path. A state_dict's weights are also read with average pooling and with tanh on
test images: one that fits another chain clearly better is refused.

The weights are rounded to Q2.6; when that loses more than a point of accuracy, 3 epochs
of quantization-aware fine-tuning follow (--qat-epochs N to choose, 0 to never).

Or an ONNX graph (MODEL.onnx, from torch.onnx.export or tf2onnx; needs the onnx extra,
pip install -e '.[onnx]'): Conv, Relu, MaxPool, Flatten/Reshape, Gemm or MatMul+Add,
BatchNormalization (folded), Dropout, and a Softmax at the end (dropped: the class is the
same). It says its own pooling and input size. Nothing in it is executed but standard
operators: onnxruntime measures the model's float accuracy on the MNIST test images and
checks that the imported network gives the same outputs before quantizing. What the
hardware cannot compute is refused naming the node.

Or a QONNX graph (Quant nodes, as Brevitas' export_qonnx writes them; detected by itself):
when every quantizer is Q2.6 fixed point (zero point 0, power-of-two scales, at most 8
bits; weights of scale 2^-k, k <= 6, within -2..2; input and activations of scale 1/64,
clipping at 127 after the ReLU, rounding FLOOR or HALF_UP), it is imported exactly, without
retraining: each layer's integer codes as they are (k-bit weights as a uniform restriction),
checked against qonnx's executor on every logit of the test images. A quantizer that does not
map is refused naming the node, unless --requantize (see docs/import.md)."""


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL.pt|MODEL.onnx",
                        help="the torch.save file, or an ONNX graph (by its .onnx suffix or its content)")
    options.out_weights_option(parser)
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow a module saved whole: unpickling it runs code from the file, which can do "
                             "anything you can (delete or send your files); only for files you trust. Without it "
                             "only a state_dict is read, and nothing in the file is executed")
    parser.add_argument("--module-path", metavar="DIR", action="append", default=[],
                        help="with --trust-pickle: a folder to import the model's class from (its module, e.g. "
                             "mymodel.py); the model file's own folder is searched first. Repeatable")
    parser.add_argument("--any-reading", action="store_true",
                        help="import a state_dict as the hardware reads it (max-pool, ReLU) even when its weights fit "
                             "average pooling or tanh clearly better on the test images (refused otherwise)")
    parser.add_argument("--image-size", type=options.positive_int, default=None,
                        help="the model's input side (default 28, or --dataset's image size; an ONNX graph with a "
                             "fixed input size says its own)")
    parser.add_argument("--pool", type=options.positive_int, default=2,
                        help="max-pool after each conv, for a state_dict (default 2; a module says its own)")
    parser.add_argument("--normalize", metavar="MEAN,STD", default=None,
                        help="fold the model's input normalisation (p/255 - MEAN) / STD into conv1")
    parser.add_argument("--qat-epochs", type=options.nonnegative_int, default=None,
                        help="quantization-aware fine-tuning epochs on MNIST after rounding (0: keep the rounded "
                             "weights; default: 3 when rounding loses more than a point of accuracy, else 0)")
    parser.add_argument("--train-images", type=options.positive_int, default=None, metavar="N",
                        help="fine-tune on the first N training images only (default: all)")
    parser.add_argument("--requantize", action="store_true",
                        help="a QONNX graph whose quantizers do not map onto Q2.6: take its weights as its Quant "
                             "nodes give them, drop its activation quantizers, and quantize again (rounded, or "
                             "--qat-epochs N); without it such a graph is refused naming the node")
    options.torch_options(parser, seed_help="random seed of the fine-tuning (default 1)")
    options.requantizer_options(parser)
    options.activations_option(parser)
    options.data_option(parser)
    options.dataset_options(parser)
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
    """A PyTorch or ONNX model -> Q2.6 weights (optionally fine-tuned with QAT), like ``train``'s output."""
    from ..model.train.flow import ImportOptions, import_model

    # None: the float path's half-up and saturate, or a QONNX graph's own (which a given option must match)
    arithmetic = trained_arithmetic(args) if args.rounding or args.overflow else None
    dataset = options.dataset_of(args)
    image_size = args.image_size or (dataset.image_size if dataset is not None else 28)
    activations = activations_of(args)
    wanted = ImportOptions(**torch_fields(args, dataset), image_size=image_size, pool=args.pool,
                           normalize=parse_normalize(args.normalize), qat_epochs=args.qat_epochs,
                           arithmetic=arithmetic, trust_pickle=args.trust_pickle, requantize=args.requantize,
                           module_path=tuple(args.module_path), any_reading=args.any_reading,
                           activations=activations, activation_cost=activation_cost_of(activations))
    result = import_model(args.model, args.out, wanted, log=(lambda *_: None) if args.json else print)
    epochs = result.extra.get("qat_epochs")
    if result.extra.get("qonnx", {}).get("exact"):
        how = ", exact QONNX import, no retraining"
    else:
        how = f", after {epochs} QAT epochs" if epochs else ", rounded, no QAT"
    report_trained(args, result, how)
    return 0
