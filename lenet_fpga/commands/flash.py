"""``lenet-fpga flash``: a bitstream onto a board with openFPGALoader."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from . import options

NAME = "flash"
HELP = "program a board with openFPGALoader: its SRAM (until power-off) or its flash"
DESCRIPTION = """\
Program a board with the bitstream `lenet-fpga build` made, through openFPGALoader: the
FPGA's configuration SRAM (gone at power-off: the quick way to try a build) or, with
--write-flash, the SPI flash the FPGA configures itself from at power-up. The iCEBreaker's
programmer reaches only its flash. Every run, --dry-run too, first checks the bitstream and
that openFPGALoader starts; --dry-run then prints the command and touches no hardware."""


def add_arguments(parser) -> None:
    options.board_option(parser, required=True)
    parser.add_argument("--bitstream", metavar="FILE", default=None, help="default build/BOARD/lenet5.bit (.bin)")
    parser.add_argument("--write-flash", action="store_true",
                        help="write the SPI flash the FPGA configures itself from at power-up (stays after "
                             "power-off; replaces what the flash held) instead of the FPGA's SRAM")
    parser.add_argument("--cable", metavar="NAME", default=None,
                        help="the programming adapter, when not the board's own (openFPGALoader --list-cables)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the bitstream and openFPGALoader, print the command, touch no hardware")
    options.json_option(parser, "print one JSON object: the board, bitstream, program and command (with the "
                                "checks passed), and after a real run its exit status; openFPGALoader's own "
                                "output then goes to stderr")


def run(args) -> int:
    import subprocess

    from ..boards.flash import check_bitstream, check_loader, default_bitstream, find_loader, flash_command
    from ..boards.platforms import board
    from ..model.errors import InputError

    target = board(args.board)
    bitstream = Path(args.bitstream) if args.bitstream else default_bitstream(target)
    if not bitstream.is_file():
        raise InputError(f"bitstream not found: {bitstream} (run `lenet-fpga build --board {target.name}` first)")
    if bitstream.suffix != target.bitstream_suffix:
        raise InputError(f"{bitstream}: the {target.title} takes a {target.bitstream_suffix} bitstream")
    check_bitstream(bitstream, target.bitstream_suffix)
    program = find_loader()
    command = flash_command(program, target, bitstream, args.write_flash, args.cable)
    check_loader(program)
    report = {"board": target.name, "bitstream": str(bitstream), "program": program,
              "target": "flash" if args.write_flash else "sram", "command": command,
              "checks": ["bitstream found", f"bitstream is {target.bitstream_suffix}",
                         f"bitstream has a {target.bitstream_suffix} header", f"{program} starts"],
              "dry_run": args.dry_run}
    if args.dry_run:
        print(json.dumps(report) if args.json else shlex.join(command))
        return 0
    print(f"running {shlex.join(command)}", file=sys.stderr)
    # With --json, stdout is the JSON's alone: the program's output goes to file descriptor 2.
    returncode = subprocess.run(command, stdout=2 if args.json else None).returncode
    if args.json:
        print(json.dumps({**report, "returncode": returncode}))
    return returncode
