"""The benchmark of ``lenet-fpga bench`` (``lenet_fpga/commands/bench.py``): every network and generator preset measured against the multiply floor.

Per network (a weights file: dense, pruned, low-bit...) and preset (``hdl.lenet.PRESETS``,
resolved against the network and its weight codes):

* MACs, weight bits, multipliers (how many in DSP blocks, how many built from logic or from
  shifts), from the engines' own report (``Accelerator.layer_report``);
* latency (cycles from start to done of one image) and interval (cycles between images when
  they are streamed back to back), both measured in RTL simulation (``sim/tb_stream.py``);
* the multiply floors: a layer with M MACs and m multipliers needs at least ceil(M / m) cycles
  per image, so a stream of images needs at least the maximum over the layers (interval floor),
  and the layers one after another would take their sum (serial floor: the streaming design
  overlaps its layers, so its latency is below it). One pixel enters per cycle, so the interval
  is also bounded by the image's pixels;
* with ``--pnr``, Fmax and LUT/FF/BRAM/DSP from an out-of-context Yosys + nextpnr-ecp5 run of
  the accelerator alone for the LFE5U-85F (``boards.pnr.place_and_route``), and images per
  second = Fmax / interval;
* the golden model's accuracy on the 10,000 MNIST test images with the preset's arithmetic, and
  whether the RTL's logits are bit-exact with it on the streamed images.
"""

from __future__ import annotations

import math
import time
import json
from pathlib import Path

import numpy as np

from ..boards.pnr import place_and_route
from ..hdl.accelerator import layer_report, read_design
from ..hdl.report import LayerRow
from ..hdl.lenet import PRESETS, StreamingConfig, preset
from ..model import arith, golden, mnist
from ..model import images as image_sets
from ..model import weights as weight_files
from ..model.documents import read_json
from ..model.errors import InputError
from ..model.network import Network
from ..model.weights import WeightSet
from .network import stream
from .plots import network_label

RESOURCES = ("luts", "flip_flops", "block_ram", "dsp")


def select_configs(names: str | None, network: Network, arithmetic,
                   presets=PRESETS, codes=None) -> dict[str, StreamingConfig]:
    """``"a,b"`` -> those presets in that order, resolved against ``network`` and its weight
    ``codes``; ``None`` -> all of them."""
    if names is None:
        return {name: preset(name, network, arithmetic, presets, codes) for name in presets}
    wanted = [name.strip() for name in names.split(",")]
    if not all(wanted):
        raise InputError(f"--configs: empty name in {names!r}; known presets: {', '.join(presets)}")
    unknown = [name for name in wanted if name not in presets]
    if unknown:
        raise InputError(f"unknown preset{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"known presets: {', '.join(presets)}")
    return {name: preset(name, network, arithmetic, presets, codes) for name in dict.fromkeys(wanted)}


def multiply_floors(rows: list[LayerRow], pixel_bound: int) -> dict:
    """Floors from a layer report: every row with MACs is a layer computed on its own multipliers.

    Returns ``layers`` (name -> ceil(MACs / multipliers)), ``latency`` (their sum), ``interval``
    (their maximum) and ``pixel_bound`` (the input takes one pixel a cycle: the network's pixels).
    """
    layers = {}
    for row in rows:
        if not row.macs:
            continue
        if row.multipliers < 1:
            raise ValueError(f"layer {row.layer} has {row.macs} MACs and no multipliers")
        layers[row.layer] = math.ceil(row.macs / row.multipliers)
    if not layers:
        raise ValueError("no layer with MACs in the report")
    return {"layers": layers, "latency": sum(layers.values()), "interval": max(layers.values()),
            "pixel_bound": pixel_bound}


def bench_images(n: int, data_dir, network: Network, dataset=None) -> tuple[np.ndarray, str, image_sets.ImageSet | None]:
    """The first ``n`` MNIST test images if the set is there, else the shipped digits; and the
    whole test set (``None`` when absent) for the accuracy. With a ``dataset``
    (``model.datasets.Dataset``), its test images instead, for both."""
    if dataset is not None:
        test = dataset.fitted(network)
        test_set = image_sets.ImageSet(test.images, test.labels)
        if n > len(test_set):
            raise InputError(f"--rtl-images {n}: the data set {dataset.source} has {len(test_set)} test images")
        return test_set.head(n).images, f"test images of {dataset.source}", test_set
    try:
        split = mnist.load("test", data_dir)
    except InputError:
        split = None
    if split is not None:
        test_set = image_sets.ImageSet(split.images, split.labels).fitted(network)
        return test_set.head(n).images, "MNIST test images", test_set
    samples = image_sets.load_image_set(None).fitted(network)
    if n > len(samples):
        raise InputError(f"--rtl-images {n}: without the MNIST test set there are only the "
                         f"{len(samples)} shipped digits (see --data)")
    return samples.head(n).images, "shipped digits", None


def bench_config(name: str, config: StreamingConfig, weights: WeightSet, images: np.ndarray, simulator: str,
                 pnr_dir: Path | None = None, step=lambda _: None, pnr_time_limit_s: float | None = None,
                 build_root=None) -> dict:
    """Everything the table shows for one preset except the accuracy; the simulator is built in
    ``build_root`` (``runner.check_build_root``'s default if None)."""
    step("layer report")
    rows = layer_report(weights, config)
    floors = multiply_floors(rows, weights.network.pixels)
    step("RTL stream")
    run = stream(weights, images, config, simulator=simulator, build_root=build_root)
    latency, interval = run.latency, run.interval
    network = weights.network
    # The design's totals, not the rows' sums: the compact design's rows all name its one array.
    multipliers, dsp = read_design(weights, config, lambda design: (design.multipliers, design.dsp_blocks))
    result = {
        "name": name,
        # Absolute: bench-report reads the JSON later, from wherever it is run (find_weights).
        "weights": str(Path(weights.path).resolve()) if weights.path else None,
        "network": network.spec,
        "macs": network.macs,
        "weight_bits": sum(row.weight_bits * _weights_of(network, row.layer) for row in rows),
        "arithmetic": config.arithmetic.describe(),
        "multipliers": multipliers,
        "dsp_multipliers": dsp,
        "logic_multipliers": sum(row.multipliers for row in rows if row.dsp == 0),
        "latency_cycles": latency,
        "interval_cycles": interval,
        "serial_floor": floors["latency"],
        "interval_floor": floors["interval"],
        "pixel_bound": floors["pixel_bound"],
        "interval_ratio": interval / floors["interval"],
        # Each row as JSON, with its layer's floor (ceil(MACs / multipliers); 0 for a block).
        "layers": [{**row.to_dict(), "floor": floors["layers"].get(row.layer, 0)} for row in rows],
        "rtl": {"images": int(len(images)), "mismatches": run.mismatches, "simulator": simulator,
                "sim_seconds": round(run.sim_seconds, 2), "cycles": run.cycles.tolist(),
                "taken": run.taken.tolist(), "done_at": run.done_at.tolist()},
        "fmax_mhz": None, "timing_met": None, "resources": None, "images_per_second": None,
    }
    if pnr_dir is not None:
        started = time.monotonic()
        try:
            pnr = place_and_route(weights, config, pnr_dir / name, step, pnr_time_limit_s)
        except RuntimeError as e:
            result["pnr_error"] = str(e)
        else:
            result.update(fmax_mhz=pnr["fmax_mhz"], timing_met=pnr["timing_met"],
                          resources={k: pnr["resources"][k]["used"] for k in RESOURCES if k in pnr["resources"]})
            if pnr["fmax_mhz"]:
                result["images_per_second"] = pnr["fmax_mhz"] * 1e6 / interval
        result["pnr_seconds"] = round(time.monotonic() - started, 1)
    return result


def _weights_of(network: Network, name: str) -> int:
    """Weight codes of layer ``name`` (0 for a block that is not a layer)."""
    shape = network.parameter_shapes.get(f"{name}.weight")
    return int(np.prod(shape)) if shape else 0


def format_table(results: list[dict], pixel_bound: int) -> str:
    def n(value, spec=","):
        return "-" if value is None else format(value, spec)

    head = (f"{'network':<20}{'config':<10}{'accuracy':>9}{'MACs':>9}{'w kbit':>8}{'act':>4}{'mem kbit':>9}"
            f"{'mults':>6}{'DSP':>5}"
            f"{'logic':>6}{'latency':>9}{'interval':>10}{'floor':>7}{'Fmax':>7}{'LUT':>8}{'FF':>8}{'BRAM':>6}"
            f"{'DSP':>5}{'images/s':>10}  bit-exact")
    lines = [head]
    for r in results:
        res = r["resources"] or {}
        accuracy = "-" if r.get("accuracy") is None else f"{r['accuracy']:.2%}"
        exact = f"{r['rtl']['images'] - r['rtl']['mismatches']}/{r['rtl']['images']}"
        lines.append(
            f"{network_label(r):<20}{r['name']:<10}{accuracy:>9}{r['macs']:>9,}{r['weight_bits'] / 1000:>8.1f}"
            f"{activation_bits(r):>4}{memory_bits(r) / 1000:>9.1f}"
            f"{r['multipliers']:>6}{r['dsp_multipliers']:>5}{r['logic_multipliers']:>6}{r['latency_cycles']:>9,}"
            f"{r['interval_cycles']:>10,.0f}{r['interval_floor']:>7,}{n(r['fmax_mhz'], '.1f'):>7}"
            f"{n(res.get('luts')):>8}{n(res.get('flip_flops')):>8}{n(res.get('block_ram')):>6}"
            f"{n(res.get('dsp')):>5}{n(r['images_per_second'], ',.0f'):>10}  {exact}")
    lines.append("act = the widest hidden activation's bits (8: Q2.6); mem kbit = all of the design's memories. "
                 "mults = products a cycle (DSP: in DSP blocks, two to a block when packed; logic: from LUTs or "
                 "shifts).\nlatency = start to done of one image; interval = between images streamed back to back; "
                 "floor = the busiest layer's ceil(MACs / multipliers); the pixel input alone bounds the interval "
                 f"at {pixel_bound} cycles.")
    return "\n".join(lines)


def activation_bits(row: dict) -> int:
    """The widest hidden layer's activation bits of a bench row (its ``arithmetic`` text)."""
    text = str(row.get("arithmetic", ""))  # "activations UQ2.2,UQ3.1, rounding ..." or "Q2.6, rounding ..."
    if not text.startswith("activations "):
        return arith.WIDTH
    formats = text[len("activations "):].split(", ")[0].split(",")
    return max(arith.Fixed.parse(f).bits for f in formats)


def memory_bits(row: dict) -> int:
    """All of a design's memory bits: its layer rows' sum."""
    return sum(int(layer.get("memory_bits", 0)) for layer in row["layers"])


def weight_sets(names) -> list[WeightSet]:
    """``--weights`` (repeated, or comma-separated): each file, or the shipped network when the
    option is not given. An empty name (``--weights ,`` or ``''``) is an error, not the shipped network."""
    if names is None:
        return [weight_files.load(None)]
    files = [part.strip() for name in names for part in name.split(",")]
    if not all(files):
        raise InputError(f"--weights: empty name in {','.join(names)!r}; name a weights file or 'shipped'")
    return [weight_files.load(name) for name in files]


def load_bench_document(path) -> dict:
    """A ``bench --json`` output, checked enough to tabulate and plot (clear error otherwise)."""
    path = Path(path)
    try:
        document = read_json(path)
    except InputError as e:
        raise InputError(f"{e} (not a bench --json output)" if path.is_file() else str(e)) from None
    rows = document.get("configs") if isinstance(document, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{path}: not a bench --json output (no 'configs' list)")
    for k, r in enumerate(rows):
        if missing := set(ROW_FIELDS) - set(r):
            raise InputError(f"{path}: row {k + 1} lacks {', '.join(sorted(missing))}")
        for name, check in ROW_FIELDS.items():
            if (problem := check(r[name])) is not None:
                raise InputError(f"{path}: row {k + 1}: {name!r} {problem}")
    return document


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value):
    return None if _is_number(value) else f"must be a number, not {json.dumps(value)[:40]}"


def _optional(check):
    return lambda value: None if value is None else check(value)


def _text(value):
    return None if isinstance(value, str) else f"must be text, not {json.dumps(value)[:40]}"


def _numbers_by_name(value):
    if not isinstance(value, dict) or not all(_is_number(v) or v is None for v in value.values()):
        return "must be an object of numbers"
    return None


def _rtl(value):
    if not isinstance(value, dict) or not all(_is_number(value.get(k)) for k in ("images", "mismatches")):
        return "must be an object with the numbers 'images' and 'mismatches'"
    return None


def _layers(value):
    if not isinstance(value, list) or not all(
            isinstance(row, dict) and isinstance(row.get("layer"), str)
            and all(_is_number(row.get(k)) for k in ("macs", "cycles", "floor")) for row in value):
        return "must be a list of layer rows (each a 'layer' name with numbers 'macs', 'cycles' and 'floor')"
    return None


# What tabulating and plotting a bench --json row reads, and the type each must have.
ROW_FIELDS = {
    "name": _text, "network": _text,
    **{name: _number for name in ("macs", "weight_bits", "multipliers", "dsp_multipliers", "logic_multipliers",
                                  "latency_cycles", "interval_cycles", "interval_floor", "pixel_bound")},
    **{name: _optional(_number) for name in ("fmax_mhz", "images_per_second", "accuracy")},
    "resources": _optional(_numbers_by_name), "rtl": _rtl, "layers": _layers,
}


def find_weights(saved: str | None, source: str | None = None) -> Path | None:
    """The weights file a bench row names, wherever ``bench-report`` runs: the path as saved
    (absolute since bench writes it so; older runs saved it relative to the folder bench ran in),
    else relative to the folder of the JSON file ``source`` the row came from, else, for a file
    saved from an ``assets`` folder, the shipped network of that name. ``None`` if none exists."""
    if not saved:
        return None
    saved_path = Path(saved)
    tries = [saved_path]
    if source is not None and not saved_path.is_absolute():
        tries.append(Path(source).parent / saved_path)
    if saved_path.parent.name == "assets":
        tries.append(Path(str(weight_files.ASSETS / saved_path.name)))
    return next((path for path in tries if path.is_file()), None)


def fill_accuracy(results: list[dict], data_dir: Path | None, say=print, explicit: bool = True) -> None:
    """The golden model's accuracy on the MNIST test set for rows measured without it (a bench
    run that did not find the test set), from each row's weights file (``find_weights``; a row's
    ``source`` is its JSON file) in the row's arithmetic.
    Without the test set: an error if ``explicit`` (the user named the folder), else a remark."""
    missing = [r for r in results if r.get("accuracy") is None]
    if not missing:
        return
    try:
        split = mnist.load("test", data_dir)
    except InputError as e:
        if explicit:
            raise
        say(f"accuracy of {len(missing)} rows left out: {e}")
        return
    cache: dict[tuple, float] = {}
    for r in missing:
        path = find_weights(r.get("weights"), r.get("source"))
        if path is None:
            say(f"{network_label(r)} {r['name']}: weights {r.get('weights')} not found; accuracy left out")
            continue
        arithmetic = next((a for a in arith.ARITHMETICS if a.describe() == r.get("arithmetic")), None)
        if arithmetic is None:
            say(f"{network_label(r)} {r['name']}: arithmetic {r.get('arithmetic')!r} unknown; accuracy left out")
            continue
        key = (str(Path(path).resolve()), arithmetic)
        if key not in cache:  # a network measured at several presets is loaded and run once
            ws = weight_files.load(path)
            test_set = image_sets.ImageSet(split.images, split.labels).fitted(ws.network)
            logits = golden.forward(test_set.images, ws.params, arithmetic, ws.network)
            cache[key] = golden.accuracy(logits, test_set.labels)
        r["accuracy"] = cache[key]
