"""`ForwarderOptions`: how the link process forwards (each option measured in docs/LINK.md)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from netem.errors import LinkError


@dataclass(frozen=True)
class ForwarderOptions:
    """Tuning of the forwarder (each one measured in docs/LINK.md); the defaults are the fast choice."""

    ignore_outgoing: bool = True
    qdisc_bypass: bool = True
    socket_buffer_bytes: int = 4 * 1024 * 1024
    batch: int = 256
    spin_us: int = 200
    min_sleep_percent: int = 15
    timer_slack_ns: int = 1
    realtime_priority: int = 10
    kernel_timestamps: bool = True
    #: Write a per-packet log here (netem.link.log; empty: no log). Costs a clock read and a line per frame.
    log_path: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= 65536:
            raise LinkError(f"batch {self.batch} must be in [1, 65536]")
        if not 0 <= self.spin_us <= 10_000:
            raise LinkError(f"spin_us {self.spin_us} must be in [0, 10000]")
        if not 0 <= self.min_sleep_percent <= 100:
            raise LinkError(f"min_sleep_percent {self.min_sleep_percent} must be in [0, 100]")
        if not 0 <= self.socket_buffer_bytes <= 1 << 30:
            raise LinkError(f"socket_buffer_bytes {self.socket_buffer_bytes} must be in [0, 2^30]")
        if not 1 <= self.timer_slack_ns <= 1_000_000_000:
            raise LinkError(f"timer_slack_ns {self.timer_slack_ns} must be in [1, 1e9]")
        if len(self.log_path) > 4096 or "\0" in self.log_path:
            raise LinkError("log_path must be a file path (at most 4096 characters, no NUL)")
        if not 0 <= self.realtime_priority <= 99:
            raise LinkError(f"realtime_priority {self.realtime_priority} must be in [0, 99] (0 = normal scheduling)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ForwarderOptions:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LinkError(f"unknown forwarder option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for key, value in data.items():
            expected = type(getattr(cls, key))
            if type(value) is not expected:
                raise LinkError(f"forwarder option {key} must be {expected.__name__}, not {value!r}")
        return cls(**data)
