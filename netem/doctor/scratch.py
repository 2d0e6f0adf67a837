"""Throw-away scratch namespaces (`sb<pid>dr<n>`, a veth pair inside, never on the host) for the probes that must
do the thing they report on, and the checks a child process runs inside one (scapy's sniffer opens its sockets in
its own thread, so the whole process must be in the namespace)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from netem.naming import pid_alive
from netem.pyexec import python_module

# Scratch objects are `sb<pid>dr<n>` (namespace); the veth pair lives only inside it, so the host never sees it.
SCRATCH_ROLE = "dr"
SCRATCH_NAME = re.compile(rf"^sb(\d+){SCRATCH_ROLE}\d+$")
_scratch_counter = itertools.count()
_scratch_lock = threading.Lock()

# Frames the capture probe sends: IEEE 802 local experimental ethertype, a marker nobody else uses.
_CAPTURE_ETHERTYPE = 0x88B5
_CAPTURE_MARKER = b"splitbed-doctor-capture"
_CAPTURE_FRAMES = 5

# The capture probe's child process answers with one JSON line; never read more than this.
_CHILD_OUTPUT_CAP = 64 * 1024
_CHILD_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Scratch:
    """A throw-away namespace holding a veth pair `veth_a` <-> `veth_b`, both up."""

    netns: str
    veth_a: str
    veth_b: str


def sweep_stale_scratch() -> list[str]:
    """Remove scratch namespaces left by doctor runs that died (owner pid gone); returns the names removed.
    Only names matching `sb<pid>dr<n>` with a dead pid are touched: never anyone else's namespaces."""
    from pyroute2 import netns

    removed = []
    for name in netns.listnetns():
        match = SCRATCH_NAME.match(name)
        if match and not pid_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                netns.remove(name)
                removed.append(name)
    return removed


@contextlib.contextmanager
def scratch_netns() -> Iterator[Scratch]:
    """Create `sb<pid>dr<n>` with a veth pair inside (never on the host), yield it, always remove it."""
    from pyroute2 import IPRoute, netns

    with _scratch_lock:
        number = next(_scratch_counter)
    pid = os.getpid()
    scratch = Scratch(f"sb{pid}{SCRATCH_ROLE}{number}", f"sb{pid}d{number}a", f"sb{pid}d{number}b")
    sweep_stale_scratch()
    netns.create(scratch.netns)
    try:
        with IPRoute(netns=scratch.netns) as ipr:
            ipr.link("add", ifname=scratch.veth_a, kind="veth", peer={"ifname": scratch.veth_b})
            for ifname in ("lo", scratch.veth_a, scratch.veth_b):
                ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")
        yield scratch
    finally:
        netns.remove(scratch.netns)


def scratch_error(exc: BaseException) -> str:
    return f"cannot create a scratch network namespace: {type(exc).__name__}: {exc}"


def run_inside(scratch: Scratch, check: str) -> dict[str, object]:
    """Run `check` in a child process entered into the scratch namespace (scapy opens its sockets in its own
    sniffer thread, so the whole process must be in the namespace). Returns the child's JSON answer."""
    argv = python_module("netem.doctor", "--inside", scratch.netns, check, scratch.veth_a, scratch.veth_b)
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH", "")]))
    done = subprocess.run(argv, capture_output=True, timeout=_CHILD_TIMEOUT_S, env=env)
    out = done.stdout[-_CHILD_OUTPUT_CAP:].decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not out:
        err = done.stderr[-2000:].decode(errors="replace").strip().splitlines()
        return {"ok": False, "detail": f"probe process failed (exit {done.returncode}): {err[-1] if err else ''}"}
    try:
        answer = json.loads(out[-1])
    except json.JSONDecodeError:
        return {"ok": False, "detail": f"probe process answered non-JSON: {out[-1][:200]!r}"}
    if not isinstance(answer, dict):
        return {"ok": False, "detail": f"probe process answered {answer!r}"}
    return answer


def _check_capture(sender: str, receiver: str) -> dict[str, object]:
    """Send marked Ethernet frames on one veth end with scapy and sniff them on the other."""
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.sendrecv import AsyncSniffer, sendp

    started = threading.Event()

    def ours(packet: object) -> bool:
        return bool(Raw in packet and _CAPTURE_MARKER in bytes(packet[Raw]))  # type: ignore[operator,index]

    sniffer = AsyncSniffer(iface=receiver, lfilter=ours, count=_CAPTURE_FRAMES, store=True,
                           started_callback=started.set)
    sniffer.start()
    if not started.wait(10):
        sniffer.stop()
        return {"ok": False, "detail": "sniffer did not start within 10 s"}
    frame = Ether(dst="ff:ff:ff:ff:ff:ff", type=_CAPTURE_ETHERTYPE) / Raw(_CAPTURE_MARKER)
    sendp(frame, iface=sender, count=_CAPTURE_FRAMES, verbose=False)
    sniffer.join(12)
    if sniffer.running:
        sniffer.stop()
    got = len(sniffer.results or [])
    ok = got == _CAPTURE_FRAMES
    return {"ok": ok, "detail": f"sent {_CAPTURE_FRAMES} frames over a scratch veth, captured {got} with scapy"}


def inside(netns_name: str, check: str, veth_a: str, veth_b: str) -> int:
    """The child process of `run_inside`: enter the scratch namespace, run the check, print one JSON answer."""
    from pyroute2 import netns

    netns.setns(netns_name, flags=0)
    try:
        answer = _check_capture(veth_a, veth_b)
    except Exception as exc:
        answer = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(answer))
    return 0
