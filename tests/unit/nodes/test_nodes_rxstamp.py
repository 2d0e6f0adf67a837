"""Kernel receive stamps on real loopback TCP: they tell when data arrived, whenever the reader got to it."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from splitbed.nodes import rxstamp
from splitbed.nodes.clock import now_ns
from splitbed.nodes.errors import ProtocolError
from splitbed.nodes.messages import end_reason, kernel_stamp
from splitbed.nodes.protocol import MsgType, encode_control
from splitbed.nodes.wire import ControlReader, TcpTransport

READ_DELAY_S = 0.05
STEP_ATTEMPTS = 5


def without_wall_clock_step(receiver: socket.socket, body: Callable[[], None]) -> None:
    """Run `body`; an attempt that fails while the wall clock was stepped (this VM's guest clock is at times
    stepped by 0.5 ms every 100 ms, and kernel stamps are CLOCK_REALTIME) is discarded and run again. A failure
    on a steady clock fails; a stepped clock in every attempt skips, saying so."""
    for _ in range(STEP_ATTEMPTS):
        _drain(receiver)
        before = rxstamp.wall_offset_ns()
        try:
            body()
            return
        except AssertionError:
            if abs(rxstamp.wall_offset_ns() - before) <= rxstamp.STEP_TOLERANCE_NS:
                raise
    pytest.skip(f"the wall clock was stepped during each of {STEP_ATTEMPTS} attempts: stamps cannot be checked now")


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair whose receiving end gets kernel stamps. Linux switches packet stamping on for the first
    socket that asks with deferred work, so the first packets after that may come unstamped (a node's
    configuration stage covers this): exchange bytes until one comes back stamped (at most 2 s)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            assert rxstamp.enable(accepted)
            deadline = time.monotonic() + 2
            while True:
                client.sendall(b"w")
                _, _, stamp = rxstamp.recv_into(accepted, bytearray(16), True)
                if stamp is not None:
                    break
                assert time.monotonic() < deadline, "the kernel never stamped received data"
                time.sleep(0.01)
            yield client, accepted


def test_a_late_read_still_gets_the_arrival_time(pair: tuple[socket.socket, socket.socket]) -> None:
    """The data waits READ_DELAY_S in the socket: the read is that much later than the kernel's stamp, which
    lies between the send and the read."""
    client, accepted = pair

    def attempt() -> None:
        before_send = now_ns()
        client.sendall(b"x" * 1000)
        time.sleep(READ_DELAY_S)
        buf = bytearray(4096)
        n, t_read, t_kernel = rxstamp.recv_into(accepted, buf, True)
        assert n == 1000
        assert t_kernel is not None
        assert before_send <= t_kernel <= t_read
        assert t_read - t_kernel >= READ_DELAY_S * 1e9 * 0.9  # the wait is seen (sleep never returns early)

    without_wall_clock_step(accepted, attempt)


def test_the_stamp_is_of_the_last_packet_read(pair: tuple[socket.socket, socket.socket]) -> None:
    """Two sends READ_DELAY_S apart, read in one call: the stamp is the second one's arrival."""
    client, accepted = pair

    def attempt() -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.sendall(b"a" * 100)
        time.sleep(READ_DELAY_S)
        second_send = now_ns()
        client.sendall(b"b" * 100)
        time.sleep(0.05)
        buf = bytearray(4096)
        n, t_read, t_kernel = rxstamp.recv_into(accepted, buf, True)
        assert n == 200
        assert t_kernel is not None and second_send <= t_kernel <= t_read

    without_wall_clock_step(accepted, attempt)


def test_a_unit_read_together_with_the_next_one_gets_no_stamp(pair: tuple[socket.socket, socket.socket]) -> None:
    """A RESULT and, READ_DELAY_S later, a CHECKSUM, read in one recv: the stamp (the CHECKSUM's arrival) is not
    the RESULT's, so the RESULT gets none (the record then ends the downlink at the read) and the CHECKSUM, whose
    last byte ends the read, gets it. Alone, a RESULT gets its own arrival."""
    client, accepted = pair

    def attempt() -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = ControlReader(accepted)
        client.sendall(encode_control(MsgType.RESULT, {"after_units": 1}))
        time.sleep(READ_DELAY_S)
        second_send = now_ns()
        client.sendall(encode_control(MsgType.CHECKSUM, {"after_units": 1}))
        time.sleep(0.05)
        result, _, t_read = reader.read(timeout_s=5)
        assert result.unit_type == MsgType.RESULT and reader.kernel_ns is None
        assert reader.no_stamp_reason == rxstamp.READ_CONTINUED
        checksum, _, t_read_2 = reader.read(timeout_s=5)
        assert checksum.unit_type == MsgType.CHECKSUM and t_read_2 == t_read  # the same recv
        assert reader.kernel_ns is not None and second_send <= reader.kernel_ns <= t_read
        assert reader.no_stamp_reason is None
        before_send = now_ns()
        client.sendall(encode_control(MsgType.RESULT, {"after_units": 2}))
        time.sleep(0.05)
        alone, _, t_read_3 = reader.read(timeout_s=5)
        assert alone.unit_type == MsgType.RESULT
        assert reader.kernel_ns is not None and before_send <= reader.kernel_ns <= t_read_3

    without_wall_clock_step(accepted, attempt)


def test_a_leading_result_read_with_its_rest_gets_the_rests_stamp_as_a_bound(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """A split RESULT (docs/PROTOCOL.md 3.6): its leading unit and, READ_DELAY_S later, the RESULT_REST, both sent
    before the local node reads. One recv returns both, and its stamp (the RESULT_REST's arrival) is the leading
    unit's end as a bound from above: `bounded_by_rest`, not the read. Read apart, each unit keeps its own stamp;
    with a CHECKSUM behind the RESULT_REST in the same read, the leading unit has none (`read_continued`)."""
    client, accepted = pair

    def attempt() -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = TcpTransport(accepted)
        reader = transport.reader
        transport.mark()
        client.sendall(encode_control(MsgType.RESULT, {"after_unit": 1}))
        time.sleep(READ_DELAY_S)
        rest_send = now_ns()
        client.sendall(encode_control(MsgType.RESULT_REST, {"after_unit": 1}))
        time.sleep(0.05)
        lead, _, t_read = reader.read(timeout_s=5)
        assert lead.unit_type == MsgType.RESULT and reader.bounded_by_rest
        bound = reader.kernel_ns
        assert bound is not None and rest_send <= bound <= t_read  # the RESULT_REST's arrival, not the RESULT's
        assert transport.arrival() == (bound, 0, rxstamp.BOUNDED_BY_REST)
        rest, _, t_read_2 = reader.read(timeout_s=5)
        assert rest.unit_type == MsgType.RESULT_REST and t_read_2 == t_read and not reader.bounded_by_rest
        assert transport.arrival() == (bound, 0, None)  # the RESULT_REST's own stamp

        transport.mark()  # read apart: the leading unit's own arrival, before the RESULT_REST was sent
        before_send = now_ns()
        client.sendall(encode_control(MsgType.RESULT, {"after_unit": 2}))
        time.sleep(0.05)
        lead, _, _ = reader.read(timeout_s=5)
        rest_send = now_ns()
        client.sendall(encode_control(MsgType.RESULT_REST, {"after_unit": 2}))
        assert lead.unit_type == MsgType.RESULT and not reader.bounded_by_rest
        own = reader.kernel_ns
        assert own is not None and before_send <= own < rest_send
        assert transport.arrival() == (own, 0, None)
        assert reader.read(timeout_s=5)[0].unit_type == MsgType.RESULT_REST

        transport.mark()  # a CHECKSUM behind the RESULT_REST ends the read: no stamp for the leading unit
        for unit_type in (MsgType.RESULT, MsgType.RESULT_REST, MsgType.CHECKSUM):
            client.sendall(encode_control(unit_type, {"after_unit": 3}))
            time.sleep(0.01)
        time.sleep(0.05)
        lead, _, _ = reader.read(timeout_s=5)
        assert lead.unit_type == MsgType.RESULT and not reader.bounded_by_rest and reader.kernel_ns is None
        assert transport.arrival() == (None, 0, rxstamp.READ_CONTINUED)
        assert [reader.read(timeout_s=5)[0].unit_type for _ in range(2)] == [MsgType.RESULT_REST, MsgType.CHECKSUM]

    without_wall_clock_step(accepted, attempt)


def test_a_rest_stamp_is_still_checked_for_order_and_clock_steps(pair: tuple[socket.socket, socket.socket],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound passes the same checks as any stamp: across a wall-clock step it is dropped (`clock_step`),
    never kept as a bound. (The step is simulated as in the test below.)"""
    client, accepted = pair
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = TcpTransport(accepted)
    steady = rxstamp.wall_offset_ns
    transport.mark()
    monkeypatch.setattr(rxstamp, "wall_offset_ns", lambda: steady() + 500_000)
    client.sendall(encode_control(MsgType.RESULT, {"after_unit": 1}) + encode_control(MsgType.RESULT_REST, {}))
    time.sleep(0.05)
    lead, _, _ = transport.reader.read(timeout_s=5)
    assert lead.unit_type == MsgType.RESULT and transport.reader.bounded_by_rest
    assert transport.arrival()[0::2] == (None, rxstamp.CLOCK_STEP)


def test_a_wall_clock_step_during_a_transfer_drops_its_stamp(pair: tuple[socket.socket, socket.socket],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernel stamps are CLOCK_REALTIME: a transfer during which REALTIME - MONOTONIC changed keeps no stamp.
    The step is simulated by shifting the offset the clock reads (stepping the real wall clock is not ours to
    do); a steady clock keeps the stamp, and mark() starts afresh."""
    client, accepted = pair
    clock = rxstamp.ReceiveClock(accepted)
    steady = rxstamp.wall_offset_ns
    clock.mark()
    client.sendall(b"s" * 10)
    time.sleep(0.02)
    clock.recv_into(bytearray(64))
    if clock.clock_stepped:
        pytest.skip("the real wall clock was stepped during the steady read")
    assert clock.arrival(clock.kernel_ns) == (clock.kernel_ns, 0, None) and clock.kernel_ns is not None
    monkeypatch.setattr(rxstamp, "wall_offset_ns", lambda: steady() + 500_000)  # a 0.5 ms step, as seen here
    client.sendall(b"t" * 10)
    time.sleep(0.02)
    clock.recv_into(bytearray(64))
    assert clock.clock_stepped and clock.kernel_ns is not None
    assert clock.arrival(clock.kernel_ns) == (None, 0, rxstamp.CLOCK_STEP)
    assert clock.arrival(None, rxstamp.READ_CONTINUED)[2] == rxstamp.READ_CONTINUED  # a missing stamp says why
    clock.mark()  # the next transfer is judged on its own
    assert not clock.clock_stepped


def test_without_kernel_stamps_the_read_is_all_there_is(pair: tuple[socket.socket, socket.socket]) -> None:
    client, accepted = pair
    client.sendall(b"y" * 10)
    n, t_read, t_kernel = rxstamp.recv_into(accepted, bytearray(64), False)
    assert (n, t_kernel) == (10, None) and t_read > 0
    client.sendall(b"z" * 10)
    assert rxstamp.recv_into_explained(accepted, bytearray(64), False)[2:] == (None, rxstamp.STAMPING_OFF)


def test_a_stamp_that_lands_after_the_read_is_refused_and_named() -> None:
    """The conversion of a REALTIME stamp across a wall-clock step can put it after the read: discarded."""
    seconds = 1_000
    ancillary = [(socket.SOL_SOCKET, rxstamp.SO_TIMESTAMPNS, rxstamp._TIMESPEC.pack(seconds, 0))]
    arrival = seconds * 1_000_000_000
    assert rxstamp._kernel_stamp(ancillary, 0, t_read=arrival + 10) == (arrival, None)
    assert rxstamp._kernel_stamp(ancillary, 0, t_read=arrival - 1_000_000) == (None, rxstamp.STAMP_AFTER_READ)
    never = [(socket.SOL_SOCKET, rxstamp.SO_TIMESTAMPNS, rxstamp._TIMESPEC.pack(0, 0))]  # a packet never stamped
    assert rxstamp._kernel_stamp(never, 0, t_read=5) == (None, rxstamp.UNSTAMPED)
    assert rxstamp._kernel_stamp([], 0, t_read=5) == (None, rxstamp.UNSTAMPED)


@pytest.mark.parametrize(("value", "stamped"), [(None, False), ("clock_step", True), ("bogus", False), (3, False)])
def test_the_remotes_end_reason_must_match_its_stamp(value: object, stamped: bool) -> None:
    with pytest.raises(ProtocolError, match="uplink_end_reason"):
        end_reason(value, stamped=stamped)
    assert end_reason(None, stamped=True) is None
    assert end_reason("out_of_order", stamped=False) == "out_of_order"


@pytest.mark.parametrize("value", ["1", 1.5, True, 2_000])
def test_a_malformed_or_late_kernel_stamp_from_the_remote_is_refused(value: object) -> None:
    """The RESULT came over a socket: a stamp must be null or an integer no later than the read it belongs to."""
    with pytest.raises(ProtocolError, match="remote_last_byte_kernel"):
        kernel_stamp({"remote_last_byte_kernel": value}, "remote_last_byte_kernel", not_after=1_000)


def test_null_and_good_kernel_stamps_are_taken() -> None:
    assert kernel_stamp({}, "remote_last_byte_kernel", not_after=1_000) is None
    assert kernel_stamp({"remote_last_byte_kernel": 900}, "remote_last_byte_kernel", not_after=1_000) == 900
