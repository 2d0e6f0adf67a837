"""The emulated network: a "ue" side and an "edge" side in their own namespaces, joined through the link.

    kernel backend:     [ns ue] ue-veth <==========================> ed-veth [ns edge]
                         egress qdiscs = uplink                        egress qdiscs = downlink
    userspace backend:  [ns ue] ue-veth <==> lu [ns link: LinkProcess] le <==> ed-veth [ns edge]

ue and edge share one /24 from 198.18.0.0/15 (RFC 2544 benchmarking space): the userspace link forwards at L2,
so both sides see one Ethernet segment. There is no default route anywhere and nothing joins the host's
namespace, so no packet can leave. Neighbour entries are static, so no ARP crosses (or is lost on) the link, and
IPv6 link-local addresses are never generated, so no router/neighbour solicitations disturb measurements.

Both end namespaces run one pinned TCP congestion control (`tcp_congestion_control`, CUBIC by default), not the
host's default, so a figure does not depend on the host that measured it (netem.tcp says why).

Cleanup is guaranteed on exit, on exceptions, on SIGTERM and at interpreter exit; after a SIGKILL the next
Topology start in any process sweeps the leftovers (names carry the owner pid, see netem.naming).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from pyroute2 import IPRoute

from netem.backend import LinkBackend, kernel_refusal, resolve_backend
from netem.errors import NetemError, TopologyError, UnsupportedProfileError
from netem.guardian import Guardian
from netem.kernel import KernelLink
from netem.naming import new_prefix, object_name
from netem.netns import create_namespace, kill_namespace_processes, open_namespace, remove_namespace
from netem.nsexec import preexec_enter
from netem.offload import disable_offloads
from netem.profile import LinkProfile
from netem.sweep import sweep_stale
from netem.tcp import DEFAULT_CONGESTION_CONTROL, set_congestion_control, tcp_settings
from netem.userspace import DEFAULT_RT_PRIORITY, UserspaceLink

if TYPE_CHECKING:
    from netem.link.options import ForwarderOptions

log = logging.getLogger(__name__)

SIDES = ("ue", "edge", "link")
NUD_PERMANENT = 0x80
IN6_ADDR_GEN_MODE_NONE = 1
IFF_PROMISC = 0x100
PROCESS_GRACE_S = 2.0


class Topology:
    """Namespaces + veths + link backend for one LinkProfile; use as a context manager.

    Attributes after start: `ns_ue`, `ns_edge`, `ns_link` (None on the kernel backend), `ue_addr`, `edge_addr`,
    `backend` (the resolved "kernel" or "userspace"), `profile`.
    """

    def __init__(
        self,
        profile: LinkProfile | str,
        backend: str = "auto",
        *,
        subnet_index: int | None = None,
        sweep: bool = True,
        link_rt_priority: int | None = DEFAULT_RT_PRIORITY,
        link_options: ForwarderOptions | None = None,
        tcp_congestion_control: str | None = DEFAULT_CONGESTION_CONTROL,
        guard: bool = False,
    ) -> None:
        """`profile`: LinkProfile or a built-in name/TOML path; `backend`: "auto" | "kernel" | "userspace";
        `subnet_index`: third octet of the 198.18.x.0/24 (default: a per-process counter);
        `link_rt_priority`: SCHED_FIFO priority of the userspace link process (None = normal scheduling);
        `link_options`: every option of the userspace link process (netem.link.ForwarderOptions; its
        `realtime_priority` replaces `link_rt_priority`, which must then be left alone); userspace backend only;
        `tcp_congestion_control`: the algorithm new sockets in the ue and edge namespaces use (None = inherit the
        host's default, which makes figures host-dependent);
        `guard`: a watchdog process removes the namespaces, and kills everything in them, the moment this
        process dies without closing the topology (netem.guardian; else the next start's sweep does).
        """
        if link_options is not None and link_rt_priority != DEFAULT_RT_PRIORITY:
            raise ValueError("give the link's priority as link_options.realtime_priority, not also link_rt_priority")
        self.profile = profile if isinstance(profile, LinkProfile) else LinkProfile.load(profile)
        self.requested_backend = backend
        self.backend: str | None = None
        self.prefix, index = new_prefix()
        third_octet = (index if subnet_index is None else subnet_index) % 256
        self.prefix_len = 24
        self.ue_addr = f"198.18.{third_octet}.1"
        self.edge_addr = f"198.18.{third_octet}.2"
        self.ns_ue = object_name(self.prefix, "ue")
        self.ns_edge = object_name(self.prefix, "ed")
        self.ns_link: str | None = None
        self.ue_ifname = object_name(self.prefix, "ue")
        self.edge_ifname = object_name(self.prefix, "ed")
        self.link_ue_ifname = object_name(self.prefix, "lu")
        self.link_edge_ifname = object_name(self.prefix, "le")
        self.swept: list[str] = []
        self._sweep = sweep
        self._link_rt_priority = link_rt_priority
        self.link_options = link_options
        self.tcp_congestion_control = tcp_congestion_control
        self._tcp: dict[str, Any] = {}
        self._created: list[str] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._link: LinkBackend | None = None
        self._offloads: dict[str, Any] = {}
        self._macs: dict[str, str] = {}
        self._started = False
        self._closed = False
        self._lock = threading.RLock()
        self._owner_pid = os.getpid()
        self._guardian: Guardian | None = Guardian([]) if guard else None

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def __enter__(self) -> Topology:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.close()
        except NetemError:
            if exc_type is None:
                raise
            log.exception("cleanup after an error also failed")

    def start(self) -> Topology:
        """Sweep stale leftovers, pick the backend, build namespaces/veths/link. Undone completely on failure."""
        with self._lock:
            if self._started:
                raise TopologyError("this Topology was already started; make a new one")
            self._started = True
            if self._sweep:
                self.swept = sweep_stale()
            self.backend = resolve_backend(self.profile, self.requested_backend)
            _register(self)
            try:
                self._build()
            except BaseException:
                try:
                    self.close()
                except NetemError:
                    log.exception("cleanup after a failed start also failed")
                raise
        return self

    def close(self) -> None:
        """Stop processes and the link, remove every namespace (veths and qdiscs go with them). Idempotent.

        A forked child (pyroute2 and subprocess fork helpers inherit our atexit and signal handlers) never
        tears down its parent's topology: only the process that built it does.
        """
        if os.getpid() != self._owner_pid:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            errors: list[str] = []
            self._stop_processes()
            if self._link is not None:
                try:
                    self._link.stop()
                except Exception as exc:
                    errors.append(f"stopping the link: {exc}")
            for namespace in reversed(self._created):
                try:
                    kill_namespace_processes(namespace, grace_s=0.5)
                    remove_namespace(namespace)
                except Exception as exc:
                    errors.append(f"removing namespace {namespace}: {exc}")
            _unregister(self)
            if self._guardian is not None:
                self._guardian.stop()
            if errors:
                raise TopologyError("topology cleanup incomplete: " + "; ".join(errors))

    @property
    def closed(self) -> bool:
        return self._closed

    # -- processes ----------------------------------------------------------------------------------------------
    def namespace(self, side: str) -> str:
        """Namespace name of "ue", "edge" or "link" (the last only on the userspace backend)."""
        if side == "ue":
            return self.ns_ue
        if side == "edge":
            return self.ns_edge
        if side == "link" and self.ns_link is not None:
            return self.ns_link
        raise ValueError(f"side must be one of {', '.join(self.sides)}, not {side!r}")

    @property
    def sides(self) -> tuple[str, ...]:
        return SIDES if self.ns_link is not None else SIDES[:2]

    def address(self, side: str) -> str:
        """IPv4 address of the "ue" or "edge" side."""
        if side == "ue":
            return self.ue_addr
        if side == "edge":
            return self.edge_addr
        raise ValueError(f"only 'ue' and 'edge' have addresses, not {side!r}")

    def popen(
        self, side: str, argv: list[str], *, die_with_parent: bool | None = None, **popen_kw: Any
    ) -> subprocess.Popen[Any]:
        """Start `argv` inside a side's namespace (subprocess.Popen arguments apply); stopped at close().

        `die_with_parent` (default: True when called from the main thread) makes the kernel kill the process if
        this one dies, so nothing outlives a crashed run. (The kernel ties this to the calling *thread*, hence
        the main-thread default.)
        """
        self._require_running()
        if "preexec_fn" in popen_kw:
            raise TypeError("popen() sets its own preexec_fn (to enter the namespace)")
        if die_with_parent is None:
            die_with_parent = threading.current_thread() is threading.main_thread()
        fd = open_namespace(self.namespace(side))
        try:
            pass_fds = tuple(popen_kw.pop("pass_fds", ())) + (fd,)
            process = subprocess.Popen(
                argv, pass_fds=pass_fds, preexec_fn=preexec_enter(fd, die_with_parent=die_with_parent), **popen_kw
            )
        finally:
            os.close(fd)
        self._processes.append(process)
        return process

    def run(
        self, side: str, argv: list[str], *, timeout: float, check: bool = False, **popen_kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in a side's namespace to completion (text output captured); killed after `timeout` s."""
        popen_kw.setdefault("stdout", subprocess.PIPE)
        popen_kw.setdefault("stderr", subprocess.PIPE)
        popen_kw.setdefault("text", True)
        process = self.popen(side, argv, **popen_kw)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        result = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
        if check:
            result.check_returncode()
        return result

    # -- link -------------------------------------------------------------------------------------------------
    def update(self, profile: LinkProfile | str) -> None:
        """Change the link's profile live (no teardown). The backend cannot change; refuses what it cannot do."""
        new_profile = profile if isinstance(profile, LinkProfile) else LinkProfile.load(profile)
        self._require_running()
        if self.backend == "kernel":
            refusal = kernel_refusal(new_profile)
            if refusal is not None:
                raise UnsupportedProfileError(
                    f"this topology runs on the kernel backend, which cannot do profile {new_profile.name!r}: "
                    f"{refusal}; start the topology with backend='userspace' to change to it live"
                )
        assert self._link is not None
        self._link.update(new_profile)
        self.profile = new_profile

    def stats(self) -> dict[str, Any]:
        """Link counters per direction (backend-specific detail included) and veth counters of ue and edge."""
        self._require_running()
        assert self._link is not None
        return {"backend": self.backend, "link": self._link.stats(), "interfaces": self._interface_counters()}

    def describe(self) -> dict[str, Any]:
        """Everything needed to say how a measurement's network was made (JSON-able; metrics records embed it)."""
        return {
            "profile": self.profile.to_dict(),
            "backend": self.backend,
            "requested_backend": self.requested_backend,
            "namespaces": {"ue": self.ns_ue, "edge": self.ns_edge, "link": self.ns_link},
            "addresses": {"ue": self.ue_addr, "edge": self.edge_addr, "prefix_len": self.prefix_len},
            "interfaces": {"ue": self.ue_ifname, "edge": self.edge_ifname,
                           "link_ue": self.link_ue_ifname if self.ns_link else None,
                           "link_edge": self.link_edge_ifname if self.ns_link else None},
            "mac": dict(self._macs),
            "mtu": 1500,
            "offloads": self._offloads,
            "link": self._link.describe() if self._link is not None else None,
            "tcp": self._tcp,
            "static_neighbours": True,
            "ipv6_link_local": False,
        }

    # -- building -----------------------------------------------------------------------------------------------
    def _build(self) -> None:
        userspace = self.backend == "userspace"
        if self.link_options is not None and not userspace:
            raise TopologyError(f"link_options apply to the userspace link only, and profile {self.profile.name!r} "
                                f"resolved to the {self.backend} backend: pass backend='userspace'")
        if userspace:
            self.ns_link = object_name(self.prefix, "ln")
        if self._guardian is not None:  # before the namespaces exist: no moment where a kill leaves them behind
            self._guardian.namespaces = [n for n in (self.ns_ue, self.ns_edge, self.ns_link) if n is not None]
            self._guardian.start()
        for namespace in (self.ns_ue, self.ns_edge, self.ns_link):
            if namespace is None:
                continue
            create_namespace(namespace)
            self._created.append(namespace)
            with IPRoute(netns=namespace, flags=0) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        if userspace:
            assert self.ns_link is not None
            self._veth(self.ns_ue, self.ue_ifname, self.ns_link, self.link_ue_ifname)
            self._veth(self.ns_edge, self.edge_ifname, self.ns_link, self.link_edge_ifname)
            for ifname in (self.link_ue_ifname, self.link_edge_ifname):
                self._bring_up(self.ns_link, ifname, address=None, promisc=True)
        else:
            self._veth(self.ns_ue, self.ue_ifname, self.ns_edge, self.edge_ifname)
        self._bring_up(self.ns_ue, self.ue_ifname, address=self.ue_addr)
        self._bring_up(self.ns_edge, self.edge_ifname, address=self.edge_addr)
        self._static_neighbours()
        self._disable_offloads()
        self._configure_tcp()
        if userspace:
            assert self.ns_link is not None
            self._link = UserspaceLink(self.profile, self.ns_link, self.link_ue_ifname, self.link_edge_ifname,
                                       rt_priority=self._link_rt_priority, options=self.link_options)
        else:
            self._link = KernelLink(self.profile, {"uplink": (self.ns_ue, self.ue_ifname),
                                                   "downlink": (self.ns_edge, self.edge_ifname)})
        self._link.start()

    def _veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        """A veth pair created inside ns_a with its peer born in ns_b (never visible in the host namespace)."""
        fd_b = open_namespace(ns_b)
        try:
            with IPRoute(netns=ns_a, flags=0) as ipr:
                ipr.link("add", ifname=if_a, kind="veth", peer={"ifname": if_b, "net_ns_fd": fd_b})
        finally:
            os.close(fd_b)

    def _bring_up(self, namespace: str, ifname: str, *, address: str | None, promisc: bool = False) -> None:
        with IPRoute(netns=namespace, flags=0) as ipr:
            index = ipr.link_lookup(ifname=ifname)[0]
            # No IPv6 link-local address -> no DAD/RS/MLD chatter on the measured link.
            ipr.link("set", index=index, IFLA_AF_SPEC={
                "attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE)]})]})
            if promisc:
                ipr.link("set", index=index, flags=IFF_PROMISC, change=IFF_PROMISC)
            if address is not None:
                ipr.addr("add", index=index, address=address, prefixlen=self.prefix_len)
            ipr.link("set", index=index, state="up")
            self._macs[ifname] = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")

    def _static_neighbours(self) -> None:
        pairs = ((self.ns_ue, self.ue_ifname, self.edge_addr, self._macs[self.edge_ifname]),
                 (self.ns_edge, self.edge_ifname, self.ue_addr, self._macs[self.ue_ifname]))
        for namespace, ifname, peer_addr, peer_mac in pairs:
            with IPRoute(netns=namespace, flags=0) as ipr:
                index = ipr.link_lookup(ifname=ifname)[0]
                ipr.neigh("add", dst=peer_addr, lladdr=peer_mac, ifindex=index, state=NUD_PERMANENT)

    def _disable_offloads(self) -> None:
        ends = [(self.ns_ue, self.ue_ifname), (self.ns_edge, self.edge_ifname)]
        if self.ns_link is not None:
            ends += [(self.ns_link, self.link_ue_ifname), (self.ns_link, self.link_edge_ifname)]
        for namespace, ifname in ends:
            state = disable_offloads(namespace, ifname)
            self._offloads[ifname] = state
            if state["still_on"]:
                message = f"offloads still on for {ifname}: {', '.join(state['still_on'])}"
                if self.backend == "userspace" and any("segmentation" in n or "gro" in n for n in state["still_on"]):
                    raise TopologyError(message + " (the userspace link would see frames above the MTU)")
                log.warning(message)

    def _configure_tcp(self) -> None:
        """Pin the congestion control in both end namespaces (unless None) and record what is in force."""
        for namespace in (self.ns_ue, self.ns_edge):
            if self.tcp_congestion_control is not None:
                set_congestion_control(namespace, self.tcp_congestion_control)
        self._tcp = {"requested_congestion_control": self.tcp_congestion_control,
                     "ue": tcp_settings(self.ns_ue), "edge": tcp_settings(self.ns_edge)}

    def _interface_counters(self) -> dict[str, Any]:
        counters = {}
        for side, namespace, ifname in (("ue", self.ns_ue, self.ue_ifname), ("edge", self.ns_edge, self.edge_ifname)):
            with IPRoute(netns=namespace, flags=0) as ipr:
                link = ipr.get_links(ipr.link_lookup(ifname=ifname)[0])[0]
                stats = link.get_attr("IFLA_STATS64") or {}
                counters[side] = {key: stats.get(key, 0) for key in
                                  ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped")}
        return counters

    def _stop_processes(self) -> None:
        running = [p for p in self._processes if p.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(timeout=PROCESS_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _require_running(self) -> None:
        if not self._started or self._closed:
            raise TopologyError("the topology is not running (use it inside `with Topology(...) as topo:`)")

    def __repr__(self) -> str:
        return (f"Topology(profile={self.profile.name!r}, backend={self.backend or self.requested_backend!r}, "
                f"ue={self.ns_ue}:{self.ue_addr}, edge={self.ns_edge}:{self.edge_addr})")


# -- process-wide safety net: close live topologies at exit and on SIGTERM ---------------------------------------
_live: set[Topology] = set()
_live_lock = threading.Lock()
_handlers_installed = False
_previous_sigterm: Any = None
_handler_pid = 0


def _register(topology: Topology) -> None:
    global _handlers_installed, _previous_sigterm, _handler_pid
    with _live_lock:
        _live.add(topology)
        if _handlers_installed:
            return
        _handlers_installed = True
    atexit.register(close_all)
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)
        if previous is not signal.SIG_IGN:
            _previous_sigterm = previous
            _handler_pid = os.getpid()
            signal.signal(signal.SIGTERM, _on_sigterm)


def _unregister(topology: Topology) -> None:
    with _live_lock:
        _live.discard(topology)


def close_all() -> None:
    """Close every topology this process still has open (atexit / SIGTERM)."""
    with _live_lock:
        live = list(_live)
    for topology in live:
        try:
            topology.close()
        except Exception as exc:  # keep closing the others
            print(f"netem: cleanup of {topology!r} failed: {exc}", file=sys.stderr)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _handler_pid:  # a forked helper inherited the handler: just die as SIGTERM says
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    close_all()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
