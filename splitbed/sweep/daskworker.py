"""What makes a Dask worker a splitbed worker, and the task it runs: one sweep point, measured on this machine's
testbed, returned whole to the client (docs/DISTRIBUTED.md).

Start a worker as

    dask worker tcp://SCHEDULER:8786 --nworkers 1 --nthreads 1 --resources testbed=1 \\
        --preload splitbed.sweep.daskworker

The preload (`dask_setup`) installs `SplitbedWorker` before the worker joins: it checks the machine with the
doctor's probes (`splitbed doctor --json`, in a child process: the worker itself never imports TensorFlow) and
refuses to start without the ones a sweep needs, sweeps namespaces and files that crashed runs left here, and
keeps the machine's facts (CPU model, cores, kernel, steal, doctor verdicts) for the client. A worker started
without the preload gets the same plugin from the client at the start of a sweep.

Each point is a task that asks for the `testbed` resource, so a machine runs one point at a time (one testbed,
its CPUs to itself). The task runs the sweep's own run loop (splitbed.sweep.runner.measure_points) on the
worker's testbed, kept between points by splitbed.sweep.bedcache. The point's records are collected in memory and returned as one JSON result; the
worker never writes a results file. If the worker dies mid-point its records die with it and Dask gives the
point to another worker, which measures it from the client's counts again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin, get_worker

from splitbed.sweep.bedcache import IDLE_CLOSE_S, Lease, TestbedCache
from splitbed.sweep.pointwire import PointResult, WireError, parse_request, request_key, result_text

log = logging.getLogger(__name__)

PLUGIN_NAME = "splitbed"
RESOURCE = "testbed"
EVENT_TOPIC = "splitbed-point"  # progress events (phase, each record's status) from the worker to the client
REQUIRED_PROBES = ("root_or_userns", "netns", "tensorflow")  # without these no testbed can run here
DOCTOR_TIMEOUT_S = 300.0
STEAL_WINDOW_S = 1.0


class WorkerUnfit(RuntimeError):
    """This machine cannot run a testbed (a probe a sweep needs failed); the message says how to fix it."""


def check_machine(timeout_s: float = DOCTOR_TIMEOUT_S) -> dict[str, dict[str, Any]]:
    """The doctor's verdicts on this machine (probe name -> ok, must_have, detail, fix); WorkerUnfit when a probe
    of REQUIRED_PROBES failed. Run as `splitbed doctor --json` in a child process."""
    from netem.pyexec import python_module

    try:
        done = subprocess.run(python_module("splitbed.doctor", "--json", "--no-userns"), capture_output=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise WorkerUnfit(f"splitbed doctor did not finish within {timeout_s:.0f} s on this machine") from None
    try:
        probes = json.loads(done.stdout[: 4 << 20])
        verdicts = {str(p["name"]): {k: p.get(k) for k in ("ok", "must_have", "detail", "fix")} for p in probes}
    except (ValueError, TypeError, KeyError):
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise WorkerUnfit(f"splitbed doctor failed on this machine (exit {done.returncode}): "
                          f"{' / '.join(tail) or 'no output'}; is splitbed installed here (README: make setup)?"
                          ) from None
    why = unfit_reason(verdicts)
    if why is not None:
        raise WorkerUnfit(why)
    return verdicts


def unfit_reason(verdicts: dict[str, dict[str, Any]]) -> str | None:
    """One line naming each probe of REQUIRED_PROBES that failed (or did not run), with the doctor's fix."""
    missing = [name for name in REQUIRED_PROBES if not (verdicts.get(name) or {}).get("ok")]
    if not missing:
        return None
    return "this machine cannot run a testbed: " + "; ".join(
        f"{name}: {(verdicts.get(name) or {}).get('detail') or 'not probed'} (fix: "
        f"{(verdicts.get(name) or {}).get('fix') or 'see splitbed doctor'})" for name in missing)


def steal_pct(window_s: float = STEAL_WINDOW_S) -> float | None:
    """Share (%) of the machine's CPU time the hypervisor stole over `window_s` (None: the kernel does not say)."""
    from netem.hostload import read_counters

    start = read_counters()
    time.sleep(window_s)
    share = read_counters().since(start).stolen_share
    return None if share is None else round(100.0 * share, 2)


def machine_facts(steal_window_s: float = STEAL_WINDOW_S) -> dict[str, Any]:
    """The facts a client shows and checks: host_info() (hostname, CPU model, cores, kernel, memory) + steal."""
    from splitbed.nodes.resources import host_info

    return {**host_info(), "host_cpu_stolen_pct": steal_pct(steal_window_s), "pid": os.getpid()}


class PointRecords:
    """The run loop's result store on a worker: counts start from the client's, records stay in memory."""

    def __init__(self, key: str, done: int, errors: int) -> None:
        self.path = "the client's results file"
        self.done: Counter[str] = Counter({key: done})
        self.errors: Counter[str] = Counter({key: errors})
        self.records: list[dict[str, Any]] = []
        self.inferences = 0
        self.failed = 0

    def completed(self, key: str) -> int:
        return self.done[key]

    def append(self, record: dict[str, Any]) -> None:
        from splitbed.sweep.store import is_measurement, point_key

        self.records.append(record)
        key = point_key(record)
        if key is None or not is_measurement(record):
            return
        if record.get("status") == "ok":
            self.done[key] += 1
        else:
            self.errors[key] += 1


class _EventProgress:
    """The run loop's progress, sent to the client as Dask events (for its progress line; records come with the
    result)."""

    def __init__(self, worker: Any, key: str) -> None:
        self.worker, self.key = worker, key
        self.name = str(worker.name)

    def begin(self, total: int, done_points: int, points: int) -> None:
        pass

    def phase(self, text: str) -> None:
        self._send({"phase": text})

    def advance(self, record: dict[str, Any]) -> None:
        tags = record.get("tags")
        tags = tags if isinstance(tags, dict) else {}
        self._send({"status": str(record.get("status")), "warmup": bool(tags.get("warmup"))})

    def _send(self, message: dict[str, Any]) -> None:
        try:
            # the scheduler adds "worker": this worker's address
            self.worker.log_event(EVENT_TOPIC, {"point": self.key, "name": self.name, **message})
        except Exception:  # progress is best effort; the result carries everything
            log.debug("progress event not sent", exc_info=True)


class SplitbedWorker(WorkerPlugin):
    """Makes a Dask worker a splitbed worker (see the module docstring). `check=False` skips the doctor and the
    stale sweep (tests with a fake testbed); `factory` replaces splitbed.testbed.Testbed (tests)."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self, *, check: bool = True, factory: Any = None, steal_window_s: float = STEAL_WINDOW_S,
                 idle_close_s: float = IDLE_CLOSE_S) -> None:
        self.check = check
        self.factory = factory
        self.steal_window_s = steal_window_s
        self.idle_close_s = idle_close_s
        self.facts: dict[str, Any] | None = None
        self.error: str | None = None
        self.testbeds: TestbedCache | None = None

    async def setup(self, worker: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.prepare, worker)

    def prepare(self, worker: Any) -> None:
        """Check the machine, sweep stale namespaces, gather the facts; raises WorkerUnfit (the error is kept for
        the client too)."""
        try:
            verdicts: dict[str, dict[str, Any]] = {}
            swept: list[str] = []
            if self.check:
                verdicts = check_machine()
                from netem.stale import sweep_stale

                swept = sweep_stale()
            facts = machine_facts(self.steal_window_s)
            facts.update(worker=str(worker.name), address=str(worker.address), swept=len(swept),
                         resources=dict(worker.state.total_resources),
                         doctor={name: bool(v.get("ok")) for name, v in verdicts.items()},
                         version=_version())
            self.testbeds = TestbedCache(self.factory, self.idle_close_s)
            self.facts = facts
            self.error = None
            log.info("splitbed worker ready on %s (%s): %s", facts["hostname"], facts["cpu_model"],
                     f"swept {len(swept)} stale objects" if swept else "nothing stale")
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, WorkerUnfit) else str(exc)
            raise

    async def teardown(self, worker: Any) -> None:
        if self.testbeds is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.testbeds.close)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("splitbed")
    except PackageNotFoundError:
        return "unknown"


async def dask_setup(worker: Any) -> None:
    """`dask worker ... --preload splitbed.sweep.daskworker`: the worker does not start on an unfit machine."""
    await worker.plugin_add(plugin=SplitbedWorker(), name=PLUGIN_NAME, catch_errors=False)


def plugin_of(worker: Any) -> SplitbedWorker | None:
    plugin = getattr(worker, "plugins", {}).get(PLUGIN_NAME)
    return plugin if isinstance(plugin, SplitbedWorker) else None


def worker_facts(dask_worker: Any) -> dict[str, Any] | None:
    """For `client.run`: this worker's facts, `{"error": ...}` when its check failed, None when it is not a
    splitbed worker."""
    plugin = plugin_of(dask_worker)
    if plugin is None:
        return None
    if plugin.facts is None:
        return {"error": plugin.error or "the splitbed worker plugin is still setting up"}
    return plugin.facts


def release_testbed(dask_worker: Any) -> bool:
    """For `client.run` at the end of a sweep: close this worker's testbed unless a point is using it."""
    plugin = plugin_of(dask_worker)
    return True if plugin is None or plugin.testbeds is None else plugin.testbeds.release()


def measure_point(request: str) -> str:
    """The task: measure one point (a JSON request, splitbed.sweep.pointwire) and return its result as JSON."""
    begin = time.monotonic()
    worker = get_worker()
    plugin = plugin_of(worker)
    who = {"name": str(worker.name), "address": str(worker.address), "pid": os.getpid()}
    try:
        parsed = parse_request(request)
    except WireError as exc:
        key = request_key(request)
        return result_text(PointResult(point=key, failed=f"worker {who['name']}: {exc}", worker=who))
    key = parsed.point.key
    if plugin is None or plugin.facts is None or plugin.testbeds is None:
        why = "it is not a splitbed worker" if plugin is None else (plugin.error or "its setup has not finished")
        return result_text(PointResult(point=key, failed=f"worker {who['name']} cannot measure: {why}", worker=who))
    who["hostname"] = str(plugin.facts.get("hostname"))
    from splitbed.sweep.runner import SweepError, SweepOutcome, measure_points

    store = PointRecords(key, parsed.done, parsed.errors)
    outcome = SweepOutcome(out_dir=Path("."), points=[parsed.point])
    cache = plugin.testbeds
    cache.last_start = None
    failed = None
    try:
        measure_points(parsed.spec, parsed.point.profile, [parsed.point], store, _EventProgress(worker, key), outcome,
                       _with_models(cache, parsed.models))
    except SweepError as exc:
        failed = f"worker {who['name']} on {who['hostname']}: {exc}"
    finally:
        cache.done()
    for record in store.records:
        tags = record.get("tags")
        if isinstance(tags, dict):
            tags["worker"] = dict(who)
    result = PointResult(point=key, records=store.records, inferences=outcome.inferences, errors=outcome.errors,
                         incomplete=key in outcome.incomplete, failed=failed, testbed_start=cache.last_start,
                         worker=who, wall_s=round(time.monotonic() - begin, 3))
    return result_text(result)


def _with_models(cache: TestbedCache, models: tuple[str, ...]) -> Any:
    """The loop's testbed factory: the testbed serves the models of the whole profile batch the client saw (so
    that consecutive points of one profile share it, as in a local sweep)."""

    def factory(**options: Any) -> Lease:
        options["models"] = list(dict.fromkeys([*models, *options.get("models", [])]))
        return cache.lease(**options)

    return factory
