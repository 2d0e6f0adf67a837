"""What a sweep measures: the matrix of points (profile x model x partition x encoding x compression) and the
stable key that names each point in the results, so that an interrupted sweep resumes where it stopped.

Partition selections read the model registry's data files (splitbed/models/data/<model>.toml): `all` = every
candidate partition, `seed` = the seed's example candidates (`seed_example = true`), or names/ids. The local
baseline (full local inference) adds each model's `predictions` partition unless it is selected already.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

ENCODINGS = ("tlv", "json-baseline")
NO_COMPRESSION = "none"
PARTITION_SETS = ("all", "seed")
DEFAULT_PROFILE = "5g-split-ai"
DEFAULT_MODELS = ("vgg16",)
DEFAULT_PARTITIONS = ("seed",)
DEFAULT_REPETITIONS = 10
DEFAULT_IMAGE = "builtin:chelsea"
FULL_MODELS = ("vgg16", "resnet50")
# The partition after the model's last layer: the head is the whole model, so its records measure full local
# inference on the UE (the 4 kB of scores still go uplink: the node protocol has no local-only mode). Every
# registered model has it; the sweep adds it per model as the local baseline unless told not to.
LOCAL_BASELINE_PARTITION = "predictions"
BASELINES = ("local",)
MAX_POINTS = 100_000
MAX_REPETITIONS = 10_000


class SweepSpecError(ValueError):
    """A sweep option names something that does not exist or cannot be combined."""


@dataclass(frozen=True, order=True)
class Point:
    """One measured configuration; `key` is stable across runs and written into each record's tags."""

    profile: str
    model: str
    partition: str
    encoding: str
    compression: str
    image: str
    weights: str
    backend: str
    runtime: str

    @property
    def key(self) -> str:
        return "|".join((self.profile, self.model, self.partition, self.encoding, self.compression, self.image,
                         self.weights, self.backend, self.runtime))

    def job(self, *, repetitions: int = 1, tags: dict[str, Any] | None = None) -> dict[str, Any]:
        """The local node job for this point (splitbed.nodes.jobs)."""
        return {"model": self.model, "partition": self.partition, "image": self.image, "encoding": self.encoding,
                "compression": self.compression, "repetitions": repetitions,
                "tags": {"point": self.key, **(tags or {})}}


@dataclass(frozen=True)
class SweepSpec:
    """The options of one `splitbed sweep` run."""

    profiles: tuple[str, ...] = (DEFAULT_PROFILE,)
    models: tuple[str, ...] = DEFAULT_MODELS
    partitions: tuple[str, ...] = DEFAULT_PARTITIONS
    encodings: tuple[str, ...] = ("tlv",)
    compressions: tuple[str, ...] = (NO_COMPRESSION,)
    repetitions: int = DEFAULT_REPETITIONS
    warmup: int = 1
    weights: str = "auto"
    backend: str = "auto"
    runtime: str = "process"
    image: str = DEFAULT_IMAGE
    baselines: tuple[str, ...] = BASELINES  # "local": a point at LOCAL_BASELINE_PARTITION per profile and model
    capture: bool = True       # packet captures per point (splitbed.sweep.capture); not part of the point key
    max_pcap_mb: float = 64.0  # size cap of each pcap kept (MB = 10^6 bytes), splitbed.sweep.capture
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("profiles", "models", "partitions", "encodings", "compressions"):
            if not getattr(self, name):
                raise SweepSpecError(f"sweep needs at least one of {name}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise SweepSpecError(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)} (the JPEG "
                                 "full-offload baseline is not implemented yet)")
        bad = [e for e in self.encodings if e not in ENCODINGS]
        if bad:
            raise SweepSpecError(f"unknown encoding(s) {bad}; choose from {', '.join(ENCODINGS)}")
        if not 1 <= self.repetitions <= MAX_REPETITIONS:
            raise SweepSpecError(f"repetitions must be 1..{MAX_REPETITIONS}, got {self.repetitions}")
        if not 0 <= self.warmup <= 100:
            raise SweepSpecError(f"warmup must be 0..100, got {self.warmup}")
        if not 0 <= self.max_pcap_mb <= 100_000:
            raise SweepSpecError(f"the pcap size cap must be 0..100000 MB, got {self.max_pcap_mb}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def full(cls, **overrides: Any) -> SweepSpec:
        """The seed's whole matrix: vgg16 + resnet50, every candidate partition, every built-in profile, both
        encodings."""
        from netem.profile import builtin_names

        base: dict[str, Any] = {"profiles": tuple(builtin_names()), "models": FULL_MODELS, "partitions": ("all",),
                                "encodings": ENCODINGS}
        base.update(overrides)
        return cls(**base)


def resolve_partitions(model: str, selection: Sequence[str]) -> list[str]:
    """Partition names of `model` for a selection of `all`, `seed`, names, aliases or ids, in registry order."""
    from splitbed.models import registry
    from splitbed.models.errors import ModelError

    try:
        spec = registry.get(model)
    except ModelError as exc:
        raise SweepSpecError(str(exc)) from None
    chosen: set[str] = set()
    for item in selection:
        if item == "all":
            chosen.update(p.name for p in spec.partitions)
        elif item == "seed":
            seeds = [p.name for p in spec.partitions if p.seed_example]
            chosen.update(seeds or [p.name for p in spec.partitions])
        else:
            try:
                chosen.add(spec.partition(item).name)
            except ModelError as exc:
                raise SweepSpecError(str(exc)) from None
    return [p.name for p in spec.partitions if p.name in chosen]


def canonical_compressions(names: Sequence[str]) -> list[str]:
    """Compression profile names (ids accepted) as the format library names them."""
    from splitbed.format.errors import FormatError
    from splitbed.format.profiles import get_profile

    result = []
    for name in names:
        try:
            result.append(get_profile(int(name) if name.isdigit() else name).name)
        except FormatError as exc:
            raise SweepSpecError(str(exc)) from None
    return list(dict.fromkeys(result))


def check_profiles(names: Sequence[str]) -> None:
    from netem.errors import NetemError
    from netem.profile import LinkProfile

    for name in names:
        try:
            LinkProfile.load(name)
        except NetemError as exc:
            raise SweepSpecError(str(exc)) from None


def points(spec: SweepSpec) -> list[Point]:
    """Every point of the matrix, grouped by profile (one testbed per profile), in a stable order.
    The json-baseline carriage has no compression profiles: it gets one point per partition."""
    check_profiles(spec.profiles)
    tlv_compressions = canonical_compressions(spec.compressions)
    result: list[Point] = []
    for profile in dict.fromkeys(spec.profiles):
        for model in dict.fromkeys(spec.models):
            selected = resolve_partitions(model, spec.partitions)
            for partition, encoding in itertools.product(selected, dict.fromkeys(spec.encodings)):
                compressions = tlv_compressions if encoding == "tlv" else (NO_COMPRESSION,)
                for compression in compressions:
                    result.append(Point(profile, model, partition, encoding, compression, spec.image, spec.weights,
                                        spec.backend, spec.runtime))
                    if len(result) > MAX_POINTS:
                        raise SweepSpecError(f"the sweep has more than {MAX_POINTS} points; split it up")
            if "local" in spec.baselines and LOCAL_BASELINE_PARTITION not in selected \
                    and LOCAL_BASELINE_PARTITION in resolve_partitions(model, ["all"]):
                encoding = "tlv" if "tlv" in spec.encodings else spec.encodings[0]
                result.append(Point(profile, model, LOCAL_BASELINE_PARTITION, encoding, NO_COMPRESSION, spec.image,
                                    spec.weights, spec.backend, spec.runtime))
    return result
