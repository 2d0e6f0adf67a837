"""CPU plans for the UE node, the edge node and the link (splitbed.runtime.cpus): the default per CPU count,
the text form, refusals, and pinning a real running process's threads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from splitbed.runtime.cpus import (
    CpuPlan,
    CpuPlanError,
    default_plan,
    exec_prefix,
    parse_cpus,
    pin_process,
    plan_from,
)


@pytest.mark.parametrize(("cpus", "ue", "edge", "link", "capture"), [
    ((0,), (0,), (0,), (0,), (0,)),
    ((0, 1), (0,), (1,), (1,), (0,)),  # the captures with the UE, off the edge's CPU
    ((0, 1, 2), (0,), (1,), (2,), (2,)),  # with the link
    ((0, 1, 2, 3), (0,), (1, 2), (3,), (3,)),
    ((2, 3, 4, 5, 6, 7, 8, 9), (2, 3, 4), (5, 6, 7, 8), (9,), (9,)),
])
def test_the_default_plan_follows_the_cpu_count(cpus: tuple[int, ...], ue: tuple[int, ...], edge: tuple[int, ...],
                                                link: tuple[int, ...], capture: tuple[int, ...]) -> None:
    plan = default_plan(cpus)
    assert (plan.ue, plan.edge, plan.link, plan.capture) == (ue, edge, link, capture)
    assert f"{len(cpus)} CPU" in plan.source and plan.to_dict()["capture"] == list(capture)
    if len(cpus) > 1:
        assert not set(plan.capture) & set(plan.edge)
    assert plan_from("auto", cpus) == plan and plan_from(None, cpus) == plan


def test_text_plans_parse_and_round_trip() -> None:
    plan = plan_from("ue=0;edge=1;link=1", (0, 1))
    assert (plan.ue, plan.edge, plan.link, plan.source) == ((0,), (1,), (1,), "given")
    assert plan.text() == "ue=0;edge=1;link=1" and plan_from(plan.text(), (0, 1)) == plan
    assert plan_from("edge=0-1", (0, 1)).ue == () and parse_cpus("0-2,5") == (0, 1, 2, 5)
    assert not plan_from("none", (0, 1)).pinned and plan_from("none").text() == "none"
    assert plan_from({"ue": [1], "link": "0"}, (0, 1)).link == (0,)
    assert plan_from("edge=1;capture=0", (0, 1)).capture == (0,) and plan_from("capture=0", (0, 1)).pinned
    assert plan_from("ue=0;capture=0-1", (0, 1)).text() == "ue=0;capture=0,1"
    assert plan.to_dict()["ue"] == [0] and plan.to_dict()["host_cpus"] == os.cpu_count()
    assert exec_prefix((0, 2)) == ["taskset", "-c", "0,2"] and exec_prefix(()) == []


@pytest.mark.parametrize(("text", "message"), [
    ("gpu=0", "unknown role 'gpu'"), ("ue", "not ROLE=CPUS"), ("ue=x", "not like 0 or 0-3,6"),
    ("ue=3-1", "empty"), ("ue=7", "may only use 0,1"),
])
def test_bad_plans_get_one_clear_message(text: str, message: str) -> None:
    with pytest.raises(CpuPlanError, match=message):
        plan_from(text, (0, 1))


def test_pinning_a_running_process_pins_every_thread() -> None:
    cpu = sorted(os.sched_getaffinity(0))[0]
    code = "import threading, time\nfor _ in range(3): threading.Thread(target=time.sleep, args=(30,)).start()\n" \
           "print('up', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        assert pin_process(child.pid, (cpu,)) == 4
        tasks = os.listdir(f"/proc/{child.pid}/task")
        assert all(os.sched_getaffinity(int(t)) == {cpu} for t in tasks)
    finally:
        child.kill()
        child.wait()
    assert pin_process(child.pid, ()) == 0 and not CpuPlan((), (), (), "x").pinned
