"""The plugin as another project uses it: a failing network test keeps its pcaps and records under a results
folder named in the failure message; a passing one leaves nothing. Runs an inner pytest on a small suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

INNER = '''
import pytest

pytestmark = pytest.mark.root

@pytest.mark.parametrize("fail", [False, True], ids=["passes", "fails"])
def test_ping_over_the_link(link, capture, metrics_records, fail):
    with capture(link) as both:
        link.run("ue", ["ping", "-c", "3", "-i", "0.05", link.edge_addr], timeout=30)
    metrics_records.append({"pinged": link.edge_addr})
    assert both.complete and both.pcaps["ue"].stat().st_size > 24
    assert not fail, "failing on purpose"
'''


def test_a_failing_network_test_keeps_pcaps_and_records_and_says_where(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    results = tmp_path / "out"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir",
                           str(tmp_path), "--splitbed-profile", "5g-embb", "--results-dir", str(results),
                           str(tmp_path / "test_inner.py")], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "1 failed, 1 passed" in output, output[-3000:]
    kept = results / "test_inner.py-test_ping_over_the_link-fails"
    assert f"splitbed: pcaps, records and logs of this test kept in {kept}" in output, output[-3000:]
    assert sorted(p.name for p in kept.iterdir()) == ["edge.pcap", "records.jsonl", "ue.pcap"]
    assert (kept / "records.jsonl").read_text().count("pinged") == 1
    assert not (results / "test_inner.py-test_ping_over_the_link-passes").exists()
