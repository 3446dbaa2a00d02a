"""Waveforms a person can read: the design without its anonymous wires, and a GTKWave layout.

Amaranth names the wires of intermediate expressions ``$123``; written out by Yosys with
``-norename`` (what ``amaranth.back.verilog`` does) they keep those names and about half of a
LeNet-5 waveform's 4,000 signals are such wires. ``readable_verilog`` lets Yosys rename them to
``_123_`` instead, and gives the few that keep a ``$`` name of their own (a memory port's
``port$3135$0``, an unnamed ``Signal.like``'s ``$like``) an ``_anon_`` prefix: Verilator leaves
names that start with an underscore out of its traces, and GTKWave sorts them to the end. ``gtkw_layout`` writes a save file that opens the
waveform on the signals that tell the story: the accelerator's handshake, then every block in
data-flow order with its stream handshakes and the key signals of its engine.
"""

from __future__ import annotations

import re

from amaranth.back import rtlil
from amaranth.hdl import Shape
from amaranth.lib import wiring

from ..hdl.accelerator import Accelerator

# GTKWave trace flags: binary, hexadecimal, signed decimal (each right-justified).
BINARY, HEX, SIGNED = "@28", "@22", "@424"
GROUP_OPEN, GROUP_CLOSE = "@800200", "@1000200"


def readable_verilog(component: wiring.Component, name: str) -> str:
    """``amaranth.back.verilog.convert``, with the anonymous wires renamed ``_N_`` (see above)."""
    from amaranth._toolchain.yosys import find_yosys

    text = rtlil.convert(component, name=name)
    yosys = find_yosys(lambda version: version >= (0, 40))
    script = "\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", "proc -nomux -norom", "memory_collect",
                        "write_verilog"])
    verilog = yosys.run(["-q", "-"], script, ignore_warnings=True)
    # Escaped identifiers run to the next white space; a name is unique within its module, so
    # one prefix keeps every reference consistent.
    return re.sub(r"\\(\$|port\$)(\S*)(\s)", r"\\_anon_\1\2\3", verilog)


def _name(scope: str, signal: str, width: int) -> str:
    return f"{scope}.{signal}[{width - 1}:0]" if width > 1 else f"{scope}.{signal}"


def _stream(scope: str, port: str, payload_width: int, flag: str) -> list[str]:
    return [BINARY, f"{scope}.{port}__valid", f"{scope}.{port}__ready", flag, _name(scope, f"{port}__payload",
                                                                                      payload_width)]


def gtkw_layout(accelerator: Accelerator, dumpfile: str, top: str) -> str:
    """A GTKWave save file for a waveform of ``SimHarness(accelerator)`` generated as ``top``."""
    scope = f"{top}.accelerator"
    members = accelerator.signature.members
    width = {name: Shape.cast(member.shape).width for name, member in members.items() if member.is_port}
    lines = [f'[dumpfile] "{dumpfile}"', "[timestart] 0",
             GROUP_OPEN, "-interface",
             BINARY, f"{scope}.clk", f"{scope}.rst", f"{scope}.start", f"{scope}.receiving", f"{scope}.busy",
             f"{scope}.done",
             *_stream(scope, "pixels", width["pixels__payload"] if "pixels__payload" in width else 8, HEX)[1:],
             SIGNED, _name(scope, "klass", width.get("klass", 1)),
             _name(scope, "cycles", width.get("cycles", 32)),
             HEX, _name(scope, "logits", width.get("logits", 1)),
             GROUP_CLOSE, "-interface"]
    for name, block in accelerator.blocks.items():
        block_scope = f"{scope}.{name.replace('.', '_')}"
        lines += [GROUP_OPEN, f"-{name}"]
        for port in ("i", "o"):
            member = block.signature.members[port] if port in block.signature.members else None
            if member is not None and member.is_signature:
                payload = Shape.cast(member.signature.members["payload"].shape).width
                lines += _stream(block_scope, port, payload, HEX)
        mac = getattr(block, "mac", None)
        if mac is not None:
            lines += [BINARY, f"{block_scope}.issue", SIGNED,
                      _name(f"{block_scope}.mac", f"{name}_acc0", Shape.cast(mac.acc_shape).width)]
        lines += [GROUP_CLOSE, f"-{name}"]
    return "\n".join(lines) + "\n"


def vcd_signals(path) -> set[str]:
    """Every signal a VCD file declares, as GTKWave names it: ``scope.name`` or
    ``scope.name[msb:lsb]``."""
    names, scopes = set(), []
    with open(path) as f:
        for line in f:
            words = line.split()
            if not words:
                continue
            if words[0] == "$enddefinitions":
                break
            if words[0] == "$scope":
                scopes.append(words[2])
            elif words[0] == "$upscope":
                scopes.pop()
            elif words[0] == "$var":
                rest = words[4:-1]  # name, and a range where there is one
                names.add(".".join(scopes + ["".join(rest)]))
    return names
