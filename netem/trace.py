"""Link capacity traces: mahimahi packet-delivery files and per-interval throughput files.

A trace says how much the link may carry over time; the userspace link (netem.link) replays it, repeating it
when it ends. Two formats are accepted (docs/LINK.md has the full description):

* **mahimahi packet-delivery** (``kind = "mahimahi"``): one non-negative integer per line, a time in
  milliseconds since the start of the trace; each line is one opportunity to deliver 1500 bytes (several
  lines may repeat the same millisecond). Timestamps never decrease; the last one is the trace's period and
  must be > 0. This is mahimahi's ``mm-link`` format, byte for byte.
* **throughput** (``kind = "throughput"``): one number per line, the link capacity in Mbit/s during one
  interval (>= 0; 0 is an outage). The interval is 1 s unless a header line ``# interval_ms: N`` sets it.
  ``#`` starts a comment line; blank lines are ignored. The trace's period is ``len(values) * interval``.

Both parsers cap the file size and the number of entries before reading, and name the file and line of the
first malformed entry.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netem.errors import TraceError

#: A trace file larger than this is refused before it is read (bytes).
MAX_TRACE_FILE_BYTES = 64 * 1024 * 1024
#: At most this many delivery opportunities (mahimahi) or intervals (throughput) per trace.
MAX_TRACE_ENTRIES = 5_000_000
#: Bytes one mahimahi delivery opportunity may carry (mahimahi's PACKET_SIZE).
MAHIMAHI_OPPORTUNITY_BYTES = 1500
#: Bounds for a throughput trace's interval, so a typo cannot make a link that never changes or spins.
MIN_INTERVAL_MS = 1
MAX_INTERVAL_MS = 3_600_000
#: A throughput value above this (Mbit/s) is refused as implausible (and would overflow nothing, but is a typo).
MAX_THROUGHPUT_MBIT = 100_000.0

_INTERVAL_RE = re.compile(r"^#\s*interval_ms\s*[:=]\s*(\S+)\s*$")


@dataclass(frozen=True)
class MahimahiTrace:
    """Delivery opportunities in ms from the trace start; ``period_ms`` = last timestamp (the trace repeats)."""

    opportunities_ms: tuple[int, ...]
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if not self.opportunities_ms:
            raise TraceError(f"{self.source}: a mahimahi trace needs at least one timestamp")
        previous = 0
        for index, ms in enumerate(self.opportunities_ms):
            if ms < 0 or ms < previous:
                raise TraceError(f"{self.source}: entry {index + 1} ({ms} ms) is negative or decreases")
            previous = ms
        if self.opportunities_ms[-1] <= 0:
            raise TraceError(f"{self.source}: the last timestamp must be > 0 ms (it is the trace's period)")

    @property
    def period_ms(self) -> int:
        return self.opportunities_ms[-1]

    def mean_rate_mbit(self) -> float:
        """Average capacity over one period, counting 1500 bytes per opportunity."""
        bits = len(self.opportunities_ms) * MAHIMAHI_OPPORTUNITY_BYTES * 8
        return bits / (self.period_ms / 1000) / 1e6


@dataclass(frozen=True)
class ThroughputTrace:
    """Capacity in Mbit/s per interval of ``interval_ms``; repeats after ``len(mbit) * interval_ms``."""

    mbit: tuple[float, ...]
    interval_ms: int = 1000
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if not self.mbit:
            raise TraceError(f"{self.source}: a throughput trace needs at least one value")
        if not MIN_INTERVAL_MS <= self.interval_ms <= MAX_INTERVAL_MS:
            raise TraceError(
                f"{self.source}: interval_ms {self.interval_ms} is outside [{MIN_INTERVAL_MS}, {MAX_INTERVAL_MS}]"
            )
        for index, value in enumerate(self.mbit):
            if not (math.isfinite(value) and 0.0 <= value <= MAX_THROUGHPUT_MBIT):
                raise TraceError(
                    f"{self.source}: value {index + 1} ({value!r} Mbit/s) must be finite and in "
                    f"[0, {MAX_THROUGHPUT_MBIT:g}]"
                )
        if max(self.mbit) <= 0.0:
            raise TraceError(f"{self.source}: every value is 0 Mbit/s: the link would never deliver anything")

    @property
    def period_ms(self) -> int:
        return len(self.mbit) * self.interval_ms

    def mean_rate_mbit(self) -> float:
        return sum(self.mbit) / len(self.mbit)


Trace = MahimahiTrace | ThroughputTrace
TRACE_KINDS = ("mahimahi", "throughput")


def _read_capped(path: Path) -> list[str]:
    """The file's lines, refusing a missing, non-regular or oversized file before reading it."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise TraceError(f"{path}: cannot open trace file: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise TraceError(f"{path}: not a regular file")
    if size > MAX_TRACE_FILE_BYTES:
        raise TraceError(f"{path}: {size} bytes is larger than the {MAX_TRACE_FILE_BYTES}-byte trace limit")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_TRACE_FILE_BYTES + 1)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace file: {exc.strerror or exc}") from exc
    if len(data) > MAX_TRACE_FILE_BYTES:
        raise TraceError(f"{path}: grew beyond the {MAX_TRACE_FILE_BYTES}-byte trace limit while reading")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return text.splitlines()


def parse_mahimahi(lines: list[str], source: str = "<memory>") -> MahimahiTrace:
    """Parse mahimahi lines: one integer ms per line; no blanks or comments (mahimahi refuses them too)."""
    values: list[int] = []
    previous = 0
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            raise TraceError(f"{source}:{lineno}: empty line (mahimahi traces have one integer per line)")
        if not line.isdigit() or not line.isascii():
            raise TraceError(f"{source}:{lineno}: not a non-negative integer millisecond (a mahimahi trace has "
                             "one per line; this file may not be a trace at all)")
        if len(line) > 12:
            raise TraceError(f"{source}:{lineno}: a millisecond value of more than 12 digits is implausibly large")
        ms = int(line)
        if ms < previous:
            raise TraceError(f"{source}:{lineno}: {ms} ms is before the previous line's {previous} ms")
        previous = ms
        values.append(ms)
        if len(values) > MAX_TRACE_ENTRIES:
            raise TraceError(f"{source}:{lineno}: more than {MAX_TRACE_ENTRIES} delivery opportunities")
    return MahimahiTrace(tuple(values), source)


def parse_throughput(lines: list[str], source: str = "<memory>") -> ThroughputTrace:
    """Parse throughput lines: one Mbit/s value per interval, ``# interval_ms: N`` header, ``#`` comments."""
    values: list[float] = []
    interval_ms = 1000
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = _INTERVAL_RE.match(line)
            if match:
                if values:
                    raise TraceError(f"{source}:{lineno}: interval_ms must come before the first value")
                try:
                    interval_ms = int(match.group(1))
                except ValueError:
                    raise TraceError(f"{source}:{lineno}: interval_ms is not an integer") from None
                if not MIN_INTERVAL_MS <= interval_ms <= MAX_INTERVAL_MS:
                    raise TraceError(
                        f"{source}:{lineno}: interval_ms {interval_ms} is outside [{MIN_INTERVAL_MS}, "
                        f"{MAX_INTERVAL_MS}]"
                    )
            continue
        # Messages never quote the line: a path may name any file (it is not a trace then), and its content
        # must not end up on a terminal or in a log.
        if len(line) > 32:
            raise TraceError(f"{source}:{lineno}: not a single Mbit/s value (more than 32 characters; this file "
                             "may not be a trace at all)")
        try:
            value = float(line)
        except ValueError:
            raise TraceError(f"{source}:{lineno}: not a number (Mbit/s); this file may not be a trace at all") from None
        if not (math.isfinite(value) and 0.0 <= value <= MAX_THROUGHPUT_MBIT):
            raise TraceError(f"{source}:{lineno}: the Mbit/s value must be finite and in [0, {MAX_THROUGHPUT_MBIT:g}]")
        values.append(value)
        if len(values) > MAX_TRACE_ENTRIES:
            raise TraceError(f"{source}:{lineno}: more than {MAX_TRACE_ENTRIES} intervals")
    return ThroughputTrace(tuple(values), interval_ms, source)


def load_mahimahi(path: str | os.PathLike[str]) -> MahimahiTrace:
    """Read a mahimahi packet-delivery trace file (capped, validated)."""
    file = Path(path)
    return parse_mahimahi(_read_capped(file), str(file))


def load_throughput(path: str | os.PathLike[str]) -> ThroughputTrace:
    """Read a per-interval throughput trace file (capped, validated)."""
    file = Path(path)
    return parse_throughput(_read_capped(file), str(file))


def load(path: str | os.PathLike[str], kind: str) -> Trace:
    """Read a trace of the given kind (``"mahimahi"`` or ``"throughput"``)."""
    if kind == "mahimahi":
        return load_mahimahi(path)
    if kind == "throughput":
        return load_throughput(path)
    raise TraceError(f"unknown trace kind {kind!r}: expected one of {', '.join(TRACE_KINDS)}")


def format_throughput(mbit: list[float] | tuple[float, ...], interval_ms: int = 1000, header: str = "") -> str:
    """Text of a throughput trace file (the inverse of `parse_throughput`), with optional comment header."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines.append(f"# interval_ms: {interval_ms}")
    lines.extend(f"{value:.3f}" for value in mbit)
    return "\n".join(lines) + "\n"


def builtin_trace_dir() -> Path:
    """The folder of the traces shipped with netem (package data)."""
    return Path(__file__).resolve().parent / "traces"


#: Start phases per trace period at which `delivery_ms` is evaluated: at least this many...
MIN_PHASES = 1000
#: ...and at least this many per throughput interval / mahimahi opportunity, up to `MAX_PHASES`.
PHASES_PER_ENTRY = 4
MAX_PHASES = 20_000


def start_phases_ms(trace: Trace) -> np.ndarray:
    """Evenly spaced start times over one period, dense enough to see every interval of the trace."""
    entries = len(trace.mbit) if isinstance(trace, ThroughputTrace) else len(trace.opportunities_ms)
    count = min(MAX_PHASES, max(MIN_PHASES, PHASES_PER_ENTRY * entries))
    return np.arange(count) * (trace.period_ms / count)


def delivery_ms(trace: Trace, counted_bytes: int, phases_ms: np.ndarray) -> np.ndarray:
    """How long the link takes to carry ``counted_bytes`` (as the trace's stage counts them: Ethernet frames for
    a throughput trace, IP packets for mahimahi) when the transfer starts at each of ``phases_ms`` (ms since the
    trace's time 0) with nothing queued before it; the trace repeats. This is the transmission time only (no
    propagation delay), as the userspace link's trace stages compute it, so that a trace with outages is not
    predicted from its mean rate (which hides that a transfer starting in a slow stretch waits for it)."""
    phases = np.mod(np.asarray(phases_ms, dtype=np.float64), trace.period_ms)
    if counted_bytes <= 0:
        return np.zeros_like(phases)
    if isinstance(trace, ThroughputTrace):
        return _throughput_delivery_ms(trace, counted_bytes * 8.0, phases)
    return _mahimahi_delivery_ms(trace, counted_bytes, phases)


def _throughput_delivery_ms(trace: ThroughputTrace, bits: float, phases: np.ndarray) -> np.ndarray:
    interval = float(trace.interval_ms)
    bits_per_ms = np.asarray(trace.mbit, dtype=np.float64) * 1e3
    knots = np.concatenate(([0.0], np.cumsum(bits_per_ms * interval)))  # bits carried by each interval start
    total = knots[-1]
    slot = np.minimum((phases // interval).astype(np.int64), len(bits_per_ms) - 1)
    target = knots[slot] + bits_per_ms[slot] * (phases - slot * interval) + bits
    period_index = np.ceil(target / total) - 1.0       # the repetition in which the last bit goes out
    remainder = np.minimum(target - period_index * total, total)  # in (0, total]; rounding never past it
    end_knot = np.clip(np.searchsorted(knots, remainder, side="left"), 1, len(bits_per_ms))
    segment = end_knot - 1                             # its rate is > 0: the knots rise across it
    finish = segment * interval + (remainder - knots[segment]) / bits_per_ms[segment]
    return period_index * trace.period_ms + finish - phases


def _mahimahi_delivery_ms(trace: MahimahiTrace, counted_bytes: int, phases: np.ndarray) -> np.ndarray:
    offsets = np.asarray(trace.opportunities_ms, dtype=np.float64)
    needed = math.ceil(counted_bytes / MAHIMAHI_OPPORTUNITY_BYTES)
    # an opportunity at the very start phase is gone: mahimahi (and DeliveryTraceStage) use up every opportunity
    # up to now before they queue the packet that arrives now
    last = np.searchsorted(offsets, phases, side="right") + needed - 1  # the opportunity that completes it
    return (last // len(offsets)) * trace.period_ms + offsets[last % len(offsets)] - phases
