"""``lenet-fpga board-sim``: a simulated board behind a pseudo-terminal."""

from __future__ import annotations

import json

from . import options

NAME = "board-sim"
HELP = "a simulated board behind a pseudo-terminal, for board-run without a board"
DESCRIPTION = """\
Run a board's own design (the UART link and the accelerator its bitstream holds) in a
simulator behind a pseudo-terminal, and print the terminal's path: then
  lenet-fpga board-run --port /dev/pts/N [--board icebreaker]
talks to it as to a real board. Ctrl-C stops it. The simulated UART runs at --divisor
clock cycles per bit (the serial line's baud rate does not apply to a pseudo-terminal);
--flip and --drop put noise on the line, each way."""


def add_arguments(parser) -> None:
    parser.add_argument("--board", choices=["ulx3s-85f", "icebreaker"], default="ulx3s-85f",
                        help="whose design: ulx3s-85f (the streaming design, weights in the bitstream; default) or "
                             "icebreaker (the compact design, weights loaded over the line by board-run)")
    options.weights_option(parser)
    options.lanes_option(parser)
    parser.add_argument("--divisor", type=options.positive_int, default=4, metavar="CYCLES",
                        help="simulated clock cycles per UART bit (default and least 4, the fastest simulated line; "
                             "the ULX3S has 217 at 25 MHz)")
    parser.add_argument("--flip", type=options.fraction, default=0.0, metavar="FRACTION",
                        help="fraction of bytes, each way, that get one random bit inverted (e.g. 0.01; default 0)")
    parser.add_argument("--drop", type=options.fraction, default=0.0, metavar="FRACTION",
                        help="fraction of bytes, each way, that are lost (default 0)")
    parser.add_argument("--seed", type=options.nonnegative_int, default=1,
                        help="random seed of the line noise (default 1)")
    parser.add_argument("--link", metavar="PATH", default=None,
                        help="also make PATH a symbolic link to the pseudo-terminal (removed when it stops)")
    options.simulator_option(parser)
    options.build_dir_option(parser)
    options.json_option(parser, "print one JSON line when the board serves: the pseudo-terminal's path and the "
                                "design it runs, instead of the path alone")


def run(args) -> int:
    import os
    import sys
    from ..boards.configure import design_config
    from ..boards.platforms import board as find_board
    from ..boards.uart import MIN_DIVISOR
    from ..model import weights as weight_files
    from ..model.errors import InputError
    from ..sim import runner
    from ..sim.board_sim import BoardSim, LineNoise, simulated_link, terminate_as_interrupt

    noise = LineNoise(args.flip, args.drop, args.seed)
    if args.divisor < MIN_DIVISOR:
        raise InputError(f"--divisor {args.divisor}: the UART needs at least {MIN_DIVISOR} clock cycles per bit")
    ws = weight_files.load(args.weights)
    target = find_board(args.board)
    config = design_config(ws, options.generator_options(args), target)
    if args.link is not None and os.path.lexists(args.link) and not os.path.islink(args.link):
        raise InputError(f"--link {args.link}: a file that is not a symbolic link is in the way")
    build_root = runner.check_build_root(args.build_dir)
    link = simulated_link(ws, config, args.divisor, target.clock_hz)
    info = link.info
    print(f"board-sim: the {args.board} design ({info.design}, {ws.network.spec}, {info.multipliers} multipliers, "
          f"weights {'in the bitstream, id ' + format(info.weights_id, '08x') if info.weights_in_bitstream else 'loaded over the line'}) "
          f"at {args.divisor} clock cycles per bit (INFO reports the board's {target.clock_hz / 1e6:g} MHz), "
          f"{noise.describe()}; building the simulator (minutes the first time)...",
          file=sys.stderr, flush=True)
    sim = BoardSim(link, noise, args.simulator, build_root=build_root, alias=args.link)
    with terminate_as_interrupt():  # SIGTERM cleans up as Ctrl-C does
        return serve(sim, args, ws, info, target, noise)


def serve(sim, args, ws, info, target, noise) -> int:
    """Start the simulated board, print its port, and serve until stopped."""
    import sys

    try:
        port = sim.start()
        if args.json:
            print(json.dumps({"port": port, "link": args.link, "board": args.board, "design": info.design,
                              "network": ws.network.spec, "multipliers": info.multipliers,
                              "weights_in_bitstream": info.weights_in_bitstream, "divisor": args.divisor,
                              "clock_hz": target.clock_hz, "noise": noise.describe()}), flush=True)
        else:
            print(port, flush=True)
        hint = "" if args.board == "ulx3s-85f" else f" --board {args.board}"
        print(f"board-sim: serving on {port}: lenet-fpga board-run --port {args.link or port}{hint}   (Ctrl-C stops)",
              file=sys.stderr, flush=True)
        sim.wait()
    except KeyboardInterrupt:
        sim.stop()
        raise
    sim.stop()
    return 0
