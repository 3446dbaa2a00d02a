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
--lanes and --soft-multipliers size it. --interface axis wraps either design in AXI4-Stream
ports instead (module lenet5_axis: pixels in on s_axis_*, results out on m_axis_*, weights in
on s_axis_weights_*; docs/interface.md, "AXI4-Stream wrapper")."""

TOPLEVEL = "lenet5"
TOPLEVELS = {"native": TOPLEVEL, "axis": "lenet5_axis"}


def add_arguments(parser) -> None:
    options.weights_option(parser)
    options.arithmetic_options(parser)
    options.lanes_option(parser, design=True)
    options.hide(parser.add_argument("--out", "-o", "--output", required=True, metavar="OUT.v",
                                     help="Verilog file to write"), "-o", "--output")
    parser.add_argument("--interface", choices=tuple(TOPLEVELS), default="native",
                        help="the module's ports: the accelerator's own (native, module lenet5; default) or "
                             "AXI4-Stream (axis, module lenet5_axis)")
    parser.add_argument("--axis-depth", type=options.positive_int, default=None, metavar="N",
                        help="with --interface axis: answers the result queue holds, images in flight "
                             "included (default 4 for the streaming design, 2 for the compact one); the "
                             "pixel input stalls while it is full")
    options.json_option(parser, "print the per-layer report as JSON")


def run(args) -> int:
    from ..api import generate_verilog
    from ..model import weights as weight_files
    from ..model.errors import InputError

    ws = weight_files.load(args.weights)
    toplevel = TOPLEVELS[args.interface]
    if args.axis_depth is not None and args.interface != "axis":
        raise InputError("--axis-depth sizes the AXI4-Stream wrapper: give it with --interface axis")
    result = generate_verilog(ws, options.generator_options(args), out=args.out, toplevel=toplevel,
                              interface=args.interface, axis_depth=args.axis_depth)
    arithmetic = options.arithmetic_of(args, ws.arithmetic).describe()
    if args.json:
        print(json.dumps({"verilog": str(result.path), "toplevel": toplevel, "interface": args.interface,
                          "network": ws.network.spec,
                          "arithmetic": arithmetic, "config": result.configuration, "design": result.design,
                          "layers": [row.to_dict() for row in result.layers]}))
    else:
        ports = ", AXI4-Stream ports" if args.interface == "axis" else ""
        print(f"wrote {result.path} (top module {toplevel}{ports}, network {ws.network.spec}, {arithmetic}, "
              f"{result.design} design, preset {args.preset}: {result.configuration})")
        print(format_layer_table(result))
    return 0


def format_layer_table(result) -> str:
    """The design's layer report as a table, with a total row and what its cycles mean."""
    rows = result.layers

    def n(value):
        return f"{value:,}" if value else "-"

    lines = [f"{'block':<12}{'MACs':>10}{'multipliers':>13}{'memory bits':>13}{'cycles':>9}"]
    for r in rows:
        lines.append(f"{r.layer:<12}{n(r.macs):>10}{n(r.multipliers):>13}{n(r.memory_bits):>13}{n(r.cycles):>9}")
    # The multipliers of the design, not the rows' sum: the compact design's rows share one array.
    cycles = result.cycles_per_image
    lines.append(f"{'total':<12}{n(sum(r.macs for r in rows)):>10}{n(result.multipliers):>13}"
                 f"{n(sum(r.memory_bits for r in rows)):>13}{n(cycles):>9}")
    if cycles is None:
        lines.append("cycles: each engine alone, first input to last output. The engines overlap (conv2 starts\n"
                     "while conv1 runs), so an image takes fewer than the total: `lenet-fpga sim` measures it.")
    else:
        lines.append(f"cycles: the design's cycle model, one layer after another on the shared multipliers "
                     f"({result.multipliers}): {cycles:,} an image.")
    return "\n".join(lines)
