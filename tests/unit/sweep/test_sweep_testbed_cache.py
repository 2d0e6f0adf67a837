"""The worker's testbed cache (splitbed.sweep.daskworker.TestbedCache), what the run loop sees as its testbed:
kept between points that ask for the same one, rebuilt for other options, discarded when it fails (but not when
a job is refused), closed when released, idle or the worker stops, never under a running point."""

from __future__ import annotations

import time
from typing import Any

import pytest

from netem.errors import NetemError
from splitbed.sweep.daskworker import TestbedCache
from splitbed.testbed import JobRefusedError, TestbedError
from tests.unit.sweep.fakebed import FakeBed

OPTIONS: dict[str, Any] = {"profile": "ideal", "backend": "userspace", "models": ["mobilenet_v2"],
                           "weights": "random:0", "runtime": "process", "cpus": "auto"}
JOB = {"model": "mobilenet_v2", "partition": "block_3_project_BN", "image": "builtin:chelsea", "encoding": "tlv",
       "compression": "none", "tags": {"point": "p"}}


class Flaky(FakeBed):
    """Fails the way it is told to, once."""

    fail: Exception | None = None

    def run(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        if Flaky.fail is not None:
            error, Flaky.fail = Flaky.fail, None
            raise error
        return super().run(job)

    def update_link(self, profile: Any) -> None:
        if Flaky.fail is not None:
            error, Flaky.fail = Flaky.fail, None
            raise error
        super().update_link(profile)


def _events(what: str) -> list[Any]:
    return [d for w, d in FakeBed.log if w == what]


@pytest.fixture(autouse=True)
def fresh() -> Any:
    FakeBed.reset()
    Flaky.fail = None
    yield
    FakeBed.reset()


def test_points_asking_for_the_same_testbed_share_it_and_other_options_rebuild_it() -> None:
    cache = TestbedCache(FakeBed, idle_close_s=0)
    first = cache.lease(**OPTIONS).start()
    assert first.run(JOB)[0]["tags"]["point"] == "p"
    assert cache.last_start is not None and cache.last_start["profile"] == "ideal"
    first.close()  # the loop's close keeps it
    cache.done()
    cache.last_start = None
    cache.lease(**OPTIONS).start()
    assert len(_events("start")) == 1 and cache.last_start is None  # reused: no start to report
    cache.done()
    cache.lease(**{**OPTIONS, "profile": "lte"}).start()
    assert [d[0] for d in _events("start")] == ["ideal", "lte"] and _events("close") == ["ideal"]
    cache.done()
    cache.close()
    assert _events("close") == ["ideal", "lte"]


@pytest.mark.parametrize("error", [TestbedError("node died"), NetemError("link update failed"), OSError("pipe")])
def test_a_testbed_that_failed_is_discarded_and_the_next_lease_builds_a_new_one(error: Exception) -> None:
    cache = TestbedCache(Flaky, idle_close_s=0)
    lease = cache.lease(**OPTIONS).start()
    Flaky.fail = error
    with pytest.raises(type(error)):
        lease.update_link("ideal") if isinstance(error, NetemError) else lease.run(JOB)
    assert cache.bed is None and _events("close") == ["ideal"]
    cache.lease(**OPTIONS).start().run(JOB)
    assert len(_events("start")) == 2


def test_a_refused_job_keeps_the_testbed() -> None:
    cache = TestbedCache(Flaky, idle_close_s=0)
    lease = cache.lease(**OPTIONS).start()
    Flaky.fail = JobRefusedError("unreadable image", "bad_image", "")
    with pytest.raises(JobRefusedError):
        lease.run(JOB)
    assert cache.bed is not None and _events("close") == []


def test_release_waits_for_the_running_point_and_an_idle_testbed_closes_itself() -> None:
    cache = TestbedCache(FakeBed, idle_close_s=0.2)
    cache.lease(**OPTIONS).start()
    assert cache.release() is False and _events("close") == []  # a point is using it
    cache.done()
    deadline = time.monotonic() + 5
    while not _events("close") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _events("close") == ["ideal"] and cache.bed is None  # closed after 0.2 s without a point
    cache.lease(**OPTIONS).start()
    cache.done()
    assert cache.release() is True and _events("close") == ["ideal", "ideal"]
