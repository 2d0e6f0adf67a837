"""What a sweep or a scenario names is checked when it is planned (`sweep --dry-run`, `scenario check`), not
when a link or a node first touches it: trace files (a bad one used to pass the dry run, then kill the sweep
with a 124-line traceback), and a scenario's model, weights and images. Errors never quote the files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from splitbed.scenario import spec
from splitbed.scenario.spec import ScenarioError
from splitbed.sweep.plan import SweepSpec, SweepSpecError, points

SECRET = "root:$6$SECRETsalt$hash:19000:0:99999:7:::\n"


def _profile_with_trace(tmp_path: Path, trace_text: str) -> Path:
    (tmp_path / "shadow").write_text(trace_text)
    profile = tmp_path / "traced.toml"
    profile.write_text('name = "traced"\ndescription = "a traced link"\nsource = "a test"\n'
                       '[uplink]\ndelay_ms = 5.0\ntrace = { path = "shadow", kind = "throughput" }\n'
                       '[downlink]\ndelay_ms = 5.0\n')
    return profile


def test_sweep_plan_reads_every_trace(tmp_path: Path) -> None:
    profile = _profile_with_trace(tmp_path, SECRET)
    with pytest.raises(SweepSpecError, match=r"profile 'traced' uplink trace: .*shadow:1: not a single Mbit/s value") as caught:
        points(SweepSpec(profiles=(str(profile),), models=("mobilenet_v2",), partitions=("block_3_project_BN",)))
    assert "SECRET" not in str(caught.value)
    (tmp_path / "shadow").write_text("10\n20\n")
    assert points(SweepSpec(profiles=(str(profile),), models=("mobilenet_v2",), partitions=("block_3_project_BN",)))


def test_sweep_dry_run_refuses_a_bad_trace_in_one_line(tmp_path: Path) -> None:
    profile = _profile_with_trace(tmp_path, SECRET)
    done = subprocess.run([sys.executable, "-m", "splitbed.cli", "sweep", "--profile", str(profile), "--model",
                           "mobilenet_v2", "--partition", "block_3_project_BN", "--dry-run", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "uplink trace" in done.stderr and "Traceback" not in done.stderr and "SECRET" not in done.stderr


def _scenario(tmp_path: Path, workload: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\ndescription = "d"\nprofile = "ideal"\n[workload]\ninferences = 2\n' + workload)
    return path


@pytest.mark.parametrize(("workload", "message"), [
    ('model = "/etc/passwd"\n', "workload.model '/etc/passwd' is not a registered model"),
    ('weights = "/etc/hostname"\n', "not a Keras weights file"),
    ('weights = "/no/such/file.h5"\n', "no such regular file"),
    ('image = "/etc/hostname"\n', "not an image file"),
    ('image = "/no/such.jpg"\n', "No such file"),
    ('image = "builtin:dog"\n', "unknown builtin image"),
    ('images = ["builtin:chelsea", "/etc"]\n', "not a regular file"),
])
def test_scenario_check_validates_model_weights_and_images(tmp_path: Path, workload: str, message: str) -> None:
    with pytest.raises(ScenarioError, match="workload") as caught:
        spec.load(_scenario(tmp_path, workload))
    assert message in str(caught.value)


def test_scenario_accepts_real_inputs(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "img.png")
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"\x89HDF\r\n\x1a\n")
    loaded = spec.load(_scenario(tmp_path, f'images = ["{tmp_path / "img.png"}", "builtin:coffee"]\n'
                                           f'weights = "{weights}"\n'))
    assert loaded.workload.images[1] == "builtin:coffee"
