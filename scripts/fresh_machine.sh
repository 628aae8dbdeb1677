#!/usr/bin/env bash
# A fresh machine of this project's kind, in a throwaway privileged container: plain Debian
# bookworm (the offline base image: python3 and nothing else), git and make added as any
# such machine has them, then the README's commands from a fresh clone -- no other step.
# Host packages, the venv, the Docker engine (its own, inside) and the lab images are the
# commands' own business. Prints the wall time of each command; the container and its
# Docker data are removed at the end, on failure and on Ctrl-C.
#
#   bash scripts/fresh_machine.sh [COMMAND...]     default: "make demo" then "make test"
#
# Needs: root, a Docker engine, the image wraplab/base:bookworm (`wraplab images`), and the
# package registries this machine reaches (Debian, PyPI): the container shares the host's
# network namespace for them (and its name resolution and CA bundle), nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME="wraplab-fresh-$$"
DATA="$(mktemp -d /var/tmp/wraplab-fresh.XXXXXX)"   # the inner engine's /var/lib/docker
SRC="$(mktemp -d /var/tmp/wraplab-fresh-src.XXXXXX)"
cleanup() {
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    rm -rf "$DATA" "$SRC"
}
trap cleanup EXIT INT TERM

git clone -q --bare . "$SRC/wraplab.git"       # what is committed, nothing of this checkout
cmds=("$@")
[ ${#cmds[@]} -gt 0 ] || cmds=("make demo" "make test")

mounts=(-v "$DATA:/var/lib/docker" -v "$SRC:/src:ro")
[ -e /etc/pip.conf ] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
[ -e /etc/ssl/certs/ca-certificates.crt ] &&
    mounts+=(-v /etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro)
# --privileged would ask for every capability, and this kind of machine runs without
# CAP_SYS_RESOURCE (its bounding set): all the others, unconfined, with the cgroups writable.
# --init: a machine's pid 1 reaps orphans; `sleep` as pid 1 would leave them zombies.
docker run -d --init --name "$NAME" --label wraplab.fresh=1 --network host --cgroupns host \
    --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
    --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --device-cgroup-rule 'a *:* rwm' \
    "${mounts[@]}" wraplab/base:bookworm sleep infinity >/dev/null
inside() { docker exec -e DEBIAN_FRONTEND=noninteractive "$NAME" bash -lc "$1"; }

echo "fresh-machine: $(inside '. /etc/os-release; echo "$PRETTY_NAME, $(python3 -V)"')"
# The host's CA bundle (its registries' certificates) as a local CA: kept by every later
# update-ca-certificates.
inside 'apt-get update -qq && apt-get install -y -qq git make ca-certificates >/dev/null &&
        if [ -e /host-ca.crt ]; then cp /host-ca.crt /usr/local/share/ca-certificates/host.crt &&
        update-ca-certificates >/dev/null; fi'
inside 'git clone -q /src/wraplab.git /root/wraplab'
for c in "${cmds[@]}"; do
    echo "fresh-machine: \$ $c"
    t0=$(date +%s)
    rc=0
    inside "cd /root/wraplab && $c" || rc=$?
    echo "fresh-machine: '$c' exit $rc after $(( $(date +%s) - t0 )) s"
    [ "$rc" -eq 0 ] || exit "$rc"
done
