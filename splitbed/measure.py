"""What each partition of a model costs on this machine, timed with the nodes' own code paths: head and tail
built and called through ModelRunner (`predict_on_batch` after a warm-up), median of `repeats`, round-robin over
the partitions; the real data unit the local node would send for this image and carriage (steady state: the AIPS
is sent once per session, so it is not counted), encoded and decoded with the nodes' format adapter. The
result (`latency.ModelTiming`) feeds the advisor and the sweep's wall-time estimate.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from splitbed.latency import AdviseError, ModelTiming, PartitionTiming

# RESULT message fields besides the scores (timestamps, resources, TCP state, ids): a topk RESULT of mobilenet_v2
# was 2,186 bytes with its TLV header in scripts/measure_overhead.py's records (docs/METRICS.md)
RESULT_OVERHEAD_BYTES = 2000
MAX_REPEATS = 1000


def measure_model(model: str, *, partitions: Sequence[str] | None = None, weights: str = "auto",
                  image: str = "builtin:chelsea", encoding: str = "tlv", compression: str = "none",
                  repeats: int = 5, on_partition: Callable[[str], None] | None = None) -> ModelTiming:
    """Build and time every (or the given) partition of `model` here, with the nodes' own code paths."""
    timings = measure_carriages(model, [(encoding, compression)], partitions=partitions, weights=weights,
                                image=image, repeats=repeats, on_partition=on_partition)
    return next(iter(timings.values()))


def measure_carriages(model: str, carriages: Sequence[tuple[str, str]], *, partitions: Sequence[str] | None = None,
                      weights: str = "auto", image: str = "builtin:chelsea", repeats: int = 5,
                      on_partition: Callable[[str], None] | None = None,
                      shares: bool = True) -> dict[tuple[str, str], ModelTiming]:
    """`measure_model` for several (encoding, compression) carriages at once: compute is timed once, encoding,
    decoding and sizes per carriage. Keys are (encoding, compression) with compression "none" for json-baseline.
    `shares`: also each head's and tail's share of the model's time, as the nodes' device emulation measures it
    (needed to predict on a device profile)."""
    from datetime import datetime, timezone

    import numpy as np

    from splitbed.models import preprocess, registry, spec_for
    from splitbed.models.errors import ModelError
    from splitbed.nodes import formatio
    from splitbed.nodes.images import resolve_image
    from splitbed.nodes.runner import ModelRunner

    if not 1 <= repeats <= MAX_REPEATS:
        raise AdviseError(f"repeats must be 1..{MAX_REPEATS}, got {repeats}")
    wanted: dict[tuple[str, str], int] = {}
    for encoding, compression in carriages:
        if encoding not in ("tlv", "json-baseline"):
            raise AdviseError(f"encoding must be tlv or json-baseline, got {encoding!r}")
        key = (encoding, compression if encoding == "tlv" else "none")
        wanted[key] = formatio.profile_id(compression)[0] if encoding == "tlv" else 0
    try:
        names = registry.select_partitions(spec_for(model), list(partitions) if partitions else ["all"])
    except ModelError as exc:
        raise AdviseError(str(exc)) from None
    runner = ModelRunner(weights=weights)
    spec = runner.spec(model)
    path = resolve_image(image)
    prepared = preprocess.load_image(path, spec)
    preprocess_ms = _median_ms(lambda: preprocess.load_image(path, spec), repeats)
    plans, outputs = [], []
    for name in names:  # build and warm every partition first
        if on_partition is not None:
            on_partition(name)
        plans.append(runner.plan(model, name))
        outputs.append(ModelRunner.run_head(plans[-1], prepared.array))
    # Compute is timed round-robin over the partitions, so that load from elsewhere on a shared machine falls on
    # all of them alike instead of on whichever partition happened to be timed at that moment.
    head: list[list[float]] = [[] for _ in plans]
    tail: list[list[float]] = [[] for _ in plans]
    for _ in range(repeats):
        for i, (plan, arrays) in enumerate(zip(plans, outputs, strict=True)):
            head[i].append(_time_once(functools.partial(ModelRunner.run_head, plan, prepared.array)))
            tail[i].append(_time_once(functools.partial(ModelRunner.run_tail, plan, arrays)))
    head_shares: list[float | None] = [None] * len(plans)
    tail_shares: list[float | None] = [None] * len(plans)
    if shares:
        from splitbed.devices.emulation import call_overhead_cpu_ms, measure_share
        from splitbed.nodes.runner import model_calls

        full_call, identity_call = model_calls(runner.load(model))
        overhead = call_overhead_cpu_ms(identity_call)
        for i, (plan, arrays) in enumerate(zip(plans, outputs, strict=True)):
            head_shares[i] = measure_share(functools.partial(ModelRunner.run_head, plan, prepared.array),
                                           full_call, overhead).share
            tail_shares[i] = measure_share(functools.partial(ModelRunner.run_tail, plan, arrays), full_call,
                                           overhead).share
    results: dict[tuple[str, str], list[PartitionTiming]] = {key: [] for key in wanted}
    result_decode_ms = 0.0
    for i, (name, plan, arrays) in enumerate(zip(names, plans, outputs, strict=True)):
        scores = np.asarray(ModelRunner.run_tail(plan, arrays), dtype=np.float64).ravel()
        result = json.dumps(_result_scores(scores), separators=(",", ":"))
        result_decode_ms = max(result_decode_ms, _median_ms(functools.partial(json.loads, result), repeats))
        for (encoding, compression), profile_id in wanted.items():
            if encoding == "tlv":
                encode_ms, decode_ms, unit_bytes = _time_tlv(arrays, plan.partition_id, profile_id, repeats)
            else:
                encode_ms, decode_ms, unit_bytes = _time_json(arrays, plan.partition_id, repeats)
            results[(encoding, compression)].append(PartitionTiming(
                name, plan.partition_id, float(statistics.median(head[i])), float(statistics.median(tail[i])),
                encode_ms, decode_ms, int(sum(a.nbytes for a in arrays)), unit_bytes,
                len(result) + RESULT_OVERHEAD_BYTES, head_shares[i], tail_shares[i]))
    measured_at = datetime.now(timezone.utc).isoformat()
    return {key: ModelTiming(model, key[0], key[1], image, runner.weights_info(model), repeats, preprocess_ms,
                             result_decode_ms, tuple(parts), measured_at) for key, parts in results.items()}


def _result_scores(scores: Any) -> dict[str, Any]:
    """The scores a RESULT of the default job carries (splitbed.nodes.jobs.Job.result_mode): the best top_k
    [class, score] pairs, or all of them in the full mode."""
    import numpy as np

    from splitbed.nodes.jobs import Job

    job = Job()
    if job.result_mode == "full":
        return {"preds": scores.tolist()}
    order = np.argsort(scores, kind="stable")[::-1][: job.top_k]
    return {"top": [[int(i), float(scores[i])] for i in order]}


def _time_tlv(arrays: list[Any], partition_id: int, profile_id: int, repeats: int) -> tuple[float, float, int]:
    """(encode ms, decode ms, data unit bytes) of the AIPS/TLV carriage, with the nodes' format adapter."""
    from splitbed.nodes import formatio

    aips = formatio.build_aips(1, partition_id, arrays, profile_id)
    encode_ms = _median_ms(lambda: formatio.data_unit(aips, arrays), repeats)
    unit = b"".join(formatio.data_unit(aips, arrays))
    aips_bytes = formatio.aips_unit(aips)
    samples = []
    for _ in range(repeats):
        session = formatio.FormatSession(max_unit_bytes=len(unit) + 4096)
        session.feed(aips_bytes)
        session.drain()
        start = time.perf_counter_ns()
        session.feed(unit)
        outcome = session.drain()
        samples.append((time.perf_counter_ns() - start) / 1e6)
        if outcome.complete is None:
            raise AdviseError(f"the format decoder did not return the tensors of partition {partition_id}")
    return encode_ms, float(statistics.median(samples)), len(unit)


def _time_json(arrays: list[Any], partition_id: int, repeats: int) -> tuple[float, float, int]:
    """(encode ms, decode ms, unit bytes) of the JSON baseline carriage."""
    from splitbed.nodes import formatio
    from splitbed.nodes.protocol import HEADER

    unit = formatio.json_baseline_unit(arrays, partition_id)
    encode_ms = _median_ms(lambda: formatio.json_baseline_unit(arrays, partition_id), repeats)
    payload = unit[HEADER.size:]
    decode_ms = _median_ms(lambda: formatio.decode_json_baseline(payload, len(payload)), repeats)
    return encode_ms, decode_ms, len(unit)


def _time_once(call: Callable[[], Any]) -> float:
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) / 1e6


def _median_ms(call: Callable[[], Any], repeats: int) -> float:
    return float(statistics.median(_time_once(call) for _ in range(repeats)))
