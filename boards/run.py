"""``lenet-fpga board-run``: images through a board over the serial line, each answer compared
with the golden model. With ``--weights`` (or when the board holds no valid weights, as the
iCEBreaker's compact design after configuration) the weights are loaded over the link first.
With ``--bench N`` one image runs N times back to back on the board, timed by the board's own
cycle counter: the accelerator's throughput, which the serial line hides."""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from ..model import arith, golden
from ..model import weights as weight_files
from ..model.errors import InputError
from ..hdl.designs import GeneratorOptions
from ..model.progress import progress
from . import protocol
from .configure import design_config
from .host import BoardClient, BoardError
from .platforms import board as find_board

# A bench's reply comes after its runs. A real board runs them at its clock (waited for twice
# over); a simulated one at its simulator's pace, which the CLASSIFY just before shows: each
# run may take this many times that CLASSIFY's whole round trip (its cycles and the line).
SIMULATED_SLOWDOWN = 3


def board_weight_image(ws: weight_files.WeightSet, board: str = "ulx3s-85f",
                       options: GeneratorOptions = GeneratorOptions(), with_design: bool = False):
    """The weight image of ``ws`` for the design ``lenet-fpga build --board BOARD`` with these
    generator ``options`` puts on the board: the accelerator built with these weights, its image
    (with ``with_design``: the design's name and the image)."""
    from ..hdl import accelerator

    config = design_config(ws, options, find_board(board))
    image = accelerator.weight_image(ws, config)
    return (config.design, image) if with_design else image


def load_board_weights(client: BoardClient, ws: weight_files.WeightSet, image: bytes,
                       quiet: bool = False) -> protocol.BoardInfo:
    """Load ``image`` (``board_weight_image`` of ``ws``) into the board with a progress bar,
    unless it already holds these weights; return the board's INFO afterwards."""
    wid = protocol.weights_id(ws.params)
    info = client.ping()
    if info.weights_valid and info.weights_id == wid:
        if not quiet:
            print(f"the board already holds these weights (id {wid:08x}); not loading them", file=sys.stderr)
        return info
    if info.weights_fixed:
        raise InputError(
            f"the board's weights are in its bitstream (id {info.weights_id:08x}) and cannot be replaced by "
            f"{ws.path or 'these weights'} (id {wid:08x}): build and flash it with them "
            f"(`lenet-fpga build --weights {ws.path or 'FILE.npz'}`)")
    if info.weight_bytes != len(image):
        raise InputError(
            f"the board expects a weight image of {info.weight_bytes:,} bytes, {ws.path or 'the weights'} make "
            f"{len(image):,} for the design given by --board/--preset/--lanes: use the options the board was built with"
        )
    started = time.time()
    with progress(total=len(image), desc="weights", unit="B", unit_scale=True, disable=quiet) as bar:
        info = client.load_weights(image, wid, progress=bar.update)
    if not quiet:
        print(f"loaded {len(image):,} bytes of weights (id {wid:08x}) in {time.time() - started:.1f} s",
              file=sys.stderr)
    return info


def check_board_network(info: protocol.BoardInfo, ws: weight_files.WeightSet) -> None:
    """The board's network must take the images and give the logits the golden model does."""
    network = ws.network
    if (info.image_size, info.classes, info.channels) != (network.image_size, network.classes, network.input_channels):
        raise InputError(
            f"the board's network takes {_shape(info.image_size, info.channels)} images and gives {info.classes} "
            f"logits; {ws.path or 'the weights'} are for {network.spec} "
            f"({_shape(network.image_size, network.input_channels)}, {network.classes} classes): give the weights "
            f"the board was built with (--weights)")


def _shape(side: int, channels: int) -> str:
    """28x28 grey, 32x32x3 with three channels."""
    return f"{side}x{side}" + (f"x{channels}" if channels != 1 else "")


def board_arithmetic(info: protocol.BoardInfo, ws: weight_files.WeightSet) -> arith.Arithmetic:
    """The board's rounding and overflow with the weights' activation formats and per-layer
    modes, which a board does not report, only whether it has any (refused when that disagrees)."""
    if info.activation_formats != bool(ws.arithmetic.activations or ws.arithmetic.modes):
        board = "activation formats other than Q2.6" if info.activation_formats else "Q2.6 activations"
        raise InputError(f"the board computes with {board}, {ws.path} is for {ws.arithmetic.describe()}; "
                         f"rebuild with `lenet-fpga build --weights {ws.path}` and flash it")
    return dataclasses.replace(ws.arithmetic, rounding=info.arithmetic.rounding, overflow=info.arithmetic.overflow)


def check_board_weights(info: protocol.BoardInfo, ws: weight_files.WeightSet) -> None:
    """The board must hold the weights the answers are compared against."""
    expected = protocol.weights_id(ws.params)
    if not info.weights_valid:
        raise InputError("the board holds no valid weights (an earlier load did not complete); "
                         "load them with `lenet-fpga board-run --weights FILE.npz`")
    if info.weights_id not in (0, expected):
        raise InputError(
            f"the board holds other weights (id {info.weights_id:08x}) than {ws.path} (id {expected:08x}); "
            f"rebuild with `lenet-fpga build --weights {ws.path}` and flash it"
        )


def run_on_board(client: BoardClient, ws: weight_files.WeightSet, image_set, quiet: bool = False) -> dict:
    """Every image of ``image_set`` through the board, each answer compared with the golden model.

    A request the line loses is sent again by the client (``BoardClient.retries``); if an image
    still fails, or the run is interrupted, the run stops there and the result holds the images
    done so far, ``total["complete"]`` false and ``total["error"]`` saying why."""
    info = client.ping()
    check_board_network(info, ws)
    check_board_weights(info, ws)
    golden_logits = golden.forward(image_set.images, ws.params, board_arithmetic(info, ws), ws.network)
    started = time.time()
    per_image = []
    error = None
    try:
        with progress(total=len(image_set), desc="board", unit="image", disable=quiet) as bar:
            for k, image in enumerate(image_set.images):
                klass, logits, cycles = client.classify(image)
                golden_class = int(golden.classify(golden_logits[k]))
                match = bool((logits == golden_logits[k]).all() and klass == golden_class)
                entry = {"index": k, "board_class": int(klass), "board_logits": logits.tolist(),
                         "golden_class": golden_class, "golden_logits": golden_logits[k].tolist(), "match": match,
                         "cycles": int(cycles)}
                if image_set.labels is not None:
                    entry["label"] = int(image_set.labels[k])
                per_image.append(entry)
                bar.update()
    except BoardError as e:
        error = f"image {len(per_image)}: {e}"
    except OSError as e:  # pyserial's SerialException: the board unplugged, the port gone
        reason = (str(e).splitlines() or [e.__class__.__name__])[0]
        error = f"image {len(per_image)}: the serial line failed ({reason})"
    except KeyboardInterrupt:
        error = "interrupted"
    seconds = time.time() - started
    total = {
        "images": len(per_image),
        "requested": len(image_set),
        "complete": error is None,
        "mismatches": sum(not e["match"] for e in per_image),
        "cycles_per_image": float(np.mean([e["cycles"] for e in per_image])) if per_image else None,
        "images_per_second_over_link": round(len(per_image) / max(seconds, 1e-9), 2),
        "arithmetic": board_arithmetic(info, ws).describe(),
        "retries": dict(client.retried),
    }
    if error is not None:
        total["error"] = error
    if image_set.labels is not None and per_image:
        total["board_accuracy"] = float(np.mean([e["board_class"] == e["label"] for e in per_image]))
    return {"images": per_image, "total": total}


def bench_on_board(client: BoardClient, ws: weight_files.WeightSet, image_set, runs: int, assumed_clock_hz: float,
                   simulated: bool = False) -> dict:
    """The first image of ``image_set`` into the board's image buffer, classified once (and
    compared with the golden model), then run ``runs`` times back to back (BENCH): the board's
    cycle counts, and images/s at the clock INFO reports (at ``assumed_clock_hz`` when it
    reports none). ``simulated``: the board is a simulation, whose runs take longer than its
    clock says."""
    info = client.ping()
    check_board_network(info, ws)
    check_board_weights(info, ws)
    image = image_set.images[0]
    golden_logits = golden.forward(image[None], ws.params, board_arithmetic(info, ws), ws.network)[0]
    golden_class = int(golden.classify(golden_logits))
    client.store_image(image)
    started = time.monotonic()
    klass, logits, cycles = client.classify_stored()
    round_trip = time.monotonic() - started
    clock_hz = info.clock_hz or assumed_clock_hz
    seconds = SIMULATED_SLOWDOWN * runs * round_trip if simulated else 2 * runs * cycles / clock_hz
    bench = client.bench(runs, seconds)
    per_image = bench.cycles_per_image
    result = {
        "runs": bench.runs,
        "image_index": 0,
        "total_cycles": bench.total_cycles,
        "first_run_cycles": bench.first_cycles,
        "cycles_per_image": per_image,
        "mean_cycles_per_run": bench.total_cycles / bench.runs,
        "clock_hz": clock_hz,
        "clock_from": "INFO" if info.clock_hz else "assumed",
        "images_per_second": clock_hz / per_image,
        "bench_class": bench.klass,
        "classify_class": int(klass),
        "classify_cycles": int(cycles),
        "golden_class": golden_class,
        "logits_match": bool((logits == golden_logits).all()),
        "design": info.design,
        "multipliers": info.multipliers,
        "arithmetic": board_arithmetic(info, ws).describe(),
        "retries": dict(client.retried),
    }
    if image_set.labels is not None:
        result["label"] = int(image_set.labels[0])
    result["match"] = result["logits_match"] and bench.klass == klass == golden_class
    return result


def _cycles(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def format_bench(bench: dict, board_name: str) -> str:
    clock = f"{bench['clock_hz'] / 1e6:g} MHz"
    clock += (" (the board's clock, from INFO)" if bench["clock_from"] == "INFO" else
              f" (assumed: the {board_name}'s clock; the board's INFO gives none)")
    runs = bench["runs"]
    image = f"image {bench['image_index']}"
    what = f"{runs} runs of {image} back to back" if runs > 1 else f"1 run of {image}"
    lines = [f"bench on the board ({bench['design']} design, {bench['multipliers']} multipliers): {what}, "
             f"{bench['total_cycles']:,} cycles by the board's own counter"]
    if runs > 1:
        lines.append(f"  the first run {bench['first_run_cycles']:,} cycles (its latency: the accelerator was idle), "
                     f"each further run {_cycles(bench['cycles_per_image'])} on average")
    lines.append(f"  {_cycles(bench['cycles_per_image'])} accelerator cycles per image: "
                 f"{bench['images_per_second']:,.0f} images/s at {clock}")
    classes = (bench["bench_class"], bench["classify_class"], bench["golden_class"])
    logits = "equal" if bench["logits_match"] else "DIFFER from"
    if len(set(classes)) == 1:
        lines.append(f"  class {classes[0]} from the last run, CLASSIFY and the golden model; CLASSIFY's logits "
                     f"{logits} the golden model's")
    else:
        lines.append(f"  classes DIFFER: last run {classes[0]}, CLASSIFY {classes[1]}, golden model {classes[2]}; "
                     f"CLASSIFY's logits {logits} the golden model's")
    return "\n".join(lines)
