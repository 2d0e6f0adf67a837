"""The report's host-CPU statements (splitbed.report.render) from what records say about steal and CPU wait."""

from __future__ import annotations

from splitbed.report.provenance import provenance
from splitbed.report.render import host_cpu_line, host_warning, trace_starts_line, transfer_ends_line


def _record(stolen_ms: float | None, host_ms: float | None, wait_ms: float | None) -> dict:
    window = {"host_cpu_stolen_ms": stolen_ms, "host_cpu_ms": host_ms, "host_cpu_wait_ms": wait_ms}
    return {"record_type": "inference", "status": "ok", "tags": {"point": "p"},
            "local_resources": window, "remote_resources": dict(window)}


def test_quiet_host_gets_a_method_line_and_no_warning() -> None:
    info = provenance([_record(0.0, 60.0, 0.5), _record(0.0, 60.0, 1.5), _record(1.0, 80.0, 2.0)])
    assert info.host_cpu_stolen_pct == 100 * 2.0 / 400.0
    assert host_warning(info) is None
    line = host_cpu_line(info)
    assert line.startswith("0.50 % of the host's CPU time stolen")
    assert "median 3.0 ms per inference" in line  # both nodes' waits per record: 1, 3, 4


def test_stolen_host_gets_a_warning_with_the_share() -> None:
    info = provenance([_record(20.0, 60.0, None)] * 3)
    assert host_warning(info) is not None and "33.3 %" in str(host_warning(info))
    assert "waited" not in host_cpu_line(info)  # no PSI: nothing said about it


def test_records_without_host_figures_say_unknown() -> None:
    info = provenance([_record(None, None, None), {"record_type": "inference", "status": "ok"}])
    assert info.host_cpu_stolen_pct is None and host_warning(info) is None
    assert host_cpu_line(info).startswith("steal time unknown")


def _ends(delivery: str, delivery_reason: str | None, downlink: str, downlink_reason: str | None,
          status: str = "ok") -> dict:
    return {"record_type": "inference", "status": status, "tags": {"point": "p"}, "delivery_end": delivery,
            "delivery_end_reason": delivery_reason, "downlink_end": downlink, "downlink_end_reason": downlink_reason}


def test_transfer_ends_are_counted_with_the_reason_each_fell_back_to_a_read() -> None:
    info = provenance([_ends("kernel_rx", None, "kernel_rx", None), _ends("kernel_rx", None, "kernel_rx", None),
                       _ends("app_read", "clock_step", "app_read", "read_continued"),
                       _ends("app_read", "out_of_order", "kernel_rx", None),
                       _ends("app_read", "unstamped", "app_read", "unstamped", status="error")])  # not measured
    assert transfer_ends_line(info) == (
        "2 of 4 uplink deliveries end at the kernel's receive stamp (at the node's read: 1 clock_step, "
        "1 out_of_order); 3 of 4 downlinks end at the kernel's receive stamp (at the node's read: 1 read_continued) "
        '(docs/METRICS.md, "Receive stamps")')
    bounded = provenance([_ends("kernel_rx", None, "kernel_rx_bound", "bounded_by_rest"),
                          _ends("kernel_rx", None, "kernel_rx", None), _ends("kernel_rx", None, "app_read", "unstamped")])
    assert transfer_ends_line(bounded).split("; ")[1] == (
        "2 of 3 downlinks end at the kernel's receive stamp (1 at the RESULT_REST's, read with the RESULT: a bound) "
        '(at the node\'s read: 1 unstamped) (docs/METRICS.md, "Receive stamps")')
    older = provenance([{**_ends("app_read", None, "kernel_rx", None)}])  # schema 2.0/2.1: no reason field
    assert "at the node's read: 1 app_read" in transfer_ends_line(older)
    assert transfer_ends_line(provenance([])) == "-"


def _traced(start: float | None, status: str = "ok") -> dict:
    trace = {"path": "/x/netem/traces/mmwave-driving.tput", "kind": "throughput"}
    if start is not None:
        trace["start_s"] = start
    return {"record_type": "inference", "status": status, "tags": {"point": "p"},
            "link": {"profile": {"name": "5g-mmwave-driving", "uplink": {"trace": trace}, "downlink": {}}}}


def test_trace_starts_say_where_in_the_trace_the_records_ran() -> None:
    info = provenance([_traced(None), _traced(180.0), _traced(1620.0), _traced(180.0)])
    line = trace_starts_line(info)
    assert line is not None and line.startswith(
        "5g-mmwave-driving uplink trace mmwave-driving.tput: replayed from 3 start point(s), 0-1,620 s in")
    assert trace_starts_line(provenance([_record(0.0, 1.0, None)])) is None  # no trace: no line
