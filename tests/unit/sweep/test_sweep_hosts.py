"""Records from several machines (splitbed.sweep.hosts): a point measured on hosts of different CPU models is
summarised per CPU model unless pooled on request, the report gets a table per host and names every machine, and
the sweep command says which it did."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from splitbed.commands.sweep import hosts_line, summary_table
from splitbed.report import build_report
from splitbed.sweep.hosts import cpu_model, machine, machines
from splitbed.sweep.summary import best_per_group, by_cpu_model, split_by_host, summarise, write_csv

FAST, SLOW = "Fast CPU 9000", "Slow CPU 100"


def _record(point: str, partition: str, pid: int, e2e: float, host: str, cpu: str, *, index: int,
            worker: str | None = None, stolen: float = 0.0) -> dict:
    tags: dict = {"point": point}
    if worker is not None:
        tags["worker"] = {"name": worker, "address": f"tcp://{host}:4000", "pid": 7, "hostname": host}
    facts = {"hostname": f"{host}-node", "cpu_model": cpu, "cpu_count": 8, "usable_cores": 8, "kernel": "6.1.0"}
    window = {"host_cpu_ms": 100.0, "host_cpu_stolen_ms": stolen, "cpu_time_ms": 2.0}
    return {"record_type": "inference", "status": "ok", "tags": tags, "model": "mobilenet_v2",
            "partition_name": partition, "partition_id": pid, "encoding": "tlv", "compression_profile": "none",
            "image": "builtin:chelsea", "weights": {"source": "random", "seed": 0},
            "link": {"profile": {"name": "ideal", "uplink": {}}, "backend": "userspace"},
            "raw_intermediate_bytes": 1000 * pid, "serialized_intermediate_bytes": 1000 * pid + 21,
            "e2e_latency_ms": e2e, "local_inference_ms": e2e / 2, "remote_inference_ms": e2e / 4,
            "host": {"local": facts, "remote": facts}, "local_resources": window, "remote_resources": window,
            "session_id": f"{host}-{point}", "session_inference_index": index,
            "started_at_utc": f"2026-01-01T00:00:{index:02d}", "repetition": 0}


def _two_hosts() -> list[dict]:
    """Point a on both machines (fast ~10 ms, slow ~40 ms), point b on the fast one only."""
    records = [_record("a", "block_3", 3, 10 + i, "alpha", FAST, index=i, worker="w1") for i in range(6)]
    records += [_record("a", "block_3", 3, 40 + i, "beta", SLOW, index=i, worker="w2", stolen=10.0)
                for i in range(6)]
    records += [_record("b", "block_13", 13, 30 + i, "alpha", FAST, index=10 + i, worker="w1") for i in range(6)]
    return records


def test_records_say_their_machine_and_cpu_model() -> None:
    record = _two_hosts()[0]
    assert (cpu_model(record), machine(record)) == (FAST, "alpha")  # the worker's machine, not the node's name
    del record["tags"]["worker"]
    assert machine(record) == "alpha-node"
    assert cpu_model({"record_type": "inference"}) == "unknown"
    found = machines(_two_hosts())
    assert list(found) == ["alpha", "beta"]
    assert (found["alpha"].records, found["beta"].records) == (12, 6)
    assert found["beta"].stolen_pct == 10.0 and found["alpha"].stolen_pct == 0.0
    assert found["beta"].describe() == ("beta: Slow CPU 100, 8 CPUs, kernel 6.1.0, 6 measured, 10.00 % stolen "
                                        "(Dask worker w2)")


def test_a_point_measured_on_two_cpu_models_is_summarised_per_model() -> None:
    summaries = summarise(_two_hosts())
    assert [(s.key, s.cpu_model, s.hosts, s.n) for s in summaries] == [
        ("a", FAST, ["alpha"], 6), ("a", SLOW, ["beta"], 6), ("b", FAST, ["alpha"], 6)]
    assert [s.median("e2e_latency_ms") for s in summaries] == [12.5, 42.5, 32.5]  # never the pooled 27.5
    assert split_by_host(summaries) == ["a"]
    groups = by_cpu_model(summaries)
    assert {cpu: [s.key for s in members] for cpu, members in groups.items()} == {FAST: ["a", "b"], SLOW: ["a"]}
    assert {s.key for s in best_per_group(groups[SLOW]).values()} == {"a"}


def test_pool_hosts_pools_and_names_every_model_and_machine(tmp_path: Path) -> None:
    pooled = summarise(_two_hosts(), pool_hosts=True)
    assert [(s.key, s.n) for s in pooled] == [("a", 12), ("b", 6)]
    assert pooled[0].cpu_model == f"{FAST}; {SLOW}" and pooled[0].hosts == ["alpha", "beta"]
    assert pooled[0].median("e2e_latency_ms") == 27.5  # between the machines: a median of neither
    rows = list(csv.DictReader(write_csv(pooled, tmp_path / "summary.csv").open()))
    assert (rows[0]["cpu_model"], rows[0]["hosts"]) == (f"{FAST}; {SLOW}", "alpha; beta")
    assert "pool records of different CPU models" in str(hosts_line(pooled, pool_hosts=True))
    assert hosts_line(summarise(_two_hosts()), pool_hosts=False) == (
        "1 point(s) were measured on hosts of different CPU models: one row per CPU model (summary.csv: cpu_model, "
        "hosts); --pool-hosts pools them")
    assert hosts_line(summarise(_two_hosts()[:6]), pool_hosts=False) is None


def test_the_printed_table_is_per_cpu_model(tmp_path: Path) -> None:
    from rich.console import Console

    table, width, _ = summary_table(summarise(_two_hosts()), width=200)
    console = Console(width=width, record=True, file=(tmp_path / "out.txt").open("w"))
    console.print(table)
    text = console.export_text()
    assert f"ideal [{FAST}]" in text and f"ideal [{SLOW}]" in text
    # a star per CPU model (pooled across them, the slow host's block_3 would lose to block_13 and get none)
    assert text.count("* block_3") == 2 and text.count("* block_13") == 0


def test_the_report_has_tables_per_host_and_names_every_machine(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in _two_hosts()))
    paths = build_report(tmp_path)
    text = paths.markdown.read_text()
    assert f"### mobilenet_v2 on ideal, tlv/none; UE host, edge host; host {FAST} (alpha)" in text
    assert f"### mobilenet_v2 on ideal, tlv/none; UE host, edge host; host {SLOW} (beta)" in text
    assert "| Host (CPU model) |" in text
    assert "Measured on 2 CPU models: tables and plots are per host" in text
    assert "**Hosts**: alpha: Fast CPU 9000, 8 CPUs" in text and "beta: Slow CPU 100" in text
    assert all(p.is_file() for p in paths.plots) and any("host2" in str(p) for p in paths.plots)
    pooled = build_report(tmp_path, tmp_path / "pooled", pool_hosts=True).markdown.read_text()
    assert "; host " not in pooled and "pool records of hosts with different CPU models" in pooled
