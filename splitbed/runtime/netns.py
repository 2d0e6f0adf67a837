"""Which network namespace a node joins, asked of the topology, and the command that joins it.

A container node is created with `network_mode="none"` (the engine gives it no interface, no bridge, no NAT)
and its command is wrapped so that the node process enters the topology's namespace before it starts:
`nsenter --net=<mounted ns file> setpriv <drop every capability> -- argv...`. The namespace file is
bind-mounted read-only into the container; CAP_SYS_ADMIN (needed for setns) is held only by nsenter, and
setpriv clears the bounding set so the node itself runs with no capabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netem.netns import namespace_path
from splitbed.runtime.errors import NodeStartError
from splitbed.runtime.handle import SIDES

CONTAINER_NETNS_PATH = "/run/splitbed/netns"


def namespace_name(topology: Any, side: str) -> str:
    """The name of `side`'s namespace in `topology` (`netem.Topology.namespace(side)`)."""
    if side not in SIDES and not (side.startswith("ue") and side[2:].isdigit()):  # "ue3": a cell's UE
        raise NodeStartError(f"side {side!r} is not one of {', '.join(SIDES)}")
    try:
        name = topology.namespace(side)
    except (AttributeError, ValueError) as exc:
        raise NodeStartError(f"the topology {topology!r} names no namespace for side {side!r}: {exc}") from exc
    if not isinstance(name, str) or not name:
        raise NodeStartError(f"the topology {topology!r} names no namespace for side {side!r}")
    return name


def namespace_file(name: str) -> Path:
    """The namespace's file (a bind mount of nsfs); `NodeStartError` when it does not exist."""
    if "/" in name or name in ("", ".", ".."):
        raise NodeStartError(f"invalid namespace name {name!r}")
    path = namespace_path(name)
    if not path.exists():
        raise NodeStartError(f"network namespace {name!r} does not exist ({path} missing): is the topology up?")
    return path


def entry_command(argv: list[str]) -> list[str]:
    """`argv` run inside the mounted namespace, with every capability dropped."""
    if not argv:
        raise NodeStartError("empty command line for a node")
    return ["nsenter", f"--net={CONTAINER_NETNS_PATH}", "--",
            "setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--", *argv]
