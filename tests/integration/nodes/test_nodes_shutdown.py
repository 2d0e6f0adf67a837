"""SIGTERM on a real remote node process: the in-flight inference is answered, idle sessions are told the
node is shutting down and closed, no new session is accepted, and the process exits 0."""

from __future__ import annotations

import socket
from pathlib import Path

from nodes_harness import RawClient, start_remote

from splitbed.nodes.protocol import MsgType

PARTITION = 5


def test_sigterm_finishes_in_flight_and_exits_zero(tmp_path: Path) -> None:
    server = start_remote(tmp_path, "--shutdown-grace", "10")
    try:
        with RawClient(server.host, server.port) as idle, RawClient(server.host, server.port) as busy:
            idle.configure()
            busy.configure()
            arrays = busy.tensors(PARTITION)
            busy.infer(PARTITION, arrays)  # the tail is built and warm
            # Send an inference and SIGTERM at once: the reply must still come.
            from splitbed.format import Aips, encode_data

            busy.units += 1
            busy.send(*encode_data(Aips.for_arrays(1, PARTITION, arrays), arrays))
            server.proc.terminate()
            kind, body = busy.read(30)
            assert kind == MsgType.RESULT and body["after_unit"] == busy.units, body
            kind, body = idle.read(30)
            assert kind == MsgType.ERROR and body["code"] == "shutting_down", body
            assert idle.expect_closed() and busy.expect_closed()
        assert server.proc.wait(30) == 0, server.log()[-3000:]
        refused = False
        try:
            socket.create_connection((server.host, server.port), timeout=2).close()
        except OSError:
            refused = True
        assert refused, "the port still accepts connections after the remote node exited"
        assert "remote node stopped" in server.log()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
