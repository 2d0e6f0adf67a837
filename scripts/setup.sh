#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine (root): system packages, then a virtualenv in .venv with
# splitbed installed editable, every distribution (pip included) at the exact version of constraints.txt (the
# lock, `make lock`; docs/INSTALL.md). Fast the second time: apt runs only for missing packages, pip only when
# pyproject.toml or constraints.txt changed since the last install or an installed version drifted from the lock.
# `bash scripts/setup.sh --stamp` prints the install stamp this checkout wants, and does nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCK=constraints.txt
# What the installed venv was made from: the declared ranges and the lock. A changed lock re-installs.
stamp_wanted() {
  echo "pyproject.toml $(sha256sum pyproject.toml | cut -d' ' -f1) $LOCK $(sha256sum "$LOCK" | cut -d' ' -f1)"
}
if [ ! -f "$LOCK" ]; then
  echo "setup: $LOCK (the lock) is missing; restore it (git checkout $LOCK) or regenerate it: make lock" >&2
  exit 1
fi
if [ "${1:-}" = "--stamp" ]; then
  stamp_wanted
  exit 0
fi

# python3-venv: Debian's python3 cannot create a venv without it; util-linux: unshare (non-root sandbox).
# chromium: the report test renders report.html in a real headless browser.
# docker.io + debootstrap: container nodes (docs/DOCKER.md); the node image is built locally from a Debian rootfs.
# The engine is NOT started here: the docker runtime and the docker tests start it when they need it and say so.
# tcpdump: to read the pcaps the testbed writes (tcpdump -nr results/.../ue.pcap).
# tshark: the Wireshark dissector of the format (splitbed/data/wireshark/splitbed.lua) is tested under it.
APT_PACKAGES=(iproute2 ethtool iperf3 iputils-ping procps kmod util-linux python3 python3-venv strace chromium
              docker.io debootstrap tcpdump tshark)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing system packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # wireshark-common (pulled in by tshark) asks whether non-root users may capture: answer no, without a prompt
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "setup: need Python >= 3.10 as '$PY' (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if ! .venv/bin/python -c 'pass' 2>/dev/null; then   # missing, or its interpreter was removed
  echo "setup: creating .venv"
  rm -rf .venv
  "$PY" -m venv .venv
fi
stamp=.venv/.splitbed-installed
want=$(stamp_wanted)
locked_for=$(sed -n 's/^# python: *//p' "$LOCK")
running=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
install=no
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  install=yes
elif [ "$locked_for" = "$running" ]; then
  # Same lock, but a version may have been changed by hand since (pip install X): compare the installed
  # distributions with the lock (splitbed.envlock; exit 1: a re-install fixes it, 2: only unpinned extras).
  # Not on another Python, where markers can leave pins out for good (docs/INSTALL.md, "Other machines").
  drift=0
  .venv/bin/python -m splitbed.envlock || drift=$?
  if [ "$drift" -ne 0 ] && [ "$drift" -ne 2 ]; then
    install=yes
  fi
fi
if [ "$install" = yes ]; then
  echo "setup: installing splitbed and its dependencies into .venv at the versions of $LOCK"
  if [ -n "$locked_for" ] && [ "$locked_for" != "$running" ]; then
    echo "setup: warning: $LOCK was resolved for Python $locked_for, .venv has $running; if pip cannot satisfy" \
         "it, resolve one for this Python with: make lock (docs/INSTALL.md, \"Other machines\")" >&2
  fi
  # -c: the lock decides each version and installs nothing by itself. pip first, at its locked version.
  .venv/bin/pip install -q -c "$LOCK" --upgrade pip
  .venv/bin/pip install -q -c "$LOCK" -e '.[dev]'
  echo "$want" > "$stamp"
fi
