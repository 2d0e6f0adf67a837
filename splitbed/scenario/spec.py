"""Scenario files (TOML): a base link profile, a timeline of live link changes, and the workload that runs on it.

    name = "drop-144-to-5"
    description = "..."
    profile = "5g-split-ai"                 # built-in name or a profile TOML path (relative to this file)
    ue_device = "phone-midrange"            # device profiles the nodes emulate (docs/DEVICES.md; these are the
    edge_device = "host"                    # defaults); a name or a TOML path (relative to this file)

    [workload]
    model = "mobilenet_v2"
    partition = "adaptive"                  # or a fixed partition name / id
    inferences = 40                         # and/or duration_s
    gap_ms = 200
    deadline_s = 10

    [policy]                                # splitbed.nodes.adaptive.PolicyConfig (partition = "adaptive" only)
    candidates = ["input_layer", "block_6_project_BN"]

    [[step]]
    at_s = 5.0
    uplink.rate_mbit = 5                    # rate / delay / jitter / loss / queue / trace changes, per direction

    [[step]]
    at_s = 12.0
    outage_s = 3                            # both directions drop everything for 3 s, then the link is restored

    [[step]]
    at_s = 16.0
    input_size = [160, 160]                 # the workload's images from now on (variable-input models)

Steps are resolved here, once, into a list of `LinkEvent`s, each holding the complete `LinkProfile` to apply,
so that a bad step is an error before any namespace exists. Meanings and every key: docs/SCENARIOS.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netem import tomlfile
from netem.errors import NetemError
from netem.fields import Checker
from netem.profile import MAX_TRACE_START_S, NAME_PATTERN, DirectionProfile, LinkProfile, RandomLoss
from splitbed.nodes.protocol import DEFAULT_RESULT_MODE

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "data" / "scenarios"
MAX_FILE_BYTES = 1 << 20
MAX_STEPS = 1000
MAX_AT_S = 86_400.0
MAX_INFERENCES = 100_000
MAX_GAP_MS = 600_000.0
MAX_IMAGES = 1000
DEFAULT_DEADLINE_S = 30.0
TRACE_KINDS_BY_SUFFIX = {".tput": "throughput", ".mahi": "mahimahi", ".trace": "mahimahi"}

_TOP_KEYS = {"name", "description", "profile", "backend", "workload", "policy", "step", "ue_device", "edge_device"}
_WORKLOAD_KEYS = {"model", "weights", "image", "images", "inferences", "duration_s", "gap_ms", "partition",
                  "compression", "encoding", "deadline_s", "result_mode", "input_size"}
_STEP_KEYS = {"at_s", "label", "uplink", "downlink", "profile", "outage_s", "input_size"}
_DIRECTION_KEYS = {f.name for f in dataclasses.fields(DirectionProfile)}


class ScenarioError(ValueError):
    """A scenario file that cannot run; the message names the file, the key and what is allowed."""


_check = Checker(ScenarioError)


@dataclass(frozen=True)
class LinkEvent:
    """One live link change: at `at_s` seconds after the timeline starts, apply `profile`."""

    at_s: float
    kind: str          # change | profile | outage_start | outage_end | input_size (a workload change)
    label: str
    profile: LinkProfile   # the link after the event (unchanged by an input_size event)
    step: int          # 0-based index of the [[step]] it comes from
    input_size: tuple[int, int] | None = None  # input_size events: the workload's new (height, width)

    @property
    def is_outage(self) -> bool:
        return self.kind == "outage_start"

    def to_dict(self) -> dict[str, Any]:
        return {"at_s": self.at_s, "kind": self.kind, "label": self.label, "step": self.step,
                "profile": self.profile.to_dict(),
                "input_size": None if self.input_size is None else list(self.input_size)}


@dataclass(frozen=True)
class Workload:
    """What runs on the link: one inference after another, `gap_ms` apart, until `inferences` or `duration_s`."""

    model: str = "mobilenet_v2"
    weights: str = "auto"
    images: tuple[str, ...] = ("builtin:chelsea",)
    inferences: int | None = None
    duration_s: float | None = None
    gap_ms: float = 100.0
    partition: str | int = "adaptive"
    compression: str | int = "none"
    encoding: str = "tlv"
    deadline_s: float = DEFAULT_DEADLINE_S
    result_mode: str = DEFAULT_RESULT_MODE
    input_size: tuple[int, int] | None = None   # None: the model's own size

    @property
    def adaptive(self) -> bool:
        return self.partition == "adaptive"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["images"] = list(self.images)
        data["input_size"] = None if self.input_size is None else list(self.input_size)
        return data


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    source: str                       # the file it came from
    base: LinkProfile
    workload: Workload
    policy: dict[str, Any] | None     # the [policy] table, validated by splitbed.nodes.adaptive.PolicyConfig
    events: tuple[LinkEvent, ...]
    backend: str = "auto"
    ue_device: str = "phone-midrange"  # splitbed.devices.DEFAULT_UE
    edge_device: str = "host"

    @property
    def outages(self) -> list[tuple[float, float]]:
        """(start s, end s) of every outage."""
        starts = [e for e in self.events if e.kind == "outage_start"]
        ends = [e for e in self.events if e.kind == "outage_end"]
        return [(s.at_s, e.at_s) for s, e in zip(starts, ends, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "source": self.source,
                "backend": self.backend, "ue_device": self.ue_device, "edge_device": self.edge_device,
                "base": self.base.to_dict(), "workload": self.workload.to_dict(),
                "policy": self.policy, "events": [e.to_dict() for e in self.events]}


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def locate(name_or_path: str | Path) -> Path:
    """A built-in scenario by name (`drop-144-to-5`) or a TOML file by path."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith(".toml"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ScenarioError(f"scenario file {path} does not exist")
        return path
    path = BUILTIN_DIR / f"{text}.toml"
    if not NAME_PATTERN.match(text) or not path.is_file():
        raise ScenarioError(f"no built-in scenario named {text!r}; built-ins: {', '.join(builtin_names())} "
                            "(or give a .toml path)")
    return path


def load(name_or_path: str | Path) -> Scenario:
    """Read and validate a scenario file (every error is a ScenarioError naming the file)."""
    path = locate(name_or_path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ScenarioError(f"{path}: {size} bytes; a scenario file may have at most {MAX_FILE_BYTES}")
    try:
        data = tomlfile.loads(path.read_bytes())
    except tomlfile.TomlError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    try:
        return parse(data, source=str(path), base_dir=path.parent)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def parse(data: dict[str, Any], *, source: str = "<memory>", base_dir: Path | None = None) -> Scenario:
    """Validate a parsed scenario table and resolve its steps into link events."""
    _check.keys("[scenario]", data, _TOP_KEYS)
    name = _check.string("scenario.name", data.get("name"), non_empty=True)
    if not NAME_PATTERN.match(name) or len(name) > 40:
        raise ScenarioError(f"name {name!r} must be 1-40 lowercase letters, digits, '.', '_' or '-'")
    description = str(data.get("description", "")) or name
    base = _profile(_check.string("scenario.profile", data.get("profile"), non_empty=True), base_dir, "profile")
    backend = _check.choice("backend", data.get("backend", "auto"), ("auto", "kernel", "userspace"))
    workload = _workload(data.get("workload"))
    ue_device, edge_device = (_device(data, key, side, base_dir, workload.model)
                              for key, side in (("ue_device", "ue"), ("edge_device", "edge")))
    policy = data.get("policy")
    if policy is not None:
        if not workload.adaptive:
            raise ScenarioError("[policy] applies only to workload.partition = \"adaptive\"")
        from splitbed.nodes.adaptive import PolicyConfig, PolicyError

        try:
            PolicyConfig.from_dict(policy)
        except PolicyError as exc:
            raise ScenarioError(f"[policy] {exc}") from None
    steps = data.get("step", [])
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise ScenarioError("[[step]] entries must be tables")
    if len(steps) > MAX_STEPS:
        raise ScenarioError(f"{len(steps)} steps; at most {MAX_STEPS}")
    events = _events(name, base, steps, base_dir, workload.model)
    if workload.duration_s is not None and events and events[-1].at_s >= workload.duration_s:
        late = next(e for e in events if e.at_s >= workload.duration_s)
        raise ScenarioError(f"step {late.step + 1} ({late.label}) at {late.at_s:g} s is not before the workload's "
                            f"end (duration_s = {workload.duration_s:g}); it would never be applied")
    return Scenario(name, description, source, base, workload, policy, tuple(events), backend, ue_device, edge_device)


def _device(data: dict[str, Any], key: str, side: str, base_dir: Path | None, model: str) -> str:
    """A device profile name (or path, relative to the scenario file) that exists, fits `side` and knows `model`."""
    from splitbed.devices import DEFAULT_EDGE, DEFAULT_UE, DeviceError
    from splitbed.devices import load as load_device

    name = str(data.get(key, DEFAULT_UE if side == "ue" else DEFAULT_EDGE))
    if base_dir is not None and (name.endswith(".toml") or "/" in name) and not Path(name).is_absolute():
        name = str(base_dir / name)
    try:
        device = load_device(name)
        device.check_role(side)
        if not device.is_host:
            device.full_model_ms(model)
    except DeviceError as exc:
        raise ScenarioError(f"{key}: {exc}") from None
    return name


# -- pieces -----------------------------------------------------------------------------------------------------
def _workload(raw: Any) -> Workload:
    if raw is None:
        raise ScenarioError("missing [workload] (model, inferences or duration_s, ...)")
    _check.table("[workload]", raw)
    _check.keys("[workload]", raw, _WORKLOAD_KEYS)
    values: dict[str, Any] = {}
    for key in ("model", "weights", "encoding", "result_mode"):
        if key in raw:
            values[key] = _check.string(f"workload.{key}", raw[key], non_empty=True)
    if "image" in raw and "images" in raw:
        raise ScenarioError("workload: give image or images, not both")
    if "image" in raw:
        values["images"] = (_check.string("workload.image", raw["image"], non_empty=True),)
    elif "images" in raw:
        images = raw["images"]
        if not isinstance(images, list) or not images or len(images) > MAX_IMAGES or \
                not all(isinstance(i, str) and i for i in images):
            raise ScenarioError(f"workload.images must be a list of 1..{MAX_IMAGES} image paths or builtin:NAME")
        values["images"] = tuple(images)
    if "inferences" in raw:
        values["inferences"] = _check.integer("workload.inferences", raw["inferences"], low=1, high=MAX_INFERENCES)
    for key, low_open, high in (("duration_s", True, MAX_AT_S), ("gap_ms", False, MAX_GAP_MS),
                                ("deadline_s", True, 3600.0)):
        if key in raw:
            values[key] = _check.number(f"workload.{key}", raw[key], low=0.0, high=high, low_open=low_open)
    if "inferences" not in values and "duration_s" not in values:
        raise ScenarioError("workload needs inferences or duration_s (or both: whichever ends first)")
    for key in ("partition", "compression"):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
                raise ScenarioError(f"workload.{key} must be a name or an id, got {value!r}")
            values[key] = value
    _check.choice("workload.encoding", values.get("encoding", "tlv"), ("tlv", "json-baseline"))
    if values.get("partition") == "adaptive" and values.get("encoding") == "json-baseline":
        raise ScenarioError("an adaptive partition needs the tlv encoding (the AIPS is what follows the switch)")
    if "input_size" in raw:
        values["input_size"] = _input_size(raw["input_size"], values.get("model", Workload.model), "workload")
    _check_inputs(values)
    return Workload(**values)


def _check_inputs(values: dict[str, Any]) -> None:
    """The workload's model, weights and images exist, checked at load (so `scenario check` catches them):
    a registered model name, a weights spec or Keras weights file, builtin images or image files."""
    from splitbed.models import registry
    from splitbed.models.errors import ModelError
    from splitbed.models.weights import WeightsError, check_spec
    from splitbed.nodes.errors import ConfigurationError
    from splitbed.nodes.images import check_image

    model = values.get("model", Workload.model)
    try:
        registry.get(model)
    except ModelError:
        raise ScenarioError(f"workload.model {model!r} is not a registered model; known: "
                            f"{', '.join(registry.names())}") from None
    try:
        check_spec(values.get("weights", Workload.weights))
    except WeightsError as exc:
        raise ScenarioError(f"workload.weights: {exc}") from None
    for image in values.get("images", Workload.images):
        try:
            check_image(image)
        except ConfigurationError as exc:
            raise ScenarioError(f"workload: {exc}") from None


def _input_size(raw: Any, model: str, where: str) -> tuple[int, int]:
    """[height, width] that the model can take (a variable-input model; the registry says, without TF)."""
    from splitbed.models import registry
    from splitbed.models.errors import ModelError

    if not isinstance(raw, list) or len(raw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                              for v in raw):
        raise ScenarioError(f"{where}.input_size must be [height, width] in pixels, got {raw!r}")
    try:
        registry.get(model).at_input_size(raw[0], raw[1])
    except ModelError as exc:
        raise ScenarioError(f"{where}.input_size: {exc}") from None
    return (raw[0], raw[1])


def _events(name: str, base: LinkProfile, steps: list[dict[str, Any]], base_dir: Path | None,
            model: str) -> list[LinkEvent]:
    events: list[LinkEvent] = []
    current = base
    outage_until: tuple[float, int] | None = None
    previous_at = -1.0
    for index, step in enumerate(steps):
        where = f"step {index + 1}"
        _check.keys(f"[{where}]", step, _STEP_KEYS)
        if "at_s" not in step:
            raise ScenarioError(f"{where}: needs at_s (seconds after the start)")
        at = _check.number(f"{where}.at_s", step["at_s"], low=0.0, high=MAX_AT_S)
        if outage_until is not None and at < outage_until[0]:
            raise ScenarioError(f"{where}: at_s = {at:g} falls inside the outage of step {outage_until[1] + 1} "
                                f"(until {outage_until[0]:g} s); change the link after the outage")
        if at <= previous_at:
            raise ScenarioError(f"{where}: at_s = {at:g} must be later than the step before ({previous_at:g} s)")
        previous_at = at
        kinds = [k for k in ("profile", "outage_s", "input_size") if k in step] + \
            (["direction"] if "uplink" in step or "downlink" in step else [])
        if len(kinds) != 1:
            raise ScenarioError(f"{where}: give exactly one of uplink/downlink changes, profile, outage_s, "
                                f"input_size (got {kinds or 'none'})")
        label = str(step.get("label", ""))
        step_name = f"{name}.s{index + 1}"
        if "outage_s" in step:
            length = _check.number(f"{where}.outage_s", step["outage_s"], low=0.0, high=MAX_AT_S, low_open=True)
            down = current.replace(
                name=f"{step_name}-outage", description=f"{name}: outage of {length:g} s (step {index + 1})",
                uplink=dataclasses.replace(current.uplink, loss=RandomLoss(1.0)),
                downlink=dataclasses.replace(current.downlink, loss=RandomLoss(1.0)))
            events.append(LinkEvent(at, "outage_start", label or f"outage {length:g} s", down, index))
            events.append(LinkEvent(at + length, "outage_end", f"link back after {length:g} s", current, index))
            outage_until = (at + length, index)
            previous_at = at + length - 1e-9
            continue
        if "input_size" in step:
            size = _input_size(step["input_size"], model, where)
            events.append(LinkEvent(at, "input_size", label or f"input {size[0]}x{size[1]}", current, index, size))
            continue
        if "profile" in step:
            current = _profile(_check.string(f"{where}.profile", step["profile"], non_empty=True), base_dir,
                               f"{where}.profile")
            events.append(LinkEvent(at, "profile", label or f"profile {current.name}", current, index))
            continue
        changes = {}
        for direction in ("uplink", "downlink"):
            if direction in step:
                changes[direction] = _direction(getattr(current, direction), step[direction], f"{where}.{direction}",
                                                base_dir)
        try:
            current = current.replace(name=step_name, description=f"{name}: {_describe(step)} (step {index + 1})",
                                      **changes)
        except NetemError as exc:
            raise ScenarioError(f"{where}: {exc}") from None
        events.append(LinkEvent(at, "change", label or _describe(step), current, index))
    return events


def _direction(current: DirectionProfile, raw: Any, where: str, base_dir: Path | None) -> DirectionProfile:
    if not isinstance(raw, dict) or not raw:
        raise ScenarioError(f"[{where}] must be a non-empty table of changes, e.g. {{ rate_mbit = 5 }}")
    _check.keys(f"[{where}]", raw, _DIRECTION_KEYS)
    merged = current.to_dict()
    raw = dict(raw)
    if "loss" in raw and isinstance(raw["loss"], (int, float)) and not isinstance(raw["loss"], bool):
        raw["loss"] = {"model": "random", "p": raw["loss"]}  # a plain number: independent loss probability
    if "trace" in raw:
        raw["trace"] = _trace(raw["trace"], f"{where}.trace", base_dir)
        merged["rate_mbit"] = None  # a trace replaces the rate
    if raw.get("rate_mbit") is not None:
        merged["trace"] = None      # a rate replaces a trace
    merged.update(raw)
    try:
        return DirectionProfile.from_dict(merged, where=where, base_dir=base_dir)
    except NetemError as exc:
        raise ScenarioError(str(exc)) from None


def _trace(raw: Any, where: str, base_dir: Path | None) -> dict[str, Any]:
    """`"file.tput"` (kind from the suffix; relative to the scenario file, else netem's built-in traces) or
    `{ path = ..., kind = ... }`, optionally with `start_s` (replay from that far into the trace)."""
    from netem.trace import builtin_trace_dir

    if isinstance(raw, str):
        kind = TRACE_KINDS_BY_SUFFIX.get(Path(raw).suffix)
        if kind is None:
            raise ScenarioError(f"{where} = {raw!r}: cannot tell the trace kind from the suffix; write "
                                "{ path = ..., kind = \"throughput\" | \"mahimahi\" }")
        raw = {"path": raw, "kind": kind}
    if not isinstance(raw, dict) or not {"path", "kind"} <= set(raw) <= {"path", "kind", "start_s"} \
            or not isinstance(raw["path"], str):
        raise ScenarioError(f"{where} must be a path string or {{ path = ..., kind = ..., start_s = ... }} "
                            "(start_s optional)")
    start = _check.number(f"{where}.start_s", raw.get("start_s", 0.0), low=0.0, high=MAX_TRACE_START_S)
    path = Path(raw["path"]).expanduser()
    if not path.is_absolute():
        local = (base_dir / path) if base_dir is not None else path
        path = local if local.is_file() else builtin_trace_dir() / path
    if not path.is_file():
        raise ScenarioError(f"{where}: trace file {raw['path']!r} not found (next to the scenario file or among "
                            f"netem's built-in traces in {builtin_trace_dir()})")
    from netem.trace import load as load_trace

    try:
        load_trace(path, str(raw["kind"]))
    except (NetemError, ValueError) as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    placed: dict[str, Any] = {"path": str(path.resolve()), "kind": str(raw["kind"])}
    if start:
        placed["start_s"] = float(start)
    return placed


def _profile(name_or_path: str, base_dir: Path | None, where: str) -> LinkProfile:
    candidate = Path(name_or_path)
    if base_dir is not None and not candidate.is_absolute() and (base_dir / candidate).is_file():
        name_or_path = str(base_dir / candidate)
    try:
        profile = LinkProfile.load(name_or_path)
        profile.check_traces()
    except NetemError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    return profile


def _describe(step: dict[str, Any]) -> str:
    parts = []
    for direction in ("uplink", "downlink"):
        for key, value in (step.get(direction) or {}).items():
            if key == "trace":
                value = Path(value if isinstance(value, str) else value.get("path", "?")).name
            parts.append(f"{direction}.{key}={value}")
    return ", ".join(parts)
