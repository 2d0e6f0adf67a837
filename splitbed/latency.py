"""Predicted end-to-end latency per partition, in the spirit of Neurosurgeon (Kang et al., ASPLOS 2017): compute
figures (measured elsewhere, e.g. splitbed.measure) plus the link model (splitbed.linkmodel), ranked.

Per partition (docs/SWEEP.md, "Advisor"):

    predicted e2e = preprocess + head(UE device) + encode + uplink(bytes) + decode + tail(edge device)
                    + downlink(result) + result decode
    predicted UE energy = compute power x head(UE device) + radio model(uplink bytes, uplink time)

On a device (splitbed.devices, docs/DEVICES.md) a sub-model takes the device's full-model latency x its share of
the model's time on this machine, measured as the nodes measure it (splitbed.devices.emulation.measure_share);
on `host` (or without a device) it takes the time measured here. This is what the testbed's nodes emulate, so
prediction and measurement describe the same device.

Each transfer starts with the window the sender's earlier transfers and its idle left (splitbed.tcpflow: Linux
halves the window once per RTO of idle): the uplink's sender idles through everything else in one cycle; the
downlink's, the remote node, idles from one result to the next (local work, the uplink, the remote's own work).
The downlink carries the RESULT message (1000 scores as JSON in
the full result mode of the TensorFlow/Keras testbed contribution, docs/REFERENCES.md; the best top_k pairs in the
default topk mode).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from splitbed.devices import DeviceError, DeviceProfile
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
    head_share: float | None = None  # the head's / tail's share of the model's time here (devices.measure_share)
    tail_share: float | None = None


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
    local_ms: float      # preprocess + head (on the UE device) + encode
    uplink_ms: float
    remote_ms: float     # decode + tail (on the edge device)
    downlink_ms: float   # result transfer + local result decode
    e2e_ms: float
    slow_start: bool     # the uplink pays round trips for its window (it restarts below what the transfer needs)
    head_ms: float = 0.0                 # the head on the UE device (device latency x share; host: measured)
    tail_ms: float = 0.0                 # the tail on the edge device
    compute_mj: float | None = None      # UE energy, MODEL-BASED: compute power x head_ms
    radio_mj: float | None = None        # UE energy: radio model on uplink_bytes and uplink_ms
    ue_energy_mj: float | None = None    # compute + radio (None when either is unknown)


OBJECTIVES = ("latency", "energy")


def device_ms(device: DeviceProfile | None, model: str, share: float | None, host_ms: float, what: str) -> float:
    """A sub-model's time on `device`: its full-model latency x the sub-model's share (host: the time measured)."""
    if device is None or device.is_host:
        return host_ms
    if share is None:
        raise AdviseError(f"the {what} share of the model was not measured (measure_model with shares=True)")
    try:
        return device.full_model_ms(model) * share
    except DeviceError as exc:
        raise AdviseError(str(exc)) from None


def predict(timing: ModelTiming, link: LinkModel, *, ue_device: DeviceProfile | None = None,
            edge_device: DeviceProfile | None = None, objective: str = "latency") -> list[Prediction]:
    """Predicted end-to-end latency and UE energy per partition, best first by `objective`. Without devices the
    UE and the edge compute at this machine's speed (the `host` device)."""
    if objective not in OBJECTIVES:
        raise AdviseError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    radio = None
    if ue_device is not None and not ue_device.is_host:
        radio, reason = ue_device.radio_for(link.radio)
        if radio is None and objective == "energy":
            raise AdviseError(f"cannot rank by energy on {link.profile}: {reason}; use --objective latency")
    elif objective == "energy":
        raise AdviseError("ranking by energy needs a UE device profile with power figures (--ue-device), not host")
    predictions = []
    for part in timing.partitions:
        head = device_ms(ue_device, timing.model, part.head_share, part.head_ms, "head")
        tail = device_ms(edge_device, timing.model, part.tail_share, part.tail_ms, "tail")
        local = timing.preprocess_ms + head + part.encode_ms
        remote = part.decode_ms + tail
        # Each sender's window is what its earlier transfers and the idle between them left (splitbed.tcpflow). The
        # uplink's sender waits from its delivery through the rest of the cycle; the downlink's, the remote node,
        # from one RESULT's delivery to the next (the local work, the uplink, its own work). Each idle depends on
        # the other direction's transfer: start the downlink's from the uplink's one-way delay alone, then settle.
        uplink_ms = link.uplink.delay_ms
        for _ in range(2):
            down = link.downlink.steady_transfer(part.result_bytes, rtt_ms=link.rtt_ms,
                                                 between_ms=timing.result_decode_ms + local + uplink_ms + remote,
                                                 slow_start_after_idle=link.slow_start_after_idle)
            downlink = down.ms + timing.result_decode_ms
            up = link.uplink.steady_transfer(part.uplink_bytes, rtt_ms=link.rtt_ms,
                                             between_ms=remote + downlink + local,
                                             slow_start_after_idle=link.slow_start_after_idle)
            uplink_ms = up.ms
        uplink, slow_start = uplink_ms, up.pays_round_trips
        compute_mj = radio_mj = None
        if ue_device is not None and ue_device.compute_power is not None:
            compute_mj = ue_device.compute_power.watts * head
        if radio is not None:
            radio_mj = sum(radio.energy_mj(part.uplink_bytes, uplink))
        energy = None if compute_mj is None or radio_mj is None else compute_mj + radio_mj
        predictions.append(Prediction(part.partition, part.partition_id, part.uplink_bytes, local, uplink, remote,
                                      downlink, local + uplink + remote + downlink, slow_start, head, tail,
                                      compute_mj, radio_mj, energy))
    if objective == "energy":
        return sorted(predictions, key=lambda p: (p.ue_energy_mj or 0.0, p.partition_id))
    return sorted(predictions, key=lambda p: (p.e2e_ms, p.partition_id))
