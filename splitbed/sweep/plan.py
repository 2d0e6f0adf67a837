"""What a sweep measures: the matrix of points (profile x UE device x edge device x model x partition x encoding x
compression x workload) and the stable key that names each point in the results, so that an interrupted sweep
resumes where it stopped. A workload (splitbed.workload: when frames arrive, what happens to one that arrives while
the UE is busy) is in the key in its canonical spelling, except `single` (back to back), whose keys stay as they
were.

Rate sweeps (`rates`): each profile is measured once per uplink rate, at the profile's delay (and other fields):
the point's profile is then `NAME@RATEmbit` (e.g. `5g-split-ai@20mbit`), part of its key, resolved by
`link_profile` (netem.quicklink: the uplink rate replaced, the downlink as the profile has it).

Partition selections read the model registry's data files (splitbed/models/data/<model>.toml): `all` = every
candidate partition, `examples` = the model's example partitions (`seed_example = true` in its data file: VGG16's
six, block1_conv1 ... fc1), or names/ids. `seed`, the old name of `examples`, still works with a one-line note:
it read like the `random:SEED` of --weights. A model may be an `.onnx` file: its candidates are the graph's cuts
(ids = node indices; `examples` = all of them). The local baseline (full local inference) adds each model's
`predictions` partition unless it is selected already; the full-offload baselines add each registered model's
`camera` pseudo-partition (splitbed.models.camera: the uint8 camera image goes uplink, the edge preprocesses it
and runs the whole model), raw (`none`) and as a JPEG (`jpeg-q90`), in the tlv carriage.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from splitbed.devices import DEFAULT_EDGE, DEFAULT_UE
from splitbed.workload import SINGLE

ENCODINGS = ("tlv", "json-baseline")
BACKENDS = ("auto", "kernel", "userspace")
RUNTIMES = ("process", "docker")
TRANSPORTS = ("tcp", "quic")  # splitbed.nodes.quic.TRANSPORTS; the sweep names them without importing the nodes
DEFAULT_TRANSPORT = "tcp"
NO_COMPRESSION = "none"
PARTITION_SETS = ("all", "examples", "seed")
DEFAULT_PROFILE = "5g-split-ai"
DEFAULT_MODELS = ("vgg16",)
DEFAULT_PARTITIONS = ("examples",)
DEFAULT_REPETITIONS = 10
DEFAULT_IMAGE = "builtin:chelsea"
DEFAULT_WARMUP_MAX = 5
WARMUP_TOLERANCE = 0.05  # warm-ups end when two in a row took compute times within 5 % of each other
FULL_MODELS = ("vgg16", "resnet50")
DEFAULT_ENGINE = "tensorflow"
# The partition after the model's last layer: the head is the whole model, so its records measure full local
# inference on the UE (the 4 kB of scores still go uplink: the node protocol has no local-only mode). Every
# registered model has it; the sweep adds it per model as the local baseline unless told not to.
LOCAL_BASELINE_PARTITION = "predictions"
# Full offload of the camera image (splitbed.models.registry.CAMERA_PARTITION): the baseline name -> the
# compression profile it is carried with. JPEG quality 90 is the quality splitbed writes its built-in images at
# (splitbed.nodes.images); docs/SWEEP.md, "Baselines", says why.
CAMERA_PARTITION = "camera"
OFFLOAD_BASELINES = {"jpeg": "jpeg-q90", "raw": NO_COMPRESSION}
BASELINES = ("local", "jpeg", "raw")
MAX_POINTS = 100_000
MAX_RATES = 100
_RATE_SUFFIX = re.compile(r"^(?P<base>.+)@(?P<rate>[0-9]+(?:\.[0-9]+)?)mbit$")
MAX_REPETITIONS = 10_000


MAX_CELL_UES = 32  # netem.cell.MAX_UES
SINGLE_WORKLOAD = SINGLE  # back-to-back frames; spelled once, in splitbed.workload
MAX_WORKLOADS = 20


class SweepSpecError(ValueError):
    """A sweep option names something that does not exist or cannot be combined."""


class DeprecatedNameWarning(UserWarning):
    """An old name that still works; the command line says so once, in one line (splitbed.cli_support)."""


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
    engine: str = DEFAULT_ENGINE  # inference runtimes "UE/EDGE" (or one name for both sides)
    ue_device: str = DEFAULT_UE
    edge_device: str = DEFAULT_EDGE
    transport: str = DEFAULT_TRANSPORT  # tcp | quic (docs/PROTOCOL.md, section 8)
    ues: int = 0  # UEs sharing one emulated cell (netem.cell, splitbed.cellbed); 0 = the one-UE testbed, no cell
    workload: str = SINGLE_WORKLOAD  # canonical workload spec (splitbed.workload): when frames arrive, overload policy


    @property
    def key(self) -> str:
        parts = [self.profile, self.model, self.partition, self.encoding, self.compression, self.image,
                 self.weights, self.backend, self.runtime]
        if self.engine != DEFAULT_ENGINE:  # keys of TensorFlow points stay as they were (resume)
            parts.append(self.engine)
        if (self.ue_device, self.edge_device) != ("host", "host"):  # so do keys of points on this host's speed
            parts += [self.ue_device, self.edge_device]
        if self.transport != DEFAULT_TRANSPORT:  # and so do keys of TCP points
            parts.append(self.transport)
        if self.ues:  # and of points without a cell
            parts.append(f"ues={self.ues}")
        if self.workload != SINGLE_WORKLOAD:  # and of back-to-back points
            parts.append(f"workload={self.workload}")

        return "|".join(parts)

    @property
    def bed(self) -> tuple[str, ...]:
        """What one testbed serves: the link profile, the two nodes' devices, the transport binding and the cell's
        UE count."""
        bed: tuple[str, ...] = (self.profile, self.ue_device, self.edge_device)
        if self.transport != DEFAULT_TRANSPORT:
            bed = (*bed, self.transport)
        return (*bed, f"ues={self.ues}") if self.ues else bed

    def testbed_options(self) -> dict[str, Any]:
        """The testbed's options for this point's binding and cell ({} for one UE over TCP, the default)."""
        options: dict[str, Any] = {} if self.transport == DEFAULT_TRANSPORT else {"transport": self.transport}
        return {**options, "ues": self.ues} if self.ues else options


    def wanted(self, repetitions: int) -> int:
        """Good records that complete this point: `repetitions` per UE (a cell of N UEs runs N per job)."""
        return repetitions * max(1, self.ues)

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
    warmup_max: int = DEFAULT_WARMUP_MAX  # warm-ups go on (up to this) until the compute time settles
    cpus: str = "auto"  # where the UE node, the edge node and the link run (splitbed.runtime.cpus)
    weights: str = "auto"
    backend: str = "auto"
    runtime: str = "process"
    engine: str = DEFAULT_ENGINE  # inference runtime: tensorflow, onnxruntime, or UE/EDGE (e.g. onnxruntime/tensorflow)
    image: str = DEFAULT_IMAGE
    rates: tuple[float, ...] = ()  # uplink rates (Mbit/s) to sweep at each profile's delay; () = the profile's
    ue_devices: tuple[str, ...] = (DEFAULT_UE,)
    edge_devices: tuple[str, ...] = (DEFAULT_EDGE,)
    transports: tuple[str, ...] = (DEFAULT_TRANSPORT,)  # tcp, quic: the session's binding (part of the point key)
    baselines: tuple[str, ...] = BASELINES  # "local": a point at LOCAL_BASELINE_PARTITION per profile and model
    capture: bool = True       # packet captures per point (splitbed.sweep.capture); not part of the point key
    max_pcap_mb: float = 64.0  # size cap of each pcap kept (MB = 10^6 bytes), splitbed.sweep.capture
    ues: tuple[int, ...] = ()  # UEs per cell to sweep (splitbed.cellbed); () = the one-UE testbed, no cell
    workloads: tuple[str, ...] = (SINGLE_WORKLOAD,)  # splitbed.workload specs, part of the point key
    host_speed_probe: bool = True  # the reference workload between inferences (splitbed.sweep.hostspeed); not in the key
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("profiles", "models", "partitions", "encodings", "compressions", "ue_devices", "edge_devices",
                     "transports", "workloads"):
            if not getattr(self, name):
                raise SweepSpecError(f"sweep needs at least one of {name}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise SweepSpecError(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")
        bad = [e for e in self.encodings if e not in ENCODINGS]
        if bad:
            raise SweepSpecError(f"unknown encoding(s) {bad}; choose from {', '.join(ENCODINGS)}")
        if not 1 <= self.repetitions <= MAX_REPETITIONS:
            raise SweepSpecError(f"repetitions must be 1..{MAX_REPETITIONS}, got {self.repetitions}")
        if not 0 <= self.warmup <= 100:
            raise SweepSpecError(f"warmup must be 0..100, got {self.warmup}")
        if not self.warmup <= self.warmup_max <= 100:
            raise SweepSpecError(f"warmup_max must be warmup ({self.warmup})..100, got {self.warmup_max}")
        if len(self.rates) > MAX_RATES:
            raise SweepSpecError(f"at most {MAX_RATES} rates, got {len(self.rates)}")
        if self.backend not in BACKENDS:
            raise SweepSpecError(f"unknown backend {self.backend!r}; choose from {', '.join(BACKENDS)}")
        if self.runtime not in RUNTIMES:
            raise SweepSpecError(f"unknown runtime {self.runtime!r}; choose from {', '.join(RUNTIMES)}")
        bad = [t for t in self.transports if t not in TRANSPORTS]
        if bad:
            raise SweepSpecError(f"unknown transport(s) {bad}; choose from {', '.join(TRANSPORTS)}")
        if self.transports != (DEFAULT_TRANSPORT,) and self.runtime != "process":
            raise SweepSpecError("the QUIC transport runs with the process runtime only; drop --runtime or quic")
        if not 0 <= self.max_pcap_mb <= 100_000:
            raise SweepSpecError(f"the pcap size cap must be 0..100000 MB, got {self.max_pcap_mb}")
        engine_sides(self.engine)
        paced = [w for w in canonical_workloads(self.workloads) if w != SINGLE_WORKLOAD]
        if paced and self.ues:
            raise SweepSpecError("a paced workload (--workload) runs on the one-UE testbed: drop --ues or use "
                                 "--workload single")
        bad_ues = [n for n in self.ues if not (isinstance(n, int) and 1 <= n <= MAX_CELL_UES)]
        if bad_ues:
            raise SweepSpecError(f"ues {bad_ues}: each cell has 1..{MAX_CELL_UES} UEs")
        if self.ues and (self.backend == "kernel" or self.runtime != "process"):
            raise SweepSpecError("a cell of several UEs (--ues) runs on the userspace link with process nodes: "
                                 "leave --backend auto and --runtime process")
        if self.ues and self.transports != (DEFAULT_TRANSPORT,):
            raise SweepSpecError("a cell of several UEs (--ues) runs over TCP only (QUIC cells are not tested yet): "
                                 "drop --transport quic or --ues")
        from splitbed.models.errors import ModelError
        from splitbed.models.weights import check_spec
        from splitbed.nodes.errors import NodeError
        from splitbed.nodes.images import check_image
        from splitbed.runtime.cpus import CpuPlanError, plan_from

        try:
            check_spec(self.weights)
            check_image(self.image)
            plan_from(self.cpus)
        except (ModelError, NodeError, CpuPlanError) as exc:
            raise SweepSpecError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def full(cls, **overrides: Any) -> SweepSpec:
        """The testbed contribution's whole matrix: vgg16 + resnet50, every candidate partition, every built-in profile, both
        encodings."""
        from netem.profile import builtin_names

        base: dict[str, Any] = {"profiles": tuple(builtin_names()), "models": FULL_MODELS, "partitions": ("all",),
                                "encodings": ENCODINGS}
        base.update(overrides)
        return cls(**base)


def engine_sides(engine: str) -> tuple[str, str]:
    """(UE, edge) inference runtimes of an engine setting: `E` for both sides or `UE/EDGE`."""
    from splitbed.nodes.runner import ENGINES

    sides = engine.split("/")
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or any(s not in ENGINES for s in sides):
        raise SweepSpecError(f"engine {engine!r}: one of {', '.join(ENGINES)} for both nodes, or UE/EDGE such as "
                             "onnxruntime/tensorflow")
    return sides[0], sides[1]


def engine_args(engine: str) -> dict[str, list[str]]:
    """Testbed options that start the nodes on these inference runtimes ({} for the default)."""
    ue, edge = engine_sides(engine)
    if (ue, edge) == (DEFAULT_ENGINE, DEFAULT_ENGINE):
        return {}
    return {"local_args": ["--engine", ue], "remote_args": ["--engine", edge]}


def resolve_partitions(model: str, selection: Sequence[str]) -> list[str]:
    """Partition names of `model` (registered, or an `.onnx` file) for a selection of `all`, `examples`, names,
    aliases or ids, in registry order (splitbed.models.registry.select_partitions), with a SweepSpecError for
    anything unknown. `seed`, the old name of `examples`, still works with a one-line note."""
    from splitbed.models import registry, spec_for
    from splitbed.models.errors import ModelError

    if "seed" in selection:
        import warnings

        warnings.warn("-p seed is now -p examples (the model's example partitions); 'seed' still works for now",
                      DeprecatedNameWarning, stacklevel=2)
    try:
        return registry.select_partitions(spec_for(model), selection)
    except ModelError as exc:
        raise SweepSpecError(str(exc)) from None


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


def canonical_workloads(specs: Sequence[str]) -> list[str]:
    """Workload specs in their canonical spelling (splitbed.workload), duplicates removed."""
    from splitbed.workload import WorkloadError, parse

    if len(specs) > MAX_WORKLOADS:
        raise SweepSpecError(f"at most {MAX_WORKLOADS} workloads, got {len(specs)}")
    try:
        return list(dict.fromkeys(parse(text).spec for text in specs))
    except WorkloadError as exc:
        raise SweepSpecError(str(exc)) from None


def point_profiles(spec: SweepSpec) -> list[str]:
    """The profile of every point: each profile, or each profile at each of `spec.rates` (NAME@RATEmbit)."""
    names = list(dict.fromkeys(spec.profiles))
    if not spec.rates:
        return names
    return [f"{name}@{rate:g}mbit" for name in names for rate in dict.fromkeys(spec.rates)]


def link_profile(profile: str) -> Any:
    """The LinkProfile a point's profile names: a built-in name or TOML path, with `@RATEmbit` the same profile
    with that uplink rate (a capacity trace, if any, replaced by it)."""
    from netem.profile import LinkProfile
    from netem.quicklink import quick_profile

    match = _RATE_SUFFIX.match(profile)
    if match is None:
        return LinkProfile.load(profile)
    return quick_profile(LinkProfile.load(match["base"]), rate=match["rate"], uplink_only=True)


def check_profiles(names: Sequence[str]) -> None:
    from netem.errors import NetemError

    for name in names:
        try:
            link_profile(name).check_traces()
        except NetemError as exc:
            raise SweepSpecError(str(exc)) from None


def check_devices(ue_devices: Sequence[str], edge_devices: Sequence[str], models: Sequence[str]) -> None:
    """Every device exists, fits its side, and has a latency for every model of the sweep."""
    from splitbed.devices import DeviceError, load

    for side, names in (("ue", ue_devices), ("edge", edge_devices)):
        for name in names:
            try:
                device = load(name)
                device.check_role(side)
                if not device.is_host:
                    for model in models:
                        device.full_model_ms(model)
            except DeviceError as exc:
                raise SweepSpecError(str(exc)) from None


def points(spec: SweepSpec) -> list[Point]:
    """Every point of the matrix, grouped by (profile, UE device, edge device): one testbed each, in a stable
    order. The json-baseline carriage has no compression profiles: it gets one point per partition."""
    from splitbed.models.onnx import is_onnx_path

    profiles = point_profiles(spec)
    check_profiles(profiles)
    partitions = {model: resolve_partitions(model, spec.partitions) for model in dict.fromkeys(spec.models)}
    check_devices(spec.ue_devices, spec.edge_devices, spec.models)
    tlv_compressions = canonical_compressions(spec.compressions)
    workloads = canonical_workloads(spec.workloads)
    result: list[Point] = []
    for profile, ue, edge, transport, ues, workload in itertools.product(
            profiles, dict.fromkeys(spec.ue_devices), dict.fromkeys(spec.edge_devices),
            dict.fromkeys(spec.transports), dict.fromkeys(spec.ues or (0,)), workloads):

        for model in dict.fromkeys(spec.models):
            selected = partitions[model]
            for partition, encoding in itertools.product(selected, dict.fromkeys(spec.encodings)):
                compressions = tlv_compressions if encoding == "tlv" else (NO_COMPRESSION,)
                for compression in (c for c in compressions if encoding != "tlv" or _carries(c, partition)):
                    result.append(Point(profile, model, partition, encoding, compression, spec.image, spec.weights,
                                        spec.backend, spec.runtime, spec.engine, ue, edge, transport, ues, workload))

                    if len(result) > MAX_POINTS:
                        raise SweepSpecError(f"the sweep has more than {MAX_POINTS} points; split it up")
            if "local" in spec.baselines and LOCAL_BASELINE_PARTITION not in selected \
                    and transport == spec.transports[0] \
                    and LOCAL_BASELINE_PARTITION in resolve_partitions(model, ["all"]):  # once, on the first binding
                encoding = "tlv" if "tlv" in spec.encodings else spec.encodings[0]
                result.append(Point(profile, model, LOCAL_BASELINE_PARTITION, encoding, NO_COMPRESSION, spec.image,
                                    spec.weights, spec.backend, spec.runtime, spec.engine, ue, edge, transport,
                                    ues, workload))
            if transport == spec.transports[0] and not is_onnx_path(model):  # registered models have a camera
                for name, compression in OFFLOAD_BASELINES.items():
                    point = Point(profile, model, CAMERA_PARTITION, "tlv", compression, spec.image, spec.weights,
                                  spec.backend, spec.runtime, spec.engine, ue, edge, transport, ues, workload)
                    if name in spec.baselines and point not in result:
                        result.append(point)

    used = {p.compression for p in result}
    unused = [c for c in tlv_compressions if c not in used and "tlv" in spec.encodings]
    if unused:
        raise SweepSpecError(f"compression {', '.join(unused)} applies to none of the selected partitions: JPEG codes "
                             f"the camera image only (add -p {CAMERA_PARTITION}), the float profiles (fp16, bf16, "
                             "int8...) the model's tensors only")
    return result


def _carries(compression: str, partition: str) -> bool:
    """The profile applies to the partition's tensors: the camera's uint8 image takes the lossless profiles and
    JPEG, every other partition any profile but JPEG (an image coder)."""
    from splitbed.format.dtypes import DType
    from splitbed.format.profiles import get_profile

    profile = get_profile(compression)
    if partition == CAMERA_PARTITION:
        return profile.applies_to(DType.UINT8)
    return profile.coder.shape_problem((1,)) is None
