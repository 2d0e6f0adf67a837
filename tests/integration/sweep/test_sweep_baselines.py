"""The full-offload baselines on the real testbed: the camera image goes uplink raw (uint8) and as a JPEG, the edge
preprocesses it and runs the whole model. The JPEG point's uplink is the JPEG the UE coded plus the format's
framing, byte for byte; both are far below the float32 input tensor of `input_layer`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from splitbed.format import Aips, encode_aips, encode_data_bytes
from splitbed.models import spec_for
from splitbed.models.preprocess import capture_image
from splitbed.nodes.images import resolve_image
from splitbed.sweep import read_records, run_sweep
from splitbed.sweep.plan import DEFAULT_IMAGE
from splitbed.sweep.store import is_measurement
from tests.integration.sweep.conftest import MODEL, SharedBed, sweep_spec

pytestmark = pytest.mark.root


def test_jpeg_and_raw_offload_points_send_the_coded_camera_image(shared_bed: Any, tmp_path: Path) -> None:
    spec = sweep_spec(partitions=("input_layer",), encodings=("tlv",), baselines=("jpeg", "raw"), repetitions=2)
    outcome = run_sweep(spec, tmp_path, testbed_factory=SharedBed(shared_bed).factory)
    assert not outcome.incomplete and outcome.errors == 0, outcome
    good = [r for r in read_records(tmp_path).records if is_measurement(r) and r["status"] == "ok"]
    by = {(r["partition_name"], r["compression_profile"]): [x for x in good if x["tags"]["point"] == r["tags"]["point"]]
          for r in good}
    assert set(by) == {("input_layer", "none"), ("camera", "none"), ("camera", "jpeg-q90")}
    assert all(len(records) == 2 for records in by.values())

    # What the UE must have sent: the captured image (decoded and resized as for every partition) coded by hand.
    image = capture_image(resolve_image(DEFAULT_IMAGE), spec_for(MODEL)).array
    assert image.dtype.name == "uint8" and image.shape == (1, 224, 224, 3)
    for profile in ("jpeg-q90", "none"):
        aips = Aips.for_arrays(0, 255, [image], profile)
        data_unit = len(encode_data_bytes(aips, [image]))
        for record in by[("camera", profile)]:
            assert record["serialized_intermediate_bytes"] == data_unit
            assert record["uplink_bytes"] == data_unit + (len(encode_aips(aips)) if record["aips_sent"] else 0)
            assert record["preprocessed_input_bytes"] == image.nbytes == record["raw_intermediate_bytes"]
            assert record["predictions"], record["predictions"]  # the edge ran the model and answered
            assert record["delivery_check"] is None or record["delivery_check"]["expected_match"] is (
                profile == "none")
    jpeg = by[("camera", "jpeg-q90")][0]["serialized_intermediate_bytes"]
    raw = by[("camera", "none")][0]["serialized_intermediate_bytes"]
    tensor = by[("input_layer", "none")][0]["serialized_intermediate_bytes"]
    assert jpeg * 5 < raw and tensor - raw == 3 * image.nbytes  # uint8 vs float32, the same framing
    # Raw camera image and the preprocessed input are the same picture: the same top class, whatever the weights.
    assert by[("camera", "none")][0]["predictions"][0] == by[("input_layer", "none")][0]["predictions"][0]
