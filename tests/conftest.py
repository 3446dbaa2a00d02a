"""Shared fixtures for the model-side tests.

* ``mnist_dir``: the project's shared copy of the four original MNIST ``.gz`` files
  (``../shared/data/mnist`` relative to the repository root); tests that need it are skipped
  with a clear reason when it is absent.
* ``random_params``: a helper ``random_params(rng, scale)`` that builds a LeNet-5 int8 state
  dict (names and shapes from ``network.parameter_shapes``) with codes drawn uniformly from
  ``-scale..scale`` (clipped to the int8 range).
* Items marked ``torch`` are skipped when PyTorch cannot be imported.
* No test may reach a remote host: socket connections to anything but the loopback interface
  fail loudly.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from lenet_fpga.model import network

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(__file__).resolve().parents[2] / "shared/data/mnist"
# Commands that look for MNIST by default find this project's shared copy; a user's default
# is their own data folder (model/mnist.py).
if MNIST_DIR.is_dir():
    os.environ.setdefault("LENET_FPGA_DATA", str(MNIST_DIR))
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _torch_importable() -> bool:
    try:
        import torch  # noqa: F401
    except Exception:  # ImportError, or a broken install (OSError from a shared library)
        return False
    return True


def pytest_collection_modifyitems(config, items):
    if any("torch" in item.keywords for item in items) and not _torch_importable():
        skip = pytest.mark.skip(reason="PyTorch is not importable (pip install -e '.[train]')")
        for item in items:
            if "torch" in item.keywords:
                item.add_marker(skip)


# --------------------------------------------------------------------------------------------
# No internet: refuse every connection that does not go to the loopback interface.


def _is_loopback(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _no_remote_hosts(monkeypatch):
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self, address):
        if not _is_loopback(address):
            raise AssertionError(f"a test tried to reach a remote host: {address!r}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not _is_loopback(address):
            raise AssertionError(f"a test tried to reach a remote host: {address!r}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


# --------------------------------------------------------------------------------------------
# MNIST


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The shared folder with the four original MNIST .gz files (skip if it is not there)."""
    missing = [name for name in MNIST_FILES if not (MNIST_DIR / name).is_file()]
    if missing:
        pytest.skip(f"MNIST files not found in {MNIST_DIR} (missing {', '.join(missing)})")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist_test(mnist_dir):
    """The MNIST test split, loaded once per session."""
    from lenet_fpga.model import mnist

    return mnist.load("test", mnist_dir)


# --------------------------------------------------------------------------------------------
# Random integer weights


def make_random_params(rng: np.random.Generator, scale: int = 127) -> dict[str, np.ndarray]:
    """A LeNet-5 int8 state dict, every code uniform in -scale..scale (clipped to -128..127)."""
    params = {}
    for name, shape in network.parameter_shapes().items():
        codes = rng.integers(-scale, scale + 1, size=shape)
        params[name] = np.clip(codes, -128, 127).astype(np.int8)
    return params


@pytest.fixture
def random_params():
    """The ``random_params(rng, scale)`` helper (see ``make_random_params``)."""
    return make_random_params


def make_bursty_ready(rng, longest_burst: int, willing: float):
    """A consumer's ``ready``, cycle by cycle: now and then low for a burst of up to
    ``longest_burst`` cycles, otherwise high with probability ``willing``."""
    stall = 0
    while True:
        if stall == 0 and rng.random() < 0.05:
            stall = rng.randrange(1, longest_burst)
        yield stall == 0 and rng.random() < willing
        stall = max(0, stall - 1)


@pytest.fixture
def bursty_ready():
    """The ``bursty_ready(rng, longest_burst, willing)`` generator (see ``make_bursty_ready``)."""
    return make_bursty_ready


# --------------------------------------------------------------------------------------------
# Simulators for the RTL tests


def pytest_addoption(parser):
    parser.addoption(
        "--simulator", choices=["icarus", "verilator"], default=os.environ.get("LENET_FPGA_SIMULATOR", "icarus"),
        help="HDL simulator for the RTL tests (default: $LENET_FPGA_SIMULATOR or icarus)",
    )


def pytest_configure(config):
    # The block tests read the choice at import time, as the module constant SIMULATOR.
    os.environ["LENET_FPGA_SIMULATOR"] = config.getoption("--simulator")
    # Every simulator build of the session is logged (sim/runner.py) and summed at the end. The
    # controller sets the file before the xdist workers start; they inherit it.
    if not hasattr(config, "workerinput"):
        import tempfile

        from lenet_fpga.sim.runner import BUILD_LOG_VARIABLE

        handle, name = tempfile.mkstemp(prefix="lenet-fpga-builds-", suffix=".jsonl")
        os.close(handle)
        os.environ[BUILD_LOG_VARIABLE] = config._lenet_build_log = name


def pytest_terminal_summary(terminalreporter, config):
    import json

    name = getattr(config, "_lenet_build_log", None)
    if not name or not os.path.exists(name):
        return
    builds = [json.loads(line) for line in open(name) if line.strip()]
    os.unlink(name)
    by_simulator = {}
    for build in builds:
        count, seconds = by_simulator.get(build["simulator"], (0, 0.0))
        by_simulator[build["simulator"]] = (count + 1, seconds + build["seconds"])
    parts = ", ".join(f"{name} {count} ({seconds:.0f} s)" for name, (count, seconds) in sorted(by_simulator.items()))
    terminalreporter.write_line(f"simulator builds: {len(builds)}, {sum(b['seconds'] for b in builds):.0f} s "
                                f"summed over the workers{': ' + parts if parts else ''}")


@pytest.fixture(scope="session")
def simulator(request) -> str:
    """The simulator chosen with --simulator (skip when it is not installed)."""
    from lenet_fpga.model.errors import InputError
    from lenet_fpga.sim import runner

    name = request.config.getoption("--simulator")
    try:
        runner.prepare_simulator(name)
    except InputError as e:
        pytest.skip(str(e))
    return name


@pytest.fixture(scope="session")
def sim_build() -> Path:
    """Simulator builds, cached across runs (keyed by a hash of the Verilog) under build/sim."""
    return REPO_ROOT / "build" / "sim"


# --------------------------------------------------------------------------------------------
# Process groups


def process_group_gone(pgid: int, within_s: float = 10.0) -> bool:
    """Has the process group ``pgid`` no process left? Killed members may take a moment to be
    reaped by init, so ask again until ``within_s`` has passed."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def group_gone():
    """The ``group_gone(pgid)`` check (see ``process_group_gone``)."""
    return process_group_gone
