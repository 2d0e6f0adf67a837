"""Network namespaces: create, remove, list their processes, run code inside one.

pyroute2 creates and mounts namespaces like `ip netns add` does (under /var/run/netns), so `ip netns exec` and
Wireshark users can reach them by name. Code runs "inside" a namespace either in a child process (nsexec) or in
a short-lived thread that calls setns(2): setns(CLONE_NEWNET) changes only the calling thread, and a socket
keeps the namespace it was created in, so the rest of the process is unaffected.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pyroute2 import netns as pr_netns

from netem.errors import NamespaceError

NETNS_DIR = Path(pr_netns.NETNS_RUN_DIR)
CLONE_NEWNET = 0x40000000

T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


def namespace_path(name: str) -> Path:
    return NETNS_DIR / name


def list_namespaces() -> list[str]:
    """Names of the namespaces mounted under /var/run/netns (all owners)."""
    try:
        return sorted(entry.name for entry in os.scandir(NETNS_DIR))
    except FileNotFoundError:
        return []


def create_namespace(name: str) -> None:
    """Create and mount a new namespace; fails if one with that name exists (we never adopt a foreign one)."""
    if namespace_path(name).exists():
        raise NamespaceError(f"namespace {name} already exists; refusing to reuse an object we did not create")
    try:
        pr_netns.create(name)
    except OSError as exc:
        raise NamespaceError(f"cannot create namespace {name}: {exc} (netem needs root / CAP_SYS_ADMIN)") from exc


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd`."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns failed: {os.strerror(err)}")


def open_namespace(name: str) -> int:
    """An O_RDONLY fd of the namespace (for setns); the caller closes it."""
    try:
        return os.open(namespace_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceError(f"namespace {name} does not exist") from None


def run_in_namespace(name: str, function: Callable[[], T]) -> T:
    """Call `function` in a fresh thread that has entered namespace `name`; return its result or raise its error."""
    outcome: dict[str, object] = {}
    fd = open_namespace(name)

    def target() -> None:
        try:
            setns(fd)
            outcome["value"] = function()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    try:
        thread = threading.Thread(target=target, name=f"netns-{name}", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def namespace_pids(name: str) -> list[int]:
    """Pids of the processes whose network namespace is `name` (found by the namespace's inode)."""
    try:
        inode = namespace_path(name).stat().st_ino
    except FileNotFoundError:
        return []
    wanted = f"net:[{inode}]"
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/net") == wanted:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_namespace_processes(name: str, *, grace_s: float = 1.0) -> list[int]:
    """SIGTERM every process inside namespace `name`, SIGKILL what is left after `grace_s`; returns the pids."""
    pids = [pid for pid in namespace_pids(name) if pid != os.getpid()]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    remaining = pids
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = [pid for pid in remaining if _exists(pid)]
    for pid in remaining:
        _signal(pid, signal.SIGKILL)
    return pids


def remove_namespace(name: str) -> bool:
    """Unmount and delete namespace `name` (its veths and qdiscs go with it); False if it was already gone."""
    path = namespace_path(name)
    if not path.exists():
        return False
    try:
        pr_netns.remove(name)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise NamespaceError(f"cannot remove namespace {name}: {exc}") from exc
    return True


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _exists(pid: int) -> bool:
    # A zombie has exited; its parent reaps it (never us here: reaping a Popen's child would corrupt its state).
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().split(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return False
