"""Workloads: when the frames of a sweep point arrive, and what happens to a frame that arrives while the UE is
still busy with an earlier one.

A spec reads `KIND[:RATE][/POLICY]`:

- `single`: today's back-to-back frames (each starts when the previous one's record is written); nothing waits
  and nothing is dropped, so it takes no policy;
- `periodic:FPS`: a camera capturing FPS frames per second (MIN_RATE..MAX_RATE: 1-60 frames/s, the range of
  common camera frame rates), frame k captured at k / FPS;
- `poisson:RATE`: frames at exponential inter-arrival times of mean 1 / RATE, from a random generator seeded per
  point (splitbed.sweep.pacing), so that a point's arrivals are the same on every run.

The overload policy of a paced workload: `/queue:N` (default `/queue:1`) keeps up to N frames waiting while the
UE works, and drops a frame that arrives to a full queue; `/skip` drops every frame that arrives while the UE is
busy (a queue of 0). Nothing waits without a bound.

The UE is a single server taking frames first come, first served. `Pacer` makes its decisions one frame at a time,
so the sweep's real run loop and `simulate` (service times given: the estimate, the tests) share one piece of code.
Pure: no clock, no sockets.
"""

from __future__ import annotations

import math
import random
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

KINDS = ("single", "periodic", "poisson")
MIN_RATE, MAX_RATE = 1.0, 60.0   # frames/s
MAX_QUEUE = 1000
DEFAULT_QUEUE = 1
MAX_FRAMES = 10_000              # frames in one stream (the sweep's MAX_REPETITIONS)
MAX_SPEC_CHARS = 64
SINGLE = "single"
_NUMBER = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")


class WorkloadError(ValueError):
    """A workload spec that cannot be read; the message is one line and says the fix."""


@dataclass(frozen=True)
class Workload:
    """A parsed workload spec; `spec` is its canonical text (what the point key and the records carry)."""

    kind: str
    rate_hz: float | None = None   # frames/s (periodic) or mean arrival rate (poisson); None for single
    queue: int = 0                 # frames that may wait while the UE is busy (0 with /skip and for single)
    skip: bool = False

    @property
    def paced(self) -> bool:
        return self.kind != SINGLE

    @property
    def policy(self) -> str:
        """`queue:N`, `skip`, or `none` (single)."""
        if not self.paced:
            return "none"
        return "skip" if self.skip else f"queue:{self.queue}"

    @property
    def spec(self) -> str:
        return SINGLE if not self.paced else f"{self.kind}:{self.rate_hz:g}/{self.policy}"

    @property
    def deadline_s(self) -> float | None:
        """A frame is late when its latency from capture exceeds this: the mean time between frames (a camera's
        frame period), by which the next frame is due. None for single (no capture times)."""
        return None if self.rate_hz is None else 1.0 / self.rate_hz

    def describe(self) -> str:
        """One line for tables and the traffic-model's workload note."""
        if not self.paced:
            return "back-to-back single inferences (each starts when the previous one's record is written)"
        unit = "frame/s" if self.rate_hz == 1 else "frames/s"
        arrivals = (f"a camera at {self.rate_hz:g} {unit}" if self.kind == "periodic"
                    else f"Poisson arrivals at {self.rate_hz:g} {unit} (exponential inter-arrival times)")
        policy = ("a frame arriving while the UE is busy is dropped" if self.skip else
                  f"up to {self.queue} frame(s) wait while the UE is busy, a frame arriving to a full queue is dropped")
        return f"{arrivals}; {policy}"

    def arrivals(self, count: int, seed: int = 0) -> list[float]:
        """Capture times (s, from the stream's start) of `count` frames; [] for single (no pacing). The first
        frame is captured at 0; `seed` sets the Poisson draws (ignored otherwise)."""
        if not 0 <= count <= MAX_FRAMES:
            raise WorkloadError(f"a stream has 0..{MAX_FRAMES} frames, got {count}")
        if not self.paced or count == 0:
            return []
        assert self.rate_hz is not None
        if self.kind == "periodic":
            return [k / self.rate_hz for k in range(count)]
        draws = random.Random(seed)
        times, now = [0.0], 0.0
        for _ in range(count - 1):
            now += draws.expovariate(self.rate_hz)
            times.append(now)
        return times


def parse(text: str) -> Workload:
    """A Workload from `single`, `periodic:FPS[/queue:N|/skip]` or `poisson:RATE[/queue:N|/skip]`."""
    raw = text.strip().lower()
    if not raw or len(raw) > MAX_SPEC_CHARS:
        raise WorkloadError(f"workload {text[:MAX_SPEC_CHARS]!r}: give single, periodic:FPS or poisson:RATE, "
                            "e.g. periodic:10/queue:1")
    head, _, policy = raw.partition("/")
    kind, colon, value = head.partition(":")
    if kind not in KINDS:
        close = [k for k in KINDS if _near(kind, k)]
        hint = f"did you mean {close[0]}?" if close else "choose single, periodic:FPS or poisson:RATE"
        raise WorkloadError(f"workload {text!r}: unknown kind {kind!r}; {hint} (e.g. periodic:10/queue:1)")
    if kind == SINGLE:
        if colon or policy:
            raise WorkloadError(f"workload {text!r}: single runs each frame when the previous one is done (nothing "
                                "waits or drops); write just single, or periodic:FPS/queue:N for paced frames")
        return Workload(SINGLE)
    unit = "FPS" if kind == "periodic" else "RATE"
    if not _NUMBER.match(value):
        raise WorkloadError(f"workload {text!r}: {kind} needs a rate in frames/s, {MIN_RATE:g}..{MAX_RATE:g}: "
                            f"write {kind}:{unit}, e.g. {kind}:10")
    rate = float(value)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise WorkloadError(f"workload {text!r}: {rate:g} frames/s is out of range; give {MIN_RATE:g}..{MAX_RATE:g}, "
                            f"e.g. {kind}:{min(max(rate, MIN_RATE), MAX_RATE):g}")
    queue, skip = _policy(text, policy)
    return Workload(kind, rate, queue, skip)


def _policy(text: str, policy: str) -> tuple[int, bool]:
    if policy in ("", "queue"):
        return DEFAULT_QUEUE, False
    if policy == "skip":
        return 0, True
    name, _, value = policy.partition(":")
    if name == "queue" and value.isdigit() and 1 <= int(value) <= MAX_QUEUE:
        return int(value), False
    raise WorkloadError(f"workload {text!r}: the overload policy is /queue:N (N = 1..{MAX_QUEUE} waiting frames) "
                        "or /skip, e.g. periodic:10/queue:1")


def _near(word: str, target: str) -> bool:
    """A typo of `target`: one edit (insert, delete, substitute) or a swap of two neighbours away."""
    if abs(len(word) - len(target)) > 1 or not word:
        return False
    import difflib

    return difflib.SequenceMatcher(None, word, target).ratio() >= 0.8


class Pacer:
    """A first-come first-served UE with a waiting room of `queue` frames, deciding frame by frame.

    Use: `next_frame()` gives the frame the UE starts next (the queue's head, else the next frame to arrive, which
    an idle UE starts at its capture time); after serving it until `end` (s, the stream's clock),
    `during_service(end)` places the frames captured meanwhile: queued while there is room, else dropped."""

    def __init__(self, arrivals: Sequence[float], queue: int) -> None:
        if any(b < a for a, b in zip(arrivals, arrivals[1:], strict=False)):
            raise ValueError("arrival times must not decrease")
        if not 0 <= queue <= MAX_QUEUE:
            raise ValueError(f"queue must be 0..{MAX_QUEUE}, got {queue}")
        self.arrivals = list(arrivals)
        self.queue_limit = queue
        self.waiting: deque[int] = deque()
        self.queued: set[int] = set()   # frames that found the UE busy and waited in the queue
        self.dropped: list[int] = []
        self._next = 0

    def next_frame(self) -> int | None:
        if self.waiting:
            return self.waiting.popleft()
        if self._next < len(self.arrivals):
            self._next += 1
            return self._next - 1
        return None

    def during_service(self, end: float) -> list[int]:
        """Frames captured up to `end` while the UE was busy: each queued if there is room, else dropped (returned)."""
        dropped = []
        while self._next < len(self.arrivals) and self.arrivals[self._next] <= end:
            frame = self._next
            self._next += 1
            if len(self.waiting) < self.queue_limit:
                self.waiting.append(frame)
                self.queued.add(frame)
            else:
                dropped.append(frame)
        self.dropped += dropped
        return dropped


@dataclass(frozen=True)
class FrameFate:
    """What became of one frame (times in s on the stream's clock; None where a dropped frame has none)."""

    frame: int
    arrival: float
    dropped: bool
    queued: bool = False
    start: float | None = None
    end: float | None = None
    late: bool = False

    @property
    def wait(self) -> float | None:
        return None if self.start is None else self.start - self.arrival

    @property
    def latency(self) -> float | None:
        """Capture to done: the wait included."""
        return None if self.end is None else self.end - self.arrival


def simulate(workload: Workload, arrivals: Sequence[float], service_s: Sequence[float]) -> list[FrameFate]:
    """Every frame's fate, in frame order, when frame k takes `service_s[k]` seconds on the UE (from its start to
    its result); a frame is late when its latency exceeds the workload's deadline."""
    if len(service_s) < len(arrivals):
        raise ValueError(f"{len(arrivals)} frames but {len(service_s)} service times")
    if any(not math.isfinite(s) or s < 0 for s in service_s):
        raise ValueError("service times must be finite and >= 0")
    deadline = workload.deadline_s
    pacer = Pacer(arrivals, workload.queue)
    fates: dict[int, FrameFate] = {}
    free = 0.0
    while (frame := pacer.next_frame()) is not None:
        start = max(free, arrivals[frame])
        end = start + service_s[frame]
        late = deadline is not None and end - arrivals[frame] > deadline
        fates[frame] = FrameFate(frame, arrivals[frame], False, frame in pacer.queued, start, end, late)
        for dropped in pacer.during_service(end):
            fates[dropped] = FrameFate(dropped, arrivals[dropped], True)
        free = end
    return [fates[k] for k in range(len(arrivals))]
