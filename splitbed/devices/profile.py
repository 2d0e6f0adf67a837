"""Device profiles: what a UE or an edge server computes like, as plain frozen data read from TOML.

A profile names a device and gives, each with its public source: the full-model latency of the registered models
(batch 1; fp32 and int8 where published; a figure derived from another model by the ratio of MACs says so), the
power while inferring and idle, and for a UE the uplink radio power model per radio access (energy per bit +
base power while active). The built-ins live in `splitbed/data/devices/`; `host` stands for no emulation.
Meanings and limits: docs/DEVICES.md. Emulation (stretching, modelling) is splitbed.devices.emulation.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from splitbed.devices.errors import DeviceError, DeviceNotFoundError

HOST = "host"
ROLES = ("ue", "edge", "any")
PRECISIONS = ("fp32", "int8")
RADIO_ACCESS = ("lte", "nr-sub6", "nr-mmwave", "wired")  # netem.profile.RADIO_ACCESS; wired has no radio
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_FILE_BYTES = 256 * 1024
MAX_TEXT_CHARS = 4000
MAX_LATENCY_MS = 3_600_000.0   # an hour per image: beyond any device worth emulating
MAX_POWER_W = 10_000.0
MAX_ENERGY_PER_BIT_NJ = 1_000_000.0
MAX_BASE_POWER_MW = 1_000_000.0
MAX_MACS = 10**15
DERIVATION_TOLERANCE = 1e-3    # a derived figure must equal from_ms x macs / from_macs within this (relative)

_TOP_KEYS = {"name", "role", "description", "source", "precision", "latency", "power", "radio"}
_LATENCY_KEYS = {"fp32_ms", "int8_ms", "source", "derived"}
_DERIVED_KEYS = {"precision", "from_model", "from_ms", "macs", "from_macs"}
_POWER_KEYS = {"compute_w", "compute_source", "idle_w", "idle_source"}
_RADIO_KEYS = {"energy_per_bit_nj", "base_power_mw", "source"}


@dataclass(frozen=True)
class Derivation:
    """A latency not published for this device, derived from another model's published one by the MAC ratio."""

    precision: str
    from_model: str
    from_ms: float
    macs: int
    from_macs: int

    @property
    def factor(self) -> float:
        return self.macs / self.from_macs

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "from_model": self.from_model, "from_ms": self.from_ms,
                "macs": self.macs, "from_macs": self.from_macs, "factor": self.factor}


@dataclass(frozen=True)
class Latency:
    """A model's full-model time on the device, batch 1, per precision (None: not published)."""

    model: str
    fp32_ms: float | None
    int8_ms: float | None
    source: str
    derived: Derivation | None = None

    def ms(self, precision: str) -> float | None:
        return self.fp32_ms if precision == "fp32" else self.int8_ms

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "fp32_ms": self.fp32_ms, "int8_ms": self.int8_ms, "source": self.source,
                "derived": None if self.derived is None else self.derived.to_dict()}


@dataclass(frozen=True)
class PowerFigure:
    watts: float
    source: str


@dataclass(frozen=True)
class RadioModel:
    """Uplink radio power: P = energy_per_bit x bit rate + base power while the radio is active, so one transfer
    costs E = energy_per_bit x bits + base_power x airtime."""

    access: str
    energy_per_bit_nj: float
    base_power_mw: float
    source: str

    def energy_mj(self, payload_bytes: int, airtime_ms: float) -> tuple[float, float]:
        """(per-bit part, base part) in mJ for `payload_bytes` sent during `airtime_ms`."""
        per_bit = self.energy_per_bit_nj * payload_bytes * 8 / 1e6   # nJ -> mJ
        base = self.base_power_mw * airtime_ms / 1e3                  # mW x s -> mJ
        return per_bit, base

    def to_dict(self) -> dict[str, Any]:
        return {"access": self.access, "energy_per_bit_nj": self.energy_per_bit_nj,
                "base_power_mw": self.base_power_mw, "source": self.source}


@dataclass(frozen=True)
class DeviceProfile:
    """A named device: `role` ue, edge, or any (only `host`); `precision` the latency the emulation uses."""

    name: str
    role: str
    description: str
    source: str
    precision: str | None = None
    latencies: Mapping[str, Latency] = field(default_factory=dict)
    compute_power: PowerFigure | None = None
    idle_power: PowerFigure | None = None
    radio: Mapping[str, RadioModel] = field(default_factory=dict)
    radio_unavailable: Mapping[str, str] = field(default_factory=dict)  # access -> why there is no model
    path: str | None = None

    @property
    def is_host(self) -> bool:
        """No emulation at all: the node computes at the host's speed and nothing is modelled."""
        return not self.latencies

    def full_model_ms(self, model: str) -> float:
        """The device's full-model time for `model` at the profile's precision, or a DeviceError saying why not."""
        latency = self.latencies.get(model)
        value = None if latency is None or self.precision is None else latency.ms(self.precision)
        if value is None:
            have = sorted(m for m, lat in self.latencies.items() if self.precision and lat.ms(self.precision))
            raise DeviceError(f"device {self.name!r} has no {self.precision} latency for model {model!r} (it has "
                              f"{', '.join(have) or 'none'}); add [latency.{model}] to its profile or pick another "
                              "device ('splitbed devices'; host = this machine's speed)")
        return value

    def radio_for(self, access: str | None) -> tuple[RadioModel | None, str]:
        """The uplink radio model for a link's radio access, or None and the reason there is none."""
        if access is None:
            return None, "the link profile states no radio access (add radio = ... to it)"
        if access == "wired":
            return None, "the link profile is wired: no radio"
        model = self.radio.get(access)
        if model is not None:
            return model, ""
        if access in self.radio_unavailable:
            return None, f"device {self.name!r}: {self.radio_unavailable[access]}"
        return None, f"device {self.name!r} has no radio model for {access}"

    def check_role(self, side: str) -> None:
        """Raise unless this profile may run as the `side` ('ue' or 'edge') node."""
        if self.role not in ("any", side):
            node = "UE" if side == "ue" else side
            raise DeviceError(f"device {self.name!r} is {_a(self.role)} profile; the {node} node needs {_a(side)} "
                              f"profile or {HOST!r} (see `splitbed devices`)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "role": self.role, "description": self.description, "source": self.source,
            "precision": self.precision,
            "latencies": {m: lat.to_dict() for m, lat in self.latencies.items()},
            "compute_power": None if self.compute_power is None else vars(self.compute_power),
            "idle_power": None if self.idle_power is None else vars(self.idle_power),
            "radio": {a: r.to_dict() for a, r in self.radio.items()},
            "radio_unavailable": dict(self.radio_unavailable),
            "path": self.path,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str | None = None) -> DeviceProfile:
        """Build and validate from a TOML mapping (every figure bounded, every unknown key refused)."""
        if not isinstance(data, Mapping):
            raise DeviceError(f"a device profile must be a table, not {type(data).__name__}")
        _reject_unknown("device profile", data, _TOP_KEYS)
        for key in ("name", "role", "description", "source"):
            if key not in data:
                raise DeviceError(f"device profile is missing the required key {key!r}")
        name = _text("name", data["name"])
        if not NAME_PATTERN.match(name):
            raise DeviceError(f"name {name!r} must be 1-64 chars of lowercase letters, digits, '.', '_' or '-', "
                              "starting with a letter or digit")
        role = _text("role", data["role"])
        if role not in ROLES:
            raise DeviceError(f"role is {role!r}; it must be one of {', '.join(ROLES)}")
        latencies = _latencies(data.get("latency", {}))
        precision = data.get("precision")
        if latencies:
            if precision not in PRECISIONS:
                raise DeviceError(f"precision is {precision!r}; a profile with latencies must say which one the "
                                  f"emulation uses: {' or '.join(PRECISIONS)}")
            if not any(lat.ms(precision) is not None for lat in latencies.values()):
                raise DeviceError(f"precision is {precision!r} but no [latency.*] table gives {precision}_ms")
            if "power" not in data:
                raise DeviceError("a profile with latencies needs a [power] table (compute_w and its source)")
        elif precision is not None or "power" in data or "radio" in data:
            raise DeviceError("a profile without [latency.*] tables stands for the host (no emulation) and takes no "
                              "precision, [power] or [radio]")
        if role == "any" and latencies:
            raise DeviceError("role 'any' is only for the host (no emulation); an emulated device is ue or edge")
        compute, idle = _power(data.get("power"))
        radio, unavailable = _radio(data.get("radio", {}))
        if (radio or unavailable) and role != "ue":
            raise DeviceError(f"only a ue profile has [radio] tables; {name!r} is {role}")
        return cls(name=name, role=role, description=_text("description", data["description"]),
                   source=_text("source", data["source"]), precision=precision if latencies else None,
                   latencies=latencies, compute_power=compute, idle_power=idle, radio=radio,
                   radio_unavailable=unavailable, path=path)

    @classmethod
    def load(cls, name_or_path: str | Path) -> DeviceProfile:
        """A built-in profile by name (`phone-midrange`) or a TOML file by path (`./my-phone.toml`)."""
        text, where = _read(name_or_path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise DeviceError(f"{where}: not valid TOML: {exc}") from None
        try:
            profile = cls.from_dict(data, path=where)
        except DeviceError as exc:
            raise DeviceError(f"{where}: {exc}") from None
        if isinstance(name_or_path, str) and not _looks_like_path(name_or_path) and profile.name != name_or_path:
            raise DeviceError(f"{where}: the file of built-in {name_or_path!r} names itself {profile.name!r}")
        return profile


def _a(role: str) -> str:
    return {"ue": "a UE", "edge": "an edge"}.get(role, f"an {role}")


def _looks_like_path(text: str) -> bool:
    return text.endswith(".toml") or "/" in text


def builtin_names() -> list[str]:
    """The built-in device profiles, sorted (host first)."""
    folder = resources.files("splitbed.data").joinpath("devices")
    names = sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))
    return sorted(names, key=lambda n: (n != HOST, n))


def builtin_profiles() -> list[DeviceProfile]:
    return [DeviceProfile.load(name) for name in builtin_names()]


def load(name_or_path: str | Path) -> DeviceProfile:
    return DeviceProfile.load(name_or_path)


def _read(name_or_path: str | Path) -> tuple[str, str]:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        path = Path(text)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise DeviceNotFoundError(f"cannot read device profile {text!r}: {exc.strerror}") from None
        if size > MAX_FILE_BYTES:
            raise DeviceError(f"device profile {text} is {size} bytes; the limit is {MAX_FILE_BYTES}")
        try:
            return path.read_bytes()[:MAX_FILE_BYTES].decode("utf-8"), text
        except UnicodeDecodeError as exc:
            raise DeviceError(f"device profile {text} is not UTF-8 text: {exc}") from None
        except OSError as exc:
            raise DeviceNotFoundError(f"cannot read device profile {text!r}: {exc.strerror}") from None
    if not NAME_PATTERN.match(text) or text not in builtin_names():
        raise DeviceNotFoundError(f"{text[:80]!r} is neither a built-in device profile ({', '.join(builtin_names())}) "
                                  "nor a path to a .toml file")
    resource = resources.files("splitbed.data").joinpath("devices").joinpath(f"{text}.toml")
    return resource.read_text(encoding="utf-8"), f"{text}.toml"


def _reject_unknown(where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DeviceError(f"[{where}] has unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                          f"{', '.join(sorted(allowed))}")


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DeviceError(f"{where} must be a non-empty string")
    if len(value) > MAX_TEXT_CHARS:
        raise DeviceError(f"{where} is longer than {MAX_TEXT_CHARS} characters")
    return value


def _number(where: str, value: Any, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DeviceError(f"{where} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not 0 < number <= high:
        raise DeviceError(f"{where} must be > 0 and <= {high:g}, got {value!r}")
    return number


def _count(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_MACS:
        raise DeviceError(f"{where} must be a whole number in 1..{MAX_MACS}, got {value!r}")
    return value


def _latencies(table: Any) -> dict[str, Latency]:
    if not isinstance(table, Mapping):
        raise DeviceError("[latency] must hold one table per model, e.g. [latency.vgg16]")
    result = {}
    for model, entry in table.items():
        where = f"latency.{model}"
        if not isinstance(entry, Mapping):
            raise DeviceError(f"[{where}] must be a table with fp32_ms and/or int8_ms and a source")
        _reject_unknown(where, entry, _LATENCY_KEYS)
        if "source" not in entry:
            raise DeviceError(f"[{where}] needs a source (where each figure was published)")
        values = {p: None if entry.get(f"{p}_ms") is None else _number(f"{where}.{p}_ms", entry[f"{p}_ms"],
                                                                        MAX_LATENCY_MS) for p in PRECISIONS}
        if all(v is None for v in values.values()):
            raise DeviceError(f"[{where}] gives neither fp32_ms nor int8_ms")
        derived = None if entry.get("derived") is None else _derivation(f"{where}.derived", entry["derived"], values)
        result[str(model)] = Latency(str(model), values["fp32"], values["int8"], _text(f"{where}.source",
                                                                                        entry["source"]), derived)
    return result


def _derivation(where: str, data: Any, values: Mapping[str, float | None]) -> Derivation:
    if not isinstance(data, Mapping):
        raise DeviceError(f"{where} must be a table {{precision, from_model, from_ms, macs, from_macs}}")
    _reject_unknown(where, data, _DERIVED_KEYS)
    missing = sorted(_DERIVED_KEYS - set(data))
    if missing:
        raise DeviceError(f"{where} lacks {', '.join(missing)}")
    precision = data["precision"]
    if precision not in PRECISIONS:
        raise DeviceError(f"{where}.precision must be {' or '.join(PRECISIONS)}, got {precision!r}")
    derivation = Derivation(precision, _text(f"{where}.from_model", data["from_model"]),
                            _number(f"{where}.from_ms", data["from_ms"], MAX_LATENCY_MS),
                            _count(f"{where}.macs", data["macs"]), _count(f"{where}.from_macs", data["from_macs"]))
    value = values[precision]
    expected = derivation.from_ms * derivation.factor
    if value is None or abs(value - expected) > DERIVATION_TOLERANCE * expected:
        raise DeviceError(f"{where}: {precision}_ms must be from_ms x macs / from_macs = {expected:.6g}, got {value}")
    return derivation


def _power(table: Any) -> tuple[PowerFigure | None, PowerFigure | None]:
    if table is None:
        return None, None
    if not isinstance(table, Mapping):
        raise DeviceError("[power] must be a table")
    _reject_unknown("power", table, _POWER_KEYS)
    if "compute_w" not in table or "compute_source" not in table:
        raise DeviceError("[power] needs compute_w and compute_source")
    compute = PowerFigure(_number("power.compute_w", table["compute_w"], MAX_POWER_W),
                          _text("power.compute_source", table["compute_source"]))
    idle = None
    if table.get("idle_w") is not None:
        if "idle_source" not in table:
            raise DeviceError("[power] idle_w needs idle_source")
        idle = PowerFigure(_number("power.idle_w", table["idle_w"], MAX_POWER_W),
                           _text("power.idle_source", table["idle_source"]))
    return compute, idle


def _radio(table: Any) -> tuple[dict[str, RadioModel], dict[str, str]]:
    if not isinstance(table, Mapping):
        raise DeviceError("[radio] must hold one table per radio access, e.g. [radio.lte]")
    models, unavailable = {}, {}
    for access, entry in table.items():
        where = f"radio.{access}"
        if access not in RADIO_ACCESS or access == "wired":
            raise DeviceError(f"[{where}]: radio access must be one of lte, nr-sub6, nr-mmwave, got {access!r}")
        if not isinstance(entry, Mapping):
            raise DeviceError(f"[{where}] must be a table")
        if "unavailable" in entry:
            _reject_unknown(where, entry, {"unavailable"})
            unavailable[access] = _text(f"{where}.unavailable", entry["unavailable"])
            continue
        _reject_unknown(where, entry, _RADIO_KEYS)
        for key in sorted(_RADIO_KEYS):
            if key not in entry:
                raise DeviceError(f"[{where}] needs {key} (or only `unavailable = \"why\"`)")
        models[access] = RadioModel(access, _number(f"{where}.energy_per_bit_nj", entry["energy_per_bit_nj"],
                                                    MAX_ENERGY_PER_BIT_NJ),
                                    _number(f"{where}.base_power_mw", entry["base_power_mw"], MAX_BASE_POWER_MW),
                                    _text(f"{where}.source", entry["source"]))
    return models, unavailable
