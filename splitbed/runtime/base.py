"""`NodeRuntime`: what the testbed, the suite and the sweep rely on from a node runtime, whichever it is
(`ProcessRuntime`: a plain process in the side's namespace; `DockerRuntime`: a container joined to it)."""

from __future__ import annotations

from typing import Any, Protocol

from splitbed.runtime.handle import NodeHandle
from splitbed.runtime.limits import NodeLimits


class NodeRuntime(Protocol):
    """Starts node processes on one topology's sides and removes them all on `close()`."""

    name: str

    def start(self) -> NodeRuntime:
        """Get ready (a container runtime connects and makes sure its image exists); returns itself."""
        ...

    def start_node(self, side: str, argv: list[str], *, limits: NodeLimits | None = None,
                   stdin: int | None = None, stdout: int | None = None, stderr: int | None = None,
                   env: dict[str, str] | None = None, cwd: str | None = None,
                   mounts: list[Any] | tuple[Any, ...] = ()) -> NodeHandle:
        """Start `argv` on `side` ("ue" or "edge"); streams as for subprocess.Popen (None: kept for logs())."""
        ...

    def close(self) -> None:
        """Stop and remove every node this runtime started."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able: which runtime, and its settings (image, limits), for the records."""
        ...
