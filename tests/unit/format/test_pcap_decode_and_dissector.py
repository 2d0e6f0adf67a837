"""Units inside packet captures: `splitbed format decode FILE.pcap` and the Wireshark Lua dissector under tshark.

The golden session capture (fixtures/captures/session.pcap, a real session on the testbed: make_session_pcap.py)
and pcaps built here from the format's golden vectors are read three ways, which must agree unit for unit:
- `splitbed format decode` (splitbed.traffic: its own reassembly, then splitbed.format.Decoder);
- the plain stream decoder fed the bytes netem.flows.tcp_stream reassembles (a separate reassembler);
- tshark with the shipped dissector (splitbed/data/wireshark/splitbed.lua): every unit's type and length in each
  direction, every AIPS's fields and every data unit's tensor entries.
No root needed: tshark reads files. tshark missing: skipped with the fix locally, a failure on CI."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap
from typer.testing import CliRunner

from netem.doctor import is_ci
from netem.flows import tcp_stream
from splitbed.cli import app
from splitbed.format import Decoder
from splitbed.sweep.capture import snap_pcap
from splitbed.traffic.pcapdecode import dissector_path, unit_streams
from splitbed.traffic.streams import walk_units

ROOT = Path(__file__).resolve().parents[3]
SESSION = ROOT / "fixtures" / "captures" / "session.pcap"
GOLDEN = ROOT / "fixtures" / "format" / "golden"
RUNNER = CliRunner()
TSHARK_TIMEOUT_S = 120


def _tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        message = "tshark is not installed (scripts/setup.sh installs it: apt-get install tshark)"
        if is_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def _fields(pcap: Path, *fields: str) -> list[dict[str, list[str]]]:
    """Per frame that carries splitbed units, each field's values in order (tshark -T fields)."""
    argv = [_tshark(), "-n", "-X", f"lua_script:{dissector_path()}", "-r", str(pcap), "-Y", "splitbed", "-T",
            "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-E", "separator=\t"]
    for name in ("ip.src", "tcp.srcport", *fields):
        argv += ["-e", name]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TSHARK_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = []
    for line in result.stdout.splitlines():
        cells = line.split("\t")
        rows.append({name: (cell.split("|") if cell else []) for name, cell in zip(("src", "sport", *fields), cells,
                                                                                  strict=True)})
    return rows


def _tshark_units(pcap: Path) -> dict[str, list[tuple[int, int]]]:
    """(type, value length) of every unit tshark dissected, per sending endpoint, in order."""
    units: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for row in _fields(pcap, "splitbed.type", "splitbed.length"):
        sender = f"{row['src'][0]}:{row['sport'][0]}"
        units[sender] += [(int(t, 16), int(n)) for t, n in zip(row["splitbed.type"], row["splitbed.length"],
                                                              strict=True)]
    return dict(units)


def _python_units(pcap: Path) -> dict[str, list[tuple[int, int]]]:
    units: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for item in unit_streams(pcap):
        if item.tlv:
            sender = item.label.split(" -> ")[0]
            units[sender] += [(kind, size - 5) for _, kind, size in walk_units(item.stream)]
    return dict(units)


def _decode_json(pcap: Path) -> list[dict[str, Any]]:
    result = RUNNER.invoke(app, ["format", "decode", "--json", str(pcap)])
    assert result.exit_code in (0, 1), result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_decode_finds_the_sessions_streams_and_names_their_units() -> None:
    events = _decode_json(SESSION)
    streams = [e for e in events if e["event"] == "Stream"]
    assert len(streams) == 4 and all(s["tlv"] and s["note"] is None for s in streams)  # two sessions, both ways
    uplink = streams[2]["stream"]  # the second session: the jobs of make_session_pcap.py
    mine = [e for e in events if e.get("stream") == uplink and e["event"] != "Stream"]
    activated = [e for e in mine if e["event"] == "AipsActivated"]
    assert [(a["aips_id"], a["partition_id"], a["tensors"][0]["profile"]) for a in activated] == [
        (1, 14, 0), (2, 14, 4), (3, 14, 3)]  # none, zstd, int8: a new AIPS for each compression change
    assert all(a["tensors"][0]["shape"] == [1, 1000] and a["tensors"][0]["dtype"] == "float32" for a in activated)
    decoded = [e for e in mine if e["event"] == "TensorsDecoded"]
    assert [d["payload_sizes"] for d in decoded] == [[4000], [4000], [3760], [1000]]
    assert all(d["decoded_sizes"] == [4000] for d in decoded)
    names = [e["name"] for e in mine if e["event"] == "UnknownUnit"]
    assert names == ["HELLO"] + ["CLOCK_PING"] * 8 + ["SELECT", "PREPARE", "RESET"]
    downlink = [e for e in events if e.get("stream") == streams[3]["stream"] and e["event"] == "UnknownUnit"]
    assert [e["name"] for e in downlink].count("RESULT") == 4
    hello = next(e for e in mine if e.get("name") == "HELLO")
    assert hello["control"].startswith('{"protocol_version":1,"boot_id":')
    # the same events as the plain stream decoder on bytes reassembled by netem.flows
    server = json.loads((SESSION.with_suffix(".json")).read_text())["server"]
    client, sport = uplink.split(" -> ")[0].rsplit(":", 1)
    stream = tcp_stream(SESSION, client, int(sport), server["addr"], server["port"])
    decoder = Decoder()
    decoder.feed(stream)
    decoder.end_of_stream()
    plain = decoder.events()
    assert [type(e).__name__ for e in plain] == [e["event"] for e in mine]


def test_decode_says_when_a_capture_holds_only_headers(tmp_path: Path) -> None:
    snapped = tmp_path / "headers.pcap"
    snap_pcap(SESSION, snapped, 80)
    streams = [e for e in _decode_json(snapped) if e["event"] == "Stream"]
    assert streams and all("only the start of each frame" in (s["note"] or "") for s in streams if s["bytes"] > 0)


def test_the_dissector_reads_every_unit_of_the_golden_session_as_the_python_decoder_does() -> None:
    assert _tshark_units(SESSION) == _python_units(SESSION)


def test_the_dissector_shows_the_aips_and_data_unit_fields() -> None:
    rows = _fields(SESSION, "splitbed.aips.id", "splitbed.aips.partition_id", "splitbed.tensor.dtype",
                   "splitbed.tensor.shape", "splitbed.data.aips_id", "splitbed.tensor.payload_length",
                   "splitbed.tensor.inferred_length", "splitbed.tensor.int8_zero_point", "_ws.expert")
    aips = [(int(i), int(p)) for r in rows for i, p in zip(r["splitbed.aips.id"], r["splitbed.aips.partition_id"],
                                                           strict=True)]
    assert aips == [(1, 14), (2, 14), (3, 14)]
    assert {s for r in rows for s in r["splitbed.tensor.shape"]} == {"[1, 1000]"}
    assert {d for r in rows for d in r["splitbed.tensor.dtype"]} == {"1"}
    data = [int(a) for r in rows for a in r["splitbed.data.aips_id"]]
    assert data == [1, 1, 2, 3]
    assert [int(n) for r in rows for n in r["splitbed.tensor.payload_length"]] == [4000, 4000, 3760, 1000]
    assert {int(n) for r in rows for n in r["splitbed.tensor.inferred_length"]} == {4000}
    assert len([z for r in rows for z in r["splitbed.tensor.int8_zero_point"]]) == 1
    assert not [e for r in rows for e in r["_ws.expert"]], "the dissector flagged a valid capture"


def _pcap_of(stream: bytes, path: Path, mss: int = 1000) -> Path:
    """One TCP connection (SYN, then `stream` in segments of `mss`) from 198.18.0.1:40000 to 198.18.0.2:47000 (no dissector claims that port)."""
    isn = 1000

    def segment(seq: int, data: bytes = b"", flags: str = "PA") -> Ether:
        packet = Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / TCP(sport=40000, dport=47000, seq=seq,
                                                                        flags=flags, ack=1)
        return packet / Raw(data) if data else packet

    packets = [segment(isn, flags="S")]
    packets += [segment(isn + 1 + o, stream[o:o + mss]) for o in range(0, len(stream), mss)]
    for index, packet in enumerate(packets):
        packet.time = 1.0 + index * 0.001
    wrpcap(str(path), packets)
    return path


@pytest.mark.parametrize("vector", ["single_raw", "multi_tensor", "all_dtypes", "profile_int8", "profile_zstd",
                                    "lifetime", "unknown_type"])
def test_the_dissector_reads_the_golden_vectors_in_a_capture(vector: str, tmp_path: Path) -> None:
    path = GOLDEN / f"{vector}.bin"
    if not path.exists():
        pytest.skip(f"no golden vector {vector}")
    stream = path.read_bytes()
    pcap = _pcap_of(stream, tmp_path / f"{vector}.pcap")
    assert _tshark_units(pcap) == {"198.18.0.1:40000": [(k, s - 5) for _, k, s in walk_units(stream)]}
    # every AIPS's tensors as the vector's own description lists them (the invalid ones of `lifetime` included:
    # the dissector shows what is on the wire, the decoder judges it)
    rows = _fields(pcap, "splitbed.tensor.id", "splitbed.tensor.shape")
    described = [(int(i), s) for r in rows for i, s in zip(r["splitbed.tensor.id"], r["splitbed.tensor.shape"],
                                                           strict=True)]
    expected = json.loads(path.with_suffix(".json").read_text())
    wanted = [(t["tensor_id"], "[" + ", ".join(str(d) for d in t["shape"]) + "]")
              for e in expected["events"] if e["event"] == "AipsActivated" for t in e["aips"]["tensors"]]
    assert all(item in described for item in wanted), (wanted, described)


def test_a_malformed_unit_is_flagged_and_other_traffic_is_left_alone(tmp_path: Path) -> None:
    aips = bytes.fromhex("01" "00000010" "01" "0001" "0003" "0001" "0000" "01" "02" "00000001" "00000002")  # cut
    pcap = _pcap_of(aips + struct.pack(">BI", 2, 4) + b"\x00\x01\x00\x01", tmp_path / "bad.pcap")
    rows = _fields(pcap, "_ws.expert.message")
    assert any("cut short" in m for r in rows for m in r["_ws.expert.message"]), rows
    other = _pcap_of(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 50, tmp_path / "http.pcap")
    assert _fields(other) == []
