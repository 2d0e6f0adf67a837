"""The testbed's own share of one inference, from its record (docs/METRICS.md, "The testbed's own share").

What a reader of e2e_latency_ms wants to know is how much of it is neither the DNN's compute nor the link: the
nodes' own work (encoding, framing, reading, decoding, metering, building and parsing the RESULT) and the waits
between them. Preprocessing is counted apart (the image pipeline is the application's, and the contribution's
local node does it too). Pure arithmetic on the record's figures and stamps; one clock (the local node's, with
the remote's stamps mapped as the record's own figures are).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def testbed_share_ms(record: Mapping[str, Any]) -> float:
    """e2e - preprocessing - local compute - delivery - remote compute - downlink."""
    return float(record["e2e_latency_ms"] - record["preprocess_ms"] - record["local_inference_ms"]
                 - record["delivery_ms"] - record["remote_inference_ms"] - record["downlink_ms"])


def testbed_share_parts(record: Mapping[str, Any]) -> dict[str, float | None]:
    """The share and where it goes, in ms; the parts add up to the share (a read lag is 0 where the transfer
    ended at the read). Also the figures it leaves out, for context: compute, preprocessing, downlink and the
    RESULT's size."""
    stamps = record["timestamps_ns"]

    def span(start: str, end: str) -> float | None:
        a, b = stamps.get(start), stamps.get(end)
        return None if a is None or b is None else (b - a) / 1e6

    parts: dict[str, float | None] = {
        "encode_ms": record["encode_ms"],
        "encoded_to_send_ms": span("local_encoded", "local_first_send"),
        "remote_read_lag_ms": record.get("remote_read_lag_ms") or 0.0,
        "last_byte_to_lock_ms": span("remote_last_byte", "remote_lock_request"),
        "lock_to_tail_ms": span("remote_lock_request", "remote_tail_start"),
        "tail_to_result_send_ms": span("remote_tail_end", "remote_result_send"),
        "local_read_lag_ms": record.get("local_read_lag_ms") or 0.0,
        "result_decode_ms": record["result_decode_ms"],
    }
    share = testbed_share_ms(record)
    return {
        "testbed_share_ms": share, **parts,
        "unaccounted_ms": share - sum(v or 0.0 for v in parts.values()),
        "preprocess_ms": record["preprocess_ms"],
        "compute_ms": record["local_inference_ms"] + record["remote_inference_ms"],
        "downlink_ms": record["downlink_ms"],
        "result_bytes": record["downlink_bytes"],
        "e2e_latency_ms": record["e2e_latency_ms"],
    }
