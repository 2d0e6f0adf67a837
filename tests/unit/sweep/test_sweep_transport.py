"""The transport binding as a sweep dimension: in the point key (TCP keys unchanged, so old results resume), one
testbed per binding, refused when unknown, and carried whole through the Dask point wire."""

from __future__ import annotations

import pytest

from splitbed.sweep.plan import Point, SweepSpec, SweepSpecError, points
from splitbed.sweep.pointwire import PointRequest, WireError, parse_request, request_text


def test_the_binding_is_in_the_key_and_the_testbed_grouping() -> None:
    spec = SweepSpec(models=("mobilenet_v2",), partitions=("out_relu",), profiles=("5g-split-ai", "cell-edge"), baselines=(),
                     transports=("tcp", "quic"))
    matrix = points(spec)
    assert len(matrix) == 4 and len({p.key for p in matrix}) == 4
    tcp = [p for p in matrix if p.transport == "tcp"]
    quic = [p for p in matrix if p.transport == "quic"]
    assert all(p.key.endswith("|quic") for p in quic)
    assert all(not p.key.endswith("|tcp") for p in tcp)  # TCP keys are those of earlier sweeps (resume)
    assert {p.bed for p in quic}.isdisjoint({p.bed for p in tcp})  # one testbed per binding
    assert quic[0].testbed_options() == {"transport": "quic"} and tcp[0].testbed_options() == {}


@pytest.mark.parametrize("options, fragment", [({"transports": ("udp",)}, "unknown transport"),
                                               ({"transports": ()}, "at least one of transports"),
                                               ({"transports": ("quic",), "runtime": "docker"}, "process runtime")])
def test_bad_transports_are_refused(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(SweepSpecError, match=fragment):
        SweepSpec(**options)  # type: ignore[arg-type]


def test_the_binding_travels_through_the_point_wire() -> None:
    spec = SweepSpec(models=("mobilenet_v2",), partitions=("out_relu",), transports=("tcp", "quic"), baselines=())
    point = [p for p in points(spec) if p.transport == "quic"][0]
    back = parse_request(request_text(PointRequest(spec, point, ("mobilenet_v2",), 0, 0)))
    assert back.point == point and back.spec.transports == ("tcp", "quic") and back.point.key.endswith("|quic")
    lone = SweepSpec(models=("mobilenet_v2",), partitions=("out_relu",), baselines=())
    with pytest.raises(WireError, match="transport"):
        parse_request(request_text(PointRequest(lone, point, ("mobilenet_v2",), 0, 0)))


def test_a_quic_point_key_names_the_binding_last() -> None:
    point = Point("lte", "vgg16", "fc1", "tlv", "zstd", "builtin:chelsea", "random:0", "userspace", "process",
                  transport="quic")
    assert point.key == "lte|vgg16|fc1|tlv|zstd|builtin:chelsea|random:0|userspace|process|phone-midrange|host|quic"
