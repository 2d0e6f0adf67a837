"""`splitbed sweep --scheduler tcp://HOST:8786`: the sweep's points measured by the testbeds of a Dask cluster,
one point per machine at a time, the results written here (docs/DISTRIBUTED.md).

The client is the only writer of results.jsonl. It submits each point not yet complete (resume by point key, as
a local sweep) as one task asking for the worker resource `testbed` (= 1 per machine), with the point as plain
JSON (splitbed.sweep.pointwire), and appends each point's records when its result comes back, in the order
points finish (distributed.as_completed). A worker runs the sweep's own run loop on its testbed and returns the
point's records as one result (splitbed.sweep.daskworker); a worker that dies mid-point returns nothing, and Dask
gives the point to another worker (up to its `allowed-failures`; past that the point is left incomplete and said).
A point whose testbed failed twice stops the sweep, as locally: points in flight are cancelled, everything that
came back is kept, and the same command resumes.

Nothing here starts a Dask process: the scheduler and workers are the user's (or a test's LocalCluster).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from splitbed.nodes.metrics import DROPPED_STATUS
from splitbed.sweep import runstate
from splitbed.sweep.hostspeed import is_burst
from splitbed.sweep.plan import SweepSpec, SweepSpecError, points
from splitbed.sweep.pointwire import PointRequest, PointResult, WireError, parse_result, request_text
from splitbed.sweep.runner import SWEEP_META_NAME, Progress, SweepError, SweepOutcome, _Silent, _write_meta
from splitbed.sweep.store import ResultStore

log = logging.getLogger(__name__)

RESOURCE = "testbed"  # the same name as splitbed.sweep.daskworker.RESOURCE (not imported: that module needs Dask)
EVENT_TOPIC = "splitbed-point"
DEFAULT_WAIT_S = 60.0
CONNECT_TIMEOUT_S = 30.0
SCHEMES = ("tcp://", "tls://", "ws://", "wss://", "inproc://")


class DistributedError(SweepError):
    """The cluster cannot run this sweep (unreachable, no testbed worker, unfit workers); nothing was measured."""


def check_address(address: str) -> str:
    """A scheduler address as Dask takes it; SweepSpecError (a usage error) otherwise."""
    text = address.strip()
    scheme = next((s for s in SCHEMES if text.startswith(s)), None)
    rest = text[len(scheme):] if scheme else ""
    if scheme is None or not rest or (scheme != "inproc://" and ":" not in rest.rsplit("]", 1)[-1]):
        raise SweepSpecError(f"--scheduler {address!r} is not a Dask scheduler address: give tcp://HOST:PORT (the "
                             "scheduler prints it; port 8786 by default) or tls://HOST:PORT (docs/DISTRIBUTED.md)")
    return text


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Any:
    """A Client of the scheduler at `address` (not made the default client of this process)."""
    from distributed import Client

    address = check_address(address)
    try:
        return Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise DistributedError(f"cannot reach the Dask scheduler at {address}: {exc}. Is `dask scheduler` running "
                               "there, and is its port open to this machine? (docs/DISTRIBUTED.md)") from None


def list_testbed_workers(client: Any) -> dict[str, dict[str, Any]]:
    """The scheduler's workers that offer the testbed resource: address -> its scheduler info."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return {address: info for address, info in workers.items()
            if float((info.get("resources") or {}).get(RESOURCE, 0)) >= 1}


def wait_for_testbed_workers(client: Any, wait_s: float = DEFAULT_WAIT_S) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + wait_s
    while True:
        found = list_testbed_workers(client)
        if found or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if not found:
        total = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        raise DistributedError(
            f"no worker of the scheduler offers the `{RESOURCE}` resource after {wait_s:.0f} s ({total} worker(s) "
            f"without it): start each machine's worker as `dask worker SCHEDULER --nworkers 1 --nthreads 1 "
            f"--resources {RESOURCE}=1 --preload splitbed.sweep.daskworker` (docs/DISTRIBUTED.md)")
    return found


def prepare_workers(client: Any, spec: SweepSpec, wait_s: float = DEFAULT_WAIT_S) -> dict[str, dict[str, Any]]:
    """Make every testbed worker a splitbed worker (the plugin, for those started without the preload), and
    check them: each one's facts by address. DistributedError names unfit workers, or workers that would measure
    with different weights under `--weights auto`."""
    from splitbed.sweep.daskworker import PLUGIN_NAME, SplitbedWorker, worker_facts

    addresses = list(wait_for_testbed_workers(client, wait_s))
    facts = client.run(worker_facts, workers=addresses)
    if any(f is None for f in facts.values()):
        try:
            client.register_plugin(SplitbedWorker(), name=PLUGIN_NAME)
        except Exception as exc:  # the plugin's setup failed on a worker: said below with the others
            log.warning("splitbed worker setup failed: %s", exc)
        facts = client.run(worker_facts, workers=addresses)
    unfit = {a: (f or {}).get("error") or "not a splitbed worker" for a, f in facts.items() if not f or "error" in f}
    if unfit:
        raise DistributedError("worker(s) that cannot measure: " + "; ".join(f"{a}: {why}" for a, why in
                                                                               unfit.items())
                               + ". Fix them (splitbed doctor on that machine) or stop them.")
    if spec.weights == "auto":
        with_weights = {a: bool((f.get("doctor") or {}).get("imagenet_weights")) for a, f in facts.items()}
        if len(set(with_weights.values())) > 1:
            raise DistributedError(
                "--weights auto would mean ImageNet weights on some workers and random weights on others ("
                + ", ".join(f"{a}: {'ImageNet' if w else 'random'}" for a, w in with_weights.items())
                + "): pass --weights imagenet (after fetching them on every machine) or --weights random:SEED")
    return facts


def run_distributed(spec: SweepSpec, out_dir: str | Path, scheduler: str | Any, *, progress: Progress | None = None,
                    wait_s: float = DEFAULT_WAIT_S, on_event: Callable[[dict[str, Any]], None] | None = None,
                    on_result: Callable[[PointResult], None] | None = None) -> SweepOutcome:
    """Measure every point of `spec` not yet complete in `out_dir` on the cluster at `scheduler` (an address, or
    a distributed.Client that stays open). `on_event` sees the workers' progress events (tests use them): dicts
    with `point`, `worker` (address), `name`, and `phase` or a record's `status` and `warmup`; `on_result` each
    point's result once its records are written (the overhead measurement uses its `wall_s`)."""
    progress = progress or _Silent()
    all_points = points(spec)
    outcome = SweepOutcome(out_dir=Path(out_dir), points=all_points)
    own_client = isinstance(scheduler, str)
    client: Any = connect(scheduler) if isinstance(scheduler, str) else scheduler
    started = time.monotonic()
    started_utc = datetime.now(timezone.utc).isoformat()
    state = "interrupted"
    try:
        with ResultStore(out_dir) as store:
            todo = [p for p in all_points if store.completed(p.key) < p.wanted(spec.repetitions)]
            outcome.skipped_points = len(all_points) - len(todo)
            total = sum(p.wanted(spec.repetitions) - store.completed(p.key) + spec.warmup for p in todo)
            progress.begin(total, outcome.skipped_points, len(all_points))
            for run in _write_meta(outcome.out_dir, spec, started_utc, None, "running", outcome):
                outcome.killed_runs.append(runstate.describe(run))
                log.warning("%s: %s", outcome.out_dir / SWEEP_META_NAME, runstate.describe(run))
            try:
                if todo:
                    progress.phase("checking the cluster's testbed workers")
                    checked = time.monotonic()
                    facts = prepare_workers(client, spec, wait_s)
                    log.info("testbed workers checked in %.3f s", time.monotonic() - checked)
                    progress.phase(f"{len(todo)} points on {len(facts)} testbed worker(s)")
                    _measure(client, spec, todo, store, progress, outcome, on_event, on_result)
                state = "complete" if not outcome.incomplete else "incomplete"
            except SweepError:
                state = "failed"
                raise
            finally:
                outcome.wall_s = time.monotonic() - started
                _write_meta(outcome.out_dir, spec, started_utc, datetime.now(timezone.utc).isoformat(), state,
                            outcome)
    finally:
        if own_client:
            client.close()
    return outcome


def _measure(client: Any, spec: SweepSpec, todo: list[Any], store: ResultStore, progress: Progress,
             outcome: SweepOutcome, on_event: Callable[[dict[str, Any]], None] | None,
             on_result: Callable[[PointResult], None] | None) -> None:
    from distributed import KilledWorker, as_completed

    from splitbed.sweep.daskworker import measure_point, release_testbed

    lock = threading.Lock()

    def handle(event: tuple[float, Any]) -> None:  # in the client's event loop thread
        message = event[1] if isinstance(event, tuple) and len(event) == 2 else event
        if not isinstance(message, dict):
            return
        if on_event is not None:
            on_event(message)
        if "phase" in message:
            with lock:
                progress.phase(f"[{message.get('name') or message.get('worker')}] {message['phase']}")

    client.subscribe_topic(EVENT_TOPIC, handle)
    run_id = uuid.uuid4().hex[:8]
    models_of = {profile: tuple(dict.fromkeys(p.model for p in todo if p.profile == profile))
                 for profile in dict.fromkeys(p.profile for p in todo)}
    futures: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for index, point in enumerate(todo):
        request = PointRequest(spec, point, models_of[point.profile], store.completed(point.key),
                               store.errors[point.key])
        task = f"splitbed-point-{run_id}-{index:06d}"
        futures[task] = client.submit(measure_point, request_text(request), key=task, resources={RESOURCE: 1},
                                      pure=False)
        keys[task] = point.key
    try:
        for future in as_completed(list(futures.values()), loop=client.loop):
            key = keys[future.key]
            if future.status == "error":
                exc = future.exception()
                if isinstance(exc, KilledWorker):
                    log.warning("point %s: every worker that ran it died (%s); left incomplete", key, exc)
                    progress.phase(f"point lost with its workers: {key}")
                    outcome.incomplete.append(key)
                    continue
                raise SweepError(f"point {key} failed on a worker: {type(exc).__name__}: {exc}")
            if future.status == "cancelled":
                outcome.incomplete.append(key)
                continue
            try:
                result = parse_result(future.result(), key)
            except WireError as exc:
                raise SweepError(f"point {key}: the worker's result was refused: {exc}") from None
            finally:
                future.release()
            with lock:
                _keep(result, store, progress, outcome)
            if on_result is not None:
                on_result(result)
            if result.failed is not None:
                raise SweepError(f"{result.failed}\nResults so far are in {store.path}; run the same command to "
                                 "resume.")
    finally:
        pending = [f for f in futures.values() if not f.done()]
        if pending:
            client.cancel(pending)
        client.unsubscribe_topic(EVENT_TOPIC)
        released = time.monotonic()
        try:
            client.run(release_testbed)
            log.info("workers' testbeds released in %.3f s", time.monotonic() - released)
        except Exception as exc:  # a worker gone meanwhile: its testbed went with it
            log.info("releasing the workers' testbeds: %s", exc)


def _keep(result: PointResult, store: ResultStore, progress: Progress, outcome: SweepOutcome) -> None:
    """Append one point's records (the client is the only writer) and count them as a local sweep does."""
    for record in result.records:
        store.append(record)
        if is_burst(record):  # host-speed runs around a paced stream (splitbed.sweep.hostspeed): no inference
            continue
        tags = record.get("tags")
        warmup = isinstance(tags, dict) and bool(tags.get("warmup"))
        if not warmup and record.get("record_type") == "inference":
            if record.get("status") == DROPPED_STATUS:  # a frame the paced workload dropped (splitbed.sweep.pacing)
                outcome.dropped += 1
                progress.advance(record)
                continue
            outcome.inferences += 1
            if record.get("status") != "ok":
                outcome.errors += 1
                continue
        progress.advance(record)
    if result.testbed_start is not None:
        outcome.testbed_starts.append({**result.testbed_start, "worker": result.worker.get("name"),
                                       "hostname": result.worker.get("hostname")})
    if result.incomplete or result.failed is not None:
        outcome.incomplete.append(result.point)
    progress.phase(f"done: {result.point} on {result.worker.get('hostname') or result.worker.get('name')} "
                   f"({result.wall_s:.1f} s)")
