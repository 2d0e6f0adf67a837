"""The sweep matrix (splitbed.sweep.plan): partitions come from the registry's data files, json-baseline has no
compression axis, keys are stable and distinct, bad options get specific errors."""

from __future__ import annotations

import sys

import pytest

from netem.profile import builtin_names
from splitbed.models import registry
from splitbed.sweep.plan import (
    DEFAULT_PROFILE,
    FULL_MODELS,
    Point,
    SweepSpec,
    SweepSpecError,
    points,
    resolve_partitions,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _data_file(model: str) -> dict:
    from importlib import resources

    return tomllib.loads((resources.files("splitbed.models") / "data" / f"{model}.toml").read_text())


def test_examples_selection_is_the_data_files_seed_examples() -> None:
    data = _data_file("vgg16")
    expected = [p["name"] for p in data["partition"] if p.get("seed_example")]
    assert expected == ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1", "fc1"]
    assert resolve_partitions("vgg16", ["examples"]) == expected


def test_all_is_every_candidate_and_a_model_without_seed_examples_falls_back_to_all() -> None:
    for model in registry.names():
        every = [p["name"] for p in _data_file(model)["partition"]]
        assert resolve_partitions(model, ["all"]) == every
        if not any(p.seed_example for p in registry.get(model).partitions):
            assert resolve_partitions(model, ["examples"]) == every


def test_names_ids_and_aliases_resolve_in_registry_order_without_duplicates() -> None:
    assert resolve_partitions("vgg16", ["fc1", "3", "input_1", "block1_pool"]) == ["input_layer", "block1_pool", "fc1"]


def test_default_spec_is_the_main_job() -> None:
    spec = SweepSpec()
    assert spec.profiles == (DEFAULT_PROFILE,) == ("5g-split-ai",)
    matrix = points(spec)
    # the example partitions, then the local baseline (the whole model on the UE), then the full offload of the
    # camera image as a JPEG of quality 90 and raw
    assert [p.partition for p in matrix] == resolve_partitions("vgg16", ["examples"]) + ["predictions", "camera",
                                                                                            "camera"]
    assert {(p.model, p.encoding, p.compression) for p in matrix} == {("vgg16", "tlv", "none"),
                                                                      ("vgg16", "tlv", "jpeg-q90")}
    assert [p.compression for p in matrix if p.partition == "camera"] == ["jpeg-q90", "none"]


def test_the_local_baseline_is_added_once_per_profile_and_model_and_can_be_left_out() -> None:
    spec = SweepSpec(profiles=("5g-split-ai", "lte"), models=("vgg16", "mobilenet_v2"), partitions=("all",),
                     encodings=("json-baseline",))
    assert [p.partition for p in points(spec)].count("predictions") == 4  # selected already: not added again
    spec = SweepSpec(profiles=("5g-split-ai", "lte"), models=("vgg16", "mobilenet_v2"), partitions=("1",),
                     encodings=("tlv", "json-baseline"), compressions=("zstd",))
    baselines = [p for p in points(spec) if p.partition == "predictions"]
    assert [(p.profile, p.model, p.encoding, p.compression) for p in baselines] == [
        ("5g-split-ai", "vgg16", "tlv", "none"), ("5g-split-ai", "mobilenet_v2", "tlv", "none"),
        ("lte", "vgg16", "tlv", "none"), ("lte", "mobilenet_v2", "tlv", "none")]
    assert "predictions" not in [p.partition for p in points(SweepSpec(baselines=()))]
    with pytest.raises(SweepSpecError, match="unknown baseline.*choose from local, jpeg, raw"):
        SweepSpec(baselines=("png",))


def test_the_offload_baselines_are_camera_points_per_profile_and_model_on_the_first_binding() -> None:
    spec = SweepSpec(profiles=("5g-split-ai", "lte"), models=("vgg16", "mobilenet_v2"), partitions=("1",),
                     encodings=("json-baseline",), compressions=("zstd",), baselines=("jpeg", "raw"),
                     transports=("tcp", "quic"))
    camera = [p for p in points(spec) if p.partition == "camera"]
    assert [(p.profile, p.model, p.encoding, p.compression, p.transport) for p in camera] == [
        (profile, model, "tlv", compression, "tcp") for profile in ("5g-split-ai", "lte")
        for model in ("vgg16", "mobilenet_v2") for compression in ("jpeg-q90", "none")]
    assert all("|camera|tlv|jpeg-q90|" in p.key for p in camera[::2])  # the quality is in the key
    only_jpeg = SweepSpec(models=("mobilenet_v2",), partitions=("camera",), compressions=("jpeg-q75",),
                          baselines=("jpeg",))
    # a camera point selected by hand stays; the baseline's own JPEG is added beside it, never twice
    assert [(p.partition, p.compression) for p in points(only_jpeg)] == [("camera", "jpeg-q75"),
                                                                         ("camera", "jpeg-q90")]
    raw_selected = SweepSpec(models=("mobilenet_v2",), partitions=("camera",), baselines=("raw",))
    assert [(p.partition, p.compression) for p in points(raw_selected)] == [("camera", "none")]
    assert "camera" not in resolve_partitions("mobilenet_v2", ["all"])  # not a candidate: uint8 pixels
    # each profile goes where it applies: JPEG to the camera image, fp16 to the model's tensors
    mixed = SweepSpec(models=("mobilenet_v2",), partitions=("camera", "out_relu"), compressions=("jpeg-q75", "fp16",
                                                                                                  "zstd"),
                      baselines=())
    assert [(p.partition, p.compression) for p in points(mixed)] == [
        ("camera", "jpeg-q75"), ("camera", "zstd"), ("out_relu", "fp16"), ("out_relu", "zstd")]
    for partition, compression in (("out_relu", "jpeg-q90"), ("camera", "int8")):
        with pytest.raises(SweepSpecError, match=f"compression {compression} applies to none of the selected"):
            points(SweepSpec(models=("mobilenet_v2",), partitions=(partition,), compressions=(compression,),
                             baselines=()))


def test_json_baseline_gets_one_point_per_partition_and_compressions_are_canonical() -> None:
    spec = SweepSpec(models=("mobilenet_v2",), partitions=("input_layer", "out_relu"),
                     encodings=("tlv", "json-baseline"), compressions=("none", "4", "zstd"), baselines=())
    matrix = points(spec)
    carriages = [(p.partition, p.encoding, p.compression) for p in matrix]
    assert carriages == [("input_layer", "tlv", "none"), ("input_layer", "tlv", "zstd"),
                         ("input_layer", "json-baseline", "none"), ("out_relu", "tlv", "none"),
                         ("out_relu", "tlv", "zstd"), ("out_relu", "json-baseline", "none")]
    assert len({p.key for p in matrix}) == len(matrix)


def test_point_key_is_stable_and_names_everything_that_changes_a_measurement() -> None:
    point = Point("lte", "vgg16", "fc1", "tlv", "zstd", "builtin:chelsea", "random:0", "userspace", "process")
    assert point.key == "lte|vgg16|fc1|tlv|zstd|builtin:chelsea|random:0|userspace|process|phone-midrange|host"
    assert point.bed == ("lte", "phone-midrange", "host")
    other = Point("lte", "vgg16", "fc1", "tlv", "zstd", "builtin:chelsea", "random:0", "userspace", "process",
                  ue_device="phone-flagship", edge_device="edge-l4")
    assert other.key.endswith("|process|phone-flagship|edge-l4") and other.bed == ("lte", "phone-flagship", "edge-l4")
    host = Point("lte", "vgg16", "fc1", "tlv", "zstd", "builtin:chelsea", "random:0", "userspace", "process",
                 ue_device="host", edge_device="host")
    assert host.key.endswith("|process")  # keys of points on this host's speed stay as they were (resume)
    onnx = Point("lte", "vgg16", "fc1", "tlv", "zstd", "builtin:chelsea", "random:0", "userspace", "process",
                 "onnxruntime")
    assert onnx.key.endswith("|process|onnxruntime|phone-midrange|host")
    job = point.job(tags={"rep": 3})
    assert job == {"model": "vgg16", "partition": "fc1", "image": "builtin:chelsea", "encoding": "tlv",
                   "compression": "zstd", "repetitions": 1, "tags": {"point": point.key, "rep": 3}}


def test_devices_are_a_dimension_of_the_matrix_grouped_per_testbed() -> None:
    spec = SweepSpec(baselines=(), models=("mobilenet_v2",), partitions=("out_relu",), profiles=("lte", "5g-embb"),
                     ue_devices=("phone-midrange", "phone-flagship"), edge_devices=("host", "edge-l4"))
    matrix = points(spec)
    assert len(matrix) == 2 * 2 * 2 and len({p.key for p in matrix}) == 8
    beds = [p.bed for p in matrix]
    assert beds[:4] == [("lte", "phone-midrange", "host"), ("lte", "phone-midrange", "edge-l4"),
                        ("lte", "phone-flagship", "host"), ("lte", "phone-flagship", "edge-l4")]
    assert SweepSpec().ue_devices == ("phone-midrange",) and SweepSpec().edge_devices == ("host",)


def test_full_matrix_is_the_testbed_contributions_whole_matrix() -> None:
    spec = SweepSpec.full(repetitions=3)
    assert spec.models == FULL_MODELS == ("vgg16", "resnet50")
    assert spec.profiles == tuple(builtin_names())
    matrix = points(spec)
    # every candidate (`predictions`, the local baseline, among them) in both carriages, plus the two full-offload
    # baselines (camera image as a JPEG and raw) per model
    per_profile = sum(len(resolve_partitions(m, ["all"])) * 2 + 2 for m in FULL_MODELS)
    assert len(matrix) == per_profile * len(builtin_names())


@pytest.mark.parametrize(("options", "message"), [
    ({"models": ("nosuchmodel",)}, "unknown model 'nosuchmodel'"),
    ({"partitions": ("block9_conv9",)}, "no candidate partition 'block9_conv9'"),
    ({"encodings": ("xml",)}, "unknown encoding"),
    ({"compressions": ("gzip",)}, "compression profile 'gzip' is not defined"),
    ({"profiles": ("nosuchprofile",)}, "no built-in profile named 'nosuchprofile'"),
    ({"repetitions": 0}, "repetitions must be"),
    ({"models": ()}, "at least one of models"),
    ({"ue_devices": ("phone-ultra",)}, "neither a built-in device profile"),
    ({"ue_devices": ("edge-l4",)}, "is an edge profile; the UE node needs a UE profile"),
    ({"edge_devices": ("phone-midrange",)}, "is a UE profile; the edge node needs an edge profile"),
    ({"ue_devices": ()}, "at least one of ue_devices"),
])
def test_bad_options_get_specific_errors(options: dict, message: str) -> None:
    with pytest.raises(SweepSpecError, match=message):
        points(SweepSpec(**options))


def test_workloads_are_a_dimension_of_the_point_key_in_their_canonical_spelling() -> None:
    base = {"profiles": ("ideal",), "models": ("mobilenet_v2",), "partitions": ("block_3_project_BN",),
            "baselines": ()}
    [single] = points(SweepSpec(**base))
    paced = points(SweepSpec(**base, workloads=("single", "Periodic:2", "periodic:2/queue:1", "poisson:5/skip")))
    assert [p.workload for p in paced] == ["single", "periodic:2/queue:1", "poisson:5/skip"]  # duplicates merged
    assert paced[0].key == single.key and "workload" not in single.key  # back-to-back keys stay as they were
    assert [p.key.removeprefix(single.key) for p in paced[1:]] == ["|workload=periodic:2/queue:1",
                                                                 "|workload=poisson:5/skip"]
    assert len({p.bed for p in paced}) == 1  # one testbed serves every workload
    with pytest.raises(SweepSpecError, match="did you mean periodic"):
        SweepSpec(**base, workloads=("perodic:2",))
    with pytest.raises(SweepSpecError, match="one-UE testbed"):
        SweepSpec(**base, workloads=("periodic:2",), ues=(2,))
    with pytest.raises(SweepSpecError, match="at least one of workloads"):
        SweepSpec(**base, workloads=())
