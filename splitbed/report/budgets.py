"""Performance budgets (splitbed/data/budgets.toml): the figures a report draws its budget lines from. The same
file is read by the tests and quoted in docs/REPORT.md, so a budget changes in one place only. A user's own file
in the same format (`splitbed report --budgets FILE`) replaces it for a report; there, a file with a single
budget needs no `default = true`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_KEYS = {"default", "title", "uplink_latency_ms", "uplink_rate_mbit", "payload_bytes", "source"}
MAX_BUDGETS_FILE_BYTES = 1 << 20
PACKAGE_FILE = "budgets.toml"


class BudgetError(ValueError):
    """budgets.toml is malformed, or a budget name is unknown."""


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


def _number(where: str, name: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BudgetError(f"{where} [{name}] {key} must be a positive number, got {value!r}")
    return float(value)


def parse_budgets(data: dict[str, Any], where: str = PACKAGE_FILE, *, lone_is_default: bool = False) -> dict[
        str, Budget]:
    budgets: dict[str, Budget] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise BudgetError(f"{where}: {name!r} must be a table")
        unknown = set(table) - _KEYS
        if unknown:
            raise BudgetError(f"{where} [{name}]: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
        for key in ("title", "source"):
            if not isinstance(table.get(key), str) or not table[key].strip():
                raise BudgetError(f"{where} [{name}]: {key} must be a non-empty string (cite the source)")
        payload = _number(where, name, "payload_bytes", table.get("payload_bytes"))
        budgets[name] = Budget(name=name, title=table["title"], source=table["source"],
                               uplink_latency_ms=_number(where, name, "uplink_latency_ms",
                                                         table.get("uplink_latency_ms")),
                               uplink_rate_mbit=_number(where, name, "uplink_rate_mbit",
                                                        table.get("uplink_rate_mbit")),
                               payload_bytes=int(payload) if payload is not None else None,
                               default=bool(table.get("default", False)))
    if not budgets:
        raise BudgetError(f"{where} holds no budget (one [name] table per budget, as in splitbed/data/budgets.toml)")
    defaults = [b.name for b in budgets.values() if b.default]
    if lone_is_default and len(budgets) == 1 and not defaults:
        only = next(iter(budgets.values()))
        return {only.name: Budget(**{**only.__dict__, "default": True})}
    if len(defaults) != 1:
        raise BudgetError(f"{where} must mark exactly one budget `default = true`, found {defaults}")
    return budgets


@cache
def load_budgets(path: str | None = None) -> dict[str, Budget]:
    """Every budget in splitbed/data/budgets.toml (or in the user's file `path`), by name."""
    if path is None:
        where, lone = "splitbed/data/budgets.toml", False
        text = (resources.files("splitbed") / "data" / PACKAGE_FILE).read_text(encoding="utf-8")
    else:
        where, lone = path, True
        file = Path(path)
        try:
            if file.stat().st_size > MAX_BUDGETS_FILE_BYTES:
                raise BudgetError(f"{path} is larger than {MAX_BUDGETS_FILE_BYTES} bytes")
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise BudgetError(f"cannot read the budgets file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise BudgetError(f"{path} is not UTF-8 text: {exc}") from None
    try:
        return parse_budgets(tomllib.loads(text), where, lone_is_default=lone)
    except tomllib.TOMLDecodeError as exc:
        raise BudgetError(f"{where} is not valid TOML: {exc}") from None


def get_budget(name: str | None = None, path: str | None = None) -> Budget:
    """A budget by name (from the user's file `path`, else the package's); the file's default one when `name`
    is None (the package's: split AI/ML image recognition)."""
    budgets = load_budgets(None if path is None else str(path))
    if name is None:
        return next(b for b in budgets.values() if b.default)
    if name not in budgets:
        raise BudgetError(f"unknown budget {name!r}; known: {', '.join(budgets)}")
    return budgets[name]
