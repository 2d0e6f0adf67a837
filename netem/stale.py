"""Sweep what crashed runs left behind: namespaces and root-namespace links named `sb<pid>...` whose owner died.

Runs at every Topology start. It only ever touches objects that follow the project's naming convention AND whose
owner pid is gone, so concurrent runs (other engineers, parallel tests) are never disturbed.
"""

from __future__ import annotations

import logging

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
