"""`splitbed sweep --rate 10,100`: one point per uplink rate at the profile's delay, the rate in the point key,
measured on the shared real testbed (the link is set to each rate's profile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netem.profile import LinkProfile
from splitbed.sweep import read_records, run_sweep, summarise
from tests.integration.sweep.conftest import PROFILE, SharedBed, sweep_spec


def test_a_rate_sweep_measures_each_rate_at_the_profiles_delay(shared_bed: Any, tmp_path: Path) -> None:
    spec = sweep_spec(partitions=("block_3_project_BN",), encodings=("tlv",), rates=(10.0, 100.0), repetitions=3,
                      warmup=0)
    bed = SharedBed(shared_bed)
    try:
        outcome = run_sweep(spec, tmp_path, testbed_factory=bed.factory)
    finally:
        shared_bed.update_link(PROFILE)
    assert not outcome.incomplete and bed.starts == 2
    summaries = {s.uplink_rate_mbit: s for s in summarise(read_records(tmp_path).records)}
    assert set(summaries) == {10.0, 100.0}
    base = LinkProfile.load(PROFILE)
    for rate, summary in summaries.items():
        assert summary.key.startswith(f"{PROFILE}@{rate:g}mbit|")
        assert summary.uplink_delay_ms == base.uplink.delay_ms  # the profile's delay, only the rate changed
    slow, fast = (summaries[r].median("delivery_ms") for r in (10.0, 100.0))
    assert slow is not None and fast is not None
    # 100,352 bytes of tensor: ~80 ms of serialisation at 10 Mbit/s, ~8 ms at 100 (plus 1 ms delay, TCP)
    assert slow > 3 * fast, (slow, fast)
    again = run_sweep(spec, tmp_path, testbed_factory=SharedBed(shared_bed).factory)
    shared_bed.update_link(PROFILE)
    assert again.skipped_points == 2 and again.inferences == 0  # resumed by key: nothing measured twice
