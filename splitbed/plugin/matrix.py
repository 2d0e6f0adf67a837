"""The suite's test matrices, read from splitbed/data/suite.toml: which (model, partition, profile, carriage)
cases each check runs by default and with --full, filtered by --model / --profile.

A case's id is `model-partition-profile-uedevice-carriage` (e.g. `vgg16-block3_pool-5g-embb-phone-midrange-tlv-zstd`),
so that `pytest -k "vgg16 and 5g-embb and phone-midrange"` selects by model, profile and UE device. Names contain
hyphens, yet an id names one case only: each part comes from a known set (registered models and partitions,
built-in profiles and devices, carriages), and `parse_id` reads an id back by matching those sets (a test checks
every built-in combination). The UE devices are --ue-device (default phone-midrange). No TensorFlow here: this
runs at collection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from netem import tomlfile
from netem.fields import Checker

DEFAULT_UE = "phone-midrange"  # splitbed.devices.DEFAULT_UE (not imported: collection stays light)
SUITE_FILE = "suite.toml"
CHECKS = ("correctness", "budgets", "capture", "bench")
GROUP_KEYS = {"models", "partitions", "profiles", "carriages"}
JSON_CARRIAGE = "json-baseline"


class MatrixError(ValueError):
    """suite.toml (or a filter) names something that does not exist."""


_check = Checker(MatrixError)


@dataclass(frozen=True, order=True)
class SuiteCase:
    """One point of a matrix: what runs, over which link, in which carriage."""

    model: str
    partition: str
    profile: str
    carriage: str  # "tlv-<compression>" or "json-baseline"
    ue_device: str = DEFAULT_UE

    @property
    def id(self) -> str:
        return f"{self.model}-{self.partition}-{self.profile}-{self.ue_device}-{self.carriage}"

    @property
    def encoding(self) -> str:
        return JSON_CARRIAGE if self.carriage == JSON_CARRIAGE else "tlv"

    @property
    def compression(self) -> str:
        return "none" if self.carriage == JSON_CARRIAGE else self.carriage.removeprefix("tlv-")

    @property
    def lossless(self) -> bool:
        if self.carriage == JSON_CARRIAGE:
            return True  # the testbed contribution's JSON carries float32 values as shortest round-trip decimals
        from splitbed.format import get_profile

        return bool(get_profile(self.compression).lossless)

    def job(self, **extra: Any) -> dict[str, Any]:
        """The local node job (splitbed.nodes.jobs) for this case."""
        return {"model": self.model, "partition": self.partition, "encoding": self.encoding,
                "compression": self.compression, "image": suite_settings()["image"], **extra}


@cache
def load_suite(path: str | None = None) -> dict[str, Any]:
    """suite.toml as a dict (the packaged one unless `path` is given)."""
    if path is not None:
        text = Path(path).read_text()
    else:
        text = resources.files("splitbed.data").joinpath(SUITE_FILE).read_text()
    try:
        return tomlfile.loads(text)
    except tomlfile.TomlError as exc:
        raise MatrixError(f"{path or SUITE_FILE}: {exc}") from None


def suite_settings() -> dict[str, Any]:
    return dict(load_suite().get("settings", {}))


def check_settings(check: str) -> dict[str, Any]:
    """A check's scalar settings (e.g. tolerances), without its case groups."""
    table = load_suite().get(check)
    if not isinstance(table, Mapping):
        raise MatrixError(f"{SUITE_FILE} has no [{check}] table")
    return {k: v for k, v in table.items() if k not in ("default", "full")}


def _expand(value: Any, everything: Sequence[str], what: str, where: str) -> list[str]:
    if value == "*":
        return list(everything)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise MatrixError(f"{where}: {what} must be a non-empty list of names or \"*\", got {value!r}")
    return list(value)


def _group_cases(group: Mapping[str, Any], where: str) -> list[SuiteCase]:
    from netem.profile import builtin_names
    from splitbed.models import registry

    _check.table(where, group)
    _check.keys(where, group, GROUP_KEYS, noun="keys")
    missing = GROUP_KEYS - set(group)
    if missing:
        raise MatrixError(f"{where}: missing keys {sorted(missing)}")
    models = _expand(group["models"], registry.names(), "models", where)
    profiles = _expand(group["profiles"], builtin_names(), "profiles", where)
    carriages = _expand(group["carriages"], (), "carriages", where)
    for profile in profiles:
        if profile not in builtin_names():
            raise MatrixError(f"{where}: unknown link profile {profile!r}; built-in: {', '.join(builtin_names())}")
    for carriage in carriages:
        _check_carriage(carriage, where)
    cases = []
    for model in models:
        if model not in registry.names():
            raise MatrixError(f"{where}: unknown model {model!r}; registered: {', '.join(registry.names())}")
        spec = registry.get(model)
        names = [p.name for p in spec.partitions]
        for partition in _expand(group["partitions"], names, "partitions", where):
            name = spec.partition(partition).name  # canonical name (aliases accepted); raises if unknown
            for profile in profiles:
                for carriage in carriages:
                    cases.append(SuiteCase(model, name, profile, carriage))
    return cases


def _check_carriage(carriage: str, where: str) -> None:
    if carriage == JSON_CARRIAGE:
        return
    if not carriage.startswith("tlv-"):
        raise MatrixError(f"{where}: carriage {carriage!r} must be \"tlv-<compression>\" or \"{JSON_CARRIAGE}\"")
    from splitbed.format import get_profile
    from splitbed.format.errors import FormatError

    try:
        get_profile(carriage.removeprefix("tlv-"))
    except (FormatError, KeyError, ValueError) as exc:
        raise MatrixError(f"{where}: carriage {carriage!r}: {exc}") from None


def cases(check: str, *, full: bool = False, models: Iterable[str] = (), profiles: Iterable[str] = (),
          ue_devices: Iterable[str] = ()) -> list[SuiteCase]:
    """The cases of `check` (default groups, plus full groups with `full`), filtered, unique, once per UE device
    (default phone-midrange), sorted by UE device, model, profile, partition (so one testbed serves a model's cases
    and the link changes as rarely as possible)."""
    devices = check_ue_devices(ue_devices)
    if check not in CHECKS:
        raise MatrixError(f"unknown check {check!r}; checks: {', '.join(CHECKS)}")
    table = load_suite().get(check, {})
    groups = list(table.get("default", []))
    if full:
        groups += list(table.get("full", []))
    found: dict[str, SuiteCase] = {}
    for index, group in enumerate(groups):
        for case in _group_cases(group, f"{SUITE_FILE} [{check}] group {index + 1}"):
            found.setdefault(case.id, case)
    wanted_models, wanted_profiles = set(models), set(profiles)
    selected = [replace(c, ue_device=device) for device in devices for c in found.values()
                if (not wanted_models or c.model in wanted_models)
                and (not wanted_profiles or c.profile in wanted_profiles)]
    return sorted(selected, key=lambda c: (c.ue_device, c.model, c.profile, c.partition, c.carriage))


def check_ue_devices(names: Iterable[str]) -> list[str]:
    """The UE devices asked for (default phone-midrange), each a built-in device name that a UE may emulate."""
    from splitbed.devices import DeviceError, load

    devices = list(dict.fromkeys(names)) or [DEFAULT_UE]
    for name in devices:
        try:
            device = load(name)
            device.check_role("ue")
        except DeviceError as exc:
            raise MatrixError(f"--splitbed-ue-device: {exc}") from None
        if device.path != f"{name}.toml":
            raise MatrixError(f"--splitbed-ue-device {name!r}: the suite takes built-in device names (splitbed devices)")
    return devices


def parse_id(case_id: str) -> SuiteCase:
    """The case an id names, read back by matching each part against its known set (MatrixError if none)."""
    from netem.profile import builtin_names
    from splitbed.devices import builtin_names as device_names
    from splitbed.models import registry

    found = []
    for model in registry.names():
        if not case_id.startswith(model + "-"):
            continue
        rest = case_id[len(model) + 1:]
        for partition in (p.name for p in registry.get(model).partitions):
            if not rest.startswith(partition + "-"):
                continue
            after = rest[len(partition) + 1:]
            for profile in builtin_names():
                for device in device_names():
                    prefix = f"{profile}-{device}-"
                    if after.startswith(prefix):
                        carriage = after[len(prefix):]
                        if carriage == JSON_CARRIAGE or carriage.startswith("tlv-"):
                            found.append(SuiteCase(model, partition, profile, carriage, device))
    if len(found) != 1:
        raise MatrixError(f"id {case_id!r} names {len(found)} cases: {[c for c in found][:3]}")
    return found[0]


def lifetime_cases(*, models: Iterable[str] = (), profiles: Iterable[str] = (),
                   ue_devices: Iterable[str] = ()) -> list[SuiteCase]:
    """The cases the lifetime-rule tests run on: the [lifetime] model's first partition, raw TLV, on each of its
    profiles, once per UE device (empty when the filters exclude them)."""
    table = check_settings("lifetime")
    model, partition = str(table["model"]), str(table["first_partition"])
    wanted_models, wanted_profiles = set(models), set(profiles)
    if wanted_models and model not in wanted_models:
        return []
    return [SuiteCase(model, partition, p, "tlv-none", device) for device in check_ue_devices(ue_devices)
            for p in table["profiles"] if not wanted_profiles or p in wanted_profiles]
