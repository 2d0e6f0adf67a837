"""Testbeds shared across a test session: nodes are started once per (model, UE device) and the link is
switched live to each test's profile, so the TensorFlow start-up and model builds (most of a minute here) are paid
once per model, not once per test.

`BedPool.get(model, profile, ue_device)` returns a running `splitbed.testbed.Testbed` on that profile; `SuiteBed` is the
per-test view of it, which files every record it returns into the test's record log.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from splitbed.devices import DEFAULT_UE
from splitbed.testbed import Testbed, TestbedError

log = logging.getLogger(__name__)

MAX_LIVE_BEDS = 2  # each holds two node processes with the model loaded (VGG16: ~0.6 GB each)
LOCAL_ARGS = ("--verify-delivery",)  # CRC-32 of sent vs decoded tensors in every record (after all timing)


class BedPool:
    """Running testbeds keyed by (model, UE device) (backend and weights are the pool's); the least recently used
    is closed past MAX_LIVE_BEDS, a broken one is replaced on the next request."""

    def __init__(self, backend: str = "auto", weights: str = "auto", max_live: int = MAX_LIVE_BEDS,
                 transport: str = "tcp") -> None:
        self.backend = backend
        self.transport = transport  # the sessions' binding, tcp or quic (docs/PROTOCOL.md, section 8)
        self.weights = weights
        self.max_live = max_live
        self._beds: OrderedDict[tuple[str, str], Testbed] = OrderedDict()
        self.started = 0

    def get(self, model: str, profile: str, ue_device: str = DEFAULT_UE) -> Testbed:
        key = (model, ue_device)
        bed = self._beds.get(key)
        if bed is not None and (bed.closed or getattr(bed, "_broken", None)):
            self._close(key)
            bed = None
        if bed is None:
            while len(self._beds) >= self.max_live:
                self._close(next(iter(self._beds)))
            bed = Testbed(profile, backend=self.backend, models=[model], weights=self.weights,
                          local_args=LOCAL_ARGS, ue_device=ue_device, transport=self.transport)
            bed.start()
            self.started += 1
            self._beds[key] = bed
        self._beds.move_to_end(key)
        if bed.profile.name != profile:
            bed.update_link(profile)
            # A TCP connection that lived on a short-RTT link degrades after a live switch to a long-RTT one
            # (602 KB on lte: 128 ms per delivery on a fresh connection, growing to 540 ms on the old one,
            # measured here): each profile gets its own session, as on a link of that kind from the start.
            bed.run({"action": "reconnect", "model": model})
        return bed

    def discard(self, model: str, ue_device: str = DEFAULT_UE) -> None:
        """Close a testbed that misbehaved; the next request starts a fresh one."""
        self._close((model, ue_device))

    def _close(self, key: tuple[str, str]) -> None:
        bed = self._beds.pop(key, None)
        if bed is None:
            return
        try:
            bed.close()
        except TestbedError as exc:
            log.error("closing the %s testbed (UE %s): %s", key[0], key[1], exc)

    def close(self) -> None:
        for key in list(self._beds):
            self._close(key)


class SuiteBed:
    """One test's handle on a pooled testbed: `run(job)` returns records and logs them for the failure report."""

    __test__ = False

    def __init__(self, bed: Testbed, records: list[dict[str, Any]], pool: BedPool, model: str,
                 ue_device: str = DEFAULT_UE) -> None:
        self.bed = bed
        self.records = records
        self._pool = pool
        self._model = model
        self._ue_device = ue_device

    @property
    def topology(self) -> Any:
        return self.bed.topology

    @property
    def profile(self) -> Any:
        return self.bed.profile

    @property
    def remote_port(self) -> int | None:
        return self.bed.remote_port

    def run(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run one job (splitbed.nodes.jobs fields); every record (and action line) is kept for the report."""
        try:
            records = self.bed.run(job)
        except TestbedError:
            self._pool.discard(self._model, self._ue_device)  # a timeout or a dead node: a fresh one next time
            raise
        self.records.extend(records)
        return records

    def infer(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Run a one-inference job and return its record, failing clearly when the inference failed."""
        records = self.run(dict(job, repetitions=1))
        if len(records) != 1:
            raise AssertionError(f"expected one record for {dict(job)}, got {len(records)}")
        record = records[0]
        if record.get("status") != "ok":
            raise AssertionError(f"inference failed: {record.get('error')}")
        return record

    def update_link(self, profile: str) -> None:
        self.bed.update_link(profile)

    def logs(self) -> dict[str, str]:
        return self.bed.logs()
