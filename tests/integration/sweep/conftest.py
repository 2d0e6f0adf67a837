"""The sweep, report and advisor tests share one real testbed with the scenario tests
(tests/integration/shared_bed.py). Tests that change the link put it back.

`shared_sweep` runs one small real sweep into a directory the report and resume tests read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from splitbed.sweep import SweepSpec, run_sweep
from tests.integration.shared_bed import MODEL, PROFILE, WEIGHTS

__all__ = ["MODEL", "PROFILE", "WEIGHTS"]  # constants its tests use (shared_bed comes from ../conftest.py)

# Two partitions whose tensors differ 3x in size (100,352 and 31,360 bytes raw) and both carriages.
SWEEP_PARTITIONS = ("block_3_project_BN", "block_13_project_BN")


class SharedBed:
    """The shared Testbed as a sweep's testbed factory sees it: `start`/`close` do nothing (the fixture owns
    it), the link is set to the profile each sweep asks for."""

    def __init__(self, bed: Any) -> None:
        self.bed = bed
        self.starts = 0

    def factory(self, *, profile: str, backend: str, models: list[str], weights: str, runtime: str,
                cpus: str = "auto", ue_device: str = "phone-midrange", edge_device: str = "host") -> Any:
        assert (backend, weights, runtime, cpus) == ("userspace", WEIGHTS, "process", "auto") and set(models) <= {MODEL}
        assert (ue_device, edge_device) == (self.bed.ue_device, self.bed.edge_device)
        self.starts += 1
        self.bed.update_link(profile)
        return self

    def start(self) -> SharedBed:
        return self

    @property
    def topology(self) -> Any:  # the sweep captures each point on it (splitbed.sweep.capture)
        return self.bed.topology

    @property
    def cpu_plan(self) -> Any:  # where the captures run (its `capture` role)
        return self.bed.cpu_plan

    @property
    def remote_port(self) -> int:
        return int(self.bed.remote_port)

    def close(self) -> None:
        pass

    def run(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        return self.bed.run(job)

    def link_info(self) -> dict[str, Any]:
        return self.bed.link_info()

    def update_link(self, profile: Any) -> None:
        self.bed.update_link(profile)


def slow_fast_trace_profile(tmp_path: Path, name: str, slow_mbit: float) -> Path:
    """A profile file whose uplink follows a trace: `slow_mbit` for 3 s, then 200 Mbit/s for 3 s (1 ms each way)."""
    trace = tmp_path / f"{name}.tput"
    trace.write_text(f"# interval_ms: 3000\n{slow_mbit:g}\n200\n")
    link = tmp_path / f"{name}.toml"
    link.write_text(f'name = "{name}"\ndescription = "test trace"\nsource = "this test"\n'
                    f'[uplink]\ndelay_ms = 1.0\nqueue_packets = 1000\n'
                    f'trace = {{ path = "{trace}", kind = "throughput" }}\n[downlink]\ndelay_ms = 1.0\n')
    return link


def sweep_spec(**overrides: Any) -> SweepSpec:
    options: dict[str, Any] = {"profiles": (PROFILE,), "models": (MODEL,), "partitions": SWEEP_PARTITIONS,
                               "encodings": ("tlv", "json-baseline"), "repetitions": 6, "warmup": 1, "warmup_max": 1,
                               "weights": WEIGHTS, "backend": "userspace", "baselines": (),
                               "ue_devices": ("host",)}  # as the shared testbed (tests/integration/shared_bed.py)
    options.update(overrides)
    return SweepSpec(**options)


@pytest.fixture(scope="package")
def shared_sweep(shared_bed: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep: 4 points x (6 + 1 warm-up) inferences on 5g-split-ai."""
    out = tmp_path_factory.mktemp("sweep")
    outcome = run_sweep(sweep_spec(), out, testbed_factory=SharedBed(shared_bed).factory)
    assert outcome.inferences - outcome.errors == 4 * 6 and not outcome.incomplete, outcome
    return out


def netns_names() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
