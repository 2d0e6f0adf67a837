"""Quick links, as mahimahi's shells make them: a rate, a one-way delay and a random loss given on the command
line (`netem shell --rate 20 --delay 10 --loss 0.1%`), alone or over a profile whose fields they override
(`--profile lte --rate 20`). The result is an ordinary LinkProfile built through `LinkProfile.from_dict`, so it
gets exactly the validation (ranges, caps, messages) a TOML file gets.

Units: rate in Mbit/s (`20`, `20mbit`, `500kbit`, `1gbit`); delay in ms (`10`, `10ms`, `0.5s`); loss as a
percentage with `%` (`0.1%`) or a fraction without (`0.001`), as tc's netem and mahimahi's mm-loss write them.
Both directions get the values unless `uplink_only` (then the downlink keeps the profile's, or stays ideal).
A rate replaces a profile's capacity trace; loss replaces its loss model (random loss, independent per packet).
"""

from __future__ import annotations

import re
from typing import Any

from netem.errors import ProfileError
from netem.profile import LinkProfile


class QuickLinkError(ProfileError):
    """A --rate, --delay or --loss value that is not a number with an accepted unit."""


_NUMBER = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_RATE = re.compile(rf"^{_NUMBER}\s*(gbit|mbit|kbit|g|m|k)?(?:/s|ps)?$", re.IGNORECASE)
_DELAY = re.compile(rf"^{_NUMBER}\s*(ms|s|us)?$", re.IGNORECASE)
_LOSS = re.compile(rf"^{_NUMBER}\s*(%)?$")
_RATE_SCALE = {None: 1.0, "m": 1.0, "mbit": 1.0, "g": 1000.0, "gbit": 1000.0, "k": 0.001, "kbit": 0.001}
_DELAY_SCALE = {None: 1.0, "ms": 1.0, "s": 1000.0, "us": 0.001}


def parse_rate(text: str) -> float:
    """Mbit/s from `20`, `20mbit`, `500kbit`, `1gbit` (range checks: the profile's)."""
    match = _RATE.match(text.strip())
    if not match:
        raise QuickLinkError(f"rate {text!r} is not a rate: give Mbit/s (20) or a unit (500kbit, 20mbit, 1gbit)")
    unit = match.group(2).lower() if match.group(2) else None
    return float(match.group(1)) * _RATE_SCALE[unit]


def parse_delay(text: str) -> float:
    """One-way delay in ms from `10`, `10ms`, `0.5s`, `500us`."""
    match = _DELAY.match(text.strip())
    if not match:
        raise QuickLinkError(f"delay {text!r} is not a delay: give milliseconds (10) or a unit (10ms, 0.5s)")
    unit = match.group(2).lower() if match.group(2) else None
    return float(match.group(1)) * _DELAY_SCALE[unit]


def parse_loss(text: str) -> float:
    """Drop probability from `0.1%` (a percentage) or `0.001` (a fraction, 0..1)."""
    match = _LOSS.match(text.strip())
    if not match:
        raise QuickLinkError(f"loss {text!r} is not a loss rate: give a percentage (0.1%) or a fraction (0.001)")
    value = float(match.group(1))
    if match.group(2):
        return value / 100.0
    if value > 1:
        raise QuickLinkError(f"loss {text!r} is above 1 as a fraction: write {text}% for a percentage")
    return value


def _label(value: float) -> str:
    return f"{value:g}".replace("e-0", "e-")


def quick_profile(base: LinkProfile | None, *, rate: str | None = None, delay: str | None = None,
                  loss: str | None = None, uplink_only: bool = False) -> LinkProfile:
    """`base` (or an ideal link) with the given fields overridden; validated as a profile file would be."""
    changes: dict[str, Any] = {}
    parts = []
    if rate is not None:
        changes["rate_mbit"] = parse_rate(rate)
        changes["trace"] = None
        parts.append(f"r{_label(changes['rate_mbit'])}")
    if delay is not None:
        changes["delay_ms"] = parse_delay(delay)
        parts.append(f"d{_label(changes['delay_ms'])}")
    if loss is not None:
        p = parse_loss(loss)
        changes["loss"] = {"model": "random", "p": p} if p > 0 else None
        parts.append(f"l{_label(p * 100)}pct")
    if base is None and not changes:
        raise ProfileError("no link given: name a --profile, or give --rate, --delay and/or --loss")
    data: dict[str, Any] = base.to_dict() if base is not None else {
        "name": "quick", "description": "An ideal link.", "source": "netem shell command line",
        "uplink": {}, "downlink": {}}
    if not changes:
        return base if base is not None else LinkProfile.from_dict(data)
    words = [f"rate {_label(changes['rate_mbit'])} Mbit/s" if "rate_mbit" in changes else "",
             f"one-way delay {_label(changes['delay_ms'])} ms" if "delay_ms" in changes else "",
             f"random loss {_label(parse_loss(loss) * 100)}%" if loss is not None else ""]
    said = ", ".join(w for w in words if w) + (" on the uplink only" if uplink_only else " in both directions")
    stem = base.name if base is not None else "quick"
    suffix = "-".join(parts) + ("-up" if uplink_only else "")
    data["name"] = f"{stem[:63 - len(suffix)]}-{suffix}"[:64] if len(suffix) < 60 else stem
    data["description"] = (f"{base.description} Overridden: {said}." if base is not None else
                           f"A quick link: {said}.")
    data["source"] = (f"{base.source}; overridden on the netem shell command line ({said})" if base is not None
                      else f"netem shell command line ({said})")
    for direction in ("uplink",) if uplink_only else ("uplink", "downlink"):
        table = dict(data[direction])
        table.update(changes)
        data[direction] = {k: v for k, v in table.items() if v is not None}
    return LinkProfile.from_dict(data)
