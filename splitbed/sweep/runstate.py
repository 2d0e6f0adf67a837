"""Whether a run recorded as `running` in sweep.json is really running: each run records its owner (pid and the
kernel's boot id) when it starts; a `running` run whose owner is gone (the pid does not exist, or the machine
rebooted since) was killed (SIGKILL, OOM, power) before it could record its end. Such runs are said, by the next
run and by `--dry-run`, and the next run marks them `killed` instead of leaving them `running` for ever."""

from __future__ import annotations

import os
from typing import Any

from netem.naming import pid_alive
from splitbed.nodes.clock import boot_id

KILLED = "killed"


def owner() -> dict[str, Any]:
    """What a run records about the process running it."""
    return {"owner_pid": os.getpid(), "owner_boot_id": boot_id()}


def is_stale(run: Any) -> bool:
    """True for a `running` run whose recorded owner no longer runs (runs recorded without an owner: False)."""
    if not isinstance(run, dict) or run.get("state") != "running":
        return False
    pid = run.get("owner_pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    recorded_boot = run.get("owner_boot_id")
    if recorded_boot and boot_id() and recorded_boot != boot_id():
        return True
    return not pid_alive(pid)


def describe(run: dict[str, Any]) -> str:
    return (f"the run started {run.get('started_utc', '?')} by pid {run.get('owner_pid')} stopped without recording "
            "its end (its process is gone: killed or crashed); its finished inferences are kept")


def mark_killed(runs: list[Any]) -> list[dict[str, Any]]:
    """Set state `killed` on every stale run in `runs` (in place); returns them."""
    stale = [r for r in runs if is_stale(r)]
    for run in stale:
        run["state"] = KILLED
        run["note"] = describe(run)
    return stale
