"""The done-when of device profiles for the advisor: under the phone profile, `splitbed advise` (Neurosurgeon-style
prediction from the profile) and a real sweep (the phone emulated by its node) name the same best partition among
VGG16's six example partitions, on two link profiles (LTE, 5G eMBB). "The same" allows a measured tie:
the predicted best may differ from the measured best only when their measured 95% CIs overlap (the measurement
cannot tell them apart); and no pair may be ordered against a clear measurement.

The partitions are timed for the prediction on the CPUs the testbed's edge node is pinned to (splitbed.runtime.cpus,
at exec, so that TensorFlow sizes its thread pools to them as the node's do): the edge here is `host`, whose tail
time the prediction takes from this timing, and an unpinned process computes VGG16 about twice as fast on 2 CPUs
as the pinned edge node on one.

Late phone heads: on a loaded host the head's own compute can outlast the phone's time, and the stretch then
ends late (docs/DEVICES.md, "Late stretches"); the record says by how much (`ue_device.late_ms`). Everything after
the head is shifted by that lateness, so the measured figure compared here is each record's end-to-end latency
less its own `late_ms`: what the phone would have seen. The one effect of the lateness that this cannot remove is
on TCP: the later send lengthens the uplink sender's idle time, which changes the window the tensor starts with
when it moves that idle across an RTO of Linux's restart-after-idle rule. Each late record's recorded TCP state
(`uplink_tcp`) says whether it did (the rule applied to its idle with and without the lateness) and bounds what
it can have cost (`window_cost_ms`); the test compares again with every such record's figure lowered by that
bound and skips, naming those records, only when the verdict differs, i.e. when the lateness is large enough
to change the comparison. (The downlink's result, a few kB, fits in the initial window: its window
does not matter.)"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from splitbed.advise import LinkModel, Measured, ModelTiming, PartitionTiming, compare, predict
from splitbed.devices import load
from splitbed.host.tcpinfo import TcpState
from splitbed.stats import median_ci
from splitbed.sweep import SweepSpec, run_sweep, summarise
from splitbed.sweep.store import is_measurement, read_records

pytestmark = [pytest.mark.root, pytest.mark.slow]

# Not 5g-mmwave-static: since its rate and loss were set to reproduce the source's TCP figure, four partitions
# are predicted within 40 ms of each other there (fc1 606, block5_conv1 624, block4_conv1 627, block3_conv1 643 ms
# on 2026-12-05), a tie the measurement ranks by chance.
PROFILES = ("lte", "5g-embb")
EXAMPLES = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1", "fc1"]


def timed_like_the_edge_node(model: str, partitions: list[str]) -> ModelTiming:
    """splitbed.advise.measure_model run in a process started on the default plan's edge CPUs."""
    from splitbed.runtime.cpus import default_plan, exec_prefix

    code = ("import json, sys; from splitbed.advise import measure_model; "
            f"print(json.dumps(measure_model({model!r}, partitions={partitions!r}, weights='random:0', "
            "repeats=5).to_dict()))")
    done = subprocess.run([*exec_prefix(default_plan().edge), sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=900, check=True)
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return ModelTiming(**{**data, "partitions": tuple(PartitionTiming(**p) for p in data["partitions"])})


def late_ms(record: dict[str, Any]) -> float:
    """How late the record's emulated head ended (0 on time or where the phone was modelled, not stretched)."""
    device = record.get("ue_device") or {}
    return float(device.get("late_ms") or 0.0) if device.get("late_cause") else 0.0


def phone_e2e_ms(record: dict[str, Any], key: str) -> float | None:
    """The record's `key` figure less its head's lateness: the end-to-end latency the phone would have seen."""
    value = record.get(key)
    return None if not isinstance(value, (int, float)) else float(value) - late_ms(record)


def window_cost_ms(record: dict[str, Any], slow_start_after_idle: bool) -> float:
    """At most how much sooner the record's tensor would have been delivered had the head ended on time: 0 unless
    the lateness moved the uplink sender's idle across an RTO of Linux's restart-after-idle rule (the rule applied
    to the recorded idle with and without the lateness). Then the window it started with is the on-time one
    halved k more times, which slow start (the restart keeps ssthresh at 3/4 of the window before the idle or
    above) doubles back in one round trip each: k + 1 round trips at the recorded smoothed RTT (the + 1 for
    the rest of a window grown past the threshold)."""
    late = late_ms(record)
    if not late or not record.get("uplink_tcp"):
        return 0.0
    recorded = TcpState.from_dict(record["uplink_tcp"])
    on_time = TcpState.from_dict({**record["uplink_tcp"], "idle_ms": max(0.0, recorded.idle_ms - late)})
    late_cwnd, _ = recorded.send_window_segments(slow_start_after_idle=slow_start_after_idle)
    on_time_cwnd, _ = on_time.send_window_segments(slow_start_after_idle=slow_start_after_idle)
    if on_time_cwnd <= late_cwnd:
        return 0.0
    return (math.ceil(math.log2(on_time_cwnd / late_cwnd)) + 1) * recorded.rtt_ms


def lowest_phone_e2e_ms(record: dict[str, Any], key: str, slow_start_after_idle: bool) -> float | None:
    value = phone_e2e_ms(record, key)
    return None if value is None else value - window_cost_ms(record, slow_start_after_idle)


def verdict(result: Any) -> tuple[bool, bool]:
    return bool(result.best_indistinguishable), not result.contradictions


def _median(figures: dict[str, Any], key: str) -> float:
    value = figures[key].median
    return float("nan") if value is None else float(value)


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPLITBED_OFFLINE", "1")
        yield


def test_advise_and_the_sweep_agree_on_vgg16s_best_partition_on_a_phone(offline: None, tmp_path: Path) -> None:
    from splitbed.pytest_plugin import requires

    requires("root_or_userns", "netns")
    timing = timed_like_the_edge_node("vgg16", EXAMPLES)
    (tmp_path / "timing.json").write_text(json.dumps(timing.to_dict()))  # kept with the records, for a later look
    spec = SweepSpec(profiles=PROFILES, models=("vgg16",), partitions=("examples",), repetitions=6, warmup=1,
                     weights="random:0", backend="userspace", ue_devices=("phone-midrange",), baselines=())
    outcome = run_sweep(spec, tmp_path / "sweep")
    assert not outcome.incomplete, outcome
    records = [r for r in read_records(tmp_path / "sweep").records if is_measurement(r) and r.get("status") == "ok"]
    summaries = summarise(records)
    assert {s.partition for s in summaries} == set(EXAMPLES)
    report, results, window_changed = [], [], []
    for profile in PROFILES:
        link = LinkModel.from_profile(profile)
        predictions = predict(timing, link, ue_device=load("phone-midrange"))
        mine = [s for s in summaries if s.profile == profile]
        # the modelled end-to-end latency where the phone was modelled (the host computed slower than the phone),
        # else the measured one less the head's lateness (the module doc)
        key = {s.partition: "e2e_latency_modelled_ms" if s.modelled else "e2e_latency_ms" for s in mine}
        own = {p: [r for r in records if r["link"]["profile"]["name"] == profile and r["partition_name"] == p]
               for p in key}
        phone = {p: median_ci(phone_e2e_ms(r, key[p]) for r in own[p]) for p in key}
        measured = {p: Measured(f.median, f.low, f.high, f.n) for p, f in phone.items() if f.median is not None}
        result = compare(predictions, measured)
        results.append(result)
        late = {p: [late_ms(r) for r in own[p] if late_ms(r)] for p in key}
        # the lateness's one effect the correction leaves: each late record's figure may be up to its window cost
        # too high; the comparison must come out the same at that end of the range as well
        cost = {p: [window_cost_ms(r, link.slow_start_after_idle) for r in own[p]] for p in key}
        low = {p: median_ci(lowest_phone_e2e_ms(r, key[p], link.slow_start_after_idle) for r in own[p]) for p in key}
        result_low = compare(predictions, {p: Measured(f.median, f.low, f.high, f.n) for p, f in low.items()
                                           if f.median is not None})
        changed = {p: sum(1 for c in cost[p] if c) for p in key}
        mechanisms = sorted({s.ue_mechanism for s in mine})
        # each part next to what the records measured for it: the link model (uplink vs delivery_ms, downlink vs
        # downlink_ms) apart from the edge's compute on this host (remote vs remote_processing_ms), which drifts
        # with the host's load between the timing above and the sweep
        figures = {s.partition: s.figures for s in mine}
        report.append(f"{profile}: predicted best {result.predicted_best}, measured best {result.measured_best}, "
                      f"Spearman {result.spearman:.2f}, UE {mechanisms}, late heads "
                      f"{sum(len(v) for v in late.values())} of {sum(len(v) for v in own.values())} (e2e less "
                      f"their lateness below), their start window changed by it {sum(changed.values())} (up to "
                      f"{max((c for v in cost.values() for c in v), default=0.0):.1f} ms)\n"
                      + "\n".join(
                          f"  {p.partition:>13} e2e predicted {p.e2e_ms:7.1f} ms measured {m.median_ms:7.1f} "
                          f"[{m.low_ms:.1f}, {m.high_ms:.1f}] | uplink {p.uplink_ms:7.1f} / delivery "
                          f"{_median(figures[p.partition], 'delivery_ms'):7.1f} | remote {p.remote_ms:6.1f} / "
                          f"{_median(figures[p.partition], 'remote_processing_ms'):6.1f} | downlink "
                          f"{p.downlink_ms:5.1f} / {_median(figures[p.partition], 'downlink_ms'):5.1f} | late "
                          f"{len(late[p.partition])} (max {max(late[p.partition], default=0.0):.1f} ms)"
                          for p, m in result.rows))
        print(report[-1])
        if verdict(result_low) != verdict(result):
            window_changed.append(f"on {profile}: " + ", ".join(f"{n} of {p}" for p, n in changed.items() if n))
    if window_changed:  # every profile is reported above before this
        pytest.skip("late phone heads (this shared host computed slower than the phone; the records say so) "
                    "changed the uplink's TCP start window, which the lateness taken off the e2e does not undo, by "
                    "enough to change the comparison (its verdict differs when those records are given up to the "
                    f"round trips the change can cost): records {'; '.join(window_changed)}:\n" + "\n".join(report))
    for result in results:
        assert result.best_indistinguishable, "\n".join(report)
        assert not result.contradictions, "\n".join(report)
