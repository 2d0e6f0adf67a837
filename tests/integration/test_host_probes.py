"""The two capabilities containers often lack, probed for real and taken away for real: SCHED_FIFO (without
CAP_SYS_NICE, via setpriv) and a writable cgroup hierarchy (read-only bind mounts in a private mount namespace).
A test that needs one skips with the probe's reason; `docker_cgroup`, like `docker`, is a must-have on CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from netem.hostprobes import probe_docker_cgroup, probe_realtime

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]
WITHOUT_SYS_NICE = ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice"]
READ_ONLY_CGROUPS = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                     'for d in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do mount -o remount,ro,bind "$d" "$d" 2>/dev/null; '
                     'done; exec "$@"', "sh"]
PROBE = "import json, sys; from netem.doctor import run_probe; print(json.dumps(run_probe(sys.argv[1]).to_dict()))"


def probe_under(wrapper: list[str], name: str) -> dict[str, object]:
    import json

    done = subprocess.run([*wrapper, sys.executable, "-c", PROBE, name], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_both_probes_pass_here_and_fail_with_the_reason_when_taken_away() -> None:
    if os.geteuid() != 0:
        pytest.skip("taking capabilities away needs root")
    here = probe_realtime(), probe_docker_cgroup()
    assert all(p.ok for p in here), here
    realtime = probe_under(WITHOUT_SYS_NICE, "realtime")
    assert not realtime["ok"] and not realtime["must_have"]
    assert "chrt -f 1 true refused" in str(realtime["detail"]) and "Operation not permitted" in str(realtime["detail"])
    assert "--cap-add SYS_NICE" in str(realtime["fix"])
    cgroup = probe_under(READ_ONLY_CGROUPS, "docker_cgroup")
    assert not cgroup["ok"] and "Read-only file system" in str(cgroup["detail"])
    assert "-v /sys/fs/cgroup:/sys/fs/cgroup:rw" in str(cgroup["fix"])


INNER = """
import pytest

@pytest.mark.realtime
def test_needs_realtime():
    pass

@pytest.mark.docker
def test_needs_docker():
    pass
"""


def run_inner(tmp_path: Path, wrapper: list[str], ci: bool) -> str:
    (tmp_path / "test_inner.py").write_text(INNER)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    done = subprocess.run([*wrapper, sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider",
                           str(tmp_path / "test_inner.py")], capture_output=True, text=True, timeout=180,
                          cwd=tmp_path, env=env)
    return done.stdout + done.stderr


def test_tests_that_need_them_skip_with_the_reason_and_a_must_have_fails_on_ci(tmp_path: Path) -> None:
    no_rt = run_inner(tmp_path, WITHOUT_SYS_NICE, ci=True)  # optional: skipped even on CI
    assert "SKIPPED" in no_rt and "optional 'realtime' missing: chrt -f 1 true refused" in no_rt, no_rt[-2000:]
    from splitbed.runtime.engine import engine_status

    if not engine_status()[0]:
        pytest.skip("no Docker engine here: the cgroup half needs one that answers")
    locally = run_inner(tmp_path, READ_ONLY_CGROUPS, ci=False)
    assert "optional 'docker_cgroup' missing: cannot create a cgroup" in locally, locally[-2000:]
    assert "1 passed, 1 skipped" in locally
    on_ci = run_inner(tmp_path, READ_ONLY_CGROUPS, ci=True)
    assert "must-have 'docker_cgroup' missing on CI: cannot create a cgroup" in on_ci, on_ci[-2000:]
    assert "1 passed, 1 error" in on_ci
