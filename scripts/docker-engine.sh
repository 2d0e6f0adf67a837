#!/usr/bin/env bash
# Start a Docker engine for splitbed's container nodes when none answers (idempotent; no systemd needed).
#
# Why these flags (docs/DOCKER.md, "Engine"): splitbed's containers must have no route out and no NAT. Node
# containers run with network_mode=none and join the topology's namespaces, so the engine needs no bridge and
# must not touch the host's firewall or forwarding:
#   --bridge=none       no docker0 bridge, so no container can be attached to a routed network by default
#   --iptables=false    no NAT/MASQUERADE or FORWARD rules written into the host's iptables
#   --ip-forward=false  leave the host's net.ipv4.ip_forward as it is
#   --ip-masq=false     no masquerading (redundant with --iptables=false; stated for the reader)
# An engine already running (started by systemd or by hand) is used as it is: this script never restarts it.
# Note: with --bridge=none, dockerd deletes an interface named docker0 in its network namespace at start (a
# leftover of an engine run with defaults). Never start a second engine with this script in a namespace whose
# docker0 a running engine uses (the engine test runs its private engine in a scratch namespace for this reason).
#
# Usage: scripts/docker-engine.sh [--check]   (--check: only report whether an engine answers; exit 0/1)
# Env:   SPLITBED_DOCKERD_LOG (default /var/log/splitbed-dockerd.log), SPLITBED_DOCKERD_WAIT (seconds, 30),
#        SPLITBED_DOCKERD_EXTRA (more dockerd arguments, e.g. a private -H/--data-root/--exec-root/--pidfile, which
#        the engine test uses with DOCKER_HOST to start an engine of its own beside the real one)
set -euo pipefail

log=${SPLITBED_DOCKERD_LOG:-/var/log/splitbed-dockerd.log}
wait_s=${SPLITBED_DOCKERD_WAIT:-30}

engine_answers() {
  # The docker CLI may be newer than the engine; `docker info` negotiates the API version.
  timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

if engine_answers; then
  echo "docker-engine: engine already running ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "docker-engine: no engine answers" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker-engine: dockerd is not installed (apt-get install docker.io)" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "docker-engine: starting dockerd needs root" >&2
  exit 1
fi

echo "docker-engine: starting dockerd --bridge=none --iptables=false --ip-forward=false (log: $log)"
# shellcheck disable=SC2086  # SPLITBED_DOCKERD_EXTRA is a list of arguments
nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false ${SPLITBED_DOCKERD_EXTRA:-} \
  >>"$log" 2>&1 </dev/null &
for _ in $(seq 1 "$wait_s"); do
  if engine_answers; then
    echo "docker-engine: engine up ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
    exit 0
  fi
  sleep 1
done
echo "docker-engine: dockerd did not answer within ${wait_s}s; last log lines:" >&2
tail -n 20 "$log" >&2 || true
exit 1
