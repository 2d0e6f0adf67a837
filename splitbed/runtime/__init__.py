"""Node runtimes: where and how a node process runs.

`process` (default): a plain process in the topology's namespace. `docker`: a container with UE-like CPU and
memory limits whose node process joins the same namespace. Both return a `NodeHandle` (Popen-like), so the
suite and the sweep pick one by name: `make_runtime("docker", topology)`. docs/DOCKER.md has the details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from splitbed.runtime.base import NodeRuntime
from splitbed.runtime.errors import (
    EngineUnavailableError,
    ImageBuildError,
    LimitError,
    NodeRuntimeError,
    NodeStartError,
)
from splitbed.runtime.handle import DEVNULL, PIPE, SIDES, STDOUT, NodeHandle
from splitbed.runtime.limits import NodeLimits

RUNTIMES = ("process", "docker")
DEFAULT_RUNTIME = "process"

__all__ = [
    "DEFAULT_RUNTIME", "DEVNULL", "PIPE", "RUNTIMES", "SIDES", "STDOUT", "EngineUnavailableError", "ImageBuildError",
    "LimitError", "NodeHandle", "NodeLimits", "NodeRuntime", "NodeRuntimeError", "NodeStartError", "make_runtime",
]

if TYPE_CHECKING:
    from netem.topology import Topology


def make_runtime(name: str, topology: Topology, **options: Any) -> NodeRuntime:
    """A `ProcessRuntime` or `DockerRuntime` for `topology`; options go to the runtime's constructor."""
    if name == "process":
        from splitbed.runtime.process_node import ProcessRuntime

        if options:
            raise NodeRuntimeError(f"the process runtime takes no options (got {', '.join(sorted(options))})")
        return ProcessRuntime(topology)
    if name == "docker":
        from splitbed.runtime.container_node import DockerRuntime

        return DockerRuntime(topology, **options)
    raise NodeRuntimeError(f"unknown node runtime {name!r}; choose one of {', '.join(RUNTIMES)}")
