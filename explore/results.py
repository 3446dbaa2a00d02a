"""The results file: one JSON object per line, one line per finished point, appended as points finish.

Each line is appended with a single ``write`` on a file opened for appending, under an exclusive
``flock`` and followed by an ``fsync``: a reader (or a second sweep writing the same file) sees
whole lines. A line cut short by a crash is skipped on reading, and the next append starts on a
new line, so the damage stays in that line. A point appears once: the client writes a key only if
the file does not have it yet (``--retry-failed`` first takes the failed lines out, atomically).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from ..model.atomic import atomic_path
from ..model.errors import InputError


class ResultsFile:
    """A results file at ``path`` (created with its folder on the first append)."""

    def __init__(self, path):
        self.path = Path(path)
        self.damaged = 0  # lines skipped by the last read: not JSON objects with a key

    def read(self) -> dict[str, dict]:
        """Every record by key (a key written twice: the last line wins)."""
        records: dict[str, dict] = {}
        self.damaged = 0
        if not self.path.exists():
            return records
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read the results file {self.path}: {e}") from None
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:  # not JSON, or an integer longer than Python reads
                self.damaged += 1
                continue
            if not isinstance(record, dict) or not isinstance(record.get("key"), str):
                self.damaged += 1
                continue
            records[record["key"]] = record
        return records

    def append(self, record: dict) -> None:
        """Append ``record`` as one line."""
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # a drop replaced the file while we waited for the lock: open the new one
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # the last line was cut short: leave it alone on its line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock

    def drop(self, keys) -> int:
        """Rewrite the file without the lines of ``keys``; returns how many lines went."""
        keys = set(keys)
        if not keys or not self.path.exists():
            return 0
        with open(self.path, "rb+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # no append may land between the read and the rename
            kept, dropped = [], 0
            for line in f.read().splitlines(keepends=True):
                try:
                    key = json.loads(line).get("key")
                except (ValueError, AttributeError):  # UnicodeDecodeError is a ValueError
                    key = None
                if key in keys:
                    dropped += 1
                else:
                    kept.append(line if line.endswith(b"\n") else line + b"\n")
            with atomic_path(self.path) as tmp:
                tmp.write_bytes(b"".join(kept))
        return dropped
