"""The timing figures of one inference, derived from the stamps both nodes took (docs/METRICS.md), as pure
arithmetic: nothing here reads a clock or a socket.

Local stamps are this host's CLOCK_MONOTONIC ns; remote ones the remote's, mapped with the session's clock
decision (`offset_ns`: remote - local, zero on a shared clock; docs/METRICS.md, "clock"). Where a kernel stamped
the arrival of data (SO_TIMESTAMPNS, splitbed.nodes.rxstamp), a transfer ends when the last byte arrived, not
when the reading node got round to it ("Receive stamps"):

- delivery   = remote kernel's last-byte stamp (else the remote's read) - offset - local first send
- downlink   = local kernel's stamp of the RESULT (or of its RESULT_REST read with it, a bound; else the local
               read) - (remote result send - offset)
- remote processing = remote result send - the delivery's end (both on the remote's clock)
- round trip = local read of the RESULT - local first send
- end to end = local end (predictions decoded) - local start (opening the image)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

APP_READ = "app_read"    # the transfer ended when the receiving node read it
KERNEL_RX = "kernel_rx"  # ... when the receiving host's kernel received its last byte
KERNEL_RX_BOUND = "kernel_rx_bound"  # ... when it received a later unit's, read with it: a bound from above


def ms(start_ns: int, end_ns: int) -> float:
    return (end_ns - start_ns) / 1e6


@dataclass(frozen=True)
class Transfer:
    """What one inference's uplink delivery and downlink RESULT took, from both nodes' stamps."""

    delivery_ms: float
    delivery_end: str
    delivery_read_ms: float
    remote_read_lag_ms: float | None
    delivery_uncertainty_ms: float
    downlink_ms: float
    downlink_end: str
    local_read_lag_ms: float | None
    remote_processing_ms: float
    round_trip_ms: float

    @classmethod
    def derive(cls, *, first_send: int, result_read: int, result_kernel: int | None, last_byte_read: int,
               last_byte_kernel: int | None, result_send: int, offset_ns: int, uncertainty_ns: int,
               result_bounded: bool = False) -> Transfer:
        """`first_send`, `result_read`, `result_kernel`: local stamps (the first byte of the inference sent, the
        RESULT read, its kernel arrival or None); `last_byte_read`, `last_byte_kernel`, `result_send`: the
        remote's (its read of the data unit's last byte, that byte's kernel arrival or None, the RESULT sent).
        `result_bounded`: `result_kernel` is the arrival of the RESULT_REST read with the RESULT (a bound)."""
        delivered = last_byte_read if last_byte_kernel is None else last_byte_kernel
        result_at = result_read if result_kernel is None else result_kernel
        return cls(
            delivery_ms=(delivered - offset_ns - first_send) / 1e6,
            delivery_end=APP_READ if last_byte_kernel is None else KERNEL_RX,
            delivery_read_ms=(last_byte_read - offset_ns - first_send) / 1e6,
            remote_read_lag_ms=None if last_byte_kernel is None else (last_byte_read - last_byte_kernel) / 1e6,
            delivery_uncertainty_ms=uncertainty_ns / 1e6,
            downlink_ms=(result_at - (result_send - offset_ns)) / 1e6,
            downlink_end=APP_READ if result_kernel is None else KERNEL_RX_BOUND if result_bounded else KERNEL_RX,
            local_read_lag_ms=None if result_kernel is None else (result_read - result_kernel) / 1e6,
            remote_processing_ms=(result_send - delivered) / 1e6,
            round_trip_ms=(result_read - first_send) / 1e6,
        )

    def figures(self) -> dict[str, Any]:
        """The record fields (docs/METRICS.md) these figures fill."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class LocalSegments:
    """The local node's own windows: preprocess, head, encode, send, result decode, end to end."""

    preprocess_ms: float
    local_inference_ms: float
    encode_ms: float
    send_ms: float | None
    result_decode_ms: float | None
    e2e_latency_ms: float | None

    @classmethod
    def derive(cls, stamps: dict[str, int | None]) -> LocalSegments:
        """From the record's `timestamps_ns` (local_start, local_preprocessed, local_head_done, local_encoded,
        local_first_send, local_send_done, local_result_received, local_end); later ones may be missing."""
        def span(start: str, end: str) -> float | None:
            a, b = stamps.get(start), stamps.get(end)
            return None if a is None or b is None else ms(a, b)

        def required(start: str, end: str) -> float:
            value = span(start, end)
            if value is None:
                raise ValueError(f"timestamps_ns needs {start} and {end}")
            return value

        return cls(required("local_start", "local_preprocessed"), required("local_preprocessed", "local_head_done"),
                   required("local_head_done", "local_encoded"), span("local_first_send", "local_send_done"),
                   span("local_result_received", "local_end"), span("local_start", "local_end"))
