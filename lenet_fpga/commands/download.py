"""``lenet-fpga download``: the four MNIST files, md5-checked."""

from __future__ import annotations

import json
from pathlib import Path

from . import options

NAME = "download"
HELP = "download the four MNIST files and verify their md5 sums"
DESCRIPTION = """\
Download the four MNIST .gz files (training and test images and labels) into --data and
check each against its md5 sum. A file that is already there and passes its check is kept;
each file lands complete or not at all. Every command that reads MNIST looks in the same
folder: --data, else $LENET_FPGA_DATA, else ~/.local/share/lenet-fpga/mnist."""


def add_arguments(parser) -> None:
    options.data_option(parser, "target folder (default: $LENET_FPGA_DATA, else ~/.local/share/lenet-fpga/mnist)")
    parser.add_argument("--mirror", metavar="URL", default=None, help="base URL holding the four .gz files")
    options.json_option(parser, "print one JSON object (the folder, the files downloaded and the files verified) "
                                "instead of the text")


def run(args) -> int:
    from ..model import mnist
    from ..model.atomic import check_output
    from ..model.progress import progress

    bars: dict = {}

    def show(name, done, total):
        bar = bars.setdefault(name, progress(total=total or None, desc=name, unit="B", unit_scale=True,
                                             disable=args.json))
        bar.update(done - bar.n)

    data_dir = Path(args.data) if args.data is not None else mnist.default_data_dir()
    mirror = mnist.check_mirror(args.mirror if args.mirror is not None else mnist.DEFAULT_MIRROR)
    for name in mnist.FILES:
        check_output(data_dir / name, "--data")
    try:
        fetched = mnist.download(data_dir, mirror=mirror, progress=show)
    finally:
        for bar in bars.values():
            bar.close()
    if args.json:
        print(json.dumps({"data": str(data_dir), "downloaded": [str(path) for path in fetched],
                          "verified": [str(data_dir / name) for name in mnist.FILES]}))
    else:
        print(f"{len(fetched)} file(s) downloaded, all four verified in {data_dir}")
    return 0
