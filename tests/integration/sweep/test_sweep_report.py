"""The report from a real sweep's records: the testbed contribution's metric table per partition in Markdown and
HTML, the best partition highlighted, the random-weights warning, the method stated, the tails and budget shares
and the traffic model from the captures; every figure as a 300 dpi PNG and an SVG; one self-contained HTML file
that a real
headless Chromium (Debian's `chromium`, in a network namespace of its own: it cannot reach anything) renders
with every table present and every embedded plot decoded, the latency CDF, bitrate and burst figures among
them."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from typer.testing import CliRunner

from netem.doctor import is_ci
from netem.hostload import STEAL_LIMIT
from splitbed.cli import app
from splitbed.report import build_report
from splitbed.report.provenance import provenance
from splitbed.report.tables import METRIC_HEADERS
from splitbed.sweep import read_records, summarise
from tests.integration.sweep.conftest import PROFILE, SWEEP_PARTITIONS

pytestmark = pytest.mark.root

BROWSER_TIMEOUT_S = 90
CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const refs = Array.from(document.querySelectorAll('[src],[href]'))
    .map(e => e.getAttribute('src') || e.getAttribute('href'))
    .filter(u => !u.startsWith('data:') && !u.startsWith('#'));
  const result = {
    images: images.length,
    decoded: images.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length,
    widths: images.map(i => i.naturalWidth),
    tables: document.querySelectorAll('table').length,
    kinds: Array.from(document.querySelectorAll('figure')).map(f => f.dataset.kind),
    sections: ['tails', 'repeatability', 'traffic', 'plots'].filter(id => document.getElementById(id) !== null),
    plotNotes: Array.from(document.querySelectorAll('.plot-note')).map(p => p.textContent),
    rows: document.querySelectorAll('tbody tr').length,
    best: document.querySelectorAll('tr.best').length,
    warning: document.getElementById('weights-warning') !== null,
    external: refs,
    title: document.title,
  };
  const out = document.createElement('pre');
  out.id = 'splitbed-check';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def report(shared_sweep: Path) -> object:
    return build_report(shared_sweep)


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "Debian's chromium is not installed (scripts/setup.sh installs it: apt-get install chromium)"
        if is_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}", *args]
    unshare = shutil.which("unshare")
    if unshare is not None:
        argv = [unshare, "--net", "--", *argv]  # a fresh network namespace with nothing in it
    return subprocess.run(argv, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)


def test_markdown_has_the_metric_table_per_partition_and_the_method(report: object, shared_sweep: Path) -> None:
    text = report.markdown.read_text()  # type: ignore[attr-defined]
    summaries = summarise(read_records(shared_sweep).records)
    assert "| " + " | ".join(METRIC_HEADERS) + " |" in text
    for carriage in ("tlv/none", "json-baseline"):
        assert f"### mobilenet_v2 on {PROFILE}, {carriage}" in text
    for partition in SWEEP_PARTITIONS:
        assert text.count(f"{partition} (") >= 2
    for s in summaries:  # the delivered size of every point, exactly as measured
        assert f"{s.median('serialized_intermediate_bytes'):,.0f}" in text
    assert text.count("\u2605 **") == 2  # the best row of each of the two per-partition tables
    assert "WARNING (weights)" in text and "RANDOM WEIGHTS" in text
    assert "same-host" in text and "userspace" in text and "TS 22.261" in text
    assert "ue: cubic, slow start after idle on" in text
    # the host's conditions, from the records' own steal counters: a warning exactly when over the limit
    info = provenance(read_records(shared_sweep).records)
    assert info.host_cpu_stolen_pct is not None and f"{info.host_cpu_stolen_pct:.2f} % of the host's CPU" in text
    assert ("WARNING (host)" in text) == (info.host_cpu_stolen_pct > 100 * STEAL_LIMIT)
    for plot in report.plots:  # type: ignore[attr-defined]
        assert plot.is_file() and plot.stat().st_size > 5000
        assert f"]({plot.relative_to(report.directory).as_posix()})" in text  # type: ignore[attr-defined]
        with Image.open(plot) as image:  # 300 dpi PNG, and the same figure as SVG beside it
            assert round(image.info["dpi"][0]) == 300
        svg = plot.with_suffix(".svg")
        assert svg.is_file() and svg.read_text()[:400].count("<svg") == 1


def test_markdown_has_tails_budget_shares_and_the_traffic_model(report: object, shared_sweep: Path) -> None:
    text = report.markdown.read_text()  # type: ignore[attr-defined]
    from splitbed.report.budgets import load_budgets

    records = read_records(shared_sweep).records
    summaries = summarise(records, budgets=list(load_budgets().values()))  # as the report counts them
    assert "## Tails and budget shares" in text and "## Uplink traffic model per point" in text
    for s in summaries:  # each point's tail row: n, median, p90 ... of the end-to-end latency, as measured
        tail = s.percentiles["e2e_latency_ms"]
        cells = [f"{s.partition} ({s.partition_id})", str(s.n), f"{s.median('e2e_latency_ms'):.1f}",
                 f"{tail.p90:.1f}", f"{tail.p95:.1f}", f"{tail.p99:.1f}", f"{tail.maximum:.1f}"]
        assert "| " + " | ".join(cells) + " |" in text
        [share] = [b for b in s.budget_shares if b.budget == "split-ai-image-recognition" and b.kind == "latency"]
        within = sum(1 for r in records if r.get("tags", {}).get("point") == s.key and r["status"] == "ok"
                     and not r["tags"].get("warmup") and r["delivery_ms"] <= 15.0)
        assert (share.met, share.n) == (within, 6)
        # the traffic model's burst size is the record's uplink bytes: constant on a lossless carriage
        uplink = s.median("uplink_bytes")
        assert f"constant ({uplink:,.0f})" in text
    from netem.profile import LinkProfile

    rate = LinkProfile.load("5g-split-ai").uplink.rate_mbit  # the frame rate that carries 144 Mbit/s of payload
    assert f"only one uplink rate was measured (5g-split-ai, {rate:g} Mbit/s)" in text
    assert "24 of 24 measured inferences carry traffic figures" in text


def test_markdown_shows_each_points_spread_beside_the_hosts_speed(report: object, shared_sweep: Path) -> None:
    """The repeatability section: per point the e2e CV and the host-speed reference's CV per node CPU from the
    sweep's real runs (one right before each of the 6 inferences), the same figures as summary.csv."""
    text = report.markdown.read_text()  # type: ignore[attr-defined]
    assert "## Repeatability and host speed" in text
    for s in summarise(read_records(shared_sweep).records):
        speed = s.host_speed
        assert speed is not None and (speed.n, speed.between, speed.burst_runs) == (6, 6, 0)
        cells = [f"{s.partition} ({s.partition_id})", str(s.n), f"{s.e2e_cv_pct:.2f} %"]
        assert "| " + " | ".join(cells) + " |" in text
        assert f"| 6: 6 between the inferences | {speed.cv_pct['edge']:.2f} % ({speed.median_ms['edge']:.1f} ms) | " \
               f"{speed.cv_pct['ue']:.2f} % ({speed.median_ms['ue']:.1f} ms) |" in text


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append((tag, name, value))


def test_html_is_one_self_contained_file(report: object) -> None:
    page = report.html.read_text()  # type: ignore[attr-defined]
    parser = _Refs()
    parser.feed(page)
    images = [v for tag, _, v in parser.refs if tag == "img"]
    assert len(images) == len(report.plots) >= 9  # type: ignore[attr-defined]
    assert all(v.startswith("data:image/png;base64,") for v in images)
    assert not [r for r in parser.refs if r[0] != "img"]
    assert "<link" not in page and "@import" not in page and "url(" not in page


def test_chromium_renders_the_page_with_every_table_and_image(report: object, tmp_path: Path) -> None:
    checked = tmp_path / "checked.html"
    checked.write_text(report.html.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))  # type: ignore[attr-defined]
    result = _browser(tmp_path, "--virtual-time-budget=15000", "--dump-dom", checked.as_uri())
    match = re.search(r'<pre id="splitbed-check">(.*?)</pre>', result.stdout, flags=re.S)
    assert match, f"the check did not run: exit {result.returncode}, stderr: {result.stderr[-2000:]}"
    state = json.loads(html.unescape(match.group(1)))
    assert state["images"] == len(report.plots) and state["decoded"] == state["images"]  # type: ignore[attr-defined]
    assert min(state["widths"]) > 1500  # 300 dpi
    # best, two seed tables, two tail tables and two repeatability tables (one per carriage), four traffic-model
    # tables (one per point)
    assert state["tables"] == 1 + 2 + 2 + 2 + 4 and state["best"] == 2
    assert state["rows"] >= 1 + 4 + 4 + 4 + 4 * 7
    assert state["sections"] == ["tails", "repeatability", "traffic", "plots"]
    # per carriage: stacked latency, latency CDF, bitrate over time, burst sizes; per model: sizes. One profile,
    # so no latency-vs-rate figure, and the page says why
    assert sorted(state["kinds"]) == sorted(["latency", "cdf", "bitrate", "burst"] * 2 + ["size"])
    assert len(state["plotNotes"]) == 1 and "only one uplink rate was measured" in state["plotNotes"][0]
    assert state["warning"] and state["external"] == [] and state["title"].startswith("splitbed")


def test_chromium_screenshot_shows_a_rendered_page(report: object, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    result = _browser(tmp_path, "--window-size=1400,2400", f"--screenshot={shot}",
                      report.html.as_uri())  # type: ignore[attr-defined]
    assert shot.is_file(), result.stderr[-2000:]
    with Image.open(shot) as image:
        grey = image.convert("L")
        assert grey.size == (1400, 2400)
        stats = ImageStat.Stat(grey)
        assert stats.stddev[0] > 20  # text, tables and plots, not a blank page
        dark = sum(grey.histogram()[:100])
        assert dark > 2000


def test_report_cli_prints_the_paths_and_refuses_empty_input(shared_sweep: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(shared_sweep), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert f"Report: {tmp_path / 'r' / 'report.html'}" in result.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"record_type": "job_done"}\n')
    result = runner.invoke(app, ["report", str(empty)])
    assert result.exit_code == 2 and "no inference measurements" in result.output
