"""The host's own speed, measured with a fixed reference workload on given CPUs (docs/SWEEP.md, "Host speed").

On a shared VM the same computation takes a different amount of CPU time from one second to the next (other
tenants on the physical core, its caches and memory bandwidth, its clock), with no steal, no CPU wait and no page
fault to show for it: a point's spread of compute time can be the host's speed rather than the testbed. A figure
says which: the CPU time of a fixed reference workload, run on the same CPUs as a node, between that node's
inferences. The reference is like inference in kind (dense float32 arithmetic on matrices larger than a core's L2
cache, one thread) and deterministic (same inputs, same operations every run), so its CPU time varies only with
the host's speed.

The reference runs in a child process (`python -m splitbed.host.speed --serve CPUS`) that pins itself with
sched_setaffinity before it loads numpy, with OpenBLAS/OpenMP/MKL limited to one thread, so the figure is one
CPU's speed and the caller's own threads are not disturbed. The child stays up and runs the reference on request
(one line in, one JSON line out), so a run costs the reference's time only, not a Python start.

Standard library in the parent; numpy in the child only.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MATRIX_SIZE = 512       # float32 512x512: 1 MiB per matrix, 3 MiB in all: beyond a core's L2, like a conv layer's GEMM
MATMULS_PER_RUN = 10    # one run: ten products, about 30 ms of one CPU on this kind of host
REFERENCE = (f"numpy float32 {MATRIX_SIZE}x{MATRIX_SIZE} matrix product x {MATMULS_PER_RUN} (fixed inputs), one "
             "thread (OpenBLAS/OpenMP/MKL threads = 1), in a child process pinned to the role's CPUs; cpu_ms = its "
             "process CPU time (CLOCK_PROCESS_CPUTIME_ID), wall_ms = its CLOCK_MONOTONIC time")
THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
START_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 30.0
MAX_LINE = 1 << 16
MAX_RUNS = 1000


class HostSpeedError(RuntimeError):
    """The reference child could not start or did not answer."""


@dataclass(frozen=True)
class SpeedSample:
    """One run of the reference: CPU and wall time (ms), its start and end on CLOCK_MONOTONIC (the clock of the
    nodes' `timestamps_ns`: one host, one kernel) and the CPUs its child was allowed (read by the child)."""

    cpu_ms: float
    wall_ms: float
    cpus: tuple[int, ...]
    start_ns: int = 0
    end_ns: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"cpu_ms": round(self.cpu_ms, 4), "wall_ms": round(self.wall_ms, 4), "cpus": list(self.cpus),
                "start_ns": self.start_ns, "end_ns": self.end_ns}


class ReferenceChild:
    """One pinned child running the reference on request. `cpus` empty: unpinned (the child keeps the parent's
    affinity). Use as a context manager or call close()."""

    def __init__(self, cpus: Sequence[int] = (), python: str = sys.executable) -> None:
        self.cpus = tuple(sorted(cpus))
        env = {**os.environ, **THREAD_ENV}
        arg = ",".join(str(c) for c in self.cpus) or "-"
        self.proc = subprocess.Popen(_module_argv(python, "--serve", arg), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
                                     bufsize=1)
        try:
            hello = self._read(START_TIMEOUT_S)
        except HostSpeedError:
            self.close()
            raise
        self.affinity = tuple(int(c) for c in hello.get("affinity", ()))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, timeout_s: float) -> dict[str, Any]:
        out = self.proc.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], timeout_s)
        line = out.readline(MAX_LINE) if ready else ""
        if not line:
            raise HostSpeedError(f"the host-speed reference child (pid {self.proc.pid}) did not answer within "
                                 f"{timeout_s:.0f} s")
        try:
            answer = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HostSpeedError(f"the host-speed reference child wrote {line[:80]!r}") from exc
        if not isinstance(answer, dict) or "error" in answer:
            raise HostSpeedError(f"the host-speed reference child failed: {answer}")
        return answer

    def request(self, runs: int = 1) -> None:
        """Start `runs` runs; `collect` gives them."""
        if not 1 <= runs <= MAX_RUNS:
            raise ValueError(f"runs must be 1..{MAX_RUNS}, not {runs}")
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(f"{runs}\n")
            stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise HostSpeedError(f"the host-speed reference child (pid {self.proc.pid}) is gone") from exc

    def collect(self) -> list[SpeedSample]:
        answer = self._read(RUN_TIMEOUT_S)
        cpus = tuple(int(c) for c in answer.get("affinity", ()))
        return [SpeedSample(float(c), float(w), cpus, int(s), int(e))
                for c, w, s, e in zip(answer["cpu_ms"], answer["wall_ms"], answer["start_ns"], answer["end_ns"],
                                      strict=True)]

    def run(self, runs: int = 1) -> list[SpeedSample]:
        self.request(runs)
        return self.collect()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> ReferenceChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _module_argv(python: str, *args: str) -> list[str]:
    """`python -m splitbed.host.speed ARGS` without the working directory on sys.path (a `json.py` lying there
    would be imported instead of the standard module): as netem.pyexec.python_module does, which this layer-0
    package may not import."""
    if sys.version_info >= (3, 11):
        return [python, "-P", "-m", "splitbed.host.speed", *args]
    bootstrap = ("import sys; del sys.path[0]; import runpy; "
                 "runpy.run_module('splitbed.host.speed', run_name='__main__', alter_sys=True)")
    return [python, "-c", bootstrap, *args]


class HostSpeedProbe:
    """The reference on each role's CPUs (e.g. {"ue": (0,), "edge": (1,)}): one child per distinct CPU set, run one
    after the other, never at once: on a VM whose virtual CPUs share a physical core, a run beside another busy CPU
    measures that sharing, not the speed a node computing alone sees. `sample()` gives `runs` runs per role."""

    def __init__(self, roles: Mapping[str, Sequence[int]]) -> None:
        self.roles = {role: tuple(sorted(cpus)) for role, cpus in roles.items()}
        self.children: dict[tuple[int, ...], ReferenceChild] = {}
        try:
            for cpus in dict.fromkeys(self.roles.values()):
                self.children[cpus] = ReferenceChild(cpus)
        except BaseException:
            self.close()
            raise

    def sample(self, runs: int = 1) -> dict[str, list[SpeedSample]]:
        """`runs` runs of the reference per distinct CPU set, one set after the other, keyed by role."""
        results = {cpus: child.run(runs) for cpus, child in self.children.items()}
        return {role: results[cpus] for role, cpus in self.roles.items()}

    def close(self) -> None:
        for child in self.children.values():
            child.close()
        self.children.clear()

    def __enter__(self) -> HostSpeedProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(cpus_arg: str) -> int:
    """The child: pin, then load numpy (so OpenBLAS sizes itself to the pinned CPU), then answer requests."""
    if cpus_arg != "-":
        os.sched_setaffinity(0, {int(c) for c in cpus_arg.split(",")})
    os.environ.update(THREAD_ENV)
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((MATRIX_SIZE, MATRIX_SIZE), dtype=np.float32)
    b = rng.standard_normal((MATRIX_SIZE, MATRIX_SIZE), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # first call: OpenBLAS's buffers, page faults of `out`

    def affinity() -> list[int]:
        return sorted(os.sched_getaffinity(0))

    print(json.dumps({"ready": True, "affinity": affinity(), "reference": REFERENCE}), flush=True)
    for line in sys.stdin:
        try:
            runs = int(line.strip())
        except ValueError:
            print(json.dumps({"error": f"not a run count: {line[:40]!r}"}), flush=True)
            continue
        runs = max(1, min(runs, MAX_RUNS))
        cpu, wall, starts, ends = [], [], [], []
        for _ in range(runs):
            c0, w0 = time.process_time_ns(), time.monotonic_ns()
            for _ in range(MATMULS_PER_RUN):
                np.matmul(a, b, out=out)
            c1, w1 = time.process_time_ns(), time.monotonic_ns()
            cpu.append((c1 - c0) / 1e6)
            wall.append((w1 - w0) / 1e6)
            starts.append(w0)
            ends.append(w1)
        print(json.dumps({"cpu_ms": cpu, "wall_ms": wall, "start_ns": starts, "end_ns": ends,
                          "affinity": affinity()}), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        sys.exit(_serve(sys.argv[2]))
    print("usage: python -m splitbed.host.speed --serve CPUS|-", file=sys.stderr)
    sys.exit(2)
