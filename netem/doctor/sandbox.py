"""The non-root path: a user + network + mount namespace sandbox in which an unprivileged user is root, so that
namespaces, veths and qdiscs can be made without touching the host. The doctor re-executes itself into one."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from netem.pyexec import python_module

# Environment variable set inside the user-namespace sandbox the doctor re-executes into (see userns_wrapper).
USERNS_ENV = "SPLITBED_USERNS"


def userns_wrapper(argv: Sequence[str]) -> list[str]:
    """The command that runs `argv` as root inside a new user, network and mount namespace.

    A private tmpfs on /run/netns (or /run if that does not exist yet) is needed because named network
    namespaces are bind mounts under /run/netns, which an unprivileged user cannot write on the host.
    """
    script = (
        "d=/run/netns; [ -d $d ] || d=/run; "
        "mount -t tmpfs splitbed-userns $d && mkdir -p /run/netns && exec \"$@\""
    )
    return ["unshare", "--user", "--map-root-user", "--net", "--mount", "--", "sh", "-c", script, "sh", *argv]


def in_user_namespace() -> bool:
    """True when this process runs in a user namespace other than the initial one (uid_map is not identity)."""
    try:
        first = Path("/proc/self/uid_map").read_text().split("\n", 1)[0].split()
    except OSError:
        return False
    return first != ["0", "0", "4294967295"]


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def userns_blockers() -> list[str]:
    """Kernel settings that forbid unprivileged user namespaces, as human-readable reasons (empty: none)."""
    reasons = []
    if _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0:
        reasons.append("kernel.unprivileged_userns_clone=0")
    if _read_int("/proc/sys/user/max_user_namespaces") == 0:
        reasons.append("user.max_user_namespaces=0")
    if _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1:
        reasons.append("kernel.apparmor_restrict_unprivileged_userns=1")
    return reasons


def try_userns() -> tuple[bool, str]:
    """Really create a user + network namespace (as the current user) and report whether it worked."""
    if shutil.which("unshare") is None:
        return False, "unshare (util-linux) not found"
    try:
        done = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--net", "--mount", "true"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"unshare failed: {exc}"
    if done.returncode != 0:
        return False, f"unshare failed: {done.stderr.strip()[:200]}"
    return True, "unshare --user --map-root-user --net works"


USERNS_FIX = (
    "run as root (sudo), or allow unprivileged user namespaces: sysctl -w kernel.unprivileged_userns_clone=1 "
    "user.max_user_namespaces=15000 (Ubuntu: kernel.apparmor_restrict_unprivileged_userns=0)"
)


def nonroot_fix(command: str = "make test") -> str:
    return f"run as root, or inside a user namespace: {shlex.join(userns_wrapper(shlex.split(command)))}"


def reexec_in_userns_if_needed(module: str, argv: Sequence[str], allow: bool) -> None:
    """Not root and user namespaces work: replace this process by the same doctor inside a userns sandbox."""
    if not allow or os.geteuid() == 0 or os.environ.get(USERNS_ENV) == "1":
        return
    if userns_blockers() or not try_userns()[0]:
        return
    env = dict(os.environ, **{USERNS_ENV: "1"})
    command = userns_wrapper(python_module(module, *argv))
    sys.stdout.flush()
    os.execvpe(command[0], command, env)
