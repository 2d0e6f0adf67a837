"""The remote node's memory budget: one pool of bytes shared by all sessions, reserved before a unit is kept.

Caps on a unit's length and decoded size bound each unit's output, not what decoding it allocates on the way
(decompression buffers, transform scratch, Python objects of a JSON parse) nor how many sessions do it at once.
So each session reserves, before it buffers or decodes anything, an upper bound of what the unit will hold
until its reply is sent (splitbed.format.memory, json_baseline.decode_peak_bytes), and gives it back after.
A reservation that does not fit is refused with `memory_budget` to that session only: nothing is allocated,
the other sessions go on. Sans-I/O and thread-safe; the session protocol calls it, it knows no sockets.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from splitbed.nodes.errors import ProtocolError

#: Default budget of the remote node (`--memory-budget-mib`): room for the largest unit the default caps allow
#: (a 256 MiB decoded tensor with its decompression buffer and the tail's input copy) plus ordinary traffic.
DEFAULT_BUDGET_BYTES = 1 << 30


class BudgetRefused(ProtocolError):
    """The unit would take the node over its memory budget; refused before anything was kept (not fatal)."""

    def __init__(self, message: str) -> None:
        super().__init__("memory_budget", message, fatal=False)


@dataclass
class BudgetStats:
    limit: int
    in_use: int
    peak: int
    refused: int


class MemoryBudget:
    """Bytes reserved by all sessions, never above `limit`."""

    def __init__(self, limit: int = DEFAULT_BUDGET_BYTES) -> None:
        if limit <= 0:
            raise ValueError(f"memory budget must be > 0 bytes, got {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._in_use = 0
        self._peak = 0
        self._refused = 0

    def reserve(self, nbytes: int, what: str) -> Reservation:
        """A reservation of `nbytes` (grow it later if needed); BudgetRefused when it does not fit now."""
        reservation = Reservation(self, what)
        reservation.grow(nbytes)
        return reservation

    def _take(self, nbytes: int, what: str, held: int = 0) -> None:
        if nbytes < 0:
            raise ValueError(f"cannot reserve {nbytes} bytes")
        with self._lock:
            if held + nbytes > self.limit:
                self._refused += 1
                raise BudgetRefused(f"{what} needs {_mib(held + nbytes)} to decode, more than this node's whole "
                                    f"memory budget of {_mib(self.limit)} (remote node option --memory-budget-mib)")
            if self._in_use + nbytes > self.limit:
                self._refused += 1
                raise BudgetRefused(f"{what} needs {_mib(held + nbytes)}; the node's memory budget of "
                                    f"{_mib(self.limit)} has {_mib(self.limit - self._in_use)} free now (other "
                                    "sessions hold the rest): retry later")
            self._in_use += nbytes
            self._peak = max(self._peak, self._in_use)

    def _give_back(self, nbytes: int) -> None:
        with self._lock:
            self._in_use -= nbytes
            assert self._in_use >= 0, "memory budget released more than was reserved"

    def stats(self) -> BudgetStats:
        with self._lock:
            return BudgetStats(self.limit, self._in_use, self._peak, self._refused)


class Reservation:
    """Bytes one unit holds from a MemoryBudget; release() (or leaving the `with` block) gives them back."""

    def __init__(self, budget: MemoryBudget, what: str) -> None:
        self.budget = budget
        self.what = what
        self.nbytes = 0

    def grow(self, nbytes: int) -> None:
        """Reserve `nbytes` more; BudgetRefused (and nothing more reserved) when they do not fit."""
        self.budget._take(nbytes, self.what, self.nbytes)
        self.nbytes += nbytes

    def release(self) -> None:
        if self.nbytes:
            self.budget._give_back(self.nbytes)
            self.nbytes = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"
