"""The one interface of every accelerator this project generates, as ``amaranth.lib.fifo``'s
``FIFOInterface`` is the one interface of every FIFO.

Two generators implement it: the streaming ``LeNetAccelerator`` (``hdl/lenet.py``: an engine per
layer, weights in block RAM initial values) and the ``CompactAccelerator`` (``hdl/compact.py``:
one shared multiplier array, weights in SPRAM loaded at run time). A caller (the board top, the
UART link, the simulation harness, ``build``, ``bench``) holds an ``Accelerator`` and a design
configuration and never asks which one it has.

Ports (``AcceleratorSignature``; ``docs/interface.md`` has the timing)::

    pixels           In   stream of uint8 pixels, raster order (a pixel's channels one after another),
                          ``network.pixels`` bytes per image
    start            In   open the pixel input for one image (taken while ``receiving`` is low)
    receiving        Out  the pixel input is open
    busy             Out  an image is in flight
    done             Out  one-cycle pulse per image, in order, when its answer is ready
    klass            Out  the answer: index of the first largest logit
    logits           Out  ``network.classes`` raw last-layer accumulators, logit 0 in the low bits
    cycles           Out  cycles from ``start`` taken to ``done``, inclusive
    weights          In   stream of weight-image bytes (run-time weight loading)
    weights_restart  In   the next ``weights`` byte is byte 0 of the image
"""

from __future__ import annotations

import gc
import warnings

from amaranth.hdl import UnusedElaboratable, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import arith
from ..model.network import Network
from ..model.weights import WeightSet
from .datapath import accumulator_shape
from .report import LayerRow

CYCLE_COUNTER_WIDTH = 32


def logit_shape(network: Network):
    """The signed shape of a logit: the last layer's accumulator."""
    return accumulator_shape(network.linear_layers[-1].in_features)


class AcceleratorSignature(wiring.Signature):
    """The ports of an accelerator for ``network`` (see the module docstring); anything that
    drives or stands in for one uses this signature, or its ``flip()`` on the side that drives it.

    Parameters
    ----------
    network : Network
    logits : shape, optional
        Overrides the logits' shape (``logit_shape(network)``).

    Attributes
    ----------
    network : Network
    logit_shape : shape
    """

    def __init__(self, network: Network, logits=None):
        if not isinstance(network, Network):
            raise TypeError(f"network must be a Network, not {type(network).__name__}")
        self._network = network
        self._logit_shape = logit_shape(network) if logits is None else logits
        super().__init__({
            "pixels": In(stream.Signature(unsigned(8))),
            "start": In(1),
            "busy": Out(1),        # an image is in flight
            "receiving": Out(1),   # the pixel input is open; a start now is ignored
            "done": Out(1),
            "klass": Out(range(network.classes)),
            "logits": Out(data.ArrayLayout(self._logit_shape, network.classes)),
            "cycles": Out(CYCLE_COUNTER_WIDTH),
            # Run-time weight loading: the bytes of the accelerator's weight image, in order, sent
            # only while no image is in flight; a pulse on weights_restart makes the next byte byte 0.
            "weights": In(stream.Signature(unsigned(8))),
            "weights_restart": In(1),
        })

    @property
    def network(self) -> Network:
        return self._network

    @property
    def logit_shape(self):
        return self._logit_shape

    def __eq__(self, other):
        return type(other) is type(self) and self.members == other.members

    def __repr__(self):
        return f"AcceleratorSignature({self._network.spec!r}, logits={self._logit_shape!r})"


class Accelerator(wiring.Component):
    """A generated LeNet-family accelerator (see the module docstring for the ports).

    Parameters
    ----------
    weights : WeightSet
        The integer network; its manifest names the ``Network``.
    config
        The generator's configuration (``StreamingConfig`` or ``CompactConfig``), which says
        the arithmetic.
    logits : shape, optional
        Logits wider than the last layer's accumulator (only a test's stand-in needs it).

    Attributes
    ----------
    network : Network
    config
    arithmetic : arith.Arithmetic
    weights_in_bitstream : bool
        True if the design's memories start with the weights (valid from configuration); False
        if they must be sent through ``weights`` first.
    design : str
        Which generator: ``"streaming"`` or ``"compact"``.
    phases, phase : int, Signal or None
        A design that runs its layers one after another has ``phases`` of them and a ``phase``
        signal (1-based number of the phase being worked on, 0 between phases) that a test
        harness may time; a design whose layers overlap has 0 and None.
    blocks : dict
        The blocks worth looking at in a waveform, in data-flow order (``sim.waves``).
    """

    weights_in_bitstream: bool
    weights_loadable: bool = True  # ``weights`` can replace them (not in read-only memory)
    design: str
    phases: int = 0
    phase = None
    # The blocks a waveform viewer should show, in data-flow order (name -> component); each
    # is a submodule named like its key with "." replaced by "_".
    blocks: dict = {}

    def __init__(self, weights: WeightSet, config, logits=None):
        if not isinstance(weights, WeightSet):
            raise TypeError(f"weights must be a WeightSet, not {type(weights).__name__}")
        if not isinstance(getattr(config, "arithmetic", None), arith.Arithmetic):
            raise TypeError(f"config must be a design configuration with an arithmetic, not {config!r}")
        self._weights = weights
        self._network = weights.network
        self._config = config
        self.logit_shape = logit_shape(self._network) if logits is None else logits
        super().__init__(AcceleratorSignature(self._network, self.logit_shape))

    @property
    def network(self) -> Network:
        return self._network

    @property
    def config(self):
        return self._config

    @property
    def arithmetic(self) -> arith.Arithmetic:
        return self._config.arithmetic

    def weight_image(self) -> bytes:
        """The bytes to send through ``weights`` to load the weights this design was built with."""
        raise NotImplementedError

    def layer_report(self) -> list[LayerRow]:
        """One row per block that has memory or multipliers (``hdl.report.LayerRow``: MACs,
        multipliers, DSP blocks, bits per weight, memory bits and kind, cycles alone)."""
        raise NotImplementedError

    def cycle_model(self) -> dict[str, int] | None:
        """Cycles of one image per phase (``input``, then each phase) by the design's own cycle
        model, or None when it has none (the streaming design's layers overlap: simulation
        measures it)."""
        return None

    @property
    def cycles_per_image(self) -> int | None:
        """Cycles from start to done of one image by the design's cycle model (or None)."""
        model = self.cycle_model()
        return sum(model.values()) if model else None

    @property
    def multipliers(self) -> int:
        return sum(row.multipliers for row in self.layer_report())

    @property
    def dsp_blocks(self) -> int:
        return sum(row.dsp for row in self.layer_report())


def read_design(weights: WeightSet, config, read):
    """``read(accelerator)`` of the design ``config`` builds, which is then dropped unelaborated."""
    with warnings.catch_warnings():
        # The blocks are built only to be read; Amaranth would warn that they were never used.
        warnings.simplefilter("ignore", UnusedElaboratable)
        value = read(config.build(weights))
        gc.collect()
    return value


def layer_report(weights: WeightSet, config) -> list[LayerRow]:
    """``Accelerator.layer_report`` without keeping (or elaborating) the design."""
    return read_design(weights, config, lambda accelerator: accelerator.layer_report())


def weight_image(weights: WeightSet, config) -> bytes:
    """``Accelerator.weight_image`` without keeping (or elaborating) the design."""
    return read_design(weights, config, lambda accelerator: accelerator.weight_image())


def cycles_per_image(weights: WeightSet, config) -> int | None:
    """``Accelerator.cycles_per_image`` without keeping (or elaborating) the design."""
    return read_design(weights, config, lambda accelerator: accelerator.cycles_per_image)
