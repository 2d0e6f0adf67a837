"""Shared-secret authentication (splitbed.nodes.auth): where the secret may come from, and the two-way
challenge-response with fresh nonces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from splitbed.nodes import auth
from splitbed.nodes.errors import ConfigurationError, ProtocolError

SECRET = b"0123456789abcdef0123456789abcdef"


def _file(tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


def test_secret_from_a_private_file_or_the_environment(tmp_path: Path) -> None:
    assert auth.load_secret(_file(tmp_path, SECRET + b"\n"), env={}) == SECRET
    assert auth.load_secret(None, env={auth.ENV_VAR: SECRET.decode()}) == SECRET
    assert auth.load_secret(None, env={}) is None
    with pytest.raises(ConfigurationError, match="can be read by other users.*chmod 600"):
        auth.load_secret(_file(tmp_path, SECRET, 0o644), env={})
    with pytest.raises(ConfigurationError, match="use at least 16"):
        auth.load_secret(_file(tmp_path, b"short"), env={})
    with pytest.raises(ConfigurationError, match="No such file"):
        auth.load_secret(tmp_path / "missing", env={})


def test_both_sides_prove_the_secret() -> None:
    server, client = auth.ServerHandshake(SECRET), auth.ClientHandshake(SECRET)
    assert not server.authenticated
    assert server.answer({"protocol_version": 1, **client.hello_fields()}) is None  # first HELLO: no proof
    response = client.respond(server.challenge())
    proof = server.answer(response)
    assert server.authenticated and proof is not None
    client.check_server(proof)


@pytest.mark.parametrize("tamper", ["wrong-secret", "flipped-proof", "replayed-to-new-session", "bad-nonce"])
def test_a_peer_without_the_secret_is_refused(tamper: str) -> None:
    server = auth.ServerHandshake(SECRET)
    client = auth.ClientHandshake(b"another secret of enough length" if tamper == "wrong-secret" else SECRET)
    response = client.respond(server.challenge())
    if tamper == "flipped-proof":
        response["auth_proof"] = ("0" if response["auth_proof"][0] != "0" else "1") + response["auth_proof"][1:]
    if tamper == "replayed-to-new-session":
        server = auth.ServerHandshake(SECRET)  # a fresh nonce: an old proof is worth nothing
    if tamper == "bad-nonce":
        response["auth_nonce"] = "../../etc"
    with pytest.raises(ProtocolError) as caught:
        server.answer(response)
    assert caught.value.code == "auth_failed" and caught.value.fatal and not server.authenticated


def test_the_local_node_refuses_a_remote_that_cannot_prove_the_secret() -> None:
    client = auth.ClientHandshake(SECRET)
    with pytest.raises(ConfigurationError, match="did not authenticate itself"):
        client.check_server(None)  # a remote without a secret sends no proof
    server = auth.ServerHandshake(b"impostor secret, long enough...")
    client.respond(server.challenge())
    with pytest.raises(ProtocolError, match="does not hold the shared secret"):
        client.check_server({"scheme": auth.SCHEME, "proof": "00" * 32})
    with pytest.raises(ConfigurationError, match="requires a shared secret"):
        auth.ClientHandshake(None).respond(server.challenge())
    auth.ClientHandshake(None).check_server(None)  # no secret on either side: open, as before
