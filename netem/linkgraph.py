"""Read a per-packet link log (netem.link.log, `netem shell --log FILE`) and draw what mahimahi's
mm-throughput-graph and mm-delay-graph draw: per time window, the capacity the profile gives, the traffic
offered to the link (arrivals) and the traffic it delivered (departures), in Mbit/s; and every packet's delay
through the link, in ms. `netem graph LOG -o PNG`.

Everything drawn is measured by the link process (arrivals and departures), except the capacity line, which is
the profile's: a constant rate, or the capacity trace the profile replays (modelled from the trace file)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netem.errors import NetemError
from netem.link.log import VERSION_LINE

MAX_LOG_BYTES = 4 << 30
MAX_LINE_CHARS = 1 << 20  # a profile line with a trace path fits easily


class LinkLogError(NetemError, ValueError):
    """A file that is not a netem link log, or a malformed line in one."""


@dataclass
class DirectionLog:
    """One direction's events: arrival and departure times (ms), sizes (bytes) and delays (ms)."""

    arrivals_ms: list[float] = field(default_factory=list)
    arrival_bytes: list[int] = field(default_factory=list)
    departures_ms: list[float] = field(default_factory=list)
    departure_bytes: list[int] = field(default_factory=list)
    delays_ms: list[float] = field(default_factory=list)


@dataclass
class LinkLogData:
    base_unix_ms: int
    profiles: list[tuple[float, dict[str, Any]]]  # (from ms, LinkProfile.to_dict())
    uplink: DirectionLog
    downlink: DirectionLog

    def direction(self, name: str) -> DirectionLog:
        return self.uplink if name == "uplink" else self.downlink

    @property
    def end_ms(self) -> float:
        times = [t[-1] for d in (self.uplink, self.downlink) for t in (d.arrivals_ms, d.departures_ms) if t]
        return max(times, default=0.0)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    size = path.stat().st_size
    if size > MAX_LOG_BYTES:
        raise LinkLogError(f"{path} is {size} bytes; the limit is {MAX_LOG_BYTES}")
    with path.open(encoding="ascii", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if len(line) > MAX_LINE_CHARS:
                raise LinkLogError(f"{path}:{number}: line longer than {MAX_LINE_CHARS} characters")
            yield number, line.rstrip("\n")


def read_log(path: str | Path) -> LinkLogData:
    """Parse a link log; a malformed line is an error naming its line number."""
    path = Path(path)
    if not path.is_file():
        raise LinkLogError(f"no link log at {path} (write one with: netem shell --log FILE ...)")
    data = LinkLogData(0, [], DirectionLog(), DirectionLog())
    last_ms = 0.0
    for number, line in _lines(path):
        if number == 1:
            if line != VERSION_LINE:
                raise LinkLogError(f"{path} is not a netem link log (its first line is not {VERSION_LINE!r})")
            continue
        if line.startswith("# base timestamp: "):
            data.base_unix_ms = int(line.split(":", 1)[1])
        elif line.startswith("# profile: "):
            try:
                data.profiles.append((last_ms, json.loads(line.split(":", 1)[1])))
            except json.JSONDecodeError as exc:
                raise LinkLogError(f"{path}:{number}: profile line is not JSON: {exc}") from None
        elif line and not line.startswith("#"):
            fields = line.split()
            try:
                t, letter, event, size = float(fields[0]), fields[1], fields[2], int(fields[3])
                side = {"u": data.uplink, "d": data.downlink}[letter]
                if event == "+":
                    side.arrivals_ms.append(t)
                    side.arrival_bytes.append(size)
                elif event == "-":
                    side.departures_ms.append(t)
                    side.departure_bytes.append(size)
                    side.delays_ms.append(float(fields[4]))
                else:
                    raise ValueError(event)
            except (ValueError, IndexError, KeyError):
                raise LinkLogError(f"{path}:{number}: not '<ms> <u|d> <+|-> <bytes> [delay ms]': {line[:80]!r}") \
                    from None
            last_ms = t
    return data


def throughput_mbit(times_ms: list[float], sizes: list[int], window_ms: float, end_ms: float) -> list[float]:
    """Mbit/s per window [k*w, (k+1)*w) from events (time, bytes)."""
    windows = max(1, int(end_ms // window_ms) + 1)
    totals = [0] * windows
    for t, size in zip(times_ms, sizes, strict=True):
        totals[min(windows - 1, int(t // window_ms))] += size
    return [b * 8 / (window_ms / 1000) / 1e6 for b in totals]


def capacity_mbit(profiles: list[tuple[float, dict[str, Any]]], direction: str, window_ms: float,
                  end_ms: float) -> list[float | None]:
    """The profile's capacity per window (None where the direction is unshaped)."""
    from netem.profile import LinkProfile
    from netem.trace import MahimahiTrace
    from netem.trace import load as load_trace

    windows = max(1, int(end_ms // window_ms) + 1)
    out: list[float | None] = [None] * windows
    for index, (start_ms, data) in enumerate(profiles):
        stop_ms = profiles[index + 1][0] if index + 1 < len(profiles) else end_ms + window_ms
        link = LinkProfile.from_dict(data).direction(direction)
        trace = load_trace(link.trace.path, link.trace.kind) if link.trace is not None else None
        for k in range(int(start_ms // window_ms), min(windows, int(stop_ms // window_ms) + 1)):
            if trace is None:
                out[k] = link.rate_mbit
                continue
            assert link.trace is not None
            t = (k * window_ms - start_ms + link.trace.start_s * 1000) % trace.period_ms
            if isinstance(trace, MahimahiTrace):
                ops = sum(1 for o in trace.opportunities_ms if t <= o < t + window_ms)
                out[k] = ops * 1500 * 8 / (window_ms / 1000) / 1e6
            else:
                out[k] = trace.mbit[int(t // trace.interval_ms) % len(trace.mbit)]
    return out


def draw(path: str | Path, out: str | Path, *, direction: str = "uplink", window_ms: float = 100.0) -> Path:
    """Throughput (capacity, offered, delivered) and per-packet delay of one direction, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if direction not in ("uplink", "downlink"):
        raise LinkLogError(f"direction must be uplink or downlink, not {direction!r}")
    if not 1 <= window_ms <= 60_000:
        raise LinkLogError(f"window_ms must be in [1, 60000], got {window_ms:g}")
    data = read_log(path)
    side = data.direction(direction)
    if not side.arrivals_ms:
        raise LinkLogError(f"{path}: no {direction} packets in this log")
    end = data.end_ms
    x = [(k + 0.5) * window_ms / 1000 for k in range(max(1, int(end // window_ms) + 1))]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    capacity = capacity_mbit(data.profiles, direction, window_ms, end)
    if any(c is not None for c in capacity):
        top.fill_between(x, [c or 0.0 for c in capacity], step="mid", alpha=0.25, color="tab:gray",
                         label="capacity (profile)")
    offered = throughput_mbit(side.arrivals_ms, side.arrival_bytes, window_ms, end)
    delivered = throughput_mbit(side.departures_ms, side.departure_bytes, window_ms, end)
    top.step(x, offered, where="mid", color="tab:blue", label="offered (arrivals, measured)")
    top.step(x, delivered, where="mid", color="tab:red", label="delivered (departures, measured)")
    top.set_ylabel(f"Mbit/s ({window_ms:g} ms windows)")
    lost = len(side.arrivals_ms) - len(side.departures_ms)
    name = data.profiles[-1][1].get("name", "?") if data.profiles else "?"
    top.set_title(f"netem link {direction} ({name}): {len(side.arrivals_ms)} packets in, "
                  f"{len(side.departures_ms)} out ({lost} dropped or still queued)")
    top.legend(loc="upper right", fontsize="small")
    bottom.plot([t / 1000 for t in side.departures_ms], side.delays_ms, ".", markersize=2, color="tab:red")
    bottom.set_ylabel("per-packet delay, ms (measured)")
    bottom.set_xlabel("time since the link started, s")
    fig.tight_layout()
    target = Path(out)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
