"""netem.fields: the one style every strict validator speaks (profiles, scenarios, jobs, policies, budgets, the
suite matrix, the model registry, weights): where, what was found, what is allowed, the closest name to a typo."""

from __future__ import annotations

import math

import pytest

from netem.fields import Checker, closest, interval


class Bad(ValueError):
    pass


check = Checker(Bad)


def test_numbers_name_the_value_and_the_interval_and_refuse_bools_and_nan() -> None:
    assert check.number("x", 3, low=0, high=5) == 3.0 and isinstance(check.number("x", 3), float)
    with pytest.raises(Bad, match=r"^policy.alpha = 0 is outside \(0, 1\]$"):
        check.number("policy.alpha", 0, low=0, high=1, low_open=True)
    with pytest.raises(Bad, match=r"^d = 7.5 is outside \[0, 5\]$"):
        check.number("d", 7.5, low=0, high=5)
    with pytest.raises(Bad, match=r"^d must be a number, not bool True$"):
        check.number("d", True)
    with pytest.raises(Bad, match=r"^d must be a number, not str '4ms'$"):
        check.number("d", "4ms")
    with pytest.raises(Bad, match="must be finite"):
        check.number("d", math.nan)
    with pytest.raises(Bad, match=r"is outside \(0, inf\)"):
        check.number("b", -1, low=0, low_open=True)


def test_integers_refuse_floats_unless_integral_floats_are_allowed() -> None:
    assert check.integer("n", 4, low=1, high=4) == 4
    assert check.integer("n", 5.0, integral_float=True) == 5
    with pytest.raises(Bad, match=r"^n must be an integer, not float 5.0$"):
        check.integer("n", 5.0)
    with pytest.raises(Bad, match=r"^n = 0 is outside \[1, 100\]$"):
        check.integer("n", 0, low=1, high=100)
    with pytest.raises(Bad, match="not bool False"):
        check.integer("n", False)


def test_unknown_keys_list_the_allowed_ones_and_the_likely_typo() -> None:
    check.keys("[uplink]", {"delay_ms": 1}, {"delay_ms", "rate_mbit"})
    with pytest.raises(Bad) as caught:
        check.keys("[uplink]", {"dealy_ms": 1}, {"delay_ms", "rate_mbit"})
    assert str(caught.value) == ("[uplink]: unknown key(s) ['dealy_ms']; allowed: delay_ms, rate_mbit "
                                 "(did you mean 'delay_ms'?)")
    with pytest.raises(Bad) as caught:
        check.keys("job", {"modle": 1, "zzz": 2}, {"model"}, noun="job fields")
    assert str(caught.value) == "job: unknown job fields ['modle', 'zzz']; allowed: model (did you mean 'model' for 'modle'?)"


def test_choices_required_keys_strings_tables_and_booleans() -> None:
    assert check.choice("kind", "tlv", ("tlv", "json-baseline")) == "tlv"
    with pytest.raises(Bad, match=r"^kind is 'tvl'; it must be one of tlv, json-baseline \(did you mean 'tlv'\?\)$"):
        check.choice("kind", "tvl", ("tlv", "json-baseline"))
    with pytest.raises(Bad, match=r"^flag is True; it must be one of 1, 2$"):
        check.choice("flag", True, (1, 2))  # True == 1 in Python, not in a user's file
    with pytest.raises(Bad, match=r"^profile is missing the required key 'source'$"):
        check.required("profile", {"name": "x"}, ("name", "source"))
    with pytest.raises(Bad, match=r"^s must be a non-empty string, not str ' ' \(cite the source\)$"):
        check.string("s", " ", non_empty=True, fix="cite the source")
    with pytest.raises(Bad, match=r"^\[w\] must be a table, not list$"):
        check.table("[w]", [1])
    with pytest.raises(Bad, match="must be true or false, not int 1"):
        check.boolean("default", 1)


def test_interval_and_closest() -> None:
    assert interval(0, 1) == "[0, 1]" and interval(0, None, low_open=True) == "(0, inf)"
    assert interval(None, 5) == "(-inf, 5]"
    assert closest("queue_packts", ["queue_packets", "queue_bytes"]) == "queue_packets"
    assert closest("colour", ["name", "source"]) is None
