"""The link process: ``python -m netem.link --netns NS --ue IF --edge IF --control-fd FD --parent-pid PID``.

Started by `netem.link.LinkProcess`. It dies with its parent (PR_SET_PDEATHSIG), reads its profile and options
from the control channel as the first JSON line, enters the namespace, opens one packet socket per interface,
answers ``ready`` and forwards until told to stop, SIGTERM, or the control channel closing. Exit status: 0 after
a clean stop, 2 when setting up failed (the reason was sent on the control channel and printed to stderr),
3 when the parent was already gone.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import signal
import socket
import sys

from netem.errors import LinkError
from netem.link import control
from netem.link.forwarder import ETHERNET_HEADER_BYTES, Forwarder, close_log
from netem.link.options import ForwarderOptions
from netem.link.sockets import open_packet_socket
from netem.profile import LinkProfile

PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 30.0


def die_with_parent(parent_pid: int) -> bool:
    """Get SIGKILL when the parent dies; False if it is already gone (then there is no one to serve)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent_pid


def enter_namespace(name: str) -> None:
    """Move this (single-threaded) process into the named network namespace."""
    from netem.netns import open_namespace, setns

    fd = open_namespace(name)
    try:
        setns(fd)
    finally:
        os.close(fd)


def interface_mtu(ifname: str) -> int:
    """The MTU of an interface in the current namespace, through netlink (pyroute2)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        try:
            links = ipr.link("get", ifname=ifname)
        except Exception as exc:
            raise LinkError(f"interface {ifname!r} not found in this namespace: {exc}") from None
        mtu = links[0].get_attr("IFLA_MTU") if links else None
    if not isinstance(mtu, int) or mtu <= 0:
        raise LinkError(f"interface {ifname!r}: cannot read its MTU")
    return mtu


def quiet_garbage_collector() -> None:
    """Keep Python's cyclic GC from walking the start-up objects while the link forwards.

    A full collection took 23 ms here with pyroute2 loaded. In steady state Python 3.11 rarely runs one (a
    measured 4 s of 144 Mbit/s-like allocation ran none: the per-frame tuples die young), but it does when
    many objects survive, e.g. a long delay holding many frames; it must not then also walk ~36,000
    start-up objects. Everything alive now lives as long as the process, so gc.freeze hides it.
    """
    gc.collect()
    gc.freeze()


def build_forwarder(args: argparse.Namespace, start: dict) -> Forwarder:
    if start.get("op") != "start":
        raise LinkError(f"the first control message must be op=start, not {start.get('op')!r}")
    profile_data = start.get("profile")
    if not isinstance(profile_data, dict):
        raise LinkError("op=start needs a 'profile' object (LinkProfile.to_dict())")
    profile = LinkProfile.from_dict(profile_data)
    options = ForwarderOptions.from_dict(start.get("options") or {})
    if args.netns:
        enter_namespace(args.netns)
    mtu_ue = interface_mtu(args.ue)
    mtu_edge = interface_mtu(args.edge)
    ue_sock = open_packet_socket(args.ue, options)
    try:
        edge_sock = open_packet_socket(args.edge, options)
    except Exception:
        ue_sock.close()
        raise
    return Forwarder(
        ue_sock,
        edge_sock,
        profile,
        max_frame_ue=mtu_ue + ETHERNET_HEADER_BYTES,
        max_frame_edge=mtu_edge + ETHERNET_HEADER_BYTES,
        options=options,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netem.link", description=__doc__)
    parser.add_argument("--netns", default="", help="network namespace to enter (default: stay in this one)")
    parser.add_argument("--ue", required=True, help="interface on the ue side (uplink frames arrive here)")
    parser.add_argument("--edge", required=True, help="interface on the edge side (downlink frames arrive here)")
    parser.add_argument("--control-fd", type=int, required=True, help="inherited unix socket for JSON lines")
    parser.add_argument("--parent-pid", type=int, required=True, help="pid of the process that started us")
    args = parser.parse_args(argv)

    if not die_with_parent(args.parent_pid):
        return 3
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the parent; it stops us
    channel = socket.socket(fileno=args.control_fd)
    buffer = control.LineBuffer()
    try:
        start = control.read_message(channel, buffer, START_TIMEOUT_S)
        forwarder = build_forwarder(args, start)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        print(f"netem.link: {reason}", file=sys.stderr)
        try:
            channel.sendall(control.encode({"ok": False, "error": reason}))
        except OSError:
            pass
        return 2
    try:
        channel.settimeout(None)
        forwarder.prepare()
        quiet_garbage_collector()
        ready = {
            "ok": True,
            "event": "ready",
            "pid": os.getpid(),
            "scheduling": forwarder.scheduling,
            "options": forwarder.options.to_dict(),
            "max_frame": {"ue": forwarder.max_frame_ue, "edge": forwarder.max_frame_edge},
        }
        channel.sendall(control.encode(ready))
        forwarder.serve(channel)
    finally:
        close_log(forwarder)
        forwarder.ue_sock.close()
        forwarder.edge_sock.close()
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
