"""One direction of the userspace link: the stages a `DirectionProfile` asks for, in order, plus its counters.

Stage order (each optional): **loss -> bottleneck (rate, or a capacity trace, with its queue) -> delay/jitter**.
Loss comes first, as in Linux netem, so a lost packet costs no capacity; the bottleneck serialises frames behind
its queue discipline; the propagation delay (with jitter) follows, so an idle link adds exactly ``delay`` plus
the frame's serialisation time. Packets flow stage to stage with their scheduled times (see stages.py).
"""

from __future__ import annotations

import random
from typing import Any

from netem.errors import LinkError
from netem.link.histogram import LatencyHistogram
from netem.link.queues import make_queue
from netem.link.stages import (
    DelayStage,
    DeliveryTraceStage,
    GilbertElliottModel,
    Item,
    JitterStage,
    LossStage,
    RandomLossModel,
    RateStage,
    Stage,
    ThroughputTraceStage,
)
from netem.profile import DirectionProfile, GilbertElliott, RandomLoss
from netem.trace import MahimahiTrace, ThroughputTrace
from netem.trace import load as load_trace

#: Most bytes one direction may hold (all stages together) before arriving frames are dropped as
#: ``link_full``: a safety net for profiles like "60 s delay, unshaped" that would otherwise buffer without end.
MAX_HELD_BYTES = 256 * 1024 * 1024
DROP_CAUSES = ("loss", "queue_overflow", "aqm", "oversize", "tx_error", "link_full", "socket_overflow")


def stage_rng(seed: int, stage: str) -> random.Random:
    """The random stream of one stage: seeded from the direction's seed and the stage name (reproducible)."""
    return random.Random(f"netem.link/{seed}/{stage}")


def build_stages(profile: DirectionProfile, origin_ns: int) -> list[Stage]:
    """The stages of one direction, in order; an unimpaired direction has none. Traces are read here."""
    stages: list[Stage] = []
    loss = profile.loss
    if isinstance(loss, RandomLoss) and loss.p > 0:
        stages.append(LossStage(RandomLossModel(loss.p, stage_rng(profile.seed, "loss"))))
    elif isinstance(loss, GilbertElliott) and loss.mean_loss > 0:
        model = GilbertElliottModel(loss.p, loss.r, loss.h, loss.k, stage_rng(profile.seed, "loss"))
        stages.append(LossStage(model))
    if profile.rate_mbit is not None or profile.trace is not None:
        queue = make_queue(profile.queue_discipline, profile.queue_packets, profile.queue_bytes)
        if profile.trace is not None:
            trace = load_trace(profile.trace.path, profile.trace.kind)
            # the trace's time 0 lies start_s (within one period) before now: the replay begins start_s in
            trace_origin_ns = origin_ns - int(round(profile.trace.start_s * 1e9)) % (trace.period_ms * 1_000_000)
            if isinstance(trace, MahimahiTrace):
                stages.append(DeliveryTraceStage(trace, queue, trace_origin_ns))
            elif isinstance(trace, ThroughputTrace):
                stages.append(ThroughputTraceStage(trace, queue, trace_origin_ns))
        else:
            assert profile.rate_mbit is not None
            stages.append(RateStage(profile.rate_mbit * 1e6, queue))
    delay_ns = int(round(profile.delay_ms * 1e6))
    jitter_ns = int(round(profile.jitter_ms * 1e6))
    if jitter_ns > 0:
        rng = stage_rng(profile.seed, "jitter")
        stages.append(JitterStage(delay_ns, jitter_ns, profile.jitter_distribution, rng))
    elif delay_ns > 0:
        stages.append(DelayStage(delay_ns))
    return stages


class DirectionCounters:
    """What one direction did since the link started (kept across live profile changes)."""

    __slots__ = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drops", "sojourn", "late")

    def __init__(self) -> None:
        self.rx_packets = 0
        self.rx_bytes = 0
        self.tx_packets = 0
        self.tx_bytes = 0
        self.drops = dict.fromkeys(DROP_CAUSES, 0)
        #: Time from receiving a frame to sending it (the real clock: includes the forwarder's own lateness).
        self.sojourn = LatencyHistogram()
        #: How late each frame left compared with its scheduled time (the forwarder's timing error).
        self.late = LatencyHistogram()


class DirectionPipeline:
    """The stages of one direction and its counters; `push` frames in, `pop_due` frames out."""

    def __init__(self, name: str, profile: DirectionProfile, origin_ns: int) -> None:
        if name not in ("uplink", "downlink"):
            raise LinkError(f"direction must be 'uplink' or 'downlink', not {name!r}")
        self.name = name
        self.profile = profile
        self.counters = DirectionCounters()
        self.queue_delay = LatencyHistogram()
        self._retired_drops: dict[str, int] = {}
        self._carry_out: list[Item] = []
        self._near_full = False
        self._last_arrival = 0
        self.stages: list[Stage] = []
        self._install(build_stages(profile, origin_ns))

    def _install(self, stages: list[Stage]) -> None:
        for stage in stages:  # one queue-delay histogram per direction, kept across profile changes
            if isinstance(stage, (RateStage, ThroughputTraceStage, DeliveryTraceStage)):
                stage.queue_delay = self.queue_delay
        self.stages = stages
        self._entry = stages[0] if stages else None

    @property
    def fast(self) -> bool:
        """True when this direction has no stage: frames can be forwarded as they arrive."""
        return not self.stages

    def held_packets(self) -> int:
        return sum(len(stage) for stage in self.stages)

    def held_bytes(self) -> int:
        return sum(stage.size_bytes for stage in self.stages)

    def push(self, frame: bytes, now_ns: int) -> None:
        """A frame received at ``now_ns`` enters the first stage (or is dropped when the link is full)."""
        counters = self.counters
        counters.rx_packets += 1
        counters.rx_bytes += len(frame)
        if self._entry is None:
            raise LinkError(f"{self.name}: push() on a direction without stages (use the fast path)")
        # The cap is a safety net, not a shaper: checking it every 32nd frame keeps the per-frame cost low and
        # lets the link overshoot it by at most 32 frames.
        if counters.rx_packets & 31 == 1 or self._near_full:
            self._near_full = self.held_bytes() + 32 * len(frame) > MAX_HELD_BYTES
            if self._near_full and self.held_bytes() + len(frame) > MAX_HELD_BYTES:
                counters.drops["link_full"] += 1
                return
        if now_ns < self._last_arrival:  # arrival stamps never go back in time (stages rely on it)
            now_ns = self._last_arrival
        self._last_arrival = now_ns
        self._entry.enqueue((now_ns, now_ns, frame))

    def next_due(self) -> int | None:
        """Earliest time any stage has something to do, or None when the direction is empty."""
        earliest = None
        for stage in self.stages:
            due = stage.next_due()
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        return earliest

    def pop_due(self, now_ns: int) -> list[Item]:
        """Advance every stage to ``now_ns``; the frames due to leave the link, oldest first."""
        batch: list[Item] = []
        for stage in self.stages:
            if batch:
                for item in batch:
                    stage.enqueue(item)
                batch = []
            stage.dequeue(now_ns, batch)
        return batch

    def record_sent(self, item: Item, sent_ns: int) -> None:
        counters = self.counters
        counters.tx_packets += 1
        counters.tx_bytes += len(item[2])
        counters.sojourn.record_ns(sent_ns - item[1])
        counters.late.record_ns(sent_ns - item[0])

    def drops(self) -> dict[str, int]:
        """Drops by cause, including those of stages replaced by earlier profile changes."""
        total = dict(self.counters.drops)
        for source in (self._retired_drops, *[stage.drops for stage in self.stages]):
            for cause, count in source.items():
                total[cause] = total.get(cause, 0) + count
        return total

    def reconfigure(self, profile: DirectionProfile, now_ns: int, new_stages: list[Stage] | None = None) -> int:
        """Switch to a new profile without losing packets in flight; returns how many were carried over.

        Held frames leave their old stages oldest first and enter the new pipeline at ``now_ns``, after its
        loss stage (they were already subjected to loss once); they then get the new profile's queueing and
        delay in full. A capacity trace restarts from its beginning. ``new_stages`` may be prebuilt (so a
        caller can build both directions before changing either).
        """
        if new_stages is None:
            new_stages = build_stages(profile, now_ns)
        carried: list[Item] = []
        for stage in reversed(self.stages):
            carried.extend(stage.drain())
        for stage in self.stages:
            for cause, count in stage.drops.items():
                self._retired_drops[cause] = self._retired_drops.get(cause, 0) + count
        self.profile = profile
        self._install(new_stages)
        if not carried:
            return 0
        if not new_stages:
            self._carry_out = [(now_ns, rx, frame) for _, rx, frame in carried]
            return len(carried)
        start = 1 if isinstance(new_stages[0], LossStage) else 0
        if start == len(new_stages):
            self._carry_out = [(now_ns, rx, frame) for _, rx, frame in carried]
            return len(carried)
        for _, rx, frame in carried:
            new_stages[start].enqueue((now_ns, rx, frame))
        return len(carried)

    def take_carried(self) -> list[Item]:
        """Frames carried over by `reconfigure` into a pipeline with nothing to hold them: send them now."""
        items, self._carry_out = self._carry_out, []
        return items

    def stats(self) -> dict[str, Any]:
        """JSON-able counters of this direction."""
        counters = self.counters
        return {
            "rx_packets": counters.rx_packets,
            "rx_bytes": counters.rx_bytes,
            "tx_packets": counters.tx_packets,
            "tx_bytes": counters.tx_bytes,
            "dropped": self.drops(),
            "queued_packets": self.held_packets(),
            "queued_bytes": self.held_bytes(),
            "queue_delay_ms": self.queue_delay.summary_ms(),
            "sojourn_ms": counters.sojourn.summary_ms(),
            "late_ms": counters.late.summary_ms(),
            "stages": [stage.name for stage in self.stages],
            "fast_path": self.fast,
            **self._per_ue(),
        }

    def _per_ue(self) -> dict[str, Any]:
        """Frames a per-UE scheduler (netem.link.cellsched) chose among backlogged UEs, per UE; a frame reaching an idle link is sent at once and not counted."""
        for stage in self.stages:
            per_ue = getattr(getattr(stage, "queue", None), "per_ue", None)
            if per_ue is not None:
                return {"scheduled_per_ue": per_ue()}
        return {}
