"""``lenet-fpga``: one command-line program, one subcommand per step of the flow."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from .boards.platforms import BOARDS
from .model.arith import Overflow, Rounding
from .model.errors import InputError


def _arithmetic_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overflow", choices=[o.value for o in Overflow], default=None,
        help="requantizer overflow: clip (saturate) or keep the low 8 bits (wrap); default: the weights' own",
    )
    parser.add_argument(
        "--rounding", choices=[r.value for r in Rounding], default=None,
        help="requantizer rounding: (acc+32)>>6 (half-up) or acc>>6 (floor); default: the weights' own",
    )


def _data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", metavar="DIR", default=None,
        help="folder with the four MNIST .gz files (default: $LENET_FPGA_DATA, else ~/.local/share/lenet-fpga/mnist, "
             "which `lenet-fpga download` fills)",
    )


def _torch_options(parser: argparse.ArgumentParser, seed_help: str = "random seed (default 1)") -> None:
    """The options of every command that trains with PyTorch."""
    parser.add_argument("--seed", type=nonnegative_int, default=1, help=seed_help)
    parser.add_argument("--threads", type=positive_int, default=2, help="CPU threads for PyTorch (default 2)")


def _requantizer_options(parser: argparse.ArgumentParser) -> None:
    """The arithmetic a new network is trained for (``_arithmetic_options`` overrides a file's)."""
    parser.add_argument("--overflow", choices=[o.value for o in Overflow], default=None,
                        help="requantizer overflow to train for: clip to -128..127 (saturate, default) or keep "
                             "the low 8 bits (wrap)")
    parser.add_argument("--rounding", choices=[r.value for r in Rounding], default=None,
                        help="requantizer rounding to train for: (acc+32)>>6 (half-up, default) or acc>>6 (floor)")


def _weights_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", metavar="FILE.npz", default=None,
        help="integer weights with their .json manifest beside them (default: the shipped LeNet-5)",
    )


def _number(parse, check, words: str):
    """An argparse type: ``parse`` the text, then require ``check(value)`` ("must be ``words``")."""
    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a {'whole number' if parse is int else 'number'}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"must be {words}, got {text}")
        return value
    return convert


positive_int = _number(int, lambda v: v >= 1, "at least 1")
nonnegative_int = _number(int, lambda v: v >= 0, "0 or more")
positive_float = _number(float, lambda v: v > 0, "above 0")
bench_runs = _number(int, lambda v: 1 <= v <= 0xFFFF, "1 to 65535 (BENCH's runs are a u16)")


def positive_int_list(text: str) -> tuple[int, ...]:
    """``20`` or ``43,14,2``: one value for every layer, or one per layer."""
    return tuple(positive_int(part) for part in text.split(","))


def positive_float_list(text: str) -> tuple[float, ...]:
    return tuple(positive_float(part) for part in text.split(","))


def nonnegative_int_list(text: str) -> tuple[int, ...]:
    return tuple(nonnegative_int(part) for part in text.split(","))


def name_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    return () if names in ((), ("none",)) else names


def _lanes_option(parser: argparse.ArgumentParser, design: bool = False) -> None:
    """The generator's size: a preset rule resolved against the network, and overrides; with
    ``design``, also which generator (``--design``)."""
    if design:
        parser.add_argument("--design", choices=["streaming", "compact"], default="streaming",
                            help="streaming: an engine per layer, weights in block RAM (default); compact: one "
                                 "shared array of --lanes multipliers, weights loaded at run time (the iCEBreaker's)")
    parser.add_argument("--preset", default="baseline", metavar="NAME",
                        help="generator sizing rule, resolved against the weights' network: baseline (one "
                             "filter per conv engine, 20 lanes per linear engine) or fast (every stage sized "
                             "to the pixel input's pace); default baseline")
    parser.add_argument("--filters", type=positive_int_list, default=None, metavar="N[,N...]",
                        help="filters computed at once by each conv engine (one value, or one per conv layer; "
                             "each a divisor of its layer's filters); default: the preset's")
    parser.add_argument("--lanes", type=positive_int_list, default=None, metavar="N[,N...]",
                        help="multipliers of each linear engine (one value, or one per linear layer); "
                             "default: the preset's. The compact design: its one array's multipliers (default 8)")
    parser.add_argument("--compact-weights", choices=["auto", "bitstream", "spram"], default="auto",
                        help="the compact design's weight memory: bitstream (block RAM with initial values, each "
                             "layer at its code width: a board classifies right after configuration, and its "
                             "weights cannot be replaced), spram (loaded over the link after configuration, any "
                             "network) or auto (bitstream when it fits the iCE40 UP5K's block RAM beside the "
                             "link; default)")
    parser.add_argument("--soft-multipliers", type=name_list, default=None, metavar="LAYER[,LAYER...]",
                        help="layers whose multipliers are built from logic instead of DSP blocks "
                             "('none' for none); default: the preset's")


def _simulator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--simulator", choices=["icarus", "verilator"], default="verilator",
                        help="HDL simulator (default verilator: about 100x faster than icarus on this design)")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (like every other error of the program) that
    points to --help, not the usage text followed by the error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="lenet-fpga",
        description="LeNet-5 in Q2.6 fixed point: train, evaluate, generate RTL, simulate, build for FPGAs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('lenet-fpga')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train", help="train a LeNet-family network (float, then quantization-aware) and export Q2.6 weights",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a LeNet-family network on MNIST: float training, then quantization-aware training\n"
                    "for the chosen Q2.6 arithmetic. Writes FILE.npz, FILE.json and FILE-float.npz.\n\n"
                    "Network specs (--network): [SIZE/]CONVS:HIDDEN[:CLASSES]\n"
                    "  CONVS   filters of each conv layer, comma-separated; a conv may add kK (kernel,\n"
                    "          default 5) and pP (max-pool, default 2): 6k5p2\n"
                    "  HIDDEN  widths of the hidden fully connected layers (may be empty)\n"
                    "  CLASSES outputs of the last layer (default 10), SIZE the input side (default 28;\n"
                    "          MNIST digits are centred in a larger input, cropped to a smaller one)\n"
                    "  6,16:120,84      LeNet-5 (the default)\n"
                    "  4,10:60,40       a smaller network\n"
                    "  32/6,16:120,84   LeNet-5 as published: 32x32 input\n"
                    "or a .json file: {\"image_size\": 28, \"convs\": [{\"channels\": 6, \"kernel\": 5, \"pool\": 2}, ...],\n"
                    "                  \"hidden\": [120, 84], \"classes\": 10}",
    )
    _data_option(p)
    p.add_argument("--network", "--geometry", metavar="SPEC", default=None,
                   help="the network to train (see above; default 6,16:120,84, LeNet-5)")
    p.add_argument("--epochs", type=positive_int, default=20, help="float training epochs (default 20)")
    p.add_argument("--qat-epochs", type=nonnegative_int, default=10, help="quantization-aware epochs (default 10)")
    p.add_argument("--lr", type=positive_float, default=None, help="float training's peak learning rate (default 2e-3)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="images per step (default 128)")
    p.add_argument("--from", dest="start_from", metavar="FILE.npz", default=None,
                   help="start from these weights (their float checkpoint if it is there, else their codes / 64) "
                        "instead of a random initialisation; the network is theirs")
    p.add_argument("--train-images", type=positive_int, default=None, metavar="N",
                   help="train on the first N of the 60,000 training images only (a quick try; default all)")
    _torch_options(p)
    _requantizer_options(p)
    p.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the weights (+ .json manifest)")
    p.set_defaults(handler="model.commands:cmd_train")

    p = sub.add_parser(
        "import", help="turn a trained PyTorch LeNet-family model into Q2.6 weights (optionally with QAT)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Import a trained PyTorch model: a whole nn.Module (torch.save(model, F)) of Conv2d, ReLU,\n"
                    "MaxPool2d, BatchNorm2d (folded), Flatten, Dropout and Linear layers, or its state_dict\n"
                    "(torch.save(model.state_dict(), F); give --pool and --image-size, which it does not say).\n"
                    "Convs must be valid (padding 0, stride 1, square kernels), every hidden layer must have a\n"
                    "ReLU, the last linear layer gives the logits. The model must take pixels as p/255, or give\n"
                    "--normalize for a model trained on (p/255 - MEAN) / STD. Writes FILE.npz, FILE.json and\n"
                    "FILE-float.npz like train. Unpickling a whole module runs code from the file: import\n"
                    "only models you trust.",
    )
    p.add_argument("model", metavar="MODEL.pt", help="the torch.save file")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the weights (+ .json manifest)")
    p.add_argument("--image-size", type=positive_int, default=28, help="the model's input side (default 28)")
    p.add_argument("--pool", type=positive_int, default=2,
                   help="max-pool after each conv, for a state_dict (default 2; a module says its own)")
    p.add_argument("--normalize", metavar="MEAN,STD", default=None,
                   help="fold the model's input normalisation (p/255 - MEAN) / STD into conv1")
    p.add_argument("--qat-epochs", type=nonnegative_int, default=0,
                   help="quantization-aware fine-tuning epochs on MNIST (default 0: round the weights)")
    _torch_options(p, seed_help="random seed of the fine-tuning (default 1)")
    _requantizer_options(p)
    _data_option(p)
    p.set_defaults(handler="model.commands:cmd_import")

    p = sub.add_parser(
        "compress", help="prune and restrict the weight codes of a trained network, then fine-tune it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compress a trained network for cheaper hardware: a search picks each layer's channel\n"
                    "count and weight codes against the generator's cost model, the channels of smallest L1\n"
                    "norm are pruned, and the smaller network is fine-tuned with quantization-aware training\n"
                    "on its restricted codes. Writes FILE.npz, FILE.json and FILE-float.npz.\n\n"
                    "Weight codes (--codes LAYER=CHOICES, LAYER a layer name or all, conv, fc):\n"
                    "  K     K-bit codes c*2^s (K 2..8, the shift s fitted per layer); 8 is every code\n"
                    "  t     ternary {-a, 0, a} (a fitted per layer)\n"
                    "  pK    power of two {0, +-2^e} in K bits (K 2..4: up to 1, 3, 7 exponents, by k-means)\n"
                    "  A/B/C the search may choose among these, cheapest last (e.g. fc=8/4/3/t)\n\n"
                    "Examples:\n"
                    "  lenet-fpga compress --out pruned.npz --max-macs 155000\n"
                    "  lenet-fpga compress --out small.npz --max-weight-bits 88000 --codes conv=8,fc=6/4/3/t\n"
                    "  lenet-fpga compress --out pow2.npz --codes fc=p3 --epochs 8",
    )
    _data_option(p)
    p.add_argument("--weights", metavar="FILE.npz", default=None,
                   help="the trained network to start from, with its -float.npz if there is one "
                        "(default: the shipped LeNet-5)")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the compressed weights")
    p.add_argument("--start", choices=["codes", "float"], default="codes",
                   help="start from the network's integer codes (/ 64: what the hardware runs, trained for "
                        "Q2.6) or from its float checkpoint (FILE-float.npz; default codes)")
    p.add_argument("--max-macs", type=positive_int, default=None, metavar="N", help="budget: MACs per image")
    p.add_argument("--max-weight-bits", type=positive_int, default=None, metavar="N",
                   help="budget: bits of all weight codes (weights x bits per code)")
    p.add_argument("--max-multipliers", type=positive_int, default=None, metavar="N",
                   help="budget: multipliers of the design the --cost-preset builds")
    p.add_argument("--max-memory-bits", type=positive_int, default=None, metavar="N",
                   help="budget: block RAM bits of that design")
    p.add_argument("--max-cycles", type=positive_int, default=None, metavar="N",
                   help="budget: cycles per image of that design's slowest block")
    p.add_argument("--channels", metavar="LAYER=N[,...]", default=None,
                   help="fix these layers' output channels (the search leaves them alone)")
    p.add_argument("--codes", metavar="LAYER=CHOICES[,...]", default=None,
                   help="weight codes per layer or group (see above; default 8 everywhere)")
    p.add_argument("--method", choices=["greedy", "learned"], default="greedy",
                   help="greedy: the search alone; learned: first train per-layer sparsity thresholds and "
                        "bit-width branches with a cost penalty, then search from there (default greedy)")
    p.add_argument("--tradeoff", type=float, default=0.0, metavar="LAMBDA",
                   help="after the budgets hold, keep compressing while the loss rises by less than LAMBDA "
                        "times the cost saved (relative to the source network; default 0: stop at the budgets)")
    p.add_argument("--cost-preset", default="baseline", metavar="NAME",
                   help="the generator preset whose design the cost model measures (default baseline)")
    p.add_argument("--cost-weights", metavar="METRIC=W[,...]", default=None,
                   help="weights of the cost metrics in the trade-off (default weight_bits=1,multipliers=1,cycles=1; "
                        "metrics: macs, weight_bits, multipliers, memory_bits, cycles)")
    p.add_argument("--min-keep", type=positive_float, default=0.25, metavar="FRACTION",
                   help="the search keeps at least this share of each layer's channels (default 0.25)")
    p.add_argument("--search-images", type=positive_int, default=4000, metavar="N",
                   help="training images that score the search's points (default 4000)")
    p.add_argument("--learned-epochs", type=positive_int, default=3, metavar="N",
                   help="with --method learned: epochs of learning the sparsity and bit widths (default 3)")
    p.add_argument("--epochs", type=nonnegative_int, default=10, help="fine-tuning epochs (default 10)")
    p.add_argument("--train-images", type=positive_int, default=None, metavar="N",
                   help="fine-tune (and search) on the first N training images only (default all 60,000)")
    p.add_argument("--lr", type=positive_float, default=None, help="fine-tuning's peak learning rate (default 5e-4)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="images per step (default 128)")
    _torch_options(p)
    p.set_defaults(handler="model.commands:cmd_compress")

    p = sub.add_parser("eval", help="accuracy of the float and the Q2.6 golden model on the MNIST test set")
    _data_option(p)
    _weights_option(p)
    _arithmetic_options(p)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: fixed_accuracy (the Q2.6 golden model, measured now), "
                        "float_accuracy (the float checkpoint, if present), recorded_accuracy (what the "
                        "weights' manifest says training measured)")
    p.set_defaults(handler="model.commands:cmd_eval")

    p = sub.add_parser("download", help="download the four MNIST files and verify their md5 sums")
    p.add_argument("--data", metavar="DIR", default=None, help="target folder (default as for eval)")
    p.add_argument("--mirror", default=None, help="base URL holding the four .gz files")
    p.set_defaults(handler="model.commands:cmd_download")

    p = sub.add_parser("verilog", help="generate the accelerator's Verilog; print memory and cycles per layer")
    _weights_option(p)
    _arithmetic_options(p)
    _lanes_option(p, design=True)
    p.add_argument("-o", "--output", required=True, metavar="OUT.v", help="Verilog file to write")
    p.add_argument("--json", action="store_true", help="print the per-layer report as JSON")
    p.set_defaults(handler="hdl.commands:cmd_verilog")

    p = sub.add_parser("sim", help="run images through the RTL in a simulator and compare with the golden model")
    _simulator_option(p)
    _weights_option(p)
    p.add_argument("--images", metavar="FILE.npz", default=None,
                   help="images uint8 [N,S,S] (S up to the network's input size) and optional labels (default: the 40 shipped test digits)")
    p.add_argument("--n", type=positive_int, default=None, help="only the first N images")
    p.add_argument("--mnist", action="store_true", help="the 10,000 MNIST test images instead (see --data, --stream)")
    _data_option(p)
    p.add_argument("--jobs", type=positive_int, default=1, help="simulator processes to shard the images across (default 1)")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786|local", default=None,
                   help="shard the images across the workers of this Dask scheduler instead ('local': a local "
                        "cluster of --jobs worker processes); needs the explore extra")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="send the images back to back: fewer simulated cycles, and each image's cycles then "
                        "include its wait behind the previous one (default: on with --mnist, else off)")
    _arithmetic_options(p)
    _lanes_option(p, design=True)
    p.add_argument("--waves", action="store_true", help="write a waveform to open in GTKWave (.fst from icarus, .vcd from verilator)")
    p.add_argument("--waves-file", metavar="FILE", default=None, help="where to put it (default ./lenet_sim.fst or .vcd)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler="sim.commands:cmd_sim")

    p = sub.add_parser("classify", help="classify your own digit pictures (PNG, JPEG, ...) with the golden model, "
                                        "and with --rtl in the simulated hardware")
    p.add_argument("pictures", nargs="+", metavar="PICTURE", help="picture files; any size, dark on light or "
                   "light on dark: each is cropped, scaled and centred like an MNIST digit")
    _weights_option(p)
    p.add_argument("--rtl", action="store_true", help="also run them through the RTL in a simulator")
    _simulator_option(p)
    _arithmetic_options(p)
    _lanes_option(p, design=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler="sim.commands:cmd_classify")

    p = sub.add_parser("bench", help="per network and preset: accuracy, MACs, weight bits, multipliers, cycles, "
                                     "Fmax, resources, images/s")
    p.add_argument("--configs", metavar="NAME,NAME", default=None, help="presets to measure (default: all)")
    p.add_argument("--weights", metavar="FILE.npz", action="append", default=None,
                   help="a network to measure (repeat, or FILE,FILE; default: the shipped LeNet-5)")
    _data_option(p)
    p.add_argument("--rtl-images", type=positive_int, default=8,
                   help="images streamed through the RTL for the interval and the bit-exact check (default 8)")
    _simulator_option(p)
    p.add_argument("--pnr", action="store_true", help="also synthesize and place-and-route each preset for the "
                   "ECP5 LFE5U-85F (out of context) for Fmax and resources: minutes for baseline, an hour or "
                   "more for fast")
    p.add_argument("--pnr-minutes", type=positive_float, default=None, metavar="MINUTES",
                   help="with --pnr: stop a preset's synthesis and place-and-route after this long and report it "
                   "as not done (default: no limit)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--plots", metavar="DIR", default=None, help="write PNG plots to this folder")
    p.set_defaults(handler="sim.benchmark:cmd_bench")

    p = sub.add_parser("bench-report", help="the table and plots of several saved bench --json runs together",
                       description="Tabulate and plot saved `lenet-fpga bench --json` outputs together: one "
                                   "picture of networks and presets measured in separate runs (each "
                                   "place-and-route takes minutes to an hour). A network and preset that "
                                   "appears twice keeps the row of the later file.",
                       epilog="example:\n  lenet-fpga bench --weights A.npz --configs baseline --pnr --json > a.json\n"
                              "  lenet-fpga bench --weights B.npz --configs fast --pnr --json > b.json\n"
                              "  lenet-fpga bench-report a.json b.json --plots docs/bench",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="FILE.json", help="outputs of bench --json")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="MNIST folder (default: $LENET_FPGA_DATA, else where `lenet-fpga download` puts it): "
                        "rows measured without the test set get the golden model's accuracy from their weights file")
    p.add_argument("--plots", metavar="DIR", default=None, help="write PNG plots to this folder")
    p.add_argument("--json", action="store_true", help="print the merged rows as one JSON object")
    p.set_defaults(handler="sim.benchmark:cmd_bench_report")

    p = sub.add_parser(
        "explore", help="sweep a grid of designs through golden accuracy, RTL and place and route on Dask workers",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sweep a grid of points through the flow's stages, on the cores of this machine (a Dask\n"
                    "LocalCluster) or on the workers of a Dask cluster (--scheduler). Each finished point is a\n"
                    "line of the results file; a rerun skips the points it has. Needs the explore extra.\n\n"
                    "The grid is the product of the axes given (comma lists; --filters, --lanes and\n"
                    "--soft-multipliers may be repeated, each value one step of its axis), or a --grid file:\n"
                    "  lenet-fpga explore --preset baseline,fast --lanes 20 --lanes 10,5,2 --stages golden,rtl\n"
                    "  lenet-fpga explore --stages rtl,pnr --seed 1,2,3 --time-limit 30\n"
                    "  lenet-fpga explore --grid sweep.toml --scheduler tcp://HOST:8786\n"
                    "A grid file (TOML or JSON) has the fields weights, designs (tables of preset, filters,\n"
                    "lanes, soft_multipliers, name), devices, clocks_mhz, seeds, stages, rtl_images,\n"
                    "simulator, time_limit_minutes.",
    )
    p.add_argument("--grid", metavar="FILE", default=None, help="the grid as a .toml or .json file (instead of "
                   "the grid options below)")
    p.add_argument("--weights", type=name_list, default=None, metavar="FILE.npz[,FILE.npz...]",
                   help="weight files (with their .json manifests); 'shipped' is the shipped LeNet-5 (default)")
    p.add_argument("--preset", type=name_list, default=None, metavar="NAME[,NAME...]",
                   help="generator presets, each resolved against the weights' network (default baseline)")
    p.add_argument("--filters", type=positive_int_list, action="append", default=None, metavar="N[,N...]",
                   help="a value of the filters axis (as for verilog --filters); repeat for more")
    p.add_argument("--lanes", type=positive_int_list, action="append", default=None, metavar="N[,N...]",
                   help="a value of the lanes axis (as for verilog --lanes); repeat for more")
    p.add_argument("--soft-multipliers", type=name_list, action="append", default=None, metavar="LAYER[,LAYER...]",
                   help="a value of the soft-multiplier axis ('none' for none); repeat for more")
    p.add_argument("--device", type=name_list, default=None, metavar="PART[,PART...]",
                   help="ECP5 parts for place and route: LFE5U-12F, -25F, -45F, -85F (default LFE5U-85F)")
    p.add_argument("--clock-mhz", type=positive_float_list, default=None, metavar="MHZ[,MHZ...]",
                   help="clocks place and route aims for, and at which images/s is given without it (default 100)")
    p.add_argument("--seed", type=nonnegative_int_list, default=None, metavar="N[,N...]",
                   help="nextpnr placement seeds (default 1)")
    p.add_argument("--stages", type=name_list, default=None, metavar="STAGE[,STAGE...]",
                   help="golden (accuracy on the MNIST test set), rtl (stream --rtl-images through the RTL: "
                        "interval, latency, bit-exact), pnr (out-of-context synthesis and place and route: "
                        "resources, Fmax); default golden,rtl")
    p.add_argument("--rtl-images", type=positive_int, default=None, help="images the rtl stage streams (default 8)")
    p.add_argument("--simulator", choices=["icarus", "verilator"], default=None, help="for the rtl stage "
                   "(default verilator)")
    p.add_argument("--time-limit", dest="time_limit_minutes", type=positive_float, default=None, metavar="MINUTES",
                   help="a point's rtl and pnr stages together stop after this long, their processes killed, "
                        "and the point is recorded as failed (default: no limit)")
    _data_option(p)
    p.add_argument("--results", metavar="FILE.jsonl", default=None,
                   help="results file, one JSON line per point (default build/explore/results.jsonl)")
    p.add_argument("--plots", metavar="FILE.png", default=None,
                   help="where to draw the Pareto fronts (default: beside the results, NAME-pareto.png)")
    p.add_argument("--retry-failed", action="store_true", help="rerun the points the results file has as failed")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="worker processes of the local cluster (default: one per core)")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", default=None,
                   help="run on the workers of this Dask scheduler instead of a local cluster")
    p.add_argument("--scratch", metavar="DIR", default=None,
                   help="where workers build (a folder per point; default: each worker's Dask local directory)")
    p.add_argument("--keep-builds", action="store_true", help="keep each point's build folder")
    p.add_argument("--json", action="store_true", help="print the summary and every record as one JSON object")
    p.set_defaults(handler="explore.commands:cmd_explore")

    p = sub.add_parser("build", help="build a bitstream for a board and report resources and Fmax")
    p.add_argument("--board", required=True, choices=BOARDS, help="target board")
    _weights_option(p)
    _arithmetic_options(p)
    _lanes_option(p)
    p.add_argument("--baud", type=positive_int, default=115_200, help="UART baud rate (default 115200)")
    p.add_argument("--clock-mhz", type=positive_float, metavar="MHZ", default=None,
                   help="run the design from the FPGA's PLL at about this clock (ECP5: 10..400 MHz, iCE40: "
                        "16..275 MHz; default: the board's oscillator, 25 MHz on the ULX3S, 12 MHz on the "
                        "iCEBreaker)")
    p.add_argument("--seed", type=nonnegative_int, metavar="N", default=None,
                   help="nextpnr's placement seed (default: nextpnr's own); a large design's Fmax varies "
                        "by several MHz from seed to seed, so a build that misses timing may meet it with another")
    p.add_argument("--build-dir", metavar="DIR", default=None, help="default build/BOARD")
    p.add_argument("--force", action="store_true", help="try place-and-route even if the memories cannot fit")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(handler="boards.build:cmd_build")

    p = sub.add_parser("flash", help="program a board with openFPGALoader: its SRAM (until power-off) or its flash")
    p.add_argument("--board", required=True, choices=BOARDS, help="target board")
    p.add_argument("--bitstream", metavar="FILE", default=None, help="default build/BOARD/lenet5.bit (.bin)")
    p.add_argument("--write-flash", action="store_true",
                   help="write the SPI flash the FPGA configures itself from at power-up (stays after power-off; "
                        "replaces what the flash held) instead of the FPGA's SRAM")
    p.add_argument("--cable", metavar="NAME", default=None,
                   help="the programming adapter, when not the board's own (openFPGALoader --list-cables)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the bitstream and openFPGALoader, print the command, touch no hardware")
    p.set_defaults(handler="boards.flash:cmd_flash")

    p = sub.add_parser("board-run", help="send images to a flashed board over UART and compare with the golden model")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0 (or a pyserial URL)")
    p.add_argument("--baud", type=positive_int, default=115_200, help="baud rate (default 115200, at least 1200)")
    p.add_argument("--timeout", type=positive_float, default=None, metavar="SECONDS",
                   help="how long to wait for the reply to the longest exchange (a whole image) before sending "
                        "the request again, shorter exchanges proportionally less, at least 0.2 s (default: twice the "
                        "line time at --baud plus 0.5 s, 0.65 s at 115200 baud; 10 s on a pseudo-terminal such as "
                        "board-sim's)")
    _weights_option(p)
    # A weight load is laid out for the board's design: its board and generator options.
    p.add_argument("--board", choices=BOARDS, default="ulx3s-85f",
                   help="the board's design, for loading --weights into it (default ulx3s-85f)")
    _lanes_option(p)
    p.add_argument("--images", metavar="FILE.npz", default=None, help="images (default: the 40 shipped digits)")
    p.add_argument("--n", type=positive_int, default=None, help="only the first N images")
    p.add_argument("--bench", type=bench_runs, nargs="?", const=100, default=None, metavar="N",
                   help="instead: the first image N times back to back on the board (default 100, at most 65535), "
                        "timed by the board's own cycle counter: cycles per image and images/s at the board's clock")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler="boards.run:cmd_board_run")

    p = sub.add_parser(
        "board-sim", help="a simulated board behind a pseudo-terminal, for board-run without a board",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a board's own design (the UART link and the accelerator its bitstream holds) in a\n"
                    "simulator behind a pseudo-terminal, and print the terminal's path: then\n"
                    "  lenet-fpga board-run --port /dev/pts/N [--board icebreaker]\n"
                    "talks to it as to a real board. Ctrl-C stops it. The simulated UART runs at --divisor\n"
                    "clock cycles per bit (the serial line's baud rate does not apply to a pseudo-terminal);\n"
                    "--flip and --drop put noise on the line, each way.",
    )
    p.add_argument("--board", choices=["ulx3s-85f", "icebreaker"], default="ulx3s-85f",
                   help="whose design: ulx3s-85f (the streaming design, weights in the bitstream; default) or "
                        "icebreaker (the compact design, weights loaded over the line by board-run)")
    _weights_option(p)
    _lanes_option(p)
    p.add_argument("--divisor", type=positive_int, default=4, metavar="CYCLES",
                   help="simulated clock cycles per UART bit (default and least 4, the fastest simulated line; "
                        "the ULX3S has 217 at 25 MHz)")
    p.add_argument("--flip", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of bytes, each way, that get one random bit inverted (e.g. 0.01; default 0)")
    p.add_argument("--drop", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of bytes, each way, that are lost (default 0)")
    p.add_argument("--seed", type=nonnegative_int, default=1, help="random seed of the line noise (default 1)")
    p.add_argument("--link", metavar="PATH", default=None,
                   help="also make PATH a symbolic link to the pseudo-terminal (removed when it stops)")
    _simulator_option(p)
    p.set_defaults(handler="sim.board_sim:cmd_board_sim")

    p = sub.add_parser("demo", help="the shipped network on the shipped digits: golden model and RTL simulation")
    _weights_option(p)
    _simulator_option(p)
    _arithmetic_options(p)
    _lanes_option(p, design=True)
    p.add_argument("--plot", metavar="FILE.png", default="build/demo.png",
                   help="picture of the digits with the RTL's answers (default build/demo.png; '' for none)")
    p.set_defaults(handler="sim.commands:cmd_demo")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module_name, function_name = args.handler.split(":")
    # Import lazily: `lenet-fpga eval` should not pay for importing torch or amaranth.
    import importlib

    module = importlib.import_module(f"{__package__}.{module_name}")
    try:
        return getattr(module, function_name)(args)
    except InputError as e:
        print(f"lenet-fpga {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lenet-fpga {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
