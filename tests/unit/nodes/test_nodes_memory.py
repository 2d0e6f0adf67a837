"""Peak memory of receiving one unit of each kind, measured, against what the remote node reserves for it.

Each kind runs in a child process whose peak RSS (VmHWM, reset through /proc/self/clear_refs just before the
unit) is clean of the test process. The unit goes through the remote node's own receive path without
TensorFlow: the protocol framer, FormatSession (the format decoder) or the JSON-baseline decoder. Two things
must hold for every kind: the peak stays within the reservation the node makes from its memory budget
(FormatSession.unit_bytes, json_baseline_bytes), and for the binary format that reservation stays within a
few times the decoded size (the int8 inverse used to go through a whole-tensor float64 copy: 5x for bfloat16).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from splitbed.nodes.budget import BudgetRefused, MemoryBudget

MIB = 1 << 20
DECODED = 48 * MIB  # decoded size of each binary unit: large enough that allocator noise is small beside it
SLACK = 6 * MIB     # interpreter and allocator noise around the measured peak

CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import ml_dtypes
    from splitbed.format import Aips, encode_aips, encode_data_bytes
    from splitbed.nodes.formatio import FormatSession, decode_json_baseline, json_baseline_bytes
    from splitbed.nodes.protocol import ControlUnit, MsgType, UnitChunk, UnitEnd, UnitFramer, UnitStart

    def hwm():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) * 1024

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")

    kind, dtype, decoded = sys.argv[1], sys.argv[2], int(sys.argv[3])
    framer = UnitFramer(max_unit_bytes=1 << 30)
    kept = []
    if kind.startswith("json-"):
        n = decoded
        body, last = {"json-numbers": (b"1.5,", b"0"), "json-lists": (b"[],", b"[]")}[kind]
        payload = (b'{"tensors":[[' + body * (n // len(body)) + last
                   + b']],"dtypes":["float32"],"partition_id":1}')
        unit = bytes([MsgType.JSON_BASELINE]) + len(payload).to_bytes(4, "big") + payload
        del payload
        reset_peak()
        base = hwm()
        reserved = 0
        for frame in framer.feed(unit):
            if isinstance(frame, UnitStart):
                reserved += frame.length + (frame.length >> 3) + 64
            elif isinstance(frame, ControlUnit):
                reserved += json_baseline_bytes(frame.payload)
                kept.append(decode_json_baseline(frame.payload, 1 << 30))
                del frame
    else:
        np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
        count = decoded // np_dtype.itemsize
        # Worst case for the ratio of memory to wire bytes: constant values (zstd/lz4 shrink them to nothing).
        arr = np.full((1, count), 0.5, dtype=np_dtype)
        if kind.startswith("jpeg"):  # a camera image: (1, side, side, 3) uint8, one grey (the smallest JPEG)
            side = int((decoded // 3) ** 0.5)
            arr = np.full((1, side, side, 3), 128, dtype=np.uint8)
        aips = Aips.for_arrays(1, 1, [arr], kind)
        units = [encode_aips(aips), encode_data_bytes(aips, [arr])]
        del arr
        session = FormatSession(1 << 30)
        session.decoder.max_decoded_size = 1 << 30
        reserved = 0
        for index, unit in enumerate(units):
            if index == 1:
                reset_peak()
                base = hwm()
            for frame in framer.feed(unit):
                if isinstance(frame, UnitStart):
                    if index == 1:
                        reserved = session.unit_bytes(frame.unit_type, frame.length)
                    session.feed(frame.header)
                elif isinstance(frame, UnitChunk):
                    session.feed(frame.data)
                elif isinstance(frame, UnitEnd):
                    outcome = session.drain()
                    assert not outcome.errors, outcome.errors
                    if outcome.complete is not None:
                        kept.append(outcome.complete)
            units[index] = b""
            del unit
        assert kept, "nothing decoded"
    print(json.dumps({"peak": hwm() - base, "reserved": reserved}))
""")


def _measure(kind: str, dtype: str, decoded: int) -> dict[str, int]:
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, dtype, str(decoded)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.splitlines()[-1]))


# Each compression profile with the AIPS dtype that makes its decoding allocate most per decoded byte.
BINARY_KINDS = [("none", "float32"), ("fp16", "float32"), ("bf16", "float32"), ("int8", "bfloat16"),
                ("int8", "float32"), ("zstd", "float32"), ("lz4", "float32"), ("shuffle-zstd", "float32"),
                ("int8-zstd", "bfloat16"), ("int8-zstd", "float32")]


@pytest.mark.parametrize(("kind", "dtype"), BINARY_KINDS, ids=[f"{k}-{d}" for k, d in BINARY_KINDS])
def test_binary_unit_peak_stays_within_its_reservation(kind: str, dtype: str) -> None:
    figures = _measure(kind, dtype, DECODED)
    peak, reserved = figures["peak"], figures["reserved"]
    assert peak <= reserved + SLACK, (f"{kind}/{dtype}: receiving one unit of {DECODED / MIB:.0f} MiB decoded "
                                      f"peaked at {peak / MIB:.0f} MiB, above the {reserved / MIB:.0f} MiB reserved")
    # The reservation counts the tail's input copy (1x decoded) on top of decoding: at most 2x for decoding
    # itself (lz4's scratch copy), plus the unit (at most 1x decoded for the binary profiles).
    assert reserved <= 4.2 * DECODED, f"{kind}/{dtype}: {reserved / MIB:.0f} MiB reserved for {DECODED / MIB:.0f} MiB"


def test_jpeg_unit_peak_stays_within_its_reservation() -> None:
    """A JPEG's decoded image (the camera baseline's) is 5x budgeted (splitbed.format.coders.JPEG_DECODE_FACTOR)."""
    figures = _measure("jpeg-q90", "uint8", DECODED)
    assert figures["peak"] <= figures["reserved"] + SLACK, figures
    assert figures["reserved"] <= 7 * DECODED, figures


@pytest.mark.parametrize("kind", ["json-numbers", "json-lists"])
def test_json_baseline_peak_stays_within_its_reservation(kind: str) -> None:
    """JSON weighs up to ~35 times its text once parsed; the reservation is counted from its structure."""
    figures = _measure(kind, "float32", 16 * MIB)
    assert figures["peak"] <= figures["reserved"] + SLACK, figures


def test_budget_refuses_what_does_not_fit_and_gives_back_on_release() -> None:
    budget = MemoryBudget(100)
    first = budget.reserve(60, "unit A")
    with pytest.raises(BudgetRefused, match="40 B|0.0 MiB free") as busy:
        budget.reserve(50, "unit B")
    assert busy.value.code == "memory_budget" and not busy.value.fatal and "retry later" in busy.value.message
    with pytest.raises(BudgetRefused, match="whole memory budget"):
        budget.reserve(101, "unit C")
    with pytest.raises(BudgetRefused, match="whole memory budget"):
        first.grow(41)  # 101 in all for one unit: never fits
    assert first.nbytes == 60
    first.release()
    first.release()  # idempotent
    with budget.reserve(100, "unit D"):
        assert budget.stats().in_use == 100
    stats = budget.stats()
    assert (stats.in_use, stats.peak, stats.refused) == (0, 100, 3)
