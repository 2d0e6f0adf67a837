"""Link profiles: what an emulated link must do, per direction, as plain frozen data.

A profile is the single source of truth shared by the kernel backend, the userspace link process (which gets it
as JSON), the metrics records (which embed it) and the docs (docs/PROFILES.md). Profiles live in TOML files; the
built-in ones are in `netem/profiles/`, each citing the source of its numbers.

Directions: **uplink = ue -> edge**, **downlink = edge -> ue**.

Units and meanings (every backend must honour exactly these):

- `rate_mbit`: link capacity in Mbit/s (10^6 bit/s). The bits counted are the Ethernet frame as it sits on the
  veth: 14-byte Ethernet header + IP packet; no preamble, FCS or inter-frame gap (the same bytes Linux's tbf
  counts). `None` = not shaped (as fast as the backend forwards).
- `delay_ms`: constant one-way delay added to every packet of this direction, milliseconds.
- `jitter_ms` with `jitter_distribution` (the same meaning as netem's `delay D J [distribution X]`):
  `uniform` = delay drawn uniformly from [D - J, D + J]; `normal` = normal with mean D and standard deviation J;
  `pareto` = heavy-tailed (netem's pareto table) scaled by J around D. A drawn delay below 0 counts as 0.
- `loss`: `RandomLoss(p)` drops each packet independently with probability p; `GilbertElliott(p, r, h, k)` is a
  two-state Markov chain (see its docstring; note h/k are LOSS probabilities here). `None` = no random loss.
- `queue_packets` / `queue_bytes`: the bottleneck queue limit in packets and/or bytes (either or both; when both
  are `None` the backend uses `DEFAULT_QUEUE_PACKETS`, the Linux txqueuelen/netem default). `queue_discipline`
  says which packet to drop when full: `droptail` (the arriving one), `drophead` (the oldest), `codel`; or
  names a per-UE scheduler of a shared cell, `rr` (deficit round robin) or `pf` (proportional fair), with one
  queue per UE (userspace link only; netem.link.cellsched, docs/NETEM.md "A cell of several UEs").
  A backend that cannot do something raises `UnsupportedProfileError`; it never silently approximates.
- `trace`: a capacity trace the link follows over time (`TraceRef(path, kind)`; kinds `mahimahi` =
  packet-delivery opportunities, one integer ms per line, and `throughput` = Mbit/s per interval; parsed by
  `netem.trace`). A trace replaces `rate_mbit` (setting both is an error). `TraceRef.start_s` starts the
  replay that many seconds into the trace (wrapping at its period) instead of at its beginning, so that runs can
  be placed at chosen points of a trace (the sweep does this per repetition, docs/SWEEP.md).
- `seed`: seeds every random draw of this direction (jitter, loss), so a run is reproducible.
- `radio` (whole profile, optional): the radio access the link stands for (`lte`, `nr-sub6`, `nr-mmwave`, or
  `wired`), so that a UE device profile can pick its uplink radio power model (splitbed.devices); `None` = not
  stated. The emulation ignores it.
- `expected_tcp` (profile level): what a bulk TCP flow should reach per direction and why (`ExpectedTcp`);
  netem.tcpcheck measures it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from netem import tomlfile
from netem.errors import ProfileError, ProfileNotFoundError
from netem.fields import Checker

BUILTIN_DIR = Path(__file__).resolve().parent / "profiles"
"""Where the built-in profiles live (package data)."""

JitterDistribution = Literal["uniform", "normal", "pareto"]
JITTER_DISTRIBUTIONS: tuple[str, ...] = ("uniform", "normal", "pareto")
QueueDiscipline = Literal["droptail", "drophead", "codel", "rr", "pf"]
QUEUE_DISCIPLINES: tuple[str, ...] = ("droptail", "drophead", "codel", "rr", "pf")
TraceKind = Literal["mahimahi", "throughput"]
TRACE_KINDS: tuple[str, ...] = ("mahimahi", "throughput")
RADIO_ACCESS: tuple[str, ...] = ("lte", "nr-sub6", "nr-mmwave", "wired")

DEFAULT_QUEUE_PACKETS = 1000
"""Queue limit when a profile sets none: Linux's default txqueuelen and netem's default limit."""

# Caps: every number is bounded so a hostile or mistyped file cannot ask for absurd resources.
MAX_RATE_MBIT = 100_000.0
MAX_DELAY_MS = 60_000.0
MAX_QUEUE_PACKETS = 1_000_000
MAX_QUEUE_BYTES = 1 << 30
MAX_SEED = (1 << 63) - 1
MAX_TRACE_START_S = 10_000_000.0  # seconds (116 days): beyond any trace's period
MAX_PROFILE_FILE_BYTES = 1 << 20
MAX_TEXT_CHARS = 4000
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_check = Checker(ProfileError)


@dataclass(frozen=True)
class RandomLoss:
    """Bernoulli loss: each packet is dropped independently with probability `p` (0..1)."""

    p: float

    def __post_init__(self) -> None:
        _check.number("loss.p", self.p, low=0.0, high=1.0)

    @property
    def mean_loss(self) -> float:
        """Long-run share of packets dropped."""
        return self.p

    def to_dict(self) -> dict[str, Any]:
        return {"model": "random", "p": self.p}


@dataclass(frozen=True)
class GilbertElliott:
    """Gilbert-Elliott bursty loss: a Good/Bad Markov chain stepped once per packet.

    - `p`: probability of moving Good -> Bad at a packet,
    - `r`: probability of moving Bad -> Good at a packet,
    - `h`: probability that a packet is LOST while in the Good state,
    - `k`: probability that a packet is LOST while in the Bad state.

    Careful: in the classic papers (and in `tc ... loss gemodel p r 1-h 1-k`) h and k are the probabilities of
    *delivery*; in this contract they are loss probabilities, so `GilbertElliott(p, r, h=0, k=1)` is the
    simple Gilbert model (no loss in Good, all lost in Bad). The chain starts in Good. Steady state:
    P(Bad) = p / (p + r), mean loss = (1 - P(Bad)) * h + P(Bad) * k, mean burst length in Bad = 1 / r.
    """

    p: float
    r: float
    h: float = 0.0
    k: float = 1.0

    def __post_init__(self) -> None:
        for field_name in ("p", "r", "h", "k"):
            _check.number(f"loss.{field_name}", getattr(self, field_name), low=0.0, high=1.0)
        if self.p > 0 and self.r == 0:
            raise ProfileError(
                "loss.r = 0 with loss.p > 0 traps the Gilbert-Elliott chain in the Bad state forever; "
                "set r > 0 (mean bad-burst length is 1/r packets)"
            )

    @property
    def bad_state_share(self) -> float:
        """Steady-state probability of being in the Bad state."""
        return 0.0 if self.p == 0 else self.p / (self.p + self.r)

    @property
    def mean_loss(self) -> float:
        """Long-run share of packets dropped."""
        bad = self.bad_state_share
        return (1.0 - bad) * self.h + bad * self.k

    def to_dict(self) -> dict[str, Any]:
        return {"model": "gilbert-elliott", "p": self.p, "r": self.r, "h": self.h, "k": self.k}


LossModel = RandomLoss | GilbertElliott


@dataclass(frozen=True)
class TraceRef:
    """A capacity trace file and its kind (`mahimahi` or `throughput`); parsed by `netem.trace`. The link
    replays it from `start_s` seconds into the trace (wrapping at the trace's period)."""

    path: str
    kind: TraceKind
    start_s: float = 0.0

    def __post_init__(self) -> None:
        _check.string("trace.path", self.path, non_empty=True)
        _check.choice("trace.kind", self.kind, TRACE_KINDS)
        _check.number("trace.start_s", self.start_s, low=0.0, high=MAX_TRACE_START_S)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind}
        if self.start_s:
            out["start_s"] = self.start_s
        return out

    def starting_at(self, start_s: float) -> TraceRef:
        return dataclasses.replace(self, start_s=start_s)


@dataclass(frozen=True)
class DirectionProfile:
    """What one direction of the link does to packets (see the module docstring for exact meanings)."""

    rate_mbit: float | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    jitter_distribution: JitterDistribution = "uniform"
    loss: LossModel | None = None
    queue_packets: int | None = None
    queue_bytes: int | None = None
    queue_discipline: QueueDiscipline = "droptail"
    trace: TraceRef | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        if self.rate_mbit is not None:
            _check.number("rate_mbit", self.rate_mbit, low=0.0, high=MAX_RATE_MBIT, low_open=True)
        _check.number("delay_ms", self.delay_ms, low=0.0, high=MAX_DELAY_MS)
        _check.number("jitter_ms", self.jitter_ms, low=0.0, high=MAX_DELAY_MS)
        _check.choice("jitter_distribution", self.jitter_distribution, JITTER_DISTRIBUTIONS)
        if self.loss is not None and not isinstance(self.loss, (RandomLoss, GilbertElliott)):
            raise ProfileError(f"loss must be RandomLoss, GilbertElliott or None, not {type(self.loss).__name__}")
        if self.queue_packets is not None:
            _check.integer("queue_packets", self.queue_packets, low=1, high=MAX_QUEUE_PACKETS)
        if self.queue_bytes is not None:
            _check.integer("queue_bytes", self.queue_bytes, low=1514, high=MAX_QUEUE_BYTES)
        _check.choice("queue_discipline", self.queue_discipline, QUEUE_DISCIPLINES)
        if self.trace is not None and not isinstance(self.trace, TraceRef):
            raise ProfileError(f"trace must be a TraceRef or None, not {type(self.trace).__name__}")
        if self.trace is not None and self.rate_mbit is not None:
            raise ProfileError("a trace sets the link capacity over time; leave rate_mbit unset when trace is set")
        _check.integer("seed", self.seed, low=0, high=MAX_SEED)

    @property
    def effective_queue_packets(self) -> int | None:
        """Packet limit the backend applies: the profile's, or the default when no limit at all is set."""
        if self.queue_packets is None and self.queue_bytes is None:
            return DEFAULT_QUEUE_PACKETS
        return self.queue_packets

    @property
    def is_impaired(self) -> bool:
        """True when this direction changes packets at all (an ideal direction can take a fast path)."""
        return (
            self.rate_mbit is not None
            or self.delay_ms > 0
            or self.jitter_ms > 0
            or (self.loss is not None and self.loss.mean_loss > 0)
            or self.trace is not None
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; `from_dict(to_dict())` gives an equal object."""
        return {
            "rate_mbit": self.rate_mbit,
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
            "jitter_distribution": self.jitter_distribution,
            "loss": None if self.loss is None else self.loss.to_dict(),
            "queue_packets": self.queue_packets,
            "queue_bytes": self.queue_bytes,
            "queue_discipline": self.queue_discipline,
            "trace": None if self.trace is None else self.trace.to_dict(),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, where: str = "direction", base_dir: Path | None = None, default_seed: int = 1
    ) -> DirectionProfile:
        """Build from a TOML/JSON table; relative trace paths resolve against `base_dir` (the profile's folder)."""
        _check.table(f"[{where}]", data)
        _check.keys(f"[{where}]", data, _DIRECTION_KEYS)
        kwargs: dict[str, Any] = {}
        for key in ("rate_mbit", "delay_ms", "jitter_ms"):
            if data.get(key) is not None:
                kwargs[key] = _check.number(f"{where}.{key}", data[key])
        for key in ("queue_packets", "queue_bytes", "seed"):
            if data.get(key) is not None:
                kwargs[key] = _check.integer(f"{where}.{key}", data[key], integral_float=True)
        for key in ("jitter_distribution", "queue_discipline"):
            if data.get(key) is not None:
                kwargs[key] = _check.string(f"{where}.{key}", data[key])
        kwargs.setdefault("seed", default_seed)
        if data.get("loss") is not None:
            kwargs["loss"] = loss_from_dict(data["loss"], where=f"{where}.loss")
        if data.get("trace") is not None:
            kwargs["trace"] = trace_from_dict(data["trace"], where=f"{where}.trace", base_dir=base_dir)
        try:
            return cls(**kwargs)
        except ProfileError as exc:
            raise ProfileError(f"[{where}] {exc}") from None


@dataclass(frozen=True)
class ExpectedTcp:
    """What one bulk TCP flow should reach through the profile (Mbit/s of payload, steady state), per shaped
    direction, and why (from the profile's source). `None` for a direction = no claim (unshaped, or a trace:
    then `basis` says what TCP should follow). netem.tcpcheck measures it; docs/PROFILES.md tabulates both."""

    basis: str
    uplink_mbit: float | None = None
    downlink_mbit: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.basis, str) or not self.basis.strip() or len(self.basis) > MAX_TEXT_CHARS:
            raise ProfileError(f"expected_tcp.basis must be a non-empty string of at most {MAX_TEXT_CHARS} chars")
        for key in ("uplink_mbit", "downlink_mbit"):
            value = getattr(self, key)
            if value is not None:
                _check.number(f"expected_tcp.{key}", value, low=0.0, high=MAX_RATE_MBIT, low_open=True)

    def direction(self, which: str) -> float | None:
        return {"uplink": self.uplink_mbit, "downlink": self.downlink_mbit}[which]

    def to_dict(self) -> dict[str, Any]:
        return {"basis": self.basis, "uplink_mbit": self.uplink_mbit, "downlink_mbit": self.downlink_mbit}

    @classmethod
    def from_dict(cls, data: Any) -> ExpectedTcp:
        _check.table("[expected_tcp]", data)
        _check.keys("[expected_tcp]", data, {"basis", "uplink_mbit", "downlink_mbit"})
        if "basis" not in data:
            raise ProfileError("[expected_tcp] needs basis: why TCP should reach these figures (from the source)")
        kwargs: dict[str, Any] = {"basis": _check.string("expected_tcp.basis", data["basis"])}
        for key in ("uplink_mbit", "downlink_mbit"):
            if data.get(key) is not None:
                kwargs[key] = _check.number(f"expected_tcp.{key}", data[key])
        return cls(**kwargs)


@dataclass(frozen=True)
class LinkProfile:
    """A named two-direction link: uplink (ue -> edge) and downlink (edge -> ue), with the source of its figures."""

    name: str
    description: str
    source: str
    uplink: DirectionProfile
    downlink: DirectionProfile
    radio: str | None = None  # RADIO_ACCESS, or None: not stated
    expected_tcp: ExpectedTcp | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise ProfileError(
                f"profile name {self.name!r} must be 1-64 chars of lowercase letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        for key in ("description", "source"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                raise ProfileError(f"profile {self.name!r}: {key} must be a non-empty string")
            if len(value) > MAX_TEXT_CHARS:
                raise ProfileError(f"profile {self.name!r}: {key} is longer than {MAX_TEXT_CHARS} characters")
        for key in ("uplink", "downlink"):
            if not isinstance(getattr(self, key), DirectionProfile):
                raise ProfileError(f"profile {self.name!r}: {key} must be a DirectionProfile")
        if self.radio is not None and self.radio not in RADIO_ACCESS:
            raise ProfileError(f"profile {self.name!r}: radio is {self.radio!r}; it must be one of "
                               f"{', '.join(RADIO_ACCESS)} (or left out)")
        if self.expected_tcp is not None and not isinstance(self.expected_tcp, ExpectedTcp):
            raise ProfileError(f"profile {self.name!r}: expected_tcp must be an ExpectedTcp or None")

    def direction(self, which: str) -> DirectionProfile:
        """The `uplink` or `downlink` profile by name."""
        if which == "uplink":
            return self.uplink
        if which == "downlink":
            return self.downlink
        raise ProfileError(f"direction must be 'uplink' or 'downlink', not {which!r}")

    def check_traces(self) -> None:
        """Read and validate every trace file the profile names (a TraceError naming the file and direction);
        planners call it so that a bad trace stops a run before any link starts, not when the link does."""
        from netem.errors import TraceError
        from netem.trace import load as load_trace

        for which in ("uplink", "downlink"):
            trace = self.direction(which).trace
            if trace is not None:
                try:
                    load_trace(trace.path, trace.kind)
                except TraceError as exc:
                    raise TraceError(f"profile {self.name!r} {which} trace: {exc}") from None

    def replace(self, **changes: Any) -> LinkProfile:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (trace paths absolute when loaded from a file); `from_dict` inverts it."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "uplink": self.uplink.to_dict(),
            "downlink": self.downlink.to_dict(),
            "radio": self.radio,
            **({} if self.expected_tcp is None else {"expected_tcp": self.expected_tcp.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: Path | None = None) -> LinkProfile:
        """Build and validate from a TOML/JSON mapping.

        A top-level `seed` (default 1) seeds the uplink; the downlink gets `seed + 1` so the two directions do not
        draw the same random sequence. A `seed` inside a direction table wins over both.
        """
        _check.table("a profile", data, what="a table/object")
        _check.keys("[profile]", data, _PROFILE_KEYS)
        _check.required("profile", data, ("name", "description", "source"))
        for key in ("uplink", "downlink"):
            if key not in data:
                raise ProfileError(f"profile {data.get('name')!r} is missing the [{key}] table (use {{}} for ideal)")
        seed = _check.integer("seed", data["seed"], low=0, high=MAX_SEED - 1, integral_float=True) \
            if data.get("seed") is not None else 1
        return cls(
            name=_check.string("name", data["name"]),
            description=_check.string("description", data["description"]),
            source=_check.string("source", data["source"]),
            radio=None if data.get("radio") is None else _check.string("radio", data["radio"]),
            uplink=DirectionProfile.from_dict(data["uplink"], where="uplink", base_dir=base_dir, default_seed=seed),
            downlink=DirectionProfile.from_dict(
                data["downlink"], where="downlink", base_dir=base_dir, default_seed=seed + 1
            ),
            expected_tcp=None if data.get("expected_tcp") is None else ExpectedTcp.from_dict(data["expected_tcp"]),
        )

    @classmethod
    def load(cls, name_or_path: str | Path) -> LinkProfile:
        """A built-in profile by name (`5g-embb`) or a TOML file by path (`./my.toml`)."""
        path = _locate(name_or_path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ProfileNotFoundError(f"cannot read profile file {path}: {exc.strerror}") from None
        if size > MAX_PROFILE_FILE_BYTES:
            raise ProfileError(f"profile file {path} is {size} bytes; the limit is {MAX_PROFILE_FILE_BYTES}")
        try:
            with path.open("rb") as handle:
                data = tomlfile.loads(handle.read(MAX_PROFILE_FILE_BYTES))
        except tomlfile.TomlError as exc:
            raise ProfileError(f"profile file {path} is {exc}") from None
        try:
            return cls.from_dict(data, base_dir=path.parent)
        except ProfileError as exc:
            raise type(exc)(f"{path}: {exc}") from None


def loss_from_dict(data: Any, *, where: str = "loss") -> LossModel:
    """`{model = "random", p = ...}` or `{model = "gilbert-elliott", p, r, h, k}` -> a loss model."""
    _check.table(f"[{where}]", data, what="a table with a 'model' key")
    model = data.get("model")
    try:
        if model == "random":
            _check.keys(f"[{where}]", data, {"model", "p"})
            if "p" not in data:
                raise ProfileError(f"[{where}] random loss needs p (drop probability 0..1)")
            return RandomLoss(p=_check.number(f"{where}.p", data["p"]))
        if model == "gilbert-elliott":
            _check.keys(f"[{where}]", data, {"model", "p", "r", "h", "k"})
            for key in ("p", "r"):
                if key not in data:
                    raise ProfileError(f"[{where}] gilbert-elliott loss needs {key}")
            return GilbertElliott(
                p=_check.number(f"{where}.p", data["p"]),
                r=_check.number(f"{where}.r", data["r"]),
                h=_check.number(f"{where}.h", data.get("h", 0.0)),
                k=_check.number(f"{where}.k", data.get("k", 1.0)),
            )
    except ProfileError as exc:
        if str(exc).startswith("["):
            raise
        raise ProfileError(f"[{where}] {exc}") from None
    _check.choice(f"[{where}] model", model, ("random", "gilbert-elliott"))
    raise AssertionError("unreachable")  # pragma: no cover


def trace_from_dict(data: Any, *, where: str = "trace", base_dir: Path | None = None) -> TraceRef:
    """`{path = "...", kind = "throughput"}` -> TraceRef; a relative path resolves against `base_dir`."""
    _check.table(f"[{where}]", data, what="a table with 'path' and 'kind'")
    _check.keys(f"[{where}]", data, {"path", "kind", "start_s"})
    for key in ("path", "kind"):
        if key not in data:
            raise ProfileError(f"[{where}] needs {key!r}")
    raw_path = Path(_check.string(f"{where}.path", data["path"]))
    if not raw_path.is_absolute() and base_dir is not None:
        raw_path = (base_dir / raw_path).resolve()
    try:
        start_s = _check.number(f"{where}.start_s", data["start_s"]) if "start_s" in data else 0.0
        return TraceRef(path=str(raw_path), kind=_check.string(f"{where}.kind", data["kind"]),  # type: ignore[arg-type]
                        start_s=start_s)
    except ProfileError as exc:
        raise ProfileError(f"[{where}] {exc}") from None


def builtin_names() -> list[str]:
    """Names of the profiles shipped in `netem/profiles/`, sorted."""
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.toml"))


def builtin_profiles() -> list[LinkProfile]:
    """Every built-in profile, loaded and validated, sorted by name."""
    return [LinkProfile.load(name) for name in builtin_names()]


# ---------------------------------------------------------------------------------------------------------------
_DIRECTION_KEYS = {field.name for field in dataclasses.fields(DirectionProfile)}
_PROFILE_KEYS = {"name", "description", "source", "uplink", "downlink", "seed", "radio", "expected_tcp"}


def _locate(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or text.endswith(".toml")
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ProfileNotFoundError(f"profile file {path} does not exist")
        return path
    if not NAME_PATTERN.match(text):
        raise ProfileNotFoundError(f"{text!r} is neither a built-in profile name nor a path to a .toml file")
    path = BUILTIN_DIR / f"{text}.toml"
    if not path.is_file():
        raise ProfileNotFoundError(
            f"no built-in profile named {text!r}; built-ins: {', '.join(builtin_names())} (or give a .toml path)"
        )
    return path
