"""Packet capture inside a topology namespace -> pcap file (Wireshark-readable) + per-flow statistics.

The capturing socket must live in the namespace, so capture runs in a child process entered into it (via
Topology.popen): `python -m netem.capture IFACE PCAP [--max-packets N] [--max-seconds S]`. The child reads with
scapy's L2ListenSocket (the AF_PACKET socket scapy's sniffers use, kernel timestamps via SO_TIMESTAMPNS) and
writes raw frames with scapy's PcapWriter, without dissecting them: dissection in the capture path costs ~100 µs
per packet, which would drop packets at 5G rates on a shared CPU. Dissection happens afterwards (netem.flows).

Placement: `cpus` pins the child (it calls sched_setaffinity on itself before it opens its socket). The child
reads every frame in Python, so it lags a large transfer and keeps reading after it: where that happens matters
to whoever computes on the same CPU then (the caller chooses; its summary says where it ran).

Honesty: the kernel's count of packets the capture socket dropped (PACKET_STATISTICS) is reported; a capture
with drops says so (`Capture.complete` is False) instead of silently under-counting.

Where packets are stamped: on the ue/edge veth, outgoing packets are seen when the interface transmits them
(after any kernel-backend qdisc, i.e. after its delay and rate), incoming ones when they arrive.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from netem.errors import CaptureError
from netem.pyexec import python_module

if TYPE_CHECKING:
    from netem.flows import FlowStats
    from netem.topology import Topology

SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
RCVBUF_BYTES = 64 << 20
DEFAULT_MAX_PACKETS = 2_000_000
DEFAULT_MAX_SECONDS = 3600.0
MAX_CPU = 4095
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


class Capture:
    """Capture one interface of a topology side while the block runs; flows are computed on exit.

        with Topology("5g-embb") as topo, Capture(topo, "ue") as cap:
            ...traffic...
        cap.pcap_path, cap.flows, cap.summary
    """

    def __init__(
        self,
        topology: Topology,
        side: str = "ue",
        *,
        path: str | os.PathLike[str] | None = None,
        interface: str | None = None,
        max_packets: int = DEFAULT_MAX_PACKETS,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        cpus: Sequence[int] = (),
    ) -> None:
        if side not in ("ue", "edge"):
            raise CaptureError(f"capture side must be 'ue' or 'edge', not {side!r}")
        if not 1 <= max_packets <= 100_000_000:
            raise CaptureError(f"max_packets must be in 1..100000000, got {max_packets}")
        if not 0 < max_seconds <= 86_400:
            raise CaptureError(f"max_seconds must be in (0, 86400], got {max_seconds}")
        if len(cpus) > MAX_CPU + 1 or not all(isinstance(c, int) and 0 <= c <= MAX_CPU for c in cpus):
            raise CaptureError(f"capture CPUs must be CPU numbers 0..{MAX_CPU}, got {list(cpus)[:8]}")
        self.cpus = tuple(sorted(set(cpus)))
        self.topology = topology
        self.side = side
        self.interface = interface or (topology.ue_ifname if side == "ue" else topology.edge_ifname)
        self._temporary = path is None
        if path is None:
            handle, name = tempfile.mkstemp(prefix=f"{topology.prefix}-{side}-", suffix=".pcap")
            os.close(handle)
            path = name
        self.pcap_path = Path(path)
        self.max_packets = max_packets
        self.max_seconds = max_seconds
        self.summary: dict[str, Any] = {}
        self._flows: list[FlowStats] | None = None
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        argv = python_module("netem.capture", self.interface, str(self.pcap_path),
                             "--max-packets", str(self.max_packets), "--max-seconds", str(self.max_seconds),
                             *(["--cpus", ",".join(map(str, self.cpus))] if self.cpus else []))
        self._process = self.topology.popen(self.side, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True)
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], READY_TIMEOUT_S)
        line = self._process.stdout.readline() if ready else ""
        if line.strip() != "READY":
            self._process.kill()
            _, err = self._process.communicate()
            self._process = None
            if self._temporary:
                self.pcap_path.unlink(missing_ok=True)
            # the child's last line says why (its traceback's exception line), never a cut-off middle of it
            lines = [text for text in (line + err).splitlines() if text.strip()]
            answer = lines[-1].strip()[:800] if lines else f"no answer within {READY_TIMEOUT_S:.0f} s"
            raise CaptureError(f"capture on {self.interface} in {self.topology.namespace(self.side)} did not start: "
                               f"{answer}")

    @property
    def pid(self) -> int | None:
        """The capture child's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> dict[str, Any]:
        """Stop capturing, wait for the pcap to be complete; returns the capture summary."""
        process = self._process
        if process is None:
            return self.summary
        self._process = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise CaptureError(f"capture on {self.interface} did not stop within {STOP_TIMEOUT_S} s") from None
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if process.returncode != 0 or not lines:
            raise CaptureError(f"capture on {self.interface} failed (exit {process.returncode}): {err.strip()[-800:]}")
        self.summary = json.loads(lines[-1])
        return self.summary

    @property
    def complete(self) -> bool:
        """True when the kernel dropped nothing for us and no limit cut the capture short."""
        return bool(self.summary) and self.summary["kernel_drops"] == 0 and not self.summary["truncated"]

    @property
    def flows(self) -> list[FlowStats]:
        """Per-flow statistics of the pcap (computed once, after stop)."""
        if self._process is not None:
            raise CaptureError("flows are available after the capture stopped")
        if self._flows is None:
            from netem.flows import flow_stats

            self._flows = flow_stats(self.pcap_path)
        return self._flows


# ---------------------------------------------------------------------------------------------------------------
# The capture child process.

def _capture_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netem.capture", description="capture one interface to pcap")
    parser.add_argument("interface")
    parser.add_argument("pcap")
    parser.add_argument("--max-packets", type=int, default=DEFAULT_MAX_PACKETS)
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS)
    parser.add_argument("--cpus", default="", help="comma-separated CPU numbers this child runs on")
    args = parser.parse_args(argv)
    if args.cpus:
        try:
            cpus = {int(c) for c in args.cpus.split(",", MAX_CPU + 1)}
            if any(not 0 <= c <= MAX_CPU for c in cpus):
                raise ValueError(f"CPU numbers are 0..{MAX_CPU}")
            os.sched_setaffinity(0, cpus)
        except (ValueError, OSError) as exc:
            print(f"cannot run the capture on CPUs {args.cpus[:80]!r}: {exc}", file=sys.stderr)
            return 2

    from scapy.arch.linux import L2ListenSocket
    from scapy.config import conf
    from scapy.utils import PcapWriter

    stopping = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    conf.bufsize = RCVBUF_BYTES
    try:
        listener = L2ListenSocket(iface=args.interface, promisc=False)
    except OSError as exc:
        print(f"cannot open a capture socket on {args.interface}: {exc}", file=sys.stderr)
        return 2
    sock: socket.socket = listener.ins
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
    except OSError:
        pass  # not root in this user namespace: keep conf.bufsize (capped by rmem_max)
    sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)  # reading resets the kernel counters
    writer = PcapWriter(args.pcap, linktype=1, sync=False, nano=True, snaplen=65535)
    writer.write_header(None)  # a valid pcap even when nothing is captured
    packets = 0
    truncated = False
    deadline = time.monotonic() + args.max_seconds
    print("READY", flush=True)
    try:
        while True:
            if stopping:
                sock.setblocking(False)  # drain what is already queued, then stop
            elif time.monotonic() > deadline:
                truncated = True
                break
            else:
                ready, _, _ = select.select([sock], [], [], 0.1)
                if not ready:
                    continue
            try:
                _, data, stamp = listener.recv_raw(65535)
            except (BlockingIOError, InterruptedError):
                if stopping:
                    break
                continue
            if data is None:
                continue
            seconds = int(stamp) if stamp is not None else int(time.time())
            nanos = int(round(((stamp or time.time()) - seconds) * 1e9))
            writer.write_packet(data, sec=seconds, usec=nanos, caplen=len(data), wirelen=len(data))
            packets += 1
            if packets >= args.max_packets:
                truncated = True
                break
        tp_packets, tp_drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    finally:
        writer.close()
        listener.close()
    print(json.dumps({"interface": args.interface, "packets_written": packets, "kernel_drops": tp_drops,
                      "truncated": truncated, "pcap": args.pcap, "cpus": sorted(os.sched_getaffinity(0))}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_capture_main())
