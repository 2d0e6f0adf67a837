"""Mutation fuzzer for the format decoder: seeded, bounded, reproducible. Used by test_format_fuzz.py; also a
script for long runs:  .venv/bin/python tests/unit/format/format_fuzz.py --cases 200000 --seed 7

A case is a byte stream (a fixtures/format vector mutated, or random bytes) fed in random chunks to a
Decoder with small caps. The case passes when nothing but the format's own events comes out (no exception
of any kind escapes), every event is well formed, and the traced memory peak stays under a bound derived
from the caps.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import tracemalloc
from pathlib import Path

from splitbed.format import (
    NEED_DATA,
    STREAM_ENDED,
    AipsActivated,
    AipsEnded,
    Decoder,
    EndReason,
    ErrorCode,
    FormatErrorEvent,
    TensorsDecoded,
    UnknownUnit,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "format"
MAX_UNIT = 1 << 20
MAX_DECODED = 1 << 20
# Caps bound what the decoder may hold: one unit being assembled, one decoded data unit, plus overhead.
MEMORY_BOUND = 2 * MAX_UNIT + 2 * MAX_DECODED + (1 << 20)
INTERESTING = [0, 1, 7, 8, 255, 256, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, MAX_UNIT, MAX_UNIT + 1]
WIRE_CODES = {c for c in ErrorCode} - {ErrorCode.VALUE_OUT_OF_RANGE, ErrorCode.ARRAY_MISMATCH, ErrorCode.BAD_FIELD,
                                       ErrorCode.DECODER_BROKEN, ErrorCode.STREAM_ENDED, ErrorCode.JSON_TOO_LARGE,
                                       ErrorCode.JSON_INVALID}


def corpus() -> list[bytes]:
    return [p.read_bytes() for p in sorted(FIXTURES.glob("*/*.bin"))]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip bits
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # set a byte
            buf[rng.randrange(len(buf))] = rng.choice((0, 1, 2, 3, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:  # insert random bytes
            buf[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3 and buf:  # delete a range
            del buf[pos:pos + rng.randrange(1, 17)]
        elif op == 4 and buf:  # duplicate a range
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start:start + rng.randrange(1, 65)]
        elif op == 5:  # splice with another vector
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:pos] + other[cut:cut + rng.randrange(1, 200)]
        elif op == 6 and len(buf) >= 4:  # an interesting 16- or 32-bit value anywhere (lengths, dims, ids)
            i = rng.randrange(len(buf) - 3)
            value = rng.choice(INTERESTING)
            buf[i:i + 4] = struct.pack(">I", value) if rng.random() < 0.5 else struct.pack(">H", value & 0xFFFF) + buf[i + 2:i + 4]
        elif op == 7:  # truncate
            del buf[pos:]
    return bytes(buf)


def random_stream(rng: random.Random) -> bytes:
    """Random units with valid headers (so the semantic parsers see the bytes) or plain random bytes."""
    if rng.random() < 0.3:
        return rng.randbytes(rng.randrange(0, 300))
    out = bytearray()
    for _ in range(rng.randrange(1, 5)):
        value = rng.randbytes(rng.randrange(0, 120))
        out += struct.pack(">BI", rng.choice((0, 1, 1, 2, 2, 3, 200)), len(value)) + value
    return bytes(out)


def check_events(events: list[object]) -> None:
    active = None
    for event in events:
        if isinstance(event, AipsActivated):
            active = event.aips
        elif isinstance(event, AipsEnded):
            assert isinstance(event.reason, EndReason) and event.detail
            assert active is not None and event.aips_id == active.aips_id
            active = None
        elif isinstance(event, TensorsDecoded):
            assert active is not None and event.aips_id == active.aips_id
            for spec, arr in zip(active.tensors, event.tensors, strict=True):
                assert arr.shape == spec.shape and arr.dtype == spec.dtype.numpy and not arr.flags.writeable
                assert len(arr.tobytes()) == arr.nbytes  # the memory is readable
        elif isinstance(event, FormatErrorEvent):
            assert event.code in WIRE_CODES and event.message
        else:
            assert isinstance(event, UnknownUnit), event


def run_case(data: bytes, rng: random.Random) -> list[object]:
    """Decode `data` fed in random chunks; raises AssertionError (or anything else) on a finding."""
    dec = Decoder(max_unit_size=MAX_UNIT, max_decoded_size=MAX_DECODED)
    events: list[object] = []
    pos = 0
    fatal = False
    # Tracing stays on across the cases of a fuzz() run (starting and stopping it per case leaks RSS).
    owner = not tracemalloc.is_tracing()
    if owner:
        tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    try:
        while pos < len(data) and not fatal:
            step = rng.choice((1, 3, 7, 64, len(data)))
            dec.feed(data[pos:pos + step])
            pos += step
            while (event := dec.next_event()) is not NEED_DATA:
                events.append(event)
                if isinstance(event, FormatErrorEvent) and not event.recoverable:
                    fatal = True
                    break
        if not fatal:
            dec.end_of_stream()
            while (event := dec.next_event()) is not STREAM_ENDED:
                events.append(event)
                if isinstance(event, FormatErrorEvent) and not event.recoverable:
                    break
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        if owner:
            tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"traced memory peak {peak} bytes above the {baseline} bytes traced before"
    check_events(events)
    return events


def fuzz(cases: int, seed: int, time_limit: float) -> dict[str, int]:
    """Run up to `cases` cases (stopping at `time_limit` seconds); returns how often each outcome occurred."""
    rng = random.Random(seed)
    pool = corpus()
    seen: dict[str, int] = {}
    deadline = time.monotonic() + time_limit
    owner = not tracemalloc.is_tracing()
    if owner:
        tracemalloc.start()
    try:
        return _fuzz_loop(rng, pool, seen, cases, seed, deadline)
    finally:
        if owner:
            tracemalloc.stop()


def _fuzz_loop(rng: random.Random, pool: list[bytes], seen: dict[str, int], cases: int, seed: int,
               deadline: float) -> dict[str, int]:
    for case in range(cases):
        if time.monotonic() > deadline:
            break
        case_seed = rng.randrange(2**32)
        case_rng = random.Random(case_seed)
        data = mutate(case_rng, case_rng.choice(pool), pool) if case_rng.random() < 0.8 else random_stream(case_rng)
        try:
            events = run_case(data, case_rng)
        except Exception as exc:
            raise AssertionError(f"case {case} (seed {seed}, case seed {case_seed}, input {data.hex()}): "
                                 f"{type(exc).__name__}: {exc}") from exc
        for event in events:
            key = event.code.value if isinstance(event, FormatErrorEvent) else type(event).__name__
            seen[key] = seen.get(key, 0) + 1
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=3600.0, help="seconds")
    args = parser.parse_args()
    started = time.monotonic()
    seen = fuzz(args.cases, args.seed, args.time_limit)
    print(f"no finding in {time.monotonic() - started:.0f} s; outcomes:", file=sys.stderr)
    for key, count in sorted(seen.items(), key=lambda kv: -kv[1]):
        print(f"  {key:28s} {count}", file=sys.stderr)


if __name__ == "__main__":
    main()
