"""The `process` node runtime (the default): each node is a plain process in its side's namespace, started by
the topology's own `popen`. Same interface as the docker runtime, so the suite and the sweep can pick either.
It applies no resource limits: asking for any is a `LimitError` that says to use the docker runtime.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from typing import IO, TYPE_CHECKING, Any

import psutil

from splitbed.runtime.errors import LimitError, NodeStartError
from splitbed.runtime.handle import DEVNULL, PIPE, STDOUT, NodeHandle
from splitbed.runtime.limits import NodeLimits
from splitbed.runtime.netns import namespace_name

if TYPE_CHECKING:
    from netem.topology import Topology


class ProcessNode(NodeHandle):
    """A node process started by `topology.popen`."""

    runtime = "process"

    def __init__(self, popen: subprocess.Popen[bytes], *, side: str, argv: list[str], namespace: str,
                 log_file: IO[bytes] | None) -> None:
        self.popen = popen
        self.side, self.argv, self.namespace = side, argv, namespace
        self.name = f"sb{os.getpid()}-{side}-pid{popen.pid}"
        self.limits = NodeLimits()
        self.stdin, self.stdout, self.stderr = popen.stdin, popen.stdout, popen.stderr
        self._log_file = log_file

    def poll(self) -> int | None:
        self.returncode = self.popen.poll()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self.returncode = self.popen.wait(timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass

    def logs(self, tail_bytes: int = 65536) -> str:
        if self._log_file is None:
            return ""
        with open(self._log_file.name, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - tail_bytes))
            return handle.read().decode(errors="replace")

    def pids(self) -> list[int]:
        try:
            main = psutil.Process(self.popen.pid)
            return [main.pid] + [child.pid for child in main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "side": self.side, "name": self.name, "pid": self.popen.pid,
                "namespace": self.namespace, "limits": self.limits.describe()}

    def release(self) -> None:
        if self.popen.poll() is None:
            self.send_signal(signal.SIGKILL)
            self.popen.wait()
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()
        if self._log_file is not None:
            self._log_file.close()  # a NamedTemporaryFile: deleted on close
            self._log_file = None


class ProcessRuntime:
    """Starts nodes with `topology.popen(side, argv, **popen_kwargs)`. A context manager like DockerRuntime."""

    name = "process"

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.nodes: list[ProcessNode] = []

    def start(self) -> ProcessRuntime:
        return self

    def start_node(self, side: str, argv: list[str], *, limits: NodeLimits | None = None,
                   stdin: int | None = None, stdout: int | None = None, stderr: int | None = None,
                   env: dict[str, str] | None = None, cwd: str | None = None,
                   mounts: list[Any] | tuple[Any, ...] = ()) -> ProcessNode:
        """Start `argv` in `side`'s namespace. stdout/stderr left as None go to the node's log (`logs()`)."""
        if limits is not None and not limits.unlimited:
            raise LimitError("the process runtime cannot limit CPU or memory; use the docker runtime "
                             "(runtime='docker') for UE-like limits")
        del mounts  # a process sees the host's files already
        namespace = namespace_name(self.topology, side)
        log_file = None
        if stdout is None or stderr is None:
            log_file = tempfile.NamedTemporaryFile(prefix=f"sb{os.getpid()}-{side}-", suffix=".log")
        kwargs: dict[str, Any] = {
            "stdin": stdin if stdin in (PIPE, DEVNULL) else DEVNULL,
            "stdout": log_file if stdout is None else stdout,
            "stderr": (STDOUT if stdout is None else log_file) if stderr is None else stderr,
            "env": {**os.environ, **(env or {})},
        }
        if cwd is not None:
            kwargs["cwd"] = cwd
        try:
            popen = self.topology.popen(side, list(argv), **kwargs)
        except Exception as exc:
            if log_file is not None:
                log_file.close()
            raise NodeStartError(f"process node on side {side!r} did not start: {exc}") from exc
        node = ProcessNode(popen, side=side, argv=list(argv), namespace=namespace, log_file=log_file)
        self.nodes.append(node)
        return node

    def close(self) -> None:
        """Stop (SIGTERM, then SIGKILL) and release every node; the first error is raised after all are done."""
        errors: list[Exception] = []
        for node in self.nodes:
            try:
                node.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
            finally:
                node.release()
        self.nodes.clear()
        if errors:
            raise errors[0]

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name}

    def __enter__(self) -> ProcessRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
