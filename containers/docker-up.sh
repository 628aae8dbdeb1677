#!/usr/bin/env bash
# Make a Docker engine reachable: use the one that is there (DOCKER_HOST or the
# default socket), otherwise install Debian's docker.io if missing and start
# dockerd without a bridge network (wraplab's containers run with
# network_mode=none; every socket they use is a Unix socket).
set -euo pipefail

log=${WRAPLAB_DOCKERD_LOG:-/var/log/wraplab-dockerd.log}
wait_s=${WRAPLAB_DOCKERD_WAIT:-60}

if docker info >/dev/null 2>&1; then
    echo "docker-up: engine already reachable ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
    exit 0
fi
if [ -n "${DOCKER_HOST:-}" ]; then
    echo "docker-up: DOCKER_HOST=$DOCKER_HOST is set but does not answer; not starting a local engine" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "docker-up: no engine reachable, and starting one needs root (run as root, or start Docker yourself)" >&2
    exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker-up: installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
    echo "docker-up: starting dockerd (log: $log)"
    mkdir -p "$(dirname "$log")"
    nohup dockerd --bridge=none --iptables=false --ip-masq=false >"$log" 2>&1 </dev/null &
fi
for _ in $(seq 1 "$wait_s"); do
    if docker info >/dev/null 2>&1; then
        echo "docker-up: engine ready ($(docker info --format '{{.ServerVersion}}'))"
        exit 0
    fi
    sleep 1
done
echo "docker-up: dockerd did not become ready within ${wait_s}s; last log lines:" >&2
tail -n 20 "$log" >&2 || true
exit 1
