"""Place and route: nextpnr's report read back, and the accelerator alone placed and routed
out of context.

A board build (``boards/build.py``) lets Amaranth's build script run Yosys and nextpnr on the
board top; ``bench --pnr`` and ``explore`` want the accelerator's own figures without a board,
so ``place_and_route`` runs the same tools (the same synthesis options and checks, the same
yowasp toolchain, ``boards.platforms``) on the accelerator alone, its ports left as ports
(``--out-of-context``). Both read their resources, Fmax and timing verdict with
``parse_nextpnr_report`` from nextpnr's ``--report`` JSON.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from ..model.errors import InputError

TOP_NAME = "lenet5"  # the design's top module, on a board and out of context

# nextpnr's utilisation entry that counts each resource, per family.
RESOURCE_CELLS = {
    "ecp5": {"luts": "TRELLIS_COMB", "flip_flops": "TRELLIS_FF", "block_ram": "DP16KD", "dsp": "MULT18X18D"},
    "ice40": {"luts": "ICESTORM_LC", "flip_flops": "ICESTORM_LC", "block_ram": "ICESTORM_RAM",
              "dsp": "ICESTORM_DSP", "spram": "ICESTORM_SPRAM"},
}

# Out-of-context place-and-route target: the ULX3S's FPGA, timing-driven towards this clock.
PNR_DEVICE, PNR_PACKAGE = "LFE5U-85F", "CABGA381"
PNR_TARGET_MHZ = 100.0
# The ECP5 parts place_and_route can target (nextpnr-ecp5's device option); all come in CABGA381.
PNR_DEVICES = {"LFE5U-12F": "--12k", "LFE5U-25F": "--25k", "LFE5U-45F": "--45k", "LFE5U-85F": "--85k"}


def parse_nextpnr_report(report: dict, family: str, clock_hz: float) -> tuple[dict, float | None, bool]:
    """Resources, worst achieved Fmax and whether it meets the board clock, from ``--report``."""
    utilisation = report.get("utilization", {})
    resources = {}
    for name, cell in RESOURCE_CELLS[family].items():
        if cell in utilisation:
            resources[name] = {"used": int(utilisation[cell]["used"]), "available": int(utilisation[cell]["available"])}
    if family == "ice40":
        resources.pop("flip_flops", None)  # logic cells hold both; nextpnr does not count them apart
    achieved = [float(entry["achieved"]) for entry in report.get("fmax", {}).values() if "achieved" in entry]
    fmax = min(achieved) if achieved else None
    return resources, fmax, fmax is not None and fmax * 1e6 >= clock_hz


def place_and_route(weights, config, build_dir: Path, step=lambda _: None,
                    time_limit_s: float | None = None, *, device: str = PNR_DEVICE,
                    target_mhz: float = PNR_TARGET_MHZ, seed: int | None = None) -> dict:
    """Synthesize (Yosys ``synth_ecp5``) and place-and-route (nextpnr-ecp5, ``--out-of-context``)
    the accelerator ``config`` builds for ``weights`` alone; its ports are not pins, so the
    design needs no board. ``step`` is told each stage's name as it starts.

    ``time_limit_s`` bounds both tools together: a congested design can keep nextpnr's router
    busy for hours, so a run that passes the limit is stopped and raised as a ``RuntimeError``.
    ``device`` is one of ``PNR_DEVICES``, ``target_mhz`` the clock nextpnr's timing-driven
    placement aims for, ``seed`` nextpnr's placement seed (``None``: nextpnr's default).

    Returns ``fmax_mhz`` (worst clock; ``None`` if nextpnr reports none), ``timing_met`` (against
    ``target_mhz``), ``resources`` (LUT, FF, BRAM, DSP: used and available) and the folder.
    """
    if device not in PNR_DEVICES:
        raise InputError(f"unknown device {device!r}; place and route knows {', '.join(PNR_DEVICES)}")
    from amaranth.back import rtlil

    from ..hdl.multiplier import ECP5Target
    from .platforms import SYNTH_CHECKS, SYNTH_OPTIONS, toolchain_env

    tools = toolchain_env("ecp5")
    build_dir.mkdir(parents=True, exist_ok=True)
    step("generate")
    # As on a board: the ECP5 form of the design (DSP multipliers with their own registers).
    design = rtlil.convert(config.build(weights), name=TOP_NAME, platform=ECP5Target())
    (build_dir / f"{TOP_NAME}.il").write_text(design)
    report_path = build_dir / f"{TOP_NAME}.report.json"
    report_path.unlink(missing_ok=True)
    commands = {
        "synthesize": [tools["YOSYS"], "-q", "-l", "yosys.log", "-p",
                       f"read_rtlil {TOP_NAME}.il; synth_ecp5 {SYNTH_OPTIONS} -top {TOP_NAME}; "
                       f"{SYNTH_CHECKS}; write_json {TOP_NAME}.json"],
        "place and route": [tools["NEXTPNR_ECP5"], "-q", "-l", "nextpnr.log", PNR_DEVICES[device],
                            "--package", PNR_PACKAGE, "--json", f"{TOP_NAME}.json", "--out-of-context",
                            "--freq", f"{target_mhz:g}", "--timing-allow-fail", "--report", report_path.name,
                            *(["--seed", str(seed)] if seed is not None else [])],
    }
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    for stage, command in commands.items():
        step(stage)
        log = build_dir / ("yosys.log" if stage == "synthesize" else "nextpnr.log")
        try:
            done = subprocess.run(command, cwd=build_dir, capture_output=True, text=True,
                                  timeout=None if deadline is None else max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{stage} stopped: not done within the {time_limit_s / 60:g}-minute limit "
                               f"(log: {log})") from None
        if done.returncode != 0:
            raise RuntimeError(f"{stage} failed (exit {done.returncode}): {_log_summary(log, done.stderr)} "
                               f"(log: {log})")
    resources, fmax, met = parse_nextpnr_report(json.loads(report_path.read_text()), "ecp5", target_mhz * 1e6)
    return {"fmax_mhz": fmax, "timing_met": met, "resources": resources, "build_dir": str(build_dir)}


def _log_summary(log: Path, stderr: str) -> str:
    """The tool's error lines and any resource used beyond what the FPGA has."""
    text = log.read_text() if log.exists() else stderr
    share = [(line, re.search(r"(\d+)\s*%$", line.strip())) for line in text.splitlines()]
    over = [line.strip().removeprefix("Info:").strip() for line, found in share if found and int(found[1]) > 100]
    errors = [line.strip() for line in text.splitlines() if line.startswith("ERROR")]
    return "; ".join(errors[-2:] + [f"over capacity: {line}" for line in over]) or text[-500:]
