"""``lenet-fpga``: one command-line program, one subcommand per step of the flow.

Each subcommand is a module of ``lenet_fpga.commands`` (its options, its ``--help`` and its
``run``); this module builds the parser from them and dispatches. The command modules import
the library (torch, amaranth, the simulators) inside ``run``, so ``lenet-fpga eval`` and
``--help`` pay only for what they use.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import version

from .commands.options import HelpFormatter
from .model.errors import InputError

# In the order of the flow, as `lenet-fpga --help` lists them.
COMMANDS = ("train", "import_model", "compress", "eval", "export", "download", "verilog", "sim", "classify", "bench",
            "bench_report", "explore", "build", "flash", "board_run", "board_sim", "demo")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (like every other error of the program) that
    points to --help, not the usage text followed by the error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def command_modules() -> list:
    return [importlib.import_module(f"{__package__}.commands.{name}") for name in COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="lenet-fpga",
        description="LeNet-5 in Q2.6 fixed point: train, evaluate, generate RTL, simulate, build for FPGAs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('lenet-fpga')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.DESCRIPTION,
                           epilog=getattr(module, "EPILOG", None),
                           formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except InputError as e:
        print(f"lenet-fpga {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lenet-fpga {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
