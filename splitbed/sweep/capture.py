"""Packet captures of every sweep point (on by default; `splitbed sweep --no-capture` turns them off).

While a point runs, netem.capture records the UE's and the edge's veth (two child processes in those
namespaces). The point's records are held until the captures stop, then joined with them
(splitbed.traffic.inference: each record gets a `traffic` section, docs/METRICS.md) and appended to the results;
an interruption or a testbed failure still appends every held record (without traffic figures, saying why), so
nothing measured is lost, and a kill -9 loses at most the point in progress, which a resumed sweep measures again.

Pcaps are kept per point in `<out>/captures/<point>/` (with `capture-*.json`: the capture processes' summaries,
the frames before the point's first inference, how long the analysis took), each up to `max_pcap_mb`; a larger one is rewritten with
only the first `HEADER_SNAP_BYTES` of each frame (every header and timestamp kept: bitrates, bursts and
retransmissions can still be read from it, the units cannot), and one still over the cap is removed. Records say
which. Next to them, `series-*.json` holds the uplink bitrate of one representative stretch (three consecutive
measured inferences around the middle one) in 1 ms bins, for the report's bitrate-over-time figure.

Capturing costs CPU next to the nodes and the link emulator on the same host (two processes writing every frame),
so figures measured with captures on may be slightly slower than without; every record says whether its point was
captured (its `traffic` section, or none).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from splitbed.nodes.metrics import DROPPED_STATUS

log = logging.getLogger(__name__)

CAPTURES_DIR = "captures"
DEFAULT_MAX_PCAP_MB = 64.0
MAX_PCAP_MB_LIMIT = 100_000.0
HEADER_SNAP_BYTES = 128           # Ethernet 14 + IPv4 20-60 + TCP 20-60: every header, a little payload
SERIES_BIN_MS = 1.0
MAX_SERIES_BINS = 120_000         # two minutes of 1 ms bins: a longer stretch is cut there (and says so)
CAPTURE_MAX_SECONDS = 6 * 3600.0  # a point's capture gives up after this (the point's records say truncated)


@dataclass(frozen=True)
class CaptureOptions:
    """Whether points are captured, and the size cap of each pcap kept (MB = 10^6 bytes)."""

    enabled: bool = True
    max_pcap_mb: float = DEFAULT_MAX_PCAP_MB

    def __post_init__(self) -> None:
        if not (0 <= self.max_pcap_mb <= MAX_PCAP_MB_LIMIT) or math.isnan(self.max_pcap_mb):
            raise ValueError(f"the pcap size cap must be 0..{MAX_PCAP_MB_LIMIT:g} MB, got {self.max_pcap_mb}")


def point_dir_name(key: str) -> str:
    """A readable, unique folder name for a point key (profile_model_partition_encoding-compression_hash)."""
    parts = key.split("|")
    readable = "_".join(parts[:3] + ["-".join(parts[3:5])]) if len(parts) >= 5 else "point"
    safe = "".join(c if c.isalnum() or c in "-._" else "-" for c in readable)[:100]
    return f"{safe}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"


class PointCapture:
    """Both sides of one point captured; a sink with the result store's `append` / `completed` for the runner.

        with PointCapture(bed, point.key, store, options) as sink:
            ... sink.append(record) ... sink.completed(point.key) ...
    """

    def __init__(self, bed: Any, key: str, store: Any, options: CaptureOptions) -> None:
        self.bed = bed
        self.key = key
        self.store = store
        self.options = options
        self.held: list[dict[str, Any]] = []
        self.directory = Path(store.directory) / CAPTURES_DIR / point_dir_name(key)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.pcaps = {side: self.directory / f"{side}-{stamp}.pcap" for side in ("ue", "edge")}
        self.series_path = self.directory / f"series-{stamp}.json"
        self.summary_path = self.directory / f"capture-{stamp}.json"
        self._captures: dict[str, Any] = {}
        self.analysis_s: float | None = None

    # -- the sink the runner writes to -------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> None:
        self.held.append(record)

    def completed(self, key: str) -> int:
        held = sum(1 for r in self.held if _counts(r, key))
        return int(self.store.completed(key)) + held

    @property
    def errors(self) -> Counter[str]:
        """Failed measured inferences per point key, the store's and the held ones (each draws its own seed)."""
        from splitbed.sweep.store import counts_for_point, is_measurement, point_key

        counts = Counter(self.store.errors)
        counts.update(str(point_key(r)) for r in self.held
                      if is_measurement(r) and not counts_for_point(r) and point_key(r) is not None)
        return counts

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> PointCapture:
        from netem.capture import Capture

        self.directory.mkdir(parents=True, exist_ok=True)
        topology = self.bed.topology
        plan = getattr(self.bed, "cpu_plan", None)  # the CPU plan's `capture` role (docs/SWEEP.md, "Repeatability")
        cpus = plan.capture if plan is not None else ()
        try:
            for side in ("edge", "ue"):
                capture = Capture(topology, side, path=self.pcaps[side], max_seconds=CAPTURE_MAX_SECONDS,
                                  cpus=cpus)
                capture.start()
                self._captures[side] = capture
        except BaseException:
            self._stop_all()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        summaries, stop_error = self._stop_all()
        ran_on = reported_capture_cpus(summaries)
        for record in self.held:
            cpus = (record.get("link") or {}).get("cpus")
            if isinstance(cpus, dict) and isinstance(cpus.get("applied"), dict):
                cpus["applied"]["capture"] = ran_on  # where the children ran, as they reported, not the plan
        try:
            if exc_type is None and stop_error is None:
                self._attach(summaries)
            elif self.held:
                reason = stop_error or f"the point was cut short ({exc_type.__name__ if exc_type else 'error'})"
                for record in self.held:
                    record["traffic"] = _unavailable(reason)
        except Exception as failure:  # the analysis failed: the measurements themselves stand
            log.exception("traffic analysis of %s failed", self.key)
            for record in self.held:
                record["traffic"] = _unavailable(f"the capture analysis failed: {failure}")
        finally:
            for record in self.held:
                self.store.append(record)
            self.held = []

    def _stop_all(self) -> tuple[dict[str, dict[str, Any]], str | None]:
        summaries: dict[str, dict[str, Any]] = {}
        error = None
        for side, capture in self._captures.items():
            try:
                summaries[side] = capture.stop()
            except Exception as exc:
                error = f"the {side}-side capture failed: {exc}"
                log.warning("%s", error)
        self._captures = {}
        return summaries, error

    # -- analysis ----------------------------------------------------------------------------------------------
    def _attach(self, summaries: dict[str, dict[str, Any]]) -> None:
        from splitbed.traffic.inference import point_traffic
        from splitbed.traffic.streams import connections

        begin = time.monotonic()
        topology = self.bed.topology
        server, port = topology.edge_addr, int(self.bed.remote_port)
        quic = self._quic_counts(server, port) if getattr(self.bed, "transport", "tcp") == "quic" else None
        ue = connections(self.pcaps["ue"], server, port)
        edge = connections(self.pcaps["edge"], server, port, keep_streams=())
        complete = all(s.get("kernel_drops") == 0 and not s.get("truncated") for s in summaries.values())
        kept = {side: self._keep(path) for side, path in self.pcaps.items()}
        root = Path(self.store.directory)
        capture = {
            "pcaps": {side: _relative(path, root) if kept[side] != "removed" else None
                      for side, path in self.pcaps.items()},
            "kept": kept,
            "max_pcap_mb": self.options.max_pcap_mb,
            "complete": complete,
            "kernel_drops": {side: s.get("kernel_drops") for side, s in summaries.items()},
            "points": {"ue": f"the UE's veth ({topology.ue_ifname}): frames as the UE sent them, before the "
                             "emulated link (userspace backend) or after its egress qdisc (kernel backend)",
                       "edge": f"the edge's veth ({topology.edge_ifname}): frames as the link delivered them"},
            "series": None,
            "summary": _relative(self.summary_path, root),
        }
        if quic is not None:
            self._attach_quic(capture, quic, summaries)
            return
        joined = point_traffic(self.held, ue, edge, capture)
        series = self._series(joined, ue, edge)
        if series is not None:
            capture["series"] = _relative(self.series_path, root)
        for index, record in enumerate(self.held):
            section = joined.figures.get(index)
            if record.get("status") == DROPPED_STATUS:  # a frame the workload dropped never ran (sweep.pacing)
                continue
            if section is None:
                reason = joined.note or "this inference put no units on the uplink"
                record["traffic"] = _unavailable(reason, capture)
            else:
                section["complete"] = complete
                record["traffic"] = section
        self.analysis_s = time.monotonic() - begin
        summary = {"point": self.key, "capture": capture, "summaries": summaries, "inference_units": joined.units,
                   "records": len(self.held), "records_with_figures": len(joined.figures), "note": joined.note,
                   "before_first_burst": joined.unassigned, "analysis_s": round(self.analysis_s, 3)}
        tmp = self.summary_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
        tmp.replace(self.summary_path)
        if not complete:
            log.warning("capture of %s dropped or truncated packets: %s", self.key, summaries)
        if joined.note:
            log.warning("traffic of %s: %s", self.key, joined.note)

    def _quic_counts(self, server: str, port: int) -> dict[str, Any]:
        """QUIC encrypts the session, so its units cannot be found in the capture: what is counted is the point's
        UDP packets and bytes each way (UE side: as the UE sent them; edge side: as the link delivered them)."""
        from netem.flows import flow_stats

        def udp(side: str, uplink: bool) -> dict[str, int]:
            flows = [f for f in flow_stats(self.pcaps[side]) if f.proto == "udp" and (
                (f.dst, f.dport) == (server, port) if uplink else (f.src, f.sport) == (server, port))]
            return {"packets": sum(f.packets for f in flows), "wire_bytes": sum(f.wire_bytes for f in flows),
                    "udp_payload_bytes": sum(f.payload_bytes for f in flows)}

        return {"uplink_sent_by_ue": udp("ue", True), "uplink_at_edge": udp("edge", True),
                "downlink_sent_by_edge": udp("edge", False), "downlink_at_ue": udp("ue", False),
                "scope": "the whole point (warm-ups included), every QUIC packet of its sessions"}

    def _attach_quic(self, capture: dict[str, Any], quic: dict[str, Any], summaries: dict[str, dict[str, Any]]) -> None:
        capture["quic_udp"] = quic
        reason = ("the QUIC binding encrypts the session: per-inference units cannot be found in the capture; the "
                  "point's UDP packets and bytes are in capture.quic_udp")
        for record in self.held:
            record["traffic"] = _unavailable(reason, capture)
        summary = {"point": self.key, "capture": capture, "summaries": summaries, "records": len(self.held),
                   "records_with_figures": 0, "note": reason}
        tmp = self.summary_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
        tmp.replace(self.summary_path)

    def _keep(self, path: Path) -> str:
        """Apply the size cap: `full`, `headers` (rewritten to HEADER_SNAP_BYTES per frame) or `removed`."""
        cap = self.options.max_pcap_mb * 1e6
        if path.stat().st_size <= cap:
            return "full"
        truncated = path.with_suffix(".headers.tmp")
        snap_pcap(path, truncated, HEADER_SNAP_BYTES)
        if truncated.stat().st_size <= cap:
            truncated.replace(path)
            return f"headers ({HEADER_SNAP_BYTES} bytes per frame)"
        truncated.unlink()
        path.unlink()
        return "removed"

    def _series(self, joined: Any, ue: list[Any], edge: list[Any]) -> dict[str, Any] | None:
        """Uplink wire bytes per 1 ms over three consecutive measured inferences around the middle one."""
        measured = sorted((section["inference_in_capture"], index) for index, section in joined.figures.items()
                          if not _is_warmup(self.held[index]) and section.get("burst"))
        if not measured:
            return None
        middle = len(measured) // 2
        chosen = measured[max(0, middle - 1):middle + 2]
        starts = dict(enumerate(joined.starts["ue"]))
        begin = starts.get(chosen[0][0])
        after = starts.get(chosen[-1][0] + 1)
        if begin is None:
            return None
        end = after if after is not None else max(t for c in ue for t in c.up.timestamps)
        bins = min(MAX_SERIES_BINS, max(1, math.ceil((end - begin) * 1000 / SERIES_BIN_MS)))
        series: dict[str, Any] = {
            "what": "uplink bytes on the wire per bin (Ethernet frames, retransmissions included), UE side (offered "
                    "to the link) and edge side (delivered by it); measured from the point's captures",
            "bin_ms": SERIES_BIN_MS, "bins": bins, "cut": bins == MAX_SERIES_BINS,
            "start_utc": datetime.fromtimestamp(begin, timezone.utc).isoformat(),
            "inferences": [{"repetition": self.held[i].get("repetition"),
                            "tags": self.held[i].get("tags"),
                            "e2e_latency_ms": self.held[i].get("e2e_latency_ms"),
                            "burst_start_ms": (starts[u] - begin) * 1e3 if starts.get(u) is not None else None}
                           for u, i in chosen],
        }
        for side, conns in (("ue", ue), ("edge", edge)):
            counts = [0] * bins
            for conn in conns:
                for stamp, size in zip(conn.up.timestamps, conn.up.wire, strict=True):
                    slot = math.floor((stamp - begin) * 1000 / SERIES_BIN_MS)
                    if 0 <= slot < bins and stamp < end:
                        counts[slot] += size
            series[side] = counts
        tmp = self.series_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(series, separators=(",", ":")), encoding="utf-8")
        tmp.replace(self.series_path)
        return series


def _is_warmup(record: dict[str, Any]) -> bool:
    tags = record.get("tags")
    return isinstance(tags, dict) and bool(tags.get("warmup"))


def _counts(record: dict[str, Any], key: str) -> bool:
    from splitbed.sweep.store import counts_for_point, point_key

    return counts_for_point(record) and point_key(record) == key


def reported_capture_cpus(summaries: dict[str, dict[str, Any]]) -> str:
    """`link.cpus.applied.capture` of a captured point's records: the CPUs each capture child reported it ran on
    (its own affinity at stop, netem.capture), per side; a side without a report says so."""
    from splitbed.runtime.cpus import format_cpus

    if not summaries:
        return "captured, but no capture child reported its CPUs"
    ran = [f"{side} child on {format_cpus(cpus)}" if isinstance(cpus := summaries.get(side, {}).get("cpus"), list)
           else f"{side} child: no report of its CPUs" for side in ("ue", "edge")]
    return "; ".join(ran) + " (as each reported)"


def _unavailable(reason: str, capture: dict[str, Any] | None = None) -> dict[str, Any]:
    from splitbed.traffic.inference import SOURCE, TRAFFIC_VERSION

    return {"version": TRAFFIC_VERSION, "source": SOURCE, "unavailable": reason, "capture": capture}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def snap_pcap(source: Path, target: Path, snap: int) -> int:
    """Copy a pcap keeping only the first `snap` bytes of each frame (original lengths kept); frames written."""
    from scapy.utils import PcapWriter, RawPcapReader

    frames = 0
    with RawPcapReader(str(source)) as reader:
        nano = bool(getattr(reader, "nano", False))
        writer = PcapWriter(str(target), linktype=reader.linktype, sync=False, nano=nano, snaplen=snap)
        try:
            writer.write_header(None)
            for data, meta in reader:
                writer.write_packet(data[:snap], sec=meta.sec, usec=meta.usec, caplen=min(len(data), snap),
                                    wirelen=meta.wirelen)
                frames += 1
        finally:
            writer.close()
    return frames


def traffic_counts(records: list[dict[str, Any]]) -> Counter[str]:
    """How many measured records carry traffic figures, lack them (and why), or were not captured."""
    counts: Counter[str] = Counter()
    for record in records:
        section = record.get("traffic")
        if not isinstance(section, dict):
            counts["not captured"] += 1
        elif section.get("unavailable"):
            counts[f"no figures: {section['unavailable']}"] += 1
        else:
            counts["measured"] += 1
    return counts
