"""Temporary files of dead owners (`sb<pid>-edge-....log` left by a run killed with SIGKILL) are swept; a live
owner's files, foreign names, symlinks and folders are not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from netem.sweep import sweep_stale_files


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_dead_owners_regular_files_go(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale_log = tmp_path / f"sb{dead}-edge-abc123.log"
    stale_pcap = tmp_path / f"sb{dead}-1-ue-x.pcap"
    live = tmp_path / f"sb{os.getpid()}-edge-def.log"
    foreign = tmp_path / "sbx-notours.log"
    target = tmp_path / "precious.txt"
    for path in (stale_log, stale_pcap, live, foreign, target):
        path.write_text("x")
    link = tmp_path / f"sb{dead}-edge-link.log"
    link.symlink_to(target)
    folder = tmp_path / f"sb{dead}-dir"
    folder.mkdir()
    removed = sweep_stale_files(tmp_path)
    assert sorted(removed) == sorted([str(stale_log), str(stale_pcap)])
    assert not stale_log.exists() and not stale_pcap.exists()
    assert live.exists() and foreign.exists() and target.exists() and link.is_symlink() and folder.is_dir()
    assert sweep_stale_files(tmp_path) == []
