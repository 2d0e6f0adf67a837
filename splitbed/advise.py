"""The partition advisor, in the spirit of Neurosurgeon (Kang et al., ASPLOS 2017): predict each partition's
end-to-end latency (or the UE's energy) from the devices' profiles, the partition's share of the model measured
on this machine, the intermediate data size, and the link profile, then rank the partitions.

Per partition (docs/SWEEP.md, "Advisor"):

    predicted e2e = preprocess + head(UE device) + encode + uplink(bytes) + decode + tail(edge device)
                    + downlink(result) + result decode
    predicted UE energy = compute power x head(UE device) + radio model(uplink bytes, uplink time)

- compute: the partition's head and tail are built and timed here with the nodes' own call (ModelRunner,
  `predict_on_batch` after a warm-up), median of `repeats`. On a device (splitbed.devices, docs/DEVICES.md) a
  sub-model takes the device's full-model latency x its share of the model's time on this machine, measured as
  the nodes measure it (splitbed.devices.emulation.measure_share: process CPU time, median of back-to-back
  rounds); on `host` it takes the time measured here. This is what the testbed's nodes emulate, so prediction and
  measurement describe the same device;
- bytes: the real data unit the local node would send for this image and carriage (steady state: the AIPS is
  sent once per session, so it is not counted), encode/decode timed with the nodes' format adapter;
- uplink(bytes): one-way delay + frames on the wire (1448-byte TCP segments + 66 bytes of TCP/IP/Ethernet
  headers, the bytes a rate limit counts) at the profile's rate. If the sender sat idle longer than its RTO since
  its last transfer (Linux: smoothed RTT + at least TCP_RTO_MIN = 200 ms, so RTT + 200 ms) and the kernel
  restarts slow start after idle (Linux default), the transfer starts again from an initial window of 10
  segments, doubling each round trip until the window covers the bandwidth-delay product. Unshaped directions
  use `unshaped_rate_mbit` (None: no transmission time, but still the round trips of a restarted window);
  trace-driven ones take each transmission's median time over evenly spaced start phases of the trace
  (netem.trace.delivery_ms), not the trace's mean rate, which a trace with slow stretches and outages makes
  optimistic (5g-mmwave-driving: mean 150 Mbit/s, but a 3.3 MB upload takes 390 ms at the median phase, not
  the 176 ms the mean implies);
- downlink: the RESULT message (1000 scores as JSON in the seed's full mode) the same way; its sender, the
  remote node, idles from one result to the next (local work, the uplink, the remote's own work).

`compare` puts the prediction next to a measurement (e.g. a sweep on the real testbed): Spearman rank correlation
and which pairs of partitions are ranked in the wrong order although their measured 95% CIs do not overlap.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netem.profile import DirectionProfile, LinkProfile
from netem.trace import MahimahiTrace, Trace, delivery_ms, start_phases_ms
from netem.trace import load as load_trace
from splitbed.devices import DeviceError, DeviceProfile

MSS_BYTES = 1448               # TCP payload per segment: 1500 MTU - 20 IP - 32 TCP (with timestamps)
FRAME_OVERHEAD_BYTES = 66      # 14 Ethernet + 20 IP + 32 TCP: what a rate limit counts on top of the payload
ETHERNET_HEADER_BYTES = 14     # not counted by a mahimahi trace, which counts IP packets
INITIAL_WINDOW_SEGMENTS = 10   # Linux initial congestion window (RFC 6928)
MIN_RTO_MS = 200.0             # Linux TCP_RTO_MIN
RESULT_OVERHEAD_BYTES = 600    # RESULT message fields besides the scores (timestamps, resources, ids)
SLOW_START_SYSCTL = Path("/proc/sys/net/ipv4/tcp_slow_start_after_idle")
MAX_REPEATS = 1000


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
class DirectionModel:
    """One direction of the link as the predictor sees it.

    `trace`: a capacity trace the direction follows; transmission times then come from the trace itself (the
    median over start phases, netem.trace.delivery_ms) and `rate_mbit` is the rate the link has at the median
    start phase, used only to size the bandwidth-delay product."""

    rate_mbit: float | None
    delay_ms: float
    rate_note: str = ""
    trace: Trace | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_profile(cls, direction: DirectionProfile, unshaped_rate_mbit: float | None) -> DirectionModel:
        if direction.trace is not None:
            trace = load_trace(direction.trace.path, direction.trace.kind)
            typical = trace_rate_at_median_phase(trace)
            note = (f"trace, {typical:.1f} Mbit/s at the median of {len(start_phases_ms(trace))} start phases; "
                    f"mean {trace.mean_rate_mbit():.1f}")
            return cls(typical, direction.delay_ms, note, trace)
        if direction.rate_mbit is None:
            note = "unshaped: no transmission time" if unshaped_rate_mbit is None else \
                f"unshaped: taken as {unshaped_rate_mbit:g} Mbit/s"
            return cls(unshaped_rate_mbit, direction.delay_ms, note)
        return cls(direction.rate_mbit, direction.delay_ms, f"{direction.rate_mbit:g} Mbit/s")

    def serialisation_ms(self, payload_bytes: int) -> float:
        if self.trace is not None:
            return _trace_serialisation_ms(self.trace, payload_bytes)
        if self.rate_mbit is None:
            return 0.0
        return wire_bytes(payload_bytes) * 8 / (self.rate_mbit * 1e3)

    def transfer_ms(self, payload_bytes: int, *, rtt_ms: float, slow_start: bool,
                    window: SendWindow | None = None) -> float:
        """Time from the first byte sent to the last byte delivered.

        `window`: the congestion window the sender starts with, read off its socket (SendWindow.from_tcp_state);
        it overrides `slow_start`. Without it: slow_start=True starts from the initial window, False assumes a
        window that already covers the bandwidth-delay product (the transfer runs at the link's rate)."""
        if payload_bytes <= 0:
            return self.delay_ms
        if window is None:
            if not slow_start:
                return self.delay_ms + self.serialisation_ms(payload_bytes)
            window = SendWindow(INITIAL_WINDOW_SEGMENTS)
        bdp_bytes = math.inf if self.rate_mbit is None else self.rate_mbit * 1e3 / 8 * rtt_ms
        cwnd, ssthresh, mss = max(1, window.cwnd_segments), window.ssthresh_segments, window.mss_bytes
        sent, elapsed = 0, 0.0
        while payload_bytes - sent > cwnd * mss and cwnd * mss < bdp_bytes:
            sent += cwnd * mss                           # one window, then wait for its ACKs
            elapsed += max(rtt_ms, self.serialisation_ms(cwnd * mss))
            cwnd = window.next_cwnd(cwnd, ssthresh)
        return elapsed + self.serialisation_ms(payload_bytes - sent) + self.delay_ms


@dataclass(frozen=True)
class SendWindow:
    """The congestion window a transfer starts with, in segments of `mss_bytes`.

    Growth per round trip: slow start (doubling) below `ssthresh_segments` (None: no threshold yet), then one
    segment per round trip (congestion avoidance; CUBIC grows at least that fast right after an idle restart,
    which re-bases its curve on the current window)."""

    cwnd_segments: int
    ssthresh_segments: int | None = None
    mss_bytes: int = MSS_BYTES

    @staticmethod
    def next_cwnd(cwnd: int, ssthresh: int | None) -> int:
        if ssthresh is None:
            return cwnd * 2
        if cwnd < ssthresh:
            return min(cwnd * 2, max(ssthresh, cwnd + 1))
        return cwnd + 1

    @classmethod
    def from_tcp_state(cls, state: dict[str, Any], *, slow_start_after_idle: bool) -> SendWindow:
        """The window of a sender whose TCP_INFO (netem.tcpinfo, as recorded in a metrics record) was read just
        before the transfer, after the kernel's restart-after-idle rule."""
        from netem.tcpinfo import TcpState

        tcp = TcpState.from_dict(state)
        cwnd, ssthresh = tcp.send_window_segments(slow_start_after_idle=slow_start_after_idle,
                                                  initial_window=INITIAL_WINDOW_SEGMENTS)
        return cls(cwnd, ssthresh, tcp.mss_bytes or MSS_BYTES)


def wire_bytes(payload_bytes: int) -> int:
    """Bytes a rate limit counts for a TCP payload: full segments plus headers per frame."""
    frames = max(1, math.ceil(payload_bytes / MSS_BYTES))
    return payload_bytes + frames * FRAME_OVERHEAD_BYTES


def _trace_serialisation_ms(trace: Trace, payload_bytes: int) -> float:
    """Median transmission time of a payload over the trace's start phases, counting bytes as its stage does
    (Ethernet frames for throughput traces; IP packets, 14 bytes less per frame, for mahimahi ones)."""
    counted = wire_bytes(payload_bytes)
    if isinstance(trace, MahimahiTrace):
        counted -= max(1, math.ceil(payload_bytes / MSS_BYTES)) * ETHERNET_HEADER_BYTES
    return float(np.median(delivery_ms(trace, counted, start_phases_ms(trace))))


def trace_rate_at_median_phase(trace: Trace) -> float:
    """The trace's capacity (Mbit/s) exceeded at half of all start phases: what a transfer typically meets."""
    one_second = 125_000  # bytes: the average rate over 1 s of transmission from each phase
    times = delivery_ms(trace, one_second, start_phases_ms(trace))
    return float(one_second * 8 / (np.median(times) * 1e3))


@dataclass(frozen=True)
class LinkModel:
    uplink: DirectionModel
    downlink: DirectionModel
    profile: str
    slow_start_after_idle: bool
    radio: str | None = None  # the profile's radio access (netem.profile.RADIO_ACCESS), for the UE's radio energy

    @classmethod
    def from_profile(cls, profile: LinkProfile | str, *, unshaped_rate_mbit: float | None = None,
                     slow_start_after_idle: bool | None = None) -> LinkModel:
        link = profile if isinstance(profile, LinkProfile) else LinkProfile.load(profile)
        if slow_start_after_idle is None:
            slow_start_after_idle = _sysctl_slow_start()
        return cls(DirectionModel.from_profile(link.uplink, unshaped_rate_mbit),
                   DirectionModel.from_profile(link.downlink, unshaped_rate_mbit), link.name, slow_start_after_idle,
                   link.radio)

    @property
    def rtt_ms(self) -> float:
        return self.uplink.delay_ms + self.downlink.delay_ms

    def restarts_after(self, idle_ms: float) -> bool:
        """Whether a sender idle this long restarts from the initial window: idle longer than its RTO, which
        Linux keeps at the smoothed RTT + at least TCP_RTO_MIN."""
        return self.slow_start_after_idle and idle_ms > self.rtt_ms + MIN_RTO_MS


def _sysctl_slow_start() -> bool:
    try:
        return SLOW_START_SYSCTL.read_text().strip() != "0"
    except OSError:
        return True  # the Linux default


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
    slow_start: bool
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
        # Each sender sat idle since its previous transfer: everything else in one cycle (the downlink's lower
        # bound counts the uplink's one-way delay only, which is all a restart decision needs here).
        down_idle = timing.result_decode_ms + local + link.uplink.delay_ms + remote
        downlink = link.downlink.transfer_ms(part.result_bytes, rtt_ms=link.rtt_ms,
                                             slow_start=link.restarts_after(down_idle))
        downlink += timing.result_decode_ms
        idle = local + remote + downlink + link.uplink.delay_ms
        slow_start = link.restarts_after(idle)
        uplink = link.uplink.transfer_ms(part.uplink_bytes, rtt_ms=link.rtt_ms, slow_start=slow_start)
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


# -- measuring compute on this machine --------------------------------------------------------------------------
def measure_model(model: str, *, partitions: Sequence[str] | None = None, weights: str = "auto",
                  image: str = "builtin:chelsea", encoding: str = "tlv", compression: str = "none",
                  repeats: int = 5, on_partition: Callable[[str], None] | None = None) -> ModelTiming:
    """Build and time every (or the given) partition of `model` here, with the nodes' own code paths."""
    timings = measure_carriages(model, [(encoding, compression)], partitions=partitions, weights=weights,
                                image=image, repeats=repeats, on_partition=on_partition)
    return next(iter(timings.values()))


def measure_carriages(model: str, carriages: Sequence[tuple[str, str]], *, partitions: Sequence[str] | None = None,
                      weights: str = "auto", image: str = "builtin:chelsea", repeats: int = 5,
                      on_partition: Callable[[str], None] | None = None,
                      shares: bool = True) -> dict[tuple[str, str], ModelTiming]:
    """`measure_model` for several (encoding, compression) carriages at once: compute is timed once, encoding,
    decoding and sizes per carriage. Keys are (encoding, compression) with compression "none" for json-baseline.
    `shares`: also each head's and tail's share of the model's time, as the nodes' device emulation measures it
    (needed to predict on a device profile)."""
    from datetime import datetime, timezone

    import numpy as np

    from splitbed.models import preprocess
    from splitbed.nodes import formatio
    from splitbed.nodes.images import resolve_image
    from splitbed.nodes.runner import ModelRunner
    from splitbed.sweep.plan import resolve_partitions

    if not 1 <= repeats <= MAX_REPEATS:
        raise AdviseError(f"repeats must be 1..{MAX_REPEATS}, got {repeats}")
    wanted: dict[tuple[str, str], int] = {}
    for encoding, compression in carriages:
        if encoding not in ("tlv", "json-baseline"):
            raise AdviseError(f"encoding must be tlv or json-baseline, got {encoding!r}")
        key = (encoding, compression if encoding == "tlv" else "none")
        wanted[key] = formatio.profile_id(compression)[0] if encoding == "tlv" else 0
    names = resolve_partitions(model, list(partitions) if partitions else ["all"])
    runner = ModelRunner(weights=weights)
    spec = runner.spec(model)
    path = resolve_image(image)
    prepared = preprocess.load_image(path, spec)
    preprocess_ms = _median_ms(lambda: preprocess.load_image(path, spec), repeats)
    plans, outputs = [], []
    for name in names:  # build and warm every partition first
        if on_partition is not None:
            on_partition(name)
        plans.append(runner.plan(model, name))
        outputs.append(ModelRunner.run_head(plans[-1], prepared.array))
    # Compute is timed round-robin over the partitions, so that load from elsewhere on a shared machine falls on
    # all of them alike instead of on whichever partition happened to be timed at that moment.
    head: list[list[float]] = [[] for _ in plans]
    tail: list[list[float]] = [[] for _ in plans]
    for _ in range(repeats):
        for i, (plan, arrays) in enumerate(zip(plans, outputs, strict=True)):
            head[i].append(_time_once(functools.partial(ModelRunner.run_head, plan, prepared.array)))
            tail[i].append(_time_once(functools.partial(ModelRunner.run_tail, plan, arrays)))
    head_shares: list[float | None] = [None] * len(plans)
    tail_shares: list[float | None] = [None] * len(plans)
    if shares:
        from splitbed.devices.emulation import call_overhead_cpu_ms, measure_share
        from splitbed.nodes.runner import model_calls

        full_call, identity_call = model_calls(runner.load(model))
        overhead = call_overhead_cpu_ms(identity_call)
        for i, (plan, arrays) in enumerate(zip(plans, outputs, strict=True)):
            head_shares[i] = measure_share(functools.partial(ModelRunner.run_head, plan, prepared.array),
                                           full_call, overhead).share
            tail_shares[i] = measure_share(functools.partial(ModelRunner.run_tail, plan, arrays), full_call,
                                           overhead).share
    results: dict[tuple[str, str], list[PartitionTiming]] = {key: [] for key in wanted}
    result_decode_ms = 0.0
    for i, (name, plan, arrays) in enumerate(zip(names, plans, outputs, strict=True)):
        scores = ModelRunner.run_tail(plan, arrays)
        result = json.dumps({"preds": np.asarray(scores, dtype=np.float64).ravel().tolist()},
                            separators=(",", ":"))
        result_decode_ms = max(result_decode_ms, _median_ms(functools.partial(json.loads, result), repeats))
        for (encoding, compression), profile_id in wanted.items():
            if encoding == "tlv":
                encode_ms, decode_ms, unit_bytes = _time_tlv(arrays, plan.partition_id, profile_id, repeats)
            else:
                encode_ms, decode_ms, unit_bytes = _time_json(arrays, plan.partition_id, repeats)
            results[(encoding, compression)].append(PartitionTiming(
                name, plan.partition_id, float(statistics.median(head[i])), float(statistics.median(tail[i])),
                encode_ms, decode_ms, int(sum(a.nbytes for a in arrays)), unit_bytes,
                len(result) + RESULT_OVERHEAD_BYTES, head_shares[i], tail_shares[i]))
    measured_at = datetime.now(timezone.utc).isoformat()
    return {key: ModelTiming(model, key[0], key[1], image, runner.weights_info(model), repeats, preprocess_ms,
                             result_decode_ms, tuple(parts), measured_at) for key, parts in results.items()}


def _time_tlv(arrays: list[Any], partition_id: int, profile_id: int, repeats: int) -> tuple[float, float, int]:
    """(encode ms, decode ms, data unit bytes) of the AIPS/TLV carriage, with the nodes' format adapter."""
    from splitbed.nodes import formatio

    aips = formatio.build_aips(1, partition_id, arrays, profile_id)
    encode_ms = _median_ms(lambda: formatio.data_unit(aips, arrays), repeats)
    unit = b"".join(formatio.data_unit(aips, arrays))
    aips_bytes = formatio.aips_unit(aips)
    samples = []
    for _ in range(repeats):
        session = formatio.FormatSession(max_unit_bytes=len(unit) + 4096)
        session.feed(aips_bytes)
        session.drain()
        start = time.perf_counter_ns()
        session.feed(unit)
        outcome = session.drain()
        samples.append((time.perf_counter_ns() - start) / 1e6)
        if outcome.complete is None:
            raise AdviseError(f"the format decoder did not return the tensors of partition {partition_id}")
    return encode_ms, float(statistics.median(samples)), len(unit)


def _time_json(arrays: list[Any], partition_id: int, repeats: int) -> tuple[float, float, int]:
    """(encode ms, decode ms, unit bytes) of the JSON baseline carriage."""
    from splitbed.nodes import formatio
    from splitbed.nodes.protocol import HEADER

    unit = formatio.json_baseline_unit(arrays, partition_id)
    encode_ms = _median_ms(lambda: formatio.json_baseline_unit(arrays, partition_id), repeats)
    payload = unit[HEADER.size:]
    decode_ms = _median_ms(lambda: formatio.decode_json_baseline(payload, len(payload)), repeats)
    return encode_ms, decode_ms, len(unit)


def _time_once(call: Callable[[], Any]) -> float:
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1e6


def _median_ms(call: Callable[[], Any], repeats: int) -> float:
    return float(statistics.median(_time_once(call) for _ in range(repeats)))


# -- prediction vs measurement -----------------------------------------------------------------------------------
def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties get their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson correlation of the ranks; ties averaged)."""
    if len(a) != len(b) or len(a) < 2:
        raise AdviseError("spearman needs two equally long sequences of at least 2 values")
    ra, rb = ranks(a), ranks(b)
    mean_a, mean_b = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(ra, rb, strict=True))
    var_a = sum((x - mean_a) ** 2 for x in ra)
    var_b = sum((y - mean_b) ** 2 for y in rb)
    if var_a == 0 or var_b == 0:
        return 1.0 if var_a == var_b else 0.0
    return cov / math.sqrt(var_a * var_b)


@dataclass(frozen=True)
class Measured:
    """A measured median end-to-end latency with its 95% CI (None: n too small for one)."""

    median_ms: float
    low_ms: float | None = None
    high_ms: float | None = None
    n: int = 0


@dataclass
class Comparison:
    """Predicted next to measured, over the partitions both have."""

    rows: list[tuple[Prediction, Measured]]
    spearman: float
    predicted_best: str
    measured_best: str
    contradictions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def best_matches(self) -> bool:
        return self.predicted_best == self.measured_best

    @property
    def best_indistinguishable(self) -> bool:
        """The predicted best is the measured best, or the measurement cannot tell the two apart: their 95% CIs
        overlap (or one has none), so picking either is right within what was measured."""
        if self.best_matches:
            return True
        measured = {p.partition: m for p, m in self.rows}
        a, b = measured[self.predicted_best], measured[self.measured_best]
        if None in (a.low_ms, a.high_ms, b.low_ms, b.high_ms):
            return True
        assert a.low_ms is not None and b.high_ms is not None
        return a.low_ms <= b.high_ms  # the measured best lies below the predicted best: overlap iff a.low <= b.high


def compare(predictions: Sequence[Prediction], measured: dict[str, Measured],
            objective: str = "latency") -> Comparison:
    """Spearman over the common partitions, best of each, and the `contradictions`: pairs the prediction orders
    one way while the measurement clearly (non-overlapping 95% CIs) orders them the other way. `objective`:
    what both rank by (the measured values are then energies, in mJ, in the `_ms` fields)."""
    rows = [(p, measured[p.partition]) for p in predictions if p.partition in measured]
    if len(rows) < 2:
        raise AdviseError("need measurements of at least two predicted partitions to compare rankings")

    def value(p: Prediction) -> float:
        return (p.ue_energy_mj or 0.0) if objective == "energy" else p.e2e_ms

    rho = spearman([value(p) for p, _ in rows], [m.median_ms for _, m in rows])
    contradictions = []
    for i, (p_a, m_a) in enumerate(rows):
        for p_b, m_b in rows[i + 1:]:
            predicted_a_first = value(p_a) <= value(p_b)
            if m_a.high_ms is not None and m_b.low_ms is not None and m_a.high_ms < m_b.low_ms:
                measured_a_first: bool | None = True
            elif m_b.high_ms is not None and m_a.low_ms is not None and m_b.high_ms < m_a.low_ms:
                measured_a_first = False
            else:
                measured_a_first = None  # not clearly separated by the measurement
            if measured_a_first is not None and measured_a_first != predicted_a_first:
                contradictions.append((p_a.partition, p_b.partition))
    best_predicted = min(rows, key=lambda r: value(r[0]))[0].partition
    best_measured = min(rows, key=lambda r: r[1].median_ms)[0].partition
    return Comparison(rows, rho, best_predicted, best_measured, contradictions)


def record_figure(record: dict[str, Any], objective: str) -> float | None:
    """What a measured record says for `objective`: the end-to-end latency (the modelled one where a device
    faster than the host was modelled), or the UE's model-based energy (compute + radio)."""
    if objective == "energy":
        energy = record.get("ue_energy") or {}
        value = energy.get("total_mj")
    else:
        modelled = record.get("e2e_latency_modelled_ms")
        value = modelled if modelled is not None else record.get("e2e_latency_ms")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def measure_on_testbed(bed: Any, model: str, partitions: Sequence[str], *, encoding: str = "tlv",
                       compression: str = "none", image: str = "builtin:chelsea", repetitions: int = 6,
                       warmup: int = 1, objective: str = "latency") -> dict[str, Measured]:
    """Median end-to-end latency (or UE energy, by `objective`) and 95% CI per partition, measured on a running
    Testbed (its devices emulated by its nodes).

    On a trace-driven link, round k of the round-robin starts every partition's inference k/n of the trace's
    period in (splitbed.sweep.trace_phases), so partitions meet the same capacities, spread over the whole
    trace, as the prediction (the median over start phases) assumes."""
    from splitbed.sweep.stats import median_ci
    from splitbed.sweep.trace_phases import at_repetition, is_trace_driven

    base = getattr(bed, "profile", None)
    trace_profile = base if isinstance(base, LinkProfile) and is_trace_driven(base) else None

    def run(job: dict[str, Any], round_index: int, tags: dict[str, Any]) -> list[dict[str, Any]]:
        if trace_profile is not None:
            bed.update_link(at_repetition(trace_profile, round_index, repetitions))
        return list(bed.run(dict(job, tags=tags)))

    jobs = {name: {"model": model, "partition": name, "encoding": encoding, "compression": compression,
                   "image": image, "repetitions": 1} for name in partitions}
    for job in jobs.values():
        for _ in range(warmup):
            run(job, 0, {"advise": True, "warmup": True})
    samples: dict[str, list[float]] = {name: [] for name in partitions}
    for round_index in range(repetitions):  # round-robin, like the compute timings: load drifts hit all alike
        for name, job in jobs.items():
            samples[name] += [value for r in run(job, round_index, {"advise": True})
                              if r.get("status") == "ok" and (value := record_figure(r, objective)) is not None]
    if trace_profile is not None:
        bed.update_link(trace_profile)
    result = {}
    for name, values in samples.items():
        stats = median_ci(values)
        if stats.median is None:
            raise AdviseError(f"no successful inference at {name} on the testbed")
        result[name] = Measured(stats.median, stats.low, stats.high, stats.n)
    return result
