"""Sweep what crashed runs left behind: namespaces, root-namespace links and temporary files (node logs, captures)
named `sb<pid>...` whose owner died.

Runs at every Topology start. It only ever touches objects that follow the project's naming convention AND whose
owner pid is gone, so concurrent runs (other engineers, parallel tests) are never disturbed.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netem.naming import is_stale
from netem.netns import kill_namespace_processes, list_namespaces, remove_namespace

log = logging.getLogger(__name__)


def stale_namespaces() -> list[str]:
    """Namespaces following the convention whose owner pid no longer exists."""
    return [name for name in list_namespaces() if is_stale(name)]


def sweep_stale() -> list[str]:
    """Remove stale namespaces (killing the processes left inside them) and stale root-namespace links.

    Returns the names removed. Races with another sweeper are harmless: an object already gone is skipped.
    """
    removed: list[str] = []
    for name in stale_namespaces():
        kill_namespace_processes(name, grace_s=0.2)
        try:
            if remove_namespace(name):
                removed.append(name)
                log.info("swept stale namespace %s", name)
        except Exception as exc:  # keep sweeping the rest; report what failed
            log.warning("could not sweep stale namespace %s: %s", name, exc)
    removed.extend(_sweep_root_links())
    removed.extend(sweep_stale_files())
    return removed


def sweep_stale_files(directory: str | os.PathLike[str] | None = None) -> list[str]:
    """Remove regular files `sb<pid>-*` in the temporary folder (the nodes' logs, captures' pcaps) whose owner
    pid is gone and that belong to us (a process killed with SIGKILL never deletes its temporary files).
    Symlinks, folders and other users' files are never touched. Returns the paths removed."""
    folder = Path(directory if directory is not None else tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        log.debug("cannot list %s: %s", folder, exc)
        return removed
    uid = os.geteuid()
    for entry in entries:
        if not entry.name.startswith("sb") or not is_stale(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:
                continue
            os.unlink(entry.path)
            removed.append(entry.path)
            log.info("swept stale file %s", entry.path)
        except FileNotFoundError:  # another sweeper was first
            continue
        except OSError as exc:
            log.warning("could not sweep stale file %s: %s", entry.path, exc)
    return removed


def _sweep_root_links() -> list[str]:
    removed = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME") or ""
            if not is_stale(name):
                continue
            try:
                ipr.link("del", index=link["index"])
                removed.append(name)
                log.info("swept stale link %s", name)
            except NetlinkError as exc:  # already gone (peer deleted with it) or not ours to delete
                log.debug("could not sweep link %s: %s", name, exc)
    return removed
