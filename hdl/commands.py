"""The generator's configuration from command-line options (``lenet_fpga/commands/`` reads them
with these), and the generator's report in the command line's spelling."""

from __future__ import annotations

from dataclasses import replace

from ..model import arith
from ..model.errors import InputError
from . import compact
from .lenet import StreamingConfig, preset

DESIGNS = ("streaming", "compact")


def arithmetic_from_args(args, default: arith.Arithmetic) -> arith.Arithmetic:
    """--rounding/--overflow where given, else what the weights were trained for."""
    return arith.Arithmetic(getattr(args, "rounding", None) or default.rounding,
                            getattr(args, "overflow", None) or default.overflow)


def config_from_args(args, ws, design: str | None = None):
    """The design configuration the command line asks for, for the weights' network: ``design``
    (else ``--design``, else streaming) sized by the options, checked against the network."""
    design = design or getattr(args, "design", None) or "streaming"
    if design == "compact":
        return compact_config_from_args(args, ws)
    if design != "streaming":
        raise InputError(f"unknown design {design!r}; choose from {', '.join(DESIGNS)}")
    return streaming_config_from_args(args, ws)


def compact_config_from_args(args, ws) -> compact.CompactConfig:
    """The compact design: one array of ``--lanes`` multipliers (default 8)."""
    for option in ("filters", "soft_multipliers"):
        if getattr(args, option, None) is not None:
            raise InputError(f"--{option.replace('_', '-')} sizes the streaming design; the compact design has "
                             f"one array of multipliers (set them with --lanes)")
    if getattr(args, "preset", "baseline") != "baseline":
        raise InputError(f"--preset {args.preset} sizes the streaming design; the compact design has one array "
                         f"of multipliers (set them with --lanes)")
    lanes = getattr(args, "lanes", None) or (compact.MAX_LANES,)
    if len(lanes) != 1:
        raise InputError(f"--lanes {','.join(map(str, lanes))}: the compact design has one array of lanes")
    try:
        config = compact.CompactConfig(arithmetic_from_args(args, ws.arithmetic), lanes=lanes[0])
    except ValueError as e:
        raise InputError(f"--lanes {lanes[0]}: {e}") from None
    config.check(ws.network)
    where = getattr(args, "compact_weights", None) or "auto"
    if where == "auto":
        where = "bitstream" if compact.weights_fit_up5k(ws, config) else "spram"
    return replace(config, weights_in_bitstream=where == "bitstream")


def streaming_config_from_args(args, ws) -> StreamingConfig:
    """The streaming design for the weights' network: the preset named by ``--preset`` resolved
    against the network, with the arithmetic options, ``--filters``, ``--lanes`` and
    ``--soft-multipliers`` applied, checked against the network."""
    network = ws.network
    config = preset(getattr(args, "preset", "baseline"), network, arithmetic_from_args(args, ws.arithmetic),
                    codes=ws.codes)
    changes = {}
    for option, field in (("filters", "conv_filters"), ("lanes", "linear_lanes")):
        value = getattr(args, option, None)
        if value is not None:
            changes[field] = value if len(value) > 1 else value[0]
    soft = getattr(args, "soft_multipliers", None)
    if soft is not None:
        changes["soft_multipliers"] = soft
    return replace(config, **changes).check(network)


def describe_config(config) -> str:
    """The generator parameters in the command line's own spelling."""
    if config.design == "compact":
        where = "in the bitstream" if config.weights_in_bitstream else "in SPRAM"
        return f"compact design, {config.lanes} lanes, weights {where}"
    def spell(values):
        return ",".join(map(str, values)) if isinstance(values, tuple) else str(values)
    soft = ",".join(config.soft_multipliers) or "none"
    return f"filters {spell(config.conv_filters)}, lanes {spell(config.linear_lanes)}, soft multipliers {soft}"


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
