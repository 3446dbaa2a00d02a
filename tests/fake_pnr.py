"""A stand-in for Yosys and nextpnr-ecp5 in the explore tests (``YOSYS``/``NEXTPNR_ECP5`` name a
wrapper that runs ``python fake_pnr.py yosys|nextpnr ARGS``). It takes the arguments
``boards.pnr.place_and_route`` gives and writes the files it expects.

nextpnr's behaviour follows its ``--seed``:

* ``HANG_SEED``: starts a child (``sleep``) and sleeps itself, forever; both pids and the process
  group go to ``$FAKE_PNR_DIR/hang-<pid>.json`` first, so a test can check they were killed;
* ``FAIL_SEED``: writes an ERROR line to its log and exits 1;
* any other seed: a report with ``1000 + seed`` LUTs, ``seed`` DSP blocks and an Fmax of
  ``50 + seed`` MHz.

Every nextpnr run appends its seed and folder to ``$FAKE_PNR_DIR/calls.txt`` and leaves its
arguments in ``nextpnr-args.json`` in its folder.
"""

import json
import os
import subprocess
import sys
import time

HANG_SEED, FAIL_SEED = 13, 7


def option(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


def yosys(args):
    with open(option(args, "-l"), "w") as log:
        log.write("fake yosys\n")
    with open("lenet5.json", "w") as f:
        f.write("{}")


def nextpnr(args):
    seed = int(option(args, "--seed", "0"))
    log = open(option(args, "-l"), "w")
    log.write(f"fake nextpnr, seed {seed}\n")
    log.flush()
    with open(os.path.join(os.environ["FAKE_PNR_DIR"], "calls.txt"), "a") as calls:
        calls.write(f"{seed} {os.getcwd()}\n")
    with open("nextpnr-args.json", "w") as f:
        json.dump(args, f)
    if seed == HANG_SEED:
        child = subprocess.Popen(["sleep", "600"])
        path = os.path.join(os.environ["FAKE_PNR_DIR"], f"hang-{os.getpid()}.json")
        with open(path + ".part", "w") as f:
            json.dump({"pid": os.getpid(), "child": child.pid, "pgid": os.getpgrp()}, f)
        os.replace(path + ".part", path)
        log.write("Info: routing forever\n")
        log.flush()
        while True:
            time.sleep(1)
    if seed == FAIL_SEED:
        log.write("ERROR: fake router gave up\n")
        sys.exit(1)
    report = {"utilization": {"TRELLIS_COMB": {"used": 1000 + seed, "available": 83640},
                              "TRELLIS_FF": {"used": 500, "available": 83640},
                              "DP16KD": {"used": 3, "available": 208},
                              "MULT18X18D": {"used": seed, "available": 156}},
              "fmax": {"clk": {"achieved": 50.0 + seed, "constraint": float(option(args, "--freq"))}}}
    with open(option(args, "--report"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    {"yosys": yosys, "nextpnr": nextpnr}[sys.argv[1]](sys.argv[2:])
