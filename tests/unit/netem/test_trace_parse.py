"""Trace parsers: the two formats, their caps, and an error naming file and line for every malformed input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netem import trace as trace_module
from netem.errors import TraceError
from netem.trace import (
    MahimahiTrace,
    ThroughputTrace,
    builtin_trace_dir,
    format_throughput,
    load,
    load_mahimahi,
    load_throughput,
    parse_mahimahi,
    parse_throughput,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_mahimahi_file_gives_opportunities_period_and_rate(tmp_path: Path) -> None:
    path = write(tmp_path, "link.up", "1\n1\n2\n4\n")
    trace = load_mahimahi(path)
    assert trace.opportunities_ms == (1, 1, 2, 4) and trace.period_ms == 4
    assert trace.mean_rate_mbit() == pytest.approx(4 * 1500 * 8 / 0.004 / 1e6)  # 12 Mbit/s


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1\n\n2\n", ":2: empty line"),
        ("1\n2.5\n", ":2: not a non-negative integer"),
        ("1\n-3\n", ":2: not a non-negative integer"),
        ("5\n3\n", ":2: 3 ms is before the previous line's 5 ms"),
        ("0\n0\n", "last timestamp must be > 0"),
        ("", "at least one timestamp"),
        ("1\n9999999999999\n", "implausibly large"),
        ("1\n\u0662\n", "not a non-negative integer"),  # Arabic-Indic digit: isdigit() but not ASCII
    ],
)
def test_malformed_mahimahi_lines_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "bad.up", text)
    with pytest.raises(TraceError, match="bad.up") as caught:
        load_mahimahi(path)
    assert message in str(caught.value)


def test_throughput_file_with_interval_header_and_comments(tmp_path: Path) -> None:
    path = write(tmp_path, "drive.tput", "# a comment\n# interval_ms: 500\n\n10\n0\n 20.5 \n")
    trace = load_throughput(path)
    assert trace == ThroughputTrace((10.0, 0.0, 20.5), 500, str(path))
    assert trace.period_ms == 1500 and trace.mean_rate_mbit() == pytest.approx(30.5 / 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10\nfast\n", ":2: not a number"),
        ("10\n-1\n", ":2: the Mbit/s value must be finite"),
        ("nan\n", ":1: the Mbit/s value must be finite"),
        ("inf\n", ":1: the Mbit/s value must be finite"),
        ("10\n# interval_ms: 100\n", ":2: interval_ms must come before the first value"),
        ("# interval_ms: 0\n1\n", "interval_ms 0 is outside"),
        ("# interval_ms: soon\n1\n", "is not an integer"),
        ("0\n0\n", "every value is 0 Mbit/s"),
        ("# only comments\n", "at least one value"),
        ("1 2\n", ":1: not a number"),
        ("1" * 40 + "\n", "not a single Mbit/s value"),
    ],
)
def test_malformed_throughput_lines_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "bad.tput", text)
    with pytest.raises(TraceError, match="bad.tput") as caught:
        load_throughput(path)
    assert message in str(caught.value)


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.up"
    with open(path, "wb") as handle:
        handle.truncate(trace_module.MAX_TRACE_FILE_BYTES + 1)  # sparse: nothing is written or read
    with pytest.raises(TraceError, match="larger than the"):
        load_mahimahi(path)


def test_entry_count_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_module, "MAX_TRACE_ENTRIES", 3)
    with pytest.raises(TraceError, match="more than 3 delivery opportunities"):
        parse_mahimahi(["1", "2", "3", "4"], "capped")
    with pytest.raises(TraceError, match="more than 3 intervals"):
        parse_throughput(["1", "2", "3", "4"], "capped")


def test_missing_binary_and_directory_inputs_are_clear(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot open trace file"):
        load_mahimahi(tmp_path / "nope.up")
    with pytest.raises(TraceError, match="not a regular file"):
        load_throughput(tmp_path)
    binary = tmp_path / "bin.tput"
    binary.write_bytes(b"10\n\xff\xfe\n")
    with pytest.raises(TraceError, match="not UTF-8"):
        load_throughput(binary)
    with pytest.raises(TraceError, match="unknown trace kind"):
        load(binary, "pcap")


def test_format_throughput_round_trips() -> None:
    text = format_throughput([1.5, 0.0, 300.25], 250, "made by a test\nsecond line")
    trace = parse_throughput(text.splitlines())
    assert trace.mbit == (1.5, 0.0, 300.25) and trace.interval_ms == 250


def test_in_memory_traces_are_validated() -> None:
    with pytest.raises(TraceError, match="decreases"):
        MahimahiTrace((3, 1, 5))
    with pytest.raises(TraceError, match="must be finite"):
        ThroughputTrace((1.0, float("nan")))


def test_shipped_traces_parse() -> None:
    names = sorted(os.listdir(builtin_trace_dir()))
    assert "mmwave-driving.tput" in names and "example.mahi" in names
    assert load(builtin_trace_dir() / "example.mahi", "mahimahi").mean_rate_mbit() == pytest.approx(30.0)
    assert len(load_throughput(builtin_trace_dir() / "mmwave-driving.tput").mbit) == 1800


@pytest.mark.parametrize("kind", ["mahimahi", "throughput"])
def test_errors_never_quote_the_file(tmp_path: Path, kind: str) -> None:
    """A trace path may name any file (a password file, a key): no error message may carry its content."""
    secret = "root:$6$Zx9SECRETsalt$hashhashhash:19000:0:99999:7:::"
    path = tmp_path / "shadow"
    for text in (secret + "\n", "12\n" + secret + "\n", "# interval_ms: " + secret + "\n1\n", "SECRET\n"):
        path.write_text(text)
        with pytest.raises(TraceError) as caught:
            load(path, kind)
        message = str(caught.value).replace(str(path), "<path>")
        assert "SECRET" not in message and "root" not in message and "hash" not in message, message
