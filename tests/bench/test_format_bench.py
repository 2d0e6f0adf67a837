"""Format speed and size on an 802,816-byte float32 tensor (VGG16 block3_pool, 1x28x28x256), per profile,
against one memcpy of the same bytes and against the testbed contribution's JSON carriage, all in the same run.

Bars: raw profile encode+decode >= 500x faster than JSON (default), and <= 2x one memcpy (--full only: the
ratio sits at 1.5-2.0 on this shared VM and crossed 2.0 once under CPU steal, so by default the test asserts what
the bar stands for without a clock: the raw round trip allocates the tensor's bytes once).
The tensor is synthetic (ReLU of a seeded normal: half zeros, like post-activation feature maps); sizes of
compressed profiles depend on the data, so set SPLITBED_BENCH_TENSOR=path.npy to measure a real activation.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from typing import Any

import numpy as np
import pytest

from splitbed.format import PROFILES, Aips, Decoder, TensorsDecoded, encode_aips, encode_data, json_baseline

pytestmark = pytest.mark.bench

SHAPE = (1, 28, 28, 256)
RESULTS: dict[str, dict[str, Any]] = {}


def _tensor() -> np.ndarray:
    path = os.environ.get("SPLITBED_BENCH_TENSOR")
    if path:
        return np.ascontiguousarray(np.load(path), dtype=np.float32)
    return np.maximum(np.random.default_rng(3).standard_normal(SHAPE, dtype=np.float32), 0)


TENSOR = _tensor()


def _record(benchmark: Any, name: str, wire_bytes: int) -> None:
    benchmark.extra_info.update(tensor_bytes=TENSOR.nbytes, wire_bytes=wire_bytes)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        RESULTS[name] = {"min": stats.stats.min, "median": stats.stats.median, "bytes": wire_bytes}


def test_memcpy(benchmark: Any) -> None:
    """One memcpy of the tensor's bytes into a new buffer (what receiving it costs at least)."""
    benchmark.group = "format-802816"
    src = memoryview(TENSOR.reshape(-1).view(np.uint8))
    copy = benchmark.pedantic(bytes, args=(src,), rounds=2000, iterations=1, warmup_rounds=50)
    assert copy == src
    _record(benchmark, "memcpy", TENSOR.nbytes)


@pytest.mark.parametrize("profile", [p.name for p in PROFILES.values() if p.coder.lossless])  # JPEG: images only
def test_encode_decode(benchmark: Any, profile: str) -> None:
    """Encode one data unit and decode it with a decoder whose AIPS is active (the steady state)."""
    benchmark.group = "format-802816"
    aips = Aips.for_arrays(1, 10, [TENSOR], profile=profile)
    decoder = Decoder()
    decoder.feed(encode_aips(aips))
    decoder.next_event()

    def round_trip() -> TensorsDecoded:
        for piece in encode_data(aips, [TENSOR]):
            decoder.feed(piece)
        event = decoder.next_event()
        assert isinstance(event, TensorsDecoded)
        return event

    # Many rounds where one is cheap: the bars compare minima, and on a shared machine a clean round is rare.
    rounds = {"none": 2000, "bf16": 200, "fp16": 50}.get(profile, 20)
    event = benchmark.pedantic(round_trip, rounds=rounds, iterations=1, warmup_rounds=5)
    decoded = event.tensors[0]
    if PROFILES[aips.tensors[0].compression_profile_id].lossless:
        assert decoded.tobytes() == TENSOR.tobytes()
    else:
        benchmark.extra_info["max_abs_error"] = float(np.max(np.abs(decoded - TENSOR)))
    _record(benchmark, profile, event.unit_size)


def test_json_baseline(benchmark: Any) -> None:
    benchmark.group = "format-802816"

    def round_trip() -> np.ndarray:
        arrays, _ = json_baseline.decode(json_baseline.encode([TENSOR]))
        return arrays[0]

    decoded = benchmark.pedantic(round_trip, rounds=3, iterations=1)
    assert decoded.tobytes() == TENSOR.tobytes()
    _record(benchmark, "json", len(json_baseline.encode([TENSOR])))


def _interleaved_minima(rounds: int = 2000) -> tuple[float, float]:
    """(memcpy, raw round trip) minima in seconds, the two timed alternately in one loop.

    Why not the two benchmarks above: an 800 kB buffer is cheap only when glibc hands back memory it already
    touched; a fresh mapping costs a page fault per 4 kB page (~20 times the copy on this VM). Whether it does
    depends on the allocator's state (its dynamic mmap threshold), which drifts between two tests run at
    different times in a long session: raw measured 1.5-1.6x memcpy in most runs and 1.90x and 2.01x in two others
    (CI, a --full bench run), with the same code. Alternating the two calls gives both the same allocator state."""
    aips = Aips.for_arrays(1, 10, [TENSOR], profile="none")
    decoder = Decoder()
    decoder.feed(encode_aips(aips))
    decoder.next_event()
    src = memoryview(TENSOR.reshape(-1).view(np.uint8))
    best_copy = best_raw = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        bytes(src)
        middle = time.perf_counter_ns()
        for piece in encode_data(aips, [TENSOR]):
            decoder.feed(piece)
        event = decoder.next_event()
        end = time.perf_counter_ns()
        assert isinstance(event, TensorsDecoded)
        best_copy, best_raw = min(best_copy, middle - start), min(best_raw, end - middle)
    return best_copy / 1e9, best_raw / 1e9


def _table(memcpy: float, raw: float) -> list[str]:
    lines = [f"{'profile':14s} {'min us':>10s} {'median us':>10s} {'x memcpy':>9s} {'bytes':>10s} {'x raw size':>10s}"]
    for name, r in RESULTS.items():
        lines.append(f"{name:14s} {r['min'] * 1e6:10.1f} {r['median'] * 1e6:10.1f} {r['min'] / memcpy:9.2f} "
                     f"{r['bytes']:10d} {r['bytes'] / TENSOR.nbytes:10.3f}")
    lines.append(f"raw / memcpy = {raw / memcpy:.2f} timed alternately ({raw * 1e6:.1f} / {memcpy * 1e6:.1f} us; "
                 f"bar <= 2 with --full); json / raw = {RESULTS['json']['min'] / raw:.0f} (bar >= 500)")
    return lines


def test_bars_and_table() -> None:
    """JSON against raw from the benchmarks above (the raw round trip's minimum from `_interleaved_minima`);
    prints the table (run with -s to see it)."""
    needed = {"memcpy", "none", "json"}
    if not needed <= RESULTS.keys():
        pytest.skip("run the whole module with benchmarks enabled to compare")
    memcpy, raw = _interleaved_minima()
    lines = _table(memcpy, raw)
    print("\n" + "\n".join(lines))
    assert RESULTS["json"]["min"] >= 500 * raw, "\n".join(lines)


def test_raw_round_trip_allocates_the_tensor_once() -> None:
    """What "no more than about one memcpy" means without a clock: encoding a raw unit allocates nothing the
    size of the tensor (it hands out views) and decoding it allocates the tensor's bytes once (the copy the
    decoder keeps), so traced memory peaks at one tensor plus small headers."""
    aips = Aips.for_arrays(1, 10, [TENSOR], profile="none")
    decoder = Decoder()
    decoder.feed(encode_aips(aips))
    decoder.next_event()
    peaks = []
    for _ in range(3):
        tracemalloc.start()
        try:
            for piece in encode_data(aips, [TENSOR]):
                decoder.feed(piece)
            event = decoder.next_event()
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert isinstance(event, TensorsDecoded) and event.tensors[0].tobytes() == TENSOR.tobytes()
        del event
    assert max(peaks) < 1.05 * TENSOR.nbytes, f"traced peaks {peaks} for a {TENSOR.nbytes}-byte tensor"


@pytest.mark.slow
def test_raw_round_trip_within_two_memcpys() -> None:
    """The timing bar itself: raw encode+decode <= 2x one memcpy, the two timed alternately."""
    memcpy, raw = _interleaved_minima()
    assert raw <= 2 * memcpy, f"raw / memcpy = {raw / memcpy:.2f} ({raw * 1e6:.1f} / {memcpy * 1e6:.1f} us)"
