"""``lenet-fpga verilog``: the accelerator's Verilog, and what it costs per layer."""

from __future__ import annotations

import json

from . import options

NAME = "verilog"
HELP = "generate the accelerator's Verilog; print memory and cycles per layer"
DESCRIPTION = """\
Generate the accelerator for the weights' network as one Verilog module, lenet5 (its ports:
docs/interface.md), with the weights in its memories, and print a per-block report of
MACs, multipliers, memory bits and cycles. --design picks the streaming design (an engine
per layer) or the compact one (one shared array of multipliers); --preset, --filters,
--lanes and --soft-multipliers size it."""

TOPLEVEL = "lenet5"


def add_arguments(parser) -> None:
    options.weights_option(parser)
    options.arithmetic_options(parser)
    options.lanes_option(parser, design=True)
    options.hide(parser.add_argument("--out", "-o", "--output", required=True, metavar="OUT.v",
                                     help="Verilog file to write"), "-o", "--output")
    options.json_option(parser, "print the per-layer report as JSON")


def run(args) -> int:
    from amaranth.back import verilog as amaranth_verilog

    from ..hdl.commands import config_from_args, describe_config, format_layer_table
    from ..model import weights as weight_files
    from ..model.atomic import atomic_path, check_output

    ws = weight_files.load(args.weights)
    config = config_from_args(args, ws)
    out = check_output(args.out, "--out")
    accelerator = config.build(ws)
    rows = accelerator.layer_report()
    text = amaranth_verilog.convert(accelerator, name=TOPLEVEL)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    if args.json:
        print(json.dumps({"verilog": str(out), "toplevel": TOPLEVEL, "network": ws.network.spec,
                          "arithmetic": config.arithmetic.describe(), "config": describe_config(config),
                          "layers": rows}))
    else:
        print(f"wrote {out} (top module {TOPLEVEL}, network {ws.network.spec}, {config.arithmetic.describe()}, "
              f"preset {getattr(args, 'preset', 'baseline')}: {describe_config(config)})")
        print(format_layer_table(accelerator))
    return 0
