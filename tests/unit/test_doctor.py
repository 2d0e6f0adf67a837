"""The doctor's policy, output and the probes that need no privileges; the must-have policy end to end through a
real pytest run (tests/integration/test_doctor*.py probe namespaces, qdiscs and capture for real)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from netem import doctor
from netem.doctor import Probe
from netem.hostload import read_counters
from splitbed import doctor as sb_doctor

REPO = Path(__file__).resolve().parents[2]


def _probe(ok: bool, must_have: bool, name: str = "x") -> Probe:
    return Probe(name, ok, must_have, detail=f"{name} detail", fix=f"fix {name}", meaning=f"{name} means")


@pytest.mark.parametrize(
    ("ok", "must_have", "ci", "expected"),
    [
        (True, True, True, "run"),
        (True, False, False, "run"),
        (False, True, False, "skip"),
        (False, False, False, "skip"),
        (False, False, True, "skip"),  # e.g. sch_netem on this kernel: skipped even on CI
        (False, True, True, "fail"),
    ],
)
def test_decide_skips_locally_and_fails_on_ci_only_for_must_haves(ok: bool, must_have: bool, ci: bool,
                                                                   expected: str) -> None:
    assert doctor.decide(_probe(ok, must_have), ci) == expected


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                                  ("", False), ("false", False), ("0", False)])
def test_is_ci_reads_the_ci_variable(value: str, expected: bool) -> None:
    assert doctor.is_ci({"CI": value}) is expected
    assert doctor.is_ci({}) is False


def test_exit_code_is_one_only_when_a_must_have_is_missing() -> None:
    assert doctor.exit_code([_probe(True, True), _probe(False, False)]) == 0
    assert doctor.exit_code([_probe(True, True), _probe(False, True, "netns")]) == 1
    assert [p.name for p in doctor.missing_must_haves([_probe(False, True, "a"), _probe(False, False, "b")])] == ["a"]


def test_render_marks_must_haves_and_groups_identical_fixes() -> None:
    shared_fix = "run as root"
    probes = [
        Probe("netns", False, True, "no permission", fix=shared_fix, meaning="no testbed"),
        Probe("scapy_capture", False, True, "no permission", fix=shared_fix, meaning="no wire figures"),
        Probe("sch_netem", False, False, "unknown kind", fix="modprobe sch_netem", meaning="userspace link"),
        Probe("ping", True, True, "/usr/bin/ping", meaning="RTT checks"),
    ]
    console = Console(record=True, width=200, color_system=None)
    doctor.render(probes, title="t", console=console)
    text = console.export_text()
    assert "netns *" in text and "ping *" in text and "sch_netem *" not in text
    assert "MISSING" in text and "what this means" in text
    assert "missing must-have netns, scapy_capture: fix: run as root" in text
    assert "optional sch_netem: fix: modprobe sch_netem" in text
    assert "all must-haves present" not in text


def test_userns_wrapper_runs_the_command_last_and_mounts_a_private_netns_dir() -> None:
    argv = doctor.userns_wrapper(["make", "test"])
    assert argv[:6] == ["unshare", "--user", "--map-root-user", "--net", "--mount", "--"]
    assert argv[-2:] == ["make", "test"]
    assert "mount -t tmpfs" in argv[-4] and "/run/netns" in argv[-4]
    assert "make test" in doctor.nonroot_fix()


@pytest.mark.parametrize(("name", "ours"), [("sb123dr0", True), ("sb4194304dr17", True), ("sb123-0ue", False),
                                            ("sb123dr", False), ("sbproto123", False), ("xsb123dr0", False)])
def test_scratch_names_match_only_the_doctors_own(name: str, ours: bool) -> None:
    assert bool(doctor.SCRATCH_NAME.match(name)) is ours


def test_unknown_probe_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: root_or_userns, netns"):
        sb_doctor.run_probe("no_such_probe")
    assert set(doctor.PROBES) < set(sb_doctor.probe_names())


def test_cpus_probe_reports_this_process_affinity() -> None:
    probe = sb_doctor.probe_cpus()
    assert probe.ok and not probe.must_have
    assert f"{len(os.sched_getaffinity(0))} usable" in probe.detail
    if read_counters().steal_jiffies is not None:  # the hypervisor's share since boot, as /proc/stat has it
        assert re.search(r", \d+\.\d% of the CPU stolen by the hypervisor since boot", probe.detail), probe.detail


def test_rapl_probe_agrees_with_the_counter_file() -> None:
    readable = os.access(sb_doctor.RAPL_ENERGY_FILE, os.R_OK)
    probe = sb_doctor.probe_rapl()
    assert probe.ok is readable
    assert not probe.must_have


def test_tool_probe_follows_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    monkeypatch.setenv("PATH", str(fake_bin))
    missing = doctor.probe_tool("iperf3")
    assert not missing.ok and missing.must_have and "apt-get install iperf3" in missing.fix
    tool = fake_bin / "iperf3"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert doctor.probe_tool("iperf3").ok


def test_docker_is_a_must_have_on_ci_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert doctor.probe_docker(timeout_s=1).must_have is False
    monkeypatch.setenv("CI", "true")
    assert doctor.probe_docker(timeout_s=1).must_have is doctor.DOCKER_MUST_HAVE_ON_CI


def _weights_files() -> list[str]:
    from splitbed.models import registry

    return [registry.get(m).imagenet_weights_file for m in registry.names()]


def test_imagenet_weights_offline_means_random_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # hide a real ~/.keras
    monkeypatch.setenv("SPLITBED_OFFLINE", "1")
    if any((Path("/tmp/.keras/models") / f).is_file() for f in _weights_files()):
        pytest.skip("/tmp/.keras/models holds ImageNet weights on this machine")
    probe = sb_doctor.probe_imagenet_weights()
    assert not probe.ok and not probe.must_have
    assert "SPLITBED_OFFLINE is set" in probe.detail
    assert "random weights" in probe.meaning
    assert all(f in probe.fix for f in _weights_files())


def test_imagenet_weights_found_in_keras_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in _weights_files():
        (models / name).write_bytes(b"\x89HDF")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("SPLITBED_OFFLINE", "1")
    probe = sb_doctor.probe_imagenet_weights()
    assert probe.ok, probe
    assert str(models) in probe.detail


def _run_pytest(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_needs_iperf3.py").write_text(textwrap.dedent("""
        import pytest
        from splitbed.pytest_plugin import requires

        def test_call():
            requires("iperf3")

        @pytest.mark.requires("iperf3")
        def test_marker():
            pass
    """))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rsfE", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )


def test_missing_must_have_skips_locally_and_fails_on_ci(tmp_path: Path) -> None:
    """A real pytest run where iperf3 is really missing (PATH without it): skipped with the probe's reason,
    and failed with the fix when CI=true. The same probe as `splitbed doctor`, no mocks."""
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    base = {k: v for k, v in os.environ.items() if k != "CI"} | {"PATH": str(empty_bin)}
    local = _run_pytest(tmp_path, base)
    assert local.returncode == 0, local.stdout
    assert "2 skipped" in local.stdout
    assert "must-have 'iperf3' missing: iperf3 not on PATH" in local.stdout
    on_ci = _run_pytest(tmp_path, base | {"CI": "true"})
    assert on_ci.returncode == 1, on_ci.stdout
    assert "1 failed, 1 error" in on_ci.stdout  # the marker fails the setup phase: pytest reports an error
    assert "must-have 'iperf3' missing on CI" in on_ci.stdout and "apt-get install iperf3" in on_ci.stdout
