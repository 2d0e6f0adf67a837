"""Tails and budget shares of a point: the figures a KPI is stated in.

- **Percentiles** p90, p95, p99 and the maximum of every time, size and traffic figure, next to the median and
  its CI (splitbed.stats). Nearest-rank, no interpolation: the p-th percentile is the smallest measured
  value with at least p % of the values at or below it, so it is always a value that was measured. With n values
  the p-th percentile is the maximum once p > 100 (n - 1) / n: with n = 10, p95 and p99 are both the maximum, and
  a p99 that is not the maximum needs n > 100. The p50 is the median column (the mean of the two middle values for
  an even n).
- **Budget shares**: the share of a point's inferences that meet each bound of each budget in
  splitbed/data/budgets.toml, the way 3GPP states a KPI ("99 % of deliveries within 15 ms"), with a 95 %
  Clopper-Pearson interval for the share: 10 of 10 within the bound is a share of 100 % whose interval reaches
  down to 69 %, which is why the count is always given with it. The latency bound is held against the uplink
  delivery (`delivery_ms`, as TS 22.261 defines the UL end-to-end latency: docs/REPORT.md, "Budgets"), the
  payload bound against the delivered intermediate data (`serialized_intermediate_bytes`). Under a paced workload
  (splitbed.workload) a dropped frame counts as a delivery that missed every latency bound: n counts it, met does
  not. The bound stays on `delivery_ms` there too: TS 22.261's end-to-end latency starts when the source transmits,
  and a frame's wait for the UE is before that (its latency from capture has its own tails, `frame_latency_ms`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PERCENTILES: tuple[int, ...] = (90, 95, 99)
SHARE_LEVEL = 0.95
PERCENTILE_GROUPS = ("times", "sizes", "traffic")


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles of `n` values (None when n = 0)."""

    n: int
    p90: float | None
    p95: float | None
    p99: float | None
    maximum: float | None

    def get(self, p: int) -> float | None:
        return {90: self.p90, 95: self.p95, 99: self.p99}[p]


def nearest_rank(sorted_values: Sequence[float], p: float) -> float:
    """The smallest value with at least p % of `sorted_values` at or below it (0 < p <= 100)."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    rank = math.ceil(p / 100 * len(sorted_values) - 1e-9)
    return sorted_values[max(rank, 1) - 1]


def percentiles(values: Iterable[float | int | None]) -> Percentiles:
    data = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not data:
        return Percentiles(0, None, None, None, None)
    p90, p95, p99 = (nearest_rank(data, p) for p in PERCENTILES)
    return Percentiles(len(data), p90, p95, p99, data[-1])


def clopper_pearson(met: int, n: int, level: float = SHARE_LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial share met/n."""
    from scipy.stats import beta

    if n <= 0 or not 0 <= met <= n:
        raise ValueError(f"need 0 <= met <= n and n > 0, got {met}/{n}")
    alpha = 1 - level
    low = 0.0 if met == 0 else float(beta.ppf(alpha / 2, met, n - met + 1))
    high = 1.0 if met == n else float(beta.ppf(1 - alpha / 2, met + 1, n - met))
    return low, high


@dataclass(frozen=True)
class BudgetShare:
    """How many of a point's inferences met one bound of one budget."""

    budget: str       # budgets.toml table name
    kind: str         # latency, payload
    figure: str       # the record figure held against the bound
    bound: float
    unit: str
    met: int
    n: int
    dropped: int = 0  # of the n: frames a paced workload dropped (never delivered, so not met)

    @property
    def share(self) -> float | None:
        return self.met / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return clopper_pearson(self.met, self.n) if self.n else None

    @property
    def what(self) -> str:
        if self.kind == "latency":
            return f"uplink deliveries within {self.bound:g} ms"
        return f"intermediate data payloads within {self.bound:,.0f} bytes"

    def text(self) -> str:
        """e.g. `100 % of 10 uplink deliveries within 15 ms (95 % CI 69.2-100 %)`."""
        if not self.n:
            return f"no measurement of {self.what}"
        low, high = self.interval or (0.0, 0.0)
        dropped = f", {self.dropped} of them dropped frames" if self.dropped else ""
        return (f"{_pct(self.met / self.n)} % of {self.n} {self.what} (95 % CI {_pct(low)}-{_pct(high)} %{dropped})")


def _pct(value: float) -> str:
    text = f"{100 * value:.1f}"
    return text[:-2] if text.endswith(".0") else text


BOUNDS: tuple[tuple[str, str, str, str], ...] = (
    # (kind, budget attribute, record figure key in sweep.figures, unit)
    ("latency", "uplink_latency_ms", "delivery_ms", "ms"),
    ("payload", "payload_bytes", "serialized_intermediate_bytes", "bytes"),
)


def budget_shares(records: Sequence[Mapping[str, Any]], budgets: Iterable[Any], *,
                  dropped: int = 0) -> list[BudgetShare]:
    """One BudgetShare per (budget, bound it sets), over the records given (a point's good measurements).
    `dropped` frames (a paced workload's overload policy dropped them: never delivered) count as missing every
    latency bound; they carry no payload, so the payload shares leave them out."""
    if dropped < 0:
        raise ValueError(f"dropped frames must be >= 0, got {dropped}")
    from splitbed.sweep.figures import BY_KEY

    shares = []
    for budget in budgets:
        for kind, attribute, key, unit in BOUNDS:
            bound = getattr(budget, attribute, None)
            if bound is None:
                continue
            values = [v for v in (BY_KEY[key].value(r) for r in records) if v is not None]
            missed = dropped if kind == "latency" else 0
            shares.append(BudgetShare(budget.name, kind, key, float(bound), unit,
                                      sum(1 for v in values if v <= bound), len(values) + missed, missed))
    return shares
