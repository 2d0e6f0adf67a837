"""Model registry: one TOML file per model in splitbed/models/data/ holds its constructor and candidate partitions.

The data files are the single source of truth for partition ids and names: code, tests and docs/MODELS.md all
read them. Reading the registry never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from netem.fields import Checker
from splitbed.models.errors import PartitionDataError, UnknownModelError, UnknownPartitionError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# Partition ids are carried in the AIPS; keep them small so any reasonable field width holds them. 255 is the
# camera pseudo-partition of every registered model (CAMERA_PARTITION), so data files stop at 254.
MAX_PARTITION_ID = 254
CAMERA_PARTITION_ID = 255
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODEL_KEYS = {"model", "keras_module", "constructor", "input_shape", "imagenet_weights_file", "partition",
               "variable_input"}
# Input sides a variable-input model may be built at (the Keras applications' own minimum is 32).
MIN_INPUT_SIDE, MAX_INPUT_SIDE = 32, 1024
_PARTITION_KEYS = {"id", "name", "aliases", "tensors", "seed_example", "stage_output", "note"}


@dataclass(frozen=True)
class Partition:
    """One candidate partition: the head computes layer `name` and everything it depends on."""

    partition_id: int
    name: str
    aliases: tuple[str, ...] = ()
    tensors: int = 1  # declared number of crossing tensors (tests check it against the graph)
    seed_example: bool = False
    stage_output: bool = False
    note: str = ""

    def matches(self, key: str) -> bool:
        return key == self.name or key in self.aliases


@dataclass(frozen=True)
class ModelSpec:
    """What splitbed knows about a model without building it."""

    name: str
    keras_module: str
    constructor: str
    input_shape: tuple[int, int, int]
    imagenet_weights_file: str
    partitions: tuple[Partition, ...] = field(repr=False)
    # Fully convolutional up to a global pooling: the same weights serve any input size (S4-260189's "input media
    # size changes may alter tensor shape"); `at_input_size` gives the spec of such a build.
    variable_input: bool = False

    @property
    def target_size(self) -> tuple[int, int]:
        """(height, width) that images are resized to."""
        return (self.input_shape[0], self.input_shape[1])

    def at_input_size(self, height: int, width: int) -> ModelSpec:
        """This spec with another input size (same layers, partitions and weights); ModelError if the model
        has a fixed-size part (e.g. VGG16's Flatten -> fc1) or the size is out of range."""
        from splitbed.models.errors import ModelError

        if (height, width) == self.target_size:
            return self
        if not self.variable_input:
            raise ModelError(f"{self.name} takes only {self.target_size[0]}x{self.target_size[1]} inputs (a "
                             "fixed-size layer follows the convolutions); models with variable_input = true in "
                             "their data file take other sizes")
        for side in (height, width):
            if isinstance(side, bool) or not isinstance(side, int) or not MIN_INPUT_SIDE <= side <= MAX_INPUT_SIDE:
                raise ModelError(f"input size {height}x{width}: each side must be an integer "
                                 f"{MIN_INPUT_SIDE}..{MAX_INPUT_SIDE}")
        return dataclasses.replace(self, input_shape=(height, width, self.input_shape[2]))

    def partition(self, key: Partition | int | str) -> Partition:
        """Look a partition up by Partition, id, name or alias (a numeric string counts as an id)."""
        if key == CAMERA_PARTITION or key == CAMERA_PARTITION_ID or key == CAMERA_PARTITION.name:
            return CAMERA_PARTITION
        if isinstance(key, Partition):
            if key not in self.partitions:
                raise UnknownPartitionError(f"partition {key.name!r} (id {key.partition_id}) is not one of "
                                            f"{self.name}'s candidates")
            return key
        if isinstance(key, bool):
            raise UnknownPartitionError(f"partition key must be an id or a name, not {key!r}")
        if isinstance(key, str) and key.strip().isdigit():
            key = int(key.strip())
            if key == CAMERA_PARTITION_ID:
                return CAMERA_PARTITION
        for part in self.partitions:
            if (isinstance(key, int) and part.partition_id == key) or (isinstance(key, str) and part.matches(key)):
                return part
        known = ", ".join(f"{p.partition_id}={p.name}" for p in self.partitions)
        raise UnknownPartitionError(f"{self.name} has no candidate partition {key!r}; candidates: {known} "
                                    f"(see splitbed/models/data/{self.name}.toml)")


# Before the model's input layer: the UE's "head" is the camera's capture (the uint8 RGB image at the model's input
# size, not preprocessed); the edge's tail is the preprocessing and the whole model (splitbed.models.camera). The
# full-offload baselines of a sweep (raw uint8, or a JPEG compression profile) are points at this partition. Not
# one of the candidates (`all` leaves it out): it carries uint8 pixels, which the float profiles do not apply to.
CAMERA_PARTITION = Partition(partition_id=CAMERA_PARTITION_ID, name="camera",
                             note="pseudo-partition: the camera image goes uplink, the edge preprocesses and runs "
                                  "the whole model")

_check = Checker(PartitionDataError)


def _require(cond: bool, source: str, message: str) -> None:
    if not cond:
        raise PartitionDataError(f"{source}: {message}")


def _parse_partition(raw: Any, source: str) -> Partition:
    _check.table(f"{source}: each [[partition]]", raw)
    _check.keys(source, raw, _PARTITION_KEYS, noun="partition keys")
    pid = _check.integer(f"{source}: partition id", raw.get("id"), low=0, high=MAX_PARTITION_ID)
    name = raw.get("name")
    _require(isinstance(name, str) and bool(_NAME_RE.match(name)), source, f"bad partition name {name!r}")
    aliases = raw.get("aliases", [])
    _require(isinstance(aliases, list) and all(isinstance(a, str) and _NAME_RE.match(a) for a in aliases),
             source, f"aliases of {name!r} must be a list of names")
    tensors = _check.integer(f"{source}: tensors of {name!r}", raw.get("tensors", 1), low=1)
    return Partition(partition_id=pid, name=name, aliases=tuple(aliases), tensors=tensors,
                     seed_example=bool(raw.get("seed_example", False)),
                     stage_output=bool(raw.get("stage_output", False)), note=str(raw.get("note", "")))


def parse_spec(data: dict[str, Any], source: str) -> ModelSpec:
    """Validate one parsed data file; `source` names it in error messages."""
    _check.keys(source, data, _MODEL_KEYS, noun="keys")
    for key in ("model", "keras_module", "constructor", "imagenet_weights_file"):
        _check.string(f"{source}: {key}", data.get(key), non_empty=True)
    shape: Any = data.get("input_shape")
    _require(isinstance(shape, list) and len(shape) == 3 and all(isinstance(d, int) and 0 < d <= 4096
                                                                 for d in shape),
             source, f"input_shape must be [height, width, channels], got {shape!r}")
    raw_parts: Any = data.get("partition")
    _require(isinstance(raw_parts, list) and bool(raw_parts), source, "no [[partition]] entries")
    parts = tuple(_parse_partition(raw, source) for raw in raw_parts)
    ids = [p.partition_id for p in parts]
    _require(len(set(ids)) == len(ids), source, f"duplicate partition ids {sorted({i for i in ids if ids.count(i) > 1})}")
    keys = [k for p in parts for k in (p.name, *p.aliases)]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    _require(not dupes, source, f"names or aliases used twice: {dupes}")
    variable = _check.boolean(f"{source}: variable_input", data.get("variable_input", False))
    return ModelSpec(name=data["model"], keras_module=data["keras_module"], constructor=data["constructor"],
                     input_shape=(shape[0], shape[1], shape[2]),
                     imagenet_weights_file=data["imagenet_weights_file"], partitions=parts, variable_input=variable)


def _data_dir() -> Any:
    return resources.files("splitbed.models") / "data"


@cache
def names() -> tuple[str, ...]:
    """Registered model names (one per data file), sorted."""
    return tuple(sorted(p.name[: -len(".toml")] for p in _data_dir().iterdir() if p.name.endswith(".toml")))


@cache
def get(name: str) -> ModelSpec:
    """The ModelSpec of a registered model; UnknownModelError lists the registered names."""
    if name not in names():
        raise UnknownModelError(f"unknown model {name!r}; registered: {', '.join(names())}")
    path = _data_dir() / f"{name}.toml"
    source = f"splitbed/models/data/{name}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PartitionDataError(f"{source}: not valid TOML: {exc}") from exc
    spec = parse_spec(data, source)
    if spec.name != name:
        raise PartitionDataError(f"{source}: model = {spec.name!r} does not match the file name")
    return spec


def select_partitions(spec: ModelSpec, selection: Sequence[str]) -> list[str]:
    """Partition names of a model's spec (`get(name)`, or splitbed.models.spec_for for an `.onnx` file too) for a
    selection of `all`, `examples` (the example candidates marked `seed_example`, else every one; `seed` is its
    old name), names, aliases or ids, in registry order. ModelError names what is unknown."""
    chosen: set[str] = set()
    for item in selection:
        if item == "all":
            chosen.update(p.name for p in spec.partitions)
        elif item in ("examples", "seed"):
            examples = [p.name for p in spec.partitions if p.seed_example]
            chosen.update(examples or [p.name for p in spec.partitions])
        else:
            chosen.add(spec.partition(item).name)
    camera = [CAMERA_PARTITION.name] if CAMERA_PARTITION.name in chosen else []
    return camera + [p.name for p in spec.partitions if p.name in chosen]
