"""``lenet-fpga``: one command-line program, one subcommand per step of the flow."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

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
        help="folder with the four MNIST .gz files (default: $LENET_FPGA_DATA, ../shared/data/mnist, ./data/mnist)",
    )


def _weights_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", metavar="FILE.npz", default=None,
        help="integer weights with their .json manifest beside them (default: the shipped LeNet-5)",
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def positive_int_list(text: str) -> tuple[int, ...]:
    """``20`` or ``43,14,2``: one value for every layer, or one per layer."""
    return tuple(positive_int(part) for part in text.split(","))


def name_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    return () if names in ((), ("none",)) else names


def _lanes_option(parser: argparse.ArgumentParser) -> None:
    """The streaming generator's size: a preset rule resolved against the network, and overrides."""
    parser.add_argument("--preset", default="baseline", metavar="NAME",
                        help="generator sizing rule, resolved against the weights' network: baseline (one "
                             "filter per conv engine, 20 lanes per linear engine) or fast (every stage sized "
                             "to the pixel input's pace); default baseline")
    parser.add_argument("--filters", type=positive_int_list, default=None, metavar="N[,N...]",
                        help="filters computed at once by each conv engine (one value, or one per conv layer; "
                             "each a divisor of its layer's filters); default: the preset's")
    parser.add_argument("--lanes", type=positive_int_list, default=None, metavar="N[,N...]",
                        help="multipliers of each linear engine (one value, or one per linear layer); "
                             "default: the preset's")
    parser.add_argument("--soft-multipliers", type=name_list, default=None, metavar="LAYER[,LAYER...]",
                        help="layers whose multipliers are built from logic instead of DSP blocks "
                             "('none' for none); default: the preset's")


def _simulator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--simulator", choices=["icarus", "verilator"], default="verilator",
                        help="HDL simulator (default verilator: about 100x faster than icarus on this design)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    p.add_argument("--seed", type=nonnegative_int, default=1, help="random seed (default 1)")
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads for PyTorch (default 2)")
    p.add_argument("--overflow", choices=[o.value for o in Overflow], default=None,
                   help="requantizer overflow to train for: clip (saturate, default) or keep the low 8 bits (wrap)")
    p.add_argument("--rounding", choices=[r.value for r in Rounding], default=None,
                   help="requantizer rounding to train for: (acc+32)>>6 (half-up, default) or acc>>6 (floor)")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the weights (+ .json manifest)")
    p.set_defaults(handler="model.commands:cmd_train")

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
    _lanes_option(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.v", help="Verilog file to write")
    p.add_argument("--json", action="store_true", help="print the per-layer report as JSON")
    p.set_defaults(handler="hdl.commands:cmd_verilog")

    p = sub.add_parser("sim", help="run images through the RTL in a simulator and compare with the golden model")
    _simulator_option(p)
    _weights_option(p)
    p.add_argument("--images", metavar="FILE.npz", default=None,
                   help="images uint8 [N,28,28] and optional labels (default: the 40 shipped test digits)")
    p.add_argument("--n", type=positive_int, default=None, help="only the first N images")
    p.add_argument("--mnist", action="store_true", help="the 10,000 MNIST test images instead (see --data, --stream)")
    _data_option(p)
    p.add_argument("--jobs", type=positive_int, default=1, help="simulator processes to shard the images across (default 1)")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="send the images back to back: fewer simulated cycles, and each image's cycles then "
                        "include its wait behind the previous one (default: on with --mnist, else off)")
    _arithmetic_options(p)
    _lanes_option(p)
    p.add_argument("--waves", action="store_true", help="write a waveform to open in GTKWave (.fst from icarus, .vcd from verilator)")
    p.add_argument("--waves-file", metavar="FILE", default=None, help="where to put it (default ./lenet_sim.fst or .vcd)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler="sim.commands:cmd_sim")

    p = sub.add_parser("bench", help="per preset: multipliers, cycles, interval, floors, Fmax, resources, accuracy")
    p.add_argument("--configs", metavar="NAME,NAME", default=None, help="presets to measure (default: all)")
    _weights_option(p)
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
    p.add_argument("--json", metavar="FILE", default=None, help="write the results as JSON")
    p.add_argument("--plots", metavar="DIR", default=None, help="write PNG plots to this folder")
    p.set_defaults(handler="sim.benchmark:cmd_bench")

    p = sub.add_parser("build", help="build a bitstream for a board and report resources and Fmax")
    p.add_argument("--board", required=True, choices=["ulx3s-85f", "icebreaker"], help="target board")
    _weights_option(p)
    _arithmetic_options(p)
    _lanes_option(p)
    p.add_argument("--baud", type=positive_int, default=115_200, help="UART baud rate (default 115200)")
    p.add_argument("--clock-mhz", type=positive_float, metavar="MHZ", default=None,
                   help="run the design from a PLL at about this clock (ECP5 boards; default: the "
                        "board's oscillator, 25 MHz on the ULX3S)")
    p.add_argument("--build-dir", metavar="DIR", default=None, help="default build/BOARD")
    p.add_argument("--force", action="store_true", help="try place-and-route even if the memories cannot fit")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(handler="boards.build:cmd_build")

    p = sub.add_parser("flash", help="program a board with openFPGALoader")
    p.add_argument("--board", required=True, choices=["ulx3s-85f", "icebreaker"], help="target board")
    p.add_argument("--bitstream", metavar="FILE", default=None, help="default build/BOARD/lenet5.bit (.bin)")
    p.add_argument("--dry-run", action="store_true", help="print the command, touch no hardware")
    p.set_defaults(handler="boards.build:cmd_flash")

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
    p.add_argument("--board", choices=["ulx3s-85f", "icebreaker"], default="ulx3s-85f",
                   help="the board's design, for loading --weights into it (default ulx3s-85f)")
    _lanes_option(p)
    p.add_argument("--images", metavar="FILE.npz", default=None, help="images (default: the 40 shipped digits)")
    p.add_argument("--n", type=positive_int, default=None, help="only the first N images")
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
    _lanes_option(p)
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
