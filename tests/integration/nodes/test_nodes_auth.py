"""A remote node started with a shared secret (--secret-file): an unauthenticated peer learns nothing but the
challenge and can do nothing but answer it; a wrong proof is refused and logged; the real local node with the
same secret runs inferences; the local node refuses a remote that cannot prove the secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nodes_harness import MODEL, TEST_SERVER_ARGS, WEIGHTS, RawClient, RemoteProcess, start_remote

from splitbed.nodes import auth
from splitbed.nodes import protocol as proto
from splitbed.nodes.protocol import MsgType

SECRET = b"a-lab-secret-of-32-bytes-or-so!!"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RemoteProcess, Path]]:
    folder = tmp_path_factory.mktemp("auth")
    secret = folder / "secret"
    secret.write_bytes(SECRET + b"\n")
    secret.chmod(0o600)
    server = start_remote(folder, *TEST_SERVER_ARGS, "--secret-file", str(secret))
    try:
        yield server, secret
    finally:
        code = server.stop()
    assert code == 0, server.log()[-3000:]


def _hello(client: RawClient, **fields: object) -> tuple[MsgType, dict]:
    client.send(proto.encode_control(MsgType.HELLO, {"protocol_version": proto.PROTOCOL_VERSION, **fields}))
    return client.read()


def test_an_unauthenticated_peer_gets_only_the_challenge(guarded: tuple[RemoteProcess, Path]) -> None:
    server, _ = guarded
    with RawClient(server.host, server.port) as client:
        kind, offer = _hello(client)
        assert kind == MsgType.OFFER and set(offer) == {"protocol_version", "auth"}
        assert set(offer["auth"]) == {"scheme", "nonce"}
        client.send(proto.encode_control(MsgType.SELECT, {"model": MODEL, "encoding": "tlv"}))
        kind, body = client.read()
        assert kind == MsgType.ERROR and body["code"] == "unauthenticated" and body["fatal"], body
        assert client.expect_closed()
    with RawClient(server.host, server.port) as client:
        client.send(proto.encode_control(MsgType.CLOCK_PING, {"t1": 1}))
        kind, body = client.read()
        assert kind == MsgType.ERROR and body["code"] == "unauthenticated", body


def test_a_wrong_proof_is_refused_and_logged(guarded: tuple[RemoteProcess, Path]) -> None:
    server, _ = guarded
    impostor = auth.ClientHandshake(b"not the lab secret, but as long!")
    with RawClient(server.host, server.port) as client:
        _, offer = _hello(client, **impostor.hello_fields())
        kind, body = _hello(client, **impostor.respond(offer["auth"]))
        assert kind == MsgType.ERROR and body["code"] == "auth_failed" and body["fatal"], body
        assert "do not share the secret" in body["message"] and client.expect_closed()
    assert "auth_failed: wrong authentication proof" in server.log()


def test_the_right_proof_opens_the_session(guarded: tuple[RemoteProcess, Path]) -> None:
    server, _ = guarded
    handshake = auth.ClientHandshake(SECRET)
    with RawClient(server.host, server.port) as client:
        _, challenge = _hello(client, **handshake.hello_fields())
        kind, offer = _hello(client, **handshake.respond(challenge["auth"]))
        assert kind == MsgType.OFFER and offer["models"] and "proof" in offer["auth"]
        handshake.check_server(offer["auth"])
        client.send(proto.encode_control(MsgType.SELECT, {"model": MODEL, "encoding": "tlv"}))
        kind, accept = client.read()
        assert kind == MsgType.ACCEPT, accept
        kind, body = client.infer(5, client.tensors(5))
        assert kind == MsgType.RESULT, body


def _start_local(server: RemoteProcess, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "splitbed", "local-node", "--connect",
                             f"{server.host}:{server.port}", "--weights", WEIGHTS, "--jobs", "-", *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    """The local node's one job, its exit status and output (killed if it outlives the timeout)."""
    job = json.dumps({"partition": 5, "repetitions": 1}) + "\n"
    try:
        stdout, stderr = process.communicate(job, timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _local(server: RemoteProcess, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _finish(_start_local(server, *extra, env=env))


def test_the_local_node_authenticates_and_checks_the_remote(guarded: tuple[RemoteProcess, Path],
                                                            remote: RemoteProcess) -> None:
    server, secret = guarded
    # Both local nodes at once (each loads its model first): the guarded remote, and one without the secret,
    # which cannot pose as the guarded one: the local node sends it nothing.
    started = [_start_local(server, "--secret-file", str(secret)), _start_local(remote, "--secret-file", str(secret))]
    try:
        done, impostor = [_finish(process) for process in started]
    finally:
        for process in started:  # the second, when the first failed
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["status"] for r in records if r["record_type"] == "inference"] == ["ok"]
    assert impostor.returncode != 0 and "did not authenticate itself" in impostor.stdout + impostor.stderr


@pytest.mark.slow
def test_the_local_node_takes_the_secret_from_the_environment_or_fails_clearly(
        guarded: tuple[RemoteProcess, Path]) -> None:
    server, _ = guarded
    done = _local(server, env={**os.environ, auth.ENV_VAR: SECRET.decode()})
    assert done.returncode == 0, done.stderr[-3000:]
    refused = _local(server)  # no secret: the remote's challenge cannot be answered
    assert refused.returncode != 0 and "requires a shared secret" in refused.stdout + refused.stderr
