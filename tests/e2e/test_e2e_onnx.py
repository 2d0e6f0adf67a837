"""The suite's ONNX case (default selection): ONNX Runtime heads and tails on the real testbed, with captures.

One testbed (5g-embb) whose remote node runs registered models on ONNX Runtime (`--engine onnxruntime`) and whose
local node runs them on TensorFlow; it offers mobilenet_v2 and the converted MobileNetV2 `.onnx` file
(random:0, converted in this test process first, or found in the ONNX cache that both nodes read):

- the `.onnx` file at the cut that is Keras partition block_13_project_BN: both sides on ONNX Runtime; the uplink
  captured on the UE side, decoded with the format's Decoder alone, equals what the remote decoded (CRC-32) and an
  ONNX Runtime head run here; the answer agrees with the unsplit Keras model;
- mobilenet_v2 at block_14_project (two crossing tensors): UE on TensorFlow, edge on ONNX Runtime: the UE sent
  exactly the Keras head's tensors (CRC-32) and the ONNX Runtime tail's answer agrees with the unsplit Keras model.

Every record names each side's runtime and version. Agreement: softmax within 1e-4 and the same top class (the
cross-runtime tolerance of tests/integration/models/test_models_onnx.py, which says why).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netem.flows import tcp_stream
from splitbed.plugin.wire import decode_uplink, find_connection

pytestmark = pytest.mark.root

PROFILE = "5g-embb"
WEIGHTS = "random:0"
OUT_TOL = 1e-4
KERAS_PARTITION = "block_13_project_BN"


@pytest.fixture(scope="module")
def converted_file() -> tuple[Path, Any]:
    """The converted file in the ONNX cache the node processes also read (the default one, as for a user: a
    conversion is keyed by weights and versions, so a cached file is this one; converting into an empty cache
    and finding the file again is tests/integration/models/test_models_onnx.py's)."""
    import warnings

    from splitbed.models import RandomWeightsWarning, load
    from splitbed.models.onnx.convert import converted

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        loaded = load("mobilenet_v2", WEIGHTS)
    return converted(loaded).path, loaded


@pytest.fixture(scope="module")
def onnx_bed(converted_file: tuple[Path, Any]) -> Iterator[Any]:
    from splitbed.pytest_plugin import requires
    from splitbed.testbed import Testbed

    requires("netns")
    path, _ = converted_file
    # a user's .onnx file has no latency in the built-in phone profiles: it runs at this host's speed (the device
    # emulation of ONNX heads is tested in tests/integration/devices/test_devices_onnx.py)
    with Testbed(PROFILE, models=[str(path), "mobilenet_v2"], weights=WEIGHTS, remote_args=["--engine", "onnxruntime"],
                 local_args=["--verify-delivery"], ue_device="host") as bed:
        yield bed


def _keras_input(loaded: Any) -> np.ndarray:
    from splitbed.models.preprocess import load_image
    from splitbed.nodes.images import resolve_image

    return load_image(resolve_image("builtin:chelsea"), loaded.spec).array


def _check_answer(record: dict[str, Any], expected: np.ndarray) -> None:
    top = record["predictions"][0]
    assert top["class_index"] == int(np.argmax(expected))
    for p in record["predictions"]:
        assert abs(p["score"] - expected[p["class_index"]]) <= OUT_TOL, (p, expected[p["class_index"]])


def test_onnx_file_both_sides_with_capture(onnx_bed: Any, converted_file: tuple[Path, Any], capture: Any) -> None:
    import onnxruntime

    from splitbed.models.onnx.model import load_file
    from splitbed.models.onnx.summary import keras_partitions
    from splitbed.nodes.formatio import tensor_crc32

    path, loaded = converted_file
    onnx_model = load_file(str(path))
    cut_id = next(cid for cid, parts in keras_partitions(onnx_model.graph).items()
                  if any(p["name"] == KERAS_PARTITION for p in parts))
    with capture(onnx_bed) as both:
        onnx_bed.run({"action": "reconnect", "model": str(path)})
        records = onnx_bed.run({"model": str(path), "partition": cut_id, "repetitions": 2, "top_k": 5})
    assert [r["status"] for r in records] == ["ok", "ok"], [r["error"] for r in records]
    assert both.complete
    for record in records:
        for side in ("ue_runtime", "edge_runtime"):
            assert record[side]["name"] == "onnxruntime" and record[side]["version"] == onnxruntime.__version__
            assert record[side]["model_sha256"] == onnx_model.graph.sha256
        assert record["partition_id"] == cut_id and record["weights"]["sha256"] == onnx_model.graph.sha256
    expected = np.asarray(loaded.keras_model.predict_on_batch(_keras_input(loaded)), dtype=np.float64).reshape(-1)
    for record in records:
        _check_answer(record, expected)

    # The uplink as captured, decoded by the format's Decoder alone.
    conn = find_connection(both.pcaps["ue"], onnx_bed.topology.edge_addr, onnx_bed.remote_port)
    units = decode_uplink(tcp_stream(both.pcaps["ue"], conn.src, conn.sport, conn.dst, conn.dport))
    data = [u for u in units if u.kind == "data"]
    assert len(data) == 2
    split = onnx_model.split(cut_id)
    here = split.run_head(onnx_model.spec.prepare_batch(_rgb(loaded)))
    for record, unit in zip(records, data, strict=True):
        crcs = [tensor_crc32(t) for t in unit.tensors]
        assert crcs == record["delivery_check"]["received_crc32"] == record["delivery_check"]["sent_crc32"]
        assert [t.shape[1:] for t in unit.tensors] == [tuple(c.shape) for c in split.cut]
        for wire, ours in zip(unit.tensors, here, strict=True):
            np.testing.assert_allclose(wire, ours, rtol=0, atol=1e-5 * float(np.max(np.abs(ours))))


def _rgb(loaded: Any) -> np.ndarray:
    """The chelsea file as the nodes read it, before preprocessing: (1, H, W, 3) float32 0..255."""
    import keras

    from splitbed.nodes.images import resolve_image

    img = keras.utils.load_img(str(resolve_image("builtin:chelsea")), target_size=loaded.spec.target_size)
    return np.expand_dims(keras.utils.img_to_array(img), 0)


def test_tensorflow_head_onnxruntime_tail(onnx_bed: Any, converted_file: tuple[Path, Any]) -> None:
    from splitbed.nodes.formatio import tensor_crc32

    _, loaded = converted_file
    records = onnx_bed.run({"model": "mobilenet_v2", "partition": "block_14_project", "repetitions": 1})
    [record] = records
    assert record["status"] == "ok", record["error"]
    assert record["ue_runtime"]["name"] == "tensorflow" and record["edge_runtime"]["name"] == "onnxruntime"
    assert record["edge_runtime"]["converted"]["versions"]["tf2onnx"]
    x = _keras_input(loaded)
    head = loaded.split("block_14_project").run_head(x)
    assert record["delivery_check"]["sent_crc32"] == [tensor_crc32(t) for t in head]
    assert len(record["tensors"]) == 2
    _check_answer(record, np.asarray(loaded.keras_model.predict_on_batch(x), dtype=np.float64).reshape(-1))
