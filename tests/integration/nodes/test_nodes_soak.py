"""Soak: 16 concurrent zstd sessions against one real remote node process with its default limits (16 slots,
1 GiB memory budget), every reply checked (RESULT for its own unit, CRC-32 of the decoded tensors equal to what
was sent), the node's RSS sampled throughout. The shared zstd context used to crash the node (SIGSEGV) or reject
valid units as decompression_failed within seconds of two sessions overlapping.

A 10 s run is in the default suite; the 60 s run of the issue's done-when is `slow` (--full). Figures are printed
(run with -s to see them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nodes_harness import RawClient, RemoteProcess, start_remote

from splitbed.nodes.formatio import tensor_crc32
from splitbed.nodes.protocol import MsgType

SESSIONS = 16
PARTITION = 13  # mobilenet_v2 out_relu: one (1, 7, 7, 1280) float32 tensor, 250 KB, a tail of 1.3 M MACs:
#                many decodes overlap (the old shared zstd contexts crashed under this within seconds)
MIB = 1 << 20
RSS_GROWTH_BOUND = 256 * MIB  # 16 sessions x (unit + decoded + tail copy) is ~12 MiB; the rest is TF and threads
DRIFT_BOUND = 48 * MIB        # last quarter vs first quarter of the run: a leak would show here


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteProcess]:
    server = start_remote(tmp_path_factory.mktemp("soak"), "--shutdown-grace", "10")  # default limits otherwise
    try:
        yield server
    finally:
        code = server.stop()
    assert code == 0, server.log()[-3000:]


def _kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(key)


@pytest.mark.parametrize("duration_s", [10, pytest.param(60, marks=pytest.mark.slow)])
def test_16_concurrent_zstd_sessions(node: RemoteProcess, duration_s: int) -> None:
    pid = node.proc.pid
    counts = [0] * SESSIONS
    errors: list[str] = []
    ready = threading.Barrier(SESSIONS + 1)
    stop = threading.Event()

    def session(index: int) -> None:
        try:
            with RawClient(node.host, node.port, timeout=120) as client:
                client.configure(verify=True)
                arrays = client.tensors(PARTITION, seed=index)
                expected = [tensor_crc32(a) for a in arrays]
                ready.wait(120)
                first = True
                while not stop.is_set():
                    kind, body = client.infer(PARTITION, arrays, aips_id=1, send_aips=first, profile="zstd")
                    first = False
                    if kind != MsgType.RESULT:
                        errors.append(f"session {index}: {body.get('code')}: {body.get('message')}")
                        return
                    if body["tensor_crc32"] != expected:
                        errors.append(f"session {index}: decoded tensors differ from those sent")
                        return
                    counts[index] += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(f"session {index}: {type(exc).__name__}: {exc}")
            stop.set()
            ready.abort()

    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(SESSIONS)]
    for thread in threads:
        thread.start()
    ready.wait(300)  # every session configured and prepared: measure from here
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    base = _kib(pid, "VmRSS")
    samples: list[int] = []
    started = time.monotonic()
    while time.monotonic() - started < duration_s and not stop.is_set():
        samples.append(_kib(pid, "VmRSS"))
        time.sleep(0.25)
    stop.set()
    for thread in threads:
        thread.join(120)
    elapsed = time.monotonic() - started
    peak = _kib(pid, "VmHWM")
    quarter = max(len(samples) // 4, 1)
    drift = sum(samples[-quarter:]) / quarter - sum(samples[:quarter]) / quarter
    total = sum(counts)
    print(f"\nsoak {duration_s} s: {SESSIONS} zstd sessions, {total} inferences ({total / elapsed:.1f}/s), "
          f"per session {min(counts)}..{max(counts)}, errors {len(errors)}; node RSS at start {base / MIB:.0f} MiB, "
          f"peak +{(peak - base) / MIB:.0f} MiB, drift {drift / MIB:+.1f} MiB")
    assert node.proc.poll() is None, f"the node died (exit {node.proc.returncode}): {node.log()[-3000:]}"
    assert not errors, errors[:5]
    assert min(counts) >= 1, counts
    assert peak - base <= RSS_GROWTH_BOUND, f"peak RSS grew by {(peak - base) / MIB:.0f} MiB"
    assert drift <= DRIFT_BOUND, f"RSS drifted by {drift / MIB:.0f} MiB from the first to the last quarter"
