"""docs/INSTALL.md, "In a container": the project's node image started without and with the documented `docker
run` flags (read from the document, as the Docker SDK takes them), and the doctor's probes asked inside.
Without them, `netns`, `docker_cgroup` and `realtime` fail with their reasons; with them, `netns` and
`docker_cgroup` pass, and `realtime` passes exactly when the engine grants containers a real-time budget (a
cgroup-v1 kernel with real-time group scheduling needs the engine started with --cpu-rt-runtime)."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from splitbed.runtime.mounts import default_mounts

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[3]
PROBES = ("netns", "docker_cgroup", "realtime")
CODE = ("import json; from netem.doctor import run_probe; "
        f"print(json.dumps({{n: [run_probe(n).ok, run_probe(n).detail] for n in {PROBES!r}}}))")
RT_BUDGET = Path("/sys/fs/cgroup/cpu/docker/cpu.rt_runtime_us")


def documented_flags() -> list[str]:
    text = (REPO / "docs" / "INSTALL.md").read_text()
    block = re.search(r"^```text\n(docker run .*?)^```", text, flags=re.S | re.M)
    assert block, "docs/INSTALL.md has no docker run block"
    words = shlex.split(block.group(1).replace("\\\n", " "))
    return words[:words.index("-v", words.index("--cpu-rt-runtime=950000"))]  # up to the project mount


def sdk_options(flags: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The flags as docker-py's containers.run takes them; the ones it cannot pass are returned apart."""
    options: dict[str, Any] = {"cap_add": [], "security_opt": [], "volumes": []}
    unsupported = []
    words = iter(flags[2:])  # after "docker run"
    for word in words:
        if word in ("--rm", "-it"):
            continue
        if word == "--cap-add":
            options["cap_add"].append(next(words))
        elif word == "--security-opt":
            value = next(words)
            (unsupported if value.startswith("systempaths=") else options["security_opt"]).append(value)
        elif word.startswith("--cgroupns="):
            options["cgroupns"] = word.split("=", 1)[1]
        elif word == "-v":
            options["volumes"].append(next(words))
        elif word.startswith("--cpu-rt-runtime="):
            options["cpu_rt_runtime"] = int(word.split("=", 1)[1])
        else:
            raise AssertionError(f"a documented flag this test does not know: {word}")
    return options, unsupported


def probes_inside(client: Any, image: str, **options: Any) -> dict[str, list[Any]]:
    volumes = [m.docker_bind() for m in default_mounts()] + options.pop("volumes", [])
    out = client.containers.run(image, [sys.executable, "-c", CODE], remove=True, network_mode="none",
                                volumes=volumes, **options)
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def test_the_documented_flags_give_namespaces_and_cgroups_and_say_why_realtime_may_still_fail(
        node_image: Any, docker_client: Any) -> None:
    bare = probes_inside(docker_client, node_image.tag)
    assert not any(ok for ok, _ in bare.values()), bare
    assert "Operation not permitted" in bare["realtime"][1] and "Read-only file system" in bare["docker_cgroup"][1]
    options, unsupported = sdk_options(documented_flags())
    assert unsupported == ["systempaths=unconfined"]  # /proc/sys: not needed by these probes
    grants = not RT_BUDGET.exists() or int(RT_BUDGET.read_text()) > 0
    if not grants:  # the engine has no real-time budget to give: the container would not start with one
        options.pop("cpu_rt_runtime")
    flagged = probes_inside(docker_client, node_image.tag, **options)
    assert flagged["netns"][0] and flagged["docker_cgroup"][0], flagged
    assert flagged["realtime"][0] == grants, flagged
