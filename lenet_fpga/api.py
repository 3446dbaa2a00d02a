"""The Python API: the flow from a notebook or a script, one function a step, each returning a
result object that holds the figures the command line's ``--json`` prints.

    import lenet_fpga as lf

    weights = lf.load_weights()                         # the shipped LeNet-5
    digits = lf.sample_digits()
    golden = lf.run_golden(weights, digits.images, digits.labels)
    verilog = lf.generate_verilog(weights, lf.GeneratorOptions(preset="baseline"))
    run = lf.simulate(weights, digits.images[:4])       # the RTL, every logit compared
    assert run.mismatches == 0

The command line (``lenet_fpga.cli``) is a layer over these functions and the library packages
below them; nothing here reads an argparse namespace. ``docs/api.md`` is the guide.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .hdl.designs import DESIGNS, GeneratorOptions
from .model import golden as golden_model
from .model import images as image_sets
from .model import weights as weight_files
from .model.errors import InputError
from .model.weights import WeightSet

__all__ = [
    "DESIGNS", "GeneratorOptions", "InputError", "WeightSet",
    "load_weights", "sample_digits", "mnist_test_set", "load_dataset", "run_golden", "design_config", "generate_verilog",
    "simulate", "build_for_board", "connect_board", "train", "import_model", "compress", "export_onnx",
    "GoldenResult", "VerilogResult", "SimulationResult", "ExportResult",
]


def load_weights(path=None) -> WeightSet:
    """A weight file (``.npz`` with its ``.json`` manifest beside it); ``None`` or ``"shipped"``:
    the shipped LeNet-5."""
    return weight_files.load(None if path == "shipped" else path)


def sample_digits() -> image_sets.ImageSet:
    """The 40 MNIST test digits that ship with the package (images uint8 [40,28,28], labels)."""
    return image_sets.load_image_set(None)


def mnist_test_set(data_dir=None) -> image_sets.ImageSet:
    """The 10,000 MNIST test images (``data_dir``, else ``$LENET_FPGA_DATA``, else where
    ``lenet-fpga download`` puts them)."""
    from .model import mnist

    split = mnist.load("test", data_dir)
    return image_sets.ImageSet(split.images, split.labels)


def load_dataset(path, grey: bool = False, test_fraction: float | None = None):
    """A data set of your own (``lenet_fpga.model.datasets``): an ``.npz`` or a folder of PNGs of
    square images and their labels, as a ``Dataset`` (``.train``, ``.test``: images uint8
    [N,S,S] grey or [N,C,S,S] colour, and labels; ``.classes``, ``.image_size``, ``.channels``,
    ``.digest``). ``grey`` converts colour images to grey (without it they keep their channels,
    which a network's input must have); ``test_fraction`` (default
    1/6) is set aside as the test set of a source without one. Give it to ``train``, ``compress``
    or ``import_model`` as ``TorchOptions(dataset=...)``; ``run_golden(weights, d.test.images,
    d.test.labels)`` evaluates on it."""
    from .model import datasets

    return datasets.load_dataset(path, grey=grey, test_fraction=test_fraction)


@dataclass(frozen=True)
class GoldenResult:
    """The golden model's answers: ``logits`` int64 [N, classes] in the hardware's own units,
    ``classes`` [N], and with labels the ``accuracy``."""

    logits: np.ndarray
    classes: np.ndarray
    accuracy: float | None = None

    def to_dict(self) -> dict:
        return {"images": int(len(self.classes)), "classes": self.classes.tolist(), "accuracy": self.accuracy}


def run_golden(weights: WeightSet, images, labels=None, options: GeneratorOptions = GeneratorOptions()) -> GoldenResult:
    """The exact integer arithmetic of the hardware on ``images`` (uint8 [N,S,S], S up to the
    network's input size: smaller images are centred), with the weights' own rounding and
    overflow unless ``options`` says otherwise."""
    fitted = image_sets.ImageSet(np.asarray(images, np.uint8), labels).fitted(weights.network)
    arithmetic = options.arithmetic(weights.arithmetic)
    logits = golden_model.forward(fitted.images, weights.params, arithmetic, weights.network)
    accuracy = None if labels is None else golden_model.accuracy(logits, np.asarray(labels))
    return GoldenResult(logits, golden_model.classify(logits), accuracy)


def train(out, options=None, log=print):
    """Train a network on MNIST, or on ``options.dataset`` (float, then quantization-aware) and write ``out`` (FILE.npz,
    its .json manifest and FILE-float.npz). ``options``: ``lenet_fpga.model.train.flow.TrainOptions``
    (network, epochs, seed, ...). Returns a ``Trained`` (accuracies, files). Needs PyTorch."""
    from .model.train import flow

    return flow.train(out, options or flow.TrainOptions(), log=log)


def import_model(model_file, out, options=None, log=print):
    """A trained PyTorch model (``torch.save`` of a module or its state_dict) or an ONNX graph
    (``.onnx``; needs the onnx extra) as Q2.6 weights in ``out``; ``options``: ``ImportOptions`` (image size, pooling, normalisation, QAT epochs).
    A QONNX graph whose quantizers are Q2.6 fixed point is imported exactly, without retraining
    (``ImportOptions(requantize=True)`` quantizes one that is not again; docs/import.md).
    Returns a ``Trained``. Needs PyTorch."""
    from .model.train import flow

    return flow.import_model(model_file, out, options or flow.ImportOptions(), log=log)


def compress(weights: WeightSet, out, config=None, options=None, start: str = "codes", log=print):
    """Prune and restrict the weight codes of ``weights`` against the generator's own cost model
    (the design ``config.preset`` builds), fine-tune, and write ``out``. ``config``:
    ``lenet_fpga.model.train.compress.CompressConfig`` (budgets, codes, method, ...);
    ``options``: ``TorchOptions``. Returns a ``Trained`` whose ``extra`` has the codes and the
    costs before and after. Needs PyTorch."""
    from .hdl.cost import generator_cost_model
    from .model.train import flow
    from .model.train.compress import CompressConfig

    config = config or CompressConfig()
    return flow.compress(weights, out, config, generator_cost_model(config.preset, weights.arithmetic),
                         options or flow.TorchOptions(), start=start, log=log)


@dataclass(frozen=True)
class ExportResult:
    """An exported graph: the ``onnx.ModelProto`` (``model``), its ``format`` (``onnx`` or
    ``qonnx``), the arithmetic it computes, each layer's largest accumulator (all below 2**24,
    which float32 holds exactly), and what the check against the golden model found:
    ``checked_logits`` compared on ``checked_images`` images, ``equal_logits`` equal. The file
    (``path``) is written only when every checked logit is equal."""

    model: object
    format: str
    network: str
    arithmetic: str
    bounds: dict
    checked_images: int
    checked_logits: int
    equal_logits: int
    path: Path | None = None

    @property
    def exact(self) -> bool:
        return self.equal_logits == self.checked_logits

    def to_dict(self) -> dict:
        return {"onnx": None if self.path is None else str(self.path), "format": self.format,
                "network": self.network, "arithmetic": self.arithmetic, "nodes": len(self.model.graph.node),
                "accumulator_bounds": self.bounds, "checked_images": self.checked_images,
                "checked_logits": self.checked_logits, "equal_logits": self.equal_logits}


def export_onnx(weights: WeightSet, format: str = "onnx", out=None, options: GeneratorOptions = GeneratorOptions(),
                check_images=None, batch: int | None = None) -> ExportResult:
    """``weights``' integer network as an ONNX (``format="onnx"``, run it with onnxruntime) or
    QONNX graph (``"qonnx"``, ``Quant`` nodes; qonnx's executor): uint8 pixels ``[N,1,S,S]`` in,
    int32 logits in the golden model's units out (``docs/export.md``). The arithmetic is the
    weights' own unless ``options`` says otherwise. With ``check_images`` (uint8 ``[N,S,S]``,
    smaller images centred) the graph runs on them and every logit is compared with the golden
    model's; ``out`` is written (atomically) only if all are equal. ``batch`` fixes the batch
    size (FINN and qonnx's executor want one; default: symbolic). Needs the ``onnx`` extra."""
    from .model import export_onnx as exporter
    from .model.atomic import atomic_path, check_output

    exporter.check_format(format)
    target = None if out is None else check_output(out, "out")
    exported = exporter.build(weights, format, options.arithmetic(weights.arithmetic), batch)
    n_images = compared = equal = 0
    if check_images is not None:
        fitted = image_sets.ImageSet(np.asarray(check_images, np.uint8), None).fitted(weights.network).images
        n_images = len(fitted)
        compared, equal = exporter.compare(exported, weights, fitted)
    if target is not None and equal == compared:
        with atomic_path(target) as tmp:
            tmp.write_bytes(exported.to_bytes())
    return ExportResult(exported.model, format, weights.network.spec, exported.arithmetic.describe(), exported.bounds,
                        n_images, compared, equal, target if equal == compared else None)


def design_config(weights: WeightSet, options: GeneratorOptions = GeneratorOptions(), board: str | None = None):
    """The design configuration ``options`` make for ``weights``' network (on ``board``: the
    design that board builds, fitted to its DSP blocks)."""
    from .boards.configure import design_config as configure
    from .boards.platforms import board as find_board

    return configure(weights, options, None if board is None else find_board(board))


@dataclass(frozen=True)
class VerilogResult:
    """Generated Verilog: the ``text`` (written to ``path`` if one was given), its top module,
    the design it is, and the per-block report (MACs, multipliers, memory bits, cycles)."""

    text: str
    toplevel: str
    design: str  # a name in DESIGNS
    configuration: str  # its sizes, as the command line spells them
    layers: list  # hdl.report.LayerRow, one per block
    multipliers: int
    cycles_per_image: int | None
    path: Path | None = None
    interface: str = "native"  # a name in INTERFACES

    def to_dict(self) -> dict:
        return {"verilog": None if self.path is None else str(self.path), "toplevel": self.toplevel,
                "interface": self.interface, "design": self.design, "configuration": self.configuration,
                "layers": [row.to_dict() for row in self.layers], "multipliers": self.multipliers,
                "cycles_per_image": self.cycles_per_image}


# The ports ``generate_verilog`` can give the design: its own (docs/interface.md, "Ports") or
# AXI4-Stream (hdl/axis.py; docs/interface.md, "AXI4-Stream wrapper").
INTERFACES = ("native", "axis")


def generate_verilog(weights: WeightSet, options: GeneratorOptions = GeneratorOptions(), out=None,
                     toplevel: str = "lenet5", interface: str = "native", axis_depth: int | None = None) -> VerilogResult:
    """The accelerator's Verilog for ``weights`` (written atomically to ``out`` if given), with
    its own ports (``interface="native"``) or behind the AXI4-Stream wrapper (``"axis"``, whose
    result queue holds ``axis_depth`` answers, default ``hdl.axis.default_depth``: 4 for the
    streaming design, 2 for the compact one)."""
    from amaranth.back import verilog as amaranth_verilog

    from .hdl import axis
    from .hdl.designs import describe
    from .model.atomic import atomic_path, check_output

    if interface not in INTERFACES:
        raise InputError(f"unknown interface {interface!r}; choose from {', '.join(INTERFACES)}")
    if axis_depth is not None and (interface != "axis" or not isinstance(axis_depth, int) or axis_depth < 1):
        raise InputError(f"axis_depth {axis_depth!r}: a whole number of at least 1, for the axis interface only")
    config = design_config(weights, options)
    target = None if out is None else check_output(out, "out")
    accelerator = config.build(weights)
    layers = accelerator.layer_report()
    multipliers, cycles = accelerator.multipliers, accelerator.cycles_per_image
    if interface == "axis":
        text = axis.axis_verilog(accelerator, toplevel, axis_depth)
    else:
        text = amaranth_verilog.convert(accelerator, name=toplevel)
    if target is not None:
        with atomic_path(target) as tmp:
            tmp.write_text(text)
    return VerilogResult(text, toplevel, config.design, describe(config), layers, multipliers, cycles, target,
                         interface)


@dataclass(frozen=True)
class SimulationResult:
    """Images through the RTL and the golden model (``run``: ``sim.network.NetworkRun``, both
    sets of logits and classes and each image's cycles), the design they ran on, and how many
    images differ in any logit (``mismatches``: 0 is bit-exact)."""

    run: object
    design: str  # a name in DESIGNS
    configuration: str  # its sizes, as the command line spells them
    simulator: str

    rtl_logits = property(lambda self: self.run.rtl_logits)
    rtl_classes = property(lambda self: self.run.rtl_class)
    golden_logits = property(lambda self: self.run.golden_logits)
    golden_classes = property(lambda self: self.run.golden_class)
    cycles = property(lambda self: self.run.cycles)
    matches = property(lambda self: self.run.matches)
    mismatches = property(lambda self: self.run.mismatches)

    def to_dict(self) -> dict:
        return {"images": int(len(self.cycles)), "mismatches": self.mismatches, "design": self.design,
                "configuration": self.configuration, "simulator": self.simulator, "cycles": self.cycles.tolist(),
                "build_seconds": round(self.run.build_seconds, 2), "startup_seconds": round(self.run.startup_seconds, 2),
                "sim_seconds": round(self.run.sim_seconds, 2)}


def simulate(weights: WeightSet, images, options: GeneratorOptions = GeneratorOptions(),
             simulator: str = "verilator", jobs: int = 1, back_to_back: bool = False,
             scheduler: str | None = None, build_dir=None, progress=None) -> SimulationResult:
    """``images`` (uint8 [N,S,S]) through the generated RTL in a simulator (``verilator`` or
    ``icarus``), and through the golden model, logit by logit. ``jobs`` simulator processes
    share the images; ``scheduler`` (``"local"`` or a Dask address) runs them on Dask workers
    instead. ``back_to_back`` streams the images (fewer simulated cycles; each image's cycles
    then include its wait behind the one before)."""
    from .hdl.designs import describe
    from .sim import runner

    config = design_config(weights, options)
    fitted = image_sets.ImageSet(np.asarray(images, np.uint8), None).fitted(weights.network).images
    runner.prepare_simulator(simulator)
    build_root = runner.check_build_root(build_dir)
    if scheduler:
        from .explore.shards import simulate_on_cluster

        run = simulate_on_cluster(weights, fitted, config, simulator, back_to_back, scheduler,
                                  workers=jobs if scheduler == "local" else None, progress=progress)
    else:
        from .sim.network import simulate as simulate_network

        run = simulate_network(weights, fitted, config, simulator=simulator, jobs=jobs, back_to_back=back_to_back,
                               progress=progress, build_root=build_root)
    return SimulationResult(run, config.design, describe(config), simulator)


def build_for_board(weights: WeightSet, board: str, options: GeneratorOptions = GeneratorOptions(),
                    clock_mhz: float | None = None, build_dir=None, baud: int = 115_200, seed: int | None = None,
                    force: bool = False, log=print):
    """A bitstream for ``board`` (``ulx3s-85f``, ``ulx3s-45f``, ``ulx3s-25f``, ``icebreaker``)
    with Yosys and nextpnr: the ``boards.build.BuildReport`` (resources, Fmax, timing met,
    cycles per image, images/s, the bitstream's path). Refuses, with the numbers, a design that
    cannot fit, unless ``force``."""
    from .boards import build
    from .boards.platforms import board as find_board
    from .boards.platforms import with_clock

    target = with_clock(find_board(board), clock_mhz)
    build.check_baud(target, baud)
    config = design_config(weights, options, board)
    if not force:
        build.check_fits(target, weights, config)
    folder = Path(build_dir) if build_dir is not None else Path("build") / target.name
    return build.build_bitstream(target, weights, config, folder, baud, log=log, seed=seed)


def connect_board(port: str, baud: int = 115_200, timeout: float | None = None):
    """A ``boards.host.BoardClient`` on the serial ``port`` (a device, or the pseudo-terminal
    ``lenet-fpga board-sim`` prints): ``ping()``, ``classify(image)``, ``bench(runs)``, ..."""
    from .boards.host import BoardClient, open_serial

    return BoardClient(open_serial(port, baud, timeout))
