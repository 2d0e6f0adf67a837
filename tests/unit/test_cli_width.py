"""An 80-column terminal: every `--help` of both CLIs, the sweep's summary table and `netem profiles` fit, and no
name is cut to "mobi..." (columns are hidden instead, and a line says so; `--wide` shows every column)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from rich.console import Console

import netem.cli
import splitbed.cli
from netem.profile import builtin_profiles
from splitbed.commands.sweep import summary_table
from splitbed.sweep.summary import summarise

WIDTH = 80
ELLIPSIS = "…"


def commands(command: Any, path: list[str]) -> Iterator[list[str]]:
    yield path
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from commands(sub, [*path, name])


def render(renderable: Any, width: int) -> list[str]:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text().splitlines()


def test_every_help_fits_80_columns(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    seen = 0
    for module in (splitbed.cli, netem.cli):
        prog = module.app.info.name
        for path in commands(typer.main.get_command(module.app), [prog]):
            assert module.main([*path[1:], "--help"]) == 0
            text = capsys.readouterr().out
            wide = [line for line in text.splitlines() if len(line) > WIDTH]
            assert not wide, f"{' '.join(path)} --help: {wide}"
            seen += 1
    assert seen >= 18


def _record(profile: str, model: str, partition: str, pid: int, e2e: float, carriage: str = "tlv") -> dict:
    return {"record_type": "inference", "status": "ok", "tags": {"point": f"{profile}|{model}|{partition}|{carriage}"},
            "model": model, "partition_name": partition, "partition_id": pid, "encoding": carriage,
            "compression_profile": "none", "image": "builtin:chelsea", "weights": {"source": "random", "seed": 0},
            "link": {"profile": {"name": profile, "uplink": {"rate_mbit": 46.0, "delay_ms": 16.3}},
                     "backend": "userspace"},
            "raw_intermediate_bytes": 12_845_056, "serialized_intermediate_bytes": 12_845_077,
            "uplink_bytes": 12_845_077, "e2e_latency_ms": e2e, "local_inference_ms": e2e / 3, "delivery_ms": e2e / 2,
            "remote_inference_ms": e2e / 6}


def _summaries() -> list[Any]:
    records = []
    for profile in ("5g-mmwave-driving", "lte"):
        for model, partition, pid in (("mobilenet_v2", "block_13_project_BN", 11), ("vgg16", "block1_conv1", 1)):
            for carriage in ("tlv", "json-baseline"):
                records += [_record(profile, model, partition, pid, 1000.0 + i * 7.5, carriage) for i in range(7)]
    return summarise(records)


def test_the_sweep_table_fits_80_columns_without_cutting_a_name() -> None:
    summaries = _summaries()
    table, width, hidden = summary_table(summaries, width=WIDTH)
    lines = render(table, width)
    assert max(map(len, lines)) <= WIDTH and not any(ELLIPSIS in line for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    for name in ("5g-mmwave-driving", "mobilenet_v2", "block_13_project_BN", "json-baseline",
                 "1022.5 [1000.0, 1045.0]"):
        assert name in text, (name, text)
    assert hidden  # something had to go; the command says which and how to see it
    wide_table, wide_width, none = summary_table(summaries, wide=True)
    wide = "\n".join(render(wide_table, wide_width))
    assert none == [] and all(header in wide for header in ("remote ms", "local ms", "uplink bytes"))


def test_each_profile_model_and_encoding_gets_its_titled_table() -> None:
    summaries = _summaries()
    table, width, hidden = summary_table(summaries, width=WIDTH)
    text = "\n".join(render(table, width))
    groups = {(s.profile, s.model, s.carriage) for s in summaries}
    assert len(groups) == 8 and all(" · ".join(group) in text for group in groups)
    assert "delivery ms" in text and "e2e ms" in text  # the network figure stays when columns go


def _paced(partition: str, pid: int, late: int, dropped: int) -> list[dict]:
    """Ten frames of a periodic:1/queue:1 point: `late` of them late, the last `dropped` dropped."""
    records = []
    for frame in range(10):
        record = _record("5g-split-ai", "vgg16", partition, pid, 1000.0 + frame * 7.5)
        record["tags"]["point"] += "|workload=periodic:1/queue:1"
        record["workload"] = {"spec": "periodic:1/queue:1", "frame": frame, "late": frame < late}
        if frame >= 10 - dropped:
            record = {k: record[k] for k in ("record_type", "tags", "model", "partition_name", "encoding",
                                             "compression_profile", "image", "workload")}
            record.update(status="dropped", workload={**record["workload"], "late": None, "dropped": True})
        records.append(record)
    return records


def test_a_paced_points_late_and_dropped_frames_stay_in_80_columns() -> None:
    records = _paced("block1_conv1", 1, late=3, dropped=2) + _paced("fc1", 21, late=0, dropped=0)
    records += [_record("5g-split-ai", "vgg16", "block2_conv1", 4, 900.0 + i) for i in range(7)]  # back to back
    summaries = summarise(records)
    table, width, hidden = summary_table(summaries, width=WIDTH)
    lines = render(table, width)
    assert max(map(len, lines)) <= WIDTH and not any(ELLIPSIS in line for line in lines), "\n".join(lines)
    rows = {line.split()[0 if not line.startswith(" *") else 1]: line.split() for line in lines
            if line.strip().lstrip("* ").startswith(("block", "fc1"))}
    assert rows["block1_conv1"][-1] == "3/2" and rows["fc1"][-1] == "0/0"  # of the 8 (and 10) frames that ran
    assert rows["block2_conv1"][-1] == "-"  # back to back: no capture times, nothing late or dropped
    assert "uplink bytes" in "\n".join(lines) and "late/" in "\n".join(lines)
    assert "late/drop (paced workloads)" in " ".join(" ".join(lines).split())
    assert all("\n" not in header for header in hidden)  # the hidden-columns note is one line
    wide_table, wide_width, _ = summary_table(summaries, wide=True)
    assert "3/2" in "\n".join(render(wide_table, wide_width))
    single, _, _ = summary_table(summarise(records[-7:]), width=WIDTH)
    assert "late/" not in "\n".join(render(single, WIDTH))  # no paced point: no column


def test_netem_profiles_fits_80_columns_and_wide_shows_everything() -> None:
    env = dict(os.environ, COLUMNS=str(WIDTH))
    done = subprocess.run([sys.executable, "-m", "netem.cli", "profiles"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(map(len, lines)) <= WIDTH and ELLIPSIS not in done.stdout, done.stdout
    for profile in builtin_profiles():
        assert profile.name in done.stdout
    assert "--wide shows every column" in " ".join(done.stdout.split())
    wide = subprocess.run([sys.executable, "-m", "netem.cli", "profiles", "--wide"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert "TS 22.261" in wide.stdout and "source" in wide.stdout and ELLIPSIS not in wide.stdout


def test_the_partition_table_fits_80_columns() -> None:
    env = dict(os.environ, COLUMNS=str(WIDTH))
    done = subprocess.run([sys.executable, "-m", "splitbed.cli", "partitions", "mobilenet_v2"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert max(map(len, done.stdout.splitlines())) <= WIDTH and ELLIPSIS not in done.stdout, done.stdout
    assert "expanded_conv_project_BN" in done.stdout and "float32 (112, 112, 16)" in done.stdout
