"""What may stand at an output path (issue 28, item 2): the atomic write renames a temporary file
over its target, so every kind of directory entry gets a deliberate answer (model/atomic.py):
device nodes, FIFOs and sockets are refused and stay what they were, a symlink to a file is written
through (its target replaced, the link kept), a dangling symlink is refused and creates nothing."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from lenet_fpga.cli import main
from lenet_fpga.model.atomic import atomic_path, check_output
from lenet_fpga.model.errors import InputError


def verilog_refuses(capsys, target, message):
    assert main(["verilog", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lenet-fpga verilog: error:") and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


def char_device(tmp_path):
    """A private null device (1, 3) where mknod is allowed (root), else the system's /dev/null,
    which a user cannot rename over even before the fix."""
    path = tmp_path / "null"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError:
        return "/dev/null"
    return path


def test_a_character_device_is_refused_and_stays_one(tmp_path, capsys):
    device = char_device(tmp_path)
    verilog_refuses(capsys, device, "is a character device")
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_a_fifo_is_refused_and_stays_one(tmp_path, capsys):
    fifo = tmp_path / "pipe.v"
    os.mkfifo(fifo)
    verilog_refuses(capsys, fifo, "is a FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["pipe.v"]  # no temporary file left beside it


def test_a_socket_is_refused_and_stays_one(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        for step in (lambda: check_output(path, "--out"), lambda: atomic_path(path).__enter__()):
            with pytest.raises(InputError, match="is a socket"):
                step()
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_a_symlink_to_a_file_is_written_through(tmp_path):
    """The link's target gets the new content and the link stays a link (as ``>`` in a shell)."""
    target = tmp_path / "real" / "design.v"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.v"
    link.symlink_to(target)
    assert main(["verilog", "-o", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text().count("module ") >= 1 and "old" != target.read_text()
    assert sorted(os.listdir(tmp_path)) == ["link.v", "real"] and os.listdir(target.parent) == ["design.v"]


def test_a_dangling_symlink_is_refused_and_creates_nothing(tmp_path, capsys):
    link = tmp_path / "link.v"
    link.symlink_to(tmp_path / "elsewhere" / "made.v")
    verilog_refuses(capsys, link, "which does not exist")
    assert not (tmp_path / "elsewhere").exists() and link.is_symlink()
    with pytest.raises(InputError, match="which does not exist"):  # the helper itself, at write time
        with atomic_path(link) as tmp:
            tmp.write_text("x")
    assert not (tmp_path / "elsewhere").exists()
