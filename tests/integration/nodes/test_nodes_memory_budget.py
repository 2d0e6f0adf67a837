"""The remote node's memory budget against a real node process: units that decode to far more than they weigh
on the wire (int8-zstd of a constant tensor: a few KiB that decode to tens of MiB) are refused with
`memory_budget` to their own session only, and the node's peak RSS stays within its budget however many arrive
at once. The node runs with the test budget of nodes_harness.TEST_SERVER_ARGS."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import zstandard
from nodes_harness import TEST_BUDGET_MIB, RawClient, RemoteProcess

from splitbed.format import Aips, DType, TensorSpec, UnitType, encode_aips, encode_unit, get_profile
from splitbed.nodes.protocol import MsgType

MIB = 1 << 20
PARTITION = 5  # mobilenet_v2 block_3_project_BN: one (1, 28, 28, 32) float32 tensor
# Allocator and interpreter noise of a node process around the budget (thread stacks, replies, logs).
SLACK = 48 * MIB


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def _bomb(decoded_bytes: int) -> list[bytes]:
    """An int8-zstd AIPS and data unit of a constant bfloat16 tensor, written byte by byte after docs/FORMAT.md
    (encoding so large a tensor would cost this test gigabytes): decoding it used to allocate 5x its decoded
    size (a whole-tensor float64 copy); now its output, the int8 bytes and a small scratch."""
    count = decoded_bytes // 2
    aips = Aips(1, PARTITION, (TensorSpec(0, DType.BFLOAT16, (1, count), get_profile("int8-zstd").profile_id),))
    payload = zstandard.ZstdCompressor().compress(bytes(count))
    params = struct.pack(">db", 1.0, 0)  # scale, zero point
    table = struct.pack(">HH", 1, 1) + struct.pack(">HBBII", 0, aips.tensors[0].compression_profile_id,
                                                   len(params), aips.tensors[0].inferred_length, len(payload))
    table += params
    table += bytes(-len(table) % 8)
    return [encode_aips(aips), encode_unit(UnitType.INTERMEDIATE_DATA, table + payload)]


def _send_bomb(client: RawClient, decoded_bytes: int) -> tuple[MsgType, dict]:
    client.units += 2
    client.send(*_bomb(decoded_bytes))
    while True:
        kind, body = client.read(120)
        if body.get("after_unit") == client.units or body.get("fatal"):
            return kind, body


def test_a_unit_larger_than_the_whole_budget_is_refused_and_the_session_goes_on(remote: RemoteProcess) -> None:
    with RawClient(remote.host, remote.port) as client:
        offer = client.configure()
        assert offer["limits"]["memory_budget_bytes"] == TEST_BUDGET_MIB * MIB
        arrays = client.tensors(PARTITION)
        kind, body = _send_bomb(client, TEST_BUDGET_MIB * MIB)  # decoded + the tail's copy: twice the budget
        assert kind == MsgType.ERROR and body["code"] == "memory_budget" and not body["fatal"], body
        assert "whole memory budget" in body["message"] and "--memory-budget-mib" in body["message"]
        kind, body = client.infer(PARTITION, arrays, aips_id=2)
        assert kind == MsgType.RESULT, body
    assert "refused a unit" in remote.log()


def test_peak_rss_stays_within_the_budget_under_concurrent_bombs(remote: RemoteProcess) -> None:
    """Six sessions each send a unit that needs most of the budget, all at once, while a good client keeps
    inferring: each bomb is either refused (memory_budget) or decoded and answered (tensor_mismatch, it is not
    the partition's cut); the good client is never refused; the node's peak RSS grows by at most the budget."""
    pid = remote.proc.pid
    decoded = TEST_BUDGET_MIB * MIB // 3  # reserved: int8 bytes + decoded + the tail's copy: 5/6 of the budget
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the node's peak RSS to its current RSS
    base = _status(pid, "VmRSS")
    replies: list[dict] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def bomber() -> None:
        try:
            with RawClient(remote.host, remote.port, timeout=60) as client:
                client.configure()
                barrier.wait(30)
                for _ in range(2):
                    kind, body = _send_bomb(client, decoded)
                    assert kind == MsgType.ERROR and not body["fatal"], body
                    replies.append(body)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    good: list[MsgType] = []

    def good_client() -> None:
        try:
            with RawClient(remote.host, remote.port) as client:
                client.configure()
                arrays = client.tensors(PARTITION)
                for rep in range(6):
                    kind, body = client.infer(PARTITION, arrays, aips_id=1, send_aips=rep == 0)
                    assert kind == MsgType.RESULT, body
                    good.append(kind)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bomber) for _ in range(6)] + [threading.Thread(target=good_client)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    assert len(good) == 6
    codes = sorted(body["code"] for body in replies)
    assert len(codes) == 12 and set(codes) <= {"memory_budget", "tensor_mismatch"}, codes
    assert "tensor_mismatch" in codes  # the budget admits what fits: bombs that fit were decoded
    peak = _status(pid, "VmHWM")
    assert peak - base <= TEST_BUDGET_MIB * MIB + SLACK, (
        f"node RSS grew by {(peak - base) / MIB:.0f} MiB under concurrent bombs; budget {TEST_BUDGET_MIB} MiB")
