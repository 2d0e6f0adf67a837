"""The TCP settings of a topology's end namespaces: pinned congestion control, and what was in force.

Why pin it: a new network namespace inherits the host's default congestion control, so the same profile gave
different delivery times on different hosts (this development host defaults to BBR, most Linux hosts and CI
runners to CUBIC). BBR (v1, the kernel's) also keeps its minimum-RTT estimate for 10 s, so after a live switch
from a short-RTT to a long-RTT profile an existing connection shrinks its window towards the old RTT's
bandwidth-delay product and its deliveries grow for ~10 s (measured in docs/LINK.md, "Live changes and TCP").
A testbed figure must not depend on which host ran it, so the topology writes the algorithm into both end
namespaces and records it (with the other sysctls that shape a transfer) in `Topology.describe()["tcp"]`.
CUBIC is the default choice because it is Linux's and Android's default, i.e. what a UE most likely runs.

The sysctls under /proc/sys/net belong to the network namespace of the thread that opens them, so each read
and write runs in a thread that entered the namespace (netem.netns.run_in_namespace); no shelling out.
"""

from __future__ import annotations

import re
from pathlib import Path

from netem.errors import TopologyError
from netem.netns import run_in_namespace

#: Linux's default since 2.6.19 and Android's: what a UE's TCP most likely runs.
DEFAULT_CONGESTION_CONTROL = "cubic"
_IPV4 = Path("/proc/sys/net/ipv4")
#: Kernel names are at most TCP_CA_NAME_MAX - 1 = 15 characters.
_NAME = re.compile(r"[a-z0-9_]{1,15}")
#: The sysctls recorded per namespace: each one changes how long a transfer takes.
RECORDED = ("tcp_congestion_control", "tcp_slow_start_after_idle", "tcp_no_metrics_save", "tcp_window_scaling",
            "tcp_sack", "tcp_timestamps", "tcp_ecn")


def _read(name: str) -> str:
    return (_IPV4 / name).read_text().strip()


def set_congestion_control(namespace: str, algorithm: str) -> None:
    """Make `algorithm` the default congestion control of new sockets in `namespace`; TopologyError if it cannot.

    Linux lets a namespace other than the host's pick only an algorithm the host lists in
    net.ipv4.tcp_allowed_congestion_control (the host's default and reno unless configured; EPERM otherwise).
    If it is missing there, it is added to that list (additive, host-wide, until reboot: it only lets
    unprivileged sockets choose it and changes no default or running socket).
    """
    if not _NAME.fullmatch(algorithm):
        raise TopologyError(f"congestion control {algorithm!r} is not a kernel algorithm name (e.g. 'cubic', 'bbr')")

    def write() -> str | None:
        try:
            (_IPV4 / "tcp_congestion_control").write_text(algorithm)
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    failure = run_in_namespace(namespace, write)
    if failure is not None and algorithm in _read("tcp_available_congestion_control").split():
        if allow_on_host(algorithm):
            failure = run_in_namespace(namespace, write)
    if failure is not None:
        raise TopologyError(
            f"cannot set TCP congestion control {algorithm!r} in {namespace}: {failure}; available: "
            f"{_read('tcp_available_congestion_control')}; a namespace may use only the host's allowed ones "
            f"(sysctl net.ipv4.tcp_allowed_congestion_control, from the host namespace as root), others need their "
            f"module (modprobe tcp_{algorithm}); or pass tcp_congestion_control=None to inherit the host's default"
        )
    current = run_in_namespace(namespace, lambda: _read("tcp_congestion_control"))
    if current != algorithm:
        raise TopologyError(f"TCP congestion control in {namespace} is {current!r}, not the requested {algorithm!r}")


def allow_on_host(algorithm: str) -> bool:
    """Make sure the host's tcp_allowed_congestion_control lists `algorithm`; False if this process cannot add it
    (not root, or not in the host's network namespace, where that sysctl lives)."""
    path = _IPV4 / "tcp_allowed_congestion_control"
    try:
        allowed = path.read_text().split()
        if algorithm in allowed:
            return True
        path.write_text(" ".join([*allowed, algorithm]))
    except OSError:
        return False
    return True


def tcp_settings(namespace: str) -> dict[str, str | int]:
    """The recorded TCP sysctls of `namespace` (numbers as int), e.g. {"tcp_congestion_control": "cubic", ...}."""

    def read() -> dict[str, str | int]:
        settings: dict[str, str | int] = {}
        for name in RECORDED:
            try:
                value = _read(name)
            except OSError:
                continue
            settings[name] = int(value) if value.lstrip("-").isdigit() else value
        return settings

    return run_in_namespace(namespace, read)
