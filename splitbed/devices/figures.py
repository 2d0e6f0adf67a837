"""What a metrics record says about the devices: each side's emulation (who, how, calibration, times), the
end-to-end latency with modelled sub-model times, the model-based energy of the inference, and the head's memory.

Everything here is arithmetic on figures the nodes already have; the record's fields are documented in
docs/METRICS.md ("Devices"). Energy is MODEL-BASED: device power x compute time, and the device's radio model on
the bytes and airtime of this inference; never a measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from splitbed.devices.emulation import (
    MODEL,
    MODEL_METHOD,
    NONE,
    NONE_METHOD,
    STRETCH,
    STRETCH_METHOD,
    Outcome,
    Plan,
)
from splitbed.devices.profile import DeviceProfile

ENERGY_LABEL = "MODEL-BASED, not measured"
METHODS = {NONE: NONE_METHOD, STRETCH: STRETCH_METHOD, MODEL: MODEL_METHOD}


class DeviceFigures(TypedDict):
    name: str
    side: str
    mechanism: str
    method: str
    description: str
    source: str
    precision: str | None
    latency_source: str | None
    latency_derived: dict[str, Any] | None
    device_full_model_ms: float | None
    calibration: dict[str, Any] | None
    host_part_ms: float | None
    host_full_ms: float | None
    share: float | None
    raw_share: float | None
    round_shares: list[float]
    share_method: str | None
    host_best_full_ms: float | None
    device_ms: float | None
    measured_ms: float | None
    emulated_ms: float | None
    late_ms: float | None
    late_cause: str | None
    compute_power_w: float | None
    compute_power_source: str | None
    idle_power_w: float | None
    idle_power_source: str | None


class UeEnergy(TypedDict):
    label: str
    compute_mj: float | None
    compute_ms: float | None
    compute_method: str
    radio_mj: float | None
    radio_bits_mj: float | None
    radio_base_mj: float | None
    radio_access: str | None
    radio_payload_bytes: int | None
    radio_airtime_ms: float | None
    radio_method: str
    radio_source: str | None
    total_mj: float | None
    idle_wait_mj: float | None
    idle_wait_ms: float | None


class EdgeEnergy(TypedDict):
    label: str
    compute_mj: float | None
    compute_ms: float | None
    compute_method: str


class HeadMemory(TypedDict):
    weights_bytes: int
    largest_activation_bytes: int
    largest_activation_layer: str
    method: str


def device_figures(profile: DeviceProfile, side: str, plan: Plan, outcome: Outcome | None) -> DeviceFigures:
    """One side's device block for a record: the profile, the plan of this partition, this run's outcome."""
    latency = profile.latencies.get(plan.model)
    return DeviceFigures(
        name=profile.name, side=side, mechanism=plan.mechanism, method=METHODS[plan.mechanism],
        description=profile.description, source=profile.source, precision=profile.precision,
        latency_source=None if latency is None else latency.source,
        latency_derived=None if latency is None or latency.derived is None else latency.derived.to_dict(),
        device_full_model_ms=plan.device_full_ms,
        calibration=None if plan.calibration is None else plan.calibration.to_dict(),
        host_part_ms=plan.host_part_ms, host_full_ms=plan.host_full_ms, share=plan.share, raw_share=plan.raw_share,
        round_shares=list(plan.round_shares), share_method=plan.share_method,
        host_best_full_ms=plan.host_best_full_ms,
        device_ms=plan.device_ms,
        measured_ms=None if outcome is None else outcome.measured_ms,
        emulated_ms=None if outcome is None else outcome.emulated_ms,
        late_ms=None if outcome is None else outcome.late_ms,
        late_cause=None if outcome is None else outcome.late_cause,
        compute_power_w=None if profile.compute_power is None else profile.compute_power.watts,
        compute_power_source=None if profile.compute_power is None else profile.compute_power.source,
        idle_power_w=None if profile.idle_power is None else profile.idle_power.watts,
        idle_power_source=None if profile.idle_power is None else profile.idle_power.source,
    )


def check_device_figures(value: Any) -> DeviceFigures | None:
    """A device block received from the other node: None, or a mapping with exactly the expected keys."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != set(DeviceFigures.__annotations__):
        raise ValueError("a device block must be an object with exactly the keys "
                         f"{', '.join(sorted(DeviceFigures.__annotations__))}")
    if value.get("mechanism") not in METHODS:
        raise ValueError(f"device mechanism must be one of {', '.join(METHODS)}")
    for key in ("device_ms", "measured_ms", "compute_power_w"):
        number = value.get(key)
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))):
            raise ValueError(f"device {key} must be a number or null")
    return DeviceFigures(**value)  # type: ignore[typeddict-item]


RUN_KEYS = ("measured_ms", "emulated_ms", "late_ms", "late_cause")


def with_run(static: Any, run: Any, measured_ms: float | None) -> DeviceFigures | None:
    """The other node's device block for one inference: its partition's static block (sent once, in PREPARED)
    with this run's figures (sent in each RESULT; None when nothing was emulated: the measured time is the run).
    Raises ValueError for a malformed block or run."""
    block = check_device_figures(static)
    if block is None:
        return None
    if run is None:
        if block["mechanism"] != NONE:
            raise ValueError(f"a {block['mechanism']} device sent no run figures")
        return DeviceFigures(**dict(block, measured_ms=measured_ms))  # type: ignore[typeddict-item]
    if not isinstance(run, Mapping) or set(run) != set(RUN_KEYS):
        raise ValueError(f"a device run must be an object with exactly the keys {', '.join(RUN_KEYS)}")
    for key in ("measured_ms", "emulated_ms", "late_ms"):
        value = run[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"device run {key} must be a number or null")
    if run["late_cause"] not in (None, "host_compute_slower_than_device", "wakeup_late"):
        raise ValueError("device run late_cause is not one of the known causes")
    return DeviceFigures(**dict(block, **{k: run[k] for k in RUN_KEYS}))  # type: ignore[typeddict-item]


def compute_ms(device: Mapping[str, Any] | None) -> float | None:
    """The device's compute time for this run: the emulated (stretched) time, or the modelled one."""
    if device is None or device.get("mechanism") == NONE:
        return None
    if device.get("mechanism") == STRETCH:
        return device.get("emulated_ms")
    return device.get("device_ms")


def modelled_e2e_ms(e2e_ms: float | None, ue: Mapping[str, Any] | None, edge: Mapping[str, Any] | None,
                    local_ms: float | None, remote_ms: float | None) -> float | None:
    """The end-to-end latency with each side the testbed could not emulate (device faster than the host) replaced
    by its modelled time: measured e2e - measured sub-model + modelled sub-model. None when no side is modelled
    (the measured e2e already holds every emulated time)."""
    if e2e_ms is None:
        return None
    result, modelled = e2e_ms, False
    for device, measured in ((ue, local_ms), (edge, remote_ms)):
        if device is not None and device.get("mechanism") == MODEL:
            if measured is None or device.get("device_ms") is None:
                return None
            result += float(device["device_ms"]) - measured
            modelled = True
    return result if modelled else None


def ue_energy(profile: DeviceProfile, device: Mapping[str, Any] | None, *, access: str | None, payload_bytes: int,
              airtime_ms: float | None, wait_ms: float | None) -> UeEnergy | None:
    """The UE's energy for one inference (None for `host`): compute = compute power x compute time; radio = the
    device's radio model for the link's access on the uplink payload and its airtime (the uplink delivery time);
    idle wait (not in the total) = idle power x the time from the end of the send to the result."""
    if profile.is_host or profile.compute_power is None:
        return None
    busy = compute_ms(device)
    compute = None if busy is None else profile.compute_power.watts * busy          # W x ms = mJ
    model, reason = profile.radio_for(access)
    bits = base = radio = None
    if model is not None and airtime_ms is not None:
        bits, base = model.energy_mj(payload_bytes, airtime_ms)
        radio = bits + base
    elif model is not None:
        reason = "no uplink delivery time in this record (the inference failed before its data arrived)"
    radio_method = (f"energy_per_bit {model.energy_per_bit_nj:g} nJ/bit x uplink payload bits + base power "
                    f"{model.base_power_mw:g} mW x uplink airtime (delivery time); TCP/IP headers and the result "
                    "downlink not counted" if model is not None and radio is not None else f"not modelled: {reason}")
    idle = None
    if profile.idle_power is not None and wait_ms is not None:
        idle = profile.idle_power.watts * max(wait_ms, 0.0)
    return UeEnergy(
        label=ENERGY_LABEL, compute_mj=compute, compute_ms=busy,
        compute_method=(f"{profile.compute_power.watts:g} W ({profile.compute_power.source}) x the device's compute "
                        "time (emulated or modelled)"),
        radio_mj=radio, radio_bits_mj=bits, radio_base_mj=base, radio_access=access,
        radio_payload_bytes=payload_bytes if radio is not None else None,
        radio_airtime_ms=airtime_ms if radio is not None else None, radio_method=radio_method,
        radio_source=None if model is None else model.source,
        total_mj=None if compute is None or radio is None else compute + radio,
        idle_wait_mj=idle, idle_wait_ms=wait_ms if idle is not None else None,
    )


def edge_energy(device: Mapping[str, Any] | None) -> EdgeEnergy | None:
    """The edge's compute energy for the tail (None for `host` or a device without a power figure)."""
    busy = compute_ms(device)
    if device is None or busy is None or device.get("compute_power_w") is None:
        return None
    watts = float(device["compute_power_w"])
    return EdgeEnergy(label=ENERGY_LABEL, compute_mj=watts * busy, compute_ms=busy,
                      compute_method=f"{watts:g} W ({device.get('compute_power_source')}) x the device's tail time "
                                     "(emulated or modelled)")


def complete(record: dict[str, Any], ue_profile: DeviceProfile | None) -> None:
    """Fill a record's modelled times and energy from its own figures and device blocks (after the RESULT)."""
    ue, edge = record.get("ue_device"), record.get("edge_device")
    record["remote_inference_modelled_ms"] = None if edge is None else edge.get("device_ms")
    record["e2e_latency_modelled_ms"] = modelled_e2e_ms(record.get("e2e_latency_ms"), ue, edge,
                                                        record.get("local_inference_measured_ms"),
                                                        record.get("remote_inference_ms"))
    link = record.get("link") or {}
    profile = link.get("profile") if isinstance(link, dict) else None
    access = profile.get("radio") if isinstance(profile, dict) else None
    round_trip, send = record.get("round_trip_ms"), record.get("send_ms")
    wait = None if round_trip is None or send is None else round_trip - send
    record["ue_energy"] = None if ue_profile is None else ue_energy(
        ue_profile, ue, access=access, payload_bytes=int(record.get("uplink_bytes") or 0),
        airtime_ms=record.get("delivery_ms"), wait_ms=wait)
    record["edge_energy"] = edge_energy(edge)
