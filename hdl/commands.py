"""The ``verilog`` subcommand: generate the accelerator and report what it costs per layer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from amaranth.back import verilog as amaranth_verilog

from ..model import weights as weight_files
from ..model.atomic import atomic_path
from ..model.commands import arithmetic_from_args
from ..model.errors import InputError
from .lenet import PRESETS, AcceleratorConfig, LeNetAccelerator

TOPLEVEL = "lenet5"


def config_from_args(args, ws) -> AcceleratorConfig:
    """The preset named by ``--preset``, with the arithmetic options and ``--lanes`` applied."""
    name = getattr(args, "preset", "baseline")
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    config = replace(PRESETS[name], arithmetic=arithmetic_from_args(args, ws.arithmetic))
    if getattr(args, "lanes", None) is not None:
        config = replace(config, linear_lanes=args.lanes)
    return config


def format_layer_table(rows: list[dict]) -> str:
    def n(value):
        return f"{value:,}" if value else "-"

    lines = [f"{'block':<12}{'MACs':>10}{'multipliers':>13}{'memory bits':>13}{'cycles':>9}"]
    for r in rows:
        lines.append(f"{r['layer']:<12}{n(r['macs']):>10}{n(r['multipliers']):>13}"
                     f"{n(r['memory_bits']):>13}{n(r['cycles']):>9}")
    lines.append(f"{'total':<12}{n(sum(r['macs'] for r in rows)):>10}{n(sum(r['multipliers'] for r in rows)):>13}"
                 f"{n(sum(r['memory_bits'] for r in rows)):>13}")
    return "\n".join(lines)


def cmd_verilog(args) -> int:
    ws = weight_files.load(args.weights)
    config = config_from_args(args, ws)
    accelerator = LeNetAccelerator(ws, config)
    rows = accelerator.layer_report()
    text = amaranth_verilog.convert(accelerator, name=TOPLEVEL)
    out = Path(args.output)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    if args.json:
        print(json.dumps({"verilog": str(out), "toplevel": TOPLEVEL, "arithmetic": config.arithmetic.describe(),
                          "layers": rows}))
    else:
        print(f"wrote {out} (top module {TOPLEVEL}, {config.arithmetic.describe()}, preset {getattr(args, 'preset', 'baseline')})")
        print(format_layer_table(rows))
        print("cycles: each engine alone, first input to last output. The engines overlap (conv2 starts\n"
              "while conv1 runs), so an image takes fewer than the total: `lenet-fpga sim` measures it.")
    return 0
