"""A kernel file (/proc, /sys, a cgroup's) kept open and re-read in place.

Opening a procfs file costs a path walk and, through Python's `open`, a buffered text wrapper: several times the
read itself. A meter that reads the same few files at both edges of every measured window (the nodes' resource
meter, around each model call) keeps them open and reads each with one `pread` at offset 0, which makes the
kernel generate the file afresh. Missing or unreadable files read as None, as the one-shot readers do.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_READ_BYTES = 1 << 16  # every file read this way is a few kB (/proc/stat of 256 CPUs is ~20 kB)


class KeptFile:
    """One file, opened once (`write`: for writing, as /proc/self/clear_refs); None-returning on any OSError."""

    def __init__(self, path: Path | str | None, *, write: bool = False) -> None:
        self.path = None if path is None else Path(path)
        self._fd: int | None = None
        if self.path is not None:
            try:
                self._fd = os.open(self.path, (os.O_WRONLY if write else os.O_RDONLY) | os.O_CLOEXEC)
            except OSError:
                self._fd = None

    @property
    def open(self) -> bool:
        return self._fd is not None

    @property
    def fd(self) -> int | None:
        """The descriptor, for a reader that preads it itself on a hot path (None: not open)."""
        return self._fd

    def read_bytes(self) -> bytes | None:
        if self._fd is None:
            return None
        try:
            return os.pread(self._fd, MAX_READ_BYTES, 0)
        except OSError:
            return None

    def read_text(self) -> str | None:
        data = self.read_bytes()
        return None if data is None else data.decode("utf-8", "replace")

    def write(self, data: bytes) -> bool:
        if self._fd is None:
            return False
        try:
            return os.pwrite(self._fd, data, 0) == len(data)
        except OSError:
            return False

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()
