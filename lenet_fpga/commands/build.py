"""``lenet-fpga build``: a bitstream for a board, and its resources and Fmax."""

from __future__ import annotations

import json

from . import options

NAME = "build"
HELP = "build a bitstream for a board and report resources and Fmax"
DESCRIPTION = """\
Build a bitstream for a board with Yosys and nextpnr (from PyPI, the boards extra): the
board's design (the ULX3S the streaming accelerator, the iCEBreaker the compact one) with
the UART link, checked to fit the board's memories first. Prints the resources it uses, the
Fmax nextpnr reports against the clock (--clock-mhz, else the board's oscillator), and where
the bitstream and the tools' logs are (--build-dir, default build/BOARD); exits 1 when timing
is not met."""


def add_arguments(parser) -> None:
    options.board_option(parser, required=True)
    options.weights_option(parser)
    options.arithmetic_options(parser)
    options.lanes_option(parser)
    parser.add_argument("--baud", type=options.positive_int, default=115_200, help="UART baud rate (default 115200)")
    parser.add_argument("--clock-mhz", type=options.positive_float, metavar="MHZ", default=None,
                        help="run the design from the FPGA's PLL at about this clock (ECP5: 10..400 MHz, iCE40: "
                             "16..275 MHz; default: the board's oscillator, 25 MHz on the ULX3S, 12 MHz on the "
                             "iCEBreaker)")
    parser.add_argument("--seed", type=options.nonnegative_int, metavar="N", default=None,
                        help="nextpnr's placement seed (default: nextpnr's own); a large design's Fmax varies "
                             "by several MHz from seed to seed, so a build that misses timing may meet it with another")
    parser.add_argument("--build-dir", metavar="DIR", default=None, help="where to build (default build/BOARD)")
    parser.add_argument("--force", action="store_true", help="try place-and-route even if the memories cannot fit")
    options.json_option(parser, "print the report as one JSON object")


def run(args) -> int:
    from dataclasses import asdict

    from ..api import build_for_board
    from ..model import weights as weight_files

    ws = weight_files.load(args.weights)
    report = build_for_board(ws, args.board, options.generator_options(args), clock_mhz=args.clock_mhz,
                             build_dir=args.build_dir, baud=args.baud, seed=args.seed, force=args.force,
                             log=(lambda *_: None) if args.json else print)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(report.table())
    return 0 if report.timing_met else 1
