"""Pacing a point's real inferences by its workload (splitbed.workload): frames are captured at their arrival
times, the UE starts one when it is free (one job per frame: `SweepTestbed.run`), frames that arrive while it is
busy wait in the bounded queue or are dropped, and every frame gets a record.

A point of R frames runs as one stream of R arrivals (the warm-ups before it run back to back, as for `single`).
Each record gets a `workload` block (docs/METRICS.md): the capture time on CLOCK_MONOTONIC (the clock of the
node's `timestamps_ns`: one host, one kernel), the wait from capture to the UE node's `local_start` and the latency
from capture to its `local_end` (so it includes the wait). A dropped frame gets a record of its own with status
`dropped`. An error record counts for nothing: a second stream, at most MAX_STREAMS in all, captures the frames
still missing (a resumed point, too, starts a new stream for them).

Bounds: a stream takes at most its frame count in jobs (each frame is either run or dropped once), waits at most
until the last arrival, and each job is bounded by the testbed's own timeout.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol

from splitbed.nodes.metrics import DROPPED_RECORD_FIELDS, DROPPED_STATUS, SCHEMA_VERSION
from splitbed.sweep.plan import Point
from splitbed.workload import Pacer, Workload, parse

WORKLOAD_VERSION = "1.0"
MAX_STREAMS = 3


class AroundStream(Protocol):
    """What runs right before a stream's first frame is due and right after its last is done (the host-speed
    bursts, splitbed.sweep.hostspeed): no frame is waiting then."""

    def before(self, stream: int) -> None: ...

    def after(self, stream: int, runs_between: int, host: dict[str, Any] | None) -> None:
        """`runs_between`: the stream's frames that got an `idle` block; `host`: its records' machine."""
        ...


def stream_seed(point_key: str, first_frame: int) -> int:
    """The Poisson draws of the stream that starts at `first_frame` of a point: the same on every run. 48 bits, so
    that the record's `seed` survives a JSON reader that holds numbers as doubles (53-bit integers)."""
    return int.from_bytes(hashlib.sha256(f"{point_key}#{first_frame}".encode()).digest()[:6], "big")


def run_paced(point: Point, repetitions: int, bed: Any, store: Any, tags: dict[str, Any],
              place_link: Callable[[], dict[str, Any]], on_record: Callable[[dict[str, Any]], None],
              idle: Callable[[float], dict[str, Any] | None] | None = None,
              around: AroundStream | None = None) -> None:
    """Streams of frames until the point has `repetitions` frames accounted for (ok or dropped) or MAX_STREAMS ran.
    `store` has `append` and `completed` (ok + dropped records); `place_link` runs before each inference and gives
    its realisation tag; `on_record` sees every appended measured record; `idle`, given the seconds until the next
    frame arrives, may use them (the host-speed reference, splitbed.sweep.hostspeed) and gives the block that frame's
    records carry as `host_speed`, or None."""
    workload = parse(point.workload)
    for stream in range(MAX_STREAMS):
        first = store.completed(point.key)
        count = point.wanted(repetitions) - first
        if count <= 0:
            return
        seed = stream_seed(point.key, first)
        arrivals = workload.arrivals(count, seed)
        base = {"version": WORKLOAD_VERSION, "spec": workload.spec, "kind": workload.kind,
                "rate_hz": workload.rate_hz, "policy": workload.policy, "queue_limit": workload.queue,
                "description": workload.describe(), "stream": stream,
                "seed": seed if workload.kind == "poisson" else None,
                "deadline_ms": None if workload.deadline_s is None else 1000.0 * workload.deadline_s}
        if around is not None:
            around.before(stream)
        runs, host = _stream(point, workload, arrivals, bed, store, first, base, tags, place_link, on_record, idle)
        if around is not None:
            around.after(stream, runs, host)


def _stream(point: Point, workload: Workload, arrivals: list[float], bed: Any, store: Any, first: int,
            base: dict[str, Any], tags: dict[str, Any], place_link: Callable[[], dict[str, Any]],
            on_record: Callable[[dict[str, Any]], None],
            idle: Callable[[float], dict[str, Any] | None] | None = None) -> tuple[int, dict[str, Any] | None]:
    """One stream; gives how many of its frames got an `idle` block and the machine its records name."""
    pacer = Pacer(arrivals, workload.queue)
    runs, last_host = 0, None
    t0 = time.monotonic_ns()
    for _ in range(len(arrivals)):  # each pass starts one frame; the frames dropped meanwhile are placed too
        frame = pacer.next_frame()
        if frame is None:
            break
        capture_ns = t0 + round(arrivals[frame] * 1e9)
        delay = (capture_ns - time.monotonic_ns()) / 1e9
        speed = idle(delay) if idle is not None and delay > 0 else None
        delay = (capture_ns - time.monotonic_ns()) / 1e9
        if speed is not None:  # it was to end before the frame's arrival; say by how much it did not
            speed = {**speed, "frame_delayed_ms": max(0.0, -1000.0 * delay)}
            runs += 1
        if delay > 0:
            time.sleep(delay)
        realisation = place_link()
        dispatch_ns = time.monotonic_ns()
        records = bed.run(point.job(tags={**tags, "rep": first + frame, "draw": realisation["draw"],
                                          "realisation": realisation}))
        end_ns = time.monotonic_ns()
        for record in records:
            record["workload"] = frame_block(base, first + frame, arrivals[frame], capture_ns, dispatch_ns, end_ns,
                                             frame in pacer.queued, record)
            if speed is not None:
                record["host_speed"] = speed
            store.append(record)
            on_record(record)
        host = next((r["host"] for r in records if isinstance(r.get("host"), dict)), None)
        last_host = host or last_host
        for dropped in pacer.during_service((end_ns - t0) / 1e9):
            record = dropped_record(point, {**tags, "rep": first + dropped}, host,
                                    {**base, "frame": first + dropped, "arrival_s": arrivals[dropped],
                                     "capture_ns": t0 + round(arrivals[dropped] * 1e9), "queued": False,
                                     "queue_ms": None, "handover_ms": None, "wait_ms": None,
                                     "frame_latency_ms": None, "late": None, "dropped": True,
                                     "clock": "orchestrator"})
            store.append(record)
            on_record(record)
    return runs, last_host


def frame_block(base: dict[str, Any], frame: int, arrival_s: float, capture_ns: int, dispatch_ns: int, end_ns: int,
                queued: bool, record: dict[str, Any]) -> dict[str, Any]:
    """The `workload` block of a frame that ran. The node's `local_start`/`local_end` bound the wait and the latency
    where they lie inside the job's window on this clock (`clock` = node); else the orchestrator's dispatch stamp
    and the record's e2e are used (`clock` = orchestrator)."""
    stamps = record.get("timestamps_ns")
    stamps = stamps if isinstance(stamps, dict) else {}
    start, end = stamps.get("local_start"), stamps.get("local_end")
    e2e = record.get("e2e_latency_ms")
    latency: float | None
    handover: float | None
    queue = (dispatch_ns - capture_ns) / 1e6
    if isinstance(start, int) and dispatch_ns <= start <= end_ns:
        clock = "node"
        handover = (start - dispatch_ns) / 1e6
        wait = (start - capture_ns) / 1e6
        latency = (end - capture_ns) / 1e6 if isinstance(end, int) and start <= end <= end_ns else None
    else:
        clock, handover, wait = "orchestrator", None, queue
        latency = wait + float(e2e) if isinstance(e2e, (int, float)) and not isinstance(e2e, bool) else None
    if record.get("status") != "ok":
        latency = None
    deadline = base.get("deadline_ms")
    late = None if latency is None or deadline is None else latency > deadline
    return {**base, "frame": frame, "arrival_s": arrival_s, "capture_ns": capture_ns, "queued": queued,
            "queue_ms": queue, "handover_ms": handover, "wait_ms": wait, "frame_latency_ms": latency, "late": late,
            "dropped": False, "clock": clock}


def dropped_record(point: Point, tags: dict[str, Any], host: dict[str, Any] | None,
                   block: dict[str, Any]) -> dict[str, Any]:
    """The record of a frame the overload policy dropped: what the point is, `status` = dropped, the `host` of the
    frame whose inference it arrived during (so the summary keeps it with the point's records of that machine),
    and its `workload` block; no figures (nothing ran)."""
    record = {"schema_version": SCHEMA_VERSION, "record_type": "inference", "status": DROPPED_STATUS,
              "error": None, "tags": {"point": point.key, **tags},
              "started_at_utc": datetime.now(timezone.utc).isoformat(),
              "model": point.model, "partition_name": point.partition, "encoding": point.encoding,
              "compression_profile": point.compression if point.encoding == "tlv" else None, "image": point.image,
              "host": host, "workload": block}
    assert tuple(record) == DROPPED_RECORD_FIELDS
    return record
