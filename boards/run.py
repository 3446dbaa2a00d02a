"""``lenet-fpga board-run``: images through a board over the serial line, each answer compared
with the golden model."""

from __future__ import annotations

import json
import time

import numpy as np
from tqdm import tqdm

from ..model import golden
from ..model import images as image_sets
from ..model import weights as weight_files
from ..model.errors import InputError
from . import protocol
from .host import BoardClient, open_serial


def check_board_weights(info: protocol.BoardInfo, ws: weight_files.WeightSet) -> None:
    """The board must hold the weights the answers are compared against."""
    expected = protocol.weights_id(ws.params)
    if info.weights_id not in (0, expected):
        raise InputError(
            f"the board holds other weights (id {info.weights_id:08x}) than {ws.path} (id {expected:08x}); "
            f"rebuild with `lenet-fpga build --weights {ws.path}` and flash it"
        )


def run_on_board(client: BoardClient, ws: weight_files.WeightSet, image_set, quiet: bool = False) -> dict:
    info = client.ping()
    check_board_weights(info, ws)
    golden_logits = golden.forward(image_set.images, ws.params, info.arithmetic)
    started = time.time()
    per_image = []
    with tqdm(total=len(image_set), desc="board", unit="image", disable=quiet) as bar:
        for k, image in enumerate(image_set.images):
            klass, logits, cycles = client.classify(image)
            match = bool((logits == golden_logits[k]).all() and klass == golden.classify(golden_logits[k]))
            entry = {"index": k, "board_class": int(klass), "board_logits": logits.tolist(),
                     "golden_class": int(golden.classify(golden_logits[k])),
                     "golden_logits": golden_logits[k].tolist(), "match": match, "cycles": int(cycles)}
            if image_set.labels is not None:
                entry["label"] = int(image_set.labels[k])
            per_image.append(entry)
            bar.update()
    seconds = time.time() - started
    total = {
        "images": len(per_image),
        "mismatches": sum(not e["match"] for e in per_image),
        "cycles_per_image": float(np.mean([e["cycles"] for e in per_image])),
        "images_per_second_over_link": round(len(per_image) / max(seconds, 1e-9), 2),
        "arithmetic": info.arithmetic.describe(),
    }
    if image_set.labels is not None:
        total["board_accuracy"] = float(np.mean([e["board_class"] == e["label"] for e in per_image]))
    return {"images": per_image, "total": total}


def cmd_board_run(args) -> int:
    ws = weight_files.load(args.weights)
    image_set = image_sets.load_image_set(args.images).head(args.n)
    port = open_serial(args.port, args.baud)
    try:
        result = run_on_board(BoardClient(port), ws, image_set, quiet=args.json)
    finally:
        port.close()
    total = result["total"]
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{total['images']} images on the board ({total['arithmetic']}): "
              f"{total['mismatches']} mismatches against the golden model; "
              f"{total['cycles_per_image']:.0f} accelerator cycles per image; "
              f"{total['images_per_second_over_link']} images/s over the serial line")
        if "board_accuracy" in total:
            print(f"board accuracy on these images {total['board_accuracy']:.1%}")
    return 1 if total["mismatches"] else 0
