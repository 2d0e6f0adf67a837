"""Small real workloads the runtime tests start as nodes (as a process or in a container).

Run as `python docker_workloads.py <name> [args]` (argv from `workload()`); each prints JSON or plain lines on
stdout. Standard library plus splitbed only, bounded in time and size. The containers see this file because
the tests mount its directory explicitly, as a user mounts their own files.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def workload(name: str, *args: object) -> list[str]:
    """argv running one of this file's commands with this interpreter (the same path is valid in the image)."""
    return [sys.executable, str(HERE / "docker_workloads.py"), name, *(str(a) for a in args)]


def echo_server(host: str, port: str) -> None:
    """Serve one connection: read up to 4 KiB, answer it upper-cased, exit."""
    server = socket.create_server((host, int(port)))
    server.settimeout(60)
    print("ready", flush=True)
    conn, _ = server.accept()
    with conn:
        conn.settimeout(30)
        conn.sendall(conn.recv(4096).upper())


def echo_client(host: str, port: str) -> None:
    """Send the first stdin line to the echo server and print its answer."""
    line = sys.stdin.readline().encode()
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(line)
        print(conn.recv(4096).decode().strip(), flush=True)


def burn(cpu_seconds: str) -> None:
    """Spin until this process has used `cpu_seconds` of CPU; report CPU and wall time and CFS throttling."""
    from splitbed.host import cgroup

    target = float(cpu_seconds)
    assert 0 < target <= 10
    wall0, cpu0 = time.monotonic(), time.process_time()
    x = 0
    while time.process_time() - cpu0 < target:
        for i in range(10000):
            x += i * i
    print(json.dumps({"cpu_s": time.process_time() - cpu0, "wall_s": time.monotonic() - wall0,
                      "throttling": cgroup.cpu_throttling()}), flush=True)


def hog(megabytes: str) -> None:
    """Allocate and touch `megabytes` MiB (bounded to 2 GiB)."""
    size = int(megabytes) << 20
    assert 0 < size <= 2 << 30
    block = b"\x01" * size  # written, so every page is really resident
    print(json.dumps({"allocated": len(block)}), flush=True)


def netinfo() -> None:
    """Interfaces, routes, capabilities and cgroup limits as this process sees them."""
    from splitbed.host import cgroup

    interfaces = [line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]]
    routes = [line.split()[:2] for line in Path("/proc/net/route").read_text().splitlines()[1:]]
    status = dict(line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines()
                  if ":\t" in line)
    print(json.dumps({
        "interfaces": sorted(interfaces), "routes": routes, "cap_eff": status["CapEff"].strip(),
        "cap_bnd": status["CapBnd"].strip(), "cpu_limit_cores": cgroup.cpu_limit_cores(),
        "memory_limit_bytes": cgroup.memory_limit_bytes(), "netns": os.stat("/proc/self/ns/net").st_ino,
        "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }), flush=True)


def sleep(seconds: str) -> None:
    print("sleeping", flush=True)
    time.sleep(min(float(seconds), 600))


COMMANDS = {"echo-server": echo_server, "echo-client": echo_client, "burn": burn, "hog": hog,
            "netinfo": netinfo, "sleep": sleep}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
