"""Harness Verilog kept between commands, by a digest of everything it is made from.

Generating the simulation harness of a whole network with Amaranth takes 2-3 s, as long as a
regression of a few hundred images; most runs ask again for a design made before (the shipped
network, a test's weights). The digest covers the weights (codes and manifest), the design's
configuration, the readable flag, the Amaranth version and the source of every module of this
package, so an edit of the generator is a new entry, never a stale one. An entry is one JSON file
(``HarnessDesign``'s fields) in ``<build root>/designs``, written atomically.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path

from ..model.atomic import atomic_path

FOLDER = "designs"


@functools.cache
def _source_digest() -> str:
    """Every .py file of the installed package (lenet_fpga and the folders it maps: model, hdl,
    sim, boards, explore, commands), with its path."""
    import lenet_fpga

    h = hashlib.sha256(metadata.version("amaranth").encode())
    roots = {Path(lenet_fpga.__file__).parent}
    for name in ("model", "hdl", "sim", "boards", "explore"):
        module = __import__(f"lenet_fpga.{name}", fromlist=["_"])
        roots.add(Path(module.__file__).parent)
    for root in sorted(roots):
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def key(weights, config, waves: bool) -> str:
    h = hashlib.sha256(_source_digest().encode())
    h.update(json.dumps(weights.manifest, sort_keys=True, default=str).encode())
    for name in sorted(weights.params):
        array = weights.params[name]
        h.update(f"{name}:{array.dtype}:{array.shape}".encode() + array.tobytes())
    h.update(repr(config).encode() + str(waves).encode())
    return h.hexdigest()[:24]


def load(root: Path, digest: str) -> dict | None:
    """The fields stored under ``digest``, or None (absent, or unreadable: made again)."""
    try:
        return json.loads((Path(root) / FOLDER / f"{digest}.json").read_text())
    except (OSError, ValueError):
        return None


def store(root: Path, digest: str, fields: dict) -> None:
    """Keep ``fields``; a folder that cannot be written only means no cache."""
    folder = Path(root) / FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / f"{digest}.json") as tmp:
            tmp.write_text(json.dumps(fields))
    except OSError:
        pass
