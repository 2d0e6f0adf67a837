"""Strict reading of the tables people write: one style for every complaint about a link profile, a scenario, a
job, an adaptive policy, a budget, the suite matrix, a model's partition list or a weights spec.

Every problem is one line that says where (`uplink.delay_ms`, `policy.alpha`, `job repetitions`), what was found
(type and value) and what is allowed (the interval, the choices, the known keys, and the closest known name when
it looks like a typo). A `Checker` is bound to the caller's exception class, so each package keeps its own error
base (ProfileError, ScenarioError, ConfigurationError, ...); callers add the file name, and TOML syntax errors keep
tomllib's line and column. It sits in netem, the bottom layer, so that netem's profiles use it too.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn


def describe(value: Any) -> str:
    """`str '4ms'`, `bool True`: the type and the value, as every message shows what it found."""
    return f"{type(value).__name__} {value!r}"


def interval(low: float | None, high: float | None, *, low_open: bool = False, high_open: bool = False) -> str:
    """`[0, 1]`, `(0, 100000]`, `[1, inf)`."""
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    return f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known name `word` is probably a typo of, if any."""
    matches = difflib.get_close_matches(word, [str(k) for k in known], n=1, cutoff=0.6)
    return matches[0] if matches else None


class Checker:
    """Checks values for one error class: each method returns the value (converted where it says) or raises."""

    def __init__(self, error: type[Exception]) -> None:
        self.error = error

    def fail(self, message: str) -> NoReturn:
        raise self.error(message)

    def keys(self, where: str, data: Mapping[str, Any], allowed: Iterable[str], *, noun: str = "key(s)") -> None:
        """Refuse keys outside `allowed`, listing the allowed ones and the closest to each typo."""
        known = sorted(allowed)
        unknown = sorted(set(data) - set(known))
        if not unknown:
            return
        guesses = {word: guess for word in unknown if (guess := closest(word, known)) is not None}
        if len(unknown) == 1 and guesses:
            hint = f" (did you mean {guesses[unknown[0]]!r}?)"
        else:
            hint = "".join(f" (did you mean {g!r} for {w!r}?)" for w, g in guesses.items())
        self.fail(f"{where}: unknown {noun} {unknown}; allowed: {', '.join(known)}{hint}")

    def required(self, where: str, data: Mapping[str, Any], names: Iterable[str]) -> None:
        """Each of `names` must be present (the first one missing is named)."""
        for name in names:
            if name not in data:
                self.fail(f"{where} is missing the required key {name!r}")

    def table(self, where: str, value: Any, *, what: str = "a table") -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(f"{where} must be {what}, not {type(value).__name__}")
        return value

    def number(self, where: str, value: Any, *, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
        """A finite int or float (not a bool) within the bounds, as a float."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"{where} must be a number, not {describe(value)}")
        if not math.isfinite(value):
            self.fail(f"{where} must be finite, got {value}")
        number = float(value)
        if (low is not None and (number <= low if low_open else number < low)) or \
                (high is not None and (number >= high if high_open else number > high)):
            self.fail(f"{where} = {value} is outside {interval(low, high, low_open=low_open, high_open=high_open)}")
        return number

    def integer(self, where: str, value: Any, *, low: int | None = None, high: int | None = None,
                integral_float: bool = False) -> int:
        """An int (not a bool; with `integral_float`, also a float such as 5.0) within [low, high]."""
        if integral_float and isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{where} must be an integer, not {describe(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            self.fail(f"{where} = {value} is outside {interval(low, high)}")
        return value

    def string(self, where: str, value: Any, *, non_empty: bool = False, max_chars: int | None = None,
               fix: str = "") -> str:
        """A string (with `non_empty`, not blank); `fix` says what to write instead."""
        if not isinstance(value, str) or (non_empty and not value.strip()):
            self.fail(f"{where} must be a {'non-empty ' if non_empty else ''}string, not {describe(value)}"
                      + (f" ({fix})" if fix else ""))
        if max_chars is not None and len(value) > max_chars:
            self.fail(f"{where} is longer than {max_chars} characters")
        return value

    def choice(self, where: str, value: Any, choices: Iterable[Any]) -> Any:
        """`value` if it is one of `choices`, else the choices (and the closest one to a typo)."""
        options = list(choices)
        if value in options and not isinstance(value, bool):
            return value
        guess = closest(value, map(str, options)) if isinstance(value, str) else None
        hint = f" (did you mean {guess!r}?)" if guess else ""
        self.fail(f"{where} is {value!r}; it must be one of {', '.join(map(str, options))}{hint}")

    def boolean(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool):
            self.fail(f"{where} must be true or false, not {describe(value)}")
        return value
