"""`LinkProcess`: the parent's handle on a running link process (``python -m netem.link``).

The link runs in its own process, entered into the middle namespace, so that its event loop has a CPU to itself
and a crash in it cannot take the caller down. The parent talks to it over a unix socketpair, one JSON object
per line (netem.link.control). The child gets SIGKILL when the thread that started it dies
(PR_SET_PDEATHSIG: start it from a thread that lives as long as the topology), and a finalizer stops it when
the handle is garbage-collected or the interpreter exits, so it never outlives its topology.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

from netem.errors import LinkError
from netem.link import control
from netem.link.options import ForwarderOptions
from netem.profile import LinkProfile
from netem.pyexec import python_module

READY_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def _kill(popen: subprocess.Popen[bytes]) -> None:
    """Finalizer: make sure the child is gone (SIGKILL is harmless if it already exited)."""
    if popen.poll() is None:
        try:
            popen.kill()
        except ProcessLookupError:
            pass
        popen.wait()


class LinkProcess:
    """A running userspace link between two interfaces of a namespace. Use `LinkProcess.start`."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        channel: socket.socket,
        stderr_file: Any,
        profile: LinkProfile,
        netns: str,
    ) -> None:
        self._popen = popen
        self._channel = channel
        self._stderr = stderr_file
        self._buffer = control.LineBuffer()
        self._lock = threading.Lock()
        self._final_stats: dict[str, Any] | None = None
        self.ready: dict[str, Any] = {}
        self.profile = profile
        self.netns = netns
        self._finalizer = weakref.finalize(self, _kill, popen)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def alive(self) -> bool:
        return self._popen.poll() is None

    @classmethod
    def start(
        cls,
        netns: str,
        ue_ifname: str,
        edge_ifname: str,
        profile: LinkProfile,
        *,
        options: ForwarderOptions | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> LinkProcess:
        """Start the link process in ``netns`` between the two interfaces; returns once it forwards.

        Raises `LinkError` with the child's own reason (bad interface, no root, bad trace file...) if it
        cannot start; nothing is left running then.
        """
        if not isinstance(profile, LinkProfile):
            raise LinkError(f"profile must be a LinkProfile, not {type(profile).__name__}")
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        stderr_file = tempfile.TemporaryFile(prefix="netem-link-", suffix=".stderr")
        argv = python_module(
            "netem.link",
            "--netns", netns, "--ue", ue_ifname, "--edge", edge_ifname,
            "--control-fd", str(child_end.fileno()), "--parent-pid", str(os.getpid()),
        )  # fmt: skip
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        try:
            popen = subprocess.Popen(
                argv,
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
                env=env,
            )
        except OSError as exc:
            parent_end.close()
            stderr_file.close()
            raise LinkError(f"cannot start the link process: {exc}") from exc
        finally:
            child_end.close()
        link = cls(popen, parent_end, stderr_file, profile, netns)
        start = {"op": "start", "profile": profile.to_dict(), "options": (options or ForwarderOptions()).to_dict()}
        try:
            reply = link._request(start, ready_timeout_s)
        except LinkError:
            link._abort()
            raise
        if not reply.get("ok"):
            link._abort()
            raise LinkError(f"link process in {netns} failed to start: {reply.get('error')}")
        link.ready = reply
        return link

    def describe(self) -> dict[str, Any]:
        """JSON-able facts about this link process for metrics records: pid, scheduling, options, frame limits."""
        return {
            "pid": self.pid,
            "netns": self.netns,
            "profile": self.profile.name,
            "scheduling": self.ready.get("scheduling"),
            "options": self.ready.get("options"),
            "max_frame": self.ready.get("max_frame"),
        }

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"; its stderr: {text}" if text else ""

    def _request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        with self._lock:
            if self._popen.poll() is not None:
                raise LinkError(
                    f"link process {self.pid} has exited with status {self._popen.returncode}{self._stderr_tail()}"
                )
            try:
                self._channel.settimeout(timeout_s)
                self._channel.sendall(control.encode(message))
                return control.read_message(self._channel, self._buffer, timeout_s)
            except (OSError, LinkError) as exc:
                try:
                    self._popen.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
                status = self._popen.poll()
                state = "is still running" if status is None else f"exited with status {status}"
                raise LinkError(f"link process {self.pid} {state}: {exc}{self._stderr_tail()}") from None

    def stats(self) -> dict[str, Any]:
        """Counters per direction (see docs/LINK.md): packets/bytes in and out, drops by cause, queue, delays."""
        if self._final_stats is not None and not self.alive:
            return self._final_stats
        reply = self._request({"op": "stats"}, REQUEST_TIMEOUT_S)
        if not reply.get("ok"):
            raise LinkError(f"link process stats failed: {reply.get('error')}")
        stats: dict[str, Any] = reply["stats"]
        return stats

    def update(self, profile: LinkProfile) -> dict[str, int]:
        """Change the link's profile live; frames in flight are kept. Returns frames carried per direction.

        On a refused profile (e.g. unreadable trace) raises `LinkError` and the link keeps its old profile.
        """
        if not isinstance(profile, LinkProfile):
            raise LinkError(f"profile must be a LinkProfile, not {type(profile).__name__}")
        reply = self._request({"op": "update", "profile": profile.to_dict()}, REQUEST_TIMEOUT_S)
        if not reply.get("ok"):
            raise LinkError(f"link process refused the profile {profile.name!r}: {reply.get('error')}")
        self.profile = profile
        carried: dict[str, int] = reply["carried"]
        return carried

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, Any]:
        """Stop the process (stop request, then SIGTERM, then SIGKILL); returns its final counters if it said."""
        if self._final_stats is not None or not self.alive:
            self._abort()
            return self._final_stats or {}
        try:
            reply = self._request({"op": "stop"}, timeout_s)
            self._final_stats = reply.get("stats") or {}
        except LinkError:
            self._final_stats = {}
        try:
            self._popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self._abort()
        return self._final_stats

    def _abort(self) -> None:
        """Kill if still running and release the channel and stderr file."""
        self._finalizer()
        for closable in (self._channel, self._stderr):
            try:
                closable.close()
            except OSError:
                pass

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def __enter__(self) -> LinkProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
