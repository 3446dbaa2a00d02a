"""Registers that move together under one enable: the pipelines of the conv and linear engines.

An engine's datapath is a chain of register stages that all advance on the same condition (the
output register is free), so back-pressure freezes the whole pipeline and loses nothing.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value


class Pipeline:
    def __init__(self, m: Module, advance: Value):
        self._m, self._advance = m, advance

    def stage(self, *pairs) -> None:
        """(register, value) pairs: each register takes its value when the pipeline advances."""
        with self._m.If(self._advance):
            self._m.d.sync += [reg.eq(value) for reg, value in pairs]

    def delay(self, value: Signal, stages: int, name: str) -> Signal:
        """``value`` as it was ``stages`` advances ago: side data (biases, flags) travelling
        beside a datapath of that many registers."""
        for n in range(stages):
            later = Signal.like(value, name=f"{name}_d{n}")
            self.stage((later, value))
            value = later
        return value
