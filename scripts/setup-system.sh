#!/usr/bin/env bash
# Install and start what the tests need beyond Python packages: Debian's Docker engine (started
# as SPEC says: no bridge, no iptables), debootstrap for the registry-free base image, and
# Debian's chromium for the leaderboard's browser test. Idempotent; needs root (or sudo).
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-system: installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup-system: starting dockerd"
  as_root sh -c 'nohup dockerd --bridge=none --iptables=false >/var/log/segloop-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "setup-system: dockerd did not start, see /var/log/segloop-dockerd.log" >&2; exit 1; }
fi
echo "setup-system: docker $(docker version --format '{{.Server.Version}}'), $(/usr/bin/chromium --version 2>/dev/null || echo 'no chromium')"
