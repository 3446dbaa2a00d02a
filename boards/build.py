"""``lenet-fpga build`` and ``flash``: bitstreams with Yosys + nextpnr from PyPI, and a report
of what the design uses, read from nextpnr's own JSON report.

Each board builds the accelerator its ``Board.accelerator`` names: the ULX3S the streaming
``LeNetAccelerator`` (``--preset``/``--lanes`` configure it), the iCEBreaker the
``CompactAccelerator`` (``--lanes`` sets its multipliers, 3..8; its weights are loaded over the
link after configuration, so ``--weights`` only sets the default arithmetic)."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..hdl import accelerator
from ..hdl.report import LayerRow
from ..model.errors import InputError
from ..model.weights import WeightSet
from .platforms import Board, toolchain_env
from .pnr import RESOURCE_CELLS, TOP_NAME, parse_nextpnr_report
from .timing import TimingPath, parse_critical_paths, paths_table
from .uart import divisor_for


@dataclass(frozen=True)
class BuildReport:
    board: str
    bitstream: str | None
    resources: dict[str, dict[str, int]]  # name -> {"used", "available"}
    fmax_mhz: float | None
    clock_mhz: float
    timing_met: bool
    seconds: float
    cycles_per_image: int | None = None  # from the accelerator's cycle model, when it has one
    images_per_second: float | None = None  # at the design clock
    worst_paths: tuple[TimingPath, ...] = ()  # nextpnr's, longest first (boards/timing.py)
    logs: dict[str, str] = field(default_factory=dict)  # what -> file: the tools' full output
    seed: int | None = None  # nextpnr's placement seed (None: its default)

    def table(self) -> str:
        lines = [f"{'resource':<12}{'used':>10}{'available':>11}{'':>8}"]
        for name, r in self.resources.items():
            share = f"{100 * r['used'] / r['available']:.0f} %" if r["available"] else ""
            lines.append(f"{name:<12}{r['used']:>10,}{r['available']:>11,}{share:>8}")
        fmax = f"{self.fmax_mhz:.1f} MHz" if self.fmax_mhz else "unknown"
        verdict = "met" if self.timing_met else "NOT MET"
        placement = f" (placement seed {self.seed})" if self.seed is not None else ""
        lines.append(f"Fmax {fmax} against the {self.clock_mhz:g} MHz design clock: timing {verdict}{placement}")
        if self.cycles_per_image:
            lines.append(f"{self.cycles_per_image:,} cycles per image: {self.images_per_second:,.0f} images/s "
                         f"at {self.clock_mhz:g} MHz")
        lines.extend(paths_table(list(self.worst_paths)))
        if self.bitstream:
            lines.append(f"bitstream {self.bitstream} ({self.seconds:.0f} s)")
        if self.logs:
            lines.append("full logs: " + ", ".join(f"{path} ({what})" for what, path in self.logs.items()))
        return "\n".join(lines)




def memory_report(weights: WeightSet, config) -> list[LayerRow]:
    """The accelerator's ``layer_report`` rows."""
    return accelerator.layer_report(weights, config)


def parse_yosys_flip_flops(log: str) -> int | None:
    """Flip-flops in Yosys' final ``stat`` of a flattened design (the first module listed after
    the last "Printing statistics"): the iCE40 report of nextpnr counts logic cells, not FFs."""
    start = log.rfind("Printing statistics")
    if start < 0:
        return None
    sections = log[start:].split("===")  # heading, module name, its table, ...
    if len(sections) < 3:
        return None
    counts = re.findall(r"^\s*(\d+)\s+SB_DFF\w*\s*$", sections[2], re.M)
    return sum(int(c) for c in counts) if counts else None


def check_fits(target: Board, weights: WeightSet, config) -> None:
    """Refuse early, with the numbers, a design whose memories cannot fit the FPGA's RAMs or
    whose DSP multipliers are more than it has."""
    rows = memory_report(weights, config)
    bits = sum(row.memory_bits for row in rows if row.memory == "bram")
    spram = sum(row.memory_bits for row in rows if row.memory == "spram")
    if bits > target.block_ram_bits:
        raise InputError(
            f"the design does not fit the {target.name}: its memories need {bits / 1024:,.0f} kbit, "
            f"the FPGA has {target.block_ram_bits / 1024:,.0f} kbit of block RAM "
            f"(the weights alone are ~{sum(w.size for w in weights.params.values()) * 8 / 1024:,.0f} kbit). "
            f"Use --force to try anyway."
        )
    if spram > target.spram_bits:
        raise InputError(
            f"the design does not fit the {target.name}: its weights need {spram / 1024:,.0f} kbit of SPRAM, "
            f"the FPGA has {target.spram_bits / 1024:,.0f} kbit. Use --force to try anyway."
        )
    # Not the rows' sum: the compact design's rows all name its one shared array.
    dsp = accelerator.read_design(weights, config, lambda design: design.dsp_blocks)
    if dsp > target.multipliers:
        soft = getattr(config, "soft_multipliers", ())
        raise InputError(
            f"the design does not fit the {target.name}: it puts {dsp} multipliers in DSP blocks "
            f"(soft multipliers: {','.join(soft) or 'none'}), the FPGA has {target.multipliers}; name more "
            f"layers in --soft-multipliers, or leave the option out and the board's build picks them. "
            f"Use --force to try anyway."
        )


def check_baud(target: Board, baud: int) -> int:
    """The UART divisor for ``baud`` at ``target``'s clock (``uart.divisor_for``: at least 4
    cycles a bit, within 2 % of the rate); InputError if there is none."""
    try:
        return divisor_for(target.clock_hz, baud)
    except ValueError as e:
        raise InputError(f"--baud {baud} on the {target.name} ({target.clock_hz / 1e6:g} MHz clock): {e}") from None


def make_build_dir(build_dir: Path) -> Path:
    """``build_dir``, made if it is not there; InputError if it cannot be (under a file, no permission)."""
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--build-dir {build_dir} cannot be made: {e.strerror or e}") from None
    return build_dir


def build_bitstream(target: Board, weights: WeightSet, config, build_dir: Path,
                    baud: int, log=print, seed: int | None = None) -> BuildReport:
    from .top import BoardTop

    started = time.time()
    check_baud(target, baud)
    env = toolchain_env(target.family)
    platform = target.make_platform()
    top = BoardTop(weights, config, target, baud)
    make_build_dir(build_dir)
    report_path = build_dir / f"{TOP_NAME}.report.json"
    report_path.unlink(missing_ok=True)
    log(f"building {target.name} in {build_dir} (Yosys + nextpnr from PyPI; a few minutes)...")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        overrides = {key: value for key, value in (("synth_opts", target.synth_opts),
                                                   ("script_after_synth", target.script_after_synth)) if value}
        platform.build(top, name=TOP_NAME, build_dir=str(build_dir), do_program=False,
                       nextpnr_opts=f"--report {report_path.name} --timing-allow-fail"
                                    + (f" --seed {seed}" if seed is not None else ""), **overrides)
    except Exception as e:  # amaranth raises CalledProcessError with the tool's exit status
        tail = ""
        for name in (f"{TOP_NAME}.tim", f"{TOP_NAME}.rpt"):
            if (build_dir / name).exists():
                tail = (build_dir / name).read_text()[-2000:]
                break
        raise InputError(f"the {target.name} build failed ({e}); the log ends:\n{tail}") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    report = json.loads(report_path.read_text())
    resources, fmax, met = parse_nextpnr_report(report, target.family, target.clock_hz)
    yosys_log = build_dir / f"{TOP_NAME}.rpt"
    if "flip_flops" not in resources and yosys_log.exists():
        flip_flops = parse_yosys_flip_flops(yosys_log.read_text())
        if flip_flops is not None:  # at most one per logic cell
            resources["flip_flops"] = {"used": flip_flops, "available": target.luts}
            resources = {name: resources[name] for name in RESOURCE_CELLS[target.family] if name in resources}
    bitstream = build_dir / f"{TOP_NAME}{target.bitstream_suffix}"
    cycles = accelerator.cycles_per_image(weights, config)
    return BuildReport(target.name, str(bitstream) if bitstream.exists() else None, resources, fmax,
                       target.clock_hz / 1e6, met, time.time() - started, cycles,
                       target.clock_hz / cycles if cycles else None,
                       tuple(parse_critical_paths(report)), build_logs(build_dir), seed)


# The files Amaranth's build script leaves in the build folder, and what each holds.
LOG_FILES = {
    "nextpnr": f"{TOP_NAME}.tim",  # placement, routing and every critical path cell by cell
    "yosys": f"{TOP_NAME}.rpt",  # synthesis, ending with the cell statistics
    "report": f"{TOP_NAME}.report.json",  # nextpnr's --report: utilisation, Fmax, critical paths
}


def build_logs(build_dir: Path) -> dict[str, str]:
    """The tools' logs in ``build_dir`` that exist, by tool."""
    return {what: str(build_dir / name) for what, name in LOG_FILES.items() if (build_dir / name).exists()}
