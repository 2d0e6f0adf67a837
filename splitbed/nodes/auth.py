"""Optional shared-secret authentication of a session, for nodes on two real hosts (docs/PROTOCOL.md, section 7).

A node started with a secret (a file named by `--secret-file`, or the environment variable SPLITBED_SECRET; never
the secret itself on a command line, where `ps` shows it) serves only peers that prove they hold the same secret,
by an HMAC-SHA256 challenge-response in the configuration stage, both ways:

    local  HELLO {auth_nonce: Nc}                       -->
    remote                                             <-- OFFER {auth: {scheme, nonce: Ns}}   (nothing else)
    local  HELLO {auth_nonce: Nc, auth_proof: HMAC(K, "client" Ns Nc)} -->
    remote (compare in constant time; wrong: auth_failed, closed)
                                                       <-- OFFER {..., auth: {proof: HMAC(K, "server" Ns Nc)}}
    local  (checks the remote's proof: a node without the secret cannot pose as the remote)

Fresh random nonces on both sides make every proof single-use. This authenticates the session's start only: the
bytes are not encrypted and later units carry no MAC (no TLS here), so it keeps strangers on a lab network out; it
does not protect against someone who can alter traffic on the path. Sans-I/O: no sockets here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from splitbed.nodes.errors import ConfigurationError, ProtocolError

SCHEME = "hmac-sha256"
ENV_VAR = "SPLITBED_SECRET"
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 4096
NONCE_BYTES = 32
_LABEL = b"splitbed-auth-v1"


def load_secret(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> bytes | None:
    """The shared secret from `path` (a file only its owner may read) or else from $SPLITBED_SECRET; None when
    neither is given. ConfigurationError (one line, with the fix) for an unusable one."""
    if path is not None:
        file = Path(path)
        try:
            info = file.stat()
        except OSError as exc:
            raise ConfigurationError(f"secret file {file}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(info.st_mode):
            raise ConfigurationError(f"secret file {file} is not a regular file")
        if info.st_mode & 0o077:
            raise ConfigurationError(f"secret file {file} can be read by other users (mode "
                                     f"{stat.S_IMODE(info.st_mode):o}); run chmod 600 {file}")
        if info.st_size > MAX_SECRET_BYTES:
            raise ConfigurationError(f"secret file {file} is over {MAX_SECRET_BYTES} bytes; a secret is a line")
        secret = file.read_bytes().strip()
        where = f"secret file {file}"
    else:
        text = (os.environ if env is None else env).get(ENV_VAR)
        if not text:
            return None
        secret = text.strip().encode()
        where = f"${ENV_VAR}"
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"{where} holds {len(secret)} bytes; use at least {MIN_SECRET_BYTES} (e.g. "
                                 "`openssl rand -hex 32`)")
    return secret


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def _mac(secret: bytes, role: bytes, server_nonce: str, client_nonce: str) -> str:
    message = b"|".join((_LABEL, role, server_nonce.encode(), client_nonce.encode()))
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def client_proof(secret: bytes, server_nonce: str, client_nonce: str) -> str:
    return _mac(secret, b"client", server_nonce, client_nonce)


def server_proof(secret: bytes, server_nonce: str, client_nonce: str) -> str:
    return _mac(secret, b"server", server_nonce, client_nonce)


def _nonce(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 2 * NONCE_BYTES or any(c not in "0123456789abcdef" for c in value):
        raise ProtocolError("auth_failed", f"{what} must be {2 * NONCE_BYTES} lowercase hex digits")
    return value


class ServerHandshake:
    """The remote's side for one session: the challenge, then the check of the peer's proof."""

    def __init__(self, secret: bytes | None) -> None:
        self.secret = secret
        self.nonce = new_nonce() if secret is not None else ""
        self.authenticated = secret is None  # no secret: everyone is served (the node is as open as its address)

    def challenge(self) -> dict[str, Any]:
        """The OFFER an unauthenticated peer gets: the protocol version and the challenge, nothing else."""
        return {"scheme": SCHEME, "nonce": self.nonce}

    def answer(self, hello: Mapping[str, Any]) -> dict[str, Any] | None:
        """Check a HELLO. None: no proof yet (send the challenge). Else the `auth` field of the full OFFER (the
        node's own proof). ProtocolError(auth_failed) for a wrong or malformed proof."""
        assert self.secret is not None
        proof = hello.get("auth_proof")
        if proof is None:
            return None
        client_nonce = _nonce(hello.get("auth_nonce"), "HELLO auth_nonce")
        expected = client_proof(self.secret, self.nonce, client_nonce)
        if not isinstance(proof, str) or not hmac.compare_digest(proof.encode(), expected.encode()):
            raise ProtocolError("auth_failed", "wrong authentication proof: the two nodes do not share the secret "
                                "(check --secret-file / $SPLITBED_SECRET on both)")
        self.authenticated = True
        return {"scheme": SCHEME, "proof": server_proof(self.secret, self.nonce, client_nonce)}


class ClientHandshake:
    """The local node's side for one session."""

    def __init__(self, secret: bytes | None) -> None:
        self.secret = secret
        self.nonce = new_nonce()

    def hello_fields(self) -> dict[str, Any]:
        return {"auth_nonce": self.nonce} if self.secret is not None else {}

    def respond(self, challenge: Any) -> dict[str, Any]:
        """The second HELLO's fields for the remote's challenge (OFFER `auth`)."""
        if self.secret is None:
            raise ConfigurationError("the remote node requires a shared secret; give the local node the same one "
                                     f"(--secret-file or ${ENV_VAR})")
        if not isinstance(challenge, Mapping) or challenge.get("scheme") != SCHEME:
            raise ProtocolError("auth_failed", f"the remote node asks for an unknown authentication scheme "
                                f"{challenge.get('scheme') if isinstance(challenge, Mapping) else challenge!r}")
        server_nonce = _nonce(challenge.get("nonce"), "OFFER auth nonce")
        self._server_nonce = server_nonce
        return {"auth_nonce": self.nonce, "auth_proof": client_proof(self.secret, server_nonce, self.nonce)}

    def check_server(self, offer_auth: Any) -> None:
        """The remote proved it holds the secret too (else a stranger could pose as the remote node)."""
        if self.secret is None:
            return
        proof = offer_auth.get("proof") if isinstance(offer_auth, Mapping) else None
        server_nonce = getattr(self, "_server_nonce", None)
        if server_nonce is None or not isinstance(proof, str):
            raise ConfigurationError("the remote node did not authenticate itself: it was started without the "
                                     "shared secret (or is not the node you meant); refusing to send it data")
        if not hmac.compare_digest(proof.encode(), server_proof(self.secret, server_nonce, self.nonce).encode()):
            raise ProtocolError("auth_failed", "the remote node's authentication proof is wrong: it does not hold "
                                "the shared secret")
