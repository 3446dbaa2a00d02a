"""The worst timing paths of a build, read from nextpnr's ``--report`` JSON.

nextpnr reports one critical path per pair of clock edges ("critical_paths"): for a design on
one clock, the register-to-register path that sets Fmax, and the paths from and to the pins
(``<async>``, not constrained). Each path is a list of segments, each with its delay in ns and
its type: ``clk-to-q`` (a register's or block RAM's output), ``source`` (a pin), ``logic``
(through a cell), ``routing`` (a net) and ``setup`` (the end register's set-up time). The log
(``lenet5.tim``) prints the same paths cell by cell and ends each with "N ns logic, M ns routing":
``logic_ns`` here is every segment but the routing, as there.

Cell names are Yosys' (``link.sent_SB_DFFESR_Q_1_D_SB_LUT4_O_LC`` is a logic cell on the way to
the register of ``link.sent``); the table names a path by the signal its first cell drives and the
design name its last cell is called after.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Where a Yosys cell name stops naming the design's signal and starts naming the cells it became.
_PRIMITIVE_SUFFIX = re.compile(
    r"_(?:SB_|ICESTORM_|TRELLIS_|DP16KD|MULT18X18D|ALU54B|CCU2C|PFUMX|L6MUX21|LUT4|DPR16X4C|FD1S3|"
    r"EHXPLLL|DCCA|IB|OB|BB)")


@dataclass(frozen=True)
class TimingPath:
    """nextpnr's worst path between one pair of clock edges."""

    from_clock: str  # "posedge clk"; "<async>" for a pin
    to_clock: str
    start: str  # the signal the first cell drives (or that cell's name)
    end: str  # the design signal the last cell is named after (or that cell's name)
    start_cell: str  # the cells and ports, as nextpnr names them
    end_cell: str
    delay_ns: float
    logic_ns: float  # clock-to-output, cells and set-up time
    routing_ns: float
    cells: int  # cells the path passes through between its start and its end
    sources: tuple[str, ...]  # the design source lines nextpnr gives for its nets, in path order

    @property
    def constrained(self) -> bool:
        """Whether both ends are on a clock (a path from or to a pin has no constraint here)."""
        return "<async>" not in (self.from_clock, self.to_clock)


def design_name(cell: str) -> str:
    """The design signal a Yosys cell name starts with: ``link.sent_SB_DFFESR_Q_1_D_SB_LUT4_O_LC``
    is ``link.sent``; a name without such a suffix stays as it is."""
    match = _PRIMITIVE_SUFFIX.search(cell)
    return cell[:match.start()] if match and match.start() > 0 else cell


def _end(segment: dict, side: str) -> str:
    place = segment[side]
    return f"{place['cell']}.{place['port']}"


def _design_source(source: str) -> bool:
    # Yosys' cell libraries (/share/ice40/cells_map.v) and Amaranth's own files say nothing
    # about which part of the accelerator a net belongs to.
    return not source.startswith("/share/") and "/amaranth/" not in source


def parse_critical_paths(report: dict) -> list[TimingPath]:
    """The paths of a nextpnr ``--report`` JSON, longest first."""
    paths = []
    for entry in report.get("critical_paths", []):
        segments = entry.get("path", [])
        if not segments:
            continue
        routing = sum(float(s["delay"]) for s in segments if s["type"] == "routing")
        total = sum(float(s["delay"]) for s in segments)
        nets = [s for s in segments if s["type"] == "routing"]
        first, last = segments[0], segments[-1]
        sources = []
        for segment in nets:
            for source in segment.get("sources", []):
                if _design_source(source) and source not in sources:
                    sources.append(source)
        paths.append(TimingPath(
            from_clock=entry.get("from", "?"), to_clock=entry.get("to", "?"),
            # A register is best named by the signal it holds, the net it drives.
            start=design_name(nets[0]["net"] if first["type"] == "clk-to-q" and nets and nets[0].get("net")
                              else first["from"]["cell"]),
            end=design_name(last["to"]["cell"]),
            start_cell=_end(first, "from"), end_cell=_end(last, "to"),
            delay_ns=total, logic_ns=total - routing, routing_ns=routing,
            cells=sum(1 for s in segments if s["type"] == "logic"), sources=tuple(sources),
        ))
    return sorted(paths, key=lambda path: -path.delay_ns)


def _clock(name: str) -> str:
    return name.removeprefix("posedge ")


def constant_clock(name: str) -> bool:
    """Whether nextpnr's clock ``name`` is a constant net (``$PACKER_GND_NET``): the clock input of
    a cell used without its registers, such as an iCE40 SB_MAC16 multiplying combinationally."""
    return re.search(r"\$PACKER_(GND|VCC)_NET", name) is not None


def paths_table(paths: list[TimingPath], limit: int = 6) -> list[str]:
    """Table lines for the ``limit`` longest ``paths``. A path to or from a constant "clock"
    (``constant_clock``) is cut at that cell and leaves out the cell's own delay; the table says so."""
    if not paths:
        return []
    lines = [f"worst paths (nextpnr, one per pair of clock edges; {len(paths)} in all):",
             f"  {'clocks':<22}{'delay':>10}{'logic':>7}{'routing':>9}{'cells':>7}  from -> to"]
    cut = False
    for path in paths[:limit]:
        names = [_clock(path.from_clock), _clock(path.to_clock)]
        odd = [n for n in names if constant_clock(n)]
        cut |= bool(odd)
        label = " -> ".join("(constant)" if n in odd else n for n in names) + (" *" if odd else "")
        share = (lambda part: f"{100 * part / path.delay_ns:.0f} %") if path.delay_ns else (lambda part: "")
        lines.append(f"  {label:<22}{path.delay_ns:>7.2f} ns{share(path.logic_ns):>7}{share(path.routing_ns):>9}"
                     f"{path.cells:>7}  {path.start} -> {path.end}")
    if cut:
        lines.append("  * cut by nextpnr at a cell clocked from a constant net (an iCE40 DSP without registers):\n"
                     "    the whole path is both halves plus that cell's own delay")
    if any(not path.constrained for path in paths[:limit]):
        lines.append("  <async>: a pin; paths from and to pins are not constrained here")
    worst = next((path for path in paths if path.constrained and not cut_at_constant(path)), None)
    if worst and worst.sources:
        lines.append(f"  the worst path's nets are made in {', '.join(_relative(s) for s in worst.sources)}")
    return lines


def cut_at_constant(path: TimingPath) -> bool:
    return constant_clock(path.from_clock) or constant_clock(path.to_clock)


def _relative(source: str) -> str:
    try:
        return str(Path(source).relative_to(Path.cwd()))
    except ValueError:
        return source
