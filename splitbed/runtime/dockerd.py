"""Start a Docker engine on demand: only when something asks for a docker runtime (the docker runtime, the
docker tests), never as a side effect of set-up or of a sweep that runs its nodes as processes.

The engine is started as scripts/docker-engine.sh starts it (a test keeps the two flag lists equal): no bridge,
no NAT, no iptables rules, host forwarding left alone (docs/DOCKER.md, "Engine"). Whoever starts it says so on
stderr, with its pid, its log and how to stop it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from splitbed.runtime.errors import EngineUnavailableError

DOCKERD_FLAGS = ("--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false")
LOG_ENV = "SPLITBED_DOCKERD_LOG"
EXTRA_ENV = "SPLITBED_DOCKERD_EXTRA"  # more dockerd arguments (a private socket and roots, as the tests use)
DEFAULT_LOG = "/var/log/splitbed-dockerd.log"
WAIT_S = 30.0


@dataclass(frozen=True)
class StartedEngine:
    """A dockerd this process started: stop it with `stop()` (or `kill PID`)."""

    pid: int
    log: str

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM and wait (dockerd stops its containers first); SIGKILL if it does not exit in time."""
        import psutil

        try:
            process = psutil.Process(self.pid)
            process.terminate()
            process.wait(timeout_s)
        except psutil.NoSuchProcess:
            return
        except psutil.TimeoutExpired:
            process.kill()


def engine_answers(timeout_s: float = 5.0) -> bool:
    from splitbed.runtime.engine import engine_status

    return engine_status(timeout_s)[0]


def start_engine(why: str, *, wait_s: float = WAIT_S) -> StartedEngine:
    """Start dockerd for `why` and wait until it answers; EngineUnavailableError (with the fix) if it cannot."""
    if os.geteuid() != 0:
        raise EngineUnavailableError("no Docker engine answers, and starting one needs root; run as root, or "
                                     "start it yourself: bash scripts/docker-engine.sh")
    binary = shutil.which("dockerd")
    if binary is None:
        raise EngineUnavailableError("no Docker engine answers and dockerd is not installed; apt-get install "
                                     "docker.io (bash scripts/setup.sh does)")
    log = os.environ.get(LOG_ENV, DEFAULT_LOG)
    with open(log, "ab") as sink:
        extra = shlex.split(os.environ.get(EXTRA_ENV, ""))
        process = subprocess.Popen([binary, *DOCKERD_FLAGS, *extra], stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                                   start_new_session=True)  # outlives us: other runs may use it
    print(f"splitbed: no Docker engine answered, so {why} started one: dockerd {' '.join(DOCKERD_FLAGS)} "
          f"(pid {process.pid}, log {log}); stop it with: kill {process.pid}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineUnavailableError(f"dockerd exited at once with status {process.returncode}; see {log}")
        if engine_answers(2.0):
            return StartedEngine(process.pid, log)
        time.sleep(0.5)
    StartedEngine(process.pid, log).stop()
    raise EngineUnavailableError(f"dockerd did not answer within {wait_s:.0f} s (stopped it again); see {log}")


def ensure_engine(why: str) -> StartedEngine | None:
    """None when an engine answers already; else the engine started for `why` (see start_engine)."""
    if engine_answers():
        return None
    return start_engine(why)
