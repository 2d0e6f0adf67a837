"""LinkProfile: built-in files load and cite sources, dict/JSON round trips, and bad input gets specific errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from netem.errors import NetemError, ProfileError, ProfileNotFoundError
from netem.profile import (
    BUILTIN_DIR,
    DEFAULT_QUEUE_PACKETS,
    DirectionProfile,
    GilbertElliott,
    LinkProfile,
    RandomLoss,
    TraceRef,
    builtin_names,
    builtin_profiles,
)

REQUIRED_BUILTINS = {"ideal", "5g-embb", "5g-split-ai", "5g-mmwave-static", "lte", "cell-edge", "5g-mmwave-driving"}


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


MINIMAL = 'name = "t"\ndescription = "d"\nsource = "s"\n'


def test_all_required_builtins_exist_and_cite_a_source() -> None:
    assert REQUIRED_BUILTINS <= set(builtin_names())
    for profile in builtin_profiles():
        assert profile.name == Path(BUILTIN_DIR / f"{profile.name}.toml").stem
        assert len(profile.source) > 20, profile.name


def test_builtin_figures_match_design_numbers() -> None:
    # The numbers the sources cite; a wrong figure here puts a wrong figure in every report. Rates count frames:
    # a payload (TCP) figure is x 1514/1448 on the link, a layer-3 (IP) figure x 1514/1500 (docs/PROFILES.md).
    embb = LinkProfile.load("5g-embb")
    assert embb.uplink.rate_mbit == pytest.approx(50.0 * 1514 / 1500, abs=1e-3)
    assert embb.downlink.rate_mbit == pytest.approx(100.0 * 1514 / 1500, abs=1e-3)
    assert embb.uplink.delay_ms == 4.0
    assert embb.expected_tcp is not None and embb.expected_tcp.uplink_mbit == pytest.approx(50.0 * 1448 / 1500, abs=1e-3)
    assert LinkProfile.load("5g-split-ai").uplink.rate_mbit == pytest.approx(144.0 * 1514 / 1448, abs=1e-3)
    static = LinkProfile.load("5g-mmwave-static")
    assert static.uplink.rate_mbit == pytest.approx(142.0 * 1514 / 1448, abs=1e-3)
    assert static.uplink.delay_ms + static.downlink.delay_ms == pytest.approx(13.9)
    lte = LinkProfile.load("lte")
    assert lte.uplink.rate_mbit == pytest.approx(46.0 * 1514 / 1448, abs=1e-3)
    for name, claim in (("5g-split-ai", 144.0), ("5g-mmwave-static", 142.0), ("lte", 46.0)):
        expected = LinkProfile.load(name).expected_tcp
        assert expected is not None and expected.uplink_mbit == claim
    assert lte.uplink.delay_ms + lte.downlink.delay_ms == pytest.approx(32.6)
    driving = LinkProfile.load("5g-mmwave-driving").uplink
    assert driving.trace is not None and driving.trace.kind == "throughput"
    assert driving.trace.path.endswith("netem/traces/mmwave-driving.tput") and Path(driving.trace.path).is_absolute()
    edge = LinkProfile.load("cell-edge").uplink
    assert edge.loss is not None and 0.0005 < edge.loss.mean_loss < 0.002 and edge.jitter_ms > 0
    ideal = LinkProfile.load("ideal")
    assert not ideal.uplink.is_impaired and not ideal.downlink.is_impaired


def test_directions_get_distinct_default_seeds() -> None:
    profile = LinkProfile.from_dict({"name": "x", "description": "d", "source": "s", "seed": 7,
                                     "uplink": {}, "downlink": {"seed": 99}})
    assert profile.uplink.seed == 7 and profile.downlink.seed == 99
    profile = LinkProfile.from_dict({"name": "x", "description": "d", "source": "s", "uplink": {}, "downlink": {}})
    assert profile.uplink.seed != profile.downlink.seed


@pytest.mark.parametrize("name", sorted(REQUIRED_BUILTINS))
def test_json_round_trip_is_exact(name: str) -> None:
    profile = LinkProfile.load(name)
    wire = json.dumps(profile.to_dict())
    assert LinkProfile.from_dict(json.loads(wire)) == profile


def test_load_by_path_and_relative_trace(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[uplink]\ndelay_ms = 3\ntrace = {path = "tr/a.tput", kind = "throughput"}\n'
                 "[downlink]\nrate_mbit = 10\n")
    profile = LinkProfile.load(str(path))
    assert profile.uplink.trace == TraceRef(path=str((tmp_path / "tr/a.tput").resolve()), kind="throughput")
    assert profile.downlink.rate_mbit == 10.0 and profile.uplink.rate_mbit is None


def test_queue_default() -> None:
    assert DirectionProfile().effective_queue_packets == DEFAULT_QUEUE_PACKETS
    assert DirectionProfile(queue_bytes=10_000).effective_queue_packets is None
    assert DirectionProfile(queue_packets=5).effective_queue_packets == 5


def test_gilbert_elliott_steady_state() -> None:
    model = GilbertElliott(p=0.01, r=0.3, h=0.001, k=0.3)
    bad = 0.01 / 0.31
    assert model.bad_state_share == pytest.approx(bad)
    assert model.mean_loss == pytest.approx((1 - bad) * 0.001 + bad * 0.3)
    assert GilbertElliott(p=0, r=0).mean_loss == 0
    assert RandomLoss(0.25).mean_loss == 0.25


@pytest.mark.parametrize(
    ("uplink", "message"),
    [
        ("delay_ms = -1", "delay_ms = -1.0 is outside"),
        ("rate_mbit = 0", "rate_mbit = 0.0 is outside (0"),
        ("rate_mbit = 1e9", "rate_mbit"),
        ("jitter_ms = nan", "jitter_ms must be finite"),
        ('jitter_distribution = "cauchy"', "jitter_distribution is 'cauchy'"),
        ('queue_discipline = "red"', "queue_discipline is 'red'"),
        ("queue_packets = 0", "queue_packets = 0 is outside"),
        ("queue_packets = 10_000_000", "queue_packets = 10000000 is outside"),
        ("queue_bytes = 100", "queue_bytes = 100 is outside"),
        ('delay_ms = "4ms"', "delay_ms must be a number, not str"),
        ("delay_ms = true", "delay_ms must be a number, not bool"),
        ("seed = -3", "seed = -3 is outside"),
        ("dealy_ms = 4", "unknown key(s) 'dealy_ms'"),
        ('loss = {model = "random", p = 1.5}', "loss.p = 1.5 is outside [0, 1]"),
        ('loss = {model = "random"}', "random loss needs p"),
        ('loss = {model = "random", p = 0.1, q = 2}', "unknown key(s) 'q'"),
        ('loss = {model = "gilbert", p = 0.1}', "model is 'gilbert'"),
        ('loss = {model = "gilbert-elliott", p = 0.1, r = 0}', "traps the Gilbert-Elliott chain"),
        ('loss = {model = "gilbert-elliott", p = 0.1}', "gilbert-elliott loss needs r"),
        ('loss = {model = "gilbert-elliott", p = 0.1, r = 0.2, k = -0.1}', "loss.k = -0.1 is outside"),
        ('loss = 0.1', "must be a table"),
        ('trace = {path = "a", kind = "pcap"}', "trace.kind is 'pcap'"),
        ('trace = {path = "a"}', "needs 'kind'"),
        ('rate_mbit = 5\ntrace = {path = "a", kind = "mahimahi"}', "leave rate_mbit unset"),
    ],
)
def test_bad_direction_values_are_rejected_with_specific_message(tmp_path: Path, uplink: str, message: str) -> None:
    path = write(tmp_path, MINIMAL + f"[uplink]\n{uplink}\n[downlink]\n")
    with pytest.raises(ProfileError) as info:
        LinkProfile.load(path)
    assert message in str(info.value)
    assert "uplink" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "t"\nsource = "s"\n[uplink]\n[downlink]\n', "missing the required key 'description'"),
        (MINIMAL + "[uplink]\n", "missing the [downlink] table"),
        (MINIMAL + "colour = 1\n[uplink]\n[downlink]\n", "unknown key(s) 'colour'"),
        ('name = "Bad Name"\ndescription = "d"\nsource = "s"\n[uplink]\n[downlink]\n', "profile name 'Bad Name'"),
        ('name = "t"\ndescription = ""\nsource = "s"\n[uplink]\n[downlink]\n', "description must be a non-empty"),
        (MINIMAL + "[uplink\n", "not valid TOML"),
        (MINIMAL + "uplink = 3\n[downlink]\n", "[uplink] must be a table"),
    ],
)
def test_bad_profile_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        LinkProfile.load(write(tmp_path, text))
    assert message in str(info.value)


def test_not_found_lists_builtins_and_is_a_netem_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileNotFoundError) as info:
        LinkProfile.load("no-such-profile")
    assert "5g-embb" in str(info.value)
    assert isinstance(info.value, NetemError)
    with pytest.raises(ProfileNotFoundError, match="does not exist"):
        LinkProfile.load(tmp_path / "missing.toml")


def test_oversized_and_binary_files_are_refused(tmp_path: Path) -> None:
    big = write(tmp_path, MINIMAL + "#" * (1 << 20) + "\n[uplink]\n[downlink]\n", "big.toml")
    with pytest.raises(ProfileError, match="the limit is"):
        LinkProfile.load(big)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ProfileError, match="not UTF-8"):
        LinkProfile.load(binary)


def test_frozen_and_validated_on_replace() -> None:
    profile = LinkProfile.load("5g-embb")
    with pytest.raises(AttributeError):
        profile.name = "x"  # type: ignore[misc]
    slower = profile.replace(uplink=DirectionProfile(rate_mbit=10.0, delay_ms=4.0))
    assert slower.uplink.rate_mbit == 10.0 and slower.downlink == profile.downlink
    with pytest.raises(ProfileError):
        profile.replace(name="UPPER")
    assert profile.direction("uplink") is profile.uplink
    with pytest.raises(ProfileError):
        profile.direction("sideways")


def test_python_construction_checks_types() -> None:
    with pytest.raises(ProfileError, match="loss must be"):
        DirectionProfile(loss=0.1)  # type: ignore[arg-type]
    with pytest.raises(ProfileError, match="queue_packets must be an integer"):
        DirectionProfile(queue_packets=1.5)  # type: ignore[arg-type]
    assert math.isclose(DirectionProfile(delay_ms=3).delay_ms, 3.0)


def test_builtin_traces_exist_and_parse() -> None:
    from netem.trace import load

    traced = [(p.name, d.trace) for p in builtin_profiles() for d in (p.uplink, p.downlink) if d.trace is not None]
    assert traced, "at least the driving profile is trace-driven"
    for name, trace in traced:
        assert Path(trace.path).is_file(), f"{name}: {trace.path} is missing"
        parsed = load(trace.path, trace.kind)
        assert parsed.period_ms > 0
