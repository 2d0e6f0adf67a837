"""Performance budgets (splitbed/data/budgets.toml): the figures a report draws its budget lines from. The same
file is read by the tests and quoted in docs/REPORT.md, so a budget changes in one place only."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from netem.fields import Checker

_KEYS = {"default", "title", "uplink_latency_ms", "uplink_rate_mbit", "payload_bytes", "source"}


class BudgetError(ValueError):
    """budgets.toml is malformed, or a budget name is unknown."""


_check = Checker(BudgetError)


@dataclass(frozen=True)
class Budget:
    """`uplink_latency_ms` bounds the uplink delivery of the intermediate data (a record's `delivery_ms`), as
    TS 22.261 defines its "max allowed UL end-to-end latency"; not the inference's end-to-end latency."""

    name: str
    title: str
    source: str
    uplink_latency_ms: float | None = None
    uplink_rate_mbit: float | None = None
    payload_bytes: int | None = None
    default: bool = False


def _number(name: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    return _check.number(f"budgets.toml [{name}] {key}", value, low=0.0, low_open=True)


def parse_budgets(data: dict[str, Any]) -> dict[str, Budget]:
    budgets: dict[str, Budget] = {}
    for name, table in data.items():
        where = f"budgets.toml [{name}]"
        _check.table(where, table)
        _check.keys(where, table, _KEYS, noun="keys")
        for key in ("title", "source"):
            _check.string(f"{where} {key}", table.get(key), non_empty=True, fix="cite the source")
        payload = _number(name, "payload_bytes", table.get("payload_bytes"))
        budgets[name] = Budget(name=name, title=table["title"], source=table["source"],
                               uplink_latency_ms=_number(name, "uplink_latency_ms", table.get("uplink_latency_ms")),
                               uplink_rate_mbit=_number(name, "uplink_rate_mbit", table.get("uplink_rate_mbit")),
                               payload_bytes=int(payload) if payload is not None else None,
                               default=_check.boolean(f"{where} default", table.get("default", False)))
    defaults = [b.name for b in budgets.values() if b.default]
    if len(defaults) != 1:
        raise BudgetError(f"budgets.toml must mark exactly one budget `default = true`, found {defaults}")
    return budgets


@cache
def load_budgets() -> dict[str, Budget]:
    """Every budget in splitbed/data/budgets.toml, by name."""
    text = (resources.files("splitbed") / "data" / "budgets.toml").read_text(encoding="utf-8")
    try:
        return parse_budgets(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise BudgetError(f"splitbed/data/budgets.toml is not valid TOML: {exc}") from None


def get_budget(name: str | None = None) -> Budget:
    """A budget by name; the default one (split AI/ML image recognition) when `name` is None."""
    budgets = load_budgets()
    if name is None:
        return next(b for b in budgets.values() if b.default)
    if name not in budgets:
        raise BudgetError(f"unknown budget {name!r}; known: {', '.join(budgets)}")
    return budgets[name]
