"""An outside check of the arithmetic (issue 26, part 5): hls4ml's bit-accurate C++ emulation,
with ``ap_fixed`` types that spell out our formats, gives every logit of the golden model.

For each weight file the script builds the float PyTorch network whose weights are the codes'
values (``code / 64``), converts it with hls4ml (PyTorch front end, Vivado back end, io_parallel,
Latency strategy) with every layer's types set from the formats (``hls_types``, the one place
that maps a layer's formats to hls4ml precision strings), compiles hls4ml's C++ with g++
(``ModelGraph.compile``; hls4ml ships the ``ap_fixed`` headers, no Vivado is needed) and compares
its outputs on the MNIST test images with ``golden.forward``, logit by logit.

    .venv/bin/python scripts/hls4ml_check.py                       # shipped weights, 10,000 images
    .venv/bin/python scripts/hls4ml_check.py --weights all-shipped --n 1000
    .venv/bin/python scripts/hls4ml_check.py --weights model/assets/lenet5_wrap.npz --arithmetic all

Needs the ``hls4ml`` and ``train`` extras (hls4ml, torch) and g++. Exit status: 0 when every
logit agrees, 1 on any mismatch, 2 on bad input (or hls4ml or torch missing).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenet_fpga.model import arith, golden, mnist, weights
from lenet_fpga.model.errors import InputError
from lenet_fpga.model.network import ConvLayer

ALL_SHIPPED = "all-shipped"


@dataclass(frozen=True)
class Fixed:
    """A fixed-point format: ``width`` bits, ``frac`` of them after the binary point; signed
    (``ap_fixed``) unless ``signed`` is false (``ap_ufixed``)."""

    width: int
    frac: int
    signed: bool = True


Q2_6 = Fixed(arith.WIDTH, arith.FRAC_BITS)


@dataclass(frozen=True)
class LayerFormat:
    """What one conv or linear layer computes with: the formats of its weights, bias, input and
    output (``None``: the raw accumulator, the last layer's logits) and how its accumulator is
    requantized to the output format. ``n_terms`` is the number of products in one sum."""

    weight: Fixed
    bias: Fixed
    input: Fixed
    output: Fixed | None
    rounding: arith.Rounding
    overflow: arith.Overflow
    n_terms: int

    @property
    def product_frac(self) -> int:
        """Fraction bits of an input x weight product: the golden model's accumulator units."""
        return self.input.frac + self.weight.frac


# The pixel input: p/255 rounded to the nearest Q2.6 code, ties up, never out of range
# (docs/arithmetic.md, "Input pixels"). Fixed by the contract, whatever the layers' rounding.
PIXEL_FORMAT = (Q2_6, arith.Rounding.HALF_UP, arith.Overflow.SATURATE)


def layer_formats(ws: weights.WeightSet, arithmetic: arith.Arithmetic) -> dict[str, LayerFormat]:
    """Every layer's formats, from ``arithmetic.layers``: Q2.6 weights and biases (restricted
    codes are still Q2.6 values), the input's format (pixels: Q2.6) and the requantizer's
    output, signed and ``requant_bits`` wide (``arith.Fixed``: an unsigned format is the signed
    one a bit wider, then ReLU)."""
    formats = {}
    for layer, a in zip(ws.network.layers, arithmetic.layers(ws.network)):
        conv = isinstance(layer, ConvLayer)
        formats[layer.name] = LayerFormat(
            weight=Q2_6, bias=Q2_6, input=requantized(a.input),
            output=None if a.output is None else requantized(a.output),
            rounding=a.rounding, overflow=a.overflow,
            n_terms=layer.in_channels * layer.kernel**2 if conv else layer.in_features)
    return formats


def requantized(fmt: arith.Fixed) -> Fixed:
    """The signed type the requantizer fits a value of ``fmt`` into (ReLU follows)."""
    return Fixed(fmt.requant_bits, fmt.frac)


def stored(fmt: Fixed) -> Fixed:
    """A ReLU output of ``fmt`` as the RTL stores it (``arith.Fixed.stored_bits``): never
    negative, so the unsigned type one bit narrower, except Q2.6, which keeps its 8 bits."""
    return fmt if fmt == Q2_6 else Fixed(fmt.width - 1, fmt.frac, signed=False)


ROUNDING_MODES = {arith.Rounding.HALF_UP: "AP_RND",  # round half toward +infinity: floor(x + 1/2)
                  arith.Rounding.FLOOR: "AP_TRN"}  # truncate toward -infinity (two's complement)
OVERFLOW_MODES = {arith.Overflow.SATURATE: "AP_SAT", arith.Overflow.WRAP: "AP_WRAP"}


def ap_fixed(fmt: Fixed, rounding: arith.Rounding | None = None, overflow: arith.Overflow | None = None) -> str:
    """``ap_fixed<W,I[,Q,O]>`` (``ap_ufixed`` unsigned): I = W - frac integer bits (sign included).
    Without modes, the type must only ever receive values it holds exactly (ap_fixed's defaults
    are AP_TRN, AP_WRAP)."""
    text = f"{'ap_fixed' if fmt.signed else 'ap_ufixed'}<{fmt.width},{fmt.width - fmt.frac}"
    if rounding is not None or overflow is not None:
        text += f",{ROUNDING_MODES[arith.Rounding(rounding)]},{OVERFLOW_MODES[arith.Overflow(overflow)]}"
    return text + ">"


def accumulator_format(fmt: LayerFormat) -> Fixed:
    """An exact accumulator: every product and the bias without rounding, as wide as the RTL's
    (``arith.accumulator_bound``, the one bound of the arithmetic: inputs of at most 128 in
    magnitude and a bias shift of at most 6, which every format keeps) in units of one product."""
    if (fmt.weight, fmt.bias) != (Q2_6, Q2_6) or fmt.input.width > arith.WIDTH or fmt.input.frac > arith.FRAC_BITS:
        raise ValueError("arith.accumulator_bound knows Q2.6 weights and inputs of at most 8 bits, 6 fraction bits")
    return Fixed(arith.signed_width(arith.accumulator_bound(fmt.n_terms)), fmt.product_frac)


def hls_types(fmt: LayerFormat) -> dict[str, str]:
    """One layer's formats -> the hls4ml precision strings of its conv/dense layer (``weight``,
    ``bias``, ``accum``, ``result``) and of the ReLU and max-pool after it (``relu``, ``pool``).

    hls4ml's conv/dense sums exact products (``decltype(x * w)``) into ``accum`` and casts the sum
    to ``result``: that cast is our requantizer (drop the extra fraction bits with the rounding
    mode, then saturate or wrap). ReLU and max-pool only pass values on, so their types hold
    every value they get exactly and have no modes: the output format without its sign bit
    (``ap_ufixed``), which is how the RTL stores a narrow format's ReLU outputs.
    """
    acc = ap_fixed(accumulator_format(fmt))
    if fmt.output is None:  # the last layer: its output is the raw accumulator
        return {"weight": ap_fixed(fmt.weight), "bias": ap_fixed(fmt.bias), "accum": acc, "result": acc}
    return {"weight": ap_fixed(fmt.weight), "bias": ap_fixed(fmt.bias), "accum": acc,
            "result": ap_fixed(fmt.output, fmt.rounding, fmt.overflow),
            "relu": ap_fixed(stored(fmt.output)), "pool": ap_fixed(stored(fmt.output))}


def torch_model(ws: weights.WeightSet):
    """The float PyTorch network whose weights and biases are the codes' values, with layer names
    that hls4ml keeps (conv1, conv1_relu, conv1_pool, flatten, fc1, fc1_relu, ...)."""
    import collections

    import torch

    modules = collections.OrderedDict()
    for layer in ws.network.layers:
        if isinstance(layer, ConvLayer):
            module = modules[layer.name] = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel)
            modules[f"{layer.name}_relu"] = torch.nn.ReLU()
            modules[f"{layer.name}_pool"] = torch.nn.MaxPool2d(layer.pool)
        else:
            if "flatten" not in modules and modules:
                modules["flatten"] = torch.nn.Flatten()  # (channel, row, column), as golden.forward
            module = modules[layer.name] = torch.nn.Linear(layer.in_features, layer.out_features)
            if not layer.last:
                modules[f"{layer.name}_relu"] = torch.nn.ReLU()
        with torch.no_grad():
            for part in ("weight", "bias"):
                codes = np.asarray(ws.params[f"{layer.name}.{part}"], np.float64)
                getattr(module, part).copy_(torch.from_numpy(codes / (1 << Q2_6.frac)))
    return torch.nn.Sequential(modules).eval()


def hls_config(model, ws: weights.WeightSet, formats: dict[str, LayerFormat]) -> dict:
    """hls4ml's configuration with every layer's types set from ``formats``; a layer this does
    not know is an error, never left to hls4ml's defaults or its type inference."""
    import hls4ml

    size = ws.network.image_size
    config = hls4ml.utils.config_from_pytorch_model(model, (1, size, size), granularity="name", backend="Vivado",
                                                    default_precision="ap_fixed<8,2>")
    config["Model"]["Strategy"] = "Latency"
    types = {name: hls_types(fmt) for name, fmt in formats.items()}
    pixel_type = ap_fixed(*PIXEL_FORMAT)
    flatten_type = None
    for name, layer_config in config["LayerName"].items():
        precision = layer_config["Precision"]
        base, _, role = name.partition("_")
        if name == "input_1":
            precision["result"] = pixel_type
        elif name == "flatten":
            flatten_type = precision  # the last conv's output format; set below
        elif base in types and not role:
            precision.update({key: types[base][key] for key in ("weight", "bias", "accum", "result")})
        elif base in types and role in ("relu", "pool"):
            precision["result"] = types[base][role]
            if "accum" in precision:  # max-pool does not accumulate; the type must still hold its values
                precision["accum"] = types[base][role]
        else:
            raise RuntimeError(f"hls4ml made a layer {name!r} that this check does not know")
    if flatten_type is not None:
        last_conv = [layer.name for layer in ws.network.layers if isinstance(layer, ConvLayer)][-1]
        flatten_type["result"] = types[last_conv]["pool"]
    return config


@dataclass
class Row:
    network: str
    arithmetic: str
    images: int
    compared: int
    mismatches: int
    requantized: int
    ties: int
    negative_ties: int
    overflows: int
    compile_seconds: float
    seconds: float


def golden_logits(images, ws: weights.WeightSet, arithmetic: arith.Arithmetic):
    """The golden logits, and how often the requantizer met its corner cases on these images:
    (values requantized, exact ties of which negative, results outside the 8-bit range)."""
    logits, counts = [], np.zeros(4, np.int64)
    for start in range(0, len(images), golden.BATCH):
        out, trace = golden.forward(images[start : start + golden.BATCH], ws.params, arithmetic, ws.network, trace=True)
        logits.append(out)
        for layer, a in zip(ws.network.layers, arithmetic.layers(ws.network)):
            if a.output is None:
                continue
            acc = trace[f"{layer.name}.acc"]
            y = (acc + a.round_offset) >> a.shift
            tie = (acc & ((1 << a.shift) - 1)) == (1 << a.shift >> 1) if a.shift else np.zeros(acc.shape, bool)
            counts += (acc.size, np.count_nonzero(tie), np.count_nonzero(tie & (acc < 0)),
                       np.count_nonzero((y < a.output.low) | (y > a.output.high)))
    return np.concatenate(logits), counts


def check(path: Path, ws: weights.WeightSet, arithmetic: arith.Arithmetic, images, workdir: Path,
          log=print) -> Row:
    """Convert, compile and run one network in hls4ml on ``images``; compare with the golden model."""
    import hls4ml

    started = time.monotonic()
    formats = layer_formats(ws, arithmetic)
    model = torch_model(ws)
    hls_output = io.StringIO()  # hls4ml prints its topology and progress; kept for an error message
    try:
        with contextlib.redirect_stdout(hls_output):
            config = hls_config(model, ws, formats)
            hls_model = hls4ml.converters.convert_from_pytorch_model(
                model, output_dir=str(workdir), project_name="lenet", backend="Vivado", io_type="io_parallel",
                hls_config=config)
            hls_model.compile()
    except Exception:
        sys.stderr.write(hls_output.getvalue())
        raise
    compiled = time.monotonic()
    log(f"  compiled in {compiled - started:.1f} s ({workdir}); running {len(images):,} images")
    # The pixels go in as p/255 (float64): the input type's rounding (AP_RND) makes the codes.
    x = np.ascontiguousarray(images[:, None].astype(np.float64) / arith.PIXEL_MAX)
    with contextlib.redirect_stdout(hls_output):
        y = np.asarray(hls_model.predict(x), np.float64).reshape(len(images), -1)
    last = formats[ws.network.layers[-1].name]
    units = y * (1 << last.product_frac)  # the golden model's logit units: one input x weight product LSB
    expected, counts = golden_logits(images, ws, arithmetic)
    exact = units == np.rint(units)
    mismatches = int(np.count_nonzero(~exact | (np.rint(units) != expected)))
    if mismatches:
        n, k = np.argwhere(~exact | (np.rint(units) != expected))[0]
        log(f"  first mismatch: image {n}, logit {k}: hls4ml {units[n, k]}, golden {expected[n, k]}")
    return Row(path.stem, f"{arithmetic.rounding}/{arithmetic.overflow}", len(images), int(expected.size),
               mismatches, *map(int, counts), round(compiled - started, 1), round(time.monotonic() - started, 1))


def shipped_files() -> list[Path]:
    """Every shipped weight file with a manifest (not the float copies, not the sample images)."""
    assets = Path(str(weights.ASSETS))
    return sorted(p for p in assets.glob("*.npz") if weights.manifest_path(p).is_file())


def parse_arithmetics(specs: list[str]) -> list[str | arith.Arithmetic]:
    """``trained`` (each file's own), ``all`` (the four) or ``ROUNDING/OVERFLOW``."""
    chosen: list[str | arith.Arithmetic] = []
    for spec in specs or ["trained"]:
        if spec == "trained":
            chosen.append("trained")
        elif spec == "all":
            chosen.extend(arith.ARITHMETICS)
        else:
            rounding, sep, overflow = spec.partition("/")
            try:
                if not sep:
                    raise ValueError(spec)
                chosen.append(arith.Arithmetic(rounding, overflow))
            except ValueError:
                raise InputError(f"--arithmetic {spec!r}: use trained, all, or ROUNDING/OVERFLOW with ROUNDING one of "
                                 f"{', '.join(r.value for r in arith.Rounding)} and OVERFLOW one of "
                                 f"{', '.join(o.value for o in arith.Overflow)}") from None
    return list(dict.fromkeys(chosen))


TABLE = ("network", "arithmetic", "images", "logits compared", "mismatches", "requantized", "ties (negative)",
         "overflows", "compile s", "seconds")


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(TABLE) + " |", "|" + "|".join(" --- " for _ in TABLE) + "|"]
    for r in rows:
        cells = (r.network, r.arithmetic, f"{r.images:,}", f"{r.compared:,}", str(r.mismatches), f"{r.requantized:,}",
                 f"{r.ties:,} ({r.negative_ties:,})", f"{r.overflows:,}", f"{r.compile_seconds:.1f}", f"{r.seconds:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--weights", action="append", metavar="FILE.npz",
                        help=f"a weight file (repeatable); 'shipped' for the default network, '{ALL_SHIPPED}' "
                             "for every shipped one (default: shipped)")
    parser.add_argument("--n", type=int, default=10_000, help="test images, the first N (default 10000: all)")
    parser.add_argument("--data", default=None, help="the MNIST folder (default: lenet-fpga's)")
    parser.add_argument("--arithmetic", action="append", metavar="SPEC",
                        help="'trained' (each file's own, the default), 'all' (all four), or ROUNDING/OVERFLOW "
                             "such as floor/wrap; repeatable")
    parser.add_argument("--keep", metavar="DIR", default=None,
                        help="write the hls4ml projects under DIR and keep them (default: a temporary folder)")
    args = parser.parse_args(argv)
    try:
        paths = []
        for spec in args.weights or [weights.SHIPPED]:
            if spec == ALL_SHIPPED:
                paths.extend(shipped_files())
            else:
                paths.append(weights.DEFAULT_WEIGHTS if spec == weights.SHIPPED else Path(spec))
        paths = list(dict.fromkeys(paths))
        sets = [weights.load(p) for p in paths]
        arithmetics = parse_arithmetics(args.arithmetic)
        if not 1 <= args.n <= 10_000:
            raise InputError(f"--n must be 1..10000, not {args.n}")
        test = mnist.load("test", args.data)
        try:
            import hls4ml  # noqa: F401
            import torch  # noqa: F401
        except ImportError as error:
            raise InputError(f"{error.name} is not installed: pip install -e '.[hls4ml,train]'") from None
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    rows = []
    with contextlib.ExitStack() as stack:
        root = Path(args.keep) if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hls4ml-check-")))
        for path, ws in zip(paths, sets):
            images = test.fitted(ws.network).images[: args.n]
            for a in arithmetics:
                # A rounding and overflow asked for keep the file's activation formats.
                arithmetic = (ws.arithmetic if a == "trained"
                              else arith.Arithmetic(a.rounding, a.overflow, ws.arithmetic.activations))
                print(f"{path.stem} ({ws.network.spec}), {arithmetic.describe()}: converting and compiling", flush=True)
                row = check(path, ws, arithmetic, images,
                            root / f"{path.stem}-{arithmetic.rounding}-{arithmetic.overflow}",
                            log=lambda text: print(text, flush=True))
                print(f"  {row.compared:,} logits compared, {row.mismatches} mismatches, {row.seconds:.1f} s", flush=True)
                rows.append(row)
    print()
    print(table(rows))
    bad = sum(r.mismatches for r in rows)
    print(f"\n{'FAIL' if bad else 'OK'}: {sum(r.compared for r in rows):,} logits compared, {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
