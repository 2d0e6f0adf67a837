"""The sweep's results file: JSON Lines, one metrics record per inference, appended and flushed per line.

Appending is crash-safe in the only way that matters for resuming: each record is one write of one line followed
by flush + fsync, so after a kill the file holds whole records plus at most one torn last line. Opening the file
for appending cuts such a torn tail off (it is set aside in `<name>.torn` for inspection, never silently lost),
so the next record starts on a line of its own. Reading never trusts the file: each line is capped in length
and must be a JSON object; anything else is counted and skipped with its line number. So are records this
project cannot have written (NaN or Infinity, which its writers refuse; no model, partition or encoding) and
repeats of a record already read (same session, inference index and start time): a summary never gets an
`unknown` row or a point measured more often than it was.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from splitbed.nodes.metrics import DROPPED_STATUS

log = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
MAX_LINE_BYTES = 8 << 20
MAX_RECORDS = 2_000_000


class ResultsError(ValueError):
    """A results file or directory cannot be used."""


@dataclass
class ReadResult:
    """Records read from a results file, and what was skipped (line number, reason)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def results_path(path: str | Path) -> Path:
    """The JSONL file of a results directory, or the file itself."""
    path = Path(path)
    if path.is_dir():
        return path / RESULTS_NAME
    return path


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} in a record (this project's writers refuse non-finite numbers)")


def _not_a_record(record: dict[str, Any]) -> str | None:
    """Why `record` cannot be one of our metrics records, or None."""
    if record.get("record_type") != "inference":
        return None  # job and action records carry other fields
    for key in ("model", "partition_name", "encoding", "status"):
        if not isinstance(record.get(key), str):
            return f"an inference record without a string {key!r}"
    return None


def _identity(record: dict[str, Any]) -> tuple[Any, ...] | None:
    session, index, started = (record.get("session_id"), record.get("session_inference_index"),
                               record.get("started_at_utc"))
    if record.get("record_type") != "inference" or not session or not isinstance(started, str):
        return None
    return (str(session), index, started, record.get("repetition"))


def read_records(path: str | Path) -> ReadResult:
    """Every JSON-object line of a results file (or directory), with capped line length and record count;
    lines that are not records of ours, or repeat one already read, are skipped with the reason."""
    file = results_path(path)
    if not file.is_file():
        raise ResultsError(f"no results file at {file} (expected a sweep directory or a .jsonl file)")
    result = ReadResult()
    seen: dict[tuple[Any, ...], int] = {}
    with file.open("rb") as handle:
        for number, line in enumerate(_capped_lines(handle), start=1):
            if isinstance(line, str):
                result.skipped.append((number, line))
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line, parse_constant=_refuse_constant)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                result.skipped.append((number, f"not JSON: {exc}"))
                continue
            except ValueError as exc:
                result.skipped.append((number, str(exc)))
                continue
            if not isinstance(record, dict):
                result.skipped.append((number, "not a JSON object"))
                continue
            why = _not_a_record(record)
            if why is not None:
                result.skipped.append((number, why))
                continue
            identity = _identity(record)
            if identity is not None:
                first = seen.setdefault(identity, number)
                if first != number:
                    result.skipped.append((number, f"a repeat of line {first} (same session, inference index, "
                                                   "start time and repetition)"))
                    continue
            if len(result.records) >= MAX_RECORDS:
                raise ResultsError(f"{file} has more than {MAX_RECORDS} records; split it")
            result.records.append(record)
    return result


def _capped_lines(handle: Any) -> Iterator[bytes | str]:
    """Lines as bytes; a str in place of a line says why it was dropped (too long)."""
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # skip the rest of the oversized line
                line = handle.readline(MAX_LINE_BYTES + 1)
            yield f"line longer than {MAX_LINE_BYTES} bytes"
            continue
        yield line


def is_measurement(record: dict[str, Any]) -> bool:
    """An inference record that counts: not a warm-up, not an action or job record."""
    tags = record.get("tags")
    return record.get("record_type") == "inference" and not (isinstance(tags, dict) and tags.get("warmup"))


COUNTED_STATUSES = ("ok", DROPPED_STATUS)  # a paced workload's dropped frame completes its place in the point (sweep.pacing)


def counts_for_point(record: dict[str, Any]) -> bool:
    """A measured record that completes one of its point's repetitions: a good inference, or a frame its workload's
    overload policy dropped (an error record does not: the point tries again)."""
    return is_measurement(record) and record.get("status") in COUNTED_STATUSES


def point_key(record: dict[str, Any]) -> str | None:
    tags = record.get("tags")
    key = tags.get("point") if isinstance(tags, dict) else None
    return key if isinstance(key, str) else None


def completed_counts(directory: str | Path) -> Counter[str]:
    """Good repetitions per point key in a results directory, read-only (nothing is created or repaired)."""
    counts: Counter[str] = Counter()
    path = Path(directory) / RESULTS_NAME
    if path.is_file():
        for record in read_records(path).records:
            key = point_key(record)
            if key is not None and counts_for_point(record):
                counts[key] += 1
    return counts


class ResultStore:
    """Append-only JSONL results of one sweep directory; knows how many good repetitions each point has."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / RESULTS_NAME
        self.done: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.torn_bytes = 0
        self._handle: TextIO | None = None

    def open(self) -> ResultStore:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.torn_bytes = self._cut_torn_tail()
        if self.path.exists():
            existing = read_records(self.path)
            for number, reason in existing.skipped:
                log.warning("%s line %d skipped: %s", self.path, number, reason)
            for record in existing.records:
                self._count(record)
        self._handle = self.path.open("a", encoding="utf-8")
        return self

    def __enter__(self) -> ResultStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line, flushed and synced before returning."""
        if self._handle is None:
            raise ResultsError("the result store is not open")
        line = json.dumps(record, separators=(",", ":"), allow_nan=False, default=str)
        self._handle.write(line + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._count(record)

    def completed(self, key: str) -> int:
        """Repetitions recorded for a point: good (status ok) measurements and dropped frames (counts_for_point)."""
        return self.done[key]

    def _count(self, record: dict[str, Any]) -> None:
        key = point_key(record)
        if key is None or not is_measurement(record):
            return
        if counts_for_point(record):
            self.done[key] += 1
        else:
            self.errors[key] += 1

    def _cut_torn_tail(self) -> int:
        """Remove a last line without its newline (a write cut short by a kill); keep it in `.torn`."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0
        with self.path.open("rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return 0
            position = size
            chunk = 65536
            while position > 0:  # find the last newline
                start = max(0, position - chunk)
                handle.seek(start)
                data = handle.read(position - start)
                index = data.rfind(b"\n")
                if index >= 0:
                    position = start + index + 1
                    break
                position = start
            handle.seek(position)
            torn = handle.read()
            with self.path.with_suffix(self.path.suffix + ".torn").open("ab") as keep:
                keep.write(torn + b"\n")
            handle.truncate(position)
        log.warning("%s ended in a torn line of %d bytes (interrupted write); moved to %s.torn", self.path,
                    len(torn), self.path.name)
        return len(torn)
