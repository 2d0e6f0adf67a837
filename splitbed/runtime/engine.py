"""Connection to the Docker engine, ownership labels, and the sweep of containers left by crashed runs.

Every container splitbed starts carries `splitbed.owner=<pid>` and `splitbed.owner_start=<start time>` of the
process that started it. A container whose owner is gone (or whose pid was reused by another process) is a
leftover; `sweep_stale_containers` removes those and never touches a live run's containers.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import psutil

from splitbed.runtime.errors import EngineUnavailableError

if TYPE_CHECKING:
    import docker

LABEL_OWNER = "splitbed.owner"
LABEL_OWNER_START = "splitbed.owner_start"
LABEL_SIDE = "splitbed.side"
LABEL_IMAGE = "splitbed.image"
LABEL_IMAGE_KEY = "splitbed.image_key"
LABEL_IMAGE_ENV = "splitbed.env"  # the environment (sys.prefix) an image was built from

ENGINE_FIX = ("install and start it: `bash scripts/setup.sh` (installs docker.io and runs "
              "scripts/docker-engine.sh), or start it by hand: `bash scripts/docker-engine.sh`")


def connect(timeout: float = 120.0) -> docker.DockerClient:
    """A client whose engine answered a ping; `EngineUnavailableError` saying why otherwise.

    `timeout` bounds each API call: removing a container or a 2 GB image takes tens of seconds on a busy host.
    """
    import docker

    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineUnavailableError(f"no Docker engine answers ({_short(exc)}); {ENGINE_FIX}") from exc
    except Exception as exc:  # requests/urllib3 errors when the socket exists but nobody listens
        raise EngineUnavailableError(f"no Docker engine answers ({_short(exc)}); {ENGINE_FIX}") from exc
    return client


def engine_status(timeout: float = 5.0) -> tuple[bool, str]:
    """(True, "Docker <version>") or (False, reason with the fix); never raises. For doctor probes and skips."""
    try:
        client = connect(timeout)
    except EngineUnavailableError as exc:
        return False, str(exc)
    try:
        version = client.version().get("Version", "?")
    finally:
        client.close()
    return True, f"Docker engine {version}"


def owner_labels(side: str | None = None) -> dict[str, str]:
    """Labels marking a container as this process's."""
    me = psutil.Process()
    labels = {LABEL_OWNER: str(me.pid), LABEL_OWNER_START: f"{me.create_time():.3f}"}
    if side is not None:
        labels[LABEL_SIDE] = side
    return labels


def owner_alive(labels: dict[str, str]) -> bool:
    """Whether the process named by a container's owner labels still runs (same pid and same start time)."""
    try:
        pid = int(labels[LABEL_OWNER])
        started = float(labels.get(LABEL_OWNER_START, "nan"))
    except (KeyError, ValueError):
        return False
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 0.01
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # exists, owned by someone else: leave it alone


def sweep_stale_containers(client: docker.DockerClient) -> list[str]:
    """Remove splitbed containers whose owner process is dead; returns their names."""
    removed = []
    for container in _labelled_containers(client):
        if owner_alive(container.labels):
            continue
        try:
            container.remove(force=True)
            removed.append(container.name)
        except Exception as exc:  # another sweeper may have won the race
            if "No such container" not in str(exc) and "already in progress" not in str(exc):
                raise
    return removed


def own_containers(client: docker.DockerClient) -> list[Any]:
    """Containers started by this process (running or not)."""
    pid = str(os.getpid())
    return [c for c in _labelled_containers(client) if c.labels.get(LABEL_OWNER) == pid]


def _labelled_containers(client: docker.DockerClient) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": LABEL_OWNER}))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
