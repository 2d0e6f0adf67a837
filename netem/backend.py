"""Choosing the link backend: `kernel`, `userspace`, or `auto`.

`auto` picks the kernel when it can emulate the whole profile exactly with the qdiscs this host really has
(probed, see netem.kernel.capabilities), else the userspace link. On this machine (no sch_netem) that means: profiles
with no delay/jitter/loss and no trace (`ideal`, or rate-only) run on the kernel (plain veth, or tbf); every
other built-in profile runs on the userspace link. On a host with sch_netem, only traces, drophead/codel and
two-unit queue limits need the userspace link. The choice is recorded in Topology.describe()["backend"].
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from netem.errors import BackendUnavailableError, UnsupportedProfileError
from netem.kernel import kernel_problems, required_kinds
from netem.kernel.capabilities import probe_qdiscs
from netem.profile import LinkProfile


class LinkBackend(Protocol):
    """What Topology needs from a backend (netem.kernel.KernelLink, netem.userspace.UserspaceLink)."""

    def start(self) -> None: ...

    def update(self, profile: LinkProfile) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def describe(self) -> dict[str, Any]: ...

    def stop(self) -> None: ...


BackendName = Literal["auto", "kernel", "userspace"]
BACKENDS: tuple[str, ...] = ("auto", "kernel", "userspace")


def kernel_refusal(profile: LinkProfile) -> str | None:
    """Why the kernel backend cannot run this profile here, or None when it can."""
    problems = [f"{name}: {p}" for name in ("uplink", "downlink") for p in kernel_problems(profile.direction(name))]
    if problems:
        return "; ".join(problems)
    probes = probe_qdiscs()
    missing = sorted(kind for kind in required_kinds(profile) if not probes[kind].available)
    if missing:
        return "; ".join(probes[kind].detail for kind in missing)
    return None


def resolve_backend(profile: LinkProfile, requested: str) -> str:
    """The concrete backend ("kernel" or "userspace") for `requested`, or a specific error."""
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {requested!r}")
    if requested == "userspace":
        return "userspace"
    refusal = kernel_refusal(profile)
    if requested == "kernel":
        if refusal is None:
            return "kernel"
        if any(p for name in ("uplink", "downlink") for p in kernel_problems(profile.direction(name))):
            raise UnsupportedProfileError(f"kernel backend cannot run profile {profile.name!r}: {refusal}")
        raise BackendUnavailableError(
            f"kernel backend unavailable for profile {profile.name!r}: {refusal}; use --backend userspace"
        )
    return "kernel" if refusal is None else "userspace"
