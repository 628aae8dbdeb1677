#!/usr/bin/env bash
# Install what this host lacks for `make demo`, `make test` and `.ci/run` (Debian-family
# hosts, as root): the Docker engine, debootstrap (the offline base images), acl, setpriv,
# python3 with venv, chromium and libatomic1 (the HTML report's browser test), curl, gcc and
# libc6-dev (the C test server and bench anchors). Prints one line per outcome, never a
# traceback.
#
#   scripts/host-deps.sh          install what is missing; exit 1 if something stays missing
#   scripts/host-deps.sh --check  only say what is missing (exit 1 if anything is)
#
# Each entry: what shows it is there (a command; @venv; file:GLOB, a file under
# $WRAPLAB_HOST_ROOT, default /), the Debian package, and what needs it.
set -uo pipefail

check_only=0
case "${1:-}" in
    --check) check_only=1 ;;
    "") ;;
    *) echo "usage: scripts/host-deps.sh [--check]" >&2; exit 2 ;;
esac

deps=(
    "dockerd|docker.io|the Docker lab (make demo without it runs the local lab only)"
    "debootstrap|debootstrap|bootstrapping the lab's Debian base images offline"
    "setfacl|acl|the ACL checks of the unit tests and the images"
    "setpriv|util-linux|the local lab's server without CAP_CHOWN"
    "python3|python3|the harness, the reference server and the actors"
    "@venv|python3-venv|make venv (python3 -m venv needs ensurepip)"
    "make|make|the make targets"
    "chromium|chromium|the HTML report's test in headless Chromium (tox -e harness)"
    "file:/usr/lib/*/libatomic.so.1|libatomic1|playwright's node driver, which starts that Chromium"
    "curl|curl|the unit test that drives the API with curl"
    "gcc|gcc|building the C test server (tests/foreign/cwrap) and the bench's C anchors"
    "file:/usr/lib/*/libc.a|libc6-dev|linking the C test server statically (gcc -static)"
)

present() {
    local probe=$1
    if [ "$probe" = "@venv" ]; then
        command -v python3 >/dev/null 2>&1 && python3 -c "import ensurepip, venv" >/dev/null 2>&1
    elif [ "${probe#file:}" != "$probe" ]; then
        compgen -G "${WRAPLAB_HOST_ROOT:-}${probe#file:}" >/dev/null
    else
        command -v "$probe" >/dev/null 2>&1
    fi
}

missing_pkgs() {
    local entry probe pkg why out=()
    for entry in "${deps[@]}"; do
        IFS="|" read -r probe pkg why <<<"$entry"
        present "$probe" || out+=("$pkg")
    done
    echo "${out[*]:-}"
}

why_of() {
    local entry probe pkg why
    for entry in "${deps[@]}"; do
        IFS="|" read -r probe pkg why <<<"$entry"
        [ "$pkg" = "$1" ] && { echo "$why"; return; }
    done
}

read -r -a need <<<"$(missing_pkgs)"
if [ ${#need[@]} -eq 0 ]; then
    echo "host-deps: everything is here (docker.io, debootstrap, acl, setpriv, python3-venv, make, chromium, libatomic1, curl, gcc, libc6-dev)"
    exit 0
fi
if [ "$check_only" = 1 ]; then
    for pkg in "${need[@]}"; do echo "host-deps: missing $pkg, for $(why_of "$pkg")"; done
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "host-deps: missing ${need[*]}; installing them needs root: run \`sudo scripts/host-deps.sh\` (or install those Debian packages yourself)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "host-deps: missing ${need[*]}, and this host has no apt-get (not Debian-family): install the equivalents of those Debian packages yourself" >&2
    exit 1
fi

log=${WRAPLAB_APT_LOG:-/tmp/wraplab-host-deps.log}
echo "host-deps: installing ${need[*]} (apt log: $log)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get update -qq >"$log" 2>&1; then
    echo "host-deps: apt-get update failed (no package mirror reachable?); see $log" >&2
fi
if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >>"$log" 2>&1; then
    # One package that cannot be had must not keep the others out: try them one by one.
    for pkg in "${need[@]}"; do
        apt-get install -y -qq --no-install-recommends "$pkg" >>"$log" 2>&1 || true
    done
fi

hash -r
read -r -a still <<<"$(missing_pkgs)"
if [ ${#still[@]} -eq 0 ]; then
    echo "host-deps: installed ${need[*]}"
    exit 0
fi
for pkg in "${still[@]}"; do
    echo "host-deps: could not install $pkg (needed for $(why_of "$pkg")); install it with \`apt-get install $pkg\` once a Debian mirror is reachable (apt log: $log)" >&2
done
exit 1
