"""The local node's reading of the remote's TCP state (RESULT's downlink_tcp, splitbed.nodes.messages), which came over a socket."""

from __future__ import annotations

import pytest

from splitbed.nodes.errors import ProtocolError
from splitbed.nodes.messages import tcp_state_field

GOOD = {"congestion_control": "cubic", "ca_state": "open", "cwnd_segments": 80, "ssthresh_segments": None,
        "mss_bytes": 1448, "rtt_ms": 33.0, "rttvar_ms": 2.0, "min_rtt_ms": 32.6, "rto_ms": 233.0, "idle_ms": 100.0,
        "unacked_segments": 0, "total_retrans": 0, "peer_window_bytes": 1 << 20}


@pytest.mark.parametrize("value", [[1, 2], "cubic", {"cwnd_segments": 10}, dict(GOOD, rto_ms=None),
                                   dict(GOOD, cwnd_segments=True)])
def test_a_malformed_remote_tcp_state_is_a_protocol_error(value: object) -> None:
    """Anything but null or a complete state is refused, naming the field."""
    with pytest.raises(ProtocolError, match="downlink_tcp"):
        tcp_state_field(value)


def test_null_and_a_complete_state_are_taken() -> None:
    assert tcp_state_field(None) is None
    assert tcp_state_field(dict(GOOD, extra="ignored")) == GOOD
