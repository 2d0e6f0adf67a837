"""A testbed stand-in for the distributed executor's unit tests (the real testbed runs in
tests/integration/sweep/test_sweep_distributed.py): one plausible record per job, every call logged, and a
partition that breaks the testbed on demand."""

from __future__ import annotations

import itertools
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, ClassVar

from splitbed.testbed import TestbedError


class FakeBed:
    """Testbed protocol of splitbed.sweep.runner; class-level log shared by every instance (in-process cluster)."""

    log: ClassVar[list[tuple[str, Any]]] = []
    broken_partition: ClassVar[str | None] = None
    lock = threading.Lock()
    _index = itertools.count()

    def __init__(self, *, profile: Any, backend: str, models: list[str], weights: str, runtime: str, cpus: str,
                 **engine: Any) -> None:
        self.profile, self.models = str(profile), list(models)
        self.session = uuid.uuid4().hex
        self.closed = False

    @classmethod
    def reset(cls, broken_partition: str | None = None) -> None:
        with cls.lock:
            cls.log.clear()
        cls.broken_partition = broken_partition

    def _say(self, what: str, detail: Any) -> None:
        with self.lock:
            self.log.append((what, detail))

    def start(self) -> FakeBed:
        self._say("start", (self.profile, tuple(self.models)))
        return self

    def close(self) -> None:
        self.closed = True
        self._say("close", self.profile)

    def link_info(self) -> dict[str, Any]:
        return {"backend": "fake", "profile": {"name": self.profile}}

    def update_link(self, profile: Any) -> None:
        self._say("update_link", str(getattr(profile, "name", profile)))

    def run(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        self._say("run", (job["partition"], dict(job["tags"])))
        if job["partition"] == self.broken_partition:
            raise TestbedError(f"fake testbed broke on {job['partition']}")
        index = next(self._index)
        facts = {"hostname": "fakehost", "cpu_model": "Fake CPU", "cpu_count": 2, "usable_cores": 2,
                 "kernel": "6.1.0"}
        return [{"record_type": "inference", "status": "ok", "tags": dict(job["tags"]), "model": job["model"],
                 "partition_name": job["partition"], "partition_id": len(job["partition"]),
                 "encoding": job["encoding"], "compression_profile": job["compression"],
                 "image": job["image"], "session_id": self.session, "session_inference_index": index,
                 "started_at_utc": datetime.now(timezone.utc).isoformat(), "repetition": 0,
                 "local_inference_ms": 5.0, "remote_inference_ms": 5.0, "e2e_latency_ms": 12.0,
                 "serialized_intermediate_bytes": 100 * len(job["partition"]),
                 "link": self.link_info(), "host": {"local": facts, "remote": facts}}]
