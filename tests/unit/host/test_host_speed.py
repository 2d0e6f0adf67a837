"""The host-speed reference (splitbed.host.speed): its children run pinned to the CPUs asked for (read from the
child itself and from /proc), with one BLAS thread, and give finite positive CPU and wall times; the CV is the
sample standard deviation over the mean."""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

import pytest

from splitbed.host.speed import MAX_RUNS, HostSpeedProbe, ReferenceChild
from splitbed.stats import coefficient_of_variation_pct

CPUS = sorted(os.sched_getaffinity(0))


def _allowed(pid: int) -> str:
    """Cpus_allowed_list of a process, as the kernel says (not as the child reports it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Cpus_allowed_list")


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_the_cv_is_the_sample_standard_deviation_over_the_mean() -> None:
    values = [30.0, 31.5, 29.0, 33.0, 30.5]
    assert coefficient_of_variation_pct(values) == pytest.approx(100 * statistics.stdev(values) / statistics.fmean(values))
    assert coefficient_of_variation_pct([30.0, None, float("nan"), 30.0]) == 0.0  # missing and NaN left out
    assert coefficient_of_variation_pct([30.0]) is None and coefficient_of_variation_pct([]) is None
    assert coefficient_of_variation_pct([0.0, 0.0]) is None  # no mean to divide by


@pytest.mark.parametrize("cpu", [CPUS[0], CPUS[-1]] if len(CPUS) > 1 else [CPUS[0]])
def test_the_child_runs_on_the_cpu_asked_for_with_one_thread(cpu: int) -> None:
    with ReferenceChild((cpu,)) as child:
        assert _allowed(child.pid) == str(cpu)  # the kernel's view of the child
        assert child.affinity == (cpu,)  # the child's own
        samples = child.run(3)
        assert _threads(child.pid) == 1  # OpenBLAS started no worker threads: one CPU's speed
        assert len(samples) == 3
        for sample in samples:
            assert sample.cpus == (cpu,)
            assert math.isfinite(sample.cpu_ms) and sample.cpu_ms > 0
            assert math.isfinite(sample.wall_ms) and sample.wall_ms > 0
            assert 0 < sample.start_ns < sample.end_ns
        assert all(a.end_ns <= b.start_ns for a, b in zip(samples, samples[1:], strict=False))  # in turn
        with pytest.raises(ValueError):
            child.request(MAX_RUNS + 1)
    assert child.proc.poll() is not None  # closed: the child is gone


def test_an_unpinned_child_keeps_the_callers_cpus() -> None:
    with ReferenceChild(()) as child:
        assert child.affinity == tuple(CPUS)


@pytest.mark.skipif(len(CPUS) < 2, reason="needs two CPUs")
def test_the_probe_gives_each_role_a_run_on_its_own_cpus() -> None:
    roles = {"ue": (CPUS[0],), "edge": (CPUS[1],), "link": (CPUS[1],)}
    with HostSpeedProbe(roles) as probe:
        assert len(probe.children) == 2  # one child per distinct CPU set
        pids = {cpus: child.pid for cpus, child in probe.children.items()}
        assert {_allowed(pid) for pid in pids.values()} == {str(CPUS[0]), str(CPUS[1])}
        result = probe.sample(2)
        assert set(result) == set(roles)
        for role, cpus in roles.items():
            assert [s.cpus for s in result[role]] == [cpus, cpus]
        assert result["edge"] == result["link"]  # the same child's runs
        children = list(probe.children.values())
    assert all(child.proc.poll() is not None for child in children)


@pytest.mark.skipif(len(CPUS) < 2, reason="needs two CPUs")
def test_the_roles_runs_never_overlap() -> None:
    """Two virtual CPUs may share a physical core: a run beside another would measure that, so they take turns."""
    with HostSpeedProbe({"edge": (CPUS[1],), "ue": (CPUS[0],)}) as probe:
        for _ in range(3):
            result = probe.sample(1)
            [edge], [ue] = result["edge"], result["ue"]
            assert edge.end_ns <= ue.start_ns or ue.end_ns <= edge.start_ns


def test_the_child_never_imports_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `json.py` where the sweep was started must not replace the standard module in the child."""
    from tests.unit.netem.test_pyexec import marker_dir

    cwd, hits = marker_dir(tmp_path)
    monkeypatch.chdir(cwd)
    with ReferenceChild((CPUS[0],)) as child:
        assert child.run(1)[0].cpu_ms > 0
    assert not hits.exists(), hits.read_text()
