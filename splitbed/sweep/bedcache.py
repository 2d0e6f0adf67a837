"""A Dask worker's one testbed, kept between the sweep points that ask for the same one (as a local sweep keeps
one per profile), and what the run loop sees of it.

The run loop (splitbed.sweep.runner) builds a testbed with its factory, starts it, runs jobs, and closes it at the
end of its points or after a failure. On a worker, points come one task at a time, so `TestbedCache.lease` is the
factory: a lease's `start()` reuses the cached testbed when the options match or builds a new one, its `close()`
keeps the testbed for the next point, and any error from it but a refused job discards the testbed so that the
loop's rebuild really builds anew. The cache closes the testbed when another is asked for, when released (the
client does at the end of a sweep, never under a running point), after `idle_close_s` without a point, and on
`close()` (the worker stops).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

IDLE_CLOSE_S = 300.0


class TestbedCache:
    """The worker's one testbed, kept between points that ask for the same one. `lease(**options)` is the
    testbed factory the run loop gets: its `start()` reuses or (re)builds the testbed, its `close()` keeps it for
    the next point, and any error from it but a refused job discards the testbed (the loop then asks for a new
    one)."""

    __test__ = False

    def __init__(self, factory: Any = None, idle_close_s: float = IDLE_CLOSE_S) -> None:
        self.factory = factory
        self.idle_close_s = idle_close_s
        self.bed: Any = None
        self.key: str | None = None
        self.in_use = False
        self.last_start: dict[str, Any] | None = None  # set when a lease built a testbed (for the result)
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None

    def lease(self, **options: Any) -> Lease:
        return Lease(self, options)

    def _acquire(self, options: dict[str, Any]) -> Any:
        key = json.dumps(options, sort_keys=True, default=_describe)
        with self._lock:
            self._cancel_timer()
            self.in_use = True
            if self.bed is not None and self.key == key and not getattr(self.bed, "closed", False):
                return self.bed
            self._close()
            factory = self.factory or _default_factory
            begin = time.monotonic()
            bed = factory(**options)
            bed.start()
            self.bed, self.key = bed, key
            profile = options.get("profile")
            self.last_start = {"profile": str(getattr(profile, "name", profile)),
                               "models": list(options.get("models", ())), "start_s": round(time.monotonic() - begin, 3),
                               "backend": bed.link_info().get("backend")}
            return bed

    def discard(self) -> None:
        """Close the testbed after it failed; the next lease builds a new one."""
        with self._lock:
            self._close()

    def done(self) -> None:
        """A point finished with the testbed: keep it, but close it after `idle_close_s` without another point."""
        with self._lock:
            self.in_use = False
            self._cancel_timer()
            if self.bed is not None and self.idle_close_s > 0:
                self._timer = threading.Timer(self.idle_close_s, self.release)
                self._timer.daemon = True
                self._timer.start()

    def release(self) -> bool:
        """Close the testbed unless a point is using it; True when none is left open."""
        with self._lock:
            if self.in_use:
                return False
            self._cancel_timer()
            self._close()
            return True

    def close(self) -> None:
        with self._lock:
            self._cancel_timer()
            self._close()

    def _close(self) -> None:
        bed, self.bed, self.key = self.bed, None, None
        if bed is not None:
            try:
                bed.close()
            except Exception:
                log.exception("closing the worker's testbed")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Lease:
    """The run loop's view of the cached testbed (splitbed.sweep.runner's testbed protocol)."""

    def __init__(self, cache: TestbedCache, options: dict[str, Any]) -> None:
        self.cache, self.options = cache, options
        self.bed: Any = None

    def start(self) -> Lease:
        self.bed = self.cache._acquire(self.options)
        return self

    def close(self) -> None:  # kept for the next point; TestbedCache.done/release/close end it
        pass

    def run(self, job: Any) -> list[dict[str, Any]]:
        return self._guarded(lambda: self.bed.run(job))

    def update_link(self, profile: Any) -> None:
        self._guarded(lambda: self.bed.update_link(profile))

    def link_info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.bed.link_info()
        return info

    def _guarded(self, call: Any) -> Any:
        from splitbed.testbed import JobRefusedError

        try:
            return call()
        except JobRefusedError:  # the job, not the testbed
            raise
        except Exception:  # a dead node, a timeout, a link that failed to change: the next lease builds anew
            self.cache.discard()
            raise


def _default_factory(**options: Any) -> Any:
    from splitbed.testbed import Testbed

    if options.get("ues"):  # a cell point (sweep --ues): N UE nodes and one edge, as on the client's machine
        from splitbed.cellbed import CellTestbed

        options.pop("backend", None)  # a cell always runs on the userspace link (the spec refused kernel)
        return CellTestbed(**options)
    return Testbed(**options)


def _describe(value: Any) -> Any:
    """JSON-able form of a testbed option (a LinkProfile for rate-swept profiles)."""
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value if isinstance(value, (str, int, float, list, dict)) else str(value)
