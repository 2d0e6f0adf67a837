"""splitbed.host.tcpinfo: TCP_INFO read off real loopback sockets, and the kernel's restart-after-idle rule by
hand-computed cases (net/ipv4/tcp_output.c, tcp_cwnd_restart)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from splitbed.host.tcpinfo import (
    SocketInfo,
    TcpState,
    out_of_order_packets,
    parse_fields,
    read_state,
    try_read_state,
)


@pytest.fixture
def connected() -> Iterator[tuple[socket.socket, socket.socket]]:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    server.close()
    try:
        yield client, peer
    finally:
        client.close()
        peer.close()


def _exchange(sender: socket.socket, receiver: socket.socket, size: int) -> None:
    sender.sendall(bytes(size))
    left = size
    while left:
        left -= len(receiver.recv(min(left, 1 << 20)))
    receiver.sendall(b"k")  # a reply carries the last ACK back
    assert sender.recv(1) == b"k"


def test_state_of_a_real_connection(connected: tuple[socket.socket, socket.socket]) -> None:
    client, peer = connected
    _exchange(client, peer, 300_000)
    state = read_state(client)
    available = Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split()
    assert state.congestion_control in available
    assert state.ca_state == "open"
    assert state.cwnd_segments >= 10          # never below Linux's initial window after a loss-free transfer
    assert state.mss_bytes > 1000 and state.rto_ms >= 200
    assert state.unacked_segments == 0       # the reply came after every byte was read
    assert state.total_retrans == 0
    assert state.rtt_ms >= 0 and state.idle_ms < 10_000
    assert TcpState.from_dict(state.to_dict()) == state


def test_idle_time_grows_while_the_socket_sends_nothing(connected: tuple[socket.socket, socket.socket]) -> None:
    client, peer = connected
    _exchange(client, peer, 10_000)
    time.sleep(0.5)
    assert read_state(client).idle_ms >= 450  # jiffy resolution: at worst one 4 ms tick short of 500


def test_a_socket_without_tcp_info_gives_none() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert try_read_state(udp) is None
        info = SocketInfo(udp)
        assert info.read() is None and info.state(info.read()) is None


def test_one_reading_gives_what_the_separate_reads_give(connected: tuple[socket.socket, socket.socket]) -> None:
    """SocketInfo: the state and the out-of-order count from one TCP_INFO buffer (one unpack of every field),
    the congestion control's name read once, with the socket."""
    client, peer = connected
    _exchange(client, peer, 300_000)
    info = SocketInfo(client)
    raw = info.read()
    assert raw is not None
    state, separate = info.state(raw), read_state(client).to_dict()
    assert state is not None and set(state) == set(separate)
    assert {k: v for k, v in state.items() if k != "idle_ms"} == {k: v for k, v in separate.items() if k != "idle_ms"}
    assert 0 <= separate["idle_ms"] - state["idle_ms"] <= 1000  # the separate read came a little later
    assert TcpState.from_dict(state).to_dict() == state
    assert out_of_order_packets(client) == 0
    client.close()
    assert info.state(raw) == state  # decoded later, even once the socket is gone: the name was read with it


def _state(**changes: object) -> TcpState:
    base = dict(congestion_control="cubic", ca_state="open", cwnd_segments=80, ssthresh_segments=None,
                mss_bytes=1448, rtt_ms=33.0, rttvar_ms=2.0, min_rtt_ms=32.6, rto_ms=233.0, idle_ms=100.0,
                unacked_segments=0, total_retrans=0, peer_window_bytes=1 << 20)
    base.update(changes)
    return TcpState(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("idle_ms", "expected_cwnd"), [
    (100.0, 80),    # idle shorter than the RTO: untouched
    (233.0, 80),    # equal: the kernel needs strictly longer
    (300.0, 40),    # one RTO elapsed: halved once
    (500.0, 20),    # idle - RTO = 267 > 0, then 34 > 0: halved twice
    (10_000.0, 10), # down to min(initial window, cwnd), never below
])
def test_restart_after_idle_halves_per_rto(idle_ms: float, expected_cwnd: int) -> None:
    cwnd, ssthresh = _state(idle_ms=idle_ms).send_window_segments(slow_start_after_idle=True)
    assert cwnd == expected_cwnd
    assert ssthresh is None  # no loss yet: tcp_current_ssthresh() = max(infinite, 3/4 cwnd) stays infinite


@pytest.mark.parametrize(("ca_state", "expected"), [
    ("open", 60), ("disorder", 60), ("loss", 60),  # max(ssthresh, 3/4 x 80)
    ("cwr", 34), ("recovery", 34),                 # in a window reduction the kernel keeps ssthresh
])
def test_restart_raises_a_finite_threshold_to_three_quarters_of_the_window(ca_state: str, expected: int) -> None:
    state = _state(idle_ms=300.0, ssthresh_segments=34, ca_state=ca_state)
    assert state.send_window_segments(slow_start_after_idle=True) == (40, expected)
    high = _state(idle_ms=300.0, ssthresh_segments=70)  # already above 3/4 cwnd: unchanged
    assert high.send_window_segments(slow_start_after_idle=True) == (40, 70)


@pytest.mark.parametrize("changes", [
    {"congestion_control": "bbr"},   # own control loop: Linux skips the restart
    {"unacked_segments": 3},         # data in flight: not idle
])
def test_no_restart_when_the_kernel_would_not(changes: dict[str, object]) -> None:
    assert _state(idle_ms=5_000.0, **changes).send_window_segments(slow_start_after_idle=True) == (80, None)


def test_no_restart_when_the_sysctl_is_off() -> None:
    assert _state(idle_ms=5_000.0).send_window_segments(slow_start_after_idle=False) == (80, None)


def test_a_small_window_is_not_raised_to_the_initial_one() -> None:
    assert _state(cwnd_segments=4, idle_ms=5_000.0).send_window_segments(slow_start_after_idle=True)[0] == 4


def test_infinite_ssthresh_reads_as_none() -> None:
    fields = dict(ca_state=0, rto_us=204_000, snd_mss=1448, unacked=0, last_data_sent_ms=12, rtt_us=150,
                  rttvar_us=50, snd_ssthresh=0x7FFFFFFF, snd_cwnd=10, total_retrans=0, min_rtt_us=20, snd_wnd=None)
    state = parse_fields(fields, "cubic")
    assert state.ssthresh_segments is None and state.peer_window_bytes is None and state.rto_ms == 204.0


@pytest.mark.parametrize(("field", "value", "message"), [
    ("cwnd_segments", True, "must be an integer"),
    ("cwnd_segments", 1.5, "must be an integer"),
    ("rtt_ms", "fast", "must be a number"),
])
def test_from_dict_rejects_mistyped_fields(field: str, value: object, message: str) -> None:
    data = _state().to_dict()
    data[field] = value
    with pytest.raises(ValueError, match=message):
        TcpState.from_dict(data)


def test_from_dict_names_a_missing_field() -> None:
    data = _state().to_dict()
    del data["idle_ms"]
    with pytest.raises(ValueError, match="idle_ms"):
        TcpState.from_dict(data)

