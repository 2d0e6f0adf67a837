"""What one inference costs a node's process: CPU time and utilisation, peak memory, energy, GPU.

A `ResourceMeter` measures a *window* (start() ... stop()) of the calling process:
- CPU time: `time.process_time_ns()` (CLOCK_PROCESS_CPUTIME_ID: user + system of every thread, so TensorFlow's
  worker threads count). Utilisation = CPU time / wall time of the window, in percent of one core (it can exceed
  100 on several cores; the record also gives it divided by the usable core count, and by the cores the
  process's cgroup CPU quota allows, e.g. a UE container's `--cpus 0.5`, with the time the quota throttled it).
- Peak memory: `ru_maxrss` is a lifetime peak, useless per inference. Where the kernel allows it (Linux >= 4.0,
  /proc/self/clear_refs writable) the window resets the process's high-water mark (write "5" to clear_refs)
  at start and reads VmHWM at stop: an exact per-window peak of resident memory, taken by the kernel. Otherwise
  a sampler thread reads RSS every SAMPLER_INTERVAL_S and keeps the maximum (it can miss spikes shorter than the
  interval; the record names the method). Both are process-wide: overlapping windows in one process (concurrent
  sessions on the remote node) share them, so the remote serialises its measured windows.
- Energy: Intel/AMD RAPL package counters under /sys/class/powercap where readable (whole package, every
  process); otherwise null with the reason, plus an estimate labelled as such: CPU time x a per-core power
  figure read from splitbed/nodes/data/power.toml.
- GPU: devices as TensorFlow lists them; none here (tensorflow-cpu), recorded with that reason.
- Pauses of the process itself: Python's garbage collections in the window (count and time, from
  `gc.callbacks`) and the page faults of the whole process (`getrusage`: minor = mapped without I/O, major =
  read from disk). A single slow inference with many of either has its cause in the record (the sweep's summary
  names it).
- The host: CPU time the hypervisor stole from the whole (virtual) machine and the time tasks waited for a CPU
  during the window (netem.hostload). Not the node's cost: whether its times describe the node or a VM that was
  descheduled meanwhile.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import psutil

from netem.hostload import PROC_STAT, PSI_CPU, raw_counters, read_counters
from netem.procfile import MAX_READ_BYTES, KeptFile
from splitbed.host import cgroup

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

POWERCAP_ROOT = Path("/sys/class/powercap")
CLEAR_REFS = Path("/proc/self/clear_refs")
PROC_STATUS = Path("/proc/self/status")
PROC_STATM = Path("/proc/self/statm")
POWER_DATA = Path(__file__).with_name("data") / "power.toml"
SAMPLER_INTERVAL_S = 0.002
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
SAMPLER_METHOD = f"sampler: RSS polled every {SAMPLER_INTERVAL_S * 1000:g} ms (may miss shorter spikes)"
VMHWM_METHOD = "vmhwm-reset: kernel high-water mark of resident memory, reset at window start"
HEAD_BYTES = 4096  # what the edges read of a file whose first lines they parse (/proc/stat goes on per CPU)


class ResourceFigures(TypedDict):
    """One window's figures, as they appear (prefixed local_/remote_) in the metrics record."""

    wall_ms: float
    cpu_time_ms: float
    cpu_utilisation_pct: float
    cpu_utilisation_of_host_pct: float
    usable_cores: int
    cpu_limit_cores: float | None
    cpu_utilisation_of_limit_pct: float
    cpu_throttled_ms: float | None
    rss_start_bytes: int
    peak_rss_bytes: int
    peak_rss_increase_bytes: int
    peak_rss_method: str
    energy_rapl_mj: float | None
    energy_rapl_reason: str
    energy_estimate_mj: float
    energy_estimate_method: str
    host_cpu_ms: float | None
    host_cpu_stolen_ms: float | None
    host_cpu_wait_ms: float | None
    gc_collections: int
    gc_ms: float
    minor_faults: int
    major_faults: int
    counters_late_ms: float


@dataclass(frozen=True)
class PowerFigure:
    """The per-core power used for the labelled energy estimate, with where it comes from."""

    watts_per_busy_core: float
    basis: str
    source: str


def load_power_figure(path: Path = POWER_DATA) -> PowerFigure:
    data = tomllib.loads(path.read_text())["cpu_estimate"]
    return PowerFigure(float(data["watts_per_busy_core"]), str(data["basis"]), str(data["source"]))


def usable_cores() -> int:
    """Cores this process may run on (affinity), which bounds its utilisation."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def current_rss_bytes() -> int:
    try:
        rss = _status_bytes(PROC_STATUS.read_bytes(), b"VmRSS:")
    except OSError:
        rss = None
    return rss if rss is not None else int(psutil.Process().memory_info().rss)


class _RssSampler(threading.Thread):
    """Fallback peak-RSS method: poll RSS every SAMPLER_INTERVAL_S until stopped."""

    def __init__(self) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.peak = current_rss_bytes()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLER_INTERVAL_S):
            self.peak = max(self.peak, current_rss_bytes())

    def finish(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, current_rss_bytes())


@dataclass
class RaplReading:
    """Package energy counters (uJ) by zone path, or why there are none."""

    counters_uj: dict[Path, int]
    reason: str


def _rapl_zones(root: Path) -> list[Path]:
    # Top-level zones are packages (intel-rapl:0); sub-zones (intel-rapl:0:0) are inside them: do not add them.
    return sorted(p for p in root.glob("*rapl:*") if p.name.count(":") == 1 and (p / "energy_uj").exists())


def read_rapl(root: Path = POWERCAP_ROOT) -> RaplReading:
    """One reading of the package counters under `root` (a meter keeps them open instead: RaplCounters)."""
    counters = RaplCounters(root)
    try:
        return counters.read()
    finally:
        counters.close()


def rapl_delta_mj(start: RaplReading, stop: RaplReading) -> tuple[float | None, str]:
    """Energy between two readings in millijoules, handling counter wrap-around, or None and the reason."""
    if not start.counters_uj or not stop.counters_uj:
        return None, start.reason or stop.reason
    total_uj = 0
    for zone, begin in start.counters_uj.items():
        end = stop.counters_uj.get(zone)
        if end is None:
            return None, f"RAPL zone {zone} disappeared during the window"
        if end < begin:
            try:
                wrap = int((zone / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                return None, f"RAPL counter {zone} wrapped and max_energy_range_uj is unreadable"
            end += wrap
        total_uj += end - begin
    return total_uj / 1000.0, "RAPL package energy over the window (whole package: every process on it)"


class RaplCounters:
    """The package counters under a powercap root (read_rapl: one reading; a meter: both edges of every window).
    The zones are looked for once: a powercap driver does not appear or vanish while a node runs, and neither does
    the right to read it. Where the first reading found none (a VM here) or could not read one, its reason is
    fixed and no later reading reads anything; where it read them, their files are kept open and re-read
    (netem.procfile)."""

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        self._none: RaplReading | None = None
        self._files: dict[Path, KeptFile] = {}
        if not root.exists():
            self._none = RaplReading({}, f"RAPL not available: {root} does not exist (no powercap driver, or a VM)")
            return
        zones = _rapl_zones(root)
        if not zones:
            self._none = RaplReading({}, f"RAPL not available: no package zone with energy_uj under {root}")
            return
        self._files = {zone: KeptFile(zone / "energy_uj") for zone in zones}
        first = self.read()
        if not first.counters_uj:
            self._none = first
            self.close()

    def read(self) -> RaplReading:
        if self._none is not None:
            return self._none
        counters: dict[Path, int] = {}
        for zone, kept in self._files.items():
            data = kept.read_bytes()
            try:
                counters[zone] = int(data if data is not None else b"")
            except ValueError:
                return RaplReading({}, _rapl_unreadable(zone / "energy_uj", data))
        return RaplReading(counters, "")

    def close(self) -> None:
        for kept in self._files.values():
            kept.close()


def _rapl_unreadable(path: Path, data: bytes | None) -> str:
    """Why a zone's counter gave no number; for a file that could not be opened or read, the error a fresh read
    gives (a permission error: reading needs root on kernels since 5.10)."""
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            return f"RAPL not readable: {path}: {exc} (reading needs root on kernels since 5.10)"
    return f"RAPL not readable: {path} gave {data!r}"


@dataclass
class WindowStart:
    wall_ns: int
    cpu_ns: int
    rss_bytes: int
    hwm_reset: bool
    sampler: _RssSampler | None
    rapl: RaplReading
    throttled_ns: int | None = None
    host: tuple[int | None, int | None, int | None] = (None, None, None)  # netem.hostload.raw_counters
    pauses: tuple[int, int, int, int] = (0, 0, 0, 0)  # gc collections, gc ns, minor faults, major faults


@dataclass(frozen=True)
class WindowEnd:
    at_ns: int     # CLOCK_MONOTONIC when the window ended
    cpu_ns: int    # the process's CPU time in the window
    wall_ns: int   # the window's length


class _GcClock:
    """Counts this process's garbage collections and the time they take (one instance, in gc.callbacks)."""

    def __init__(self) -> None:
        self.collections = 0
        self.total_ns = 0
        self._started: int | None = None

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
        elif self._started is not None:
            self.total_ns += time.perf_counter_ns() - self._started
            self.collections += 1
            self._started = None


_GC_CLOCK = _GcClock()


def _pauses() -> tuple[int, int, int, int]:
    if _GC_CLOCK not in gc.callbacks:
        gc.callbacks.append(_GC_CLOCK)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return _GC_CLOCK.collections, _GC_CLOCK.total_ns, usage.ru_minflt, usage.ru_majflt


class ResourceMeter:
    """Measures CPU, peak memory and energy of this process over start()/stop() windows."""

    def __init__(self, power: PowerFigure | None = None, *, peak_method: str = "auto") -> None:
        if peak_method not in ("auto", "vmhwm-reset", "sampler"):
            raise ValueError(f"peak_method must be auto, vmhwm-reset or sampler, not {peak_method!r}")
        self.power = power or load_power_figure()
        self.peak_method = peak_method
        self.cores = usable_cores()
        self.cpu_limit = cgroup.cpu_limit_cores()
        self.cpu_stat = cgroup.cpu_stat_file()  # found once: the window's edges only read it
        self.rapl = RaplCounters()
        self.estimate_method = (f"ESTIMATE, not a measurement: cpu_time_ms x {self.power.watts_per_busy_core} W "
                                f"per busy core ({self.power.source})")
        self._files: _ProcFiles | None = None

    def files(self) -> _ProcFiles:
        """The files read at the window's edges, opened once per process (a meter carried across a fork reopens
        them: /proc/self would still be the parent's)."""
        if self._files is None or self._files.pid != os.getpid():
            self._files = _ProcFiles(self.cpu_stat, clear_refs=self.peak_method != "sampler")
        return self._files

    def start(self) -> WindowStart:
        files = self._files
        if files is None or files.pid != os.getpid():
            files = self.files()
        if files.fds is not None:
            try:
                return _start_fast(files.fds, self.rapl.read())
            except (OSError, ValueError, IndexError):
                pass  # anything unexpected in a file: the general path below reads it and says what is missing
        # Reset first, then read the resident size the window starts from (statm: the same counter as VmRSS,
        # without the rest of /proc/self/status); the high-water mark's presence was checked once (_ProcFiles).
        hwm_reset = files.clear_refs.write(b"5") and files.has_hwm
        if not hwm_reset and self.peak_method == "vmhwm-reset":
            raise OSError(f"cannot reset the resident high-water mark through {CLEAR_REFS}")
        rss = _statm_rss(files.statm.read_bytes())
        if rss is None:
            rss = current_rss_bytes()
        sampler = None
        if not hwm_reset:
            sampler = _RssSampler()
            sampler.start()
        rapl = self.rapl.read()
        throttled, host = files.counters()
        pauses = _pauses()
        return WindowStart(time.monotonic_ns(), time.process_time_ns(), rss, hwm_reset, sampler, rapl, throttled,
                           host, pauses)

    def stop(self, start: WindowStart) -> ResourceFigures:
        return self.finish(start, self.end(start))

    @staticmethod
    def end(start: WindowStart) -> WindowEnd:
        """The window's end: its clocks (wall time, CPU time), two cheap calls. finish() reads the counters."""
        now = time.monotonic_ns()
        return WindowEnd(now, time.process_time_ns() - start.cpu_ns, max(now - start.wall_ns, 1))

    def finish(self, start: WindowStart, end: WindowEnd) -> ResourceFigures:
        """The figures of a window that ended at `end`: its counters (cgroup throttling, the host's CPU time and
        wait, GC and page faults, the peak RSS, RAPL) are read now, `counters_late_ms` after its clocks. The
        remote node sends the RESULT's leading unit in between (docs/PROTOCOL.md 3.6); stop() reads them at
        once."""
        late_ns = time.monotonic_ns() - end.at_ns
        cpu_ns, wall_ns = end.cpu_ns, end.wall_ns
        files = self.files()
        fast = None
        if files.fds is not None and start.sampler is None:
            try:
                fast = _stop_fast(files.fds)
            except (OSError, ValueError, IndexError):
                pass  # the general path below
        if fast is not None:
            throttled, host, pauses, peak = fast
            method = VMHWM_METHOD
        else:
            throttled, host = files.counters()
            pauses = _pauses()
            if start.sampler is not None:
                peak = start.sampler.finish()
                method = SAMPLER_METHOD
            else:
                peak = _status_bytes(files.status.read_bytes(), b"VmHWM:") or current_rss_bytes()
                method = VMHWM_METHOD
        rapl_mj, rapl_reason = rapl_delta_mj(start.rapl, self.rapl.read())
        cpu_ms = cpu_ns / 1e6
        utilisation = 100.0 * cpu_ns / wall_ns
        (steal0, all0, wait0), (steal1, all1, wait1) = start.host, host
        both = None not in (steal0, steal1, all0, all1)
        return {
            "wall_ms": wall_ns / 1e6,
            "cpu_time_ms": cpu_ms,
            "cpu_utilisation_pct": utilisation,
            "cpu_utilisation_of_host_pct": utilisation / self.cores,
            "usable_cores": self.cores,
            "cpu_limit_cores": self.cpu_limit,
            "cpu_utilisation_of_limit_pct": utilisation / min(self.cores, self.cpu_limit or self.cores),
            "cpu_throttled_ms": None if throttled is None or start.throttled_ns is None
            else (throttled - start.throttled_ns) / 1e6,
            "rss_start_bytes": start.rss_bytes,
            "peak_rss_bytes": max(peak, start.rss_bytes),
            "peak_rss_increase_bytes": max(peak - start.rss_bytes, 0),
            "peak_rss_method": method,
            "energy_rapl_mj": rapl_mj,
            "energy_rapl_reason": rapl_reason,
            "energy_estimate_mj": cpu_ms * self.power.watts_per_busy_core,
            "energy_estimate_method": self.estimate_method,
            # all CPUs' time in the window as the kernel counted it (ticks of 10 ms: coarse for one short window,
            # exact when summed over many), the part the hypervisor stole, and the CPU wait (PSI, microseconds)
            "host_cpu_ms": (all1 - all0) * TICK_MS if both else None,  # type: ignore[operator]
            "host_cpu_stolen_ms": (steal1 - steal0) * TICK_MS if both else None,  # type: ignore[operator]
            "host_cpu_wait_ms": None if wait0 is None or wait1 is None else (wait1 - wait0) / 1000.0,
            "gc_collections": pauses[0] - start.pauses[0],
            "gc_ms": (pauses[1] - start.pauses[1]) / 1e6,
            "minor_faults": pauses[2] - start.pauses[2],
            "major_faults": pauses[3] - start.pauses[3],
            "counters_late_ms": late_ns / 1e6,
        }


TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")  # /proc/stat counts in USER_HZ ticks (100 per second)


class _ProcFiles:
    """What a meter reads at both edges of every window, kept open and re-read with pread (netem.procfile): the
    window's edges sit between the decoded tensors and the tail, and between the tail and the RESULT, so their
    cost is part of the testbed's own share of each inference (docs/METRICS.md). Each read there follows a model
    call that left the caches cold, so the edges read as few files as the figures need and parse only the lines
    they use."""

    def __init__(self, cpu_stat: Path | None, *, clear_refs: bool) -> None:
        self.pid = os.getpid()
        self.status = KeptFile(PROC_STATUS)
        self.statm = KeptFile(PROC_STATM)
        self.clear_refs = KeptFile(CLEAR_REFS if clear_refs else None, write=True)
        self.cpu_stat = KeptFile(cpu_stat)
        self.stat = KeptFile(PROC_STAT)
        self.psi = KeptFile(PSI_CPU)
        # the kernel keeps a high-water mark (Linux >= 2.6.31 has VmHWM): whether it does never changes
        self.has_hwm = _status_bytes(self.status.read_bytes(), b"VmHWM:") is not None
        # Every file there and the high-water mark kept (the usual Linux host or container): the edges read the
        # descriptors themselves (_start_fast, _stop_fast), in one frame each.
        kept = (self.clear_refs, self.statm, self.cpu_stat, self.stat, self.psi, self.status)
        fds = tuple(k.fd for k in kept)
        self.fds: tuple[int, int, int, int, int, int] | None = None
        if self.has_hwm and None not in fds:
            self.fds = fds  # type: ignore[assignment]

    def counters(self) -> tuple[int | None, tuple[int | None, int | None, int | None]]:
        """(the cgroup's throttled time in ns or None, the host's netem.hostload.raw_counters) now: what both
        edges of a window read, in that order."""
        throttled = _throttled_ns(self.cpu_stat.read_bytes())
        if not self.stat.open:
            counters = read_counters()
            return throttled, (counters.steal_jiffies, counters.all_jiffies, counters.cpu_wait_us)
        return throttled, raw_counters(self.stat.read_bytes(), self.psi.read_bytes())


def _start_fast(fds: tuple[int, int, int, int, int, int], rapl: RaplReading) -> WindowStart:
    """ResourceMeter.start's readings where every file is open (_ProcFiles.fds), read in this one frame: at this
    edge, after the decode and before the tail, every call counts. The same readings and parsers as the general
    path: the reset, the start RSS (statm), RAPL (`rapl`, read by the caller), cpu.stat's throttled time, the
    host's counters, GC and page faults, then the clocks. Raises where the general path would fall back (the
    caller takes it, and it says what is missing)."""
    clear_refs, statm, cpu_stat, stat, psi, _status = fds
    if os.pwrite(clear_refs, b"5", 0) != 1:
        raise OSError("clear_refs not reset")
    rss = _statm_rss(os.pread(statm, HEAD_BYTES, 0))
    if rss is None:
        raise ValueError("no resident size in statm")
    throttled = _throttled_ns(os.pread(cpu_stat, HEAD_BYTES, 0))
    host = raw_counters(os.pread(stat, HEAD_BYTES, 0), os.pread(psi, HEAD_BYTES, 0))
    pauses = _pauses()
    return WindowStart(time.monotonic_ns(), time.process_time_ns(), rss, True, None, rapl, throttled, host, pauses)


def _stop_fast(fds: tuple[int, int, int, int, int, int]) -> tuple[int | None, tuple[int | None, int | None, int | None],
                                                                 tuple[int, int, int, int], int]:
    """ResourceMeter.stop's readings where every file is open, in this one frame (see _start_fast): (throttled
    ns, host counters, GC and page faults, the peak RSS: VmHWM)."""
    _clear_refs, _statm, cpu_stat, stat, psi, status = fds
    throttled = _throttled_ns(os.pread(cpu_stat, HEAD_BYTES, 0))
    host = raw_counters(os.pread(stat, HEAD_BYTES, 0), os.pread(psi, HEAD_BYTES, 0))
    pauses = _pauses()
    peak = _status_bytes(os.pread(status, MAX_READ_BYTES, 0), b"VmHWM:")
    if not peak:
        raise ValueError("no VmHWM in status")
    return throttled, host, pauses, peak


# One parser per file, for both paths: the edges' fast path (_start_fast, _stop_fast) and the general one.

def _statm_rss(data: bytes | None) -> int | None:
    """Resident bytes from /proc/self/statm: its second field (pages), the counter status reports as VmRSS."""
    try:
        return int(data.split(None, 2)[1]) * PAGE_BYTES if data else None
    except (IndexError, ValueError):
        return None


def _status_bytes(data: bytes | None, key: bytes) -> int | None:
    """A `kB` line of /proc/self/status (b"VmHWM:", b"VmRSS:") in bytes, or None."""
    kb = _number_after(data, key)
    return None if kb is None else kb * 1024


def _throttled_ns(data: bytes | None) -> int | None:
    """cpu.stat's throttled time in ns (cgroup.parse_cpu_stat's reading), None for no counters (v2's root)."""
    if not data or b"nr_throttled" not in data:
        return None
    usec = _number_after(data, b"\nthrottled_usec ")  # cgroup v2, in us; v1: throttled_time, in ns
    return usec * 1000 if usec is not None else _number_after(data, b"\nthrottled_time ") or 0


def _number_after(data: bytes | None, key: bytes) -> int | None:
    """The integer that follows `key` in the text of a /proc or cgroup file (to the end of its line, a unit such
    as ' kB' after it left out), or None. A search and a slice: no regular expression to wake on a cold cache."""
    if not data:
        return None
    start = data.find(key)
    if start < 0:
        return None
    start += len(key)
    end = data.find(b"\n", start)
    try:
        return int(data[start:end if end >= 0 else len(data)].split(None, 1)[0])
    except (IndexError, ValueError):
        return None


class GpuInfo(TypedDict):
    count: int
    devices: list[str]
    utilisation_pct: float | None
    reason: str


def gpu_info() -> GpuInfo:
    """GPUs TensorFlow can use (the testbed contribution's `server_physical_gpus`). No utilisation sampling is implemented."""
    from splitbed.models import tfboot

    tf = tfboot.tensorflow()  # nodes load TensorFlow anyway; this only asks it
    devices = [d.name for d in tf.config.list_physical_devices("GPU")]
    reason = ("no GPU: TensorFlow lists no GPU device (tensorflow-cpu build or no driver)" if not devices else
              "GPU present; per-inference GPU utilisation and energy are not sampled by this version")
    return GpuInfo(count=len(devices), devices=devices, utilisation_pct=None, reason=reason)


class HostInfo(TypedDict):
    hostname: str
    cpu_model: str
    cpu_count: int
    usable_cores: int
    cpu_limit_cores: float | None
    memory_total_bytes: int
    memory_limit_bytes: int | None
    kernel: str
    machine: str


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_info() -> HostInfo:
    return HostInfo(
        hostname=socket.gethostname(),
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 0,
        usable_cores=usable_cores(),
        cpu_limit_cores=cgroup.cpu_limit_cores(),
        memory_total_bytes=int(psutil.virtual_memory().total),
        memory_limit_bytes=cgroup.memory_limit_bytes(),
        kernel=platform.release(),
        machine=platform.machine(),
    )
