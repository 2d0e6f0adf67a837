"""Acceptance bounds for checking an emulated link against its profile (used by the fidelity tests).

A link with loss probability p that carried n packets should have lost a number within the binomial
interval; a count outside it means the link does not do what its profile says (or the test measured
something else), never "bad luck" at the chosen confidence.
"""

from __future__ import annotations

import math


def binomial_interval(n: int, p: float, confidence: float = 0.99) -> tuple[int, int]:
    """The central ``confidence`` interval [lo, hi] of a Binomial(n, p) count (exact, from the pmf).

    Each tail outside the interval holds at most (1 - confidence) / 2 of the probability.
    """
    if n < 0 or not 0.0 <= p <= 1.0 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need n >= 0, 0 <= p <= 1, 0 < confidence < 1 (got {n}, {p}, {confidence})")
    if p == 0.0 or n == 0:
        return 0, 0
    if p == 1.0:
        return n, n
    tail = (1.0 - confidence) / 2.0
    mean = n * p
    sigma = math.sqrt(n * p * (1.0 - p))
    low_k = max(0, int(mean - 15 * sigma) - 1)
    high_k = min(n, int(mean + 15 * sigma) + 1)
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n_fact = math.lgamma(n + 1)
    pmf = [
        math.exp(log_n_fact - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q)
        for k in range(low_k, high_k + 1)
    ]
    cumulative = 0.0
    lo = low_k
    for offset, mass in enumerate(pmf):
        if cumulative + mass > tail:
            lo = low_k + offset
            break
        cumulative += mass
    cumulative = 0.0
    hi = high_k
    for offset, mass in enumerate(reversed(pmf)):
        if cumulative + mass > tail:
            hi = high_k - offset
            break
        cumulative += mass
    return lo, hi


def tcp_goodput_ceiling(rate_mbit: float, mtu: int = 1500, tcp_options_bytes: int = 12) -> float:
    """Highest TCP goodput (Mbit/s) a link of ``rate_mbit`` can give when it counts whole Ethernet frames.

    Each full frame is ``mtu + 14`` bytes on the link and carries ``mtu - 40 - options`` payload bytes (IPv4
    and TCP headers, 12 bytes of timestamps by default): 1448 / 1514 = 95.6 % at MTU 1500.
    """
    payload = mtu - 40 - tcp_options_bytes
    return rate_mbit * payload / (mtu + 14)
