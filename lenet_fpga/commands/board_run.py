"""``lenet-fpga board-run``: images through a board over UART, compared with the golden model."""

from __future__ import annotations

import json

from . import options

NAME = "board-run"
HELP = "send images to a flashed board over UART and compare with the golden model"
DESCRIPTION = """\
Send images to a flashed board (or to board-sim's pseudo-terminal) over its serial line and
compare each answer's logits with the golden model's. With --weights, or when the board
holds no valid weights (the iCEBreaker's compact design after configuration), the weights
are loaded over the line first, laid out for --board's design. With --bench N, one image
runs N times back to back on the board instead, timed by its own cycle counter: cycles per
image and images/s at the board's clock, which the serial line hides."""


def add_arguments(parser) -> None:
    parser.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0 (or a pyserial URL)")
    parser.add_argument("--baud", type=options.positive_int, default=115_200,
                        help="baud rate (default 115200, at least 1200)")
    parser.add_argument("--timeout", type=options.positive_float, default=None, metavar="SECONDS",
                        help="fixed waits: how long to wait for the reply to the longest exchange (a whole image) "
                             "before sending the request again, shorter exchanges proportionally less, at least 0.2 s "
                             "(default: waits from the measured round trips, so a slow board such as board-sim's on a "
                             "loaded machine gets longer ones; short tries, doubled while unanswered, until the first "
                             "reply)")
    options.weights_option(parser)
    # A weight load is laid out for the board's design: its board and generator options.
    options.board_option(parser, default="ulx3s-85f",
                         help="the board's design, for loading --weights into it (default ulx3s-85f)")
    options.lanes_option(parser)
    parser.add_argument("--images", metavar="FILE.npz", default=None, help="images (default: the 40 shipped digits)")
    parser.add_argument("--n", type=options.positive_int, default=None, help="only the first N images")
    parser.add_argument("--bench", type=options.bench_runs, nargs="?", const=100, default=None, metavar="N",
                        help="instead: the first image N times back to back on the board (default 100, at most "
                             "65535), timed by the board's own cycle counter: cycles per image and images/s at the "
                             "board's clock")
    options.json_option(parser)


def print_result(total: dict) -> None:
    retries = ", ".join(f"{n} after {reason}" for reason, n in sorted(total["retries"].items())) or "none"
    print(f"{total['images']} of {total['requested']} images on the board ({total['arithmetic']}): "
          f"{total['mismatches']} mismatches against the golden model; "
          + (f"{total['cycles_per_image']:.0f} accelerator cycles per image; " if total["images"] else "")
          + f"{total['images_per_second_over_link']} images/s over the serial line; requests sent again: {retries}")
    if "board_accuracy" in total:
        print(f"board accuracy on these images {total['board_accuracy']:.1%}")


def run(args) -> int:
    import os

    from ..boards import host
    from ..boards.platforms import board as find_board
    from ..boards.run import (bench_on_board, board_weight_image, check_board_network, format_bench,
                              load_board_weights, run_on_board)
    from ..model import images as image_sets
    from ..model import weights as weight_files
    from ..model.errors import InputError

    ws = weight_files.load(args.weights)
    image_set = image_sets.load_image_set(args.images).head(args.n).fitted(ws.network)
    timeout = args.timeout
    simulated = os.path.realpath(args.port).startswith("/dev/pts/")
    port = host.open_serial(args.port, args.baud, timeout)
    try:
        # A pseudo-terminal has no baud rate: its far end (board-sim) is as fast as its simulator.
        client = host.BoardClient(port, byte_seconds=0.0 if simulated else 10 / args.baud)
        if timeout is not None:
            client.set_timeout(timeout)
        info = client.ping()
        check_board_network(info, ws)
        if args.weights is not None or not info.weights_valid:
            config_design, image = board_weight_image(ws, args.board, options.generator_options(args), with_design=True)
            if config_design != info.design:
                raise InputError(f"the board runs the {info.design} design; --board {args.board} builds the "
                                 f"{config_design} one: give the --board (and --preset, --lanes) it was built with")
            load_board_weights(client, ws, image, quiet=args.json)
        if args.bench is not None:
            bench = bench_on_board(client, ws, image_set, args.bench, find_board(args.board).clock_hz, simulated)
            print(json.dumps({"bench": bench}) if args.json else format_bench(bench, args.board))
            return 0 if bench["match"] else 1
        result = run_on_board(client, ws, image_set, quiet=args.json)
    finally:
        port.close()
    total = result["total"]
    if args.json:
        print(json.dumps(result))
    else:
        print_result(total)
    if total.get("error") == "interrupted":
        raise KeyboardInterrupt
    if not total["complete"]:
        raise InputError(f"the run stopped after {total['images']} of {total['requested']} images: {total['error']}")
    return 1 if total["mismatches"] else 0
