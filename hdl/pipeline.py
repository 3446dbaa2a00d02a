"""Register stages of a pipeline that never stalls: the datapaths of the conv and linear engines.

The engines hold back-pressure at their issue logic (``result_queue``), so every datapath
register simply takes its value each cycle: no enable net fans out to thousands of flip-flops,
and synthesis is free to place each register next to its logic.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal


class Pipeline:
    def __init__(self, m: Module):
        self._m = m

    def stage(self, *pairs) -> None:
        """(register, value) pairs: each register takes its value every cycle."""
        self._m.d.sync += [reg.eq(value) for reg, value in pairs]

    def delay(self, value: Signal, stages: int, name: str) -> Signal:
        """``value`` as it was ``stages`` cycles ago: side data (biases, flags) travelling
        beside a datapath of that many registers."""
        for n in range(stages):
            later = Signal.like(value, name=f"{name}_d{n}")
            self.stage((later, value))
            value = later
        return value
