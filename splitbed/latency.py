"""Predicted end-to-end latency per partition, in the spirit of Neurosurgeon (Kang et al., ASPLOS 2017): compute
figures (measured elsewhere, e.g. splitbed.measure) plus the link model (splitbed.linkmodel), ranked.

Per partition (docs/SWEEP.md, "Advisor"):

    predicted e2e = preprocess + head x ue_slowdown + encode + uplink(bytes) + decode + tail + downlink(result)
                    + result decode

Each sender restarts slow start if it sat idle longer than its RTO (splitbed.linkmodel): the uplink's sender
idles through everything else in one cycle; the downlink's, the remote node, idles from one result to the next
(local work, the uplink, the remote's own work). The downlink carries the RESULT message (1000 scores as JSON in
the full result mode of the TensorFlow/Keras testbed contribution, docs/REFERENCES.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from splitbed.linkmodel import LinkModel


class AdviseError(ValueError):
    """The advisor cannot predict for these options."""


@dataclass(frozen=True)
class PartitionTiming:
    """What one partition costs on this machine (medians of `repeats` runs)."""

    partition: str
    partition_id: int
    head_ms: float
    tail_ms: float
    encode_ms: float
    decode_ms: float
    raw_bytes: int
    uplink_bytes: int   # one data unit (TLV or JSON-baseline carriage), AIPS not included
    result_bytes: int   # the RESULT message on the downlink (estimate: the scores as JSON + fixed overhead)


@dataclass(frozen=True)
class ModelTiming:
    """Timings of every partition of a model, and the per-inference figures that do not depend on it."""

    model: str
    encoding: str
    compression: str
    image: str
    weights: dict[str, Any]
    repeats: int
    preprocess_ms: float
    result_decode_ms: float
    partitions: tuple[PartitionTiming, ...]
    measured_at_utc: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



@dataclass(frozen=True)
class Prediction:
    partition: str
    partition_id: int
    uplink_bytes: int
    local_ms: float      # preprocess + head (x slowdown) + encode
    uplink_ms: float
    remote_ms: float     # decode + tail
    downlink_ms: float   # result transfer + local result decode
    e2e_ms: float
    slow_start: bool


def predict(timing: ModelTiming, link: LinkModel, *, ue_slowdown: float = 1.0) -> list[Prediction]:
    """Predicted end-to-end latency per partition, best first."""
    if not 0 < ue_slowdown <= 1000:
        raise AdviseError(f"ue_slowdown must be in (0, 1000], got {ue_slowdown}")
    predictions = []
    for part in timing.partitions:
        local = timing.preprocess_ms + part.head_ms * ue_slowdown + part.encode_ms
        remote = part.decode_ms + part.tail_ms
        # Each sender sat idle since its previous transfer: everything else in one cycle (the downlink's lower
        # bound counts the uplink's one-way delay only, which is all a restart decision needs here).
        down_idle = timing.result_decode_ms + local + link.uplink.delay_ms + remote
        downlink = link.downlink.transfer_ms(part.result_bytes, rtt_ms=link.rtt_ms,
                                             slow_start=link.restarts_after(down_idle))
        downlink += timing.result_decode_ms
        idle = local + remote + downlink + link.uplink.delay_ms
        slow_start = link.restarts_after(idle)
        uplink = link.uplink.transfer_ms(part.uplink_bytes, rtt_ms=link.rtt_ms, slow_start=slow_start)
        predictions.append(Prediction(part.partition, part.partition_id, part.uplink_bytes, local, uplink, remote,
                                      downlink, local + uplink + remote + downlink, slow_start))
    return sorted(predictions, key=lambda p: (p.e2e_ms, p.partition_id))
