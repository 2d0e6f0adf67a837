"""Writing the report: Markdown (report.md, plots as PNG files beside it) and one self-contained HTML page
(report.html: styles inline, every plot embedded as a data: URI, no external reference), from the same content."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from netem.hostload import STEAL_LIMIT
from splitbed.report.budgets import Budget
from splitbed.report.plots import BEST_MARK, Plot
from splitbed.report.provenance import Provenance
from splitbed.report.tables import Table


@dataclass
class ReportContent:
    title: str
    source: str
    budget: Budget
    provenance: Provenance
    best: Table
    tables: list[Table]
    plots: list[Plot]
    excluded_rate_profiles: list[str] = field(default_factory=list)
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)
    method_notes: list[str] = field(default_factory=list)
    tail_tables: list[Table] = field(default_factory=list)      # percentiles and budget shares (kpi_tables)
    traffic_tables: list[Table] = field(default_factory=list)   # uplink traffic model per point (kpi_tables)
    traffic_line: str | None = None                            # how many records carry capture figures
    plot_notes: list[str] = field(default_factory=list)         # figures not drawn, and why
    baseline_tables: list[Table] = field(default_factory=list)  # full local inference vs the best split
    repeatability_tables: list[Table] = field(default_factory=list)  # e2e CV beside the host's speed (repeatability)


REPEATABILITY_TEXT = ("Per point: the spread of the end-to-end latency (CV, outliers) beside the host's own speed in the "
                      "same minutes (a reference workload's CPU time on each node's CPUs, and where its runs came "
                      "from), and the spread note where e2e varied above the target while the host varied comparably.")


def weights_warning(content: ReportContent) -> str | None:
    info = content.provenance
    if not info.random_weights and not info.weights_warnings:
        return None
    text = ("Some or all records were measured with RANDOM WEIGHTS (no ImageNet weights were available): tensor "
            "sizes, byte counts and timings are valid, predictions and accuracy are meaningless.")
    if info.weights_warnings:
        text += " Recorded warning: " + info.weights_warnings[0]
    return text


def host_warning(info: Provenance) -> str | None:
    """Set when the hypervisor took over netem.hostload.STEAL_LIMIT of the host's CPU while the nodes measured."""
    stolen = info.host_cpu_stolen_pct
    if stolen is None or stolen <= 100 * STEAL_LIMIT:
        return None
    return (f"The hypervisor stole {stolen:.1f} % of this host's CPU time while the nodes measured (limit "
            f"{STEAL_LIMIT:.0%}): times may describe a descheduled virtual machine as much as the link and the "
            "model. summary.csv gives the share per point (host_cpu_stolen_pct).")


def host_cpu_line(info: Provenance) -> str:
    stolen = info.host_cpu_stolen_pct
    if stolen is None:
        return "steal time unknown (no steal field in /proc/stat)"
    text = f"{stolen:.2f} % of the host's CPU time stolen by the hypervisor in the nodes' measured windows"
    if info.host_cpu_wait_ms:
        waits = sorted(info.host_cpu_wait_ms)
        text += f"; tasks waited for a CPU a median {waits[len(waits) // 2]:.1f} ms per inference (PSI)"
    return text + " (netem.hostload, docs/METRICS.md)"


def transfer_ends_line(info: Provenance) -> str:
    """How many transfers end at the kernel's receive stamp, and why the others end at the node's read."""
    parts = []
    for what, ends in (("uplink deliveries", info.delivery_ends), ("downlinks", info.downlink_ends)):
        total = sum(ends.values())
        if not total:
            continue
        # bounded_by_rest: at the kernel's stamp of the RESULT_REST read with the RESULT, a bound from above
        bounded = ends.get("bounded_by_rest", 0)
        stamped = ends.get("kernel_rx", 0) + bounded
        reads = ", ".join(f"{n} {reason}" for reason, n in sorted(ends.items())
                          if reason not in ("kernel_rx", "bounded_by_rest"))
        parts.append(f"{stamped} of {total} {what} end at the kernel's receive stamp"
                     + (f" ({bounded} at the RESULT_REST's, read with the RESULT: a bound)" if bounded else "")
                     + (f" (at the node's read: {reads})" if reads else ""))
    if not parts:
        return "-"
    return "; ".join(parts) + " (docs/METRICS.md, \"Receive stamps\")"


def trace_starts_line(info: Provenance) -> str | None:
    """Where in their traces the records of trace-driven profiles ran (None: no trace-driven profile)."""
    if not info.trace_starts:
        return None
    parts = []
    for (profile, direction, trace), starts in sorted(info.trace_starts.items()):
        where = f"{min(starts):,.0f}-{max(starts):,.0f} s in" if len(starts) > 1 else f"{min(starts):,.0f} s in"
        parts.append(f"{profile} {direction} trace {trace}: replayed from {len(starts)} start point(s), {where}")
    return "; ".join(parts) + " (each repetition k of n starts k/n of the period in: docs/SWEEP.md, " \
        "\"Trace-driven profiles\")"


MECHANISMS = {"none": "no emulation (the host's own speed)",
              "stretch": "emulated by measured time dilation (the sub-model waited until the device's time)",
              "model": "faster than this host: measured at host speed, the device's time modelled"}


def device_lines(info: Provenance) -> list[str]:
    """What the report's top says about the devices: which were emulated and how (docs/DEVICES.md)."""
    lines = []
    for side, label in (("ue", "UE"), ("edge", "Edge")):
        parts = []
        for key, count in info.devices[side].items():
            name, _, mechanism = key.rpartition(": ")
            parts.append(f"{name}, {MECHANISMS.get(mechanism, mechanism)} ({count} records)")
        if parts:
            lines.append(f"{label}: " + "; ".join(parts) + ".")
    if info.late_stretches:
        lines.append("Late UE stretches (the record's head time exceeds the device's; docs/DEVICES.md): "
                     + ", ".join(f"{n} {cause}" for cause, n in sorted(info.late_stretches.items())) + ".")
    if any(k.endswith(": model") for side in info.devices.values() for k in side):
        lines.append("Where a device was modelled, tables give the end-to-end latency both measured and modelled "
                     "(measured - measured sub-model + modelled sub-model), and the modelled one ranks partitions.")
    lines.append("Energy figures of emulated devices are MODEL-BASED (device power x compute time; uplink radio "
                 "model on the inference's bytes and airtime), split into compute and radio.")
    return lines


def method_lines(content: ReportContent) -> list[tuple[str, str]]:
    """(what, how) pairs for the 'How this was measured' section."""
    info = content.provenance

    def counted(counter: dict[str, int]) -> str:
        return "; ".join(f"{k} ({v} records)" for k, v in counter.items()) or "-"

    local = info.versions.get("local", {})
    remote = info.versions.get("remote", {})
    host = info.hosts.get("local", {})
    lines = [
        ("Records", f"{info.measurements} measured inferences ({info.errors} failed), {info.warmups} warm-up "
                    f"inferences left out; from {info.first_utc or '-'} to {info.last_utc or '-'} (UTC)"),
        ("Source", content.source),
        ("Clock", counted(info.clocks) + ". Times are CLOCK_MONOTONIC differences (docs/METRICS.md)"),
        ("Link backend", counted(info.backends)),
        ("TCP", counted(info.tcp)),
        ("Node runtime", counted(info.runtimes)),
        ("Devices", " ".join(device_lines(info)) + " " + " ".join(f"{name}: {text}" for name, text in
                                                                sorted(info.device_descriptions.items()))),
        ("Inference call", counted(info.inference_calls)),
        ("Weights", counted(info.weights)),
        ("Input image", counted(info.images)),
        ("Statistics", "median per point; 95% CI = order-statistic (binomial) interval for the median, exact "
                       "coverage >= 95%, none when n < 6 (docs/SWEEP.md)"),
        ("Software (local node)", ", ".join(f"{k} {v}" for k, v in sorted(local.items()) if v) or "-"),
        ("Software (remote node)", ", ".join(f"{k} {v}" for k, v in sorted(remote.items()) if v) or "-"),
        ("Host", ", ".join(f"{k}: {v}" for k, v in sorted(host.items())) or "-") if len(info.machines) <= 1 else
        ("Hosts", "; ".join(m.describe() for m in info.machines.values())),
        ("Host CPU", host_cpu_line(info)),
        ("Transfer ends", transfer_ends_line(info)),
    ]
    traces = trace_starts_line(info)
    if traces is not None:
        lines.append(("Trace starts", traces))
    if content.traffic_line is not None:
        lines.append(("Traffic", content.traffic_line))
    lines.append(("Percentiles", "nearest-rank p90, p95, p99 and the maximum (always a measured value; with n "
                                 "inferences p99 is the maximum unless n > 100); budget shares with a 95 % "
                                 "Clopper-Pearson interval (docs/SWEEP.md, \"Statistics\")"))
    lines += [("Note", note) for note in content.method_notes]
    if content.skipped_lines:
        first = content.skipped_lines[0]
        lines.append(("Skipped lines", f"{len(content.skipped_lines)} unreadable line(s) in the results "
                      f"(first: line {first[0]}: {first[1]})"))
    return lines


def profile_lines(content: ReportContent) -> list[tuple[str, str, str]]:
    """(name, description with figures, source) per link profile used."""
    result = []
    for name, profile in sorted(content.provenance.profiles.items()):
        up, down = profile.get("uplink") or {}, profile.get("downlink") or {}
        figures = (f"uplink {_rate(up)}, {up.get('delay_ms', 0)} ms; downlink {_rate(down)}, "
                   f"{down.get('delay_ms', 0)} ms")
        result.append((name, f"{profile.get('description', '')} ({figures})", str(profile.get("source", ""))))
    return result


def _rate(direction: dict[str, object]) -> str:
    rate = direction.get("rate_mbit")
    if rate is not None:
        return f"{rate} Mbit/s"
    return "trace-driven" if direction.get("trace") else "unshaped"


# -- Markdown ---------------------------------------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    lines = [f"### {table.title}", ""]
    lines.append("| " + " | ".join(_md_escape(h) for h in table.headers) + " |")
    lines.append("|" + "|".join("---" for _ in table.headers) + "|")
    for index, row in enumerate(table.rows):
        cells = [_md_escape(c) for c in row]
        if index == table.best_row:
            cells = [f"**{c}**" for c in cells]
            cells[0] = f"{BEST_MARK} " + cells[0]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"_{_md_escape(n)}_" for n in table.notes]
    if table.notes:
        lines.append("")
    return lines


def render_markdown(content: ReportContent) -> str:
    out = [f"# {content.title}", ""]
    warning = weights_warning(content)
    if warning:
        out += [f"> **WARNING (weights):** {warning}", ""]
    stolen = host_warning(content.provenance)
    if stolen:
        out += [f"> **WARNING (host):** {stolen}", ""]
    out += ["## Devices", ""] + [f"- {_md_escape(line)}" for line in device_lines(content.provenance)] + [""]
    out += ["## Best partition per profile", "", f"{BEST_MARK} marks the partition with the lowest median "
            "end-to-end latency for its profile, devices, model and carriage.", ""]
    out += _md_table(content.best)[2:]
    out += ["## Metrics per partition (as listed by the testbed contribution)", "",
            "Times: median [95% CI] in ms; sizes: median in bytes.", ""]
    for table in content.tables:
        out += _md_table(table)
    if content.baseline_tables:
        out += ["## Baselines", ""]
        for table in content.baseline_tables:
            out += _md_table(table)
    if content.tail_tables:
        out += ["## Tails and budget shares", "",
                "Median, p90, p95, p99 and maximum per partition (ms), and the share of inferences within each "
                "bound of the budget with its 95 % interval.", ""]
        for table in content.tail_tables:
            out += _md_table(table)
    if content.repeatability_tables:
        out += ["## Repeatability and host speed", "", REPEATABILITY_TEXT, ""]
        for table in content.repeatability_tables:
            out += _md_table(table)
    if content.traffic_tables:
        out += ["## Uplink traffic model per point", "",
                "Measured from the packet captures (UE side: what the UE offered the link); also in "
                "traffic_model.csv and traffic_model.md beside the results.", ""]
        for table in content.traffic_tables:
            out += _md_table(table)
    out += ["## Plots", "", "Every figure is in plots/ as PNG (300 dpi) and SVG.", ""]
    out += [f"_{_md_escape(note)}_" for note in content.plot_notes] + ([""] if content.plot_notes else [])
    for plot in content.plots:
        out += [f"### {plot.title}", "", f"![{plot.title}]({plot.path.as_posix()})", "",
                f"{plot.caption} (SVG: {plot.svg.as_posix()})", ""]
    out += ["## Link profiles", ""]
    for name, description, source in profile_lines(content):
        out += [f"- **{name}**: {_md_escape(description)}. Source: {_md_escape(source)}"]
    out += ["", "## Budget", "", f"- **{content.budget.title}**: {content.budget.source}", "",
            "## How this was measured", ""]
    out += [f"- **{what}**: {_md_escape(how)}" for what, how in method_lines(content)]
    return "\n".join(out) + "\n"


# -- HTML -------------------------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:110em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.5em 0 1em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right;vertical-align:top}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
tr.best td{background:#fff4c2;font-weight:bold}
.warning{background:#fde2e1;border:2px solid #c62828;padding:.8em 1em;font-weight:bold;margin:1em 0}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#555}
.note{font-size:.85em;color:#555}.scroll{overflow-x:auto}dl dt{font-weight:bold;margin-top:.4em}dl dd{margin-left:1.5em}
"""


def _html_table(table: Table) -> str:
    e = html.escape
    parts = [f'<div class="scroll"><table id="{e(table.anchor)}" class="metrics"><thead><tr>']
    parts += [f"<th>{e(h)}</th>" for h in table.headers]
    parts.append("</tr></thead><tbody>")
    for index, row in enumerate(table.rows):
        best = index == table.best_row
        cells = [e(c) for c in row]
        if best:
            cells[0] = f'<span title="lowest median end-to-end latency">{BEST_MARK}</span> ' + cells[0]
        parts.append(f'<tr{" class=best" if best else ""}>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</tbody></table></div>")
    parts += [f'<p class="note">{e(n)}</p>' for n in table.notes]
    return "".join(parts)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(content: ReportContent, report_dir: Path) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{e(content.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{e(content.title)}</h1>"]
    warning = weights_warning(content)
    if warning:
        parts.append(f'<div class="warning" id="weights-warning">WARNING (weights): {e(warning)}</div>')
    stolen = host_warning(content.provenance)
    if stolen:
        parts.append(f'<div class="warning" id="host-warning">WARNING (host): {e(stolen)}</div>')
    parts.append('<h2 id="devices">Devices</h2><ul>' + "".join(f"<li>{e(line)}</li>" for line in device_lines(
        content.provenance)) + "</ul>")
    parts += ['<h2 id="best-partition">Best partition per profile</h2>',
              f"<p>{BEST_MARK} marks the partition with the lowest median end-to-end latency for its profile, "
              "devices, model and carriage.</p>", _html_table(content.best),
              '<h2 id="metrics">Metrics per partition (as listed by the testbed contribution)</h2>',
              "<p>Times: median [95% CI] in ms; sizes: median in bytes.</p>"]
    for table in content.tables:
        parts += [f"<h3>{e(table.title)}</h3>", _html_table(table)]
    if content.baseline_tables:
        parts.append('<h2 id="baselines">Baselines</h2>')
        for table in content.baseline_tables:
            parts += [f"<h3>{e(table.title)}</h3>", _html_table(table)]
    if content.tail_tables:
        parts += ['<h2 id="tails">Tails and budget shares</h2>',
                  "<p>Median, p90, p95, p99 and maximum per partition (ms), and the share of inferences within each "
                  "bound of the budget with its 95 % interval.</p>"]
        for table in content.tail_tables:
            parts += [f"<h3>{e(table.title)}</h3>", _html_table(table)]
    if content.repeatability_tables:
        parts += ['<h2 id="repeatability">Repeatability and host speed</h2>', f"<p>{e(REPEATABILITY_TEXT)}</p>"]
        for table in content.repeatability_tables:
            parts += [f"<h3>{e(table.title)}</h3>", _html_table(table)]
    if content.traffic_tables:
        parts += ['<h2 id="traffic">Uplink traffic model per point</h2>',
                  "<p>Measured from the packet captures (UE side: what the UE offered the link); also in "
                  "traffic_model.csv and traffic_model.md beside the results.</p>"]
        for table in content.traffic_tables:
            parts += [f"<h3>{e(table.title)}</h3>", _html_table(table)]
    parts.append('<h2 id="plots">Plots</h2><p class="note">Every figure is in plots/ beside this page as PNG (300 '
                 'dpi) and SVG.</p>')
    parts += [f'<p class="note plot-note">{e(note)}</p>' for note in content.plot_notes]
    for plot in content.plots:
        parts.append(f'<figure data-kind="{e(plot.kind)}"><img alt="{e(plot.title)}" '
                     f'src="{_data_uri(report_dir / plot.path)}"><figcaption><b>{e(plot.title)}.</b> '
                     f"{e(plot.caption)}</figcaption></figure>")
    parts.append('<h2 id="profiles">Link profiles</h2><dl>')
    for name, description, source in profile_lines(content):
        parts.append(f"<dt>{e(name)}</dt><dd>{e(description)}<br><span class=note>Source: {e(source)}</span></dd>")
    parts += ["</dl>", '<h2 id="budget">Budget</h2>',
              f"<p><b>{e(content.budget.title)}</b>: {e(content.budget.source)}</p>",
              '<h2 id="method">How this was measured</h2><dl>']
    parts += [f"<dt>{e(what)}</dt><dd>{e(how)}</dd>" for what, how in method_lines(content)]
    parts.append("</dl></body></html>")
    return "\n".join(parts) + "\n"
