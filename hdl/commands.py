"""The ``verilog`` subcommand: generate the accelerator and report what it costs per layer."""

from __future__ import annotations

import json

from amaranth.back import verilog as amaranth_verilog

from ..model import weights as weight_files
from ..model.atomic import atomic_path, check_output
from . import designs
from .designs import GeneratorOptions

TOPLEVEL = "lenet5"


def generator_options(args, design: str | None = None) -> GeneratorOptions:
    """The generator options of a parsed command line (``design`` overrides ``--design``); an
    option a command does not have keeps its default."""
    given = {name: getattr(args, name) for name in ("design", "preset", "filters", "lanes", "soft_multipliers",
                                                    "compact_weights", "rounding", "overflow")
             if getattr(args, name, None) is not None}
    if design is not None:
        given["design"] = design
    return GeneratorOptions(**given)


def config_from_args(args, ws, design: str | None = None):
    """The design configuration the command line asks for, for the weights' network."""
    from ..boards.configure import design_config  # the board decides --compact-weights auto

    return design_config(ws, generator_options(args, design))


def describe_config(config) -> str:
    """The generator parameters in the command line's own spelling."""
    return designs.describe(config)


def format_layer_table(accelerator) -> str:
    """The accelerator's layer report as a table, with a total row and what its cycles mean."""
    rows = accelerator.layer_report()

    def n(value):
        return f"{value:,}" if value else "-"

    lines = [f"{'block':<12}{'MACs':>10}{'multipliers':>13}{'memory bits':>13}{'cycles':>9}"]
    for r in rows:
        lines.append(f"{r['layer']:<12}{n(r['macs']):>10}{n(r['multipliers']):>13}"
                     f"{n(r['memory_bits']):>13}{n(r['cycles']):>9}")
    # The multipliers of the design, not the rows' sum: the compact design's rows share one array.
    cycles = accelerator.cycles_per_image
    lines.append(f"{'total':<12}{n(sum(r['macs'] for r in rows)):>10}{n(accelerator.multipliers):>13}"
                 f"{n(sum(r['memory_bits'] for r in rows)):>13}{n(cycles):>9}")
    if cycles is None:
        lines.append("cycles: each engine alone, first input to last output. The engines overlap (conv2 starts\n"
                     "while conv1 runs), so an image takes fewer than the total: `lenet-fpga sim` measures it.")
    else:
        lines.append(f"cycles: the design's cycle model, one layer after another on the shared multipliers "
                     f"({accelerator.multipliers}): {cycles:,} an image.")
    return "\n".join(lines)


def cmd_verilog(args) -> int:
    ws = weight_files.load(args.weights)
    config = config_from_args(args, ws)
    out = check_output(args.output, "-o")
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
