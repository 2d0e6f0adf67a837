"""A remote node process on a "host" with another CLOCK_MONOTONIC: it runs in a Linux time namespace whose
monotonic clock is 1000 s ahead, so the local node must notice that the clocks differ although the boot ids
are equal, estimate the offset with its ping-pongs, and still get delivery times right. The same process then
gets SIGTERM with an inference in flight: that inference is answered, idle sessions are told, exit 0."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from nodes_harness import MODEL, WEIGHTS, RawClient, RemoteProcess, free_port, start_remote

from splitbed.format import Aips, encode_data
from splitbed.nodes.metrics import check_record
from splitbed.nodes.protocol import MsgType

CLOCK_AHEAD_S = 1000
PARTITION = 5


def _time_namespace_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--time", "--monotonic", str(CLOCK_AHEAD_S), "true"],
                           capture_output=True, timeout=10)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RemoteProcess, subprocess.Popen[str]]]:
    """The remote node in a time namespace (when this machine allows it) and a local node process started at
    the same time (it loads its model while the remote starts)."""
    prefix = ("unshare", "--time", "--monotonic", str(CLOCK_AHEAD_S)) if _time_namespace_works() else ()
    port = free_port()
    local = subprocess.Popen(
        [sys.executable, "-m", "splitbed", "local-node", "--connect", f"127.0.0.1:{port}", "--weights", WEIGHTS,
         "--jobs", "-", "--preload", MODEL, "--verify-delivery", "--clock-pings", "16"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server = start_remote(tmp_path_factory.mktemp("shifted"), "--shutdown-grace", "10", prefix=prefix, port=port)
        try:
            yield server, local
        finally:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(10)
    finally:
        if local.poll() is None:
            local.kill()
            local.wait(10)


def test_clock_offset_between_hosts(shifted: tuple[RemoteProcess, subprocess.Popen[str]]) -> None:
    server, local = shifted
    if not _time_namespace_works():
        pytest.skip("no Linux time namespace here (unshare --time needs root and Linux >= 5.6): the separate-"
                    "clock path is covered by the unit tests only")
    jobs = [{"partition": 3, "compression": "none", "repetitions": 3}]
    stdout, stderr = local.communicate("".join(json.dumps(j) + "\n" for j in jobs), timeout=300)
    assert local.returncode == 0, stderr[-3000:]
    records = [r for r in map(json.loads, stdout.splitlines()) if r["record_type"] == "inference"]
    assert len(records) == 3
    for rec in records:
        check_record(rec)
        assert rec["status"] == "ok" and rec["delivery_check"]["match"]
        clock = rec["clock"]
        assert clock["local_boot_id"] == clock["remote_boot_id"]  # one kernel ...
        assert not clock["shared_monotonic"] and clock["method"] == "ntp-min-rtt"  # ... but not one clock
        assert "time namespace" in clock["note"]
        error_ns = abs(clock["offset_ns"] - CLOCK_AHEAD_S * 10**9)
        assert error_ns <= clock["offset_uncertainty_ns"] + 1_000_000, clock  # + 1 ms: namespace creation
        assert 0 < clock["offset_uncertainty_ns"] < 50_000_000
        assert rec["delivery_uncertainty_ms"] == clock["offset_uncertainty_ns"] / 1e6
        slack = rec["delivery_uncertainty_ms"]
        assert -slack <= rec["delivery_ms"] <= rec["round_trip_ms"] + slack
        assert -slack <= rec["downlink_ms"] <= rec["round_trip_ms"] + slack
        # remote-only durations need no mapping at all
        assert 0 < rec["remote_inference_ms"] <= rec["remote_processing_ms"] < rec["round_trip_ms"]
        stamps = rec["timestamps_ns"]
        assert stamps["remote_last_byte"] - stamps["local_first_send"] > (CLOCK_AHEAD_S - 1) * 10**9
        # the kernel's receive stamp (CLOCK_REALTIME, not namespaced) lands on the remote's shifted monotonic clock
        # (a transfer during a wall-clock step keeps no stamp: docs/METRICS.md, "Receive stamps")
        if rec["delivery_end"] == "kernel_rx":
            assert 0 <= stamps["remote_last_byte"] - stamps["remote_last_byte_kernel"] < 1_000_000_000
    assert any(r["delivery_end"] == "kernel_rx" for r in records), [r["delivery_end"] for r in records]


def test_sigterm_finishes_in_flight_and_exits_zero(shifted: tuple[RemoteProcess, subprocess.Popen[str]]) -> None:
    server, _ = shifted
    with RawClient(server.host, server.port) as idle, RawClient(server.host, server.port) as busy:
        idle.configure()
        busy.configure()
        arrays = busy.tensors(PARTITION)
        busy.infer(PARTITION, arrays)  # the tail is built and warm
        # Send an inference and SIGTERM at once: the reply must still come.
        busy.units += 1
        busy.send(*encode_data(Aips.for_arrays(1, PARTITION, arrays), arrays))
        server.proc.terminate()
        kind, body = busy.read(30)
        assert kind == MsgType.RESULT and body["after_unit"] == busy.units, body
        kind, body = idle.read(30)
        assert kind == MsgType.ERROR and body["code"] == "shutting_down", body
        assert idle.expect_closed() and busy.expect_closed()
    assert server.proc.wait(30) == 0, server.log()[-3000:]
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=2).close()
    assert "remote node stopped" in server.log()
