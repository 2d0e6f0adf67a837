"""`netem shell` killed with SIGKILL: its direct children die with it (PDEATHSIG), and now so do their children
(a server that forked, a background job), because the topology's guardian removes the namespaces and kills
what is in them at once, instead of leaving them running until the next start's sweep."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netem.netns import list_namespaces

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_kill_9_of_netem_shell_leaves_no_grandchild_and_no_namespace(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The edge server and the ue command each start a background grandchild and record its pid.
    server = f"sh -c 'sleep 300 & echo $! >> {pids}; wait'"
    command = ["sh", "-c", f"sleep 300 & echo $! >> {pids}; echo ready; wait"]
    shell = subprocess.Popen([sys.executable, "-P", "-m", "netem.cli", "shell", "--profile", "ideal", "--backend",
                              "userspace", "--server", server, "--server-wait", "0.5", "--", *command],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    grandchildren: list[int] = []
    try:
        assert shell.stdout is not None
        assert shell.stdout.readline().strip() == "ready"
        grandchildren = [int(line) for line in pids.read_text().split()]
        assert len(grandchildren) == 2 and all(_alive(pid) for pid in grandchildren)
        prefix = f"sb{shell.pid}-"
        assert any(name.startswith(prefix) for name in list_namespaces())
        shell.send_signal(signal.SIGKILL)
        shell.wait(10)
        assert shell.stderr is not None
        banner = shell.stderr.read()  # EOF once the guardian, which shares this stderr, is done too
        assert f"netem guardian: owner pid {shell.pid} died without closing its topology" in banner, banner
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (any(_alive(p) for p in grandchildren)
                                               or any(n.startswith(prefix) for n in list_namespaces())):
            time.sleep(0.1)
        assert not [p for p in grandchildren if _alive(p)], "grandchildren outlived the killed netem shell"
        assert not [n for n in list_namespaces() if n.startswith(prefix)], banner
        assert re.search(r"ideal on the userspace backend", banner)
    finally:
        if shell.poll() is None:
            shell.kill()
        for pid in grandchildren:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
