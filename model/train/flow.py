"""Train, import and compress as library calls: each takes typed options, reads MNIST, trains
with PyTorch, checks that the fake-quantized model and the golden model agree on every test
image (the contract that makes the hardware's answers the trained ones), writes the weight file
with its manifest and float checkpoint, and returns what it measured.

The command line (``lenet_fpga.commands``) and the Python API (``lenet_fpga.api``) call these;
neither trains anything itself.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import arith, datasets, golden, mnist, weights
from ..codes import PLAIN, codes_to_manifest
from ..cost import CostModel
from ..errors import InputError
from ..network import LENET5, Network
from . import compress as compression
from . import formats, importer, onnx_import, qat, qonnx_import, readings

# numpy's and torch's seeds are 64-bit at most
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class TorchOptions:
    """What every training run shares: its seed, its CPU threads, its images (MNIST from
    ``data_dir``, or ``dataset``: a data set of the user's own, a path that
    ``datasets.load_dataset`` reads or a ``datasets.Dataset``), and how many training images it
    uses (None: all)."""

    seed: int = 1
    threads: int = 2
    data_dir: str | None = None
    train_images: int | None = None
    dataset: str | Path | datasets.Dataset | None = None

    def __post_init__(self):
        if not (isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED):
            raise InputError(f"--seed must be 0..{MAX_SEED}, not {self.seed}")
        if self.data_dir is not None and self.dataset is not None:
            raise InputError("--data names the MNIST folder, --dataset a data set of your own: give one")

    def read_dataset(self) -> datasets.Dataset | None:
        """``dataset`` read (None: MNIST)."""
        if self.dataset is None or isinstance(self.dataset, datasets.Dataset):
            return self.dataset
        return datasets.load_dataset(self.dataset)


@dataclass(frozen=True)
class TrainOptions(TorchOptions):
    """``train``: the network (None: LeNet-5), epochs, and the arithmetic to train for."""

    network: Network | None = None
    epochs: int = 20
    qat_epochs: int = 10
    lr: float | None = None
    batch_size: int | None = None
    start_from: str | None = None  # a weights file whose network and weights to start from
    arithmetic: arith.Arithmetic = arith.Arithmetic()
    # The hidden layers' activation formats or widths (``formats.parse``; a width's format is
    # chosen on the float network); empty: the arithmetic's own (Q2.6 everywhere by default).
    activations: tuple = ()
    # ``--activations auto``: what a choice of formats costs, ``cost(network, arithmetic)`` in
    # memory bits (``hdl.cost.activation_memory_bits``; the model layer does not build designs).
    activation_cost: Callable | None = None

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.activations, str):
            object.__setattr__(self, "activations", formats.parse(self.activations))
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and 0 < self.lr < math.inf):
            raise InputError(f"--lr must be a finite number above 0, not {self.lr}")


@dataclass(frozen=True)
class ImportOptions(TorchOptions):
    """``import``: what the file does not say (image size, pooling of a state_dict), the input
    normalisation to fold into conv1, QAT epochs (0: round; None: ``AUTO_QAT_EPOCHS`` when
    rounding loses more than ``AUTO_QAT_LOSS``), and the arithmetic (None: half-up and saturate,
    or a QONNX graph's own). ``trust_pickle`` allows a module saved whole, whose unpickling runs
    code from the file and imports its class from the file's folder or ``module_path``
    (docs/import.md). ``any_reading`` imports a state dict whose weights fit another chain better
    (``readings``) as the hardware reads it. A QONNX graph imports exactly; with ``requantize``
    its dequantized weights are quantized again instead (rounded, or QAT); ``check_images``: the
    test images qonnx's executor runs to check an exact import."""

    image_size: int = 28
    pool: int = 2
    normalize: tuple[float, float] | None = None
    qat_epochs: int | None = None
    arithmetic: arith.Arithmetic | None = None
    trust_pickle: bool = False
    module_path: tuple[str, ...] = ()
    any_reading: bool = False
    requantize: bool = False
    check_images: int = qonnx_import.CHECK_IMAGES
    # The hidden layers' activation formats or widths (``formats.parse``; a width's format is
    # chosen on the imported float network); empty: Q2.6 (a QONNX graph imported exactly: its own).
    activations: tuple = ()
    activation_cost: Callable | None = None  # as TrainOptions'

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.activations, str):
            object.__setattr__(self, "activations", formats.parse(self.activations))
        check_normalize(self.normalize)
        if self.qat_epochs is not None and not (isinstance(self.qat_epochs, int) and self.qat_epochs >= 0):
            raise InputError(f"--qat-epochs must be 0 or more (or None: when rounding costs accuracy), "
                             f"not {self.qat_epochs!r}")
        if isinstance(self.module_path, (str, Path)):  # one folder given as itself
            object.__setattr__(self, "module_path", (self.module_path,))
        object.__setattr__(self, "module_path", tuple(str(folder) for folder in self.module_path))
        if not (isinstance(self.check_images, int) and self.check_images >= 1):
            raise InputError(f"check_images must be a whole number above 0, not {self.check_images!r}")


def check_normalize(normalize) -> None:
    """(mean, std) of an input normalisation: a finite mean and a finite std above 0 (a NaN or
    infinite one folds into conv1 as a NaN or all-zero layer, and the import would still
    "succeed")."""
    if normalize is None:
        return
    mean, std = normalize
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise InputError(f"--normalize takes a finite MEAN and a finite STD above 0, not {mean},{std}")


@dataclass(frozen=True)
class Trained:
    """A weight file written by ``train``, ``import_model`` or ``compress``, and what it measured."""

    weights: Path
    float_weights: Path
    network: Network
    arithmetic: arith.Arithmetic
    float_accuracy: float
    fixed_accuracy: float
    n_images: int
    seconds: float
    extra: dict = field(default_factory=dict)  # what the step adds: notes, codes, costs

    def to_dict(self) -> dict:
        return {"weights": str(self.weights), "manifest": str(weights.manifest_path(self.weights)),
                "float_weights": str(self.float_weights), "network": self.network.spec,
                "arithmetic": self.arithmetic.describe(), "float_accuracy": self.float_accuracy,
                "fixed_accuracy": self.fixed_accuracy, "n_images": self.n_images,
                "seconds": round(self.seconds, 1), **self.extra}


def outputs(out) -> tuple[Path, Path]:
    """``out`` (FILE.npz) and its float checkpoint, both checked writable (with the manifest)
    before any work."""
    from ..atomic import check_output

    out = Path(out)
    if out.suffix != ".npz":
        raise InputError(f"--out must name an .npz file, got {out}")
    float_path = out.with_name(out.stem + "-float.npz")
    for path in (out, weights.manifest_path(out), float_path):
        check_output(path, "--out")
    return out, float_path


def _prepare_torch(options: TorchOptions) -> None:
    torch.set_num_threads(options.threads)
    torch.use_deterministic_algorithms(True)


def _train_split(options: TorchOptions, network: Network, dataset: datasets.Dataset | None) -> mnist.Split:
    """The training images at ``network``'s input size: the data set's, else MNIST's."""
    split = datasets.fitted_split("train", network, dataset, options.data_dir)
    if options.train_images is not None:  # a quick run on the first N training images
        split = mnist.Split(split.images[: options.train_images], split.labels[: options.train_images])
    return split


def _test_split(options: TorchOptions, network: Network, dataset: datasets.Dataset | None) -> mnist.Split:
    """The test images at ``network``'s input size: the data set's, else MNIST's."""
    return datasets.fitted_split("test", network, dataset, options.data_dir)


def _data_record(dataset: datasets.Dataset | None) -> dict:
    """The manifest's ``dataset`` entry (nothing for MNIST)."""
    return {"dataset": dataset.to_manifest()} if dataset is not None else {}


def _checked_logits(model, params, arithmetic, network, test_split) -> np.ndarray:
    """The golden model's logits on the test set, after checking that the fake-quantized model
    gives the same on every image."""
    fixed_logits = golden.forward(test_split.images, params, arithmetic, network)
    with torch.no_grad():
        fake_logits = model.integer_logits(torch.from_numpy(test_split.images.copy())).numpy()
    mismatches = int((fake_logits != fixed_logits).any(axis=1).sum())
    if mismatches:  # the contract is broken: do not ship weights that training and hardware disagree on
        raise RuntimeError(f"fake-quant and golden model disagree on {mismatches} test images")
    return fixed_logits


def _accuracies(float_params, fixed_logits, network, test_split) -> dict:
    float_logits = golden.float_forward(test_split.images, float_params, network)
    return {"float": golden.accuracy(float_logits, test_split.labels),
            "fixed": golden.accuracy(fixed_logits, test_split.labels),
            "n_images": len(test_split.labels), "split": "test"}


def _trained(out, float_path, network, arithmetic, accuracy, seconds, **extra) -> Trained:
    return Trained(out, float_path, network, arithmetic, accuracy["float"], accuracy["fixed"], accuracy["n_images"],
                   seconds, extra)


def train(out, options: TrainOptions = TrainOptions(), log=print) -> Trained:
    """Float training, then quantization-aware training, of ``options.network`` on MNIST or
    ``options.dataset`` (without a network: LeNet-5's layers at the data set's image size and
    classes)."""
    out, float_path = outputs(out)
    dataset = options.read_dataset()
    start, network = None, options.network or (dataset.default_network() if dataset else LENET5)
    if options.start_from is not None:
        begin = weights.load(options.start_from)
        if options.network is not None and options.network != begin.network:
            raise InputError(f"--network {options.network.spec} is not the network of --from {options.start_from} "
                             f"({begin.network.spec})")
        start = weights.load_float(begin) or {name: value.astype(np.float32) / arith.SCALE
                                              for name, value in begin.params.items()}
        network = begin.network
    if dataset is not None:
        dataset.check_fits(network)
    elif network.classes < mnist.CLASSES:
        raise InputError(f"the network {network.spec} has {network.classes} classes; MNIST needs {mnist.CLASSES}")
    if options.activations:
        formats.for_network(options.activations, network)  # a count that does not fit: refused before training
    config = qat.TrainConfig(seed=options.seed, float_epochs=options.epochs, qat_epochs=options.qat_epochs,
                             **({"lr": options.lr} if options.lr is not None else {}),
                             **({"batch_size": options.batch_size} if options.batch_size is not None else {}))
    _prepare_torch(options)
    train_split = _train_split(options, network, dataset)
    test_split = _test_split(options, network, dataset)
    if dataset is not None:
        log(datasets.describe(dataset))
    log(network.describe())
    log(f"training for {options.arithmetic.describe()}: {config}")
    float_model, qat_model, seconds = qat.train(train_split, options.arithmetic, config, network=network, start=start,
                                                log=log, activations=options.activations,
                                                activation_cost=options.activation_cost)
    arithmetic = qat_model.arithmetic
    params = qat_model.integer_params()
    fixed_logits = _checked_logits(qat_model, params, arithmetic, network, test_split)
    float_params = float_model.float_params()
    accuracy = _accuracies(float_params, fixed_logits, network, test_split)
    manifest = weights.make_manifest(
        arithmetic, network, float_weights=float_path.name, accuracy=accuracy,
        training={**config.__dict__, "seconds": round(seconds, 1), "torch": torch.__version__,
                  "train_images": len(train_split.labels),
                  **({"started_from": str(options.start_from)} if options.start_from else {})},
        **_data_record(dataset),
    )
    weights.save_with_float(out, params, manifest, float_params)
    return _trained(out, float_path, network, arithmetic, accuracy, seconds)


def _read_model(model_file, options: ImportOptions) -> tuple[importer.Imported, onnx_import.OnnxModel | None,
                                                               qonnx_import.QonnxModel | None]:
    """The network and float parameters in ``model_file`` (its input normalisation folded in):
    an ONNX graph (``onnx_import``, by its suffix or first byte; read once, and a QONNX one by
    ``qonnx_import``, exactly unless ``requantize``), else a ``torch.save`` file; the ONNX graph
    too, to run it, and the QONNX reading."""
    qonnx_graph = None
    if onnx_import.is_onnx_file(model_file):
        model, data = onnx_import.load_onnx(model_file)
        if qonnx_import.is_qonnx(model):
            qonnx_graph = qonnx_import.read_loaded(model, data, options.image_size, exact=not options.requantize,
                                                   normalize=options.normalize)
            graph = qonnx_graph.graph
        else:
            _float_model(model_file, options)
            graph = onnx_import.read_loaded(model, data, options.image_size)
        imported = graph.imported
        if options.normalize is not None:
            imported = importer.fold_normalization(imported, *options.normalize)
        return imported, graph, qonnx_graph
    _float_model(model_file, options)
    return importer.from_object(importer.load_torch_file(model_file, options.trust_pickle, options.module_path),
                                options.image_size, options.pool, options.normalize), None, None


def _float_model(model_file, options: ImportOptions) -> None:
    """``--requantize`` is for a QONNX graph only."""
    if options.requantize:
        raise InputError(f"--requantize is for a QONNX graph; {model_file} is a float model, which import always "
                         f"quantizes")


def _checked_against_runtime(graph: onnx_import.OnnxModel, imported: importer.Imported, test_split: mnist.Split,
                             options: ImportOptions, log) -> dict:
    """The ONNX model's own float accuracy (onnxruntime) on the test images, after checking that
    the imported float network gives its outputs on every one of them (else the graph was misread:
    nothing is quantized)."""
    runtime = onnx_import.runtime_outputs(graph, test_split.images, options.normalize, options.threads)
    ours = onnx_import.apply_tail(golden.float_forward(test_split.images, imported.params, imported.network),
                                  graph.tail)
    difference = float(np.abs(ours - runtime).max())
    scale = max(1.0, float(np.abs(runtime).max()))
    if not difference <= 1e-3 * scale:  # float32 against float64: about 1e-6 of the logits' size
        image = int(np.abs(ours - runtime).max(axis=1).argmax())
        raise InputError(f"the imported network does not compute what the ONNX graph computes (output difference "
                         f"{difference:.3g} on test image {image}): the graph holds something import misread")
    accuracy = golden.accuracy(runtime, test_split.labels)
    log(f"onnxruntime: the ONNX model's float accuracy {accuracy:.2%} on {len(test_split.labels):,} test images; "
        f"the imported float network gives the same outputs (largest difference {difference:.2g})")
    return {"float_accuracy": accuracy, "n_images": len(test_split.labels), "largest_difference": difference}


# Rounding that loses more than a point of accuracy is fine-tuned with QAT unless asked not to.
AUTO_QAT_LOSS = 0.01
AUTO_QAT_EPOCHS = 3


def import_model(model_file, out, options: ImportOptions = ImportOptions(), log=print) -> Trained:
    """A trained model (``torch.save`` of a module or its state_dict, or an ONNX graph) as Q2.6
    weights: its weights rounded, then fine-tuned with ``options.qat_epochs`` of QAT (by default
    only when rounding loses more than a point). A QONNX graph whose quantizers map onto Q2.6 is
    taken exactly (``qonnx_import``), its codes as they are."""
    out, float_path = outputs(out)
    imported, graph, qonnx_graph = _read_model(model_file, options)
    if qonnx_graph is not None and qonnx_graph.exact is not None:
        return _import_exact(model_file, out, float_path, qonnx_graph, options, log)
    network, arithmetic = imported.network, options.arithmetic or arith.Arithmetic()
    log(network.describe())
    if qonnx_graph is not None:
        log(f"QONNX graph ({qonnx_graph.quant_nodes} Quant nodes), --requantize: its weights as its Quant nodes give "
            f"them, its activation quantizers dropped, quantized again")
    for note in imported.notes:
        log(note)
    float_params = imported.params
    clipped = _clipped(float_params, options.qat_epochs, log)
    dataset = options.read_dataset()
    test_split = _test_split(options, network, dataset)
    found = {}
    if qonnx_graph is not None:
        found["qonnx"] = _qonnx_accuracy(qonnx_graph, test_split, options, log)
    elif graph is not None:
        found["onnxruntime"] = _checked_against_runtime(graph, imported, test_split, options, log)
    if imported.state_dict:
        found["readings"] = _checked_reading(imported, test_split, options.any_reading, log)
    if options.activations:
        arithmetic = _imported_formats(float_params, network, arithmetic, options, dataset, log)
    params = {name: arith.quantize_weights(value) for name, value in float_params.items()}
    accuracy = _accuracies(float_params, golden.forward(test_split.images, params, arithmetic, network), network,
                           test_split)
    loss = accuracy["float"] - accuracy["fixed"]
    log(f"rounded to {arithmetic.describe()}: accuracy {accuracy['fixed']:.2%}, {loss:.2%} below the float "
        f"network's {accuracy['float']:.2%} ({accuracy['n_images']:,} test images)")
    epochs = options.qat_epochs
    if epochs is None:
        epochs = AUTO_QAT_EPOCHS if loss > AUTO_QAT_LOSS else 0
        if epochs:
            log(f"rounding loses more than {AUTO_QAT_LOSS:.0%} of accuracy: {epochs} epochs of quantization-aware "
                f"fine-tuning (--qat-epochs N to choose, 0 to keep the rounded weights)")
    training, seconds, rounded = None, 0.0, accuracy["fixed"]
    if epochs:
        _prepare_torch(options)
        config = qat.TrainConfig(seed=options.seed, float_epochs=0, qat_epochs=epochs)
        _, qat_model, seconds = qat.train(_train_split(options, network, dataset), arithmetic, config, network=network,
                                          start=float_params, log=log)
        params = qat_model.integer_params()
        training = {**config.__dict__, "seconds": round(seconds, 1), "torch": torch.__version__,
                    "asked": options.qat_epochs is not None}
        # the float network is the same: only the fixed accuracy changes
        accuracy = {**accuracy, "fixed": golden.accuracy(golden.forward(test_split.images, params, arithmetic, network),
                                                         test_split.labels)}
    manifest = weights.make_manifest(
        arithmetic, network, float_weights=float_path.name, accuracy=accuracy,
        source={"imported_from": str(model_file), "notes": list(imported.notes), "clipped": clipped,
                "rounded_accuracy": rounded, **found},
        **({"training": training} if training else {}), **_data_record(dataset),
    )
    weights.save_with_float(out, params, manifest, float_params)
    return _trained(out, float_path, network, arithmetic, accuracy, seconds, notes=list(imported.notes),
                    clipped=clipped, rounded_accuracy=rounded, qat_epochs=epochs, **found)


def _imported_formats(float_params, network, arithmetic, options: ImportOptions, dataset, log) -> arith.Arithmetic:
    """``arithmetic`` with ``options.activations``: formats as given, a width's chosen on the
    float network (``formats.choose``, on training images)."""
    spec = formats.for_network(options.activations, network)
    if all(isinstance(item, arith.Fixed) for item in spec):
        return dataclasses.replace(arithmetic, activations=spec)
    _prepare_torch(options)
    model = qat.QuantLeNet(None, network)
    model.load_state_dict({name: torch.as_tensor(np.asarray(value, np.float32)) for name, value in float_params.items()})
    model.eval()
    split = _train_split(options, network, dataset)
    sample = formats.calibration_sample(torch.from_numpy(np.array(split.images)),
                                        torch.from_numpy(split.labels.astype(np.int64)), options.seed)
    return formats.choose(model, spec, arithmetic, *sample, log=log, cost=options.activation_cost)


def _checked_reading(imported: importer.Imported, test_split: mnist.Split, any_reading: bool, log) -> dict:
    """A state dict's weights read as the hardware computes them, and every other reading
    (``readings``): refused when another fits them clearly better, unless ``any_reading``."""
    found = readings.measure(test_split.images, test_split.labels, imported.params, imported.network)
    other, ours = found.best_other, readings.HARDWARE
    said = (f"the state dict's weights read with {readings.describe(ours)} (the hardware's): float accuracy "
            f"{found.accuracy[ours]:.2%}, loss {found.loss[ours].mean():.3f}; with {readings.describe(other)}: "
            f"{found.accuracy[other]:.2%}, loss {found.loss[other].mean():.3f} ({found.n_images:,} test images)")
    if found.other_chain and not any_reading:
        raise InputError(f"{said}: the model was trained with {readings.describe(other)}, which the hardware does not "
                         f"compute; retrain it with max-pooling and ReLU (or give --any-reading to import it as "
                         f"the hardware reads it)")
    log(said)
    return found.to_dict()


def _qonnx_accuracy(qonnx_graph: qonnx_import.QonnxModel, test_split: mnist.Split, options: ImportOptions,
                    log) -> dict:
    """The QONNX model's own accuracy in qonnx's executor on the first ``check_images`` test
    images (``--requantize``: nothing to compare it with, its activations are quantized)."""
    images, labels = test_split.images[: options.check_images], test_split.labels[: options.check_images]
    outputs_ = qonnx_import.executor_outputs(qonnx_graph.graph, images, options.normalize)
    accuracy = golden.accuracy(outputs_, labels)
    log(f"qonnx: the QONNX model's accuracy {accuracy:.2%} on {len(labels):,} test images (qonnx's executor)")
    return {"exact": False, "accuracy": accuracy, "n_images": len(labels), "quant_nodes": qonnx_graph.quant_nodes}


def _import_exact(model_file, out, float_path, qonnx_graph: qonnx_import.QonnxModel, options: ImportOptions,
                  log) -> Trained:
    """A QONNX graph whose quantizers map onto Q2.6: its integer codes as they are, checked in
    qonnx's executor (every logit of ``check_images`` test images equal to the golden model's)
    before anything is written."""
    exact, imported = qonnx_graph.exact, qonnx_graph.graph.imported
    network = imported.network
    arithmetic = arith.Arithmetic(exact.rounding, arith.Overflow.SATURATE, exact.activations)
    if options.activations:
        raise InputError(f"{model_file} is a QONNX graph whose quantizers map onto the hardware: its activation "
                         f"formats are its quantizers' (leave --activations out, or --requantize)")
    if options.qat_epochs:
        raise InputError(f"{model_file} is a QONNX graph whose quantizers map onto Q2.6: it is imported exactly, "
                         f"without retraining; give --requantize to quantize it again with --qat-epochs")
    asked = options.arithmetic
    if asked is not None and (asked.rounding, asked.overflow) != (arithmetic.rounding, arithmetic.overflow):
        raise InputError(f"{model_file}'s quantizers compute {arithmetic.describe()}; --rounding/--overflow ask for "
                         f"{options.arithmetic.describe()} (leave them out, or --requantize)")
    log(network.describe())
    log(f"QONNX graph: its {qonnx_graph.quant_nodes} Quant nodes map onto the hardware exactly ({arithmetic.describe()}): "
        f"imported without retraining, each layer's integer codes as they are")
    notes = list(imported.notes) + list(exact.notes)
    for note in notes:
        log(note)
    for name, restriction in exact.codes.items():
        log(f"{name}: {restriction.describe()} (its weight quantizer)")
    dataset = options.read_dataset()
    test_split = _test_split(options, network, dataset)
    fixed_logits = golden.forward(test_split.images, exact.params, arithmetic, network)
    check = test_split.images[: options.check_images]
    want = fixed_logits[: len(check)]
    got = qonnx_import.executor_outputs(qonnx_graph.graph, check, options.normalize)
    equal = got.shape == want.shape and bool(np.all(want * exact.logit_unit == got))
    if not equal:
        differ = np.ones(want.shape, bool) if got.shape != want.shape else want * exact.logit_unit != got
        image = int(np.flatnonzero(differ.any(axis=1))[0])
        raise InputError(f"the imported integer network does not compute what the QONNX graph computes in qonnx's "
                         f"executor ({int(differ.sum())} of {differ.size} logits differ, first on test image {image}); "
                         f"nothing written")
    log(f"qonnx's executor: every logit of {len(check):,} test images equals the golden model's ({want.size:,} of "
        f"{want.size:,}; the graph's output is the golden logit times {exact.logit_unit:g})")
    float_params = {name: (value.astype(np.float32) / arith.SCALE) for name, value in exact.params.items()}
    accuracy = _accuracies(float_params, fixed_logits, network, test_split)
    qonnx_info = {"exact": True, "quant_nodes": qonnx_graph.quant_nodes, "checked_images": len(check),
                  "equal_logits": int(want.size), "logit_unit": exact.logit_unit, "quantizers": exact.quantizers}
    manifest = weights.make_manifest(
        arithmetic, network, float_weights=float_path.name, accuracy=accuracy,
        **({"codes": codes_to_manifest(exact.codes)} if exact.codes else {}),
        source={"imported_from": str(model_file), "notes": notes, "qonnx": qonnx_info}, **_data_record(dataset),
    )
    weights.save_with_float(out, exact.params, manifest, float_params)
    return _trained(out, float_path, network, arithmetic, accuracy, 0.0, notes=notes, qat_epochs=0,
                    codes={name: str(r) for name, r in exact.codes.items()}, qonnx=qonnx_info)


def _clipped(float_params: dict, qat_epochs: int, log) -> dict:
    """Each tensor's values past Q2.6's range (clipped when rounded to codes), said in one line."""
    clipped = {}
    for name, value in float_params.items():
        count = arith.clipped_by_quantize(value)
        if count:
            clipped[name] = {"values": count, "of": int(np.size(value)),
                             "largest": round(float(np.abs(value).max()), 4)}
    if clipped:
        each = ", ".join(f"{name} {c['values']} of {c['of']} (largest |value| {c['largest']:g})"
                         for name, c in clipped.items())
        hint = {0: "; --qat-epochs N fine-tunes the network with the clipping in the loop",
                None: "; QAT follows if rounding loses more than a point"}.get(qat_epochs, "")
        low, high = arith.QMIN / arith.SCALE, arith.QMAX / arith.SCALE
        log(f"clipped to Q2.6's range [{low:g}, {high:g}]: {each}{hint}")
    return clipped


def compress(source: weights.WeightSet, out, config: compression.CompressConfig, cost_model: CostModel,
             options: TorchOptions = TorchOptions(), start: str = "codes", log=print) -> Trained:
    """Search, prune and fine-tune ``source`` (see ``model.train.compress``), the search's
    figures of a design from ``cost_model``; ``start`` is ``codes`` (the integer codes / 64) or
    ``float`` (its float checkpoint)."""
    out, float_path = outputs(out)
    network, arithmetic = source.network, source.arithmetic
    restricted = sorted(name for name, restriction in source.codes.items() if restriction != PLAIN)
    if restricted:
        # Its codes would be restricted twice; a file whose manifest names only plain 8-bit codes
        # (a pruned network) is as good a start as any.
        raise InputError(f"{source.path} already has restricted weight codes ({', '.join(restricted)}); "
                         f"compress its dense source instead")
    compression.space_from(config, network)  # option errors now, before the data is read
    params = weights.load_float(source) if start == "float" else None
    if start == "float" and params is None:
        raise InputError(f"--start float: {source.path} has no float checkpoint beside it")
    if params is None:  # the codes the hardware runs, as weights
        params = {name: value.astype(np.float32) / arith.SCALE for name, value in source.params.items()}
    dataset = options.read_dataset()
    _prepare_torch(options)
    train_split = _train_split(options, network, dataset)
    test_split = _test_split(options, network, dataset)
    note = datasets.recorded_note(source.manifest, dataset, source.path)
    if note:
        log(note)
    log(f"compressing {source.path} ({network.spec}, {arithmetic.describe()}) from its {start} weights")
    result = compression.compress(params, network, arithmetic, train_split, config, log=log, cost_model=cost_model)
    smaller, integer_params = result.network, result.model.integer_params()
    fixed_logits = _checked_logits(result.model, integer_params, arithmetic, smaller, test_split)
    float_params = result.model.float_params()
    accuracy = _accuracies(float_params, fixed_logits, smaller, test_split)
    before, after = cost_model(network, {}), cost_model(smaller, result.codes)
    source_accuracy = source.manifest.get("accuracy", {}).get("fixed")
    manifest = weights.make_manifest(
        arithmetic, smaller, float_weights=float_path.name, accuracy=accuracy,
        codes=codes_to_manifest(result.codes), cost=after.to_dict(),
        compression={
            "source": source.path.name, "source_network": network.spec, "source_accuracy": source_accuracy,
            "start": start, "recipes": {name: str(recipe) for name, recipe in result.recipes.items()},
            "kept_channels": result.kept, "search": result.path, "config": config.to_dict(),
            "seconds": round(result.seconds, 1), "threads": options.threads,
            "train_images": len(train_split.labels), "torch": torch.__version__,
        },
        **_data_record(dataset),
    )
    weights.save_with_float(out, integer_params, manifest, float_params)
    return _trained(out, float_path, smaller, arithmetic, accuracy, result.seconds,
                    codes={name: str(r) for name, r in result.codes.items()}, cost_preset=config.preset,
                    source={"weights": str(source.path), "network": network.spec, "accuracy": source_accuracy,
                            "cost": before.to_dict()},
                    compressed={"accuracy": accuracy["fixed"], "cost": after.to_dict()})
