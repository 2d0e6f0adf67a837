"""The `docker` node runtime: each node is a container with UE-like CPU and memory limits, joined to the
topology's network namespace.

    with Topology(profile) as topo, DockerRuntime(topo) as runtime:
        edge = runtime.start_node("edge", [python, "-m", "splitbed.nodes.remote", ...], stdout=PIPE)
        ue = runtime.start_node("ue", argv, limits=NodeLimits.make(cpus=0.5, memory="2g"),
                                stdin=PIPE, stdout=PIPE)

Containers run `network_mode="none"` and their node process enters the topology's namespace (netns.py), so
traffic goes only over the emulated link, with no engine network, no route out and no NAT. Every container
carries owner labels; `close()` (and `atexit`) removes this runtime's containers, and the next runtime start
sweeps those of crashed runs. docs/DOCKER.md explains the choices.
"""

from __future__ import annotations

import atexit
import io
import itertools
import os
import signal
import subprocess
import weakref
from typing import IO, TYPE_CHECKING, Any

from splitbed.runtime import engine
from splitbed.runtime.attach import AttachPump, SocketStdin, reader_pipe
from splitbed.runtime.errors import EngineUnavailableError, LimitError, NodeStartError
from splitbed.runtime.handle import DEVNULL, PIPE, SIDES, STDOUT, NodeHandle
from splitbed.runtime.limits import NodeLimits
from splitbed.runtime.mounts import Mount, as_mounts, default_mounts
from splitbed.runtime.netns import CONTAINER_NETNS_PATH, entry_command, namespace_file, namespace_name
from splitbed.runtime.process_node import ProcessRuntime

if TYPE_CHECKING:
    import docker

# Host environment variables passed into node containers (model/TF tuning and splitbed's own settings).
PASS_ENV_PREFIXES = ("SPLITBED_", "TF_", "KERAS_", "OMP_", "PYTHONHASHSEED")
# json-file logs are kept until the container is removed; bound them.
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}}
# setns needs CAP_SYS_ADMIN, setpriv's bounding-set drop needs CAP_SETPCAP; nothing else is granted.
CAPABILITIES = ["SYS_ADMIN", "SETPCAP"]
STOP_GRACE_S = 10.0
_ATTACH_JOIN_S = 10.0


class ContainerNode(NodeHandle):
    """A node running in a container; see `NodeHandle` for the interface."""

    runtime = "docker"

    def __init__(self, client: docker.DockerClient, container_id: str, *, side: str, name: str, argv: list[str],
                 limits: NodeLimits, image: str, namespace: str) -> None:
        self._client = client
        self._api = client.api
        self.container_id = container_id
        self.side, self.name, self.argv, self.limits = side, name, argv, limits
        self.image, self.namespace = image, namespace
        self.returncode: int | None = None
        self.oom_killed = False
        self._pump: AttachPump | None = None
        self._attach: Any = None  # keeps the engine's HTTP response (and so the socket) alive
        self._removed = False

    # Wiring done by DockerRuntime.start_node before the container starts.
    def _attach_streams(self, stdin: int | None, stdout: int | None, stderr: int | None) -> None:
        want_in, want_out, want_err = stdin == PIPE, stdout == PIPE, stderr in (PIPE, STDOUT)
        if not (want_in or want_out or want_err):
            return
        params = {"stdin": int(want_in), "stdout": int(want_out), "stderr": int(want_err), "stream": 1}
        self._attach = self._api.attach_socket(self.container_id, params=params)
        sock = self._attach._sock
        out_fd = err_fd = None
        if want_out:
            self.stdout, out_fd = reader_pipe()
        if stderr == PIPE:
            self.stderr, err_fd = reader_pipe()
        elif stderr == STDOUT:
            if out_fd is None:
                raise NodeStartError("stderr=STDOUT needs stdout=PIPE")
            err_fd = out_fd
        if want_in:
            self.stdin = _socket_stdin(sock)
        if want_out or want_err:
            self._pump = AttachPump(sock, out_fd, err_fd)
            self._pump.start()

    def poll(self) -> int | None:
        if self.returncode is None:
            state = self._state()
            if state is None:  # removed behind our back (e.g. by hand): ended, status unknown
                self._ended({"ExitCode": -1})
            elif not state.get("Running") and state.get("Status") in ("exited", "dead"):
                self._ended(state)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            import requests

            try:
                self._api.wait(self.container_id, timeout=timeout)
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
                if self.poll() is None:
                    raise subprocess.TimeoutExpired(self.argv, timeout or 0) from exc
            self._ended(self._state() or {})
        if self._pump is not None:
            self._pump.join(_ATTACH_JOIN_S)
        assert self.returncode is not None
        return self.returncode

    def _state(self) -> dict[str, Any] | None:
        import docker

        try:
            return dict(self._api.inspect_container(self.container_id)["State"])
        except docker.errors.NotFound:
            return None

    def _ended(self, state: dict[str, Any]) -> None:
        self.returncode = int(state.get("ExitCode", -1))
        self.oom_killed = bool(state.get("OOMKilled", False))

    def send_signal(self, sig: int) -> None:
        import docker

        if self.returncode is not None:
            return
        try:  # PID 1 is docker-init (tini), which forwards the signal to the node
            self._api.kill(self.container_id, signal=signal.Signals(sig).name)
        except docker.errors.APIError as exc:
            if exc.status_code not in (404, 409):  # 409: not running any more
                raise

    def logs(self, tail_bytes: int = 65536) -> str:
        import docker

        try:
            data = self._api.logs(self.container_id, stdout=self.stdout is None, stderr=True, tail=2000)
        except docker.errors.NotFound:
            return ""
        return bytes(data)[-tail_bytes:].decode(errors="replace")

    def pids(self) -> list[int]:
        """Host PIDs of the container's processes, node first (docker-init, PID 1 inside, is left out)."""
        import docker

        try:
            top = self._api.top(self.container_id, ps_args="-o pid,args")
        except docker.errors.APIError:
            return []
        rows = [(int(row[0]), row[1]) for row in top.get("Processes") or []]
        return [pid for pid, args in rows if not args.startswith(("/sbin/docker-init", "docker-init"))]

    def update_limits(self, limits: NodeLimits) -> None:
        """Change the CPU share (and raise or set the memory cap) of the running node, like `docker update`:
        the same warmed-up process can then be measured under several limits."""
        if self.limits.memory_bytes is not None and limits.memory_bytes is None:
            raise LimitError("a running container's memory cap cannot be removed; start a new node instead")
        if limits.pids != self.limits.pids:
            raise LimitError("the pids limit of a running container cannot be changed; start a new node instead")
        if self.poll() is not None:
            raise LimitError(f"node {self.name} has ended (exit {self.returncode}); nothing to update")
        self._api.update_container(self.container_id, **limits.docker_update())
        self.limits = limits

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "side": self.side, "name": self.name, "container_id": self.container_id[:12],
                "image": self.image, "namespace": self.namespace, "limits": self.limits.describe(),
                "oom_killed": self.oom_killed}

    def release(self) -> None:
        """Remove the container (after it ended, or by force) and close the streams."""
        import docker

        if self._removed:
            return
        if self.returncode is None and self.poll() is None:
            self.kill()
        try:
            self._api.remove_container(self.container_id, force=True)
        except docker.errors.NotFound:
            pass
        self._removed = True
        if self._pump is not None:
            self._pump.join(_ATTACH_JOIN_S)
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self._attach is not None:
            self._attach.close()


def _socket_stdin(sock: Any) -> IO[bytes]:
    """Buffered writer over the attach socket whose close() half-closes it (EOF for the node)."""
    return io.BufferedWriter(SocketStdin(sock))  # type: ignore[type-var]


class DockerRuntime:
    """Starts nodes as containers in `topology`'s namespaces. A context manager; `close()` removes them all."""

    name = "docker"

    def __init__(self, topology: Any, *, image: str | None = None, client: docker.DockerClient | None = None,
                 mounts: list[Any] | tuple[Any, ...] = (), env: dict[str, str] | None = None,
                 default_limits: NodeLimits | None = None, sides: tuple[str, ...] | list[str] = SIDES) -> None:
        unknown = set(sides) - set(SIDES)
        if unknown or not sides:
            raise NodeStartError(f"sides must be a non-empty subset of {', '.join(SIDES)}, not {list(sides)}")
        self.topology = topology
        # Sides not listed run as plain processes (e.g. a UE container against an unrestricted edge server).
        self.sides = tuple(side for side in SIDES if side in sides)
        self._process = ProcessRuntime(topology)
        self._client = client
        self._own_client = client is None  # closed with the runtime
        self._image = image
        self._extra_mounts: list[Mount] = as_mounts(mounts)
        self._env = dict(env or {})
        self.default_limits = default_limits or NodeLimits()
        self.nodes: list[ContainerNode] = []
        self.image_info: Any = None
        self.swept: list[str] = []
        self._seq = itertools.count()
        self._started = False
        _live_runtimes.add(self)

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = engine.connect()
            except EngineUnavailableError:
                from splitbed.runtime.dockerd import start_engine

                start_engine("the docker runtime")  # said on stderr, with how to stop it
                self._client = engine.connect()
        return self._client

    def start(self) -> DockerRuntime:
        """Connect, sweep leftovers of crashed runs, and make sure the node image exists (builds it once)."""
        if self._started:
            return self
        self.swept = engine.sweep_stale_containers(self.client)
        if self._image is None:
            from splitbed.runtime.image import ensure_image

            self.image_info = ensure_image(self.client)
            self._image = self.image_info.tag
        self._started = True
        return self

    @property
    def image(self) -> str:
        self.start()
        assert self._image is not None
        return self._image

    def start_node(self, side: str, argv: list[str], *, limits: NodeLimits | None = None,
                   stdin: int | None = None, stdout: int | None = None, stderr: int | None = None,
                   env: dict[str, str] | None = None, cwd: str | None = None,
                   mounts: list[Any] | tuple[Any, ...] = ()) -> NodeHandle:
        """Start `argv` in a container joined to `side`'s namespace; streams like `subprocess.Popen`.

        stdin/stdout/stderr: PIPE to get a stream; None/DEVNULL to leave it in the container log (`logs()`);
        stderr=STDOUT merges it into stdout. `env` is added to the image's environment and the passed-through
        host variables (PASS_ENV_PREFIXES). A side not in `sides` starts as a process (ProcessRuntime).
        """
        if side in SIDES and side not in self.sides:
            return self._process.start_node(side, argv, limits=limits, stdin=stdin, stdout=stdout, stderr=stderr,
                                            env=env, cwd=cwd)
        self.start()
        limits = limits or self.default_limits
        ns_name = namespace_name(self.topology, side)
        ns_file = namespace_file(ns_name)
        for label, choice in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
            if choice not in (None, PIPE, DEVNULL) and not (label == "stderr" and choice == STDOUT):
                raise NodeStartError(f"{label}={choice!r}: a container node takes PIPE, DEVNULL or None")
        name = f"sb{os.getpid()}-{side}-{next(self._seq)}"
        binds = [m.docker_bind() for m in default_mounts() + self._extra_mounts + as_mounts(mounts)]
        binds.append(f"{ns_file}:{CONTAINER_NETNS_PATH}:ro")
        api = self.client.api
        host_config = api.create_host_config(
            network_mode="none", binds=binds, init=True, cap_drop=["ALL"], cap_add=CAPABILITIES,
            log_config=LOG_CONFIG, **limits.docker_host_config(),
        )
        created = api.create_container(
            self.image, entry_command(list(argv)), name=name, host_config=host_config,
            environment=self._environment(env), working_dir=cwd or "/", stdin_open=stdin == PIPE,
            labels=engine.owner_labels(side),
        )
        node = ContainerNode(self.client, created["Id"], side=side, name=name, argv=list(argv), limits=limits,
                             image=self.image, namespace=ns_name)
        self.nodes.append(node)
        try:
            node._attach_streams(stdin, stdout, stderr)
            api.start(created["Id"])
        except Exception as exc:
            node.release()
            raise NodeStartError(f"container node {name} did not start: {exc}") from exc
        return node

    def _environment(self, extra: dict[str, str] | None) -> dict[str, str]:
        passed = {k: v for k, v in os.environ.items() if k.startswith(PASS_ENV_PREFIXES)}
        return {**passed, **self._env, **(extra or {})}

    def close(self) -> None:
        """Stop (SIGTERM, then SIGKILL after a grace period) and remove every container of this runtime."""
        errors = []
        for node in self.nodes:
            try:
                if node.poll() is None:
                    node.stop(STOP_GRACE_S)
            except Exception as exc:  # keep removing the others
                errors.append(exc)
            finally:
                try:
                    node.release()
                except Exception as exc:
                    errors.append(exc)
        self.nodes.clear()
        try:
            self._process.close()
        except Exception as exc:
            errors.append(exc)
        _live_runtimes.discard(self)
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None
            self._started = False
        if errors:
            raise errors[0]

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "container_sides": list(self.sides), "image": self._image,
                "image_key": self.image_info.key if self.image_info else None}

    def __enter__(self) -> DockerRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


_live_runtimes: weakref.WeakSet[DockerRuntime] = weakref.WeakSet()


@atexit.register
def _close_live_runtimes() -> None:
    for runtime in list(_live_runtimes):
        try:
            runtime.close()
        except Exception:  # at exit: the sweep of the next run removes what is left
            pass
