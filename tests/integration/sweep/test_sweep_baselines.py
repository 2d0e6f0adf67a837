"""The baselines on the real testbed: the camera image goes uplink raw (uint8) and as a JPEG, the edge preprocesses
it and runs the whole model. The JPEG point's uplink is the JPEG the UE coded plus the format's framing, byte for
byte; both are far below the float32 input tensor of `input_layer`. The report's baseline table shows them beside
full local inference and the best split, with the measured figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from splitbed.format import Aips, encode_aips, encode_data_bytes
from splitbed.models import spec_for
from splitbed.models.preprocess import capture_image
from splitbed.nodes.images import resolve_image
from splitbed.report.baselines import baseline_tables
from splitbed.sweep import read_records, run_sweep, summarise
from splitbed.sweep.plan import DEFAULT_IMAGE
from splitbed.sweep.store import is_measurement
from tests.integration.sweep.conftest import MODEL, SharedBed, sweep_spec

pytestmark = pytest.mark.root


SPLIT = "block_13_project_BN"


@pytest.fixture(scope="module")
def baseline_sweep(shared_bed: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every baseline, the preprocessed-input offload and one split: 5 points x (2 + 1 warm-up) inferences."""
    out = tmp_path_factory.mktemp("baselines")
    spec = sweep_spec(partitions=("input_layer", SPLIT), encodings=("tlv",), baselines=("local", "jpeg", "raw"),
                      repetitions=2)
    outcome = run_sweep(spec, out, testbed_factory=SharedBed(shared_bed).factory)
    assert not outcome.incomplete and outcome.errors == 0, outcome
    return out


def test_jpeg_and_raw_offload_points_send_the_coded_camera_image(baseline_sweep: Path) -> None:
    good = [r for r in read_records(baseline_sweep).records if is_measurement(r) and r["status"] == "ok"]
    by = {(r["partition_name"], r["compression_profile"]): [x for x in good if x["tags"]["point"] == r["tags"]["point"]]
          for r in good}
    assert set(by) == {("input_layer", "none"), (SPLIT, "none"), ("predictions", "none"), ("camera", "none"),
                       ("camera", "jpeg-q90")}
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
            assert record["compression_profile_id"] == {"jpeg-q90": 9, "none": 0}[profile]
    jpeg = by[("camera", "jpeg-q90")][0]["serialized_intermediate_bytes"]
    raw = by[("camera", "none")][0]["serialized_intermediate_bytes"]
    tensor = by[("input_layer", "none")][0]["serialized_intermediate_bytes"]
    assert jpeg * 5 < raw and tensor - raw == 3 * image.nbytes  # uint8 vs float32, the same framing
    # Raw camera image and the preprocessed input are the same picture: the same top class, whatever the weights.
    assert by[("camera", "none")][0]["predictions"][0] == by[("input_layer", "none")][0]["predictions"][0]


def test_the_report_shows_the_offload_baselines_beside_local_inference_and_the_best_split(
        baseline_sweep: Path) -> None:
    records = read_records(baseline_sweep).records
    summaries = summarise(records)
    [table] = baseline_tables(records, summaries)
    labels = [row[0] for row in table.rows]
    assert labels == ["Full local inference (no network)",
                      "Full offload of the camera image as a JPEG (jpeg-q90) (tlv/jpeg-q90)",
                      "Full offload of the camera image, raw (tlv/none)",
                      f"Best split: {SPLIT} (tlv/none)",
                      "Full offload of the preprocessed input (tlv/none)"]
    assert not any("not measured" in note for note in table.notes)
    uplink = {row[0]: row[6] for row in table.rows}
    for summary in summaries:  # each row's uplink and n are the point's own measured figures
        if summary.partition == "camera":
            row = next(r for r in table.rows if f"({summary.carriage})" in r[0] and "camera" in r[0])
            assert row[6] == f"{summary.median('uplink_bytes'):,.0f}" and row[5] == "2"
    assert uplink["Full local inference (no network)"] == "-"
    sizes = [int(uplink[label].replace(",", "")) for label in labels[1:3]]
    assert sizes[0] * 5 < sizes[1]  # JPEG far below raw
