"""What a distributed sweep sends to a worker and gets back, as plain JSON text: the point (its fields and the
sweep's options) and, when the point is done, all of its records in one result.

JSON text, not Python objects, so that nothing a worker returns is unpickled by this project (Dask's own
messages between its processes are its business: docs/DISTRIBUTED.md, "Security"), and so that the client checks a
result the way it checks a results file: capped in size and count, no NaN, every record tagged with the point it
was asked for. A result is all-or-nothing: records measured by a worker that died before returning never reach
the client.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from splitbed.sweep.plan import Point, SweepSpec, SweepSpecError
from splitbed.sweep.store import MAX_LINE_BYTES, point_key

WIRE_VERSION = 1
MAX_REQUEST_BYTES = 1 << 20
MAX_RESULT_BYTES = 256 << 20
MAX_RESULT_RECORDS = 50_000


class WireError(ValueError):
    """A request or result that this version cannot have written."""


@dataclass(frozen=True)
class PointRequest:
    """One point for one worker: `done` and `errors` are the client's counts at submission (draws go on from
    there, as in a local resume); `models` are the models of that profile's points (the testbed's)."""

    spec: SweepSpec
    point: Point
    models: tuple[str, ...]
    done: int = 0
    errors: int = 0


@dataclass
class PointResult:
    """All records of one point from one worker, and what happened there."""

    point: str
    records: list[dict[str, Any]] = field(default_factory=list)
    inferences: int = 0
    errors: int = 0
    incomplete: bool = False
    failed: str | None = None  # the worker could not measure (testbed failed twice, unfit machine): why
    testbed_start: dict[str, Any] | None = None  # set when this point started the worker's testbed
    worker: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


def _refuse_constant(token: str) -> Any:
    raise WireError(f"{token} in a result (records never hold non-finite numbers)")


def _loads(text: str, cap: int, what: str) -> Any:
    if not isinstance(text, str):
        raise WireError(f"a {what} must be JSON text, got {type(text).__name__}")
    if len(text) > cap:
        raise WireError(f"a {what} of {len(text)} characters exceeds the cap of {cap}")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise WireError(f"a {what} that is not JSON: {exc}") from None


def request_text(request: PointRequest) -> str:
    return json.dumps({"version": WIRE_VERSION, "key": request.point.key, "spec": request.spec.to_dict(),
                       "point": asdict(request.point),
                       "models": list(request.models), "done": request.done, "errors": request.errors},
                      allow_nan=False)


def spec_from_dict(data: dict[str, Any]) -> SweepSpec:
    """SweepSpec from its to_dict() form after a JSON round trip (lists back to tuples); unknown fields refused."""
    known = {f.name for f in fields(SweepSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise WireError(f"sweep options this version does not know: {unknown} (install the same splitbed on the "
                        "client and every worker)")
    options: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return SweepSpec(**options)


def parse_request(text: str) -> PointRequest:
    data = _loads(text, MAX_REQUEST_BYTES, "point request")
    if not isinstance(data, dict) or data.get("version") != WIRE_VERSION:
        raise WireError(f"a point request of another version ({_version(data)}; this worker speaks {WIRE_VERSION}): "
                        "install the same splitbed on the client and every worker")
    try:
        spec = spec_from_dict(data["spec"])
        point_fields = {f.name for f in fields(Point)}
        if not isinstance(data["point"], dict) or set(data["point"]) - point_fields:
            raise WireError(f"point fields this version does not know: {sorted(set(data['point']) - point_fields)}")
        point = Point(**data["point"])
        if point.transport not in spec.transports:
            raise WireError(f"the point's transport {point.transport!r} is not one of the sweep's {spec.transports}")
        if point.key != data["key"]:
            raise WireError(f"the point's fields make key {point.key!r}, the request says {data['key']!r}")
        models = tuple(str(m) for m in data["models"])
        done, errors = int(data["done"]), int(data["errors"])
    except SweepSpecError as exc:  # e.g. an image or weights file that is not on this worker
        raise WireError(f"this worker cannot run the sweep's options: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, WireError):
            raise
        raise WireError(f"a malformed point request: {type(exc).__name__}: {exc}") from None
    return PointRequest(spec, point, models, done, errors)


def request_key(text: str) -> str:
    """The point key a request names, for a worker's answer to a request it cannot parse ("unknown" if none)."""
    try:
        data = json.loads(text[:MAX_REQUEST_BYTES])
        return str(data["key"]) if isinstance(data, dict) and isinstance(data.get("key"), str) else "unknown"
    except (TypeError, ValueError):
        return "unknown"


def result_text(result: PointResult) -> str:
    """The worker's answer; raises ValueError for a record holding NaN (the results file refuses them too)."""
    return json.dumps({"version": WIRE_VERSION, **asdict(result)}, allow_nan=False, separators=(",", ":"),
                      default=str)


def parse_result(text: str, expected_point: str) -> PointResult:
    """A worker's result, checked: version, size and record caps, and every record tagged with the point asked
    for (a result for another point, or records of another, are refused whole)."""
    data = _loads(text, MAX_RESULT_BYTES, "point result")
    if not isinstance(data, dict) or data.get("version") != WIRE_VERSION:
        raise WireError(f"a point result of another version ({_version(data)}): install the same splitbed on the "
                        "client and every worker")
    if data.get("point") != expected_point:
        raise WireError(f"a result for point {data.get('point')!r} came back for {expected_point!r}")
    records = data.get("records")
    if not isinstance(records, list) or len(records) > MAX_RESULT_RECORDS:
        raise WireError(f"a point result needs a list of at most {MAX_RESULT_RECORDS} records")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise WireError(f"record {index} of the result is not a JSON object")
        if point_key(record) != expected_point:
            raise WireError(f"record {index} of the result belongs to point {point_key(record)!r}, not "
                            f"{expected_point!r}")
        if len(json.dumps(record, separators=(",", ":"))) > MAX_LINE_BYTES:
            raise WireError(f"record {index} of the result is longer than a results line may be ({MAX_LINE_BYTES})")
    try:
        return PointResult(
            point=expected_point, records=records, inferences=int(data.get("inferences", 0)),
            errors=int(data.get("errors", 0)), incomplete=bool(data.get("incomplete")),
            failed=None if data.get("failed") is None else str(data["failed"]),
            testbed_start=_dict(data.get("testbed_start")) or None,
            worker=_dict(data.get("worker")),
            wall_s=float(data.get("wall_s", 0.0)))
    except (TypeError, ValueError) as exc:
        raise WireError(f"a malformed point result: {exc}") from None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _version(data: Any) -> str:
    return str(data.get("version")) if isinstance(data, dict) else "not an object"
