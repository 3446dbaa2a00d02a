"""A clock inside the simulation: a Verilog wrapper that toggles the design's ``clk`` itself.

A clock driven from cocotb (``cocotb.clock.Clock``) costs two trips through the simulator's
callback interface every cycle; a clock written in Verilog (``always #5 clk = ~clk``) costs
none, and Verilator (with ``--timing``) then runs the design about 1.7 times as fast. The
wrapper has every port of the design but ``clk``, with the same names, so a testbench drives it
as it would drive the design; ``streams.start_clock_and_reset`` sees ``CLOCK_VARIABLE`` set by
the runner and starts no clock of its own. The period is the one cocotb's clock had (10 ns).

A testbench must then read the design's outputs after ``ReadOnly()`` (as ``streams`` does): on
Verilator, a coroutine woken by ``RisingEdge(clk)`` of a clock made inside sees the values after
the edge, with cocotb's clock those before it. Drivers that sample in their edge callbacks (the
AXI-Stream sink of cocotbext-axi) lose or double beats, so their testbenches run with cocotb's
clock (``runner.run(..., clock_inside=False)``, as tb_axis does).
"""

from __future__ import annotations

import re

# Set to CLOCK_INSIDE in a testbench's environment when its top module makes its own clock.
CLOCK_VARIABLE = "LENET_TB_CLOCK"
CLOCK_INSIDE = "inside"
HALF_PERIOD_NS = 5
SUFFIX = "_clocked"

_PORT = re.compile(r"^\s*(input|output)\s+(signed\s+)?(\[\d+:\d+\]\s+)?([A-Za-z_][A-Za-z0-9_$]*)\s*;", re.M)


def _module_text(verilog: str, toplevel: str) -> str:
    match = re.search(rf"^module {re.escape(toplevel)}\s*\(", verilog, re.M)
    if match is None:
        raise ValueError(f"no module {toplevel} in the Verilog")
    end = verilog.find("endmodule", match.end())
    return verilog[match.start():end]


def ports(verilog: str, toplevel: str) -> list[tuple[str, str]]:
    """``(direction, declaration)`` of each port of ``toplevel``, such as ``("input", "[7:0] x")``;
    ValueError if a port named in the module's header has no declaration read here (a wrapper
    would leave it unconnected)."""
    text = _module_text(verilog, toplevel)
    found = [(direction, f"{signed or ''}{width or ''}{name}") for direction, signed, width, name in _PORT.findall(text)]
    header = {name.strip() for name in text[text.index("(") + 1:text.index(")")].split(",") if name.strip()}
    missing = header - {decl.split()[-1] for _, decl in found}
    if missing:
        raise ValueError(f"module {toplevel}: cannot read the declaration of port(s) {', '.join(sorted(missing))}")
    return found


def has_clock(verilog: str, toplevel: str) -> bool:
    return any(direction == "input" and decl == "clk" for direction, decl in ports(verilog, toplevel))


def wrap(verilog: str, toplevel: str) -> tuple[str, str]:
    """``verilog`` with a wrapper module that clocks ``toplevel``; the text and the wrapper's name."""
    others = [(direction, decl) for direction, decl in ports(verilog, toplevel) if decl != "clk"]
    names = [decl.split()[-1] for _, decl in others]
    top = toplevel + SUFFIX
    lines = [f"module {top}({', '.join(names)});"]
    lines += [f"  {direction} {decl};" for direction, decl in others]
    lines += ["  reg clk = 1'b0;",
              f"  always #{HALF_PERIOD_NS} clk = ~clk;",
              f"  {toplevel} clocked_design(.clk(clk){''.join(f', .{name}({name})' for name in names)});",
              "endmodule", ""]
    return verilog.rstrip("\n") + "\n\n" + "\n".join(lines), top
