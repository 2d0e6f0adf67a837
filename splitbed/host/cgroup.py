"""The CPU and memory limits the calling process runs under, read from its cgroup (v1 or v2).

A node in a container sees the host's CPU count (`os.cpu_count()` is 2 here even under `--cpus 0.5`), so a
CPU utilisation "of the usable cores" would be wrong by the limit's factor. Metrics code asks here instead.
Works inside a container (its cgroup is mounted at /sys/fs/cgroup) and on the host (looked up via
/proc/self/cgroup); returns None where no limit applies.
"""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 reports "no memory limit" as a huge page-aligned number; anything above 2**60 is unlimited.
_UNLIMITED = 1 << 60


def _own_paths(controller: str) -> list[Path]:
    """Candidate cgroup directories of this process for a v1 controller ("cpu", "memory") or v2 ("")."""
    candidates: list[Path] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        names = controllers.split(",") if controllers else [""]
        if controller in names:
            base = CGROUP_ROOT / (controller if controller else "")
            for mount in (base, CGROUP_ROOT / "cpu,cpuacct") if controller == "cpu" else (base,):
                candidates.append(mount / rel.lstrip("/"))
                candidates.append(mount)  # inside a container its own cgroup is mounted at the root
    return [path for path in candidates if path.is_dir()]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_limit_cores() -> float | None:
    """CPU time per wall second allowed by the CFS quota (0.5 = half a core), or None when unlimited."""
    for directory in _own_paths(""):
        text = _read(directory / "cpu.max")  # v2: "<quota|max> <period>"
        if text:
            quota_v2, _, period_v2 = text.partition(" ")
            return None if quota_v2 == "max" else int(quota_v2) / int(period_v2 or 100000)
    for directory in _own_paths("cpu"):
        quota_text, period_text = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
        if quota_text is not None and period_text:
            quota = int(quota_text)
            return None if quota < 0 else quota / int(period_text)
    return None


def memory_limit_bytes() -> int | None:
    """The cgroup's hard memory cap in bytes, or None when unlimited."""
    for directory in _own_paths(""):
        text = _read(directory / "memory.max")
        if text:
            return None if text == "max" else int(text)
    for directory in _own_paths("memory"):
        text = _read(directory / "memory.limit_in_bytes")
        if text:
            value = int(text)
            return None if value >= _UNLIMITED else value
    return None


def cpu_stat_file() -> Path | None:
    """The cpu.stat file that holds this process's throttling counters, or None. A meter resolves it once
    (a node does not change cgroup while it runs): looking it up reads /proc/self/cgroup and probes directories,
    work that would otherwise sit at both edges of every metered window (docs/METRICS.md, "The testbed's own
    share")."""
    for directory in _own_paths("") + _own_paths("cpu"):
        if parse_cpu_stat(_read(directory / "cpu.stat")) is not None:
            return directory / "cpu.stat"
    return None


def cpu_throttling(stat_file: Path | None = None) -> dict[str, int] | None:
    """CFS throttling counters of this process's cgroup: periods, throttled periods, throttled time (ns).
    `stat_file`: the file cpu_stat_file() found (else it is looked up now)."""
    if stat_file is not None:
        return parse_cpu_stat(_read(stat_file))
    for directory in _own_paths("") + _own_paths("cpu"):
        counters = parse_cpu_stat(_read(directory / "cpu.stat"))
        if counters is not None:
            return counters
    return None


def parse_cpu_stat(text: str | None) -> dict[str, int] | None:
    """The counters of a cpu.stat text; None for no text or one without them (v2's root cgroup)."""
    if not text:
        return None
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    if "nr_throttled" not in fields:
        return None
    throttled_ns = int(fields["throttled_usec"]) * 1000 if "throttled_usec" in fields \
        else int(fields.get("throttled_time", 0))
    return {"nr_periods": int(fields.get("nr_periods", 0)), "nr_throttled": int(fields["nr_throttled"]),
            "throttled_ns": throttled_ns}
