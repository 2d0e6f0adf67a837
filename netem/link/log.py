"""Per-packet log of the userspace link (`netem shell --log FILE`), in the spirit of mahimahi's --uplink-log:
one text line per packet event, which `netem graph` (netem.linkgraph) turns into throughput and delay plots as
mm-throughput-graph and mm-delay-graph do.

Format (version 1), one event per line, times in ms since the link started (monotonic clock):

    # netem link log v1
    # base timestamp: <unix ms when the link started>
    # profile: <LinkProfile JSON, one line>        (again after every live profile change)
    <ms> <u|d> + <bytes>                 a frame entered the link (u: uplink ue->edge, d: downlink)
    <ms> <u|d> - <bytes> <delay ms>      a frame left the link, <delay ms> after it entered

Bytes are the Ethernet frame as the profile's rate counts it. A frame that entered and never left was dropped
(loss, a full queue, oversize): the log does not say which (the link's counters do, `--report`).
"""

from __future__ import annotations

import json
import os
import time
from typing import IO

from netem.errors import LinkError
from netem.profile import LinkProfile

VERSION_LINE = "# netem link log v1"
LOG_BUFFER_BYTES = 1 << 20
DIRECTION_LETTER = {"uplink": "u", "downlink": "d"}


class LinkLog:
    """Writes the events of both directions to one file (buffered; `close` flushes)."""

    def __init__(self, path: str, profile: LinkProfile, origin_ns: int) -> None:
        try:
            self._file: IO[str] = open(path, "w", buffering=LOG_BUFFER_BYTES, encoding="ascii")
        except OSError as exc:
            raise LinkError(f"cannot write the link log {path}: {exc.strerror or exc}") from None
        self.path = path
        self.origin_ns = origin_ns
        self._file.write(f"{VERSION_LINE}\n# base timestamp: {time.time_ns() // 1_000_000}\n")
        self.profile(profile)

    def profile(self, profile: LinkProfile) -> None:
        self._file.write(f"# profile: {json.dumps(profile.to_dict(), separators=(',', ':'))}\n")

    def arrival(self, letter: str, t_ns: int, size: int) -> None:
        self._file.write(f"{(t_ns - self.origin_ns) / 1e6:.3f} {letter} + {size}\n")

    def departure(self, letter: str, t_ns: int, size: int, delay_ns: int) -> None:
        self._file.write(f"{(t_ns - self.origin_ns) / 1e6:.3f} {letter} - {size} {delay_ns / 1e6:.3f}\n")

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
