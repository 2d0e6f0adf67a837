"""The adaptive local-node policy: choose the partition (and optionally the compression profile) per inference
from the uplink delivery rate the node observes and the partition advisor's latency model.

It runs inside the local node (a job with `"partition": "adaptive"` and a `"policy"` table; docs/SCENARIOS.md):

1. **Probe**: the first inferences go round-robin, `probe_repetitions` times, through every candidate arm
   (partition x compression), on the live link. Their records give what the advisor's model needs, measured here and now:
   preprocess, head, encode, remote decode and tail times, the data unit's size, the downlink time.
2. **Estimate the uplink**: every record gives one rate sample: the rate at which the advisor's transfer model
   (`splitbed.linkmodel`: one-way delay + frames on the wire, `wire_bytes`) explains the measured `delivery_ms` of
   the bytes sent: rate = wire bits / (delivery - delay). TCP's window growth is not modelled apart: it is part
   of the measured (effective) rate. Samples are averaged as an EWMA of the *time per bit* (1/rate), not of the
   rate: a transfer's time is what latency is made of, and this average reacts to a drop at once and to a
   recovery more cautiously. The one-way delay is half the session's minimum ping RTT (clock exchange at
   session start). A failed inference that stalled (timeout) counts as a sample of at most bytes / time waited.
3. **Decide**: predicted e2e per arm = preprocess + head x `ue_slowdown` + encode + uplink(bytes, rate, delay)
   + decode + tail + downlink + result decode (the advisor's formula, `splitbed.latency.predict`). Compute
   figures are medians over the arm's last `window` successful records (probes included): a median, because on
   a shared CPU single inferences spike (x `ue_slowdown` a spike would decide alone). Arms not run lately keep
   their last figures. Switch to the best arm only if it beats the current one by more than `hysteresis` (a fraction) and the
   current one has run `min_dwell` inferences: no flapping on noise.

`ue_slowdown` (as in `splitbed advise`) makes the decision as if the UE computed that many times slower than
the process measured; with the `process` node runtime the measured latencies do not include it (say so when
reporting), with the docker runtime and a CPU limit the measured head times already do.

`AdaptivePolicy` is pure logic (records in, decisions out), unit-tested without a network; `run_adaptive` is
the hook the local node calls.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from netem.fields import Checker
from splitbed.linkmodel import DirectionModel, wire_bytes

ADAPTIVE = "adaptive"  # the job's partition value that hands the choice to this policy
POLICY_NAME = "ewma-advisor"
MAX_CANDIDATES = 64
MAX_POLICIES = 16  # policies one local node keeps (one per model, encoding and policy table)
MIN_RATE_MBIT = 0.001
MAX_RATE_MBIT = 100_000.0


class PolicyError(ValueError):
    """A policy table that cannot work; the message names the key and what is allowed."""


_check = Checker(PolicyError)


@dataclass(frozen=True)
class PolicyConfig:
    """What the policy may choose from and how eagerly it reacts (docs/SCENARIOS.md, `[policy]`)."""

    candidates: tuple[str | int, ...] = ()      # partitions (names or ids); empty: all of the model's
    compressions: tuple[str | int, ...] = ("none",)
    alpha: float = 0.5                          # EWMA weight of the newest rate sample (time per bit)
    window: int = 5                             # records per arm whose medians give its compute figures
    hysteresis: float = 0.15                    # switch only for a predicted gain above this fraction
    min_dwell: int = 1                          # inferences on an arm before another switch
    ue_slowdown: float = 1.0                    # head time x this (as `splitbed advise --ue-slowdown`)
    probe_repetitions: int = 3                  # inferences per arm while probing (medians)
    initial_rate_mbit: float | None = None      # prior before any sample (None: from the probes)

    @classmethod
    def from_dict(cls, raw: Any) -> PolicyConfig:
        """Validate a `[policy]` table / the job's `policy` object."""
        if raw is None:
            return cls()
        _check.table("policy", raw, what="a table/object")
        _check.keys("policy", raw, [f.name for f in dataclasses.fields(cls)], noun="policy keys")
        values: dict[str, Any] = {}
        for name in ("candidates", "compressions"):
            if name in raw:
                items = raw[name]
                if not isinstance(items, list) or not all(
                        isinstance(i, (str, int)) and not isinstance(i, bool) for i in items):
                    raise PolicyError(f"policy.{name} must be a list of names or ids, got {items!r}")
                if len(items) > MAX_CANDIDATES:
                    raise PolicyError(f"policy.{name} lists {len(items)} entries; at most {MAX_CANDIDATES}")
                if len(set(items)) != len(items):
                    raise PolicyError(f"policy.{name} lists an entry twice: {items!r}")
                values[name] = tuple(items)
        if "compressions" in values and not values["compressions"]:
            raise PolicyError("policy.compressions must name at least one profile (e.g. [\"none\"])")
        for name, low, high, low_open in (("alpha", 0.0, 1.0, True), ("hysteresis", 0.0, 0.9, False),
                                          ("ue_slowdown", 0.0, 1000.0, True),
                                          ("initial_rate_mbit", MIN_RATE_MBIT, MAX_RATE_MBIT, False)):
            if raw.get(name) is not None or (name in raw and name != "initial_rate_mbit"):
                values[name] = _check.number(f"policy.{name}", raw[name], low=low, high=high, low_open=low_open)
        for name, ilow, ihigh in (("min_dwell", 1, 10_000), ("probe_repetitions", 1, 100), ("window", 1, 1000)):
            if name in raw:
                values[name] = _check.integer(f"policy.{name}", raw[name], low=ilow, high=ihigh)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Arm:
    """One choice: a partition and a compression profile."""

    partition: str
    partition_id: int
    compression: str

    @property
    def label(self) -> str:
        return self.partition if self.compression in ("none", "0") else f"{self.partition}+{self.compression}"

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "partition_id": self.partition_id, "compression": self.compression}


LOCAL_PARTS = ("preprocess_ms", "local_inference_ms", "encode_ms")
REMOTE_PARTS = ("remote_decode_ms", "remote_inference_ms")
FIXED_PARTS = ("downlink_ms", "result_decode_ms")
MIN_TRANSMIT_MS = 0.2  # below this a delivery says only "fast": the sample is taken at this time


@dataclass
class ArmFigures:
    """What one arm costs: medians over its last `window` records (ms) and its newest data unit size (bytes)."""

    window: int
    samples: dict[str, deque[float]] = field(default_factory=dict)
    data_bytes: int = 0        # the data unit (AIPS not included: steady state)
    raw_bytes: int = 0

    def add(self, record: dict[str, Any]) -> None:
        for name in LOCAL_PARTS + REMOTE_PARTS + FIXED_PARTS:
            self.samples.setdefault(name, deque(maxlen=self.window)).append(float(record[name]))
        self.data_bytes = int(record.get("serialized_intermediate_bytes") or 0)
        self.raw_bytes = int(record.get("raw_intermediate_bytes") or 0)

    def median(self, name: str) -> float:
        return float(statistics.median(self.samples[name]))


@dataclass
class Decision:
    """The arm chosen for one inference and why; recorded in the record's `adaptive` field."""

    arm: Arm
    reason: str                                  # probe | initial | stay | switch
    decision_index: int
    rate_estimate_mbit: float | None
    delay_estimate_ms: float | None
    predicted_e2e_ms: dict[str, float] = field(default_factory=dict)
    previous: Arm | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"policy": POLICY_NAME, "decision_index": self.decision_index, "reason": self.reason,
                "choice": self.arm.to_dict(), "previous": None if self.previous is None else self.previous.to_dict(),
                "rate_estimate_mbit": self.rate_estimate_mbit, "delay_estimate_ms": self.delay_estimate_ms,
                "predicted_e2e_ms": dict(self.predicted_e2e_ms),
                "predicted_choice_ms": self.predicted_e2e_ms.get(self.arm.label)}


def rate_from_delivery(payload_bytes: int, delivery_ms: float, delay_ms: float) -> float:
    """The uplink rate (Mbit/s) at which the advisor's transfer model (one-way delay + frames on the wire at the
    rate) takes `delivery_ms` for `payload_bytes`; transmission times under MIN_TRANSMIT_MS count as that."""
    if payload_bytes <= 0 or not math.isfinite(delivery_ms) or not math.isfinite(delay_ms):
        raise PolicyError(f"cannot derive a rate from {payload_bytes} bytes in {delivery_ms} ms")
    transmit_ms = max(delivery_ms - delay_ms, MIN_TRANSMIT_MS)
    return min(max(wire_bytes(payload_bytes) * 8 / 1e3 / transmit_ms, MIN_RATE_MBIT), MAX_RATE_MBIT)


class AdaptivePolicy:
    """Per-inference arm choice from observed records (see the module docstring). Not thread-safe."""

    def __init__(self, config: PolicyConfig, arms: list[Arm]) -> None:
        if not arms:
            raise PolicyError("the adaptive policy needs at least one candidate arm")
        self.config = config
        self.arms = list(arms)
        self.figures: dict[Arm, ArmFigures] = {}
        self.probes_done: dict[Arm, int] = {arm: 0 for arm in arms}
        self.seconds_per_mbit: float | None = (None if config.initial_rate_mbit is None
                                               else 1.0 / config.initial_rate_mbit)
        self.delay_ms: float | None = None
        self.current: Arm | None = None
        self.last_reason: str | None = None
        self.dwell = 0
        self.decisions = 0

    @property
    def rate_estimate_mbit(self) -> float | None:
        return None if self.seconds_per_mbit is None else 1.0 / self.seconds_per_mbit

    @property
    def probing(self) -> bool:
        return any(n < self.config.probe_repetitions for n in self.probes_done.values())

    # -- deciding ------------------------------------------------------------------------------------------
    def decide(self) -> Decision:
        index = self.decisions
        self.decisions += 1
        previous = self.current
        known = [a for a in self.arms if a in self.figures]
        if self.probing or not known:  # (every probe failed: probe again, round-robin)
            # Round-robin over the arms (the fewest probes first), as the advisor times partitions: load from
            # elsewhere on a shared machine then falls on all arms alike, not on whichever was being probed.
            fewest = min(self.probes_done.values())
            probe = next(a for a in self.arms if self.probes_done[a] == fewest) if self.probing \
                else self.arms[index % len(self.arms)]
            return self._commit(Decision(probe, "probe", index, self.rate_estimate_mbit, self.delay_ms,
                                         previous=previous))
        predicted = self.predict()
        best = min(known, key=lambda a: (predicted[a.label], self.arms.index(a)))
        arm: Arm | None = previous if previous in self.figures and self.last_reason != "probe" else None
        reason = "stay"
        if arm is None:
            arm, reason = best, "initial"
        elif best != arm and self.dwell >= self.config.min_dwell \
                and predicted[best.label] < predicted[arm.label] * (1.0 - self.config.hysteresis):
            arm, reason = best, "switch"
        return self._commit(Decision(arm, reason, index, self.rate_estimate_mbit, self.delay_ms, predicted, previous))

    def _commit(self, decision: Decision) -> Decision:
        if decision.arm != self.current:
            self.current, self.dwell = decision.arm, 0
        self.last_reason = decision.reason
        return decision

    def predict(self) -> dict[str, float]:
        """Predicted end-to-end ms per arm label (arms with figures), with the current rate and delay."""
        delay = self.delay_ms or 0.0
        uplink = DirectionModel(self.rate_estimate_mbit, delay)
        result = {}
        for arm in self.arms:
            f = self.figures.get(arm)
            if f is None:
                continue
            local = f.median("preprocess_ms") + f.median("encode_ms") \
                + f.median("local_inference_ms") * self.config.ue_slowdown
            up = uplink.transfer_ms(f.data_bytes, rtt_ms=2 * delay, slow_start=False)
            remote = sum(f.median(n) for n in REMOTE_PARTS)
            result[arm.label] = local + up + remote + f.median("downlink_ms") + f.median("result_decode_ms")
        return result

    # -- observing -----------------------------------------------------------------------------------------
    def observe(self, record: dict[str, Any], decision: Decision, *, now_ns: int | None = None) -> dict[str, Any]:
        """Learn from the record of the inference `decision` chose; returns what was learnt (for the record)."""
        arm = decision.arm
        self.dwell += 1
        stamps = record.get("timestamps_ns") or {}
        clock = record.get("clock") or {}
        if isinstance(clock.get("ping_min_rtt_ns"), int) and clock["ping_min_rtt_ns"] > 0:
            self.delay_ms = clock["ping_min_rtt_ns"] / 2e6
        learnt: dict[str, Any] = {"rate_sample_mbit": None, "sample_kind": None}
        payload = int(record.get("uplink_bytes") or 0)
        delay = self.delay_ms or 0.0
        first_send = stamps.get("local_first_send")
        complete = all(isinstance(record.get(n), (int, float)) for n in LOCAL_PARTS + REMOTE_PARTS + FIXED_PARTS)
        if record.get("status") == "ok" and complete:
            if decision.reason == "probe":
                self.probes_done[arm] += 1
            self.figures.setdefault(arm, ArmFigures(self.config.window)).add(record)
            delivery = record.get("delivery_ms")
            if payload > 0 and isinstance(delivery, (int, float)) and delivery > 0:
                learnt["rate_sample_mbit"] = rate_from_delivery(payload, float(delivery), delay)
                learnt["sample_kind"] = "delivery"
        else:
            if decision.reason == "probe":
                self.probes_done[arm] += 1  # a failed probe counts: probing ends (the arm has no figures)
            if payload > 0 and isinstance(first_send, int):
                # It stalled: the bytes took at least the time waited so far, so the rate was at most this.
                waited_ms = ((now_ns if now_ns is not None else time.monotonic_ns()) - first_send) / 1e6
                if waited_ms > 0:
                    learnt["rate_sample_mbit"] = rate_from_delivery(payload, waited_ms, delay)
                    learnt["sample_kind"] = "stalled_upper_bound"
        sample = learnt["rate_sample_mbit"]
        if sample is not None:
            inverse = 1.0 / sample
            alpha = self.config.alpha
            self.seconds_per_mbit = inverse if self.seconds_per_mbit is None else \
                (1 - alpha) * self.seconds_per_mbit + alpha * inverse
        learnt["rate_estimate_mbit"] = self.rate_estimate_mbit
        return learnt


def arms_for(spec: Any, config: PolicyConfig) -> list[Arm]:
    """The candidate arms for a model spec (splitbed.models.registry.ModelSpec), in the configured order."""
    from splitbed.format import get_profile

    keys: list[Any] = list(config.candidates) or [p.partition_id for p in spec.partitions]
    arms = []
    for compression in config.compressions:
        try:
            profile = get_profile(int(compression) if isinstance(compression, str) and compression.isdigit()
                                  else compression)
        except Exception as exc:  # the format package's own error names the known profiles
            raise PolicyError(f"policy.compressions: {exc}") from None
        for key in keys:
            try:
                part = spec.partition(key)
            except Exception as exc:
                raise PolicyError(f"policy.candidates: {exc}") from None
            arms.append(Arm(part.name, part.partition_id, str(profile.name)))
    if len(set(arms)) != len(arms):
        raise PolicyError("policy.candidates names the same partition twice (by name and by id)")
    return arms


def run_adaptive(node: Any, job: Any, repetition: int) -> dict[str, Any]:
    """One adaptive inference on a LocalNode: decide, run the chosen arm, learn, and record the decision.

    The node keeps one policy per (model, encoding, policy table) in `node.policies`, across jobs and sessions."""
    key = json.dumps([job.model, job.encoding, job.policy], sort_keys=True, default=str)
    policies: dict[str, AdaptivePolicy] = node.policies
    policy = policies.get(key)
    if policy is None:
        from splitbed.nodes.errors import ConfigurationError

        try:
            config = PolicyConfig.from_dict(job.policy)
            policy = AdaptivePolicy(config, arms_for(node.runner.spec(job.model), config))
        except PolicyError as exc:
            raise ConfigurationError(str(exc)) from None
        if len(policies) >= MAX_POLICIES:  # a driven node may see many policy tables: keep the newest ones
            policies.pop(next(iter(policies)))
        policies[key] = policy
    decision = policy.decide()
    concrete = dataclasses.replace(job, partition=decision.arm.partition, compression=decision.arm.compression,
                                   policy=None)
    record = dict(node.infer(concrete, repetition))
    learnt = policy.observe(record, decision)
    record["adaptive"] = dict(decision.to_dict(), **learnt)
    return record
