"""Place and route the AXI4-Stream wrapper around a board's design, out of context on an ECP5
(nextpnr-ecp5 --out-of-context: its ports are not pins), and print nextpnr's figures as JSON.

    .venv/bin/python scripts/axis_pnr.py --board ulx3s-85f --out build/axis-pnr

The same flow as `lenet-fpga bench --pnr` (boards/pnr.py), with the wrapper (hdl/axis.py) around
the accelerator. About 6 minutes for the ULX3S-85F's streaming design on 2 cores.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from lenet_fpga.api import design_config
from lenet_fpga.boards.pnr import PNR_DEVICES, place_and_route
from lenet_fpga.hdl.axis import AxiStreamAccelerator
from lenet_fpga.model import weights
from lenet_fpga.model.errors import InputError


class Wrapped:
    """A design configuration whose accelerator is built behind the AXI4-Stream wrapper."""

    def __init__(self, config):
        self.config = config

    def build(self, ws):
        return AxiStreamAccelerator(self.config.build(ws))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", default="ulx3s-85f", help="an ECP5 board whose design to wrap (default ulx3s-85f)")
    parser.add_argument("--weights", default=None, help="weights file (default: the shipped LeNet-5)")
    parser.add_argument("--device", default="LFE5U-85F", choices=sorted(PNR_DEVICES))
    parser.add_argument("--out", default="build/axis-pnr", help="build folder (default build/axis-pnr)")
    parser.add_argument("--time-limit", type=float, default=3600, metavar="S", help="seconds (default 3600)")
    args = parser.parse_args(argv)
    try:
        ws = weights.load(args.weights)
        config = design_config(ws, board=args.board)
        start = time.monotonic()
        result = place_and_route(ws, Wrapped(config), Path(args.out), time_limit_s=args.time_limit,
                                 device=args.device,
                                 step=lambda stage: print(f"{time.monotonic() - start:7.1f} s {stage}", flush=True))
    except InputError as e:
        print(f"axis_pnr: error: {e}", file=sys.stderr)
        return 2
    result["seconds"] = round(time.monotonic() - start, 1)
    print(json.dumps(result))
    return 0 if result["timing_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
