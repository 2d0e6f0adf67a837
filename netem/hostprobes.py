"""Two capabilities a container often lacks, probed for real (the doctor's and the test suite's probes):

- `realtime`: SCHED_FIFO for a process (`chrt -f`). The userspace link asks for it (netem.link.timing) and the
  link-fidelity tests run their measuring tools under it, so that a busy host does not add its scheduling delay
  to the emulated one. Refused without CAP_SYS_NICE (and an rtprio limit) or, in a cgroup-v1 container, without
  a real-time CPU budget. Optional: the link then runs under SCHED_OTHER and says so in every record.
- `docker_cgroup`: a writable cgroup hierarchy, where the Docker engine makes one cgroup per container (its CPU
  and memory limits). A container started with a read-only /sys/fs/cgroup has an engine that answers `ping` but
  cannot start a container ("mkdir /sys/fs/cgroup/cpuset/docker: read-only file system").

See docs/INSTALL.md, "In a container", for the `docker run` flags that give both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from netem.doctor import DOCKER_MUST_HAVE_ON_CI, Probe, is_ci

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: cgroup-v1 hierarchies the engine writes a container's limits into
V1_CONTROLLERS = ("cpuset", "cpu", "memory", "pids")
CONTAINER_FLAGS = ("docker run --cap-add NET_ADMIN --cap-add SYS_ADMIN --cap-add SYS_NICE --cpu-rt-runtime=950000 "
                   "--cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw ... (docs/INSTALL.md, 'In a container')")


def probe_realtime() -> Probe:
    meaning_no = ("the userspace link runs under SCHED_OTHER (records say so): on a busy host its delays grow; "
                  "tests that need SCHED_FIFO skip")
    fix = ("run as root with CAP_SYS_NICE (or give the user an rtprio limit); in a container: --cap-add SYS_NICE "
           "(cgroup v1 with real-time group scheduling: also --cpu-rt-runtime=950000, from an engine started with "
           "--cpu-rt-runtime; docs/INSTALL.md, 'In a container')")
    chrt = shutil.which("chrt")
    if chrt is None:
        return Probe("realtime", False, False, "chrt not on PATH", fix="apt-get install util-linux",
                     meaning=meaning_no)
    try:
        done = subprocess.run([chrt, "-f", "1", "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Probe("realtime", False, False, f"chrt -f 1 true failed: {exc}", fix=fix, meaning=meaning_no)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return Probe("realtime", False, False, f"chrt -f 1 true refused: {reason[:160]}", fix=fix,
                     meaning=meaning_no)
    return Probe("realtime", True, False, "chrt -f 1 true ran: SCHED_FIFO is allowed",
                 meaning="the userspace link and the measuring tools run under SCHED_FIFO")


def probe_docker_cgroup() -> Probe:
    """Create and remove a scratch cgroup where the engine would make its containers' cgroups."""
    must_have = DOCKER_MUST_HAVE_ON_CI and is_ci()
    meaning_no = "the Docker engine cannot start containers here: docker-node tests skip"
    fix = f"give the container a writable cgroup hierarchy: {CONTAINER_FLAGS}"
    unified = (CGROUP_ROOT / "cgroup.controllers").exists()
    parents = [CGROUP_ROOT] if unified else [CGROUP_ROOT / c for c in V1_CONTROLLERS]
    parents = [p for p in parents if p.is_dir()]
    if not parents:
        return Probe("docker_cgroup", False, must_have, f"no cgroup hierarchy mounted at {CGROUP_ROOT}", fix=fix,
                     meaning=meaning_no)
    name = f"sb{os.getpid()}cgprobe"
    for parent in parents:
        scratch = parent / name
        try:
            scratch.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            return Probe("docker_cgroup", False, must_have,
                         f"cannot create a cgroup in {parent}: {exc.strerror or exc}", fix=fix, meaning=meaning_no)
        try:
            scratch.rmdir()
        except OSError:
            pass
    version = "v2" if unified else f"v1 ({', '.join(p.name for p in parents)})"
    return Probe("docker_cgroup", True, must_have, f"created and removed a cgroup under {CGROUP_ROOT} ({version})",
                 meaning="the Docker engine can give each container its own cgroup (CPU and memory limits)")
