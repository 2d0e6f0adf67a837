"""Fitting a distribution to a sample of burst sizes or inter-burst times, for a traffic-model table.

3GPP TR 38.838 (XR traffic models, clause 5.1) describes frame sizes by a truncated Gaussian given by its mean,
standard deviation and truncation range, and frame jitter the same way, so the truncated normal is the first
candidate here, with its parameters as such a table states them: the sample's mean and standard deviation (as mu
and sigma of the normal) and its range [min, max] as the truncation. (A maximum-likelihood fit with the bounds at
the sample's extremes was tried and rejected: on 10 values it runs off to a boundary, e.g. mu at the minimum and
sigma three times the sample's, which describes nothing.) The second candidate is a log-normal fitted by maximum
likelihood with its location at 0 (skewed positive quantities such as times). The one with the lower AIC is
reported (k = 4 for the truncated normal, all four taken from the sample; 2 for the log-normal), with the
Kolmogorov-Smirnov distance D of the sample to it; the KS p-value is optimistic because the parameters come from
the same sample, and with the sweep's usual 10 repetitions any fit is a rough description, which `n` says. When
even that optimistic p is below 0.05 the table says that no candidate fits (e.g. wire bytes that are constant
but for the occasional retransmission), naming the best one.

A sample whose values are all equal (a lossless carriage sends the same bytes every time) is reported as
constant: a traffic model states that as a deterministic size, not as a normal with sigma 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MIN_N_FIT = 5          # below: no distribution is fitted (the sample is described by its moments only)
REJECT_P = 0.05        # a KS p-value below this: the best candidate is reported as not fitting
RELATIVE_CONSTANT = 1e-9


@dataclass(frozen=True)
class Fit:
    """What a sample looks like: its moments, and the distribution chosen for it (None: too few values)."""

    n: int
    mean: float | None
    sd: float | None          # sample standard deviation (n - 1)
    minimum: float | None
    maximum: float | None
    distribution: str | None  # "truncated normal", "log-normal", "constant", or None
    params: dict[str, float] = field(default_factory=dict)
    aic: float | None = None
    ks_d: float | None = None
    ks_p: float | None = None
    note: str = ""

    @property
    def rejected(self) -> bool:
        """The Kolmogorov-Smirnov test rejects the chosen distribution at 5 % (even with its optimistic p)."""
        return self.ks_p is not None and self.ks_p < REJECT_P

    def describe(self, digits: int = 3) -> str:
        """The distribution with its parameters, e.g. `truncated normal (mu 101.2, sigma 3.4, on [95, 110])`;
        a fit the KS test rejects is said to be one."""
        g = _g(digits)
        if self.distribution is None:
            return self.note or "-"
        if self.distribution == "constant":
            return f"constant ({g(self.params['value'])})"
        p = self.params
        if self.distribution == "truncated normal":
            text = f"truncated normal (mu {g(p['mu'])}, sigma {g(p['sigma'])}, on [{g(p['low'])}, {g(p['high'])}])"
        else:
            text = f"log-normal (mu {g(p['mu'])}, sigma {g(p['sigma'])} of ln x)"
        return f"no candidate fits (KS rejects the best, {text})" if self.rejected else text

    def goodness(self) -> str:
        if self.ks_d is None:
            return "-"
        return f"KS D {self.ks_d:.3f} (p {self.ks_p:.2f}), n {self.n}"

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "sd": self.sd, "min": self.minimum, "max": self.maximum,
                "distribution": self.distribution, "params": dict(self.params), "aic": self.aic,
                "ks_d": self.ks_d, "ks_p": self.ks_p, "note": self.note, "text": self.describe()}


def _g(digits: int) -> Any:
    def fmt(value: float) -> str:
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"

    return fmt


def fit(values: Iterable[float | int | None]) -> Fit:
    """Moments and the best of the candidate distributions for the finite values given."""
    data = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
    n = len(data)
    if n == 0:
        return Fit(0, None, None, None, None, None, note="no values")
    mean = sum(data) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in data) / (n - 1)) if n > 1 else 0.0
    low, high = data[0], data[-1]
    if high - low <= RELATIVE_CONSTANT * max(abs(high), 1.0):
        return Fit(n, mean, sd, low, high, "constant", {"value": mean}, note="every value equal")
    if n < MIN_N_FIT:
        return Fit(n, mean, sd, low, high, None, note=f"n = {n}: too few values to fit a distribution")
    candidates = [c for c in (_truncated_normal(data), _lognormal(data)) if c is not None]
    if not candidates:
        return Fit(n, mean, sd, low, high, None, note="no candidate distribution could be fitted")
    name, params, log_likelihood, k, cdf = min(candidates, key=lambda c: 2 * c[3] - 2 * c[2])
    from scipy.stats import kstest

    test = kstest(data, cdf)
    return Fit(n, mean, sd, low, high, name, params, aic=2 * k - 2 * log_likelihood, ks_d=float(test.statistic),
               ks_p=float(test.pvalue))


Candidate = tuple[str, dict[str, float], float, int, Any]


def _truncated_normal(data: list[float]) -> Candidate | None:
    import numpy as np
    from scipy.stats import truncnorm

    x = np.asarray(data)
    mu, sigma = float(x.mean()), float(x.std(ddof=1))
    low, high = float(x.min()), float(x.max())
    if sigma <= 0:
        return None
    a, b = (low - mu) / sigma, (high - mu) / sigma
    log_likelihood = float(np.sum(truncnorm.logpdf(x, a, b, loc=mu, scale=sigma)))
    if not math.isfinite(log_likelihood):
        return None

    def cdf(values: Any) -> Any:
        return truncnorm.cdf(values, a, b, loc=mu, scale=sigma)

    return ("truncated normal", {"mu": mu, "sigma": sigma, "low": low, "high": high}, log_likelihood, 4, cdf)


def _lognormal(data: list[float]) -> Candidate | None:
    import numpy as np
    from scipy.stats import lognorm

    x = np.asarray(data)
    if float(x.min()) <= 0:
        return None
    shape, _, scale = lognorm.fit(x, floc=0)
    log_likelihood = float(np.sum(lognorm.logpdf(x, shape, loc=0, scale=scale)))
    if not math.isfinite(log_likelihood):
        return None

    def cdf(values: Any) -> Any:
        return lognorm.cdf(values, shape, loc=0, scale=scale)

    return ("log-normal", {"mu": math.log(scale), "sigma": float(shape)}, log_likelihood, 2, cdf)
