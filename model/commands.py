"""The model-side subcommands: ``train``, ``eval`` and ``download``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import arith, golden, mnist, weights
from .codes import PLAIN, weight_bits
from .atomic import atomic_path, check_output
from .errors import InputError
from .images import fit
from .network import LENET5, Network

# numpy's and torch's seeds are 64-bit at most
MAX_SEED = 2**63 - 1


def network_from_text(text: str | None) -> Network:
    """``--network``: a compact spec (``6,16:120,84``) or a JSON file holding ``Network.to_dict``."""
    if text is None:
        return LENET5
    if text.endswith(".json"):
        path = Path(text)
        try:
            value = json.loads(path.read_text())
        except OSError as e:
            raise InputError(f"--network: cannot read {path}: {e.strerror or e}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise InputError(f"--network: {path} is not valid JSON ({e.__class__.__name__})") from None
        return Network.from_dict(value)
    return Network.parse(text)


def arithmetic_from_args(args, default: arith.Arithmetic) -> arith.Arithmetic:
    """--rounding/--overflow where given, else what the weights were trained for."""
    return arith.Arithmetic(args.rounding or default.rounding, args.overflow or default.overflow)


def weights_outputs(out) -> tuple[Path, Path]:
    """``--out FILE.npz``: the weights file and its float checkpoint, both checked writable
    (with the manifest) before any work."""
    out = Path(out)
    if out.suffix != ".npz":
        raise InputError(f"--out must name an .npz file, got {out}")
    float_path = out.with_name(out.stem + "-float.npz")
    for path in (out, weights.manifest_path(out), float_path):
        check_output(path, "--out")
    return out, float_path


def cmd_train(args) -> int:
    import torch

    from .train import qat

    out, float_path = weights_outputs(args.out)
    if not 0 <= args.seed <= MAX_SEED:
        raise InputError(f"--seed must be 0..{MAX_SEED}, not {args.seed}")
    start = None
    if args.start_from is not None:
        begin = weights.load(args.start_from)
        if args.network is not None and network_from_text(args.network) != begin.network:
            raise InputError(f"--network {args.network} is not the network of --from {args.start_from} "
                             f"({begin.network.spec})")
        start = weights.load_float(begin) or {name: value.astype(np.float32) / arith.SCALE
                                              for name, value in begin.params.items()}
        network = begin.network
    else:
        network = network_from_text(args.network)
    if network.classes < mnist.CLASSES:
        raise InputError(f"the network {network.spec} has {network.classes} classes; MNIST needs {mnist.CLASSES}")
    arithmetic = arith.Arithmetic(args.rounding or arith.Rounding.HALF_UP, args.overflow or arith.Overflow.SATURATE)
    config = qat.TrainConfig(seed=args.seed, float_epochs=args.epochs, qat_epochs=args.qat_epochs,
                             **({"lr": args.lr} if args.lr is not None else {}),
                             **({"batch_size": args.batch_size} if args.batch_size is not None else {}))
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    train_split = mnist.load("train", args.data).fitted(network)
    if args.train_images is not None:
        train_split = mnist.Split(train_split.images[: args.train_images], train_split.labels[: args.train_images])
    test_split = mnist.load("test", args.data).fitted(network)
    print(network.describe())
    print(f"training for {arithmetic.describe()}: {config}")
    float_model, qat_model, seconds = qat.train(train_split, arithmetic, config, network=network, start=start)

    params = qat_model.integer_params()
    fixed_logits = golden.forward(test_split.images, params, arithmetic, network)
    with torch.no_grad():
        fake_logits = qat_model.integer_logits(torch.from_numpy(test_split.images.copy())).numpy()
    mismatches = int((fake_logits != fixed_logits).any(axis=1).sum())
    if mismatches:  # the contract is broken: do not ship weights that train and hardware disagree on
        raise RuntimeError(f"fake-quant and golden model disagree on {mismatches} test images")
    float_params = float_model.float_params()
    float_acc = golden.accuracy(golden.float_forward(test_split.images, float_params, network), test_split.labels)
    fixed_acc = golden.accuracy(fixed_logits, test_split.labels)

    manifest = weights.make_manifest(
        arithmetic,
        network,
        float_weights=float_path.name,
        accuracy={"float": float_acc, "fixed": fixed_acc, "n_images": len(test_split.labels), "split": "test"},
        training={**config.__dict__, "seconds": round(seconds, 1), "torch": torch.__version__,
                  "train_images": len(train_split.labels),
                  **({"started_from": str(args.start_from)} if args.start_from else {})},
    )
    weights.save_with_float(out, params, manifest, float_params)
    print(f"float accuracy {float_acc:.2%}, Q2.6 accuracy {fixed_acc:.2%} ({arithmetic.describe()})")
    print(f"wrote {out}, {weights.manifest_path(out)} and {float_path}")
    return 0


def cmd_import(args) -> int:
    """A PyTorch model -> Q2.6 weights (optionally fine-tuned with QAT), like ``train``'s output."""
    import torch

    from .train import importer, qat

    out, float_path = weights_outputs(args.out)
    normalize = None
    if args.normalize is not None:
        try:
            mean, std = (float(part) for part in args.normalize.split(","))
        except ValueError:
            raise InputError(f"--normalize takes MEAN,STD (e.g. 0.1307,0.3081), not {args.normalize!r}") from None
        normalize = (mean, std)
    imported = importer.from_object(importer.load_torch_file(args.model), args.image_size, args.pool, normalize)
    network = imported.network
    arithmetic = arith.Arithmetic(args.rounding or arith.Rounding.HALF_UP, args.overflow or arith.Overflow.SATURATE)
    print(network.describe())
    for note in imported.notes:
        print(note)
    float_params = imported.params
    test_split = mnist.load("test", args.data).fitted(network)
    training = None
    if args.qat_epochs:
        torch.set_num_threads(args.threads)
        torch.use_deterministic_algorithms(True)
        config = qat.TrainConfig(seed=args.seed, float_epochs=0, qat_epochs=args.qat_epochs)
        train_split = mnist.load("train", args.data).fitted(network)
        _, qat_model, seconds = qat.train(train_split, arithmetic, config, network=network, start=float_params)
        params = qat_model.integer_params()
        training = {**config.__dict__, "seconds": round(seconds, 1), "torch": torch.__version__}
    else:
        params = {name: arith.quantize_weights(value) for name, value in float_params.items()}
    fixed_logits = golden.forward(test_split.images, params, arithmetic, network)
    float_acc = golden.accuracy(golden.float_forward(test_split.images, float_params, network), test_split.labels)
    fixed_acc = golden.accuracy(fixed_logits, test_split.labels)
    manifest = weights.make_manifest(
        arithmetic, network, float_weights=float_path.name,
        accuracy={"float": float_acc, "fixed": fixed_acc, "n_images": len(test_split.labels), "split": "test"},
        source={"imported_from": str(args.model), "notes": list(imported.notes)},
        **({"training": training} if training else {}),
    )
    weights.save_with_float(out, params, manifest, float_params)
    print(f"float accuracy {float_acc:.2%}, Q2.6 accuracy {fixed_acc:.2%} ({arithmetic.describe()}"
          f"{', after ' + str(args.qat_epochs) + ' QAT epochs' if args.qat_epochs else ', rounded, no QAT'})")
    print(f"wrote {out}, {weights.manifest_path(out)} and {float_path}")
    return 0


def cmd_eval(args) -> int:
    started = time.time()
    ws = weights.load(args.weights)
    arithmetic = arithmetic_from_args(args, ws.arithmetic)
    network = ws.network
    split = mnist.load("test", args.data).fitted(network)
    fixed_logits = golden.forward(split.images, ws.params, arithmetic, network)
    result = {
        "weights": str(ws.path),
        "network": network.spec,
        "n_images": int(len(split.labels)),
        "rounding": str(arithmetic.rounding),
        "overflow": str(arithmetic.overflow),
        "fixed_accuracy": golden.accuracy(fixed_logits, split.labels),
        "macs": network.macs,
        "weight_bits": weight_bits(network, ws.codes),
        "codes": {name: restriction.describe() for name, restriction in ws.codes.items()},
    }
    float_params = weights.load_float(ws)
    if float_params is not None:
        result["float_accuracy"] = golden.accuracy(golden.float_forward(split.images, float_params, network),
                                                   split.labels)
    # What the weights file says its Q2.6 accuracy was when it was written (training's figure):
    # equal to fixed_accuracy unless the file or the arithmetic changed since.
    result["recorded_accuracy"] = ws.manifest.get("accuracy", {}).get("fixed")
    result["seconds"] = round(time.time() - started, 2)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"weights          {result['weights']}")
        print(f"network          {network.spec}")
        print(f"arithmetic       {arithmetic.describe()}")
        print(f"test images      {result['n_images']}")
        if "float_accuracy" in result:
            print(f"float accuracy   {result['float_accuracy']:.2%}")
        print(f"Q2.6 accuracy    {result['fixed_accuracy']:.2%}")
        print(f"MACs per image   {result['macs']:,}")
        print(f"weight bits      {result['weight_bits']:,}")
        for name, text in result["codes"].items():
            print(f"{name + ' codes':<17}{text}")
    return 0


def cmd_download(args) -> int:
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(name, done, total):
        bar = bars.setdefault(name, tqdm(total=total or None, desc=name, unit="B", unit_scale=True))
        bar.update(done - bar.n)

    data_dir = Path(args.data) if args.data is not None else mnist.default_data_dir()
    mirror = mnist.check_mirror(args.mirror if args.mirror is not None else mnist.DEFAULT_MIRROR)
    for name in mnist.FILES:
        check_output(data_dir / name, "--data")
    try:
        fetched = mnist.download(data_dir, mirror=mirror, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    print(f"{len(fetched)} file(s) downloaded, all four verified in {data_dir}")
    return 0


def assignments(text: str | None, option: str, value=str) -> dict:
    """``NAME=VALUE,NAME=VALUE`` (in order; a later NAME overrides an earlier one)."""
    result = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, item = part.partition("=")
        if not sep or not name.strip() or not item.strip():
            raise InputError(f"{option}: expected NAME=VALUE[,NAME=VALUE...], not {text!r}")
        try:
            result[name.strip()] = value(item.strip())
        except ValueError:
            raise InputError(f"{option}: {name.strip()}={item.strip()} is not a valid value") from None
    return result


def cmd_compress(args) -> int:
    import torch

    from . import cost
    from .train import compress, qat
    from .codes import codes_to_manifest

    out, float_path = weights_outputs(args.out)
    if not 0 <= args.seed <= MAX_SEED:
        raise InputError(f"--seed must be 0..{MAX_SEED}, not {args.seed}")
    source = weights.load(args.weights)
    network, arithmetic = source.network, source.arithmetic
    restricted = sorted(name for name, restriction in source.codes.items() if restriction != PLAIN)
    if restricted:
        # Its codes would be restricted twice; a file whose manifest names only plain 8-bit codes
        # (a pruned network) is as good a start as any.
        raise InputError(f"{source.path} already has restricted weight codes ({', '.join(restricted)}); "
                         f"compress its dense source instead")
    budgets = {metric: getattr(args, f"max_{metric}") for metric in cost.METRICS
               if getattr(args, f"max_{metric}", None) is not None}
    config = compress.CompressConfig(
        seed=args.seed, epochs=args.epochs, budgets=budgets,
        channels=assignments(args.channels, "--channels", int),
        codes=assignments(args.codes, "--codes"),
        method=args.method, search_images=args.search_images, min_keep=args.min_keep, tradeoff=args.tradeoff,
        preset=args.cost_preset, learned_epochs=args.learned_epochs,
        **({"lr": args.lr} if args.lr is not None else {}),
        **({"batch_size": args.batch_size} if args.batch_size is not None else {}),
        **({"cost_weights": assignments(args.cost_weights, "--cost-weights", float)} if args.cost_weights else {}),
    )
    compress.space_from(config, network)  # option errors now, before the data is read
    from ..hdl.cost import generator_cost_model, hardware_cost

    cost_model = generator_cost_model(config.preset, arithmetic)  # an unknown preset is an error now too
    start = weights.load_float(source) if args.start == "float" else None
    if args.start == "float" and start is None:
        raise InputError(f"--start float: {source.path} has no float checkpoint beside it")
    if start is None:  # the codes the hardware runs, as weights
        start = {name: value.astype(np.float32) / arith.SCALE for name, value in source.params.items()}
    start_from = args.start

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    train_split = mnist.load("train", args.data).fitted(network)
    if args.train_images is not None:  # a quick run on the first N training images
        train_split = mnist.Split(train_split.images[: args.train_images], train_split.labels[: args.train_images])
    test_split = mnist.load("test", args.data).fitted(network)
    print(f"compressing {source.path} ({network.spec}, {arithmetic.describe()}) from its {start_from} weights")
    result = compress.compress(start, network, arithmetic, train_split, config, cost_model=cost_model)

    smaller = result.network
    params = result.model.integer_params()
    fixed_logits = golden.forward(test_split.images, params, arithmetic, smaller)
    with torch.no_grad():
        fake_logits = result.model.integer_logits(torch.from_numpy(test_split.images.copy())).numpy()
    mismatches = int((fake_logits != fixed_logits).any(axis=1).sum())
    if mismatches:  # the contract is broken: do not ship weights that training and hardware disagree on
        raise RuntimeError(f"fake-quant and golden model disagree on {mismatches} test images")
    float_params = result.model.float_params()
    float_acc = golden.accuracy(golden.float_forward(test_split.images, float_params, smaller), test_split.labels)
    fixed_acc = golden.accuracy(fixed_logits, test_split.labels)
    figures = hardware_cost(smaller, result.codes, config.preset, arithmetic)
    before = hardware_cost(network, {}, config.preset, arithmetic)

    manifest = weights.make_manifest(
        arithmetic, smaller,
        float_weights=float_path.name,
        accuracy={"float": float_acc, "fixed": fixed_acc, "n_images": len(test_split.labels), "split": "test"},
        codes=codes_to_manifest(result.codes),
        cost=figures.to_dict(),
        compression={
            "source": source.path.name,
            "source_network": network.spec,
            "source_accuracy": source.manifest.get("accuracy", {}).get("fixed"),
            "start": start_from,
            "recipes": {name: str(recipe) for name, recipe in result.recipes.items()},
            "kept_channels": result.kept,
            "search": result.path,
            "config": config.to_dict(),
            "seconds": round(result.seconds, 1),
            "threads": args.threads,
            "train_images": len(train_split.labels),
            "torch": torch.__version__,
        },
    )
    weights.save_with_float(out, params, manifest, float_params)
    print(smaller.describe())
    print("codes: " + ", ".join(f"{name} {restriction}" for name, restriction in result.codes.items()))
    print(f"{'':<14}{'accuracy':>10}{'MACs':>10}{'weight bits':>13}{'multipliers':>13}{'cycles':>9}")
    source_acc = source.manifest.get("accuracy", {}).get("fixed")
    for label, acc, c in (("source", source_acc, before), ("compressed", fixed_acc, figures)):
        acc_text = f"{acc:.2%}" if acc is not None else "?"
        print(f"{label:<14}{acc_text:>10}{c.macs:>10,}{c.weight_bits:>13,}{c.multipliers:>13,}{c.cycles:>9,}")
    print(f"(cost model: the '{config.preset}' preset; Q2.6 accuracy on the {len(test_split.labels):,} test images)")
    print(f"wrote {out}, {weights.manifest_path(out)} and {float_path} in {result.seconds:.0f} s")
    return 0
