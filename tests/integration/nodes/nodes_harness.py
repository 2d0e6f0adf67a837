"""Helpers for the node tests: start a real remote node process on loopback, and a raw protocol client (no
TensorFlow in the test process) that speaks the session protocol with the project's own encoders."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitbed.format import Aips, encode_aips, encode_data
from splitbed.nodes import protocol as proto
from splitbed.nodes.protocol import MsgType
from splitbed.nodes.wire import ControlReader, send_pieces

MODEL = "mobilenet_v2"
WEIGHTS = "random:0"
READY_TIMEOUT_S = 180.0  # TensorFlow start + model build on a CPU shared with other test runs
# Short limits so that the robustness tests run in seconds; the defaults are minutes.
TEST_BUDGET_MIB = 192  # memory budget: a few of the largest units these tests send at once, small beside the host
TEST_SERVER_ARGS = ["--read-timeout", "1.5", "--unit-timeout-base", "2", "--unit-min-rate", "1000000",
                    "--idle-timeout", "30", "--config-timeout", "6", "--max-sessions", "8",
                    "--max-unit-bytes", str(8 << 20), "--shutdown-grace", "5",
                    "--memory-budget-mib", str(TEST_BUDGET_MIB)]


@dataclass
class RemoteProcess:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; kill if it does not exit. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
        return int(self.proc.returncode)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (so that a local node can be started before the remote)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_remote(tmp_dir: Path, *extra: str, prefix: tuple[str, ...] = (), port: int = 0) -> RemoteProcess:
    """Start `python -m splitbed.nodes.remote` on 127.0.0.1 (`port`, 0: any) and wait for its ready line.
    `prefix` runs it through a wrapper that execs it (same pid), e.g. `unshare --time ...`."""
    log_path = tmp_dir / f"remote-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "splitbed.nodes.remote", "--host", "127.0.0.1", "--port", str(port),
             "--model", MODEL, "--weights", WEIGHTS, *extra],
            stdout=subprocess.PIPE, stderr=log_file, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    line = b""
    try:
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise RuntimeError(f"remote node not ready (exit {proc.poll()}): {log_path.read_text()[-3000:]}")
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                line += chunk
        info = json.loads(line)
        assert info["event"] == "ready" and info["pid"] == proc.pid
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return RemoteProcess(proc, info["host"], info["port"], log_path)


class RawClient:
    """A protocol client built from the library's encoders, for hostile and concurrent tests."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = ControlReader(self.sock)
        self.units = 0
        self.timeout = timeout
        self.verify = False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, *pieces: bytes | memoryview) -> None:
        send_pieces(self.sock, list(pieces), self.timeout)

    def read(self, timeout: float | None = None) -> tuple[MsgType, dict[str, Any]]:
        unit, _, _ = self.reader.read(timeout or self.timeout)
        return unit.unit_type, proto.decode_control(unit.unit_type, unit.payload)

    def configure(self, encoding: str = "tlv", verify: bool = False) -> dict[str, Any]:
        self.verify = verify
        self.send(proto.encode_control(MsgType.HELLO, {"protocol_version": proto.PROTOCOL_VERSION}))
        kind, offer = self.read()
        assert kind == MsgType.OFFER, offer
        self.send(proto.encode_control(MsgType.SELECT, {"model": MODEL, "encoding": encoding, "result_mode": "topk",
                                                       "top_k": 3, "verify": verify}))
        kind, body = self.read()
        assert kind == MsgType.ACCEPT, body
        return offer

    def prepare(self, partition_id: int) -> list[dict[str, Any]]:
        self.units += 1
        self.send(proto.encode_control(MsgType.PREPARE, {"partition_id": partition_id}))
        kind, body = self.read(60)
        assert kind == MsgType.PREPARED, body
        return list(body["cut"])

    def tensors(self, partition_id: int, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [rng.standard_normal((1, *c["shape"])).astype(c["dtype"]) for c in self.prepare(partition_id)]

    def infer(self, partition_id: int, arrays: list[np.ndarray], *, aips_id: int = 1, send_aips: bool = True,
              profile: str = "none") -> tuple[MsgType, dict[str, Any]]:
        """Send (AIPS +) data; return the reply to the data unit (earlier error replies are skipped). With
        verify, the CHECKSUM that follows a RESULT is read too and its CRC-32s added as `tensor_crc32`."""
        aips = Aips.for_arrays(aips_id, partition_id, arrays, profile)
        pieces: list[bytes | memoryview] = [encode_aips(aips)] if send_aips else []
        pieces += list(encode_data(aips, arrays))
        self.units += 2 if send_aips else 1
        self.send(*pieces)
        while True:
            kind, body = self.read(60)
            if body.get("after_unit") == self.units or body.get("fatal"):
                if kind == MsgType.RESULT and self.verify:
                    check_kind, check = self.read(60)
                    assert check_kind == MsgType.CHECKSUM and check["after_unit"] == self.units, check
                    body["tensor_crc32"] = check["tensor_crc32"]
                return kind, body

    def expect_closed(self, timeout: float = 10.0) -> bool:
        """True when the server closes the connection within timeout (after any pending bytes)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:  # closed with our bytes unread: closed all the same
            return True
        return True


class RecordingProxy:
    """A TCP relay on loopback that keeps a copy of every byte the client sends (the uplink), like a capture
    of the stream. One connection; bounded in bytes and time."""

    MAX_BYTES = 64 << 20

    def __init__(self, target: tuple[str, int]) -> None:
        import threading

        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(300)
        self.port = self.listener.getsockname()[1]
        self.uplink = bytearray()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import threading

        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        server = socket.create_connection(self.target, timeout=300)

        def pump(src: socket.socket, dst: socket.socket, keep: bool) -> None:
            try:
                while data := src.recv(1 << 16):
                    if keep and len(self.uplink) + len(data) <= self.MAX_BYTES:
                        self.uplink += data
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        down = threading.Thread(target=pump, args=(server, client, False), daemon=True)
        down.start()
        pump(client, server, True)
        down.join(30)
        client.close()
        server.close()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(30)
