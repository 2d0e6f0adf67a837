"""`Testbed`: one emulated link with a remote node (edge) and a driven local node (UE) running on it.

    with Testbed("5g-split-ai", models=["vgg16"], weights="random:0") as bed:
        records = bed.run({"model": "vgg16", "partition": "block3_pool", "repetitions": 5})
        bed.update_link("lte")          # change the link live; the nodes stay up

The orchestrator behind the sweep, the advisor and the pytest fixtures. It builds a `netem.Topology`, starts
the nodes through a node runtime (`process` by default; `docker` via splitbed.runtime), waits until both answer
(the remote's ready line, then one warm-up inference per model through the whole path), and feeds JSON-line jobs
to the local node (docs/METRICS.md has the records it returns). Each job carries the link's description, so every
record says which profile and backend measured it. Everything is torn down on exit, on an exception, and (through
the topology's own handlers) on SIGTERM; a timeout or a node that died raises `TestbedError` with the node's log
tail, and the testbed refuses further jobs.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn

from netem.profile import LinkProfile
from netem.pyexec import python_module
from netem.tcp import DEFAULT_CONGESTION_CONTROL
from netem.topology import Topology
from splitbed.devices import DEFAULT_EDGE, DEFAULT_UE
from splitbed.devices import load as load_device
from splitbed.models import tfboot
from splitbed.nodes.jobs import Job, parse_job
from splitbed.runtime import NodeHandle, NodeLimits, NodeRuntime
from splitbed.runtime.cpus import exec_prefix, format_cpus, pin_process, plan_from

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 300.0        # TensorFlow import + model build, on CPUs shared with other work
# Hang detection only, never a normal wait: the local node bounds each inference itself (send 300 s, result 120 s,
# configuration 30 s; LocalConfig) and reports a slow one as an error record, so these lie beyond its own bounds.
# A 40 MB JSON-baseline unit over the 2 Mbit/s cell-edge link takes ~3 min to send.
JOB_BASE_TIMEOUT_S = 300.0     # per job: session setup, model load and partition build ...
INFERENCE_TIMEOUT_S = 480.0    # ... plus this per repetition
MAX_LINE_BYTES = 8 << 20       # a metrics record is a few kB; anything near this is a broken node
LOG_TAIL_BYTES = 4000
EDGE_PORT = 7878               # the remote node's port in the edge namespace the Testbed made (nothing else is there)
NODE_ENV = {"PYTHONUNBUFFERED": "1", **tfboot.QUIET_ENV}


class TestbedError(RuntimeError):
    """The testbed could not start, a node died or did not answer in time; the message carries the log tail."""

    __test__ = False  # not a pytest test class despite the name


class JobRefusedError(TestbedError):
    """The local node could not run a job at all (its `job_error` line: bad spec, no connection, ...); the
    testbed stays usable. `code` and `detail` come from the node."""

    def __init__(self, message: str, code: str, detail: str) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class Testbed:
    """Topology + remote node + driven local node; a context manager (see the module docstring).

    `profile`: a LinkProfile or a built-in name/TOML path. `backend`: netem backend (auto, kernel, userspace).
    `models`: offered by the remote node and warmed up on the local node. `weights`: the same spec for both
    nodes (auto, imagenet, random:SEED, a file). `runtime`: node runtime name (`process`, `docker`) or a
    `splitbed.runtime.NodeRuntime` the caller built (and started) for this topology; `runtime_options` go to
    `make_runtime`, `limits` maps a side to NodeLimits. `warmup_partition` overrides the warm-up partition.
    `remote_args` / `local_args` are extra command-line options for the nodes (e.g. `--verify-delivery`).
    `tcp_congestion_control`: the algorithm both nodes' TCP uses (netem.Topology; None = the host's default).
    `cpus`: where the UE node, the edge node and the userspace link run (splitbed.runtime.cpus: `auto` = the
    default plan for this host's CPUs, `none`, `ue=0;edge=1;link=1;capture=0`, a mapping or a CpuPlan); recorded in every
    record's `link.cpus`.
    `ue_device` / `edge_device`: the device profile each node emulates (splitbed.devices, docs/DEVICES.md; a name or
    a TOML path); default a mid-range phone for the UE and the host itself (no emulation) for the edge.
    """

    __test__ = False

    def __init__(
        self,
        profile: LinkProfile | str,
        backend: str = "auto",
        models: Sequence[str] = ("mobilenet_v2",),
        weights: str = "auto",
        runtime: str | NodeRuntime = "process",
        *,
        runtime_options: Mapping[str, Any] | None = None,
        limits: Mapping[str, NodeLimits] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        warmup: bool = True,
        warmup_partition: str | int | None = None,
        remote_args: Sequence[str] = (),
        local_args: Sequence[str] = (),
        python: str = sys.executable,
        tcp_congestion_control: str | None = DEFAULT_CONGESTION_CONTROL,
        cpus: Any = "auto",
        ue_device: str = DEFAULT_UE,
        edge_device: str = DEFAULT_EDGE,
        transport: str = "tcp",
        quic_congestion: str = "reno",
    ) -> None:
        if not models:
            raise ValueError("Testbed needs at least one model")
        if transport not in ("tcp", "quic"):
            raise ValueError(f"transport {transport!r}: use tcp or quic")
        if transport == "quic" and runtime != "process":
            raise ValueError("the QUIC transport runs with the process runtime only (the certificate made for the "
                             "run is handed to the local node as a host file)")
        self.transport = transport
        self.quic_congestion = quic_congestion
        self._quic_ca_path: str | None = None
        for name, side in ((ue_device, "ue"), (edge_device, "edge")):
            load_device(name).check_role(side)  # a DeviceError now, before any namespace or node exists
        self.ue_device = _absolute_if_path(ue_device)
        self.edge_device = _absolute_if_path(edge_device)
        self.profile = profile if isinstance(profile, LinkProfile) else LinkProfile.load(profile)
        self.requested_backend = backend
        self.models = tuple(dict.fromkeys(models))
        self.weights = weights
        self.runtime_spec = runtime
        self.runtime_options = dict(runtime_options or {})
        self.limits = dict(limits or {})
        self.ready_timeout_s = ready_timeout_s
        self.warmup = warmup
        self.warmup_partition = warmup_partition
        self.remote_args = list(remote_args)
        self.local_args = list(local_args)
        self.tcp_congestion_control = tcp_congestion_control
        self.cpu_plan = plan_from(cpus)  # CpuPlanError (a ValueError) for a bad plan, before anything starts
        # `capture`: a captured sweep point's records say where its children ran (splitbed.sweep.capture).
        self.cpu_pinning: dict[str, Any] = {"ue": "not started", "edge": "not started", "link": "not started",
                                            "capture": "not captured"}
        self.python = python
        self.topology: Topology | None = None
        self.runtime: NodeRuntime | None = None
        self.remote: NodeHandle | None = None
        self.local: NodeHandle | None = None      # the first (here the only) of `locals`
        self.locals: list[NodeHandle] = []        # one local node per UE side
        self.remote_port: int | None = None
        # time.monotonic() when the first local node had been launched and when the remote's ready line was read
        # (as it came, by the remote's output pump): their order shows whether the local node started while the
        # remote was still loading (`_start_nodes`); kept for tests, in no record.
        self.start_stamps: dict[str, float] = {}
        self.warmup_records: list[dict[str, Any]] = []
        self._lines: queue.Queue[bytes | BaseException | None] = queue.Queue()  # the first local node's output
        self._ue_lines: list[queue.Queue[bytes | BaseException | None]] = []  # each local node's output
        self._job_ids = itertools.count(1)
        self._broken: str | None = None
        self._started = False
        self._closed = False
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------------------
    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.close()
        except Exception:
            if exc_type is None:
                raise
            log.exception("testbed cleanup after an error also failed")

    def start(self) -> Testbed:
        """Build the link, start both nodes, wait until they answer. Undone completely on failure."""
        if self._started:
            raise TestbedError("this Testbed was already started; make a new one")
        self._started = True
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.topology = self._make_topology()
        self.topology.start()
        self._pin_link()
        self.runtime = self._make_runtime(self.topology)
        deadline = time.monotonic() + self.ready_timeout_s
        self._start_nodes(self.runtime, deadline)
        if self.warmup:
            for model in self.models:
                job = {"model": model, "partition": self._warmup_partition(model), "repetitions": 1,
                       "tags": {"warmup": True}}
                self.warmup_records += self._run_everywhere(job, deadline, f"warm-up of {model}")
                bad = [r for r in self.warmup_records if r.get("status") != "ok"]
                if bad:
                    raise TestbedError(f"warm-up inference of {model} failed: {bad[0].get('error')}"
                                       + self._tails())

    def _start_nodes(self, runtime: NodeRuntime, deadline: float) -> None:
        """Start the remote node and one local node per UE side (`_ue_sides`), each local node's output pumped
        into its own queue; return when the remote is ready.

        Over TCP the remote and the local nodes load their models at once (each on its own CPUs when pinned): they learn
        the remote's port before the remote is ready because the port is fixed in the edge's own namespace, and
        they connect only at their first job, after the ready line. Otherwise (QUIC: the local node needs the
        certificate of the ready line; a caller's runtime or port) the local nodes start after the ready line.
        Every node started is in `self.remote` / `self.locals` at once, so `close` stops it if a later step
        fails."""
        overlapped = self._overlapped_start()
        self.remote = self._start_node(runtime, "edge", self._remote_argv(EDGE_PORT if overlapped else 0),
                                       stdin=None)
        lines: queue.Queue[bytes | BaseException | None] = queue.Queue()
        arrivals: list[float] = []  # read as the remote writes, so its ready line's time is when it came
        threading.Thread(target=_pump, args=(self.remote.stdout, lines, arrivals), name="testbed-remote-stdout",
                         daemon=True).start()
        if overlapped:
            self.remote_port = EDGE_PORT
            self._start_locals(runtime, [arg for model in self.models for arg in ("--preload", model)])
            announced = self._await_ready(self.remote, lines, arrivals, deadline)
            if announced != EDGE_PORT:
                raise TestbedError(f"the remote node listens on port {announced}, not the {EDGE_PORT} it was given"
                                   + self._tails())
        else:
            self.remote_port = self._await_ready(self.remote, lines, arrivals, deadline)
            self._start_locals(runtime, [])

    def _start_locals(self, runtime: NodeRuntime, extra: list[str]) -> None:
        argv = self._local_argv() + extra
        for side in self._ue_sides():
            node = self._start_node(runtime, side, argv, stdin=_PIPE)
            self.locals.append(node)
            lines: queue.Queue[bytes | BaseException | None] = queue.Queue()
            self._ue_lines.append(lines)
            threading.Thread(target=_pump, args=(node.stdout, lines), name=f"testbed-{side}-stdout",
                             daemon=True).start()
            if self.local is None:
                self.local, self._lines = node, lines
                self.start_stamps["local_launched"] = time.monotonic()

    def _make_topology(self) -> Topology:
        return Topology(self.profile, self.requested_backend, tcp_congestion_control=self.tcp_congestion_control)

    def _ue_sides(self) -> list[str]:
        """The sides a local node runs on: one UE here, a cell's `ue0`, `ue1`, ... in CellTestbed."""
        return ["ue"]

    def _run_everywhere(self, spec: dict[str, Any], deadline: float, what: str) -> list[dict[str, Any]]:
        """A job on every local node (here the one): the warm-up's step, which CellTestbed runs on all its UEs."""
        return self._run(spec, deadline=deadline, what=what)

    def close(self) -> None:
        """Stop the nodes, the runtime and the topology. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        errors: list[str] = []
        for node in self.locals:
            if node.stdin is not None:
                try:
                    node.stdin.close()  # a driven local node ends at end of input
                except OSError:
                    pass
        for node in [*self.locals, *([self.remote] if self.remote is not None else [])]:
            try:
                node.stop(grace=5.0)
            except Exception as exc:
                errors.append(f"stopping {node.side} node: {exc}")
        if self.runtime is not None:
            try:
                self.runtime.close()
            except Exception as exc:
                errors.append(f"closing the node runtime: {exc}")
        if self.topology is not None:
            try:
                self.topology.close()
            except Exception as exc:
                errors.append(f"removing the topology: {exc}")
        if self._quic_ca_path is not None:
            try:
                os.unlink(self._quic_ca_path)
            except FileNotFoundError:
                pass
        if errors:
            raise TestbedError("testbed cleanup incomplete: " + "; ".join(errors))

    @property
    def closed(self) -> bool:
        return self._closed

    # -- use -------------------------------------------------------------------------------------------------
    def run(self, job: Job | Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run one job (model, partition, image, encoding, compression, repetitions, tags, ...): its metrics
        records, one per inference (status ok or error), each with this link's description in `link`."""
        spec = _job_dict(job)
        timeout = JOB_BASE_TIMEOUT_S + INFERENCE_TIMEOUT_S * int(spec.get("repetitions", 1))
        return self._run(spec, deadline=time.monotonic() + timeout, what=f"job {spec.get('model')}/"
                         f"{spec.get('partition')}")

    def update_link(self, profile: LinkProfile | str) -> None:
        """Change the link's profile live; later records carry the new profile."""
        self._require_running()
        assert self.topology is not None
        self.topology.update(profile)
        self.profile = self.topology.profile

    def link_info(self) -> dict[str, Any]:
        """What each record's `link` holds: the profile, the backend that ran it, the emulator and node runtime."""
        self._require_running()
        assert self.topology is not None
        described = self.topology.describe()
        return {"profile": self.profile.to_dict(), "backend": self.topology.backend,
                "requested_backend": self.requested_backend, "emulator": described.get("link"),
                "tcp": described.get("tcp"),
                "cpus": {**self.cpu_plan.to_dict(), "applied": dict(self.cpu_pinning)},
                "runtime": self._runtime_name(), "ue_addr": self.topology.ue_addr,
                "edge_addr": self.topology.edge_addr}

    def describe(self) -> dict[str, Any]:
        """The topology, the node runtime and both nodes, JSON-able."""
        self._require_running()
        assert self.topology is not None
        return {"topology": self.topology.describe(), "runtime": self._runtime_describe(),
                "nodes": {side: node.describe() for side, node in (("edge", self.remote), ("ue", self.local))
                          if node is not None},
                "remote_port": self.remote_port, "models": list(self.models), "weights": self.weights,
                "devices": {"ue": self.ue_device, "edge": self.edge_device}}

    def logs(self) -> dict[str, str]:
        """The last few kB of each node's log (stderr)."""
        return {node.side: node.logs(LOG_TAIL_BYTES) for node in (self.remote, *self.locals) if node is not None}

    # -- internals -------------------------------------------------------------------------------------------
    def _make_runtime(self, topology: Topology) -> NodeRuntime:
        if not isinstance(self.runtime_spec, str):
            return self.runtime_spec  # a runtime object the caller built for this topology
        from splitbed.runtime import make_runtime

        return make_runtime(self.runtime_spec, topology, **self.runtime_options).start()

    def _runtime_name(self) -> str:
        if self.runtime is not None:
            return self.runtime.name
        return self.runtime_spec if isinstance(self.runtime_spec, str) else self.runtime_spec.name

    def _runtime_describe(self) -> dict[str, Any]:
        return self.runtime.describe() if self.runtime is not None else {"runtime": self._runtime_name()}

    def _overlapped_start(self) -> bool:
        """Whether the local node may start before the remote is ready: over TCP (a QUIC local node needs the
        certificate of the remote's ready line), on a topology of this Testbed's own (nothing else listens in its
        edge namespace) and unless the caller chose the remote's port."""
        return self.transport == "tcp" and isinstance(self.runtime_spec, str) and "--port" not in self.remote_args

    def _remote_argv(self, port: int = 0) -> list[str]:
        assert self.topology is not None
        argv = python_module("splitbed", "remote-node", "--host", self.topology.edge_addr, "--port", str(port),
                             "--weights", self.weights, "--device", self.edge_device, python=self.python)
        for model in self.models:
            argv += ["--model", model]
        if self.transport == "quic":
            argv += ["--transport", "quic", "--quic-congestion", self.quic_congestion]
        return argv + self.remote_args

    def _local_argv(self) -> list[str]:
        return python_module("splitbed", "local-node", "--connect", f"{self._edge_addr()}:{self.remote_port}",
                             "--weights", self.weights, "--device", self.ue_device, "--jobs", "-", *self._quic_args(),
                             *self.local_args, python=self.python)

    def _quic_args(self) -> list[str]:
        if self.transport != "quic":
            return []
        assert self._quic_ca_path is not None, "the remote's ready line carries its certificate"
        return ["--transport", "quic", "--quic-ca", self._quic_ca_path, "--quic-congestion", self.quic_congestion]

    def _edge_addr(self) -> str:
        assert self.topology is not None
        return self.topology.edge_addr

    def _pin_link(self) -> None:
        assert self.topology is not None
        cpus = self.cpu_plan.link
        link = self.topology.describe().get("link") or {}
        pid = link.get("pid") if isinstance(link, dict) else None
        if not cpus:
            self.cpu_pinning["link"] = "not pinned"
        elif not isinstance(pid, int):
            self.cpu_pinning["link"] = f"not pinned: the {self.topology.backend} backend has no link process"
        else:
            threads = pin_process(pid, cpus)
            self.cpu_pinning["link"] = f"pinned to {format_cpus(cpus)} (pid {pid}, {threads} threads)"

    def _pinned_argv(self, side: str, argv: list[str]) -> list[str]:
        role = "edge" if side == "edge" else "ue"  # a cell's UEs are "ue0", "ue1", ...
        cpus = self.cpu_plan.cpus(role)
        if not cpus:
            self.cpu_pinning[role] = "not pinned"
            return argv
        if self._runtime_name() != "process":
            self.cpu_pinning[role] = (f"not pinned: the {self._runtime_name()} runtime places its nodes (give "
                                      "limits with a cpuset)")
            return argv
        self.cpu_pinning[role] = f"pinned to {format_cpus(cpus)} at exec (taskset)"
        return exec_prefix(cpus) + argv

    def _start_node(self, runtime: NodeRuntime, side: str, argv: list[str], *, stdin: int | None) -> NodeHandle:
        argv = self._pinned_argv(side, argv)
        kwargs: dict[str, Any] = {"stdin": stdin, "stdout": _PIPE, "stderr": None, "env": dict(NODE_ENV)}
        device = self.ue_device if side == "ue" else self.edge_device
        if Path(device).is_absolute():  # a device profile file: a container node must see it (read-only)
            kwargs["mounts"] = [Path(device).parent]
        if side in self.limits:
            kwargs["limits"] = self.limits[side]
        return runtime.start_node(side, argv, **kwargs)

    def _await_ready(self, remote: NodeHandle, lines: queue.Queue[bytes | BaseException | None],
                     arrivals: list[float], deadline: float) -> int:
        """The remote node's port, from its `{"event": "ready", ...}` line on stdout (pumped into `lines`, each
        line's arrival time in `arrivals`); the line's arrival is `start_stamps["remote_ready"]`."""
        seen = 0
        while True:
            item = self._next(lines, deadline, remote, "the remote node's ready line")
            seen += 1
            try:
                message = json.loads(item)
            except (json.JSONDecodeError, UnicodeDecodeError):
                log.debug("remote node stdout: %r", item[:200])
                continue
            if isinstance(message, dict) and message.get("event") == "ready":
                port = message.get("port")
                if not isinstance(port, int) or not 0 < port < 65536:
                    raise TestbedError(f"the remote node announced a bad port {port!r}" + self._tails())
                self.start_stamps["remote_ready"] = arrivals[seen - 1]
                if self.transport == "quic":
                    self._keep_certificate(message.get("quic_cert_pem"))
                return port

    def _keep_certificate(self, pem: Any) -> None:
        """The remote's certificate for this run, in a file the local node reads (removed at close; a crashed
        run's `sb<pid>-*` file is swept at the next start)."""
        if not isinstance(pem, str) or "BEGIN CERTIFICATE" not in pem or len(pem) > 64 * 1024:
            raise TestbedError("the remote node announced no QUIC certificate" + self._tails())
        fd, path = tempfile.mkstemp(prefix=f"sb{os.getpid()}-quic-ca-", suffix=".pem")
        with os.fdopen(fd, "w") as fh:
            fh.write(pem)
        self._quic_ca_path = path

    def _warmup_partition(self, model: str) -> str | int:
        if self.warmup_partition is not None:
            return self.warmup_partition
        from splitbed.models import spec_for

        parts = spec_for(model).partitions
        seeds = [p for p in parts if p.seed_example]
        return (seeds or list(parts))[0].name

    def _run(self, spec: dict[str, Any], *, deadline: float, what: str, local: NodeHandle | None = None,
             lines: queue.Queue[bytes | BaseException | None] | None = None) -> list[dict[str, Any]]:
        """One job on the local node (or on `local`, reading its output from `lines`: a cell's other UEs)."""
        self._require_running()
        job_id = f"tb{next(self._job_ids)}"
        spec = dict(spec, job_id=job_id)
        spec.setdefault("link", self.link_info())
        line = json.dumps(spec, separators=(",", ":")) + "\n"
        parse_job(line)  # validate here (ConfigurationError): a bad spec is the caller's error, not a broken node
        local = self.local if local is None else local
        lines = self._lines if lines is None else lines
        assert local is not None and local.stdin is not None  # started with stdin=PIPE; _require_running checked
        try:
            local.stdin.write(line.encode())
            local.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self._fail(f"cannot send {what} to the local node: {exc}")
        records: list[dict[str, Any]] = []
        refused: JobRefusedError | None = None
        while True:
            item = self._next(lines, deadline, local, what)
            try:
                message = json.loads(item)
            except (json.JSONDecodeError, UnicodeDecodeError):
                self._fail(f"the local node wrote a line that is not JSON during {what}: {item[:200]!r}")
            if not isinstance(message, dict) or message.get("job_id") != job_id:
                log.warning("ignoring a local node line for another job: %r", item[:200])
                continue
            kind = message.get("record_type")
            if kind == "job_error":  # raised after its job_done line, so no stray line is left for the next job
                error = message.get("error") or {}
                refused = JobRefusedError(f"the local node refused {what}: {error.get('code')}: "
                                          f"{error.get('message')}", str(error.get("code")), str(error.get("message")))
                continue
            if kind == "job_done":
                if refused is not None:
                    raise refused
                return records
            records.append(message)

    def _next(self, lines: queue.Queue[bytes | BaseException | None], deadline: float, node: NodeHandle,
              what: str) -> bytes:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"timed out waiting for {what}")
            try:
                item = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if node.poll() is not None:
                    self._fail(f"the {node.side} node exited with status {node.returncode} while waiting for "
                               f"{what}")
                continue
            if item is None:
                code = node.poll()
                self._fail(f"the {node.side} node closed its output (exit status {code}) while waiting for {what}")
            if isinstance(item, BaseException):
                self._fail(f"reading the {node.side} node's output failed: {item}")
            assert isinstance(item, bytes)
            return item

    def _fail(self, message: str) -> NoReturn:
        self._broken = message
        raise TestbedError(message + self._tails())

    def _tails(self) -> str:
        parts = []
        for side, text in self.logs().items():
            if text.strip():
                parts.append(f"\n--- {side} node log (tail) ---\n{text.rstrip()}")
        return "".join(parts)

    def _require_running(self) -> None:
        if not self._started or self._closed:
            raise TestbedError("the testbed is not running (use it inside `with Testbed(...) as bed:`)")
        if self._broken is not None:
            raise TestbedError(f"the testbed is unusable after an earlier failure: {self._broken}")

    def __repr__(self) -> str:
        return (f"Testbed(profile={self.profile.name!r}, backend={self.requested_backend!r}, "
                f"models={list(self.models)}, runtime={self._runtime_name()!r}, ue_device={self.ue_device!r}, "
                f"edge_device={self.edge_device!r})")


_PIPE = -1  # subprocess.PIPE, the value every runtime accepts


def _absolute_if_path(device: str) -> str:
    """A device profile given as a file path, made absolute (nodes may run elsewhere); a name as it is."""
    if device.endswith(".toml") or "/" in device:
        return str(Path(device).resolve())
    return device


def _job_dict(job: Job | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(job, Job):
        spec = asdict(job)
        if spec.get("job_id") is None:
            spec.pop("job_id")
        if spec.get("link") is None:
            spec.pop("link")
        return spec
    if not isinstance(job, Mapping):
        raise TypeError(f"a job is a splitbed.nodes.jobs.Job or a mapping, not {type(job).__name__}")
    return {k: v for k, v in job.items() if k != "job_id"}


def _pump(stream: IO[bytes] | None, into: queue.Queue[bytes | BaseException | None],
          arrivals: list[float] | None = None) -> None:
    """Move lines from a node's stdout into a queue; None marks the end, an exception a broken read. With
    `arrivals`, the time.monotonic() each line was read is appended there before the line is queued (the n-th
    line's time is `arrivals[n]`)."""
    if stream is None:
        into.put(None)
        return
    try:
        while True:
            line = stream.readline(MAX_LINE_BYTES + 1)
            if not line:
                break
            if len(line) > MAX_LINE_BYTES:
                into.put(ValueError(f"a line longer than {MAX_LINE_BYTES} bytes"))
                return
            if line.strip():
                if arrivals is not None:
                    arrivals.append(time.monotonic())
                into.put(line)
    except (OSError, ValueError) as exc:
        into.put(exc)
        return
    into.put(None)

