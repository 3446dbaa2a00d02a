"""Whole-network simulation: generate the design, run images through it, compare with the golden model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.back import verilog as amaranth_verilog

from ..hdl.lenet import AcceleratorConfig, LeNetAccelerator
from ..model import golden
from ..model.weights import WeightSet
from . import runner
from .harness import SimHarness

TOPLEVEL = "lenet_sim"


@dataclass(frozen=True)
class NetworkRun:
    rtl_logits: np.ndarray  # int64 [N,10]
    rtl_class: np.ndarray  # [N]
    golden_logits: np.ndarray
    golden_class: np.ndarray
    cycles: np.ndarray  # [N] start -> done
    sim_seconds: float
    waves: Path | None

    @property
    def matches(self) -> np.ndarray:
        return (self.rtl_logits == self.golden_logits).all(axis=1) & (self.rtl_class == self.golden_class)

    @property
    def mismatches(self) -> int:
        return int((~self.matches).sum())


def harness_verilog(weights: WeightSet, config: AcceleratorConfig) -> str:
    return amaranth_verilog.convert(SimHarness(LeNetAccelerator(weights, config)), name=TOPLEVEL)


def simulate(
    weights: WeightSet,
    images: np.ndarray,
    config: AcceleratorConfig,
    simulator: str = "verilator",
    waves: bool = False,
    chunk: int = 100,
    progress=None,
    build_root=None,
) -> NetworkRun:
    """Run ``images`` through the RTL in chunks (one simulator run each) and the golden model."""
    source = harness_verilog(weights, config)
    parts: list[runner.SimResult] = []
    seconds = 0.0
    for start in range(0, len(images), chunk):
        batch = images[start : start + chunk]
        result = runner.run(source, TOPLEVEL, f"{__package__}.tb_lenet", {"images": batch},
                            simulator=simulator, waves=waves, build_root=build_root)
        parts.append(result)
        seconds += result.seconds
        if progress:
            progress(len(batch))
    outputs = {key: np.concatenate([p.outputs[key] for p in parts]) for key in ("logits", "klass", "cycles")}
    golden_logits = golden.forward(images, weights.params, config.arithmetic)
    return NetworkRun(
        rtl_logits=outputs["logits"],
        rtl_class=outputs["klass"],
        golden_logits=golden_logits,
        golden_class=golden.classify(golden_logits),
        cycles=outputs["cycles"],
        sim_seconds=seconds,
        waves=parts[-1].waves if parts else None,
    )

