"""`NodeHandle`: the one interface to a running node, whatever runtime started it.

Shaped like `subprocess.Popen` (stdin/stdout/stderr byte streams, poll, wait, terminate, kill, communicate) so
the suite and the sweep drive a process node and a container node with the same code. Streams are bytes;
wrap them in `io.TextIOWrapper` for JSON lines.
"""

from __future__ import annotations

import abc
import signal
import subprocess
import threading
from typing import IO, Any

from splitbed.runtime.limits import NodeLimits

# Stream choices, the same constants as subprocess so callers need not learn new ones.
PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL

SIDES = ("ue", "edge")


class NodeHandle(abc.ABC):
    """A started node. Use as a context manager to stop it (SIGTERM, then SIGKILL) on exit."""

    runtime: str
    side: str
    name: str
    argv: list[str]
    limits: NodeLimits
    stdin: IO[bytes] | None = None
    stdout: IO[bytes] | None = None
    stderr: IO[bytes] | None = None
    returncode: int | None = None

    @abc.abstractmethod
    def poll(self) -> int | None:
        """Exit status if the node has ended, else None."""

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> int:
        """Wait for the node to end and return its exit status; `subprocess.TimeoutExpired` after `timeout` s."""

    @abc.abstractmethod
    def send_signal(self, sig: int) -> None:
        """Deliver a signal to the node's main process (no-op once it has ended)."""

    @abc.abstractmethod
    def logs(self, tail_bytes: int = 65536) -> str:
        """The last `tail_bytes` of what the node wrote to stderr (and stdout when not piped), for diagnostics."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Host PIDs of the node's processes (main process first), e.g. to check its namespace or cgroup."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able description (runtime, limits, image, ids) for metrics records."""

    @abc.abstractmethod
    def release(self) -> None:
        """Free what the runtime holds for this node (container, temp files) once it has ended."""

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL; returns the exit status."""
        if self.poll() is None:
            self.terminate()
            try:
                return self.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.wait(grace)

    def communicate(self, input: bytes | None = None, timeout: float | None = None) -> tuple[bytes | None, bytes | None]:
        """Send `input`, close stdin, read stdout/stderr to the end, wait; like `Popen.communicate`."""
        chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        readers = []
        for label in ("stdout", "stderr"):
            stream = getattr(self, label)
            if stream is not None:
                thread = threading.Thread(target=_drain, args=(stream, chunks[label]), daemon=True)
                thread.start()
                readers.append(thread)
        if self.stdin is not None:
            try:
                if input:
                    self.stdin.write(input)
                self.stdin.close()
            except (BrokenPipeError, ConnectionError):
                pass  # the node ended early; its exit status says why
        self.wait(timeout)
        for thread in readers:
            thread.join(timeout)
        out = b"".join(chunks["stdout"]) if self.stdout is not None else None
        err = b"".join(chunks["stderr"]) if self.stderr is not None else None
        return out, err

    def __enter__(self) -> NodeHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.release()


def _drain(stream: IO[bytes], into: list[bytes]) -> None:
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return
        into.append(chunk)
