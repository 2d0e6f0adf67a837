"""Goodput of each transport binding (docs/PROTOCOL.md, section 8) on 5g-split-ai and `ideal` (with --full), as a ratio
to TCP in the same run (never an absolute figure from another machine).

One testbed per profile and binding (userspace link in namespaces, real nodes); pytest-benchmark times one
inference of a large partition (mobilenet_v2 block_1_project_BN: 301 110 session bytes up per inference); the goodput is the
uplink session bytes over the record's delivery time. `extra_info` keeps the goodput, the transport block of
the last record and how many inferences the binding's own CPU time paced (`transport.cpu_bound`): a binding
that cannot keep up with the link on this host says so there, and in the ratio test's message."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from splitbed.pytest_plugin import requires
from splitbed.testbed import Testbed

# Two testbeds per profile: with --full. The default suite carries QUIC end to end elsewhere (tests/e2e/
# test_e2e_transport.py, tests/integration/nodes/test_nodes_quic.py: the same session bytes as TCP).
pytestmark = [pytest.mark.bench, pytest.mark.root, pytest.mark.slow]

MODEL, PARTITION, WEIGHTS = "mobilenet_v2", 3, "random:1"
ROUNDS = 8
# The profile that matters (5g-split-ai) and `ideal` (an unshaped link, where the ratio is aioquic's Python
# against the kernel's TCP).
PROFILES = ("ideal", "5g-split-ai")
RESULTS: dict[tuple[str, str], dict[str, Any]] = {}


@pytest.mark.parametrize("transport", ["tcp", "quic"])
@pytest.mark.parametrize("profile", PROFILES)
def test_goodput(profile: str, transport: str, benchmark: Any) -> None:
    requires("netns")
    records: list[dict[str, Any]] = []
    job = {"model": MODEL, "partition": PARTITION, "compression": "none", "repetitions": 1,
           "tags": {"suite": "transport-bench"}}
    with Testbed(profile, "userspace", models=(MODEL,), weights=WEIGHTS, transport=transport,
                 warmup_partition=PARTITION) as bed:

        def one_inference() -> None:
            [record] = bed.run(job)
            records.append(record)

        benchmark.pedantic(one_inference, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    measured = records[1:]
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records if r["status"] != "ok"]
    goodputs = [r["uplink_bytes"] * 8 / (r["delivery_ms"] * 1e3) for r in measured]  # Mbit/s
    cpu_bound = sum(1 for r in measured if (r["transport"] or {}).get("cpu_bound"))
    result = {"goodput_mbit_median": statistics.median(goodputs), "delivery_ms_median":
              statistics.median(r["delivery_ms"] for r in measured), "uplink_bytes": measured[-1]["uplink_bytes"],
              "cpu_bound_inferences": cpu_bound, "inferences": len(measured), "transport": measured[-1]["transport"]}
    benchmark.extra_info.update(profile=profile, binding=transport, **result)
    RESULTS[(profile, transport)] = result
    assert result["goodput_mbit_median"] > 0


@pytest.mark.parametrize("profile", PROFILES)
def test_goodput_ratio_quic_to_tcp(profile: str) -> None:
    """QUIC's goodput over TCP's on the same profile in this run; printed for the notes and kept in the
    benchmark JSON. The ratio is a figure, not a pass mark: on `ideal` it compares aioquic's Python CPU with the
    kernel's TCP, and CPU steal on a shared host moves it several-fold (0.05 was seen in CI). What must hold is
    transport-independent: both bindings delivered, and they carried the same session bytes."""
    if (profile, "tcp") not in RESULTS or (profile, "quic") not in RESULTS:
        pytest.skip("needs both bindings benchmarked on this profile in this run")
    tcp, quic = RESULTS[(profile, "tcp")], RESULTS[(profile, "quic")]
    ratio = quic["goodput_mbit_median"] / tcp["goodput_mbit_median"]
    note = (f"{profile}: QUIC {quic['goodput_mbit_median']:.1f} Mbit/s, TCP {tcp['goodput_mbit_median']:.1f} "
            f"Mbit/s, ratio {ratio:.2f}; QUIC's CPU paced {quic['cpu_bound_inferences']}/{quic['inferences']} "
            f"inferences (median QUIC delivery {quic['delivery_ms_median']:.1f} ms, TCP {tcp['delivery_ms_median']:.1f} ms)")
    print(note)
    assert quic["uplink_bytes"] == tcp["uplink_bytes"], note
    assert ratio > 0, note
