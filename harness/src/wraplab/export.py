"""``wraplab export``: one attack as a self-contained reproduction folder, to hand upstream.

The folder needs Docker and nothing of wraplab::

    README.md             the attack, versions, expected and observed outcome, how to run
    run-with-docker.sh    docker build + docker run --network none; its exit status is the
                          attack's: 1 it succeeded, 0 it failed, 2 inconclusive
    Dockerfile            the lab image's own Dockerfile (FROM a plain Debian base by default,
                          BASE_IMAGE=... for another) plus the reproduction
    users.conf create-users.sh wrapref-launcher pkg/   the lab image's inputs (the reference
                          server wrapref and the stdlib-only actor tools wraplab.actors)
    repro/run.sh          in the container, as root: the server, then each actor as its user
    repro/server.sh       the server's exact invocation (root)
    repro/<role>.sh       one script per actor, run as that actor's user (setpriv)
    repro/check.sh        what root reads afterwards to decide
    outcome.json          the cell, the expectation, the observed verdict at export time

A scenario is exported by a recipe (:data:`RECIPES`) that writes its actors' scripts from
the scenario's own constants and the target's server invocation: symlink-race (a race),
wrong-uid (a handoff) and reconnect-flood (a flood) so far.
"""

from __future__ import annotations

import json
import shlex
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wraplab import images, users
from wraplab.engine import FLOOD_HANDOFFS, Cell, Outcome, get_scenario
from wraplab.targets import Target, reference

API_PATH = "/run/wrapref/api.sock"
TEMP_BASE = "/tmp"
LOG_FILE = "/var/log/wrapref/server.log"
#: Where actors leave files for run.sh (each in a directory of its own, 0700).
BARRIERS = "/var/lib/wraplab-barriers"
#: The plain Debian base the exported Dockerfile starts from (BASE_IMAGE overrides it).
DEFAULT_BASE = "debian:bookworm"

#: Exit status of a reproduction: the attack succeeded / failed / could not be decided.
EXIT_ATTACK_WON, EXIT_ATTACK_FAILED, EXIT_INCONCLUSIVE = 1, 0, 2


class ExportError(Exception):
    """The cell cannot be exported (no recipe, a placement the folder cannot give...)."""


@dataclass
class Scripts:
    """What a recipe writes: per actor role the user and the script body, root's check, the
    attack in words, and the variables a reviewer may change (name -> default)."""

    actors: dict[str, tuple[str, str]]
    setup: str
    check: str
    attack: str
    knobs: dict[str, str]
    #: How run.sh runs the actors (shell, as root); empty: each actor's script in turn.
    flow: str = ""


def _symlink_race(cell: Cell, scenario, owner: users.User, target: Target) -> Scripts:
    race = scenario.run.__globals__.get("RACE") or {"tries": 3000, "seconds": 40.0}
    tries, seconds = race["tries"], race["seconds"]
    canaries = min(tries, race.get("canaries", tries))
    tool = "python3 -m wraplab.actors.symlink_race"
    return Scripts(
        actors={"owner": (owner.name, f"""# {owner.name} (uid {owner.uid}), owner and attacker:
# per try a session and a wrap-init naming her uid; the moment the new
# {cell.socket} socket exists she renames a symlink to the next canary not yet
# won over it. Prints one JSON line (tries, swapped, wins...).
exec {tool} race --dir "$CANARY_DIR" --count "$TRIES" --canaries "$CANARIES" \\
    --base {TEMP_BASE} --api unix:{API_PATH} --kind {cell.socket} --seconds "$RACE_SECONDS"
""")},
        setup=f"""# root makes $CANARIES canary files (0600 root:root) that alice must never get
{tool} prepare --dir "$CANARY_DIR" --count "$CANARIES" >/dev/null || exit {EXIT_INCONCLUSIVE}
""",
        check=f"""# root re-reads every canary: a try is won when its canary's owner or mode changed
out=$({tool} check --dir "$CANARY_DIR" --count "$CANARIES") || exit {EXIT_INCONCLUSIVE}
echo "check: $out"
won=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["changed"])')
if [ "$won" -gt 0 ]; then
    echo "ATTACK SUCCEEDED: root chowned/chmodded $won root-owned canaries to alice" \
         "through her symlinks"
    exit {EXIT_ATTACK_WON}
fi
echo "attack failed: 0 of $CANARIES canaries changed hands in up to $TRIES tries"
exit {EXIT_ATTACK_FAILED}
""",
        attack=(scenario.doc.split("\n\n")[0].strip() + "\n\n" +
                scenario.doc.split("\n\n")[1].strip()),
        knobs={"TRIES": str(tries), "CANARIES": str(canaries), "RACE_SECONDS": f"{seconds:g}",
               "CANARY_DIR": "/var/lib/wraplab-canary"})


def _as_cmd(user: str, command: str) -> str:
    """A command of run.sh run as ``user``."""
    return f"setpriv --reuid={user} --regid={user} --init-groups -- {command}"


def _as(user: str, script: str, env: str = "") -> str:
    """The line of run.sh that runs ``script`` as ``user`` (its uid, gid and groups)."""
    return (f"setpriv --reuid={user} --regid={user} --init-groups -- "
            f"{'env ' + env + ' ' if env else ''}/bin/sh /repro/{script}")


def _wrong_uid(cell: Cell, scenario, owner: users.User, target: Target) -> Scripts:
    intruder = users.load()["attacker"]
    client = target.client(f"unix:{API_PATH}", timeout=4.0)
    barrier = f"{BARRIERS}/owner"
    paragraphs = scenario.doc.split("\n\n")
    return Scripts(
        actors={
            "owner": (owner.name, f"""# {owner.name} (uid {owner.uid}), the owner: the client does
# wrap-init, writes the server's answer (session, socket paths) to announced.json,
# and holds before its first dial until the file 'release' exists; then it hands
# off. Prints one JSON line.
exec {shlex.join(client)} \\
    --announce {barrier}/announced.json --hold-before-dial {barrier}/release \\
    --hold-timeout 120
"""),
            "intruder": (intruder.name, f"""# {intruder.name} (uid {intruder.uid}), the intruder,
# knows the socket's path (any local user sees it in /proc/net/unix): a full
# handoff with her own token, then a bare connect. Prints one JSON line (each
# step's result or errno).
exec python3 -m wraplab.actors.intrude --kind {cell.socket} --path "$SOCKET" \\
    --do handoff,connect
""")},
        setup=f"""# a directory only alice (and root) can use, for her client's announce and release
{_as_cmd(owner.name, f"mkdir -m 0700 {barrier}")} || exit {EXIT_INCONCLUSIVE}
""",
        flow=f"""echo "== owner ({owner.name}) starts /repro/owner.sh: wrap-init, then it holds"
{_as(owner.name, "owner.sh")} > /tmp/owner.out 2>&1 &
owner=$!
polls=0
until [ -s {barrier}/announced.json ]; do
    polls=$((polls + 1))
    if [ "$polls" -gt 600 ] || ! kill -0 "$owner" 2>/dev/null; then
        echo "the owner's client did not announce:"; cat /tmp/owner.out
        exit {EXIT_INCONCLUSIVE}
    fi
    sleep 0.05  # between looks for the announcement
done
announced() {{  # a key of the announcement (session), or of its paths (a socket kind)
    python3 -c 'import json, sys; a = json.load(open(sys.argv[1]))
print(a.get(sys.argv[2]) or (a.get("paths") or {{}}).get(sys.argv[2], ""))' \\
        {barrier}/announced.json "$1"
}}
SESSION=$(announced session)
SOCKET=$(announced {cell.socket})
export SESSION SOCKET
echo "== the server announced session $SESSION, {cell.socket} socket $SOCKET"
echo "== intruder ({intruder.name}) runs /repro/intruder.sh"
{_as(intruder.name, "intruder.sh", 'SOCKET="$SOCKET"')} || echo "intruder exited $?"
echo "== the owner's client is released"
: > {barrier}/release
wait "$owner"
echo "owner: $(cat /tmp/owner.out)"
""",
        check=f"""# root reads the session's events from the server: whose handoff arrived?
ev=$(python3 -m wraplab.actors.api GET "/api/v1/sessions/$SESSION/events" \\
     --api unix:{API_PATH}) || exit {EXIT_INCONCLUSIVE}
printf '%s' "$ev" | python3 -c '
import json, sys
owner, intruder = {owner.uid}, {intruder.uid}
events = (json.load(sys.stdin).get("body") or {{}}).get("events") or []
ok = [e for e in events if e.get("type") == "handoff_ok"]
for e in events:
    print("event:", json.dumps(e, sort_keys=True))
if any(e.get("peer_uid") == intruder for e in ok):
    print("ATTACK SUCCEEDED: the server accepted a handoff of the intruder (uid", intruder,
          ") on the socket of the owner")
    sys.exit({EXIT_ATTACK_WON})
if any(e.get("peer_uid") == owner for e in ok):
    print("attack failed: only the handoff of the owner arrived")
    sys.exit({EXIT_ATTACK_FAILED})
print("inconclusive: neither handoff arrived")
sys.exit({EXIT_INCONCLUSIVE})
'
""",
        attack=paragraphs[0].strip() + "\n\n" + paragraphs[1].strip(),
        knobs={})


def _reconnect_flood(cell: Cell, scenario, owner: users.User, target: Target) -> Scripts:
    flooder = users.load()["attacker"]
    g = scenario.run.__globals__
    client = target.client(f"unix:{API_PATH}", timeout=4.0)
    paragraphs = scenario.doc.split("\n\n")
    return Scripts(
        actors={
            "owner": (owner.name, f"""# {owner.name} (uid {owner.uid}), the owner: wrap-init,
# the server's answer written to $BARRIER/announced.json, held before its first
# dial until $BARRIER/release exists; then its handoffs. Prints one JSON line.
exec {shlex.join(client)} \\
    --announce "$BARRIER/announced.json" --hold-before-dial "$BARRIER/release" \\
    --hold-timeout 120
"""),
            "flooder": (flooder.name, f"""# {flooder.name} (uid {flooder.uid}), the flooder:
# connect+close on the owner's socket as fast as she can ($FLOOD_PROCS processes,
# each with $FLOOD_WAITERS threads in blocking connects), says so in $READY once it
# runs; stops on SIGTERM and prints one JSON line (attempts, rate, errno counts).
exec python3 -m wraplab.actors.flood --path "$SOCKET" --seconds "$FLOOD_SECONDS" \\
    --procs "$FLOOD_PROCS" --waiters "$FLOOD_WAITERS" --ready "$READY"
""")},
        setup="",
        flow=f"""i=0
while [ "$i" -lt "$HANDOFFS" ]; do
    i=$((i + 1))
    BARRIER={BARRIERS}/owner-$i; FLOODDIR={BARRIERS}/flood-$i
    {_as_cmd(owner.name, 'mkdir -m 0700 "$BARRIER"')} || exit {EXIT_INCONCLUSIVE}
    {_as_cmd(flooder.name, 'mkdir -m 0700 "$FLOODDIR"')} || exit {EXIT_INCONCLUSIVE}
    echo "== handoff $i: owner ({owner.name}) starts /repro/owner.sh and holds"
    {_as(owner.name, "owner.sh", 'BARRIER="$BARRIER"')} > "/tmp/owner-$i.out" 2>&1 &
    owner=$!
    polls=0
    until [ -s "$BARRIER/announced.json" ]; do
        polls=$((polls + 1))
        if [ "$polls" -gt 600 ] || ! kill -0 "$owner" 2>/dev/null; then
            echo "the owner's client did not announce:"; cat "/tmp/owner-$i.out"
            exit {EXIT_INCONCLUSIVE}
        fi
        sleep 0.05  # between looks for the announcement
    done
    SOCKET=$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["paths"][sys.argv[2]])' "$BARRIER/announced.json" \\
        {cell.socket})
    echo "== handoff $i: flooder ({flooder.name}) floods $SOCKET"
    {_as(flooder.name, "flooder.sh", 'SOCKET="$SOCKET" READY="$FLOODDIR/running"')} \\
        > "/tmp/flood-$i.out" 2>&1 &
    flood=$!
    polls=0
    until [ -e "$FLOODDIR/running" ]; do
        polls=$((polls + 1))
        if [ "$polls" -gt 400 ] || ! kill -0 "$flood" 2>/dev/null; then
            break  # the flood ended or never got going: check.sh says so
        fi
        sleep 0.05  # between looks for the flood's ready file
    done
    echo "== handoff $i: the owner's client is released into the flood"
    : > "$BARRIER/release"
    wait "$owner"
    # SIGTERM to the flood and its processes (it still reports)
    python3 -m wraplab.actors.reap --signal TERM "$flood" >/dev/null 2>&1
    wait "$flood"
    echo "owner: $(cat "/tmp/owner-$i.out")"
    echo "flood: $(cut -c1-400 "/tmp/flood-$i.out")"
    /bin/sh /repro/check.sh "$i"
    status=$?
    [ "$status" = 3 ] && continue  # the owner was served under a flood that reached the server
    kill "$server" 2>/dev/null
    exit "$status"
done
echo "attack failed: the owner was served in all $HANDOFFS handoffs under the flood"
kill "$server" 2>/dev/null
exit {EXIT_ATTACK_FAILED}
""",
        check=f"""# after handoff $1: did the flood cost the owner her handoff?
# exit 3: the owner was served, go on; {EXIT_ATTACK_WON}: the flood won;
# {EXIT_ATTACK_FAILED}: the kernel refused it.
python3 - "/tmp/owner-$1.out" "/tmp/flood-$1.out" <<'PY'
import json, sys

def last_json(path):
    lines = [x for x in open(path).read().splitlines() if x.startswith("{{")]
    return json.loads(lines[-1]) if lines else {{}}

owner, flood = last_json(sys.argv[1]), last_json(sys.argv[2])
outcomes = flood.get("outcomes") or {{}}
reached = bool(outcomes.get("ok") or outcomes.get("EAGAIN"))
if not flood:
    print("inconclusive: the flood printed nothing")
    sys.exit({EXIT_INCONCLUSIVE})
if owner.get("ok"):
    if not reached:
        print("attack failed: the kernel refused every connect of the flood", outcomes)
        sys.exit({EXIT_ATTACK_FAILED})
    print("the owner was served although the flood reached the server", outcomes)
    sys.exit(3)
why = f"{{owner.get('step')}}: {{owner.get('errno') or owner.get('error')}}"
if reached:
    print("ATTACK SUCCEEDED: under the flood the owner lost her handoff (" + why + ");"
          " the flood's connects:", outcomes)
    sys.exit({EXIT_ATTACK_WON})
print("inconclusive: the owner failed (" + why + ") but the flood never reached the server")
sys.exit({EXIT_INCONCLUSIVE})
PY
""",
        attack=paragraphs[0].strip() + "\n\n" + paragraphs[1].strip(),
        knobs={"HANDOFFS": str(g.get("HANDOFFS", FLOOD_HANDOFFS)),
               "FLOOD_SECONDS": f"{g.get('FLOOD_SECONDS', 30.0):g}",
               "FLOOD_PROCS": str(g.get("FLOODERS", 2)),
               "FLOOD_WAITERS": str(g.get("WAITERS", 16))})


#: Scenarios that can be exported, and how.
RECIPES: dict[str, Callable[..., Scripts]] = {
    "symlink-race": _symlink_race,
    "wrong-uid": _wrong_uid,
    "reconnect-flood": _reconnect_flood,
}

DOCKER_RUN_OPTIONS = {"root": [], "root-no-chown": ["--cap-drop", "CHOWN"]}


def export(cell: Cell, outdir: str | Path, *, target: Target | None = None,
           observed: Outcome | None = None) -> Path:
    """Write the reproduction folder of ``cell`` into ``outdir`` (must not exist, or be
    empty); the folder's path."""
    outdir = Path(outdir)
    recipe = RECIPES.get(cell.scenario)
    if recipe is None:
        raise ExportError(f"no export recipe for {cell.scenario} yet (exportable: "
                          f"{', '.join(sorted(RECIPES))})")
    if cell.placement not in DOCKER_RUN_OPTIONS:
        raise ExportError(f"placement {cell.placement} is not exported (root, root-no-chown)")
    if cell.transport != "unix":
        raise ExportError("only the unix transport is exported")
    if outdir.exists() and any(outdir.iterdir()):
        raise ExportError(f"{outdir} exists and is not empty")
    scenario = get_scenario(cell.scenario)
    target = target or reference(cell.profile)
    spec = target.server_spec(placement=cell.placement, socket=cell.socket,
                              transport=cell.transport, lab="docker", **scenario.server)
    server_argv = spec.command({"api": f"unix:{API_PATH}", "api_path": API_PATH,
                                "temp_base": TEMP_BASE, "log_file": LOG_FILE,
                                "target_dir": "/opt/wraplab-target", "tcp_port": ""})
    lab_users = users.load()
    scripts = recipe(cell, scenario, lab_users["owner"], target)
    context = images.lab_context()
    made = not outdir.exists()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        for name, (data, mode) in context.files.items():
            if name == "Dockerfile":
                data = _dockerfile(data.decode())
            _write(outdir / name, data, mode)
        repro = outdir / "repro"
        _write(repro / "server.sh", _server_sh(server_argv), 0o755)
        for role, (_user, body) in scripts.actors.items():
            _write(repro / f"{role}.sh", f"#!/bin/sh\n{body}", 0o755)
        _write(repro / "check.sh", f"#!/bin/sh\n{scripts.check}", 0o755)
        _write(repro / "run.sh", _run_sh(cell, scripts), 0o755)
        tag = f"wraplab-repro/{cell.scenario}:{cell.profile}-{cell.socket}-{cell.placement}"
        _write(outdir / "run-with-docker.sh", _host_sh(tag, cell, scripts), 0o755)
        record = {"cell": cell.to_dict(), "expected": str(cell.expectation),
                  "server_argv": server_argv, "target": target.name,
                  "wraplab": _versions(), "knobs": scripts.knobs,
                  "observed": None if observed is None else {
                      "verdict": str(observed.verdict), "guard": observed.guard,
                      "reason": observed.reason, "metrics": observed.metrics,
                      "lab_info": observed.lab_info}}
        _write(outdir / "outcome.json", json.dumps(record, indent=1, default=str) + "\n")
        _write(outdir / "README.md", _readme(cell, scenario, scripts, server_argv, record,
                                             tag))
    except BaseException:
        if made:
            import shutil

            shutil.rmtree(outdir, ignore_errors=True)
        raise
    return outdir


def _write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode | stat.S_IRUSR)


def _versions() -> dict:
    from wraplab import __version__, report

    return {"version": __version__, "commit": report.git_commit(),
            "lab_inputs_sha256": images.lab_context().digest()}


def _dockerfile(lab: str) -> str:
    lab = lab.replace("ARG BASE_IMAGE=wraplab/base:bookworm", f"ARG BASE_IMAGE={DEFAULT_BASE}")
    lab = lab.replace('CMD ["sleep", "infinity"]', "")
    return (lab.rstrip() + "\n\n# The reproduction (generated by wraplab export)\n"
            "COPY repro/ /repro/\nRUN chmod -R a+rX /repro\n"
            'CMD ["/bin/sh", "/repro/run.sh"]\n')


def _server_sh(argv: list[str]) -> str:
    return ("#!/bin/sh\n# The server under test, exactly as the lab starts it (as root).\n"
            f"exec {shlex.join(argv)}\n")


def _run_sh(cell: Cell, scripts: Scripts) -> str:
    knobs = "\n".join(f': "${{{k}:={v}}}"' for k, v in scripts.knobs.items())
    exports = f"export {' '.join(scripts.knobs)}" if scripts.knobs else ""
    actors = scripts.flow or "\n".join(
        f'echo "== {role} ({user}) runs /repro/{role}.sh"\n'
        f"{_as(user, role + '.sh')} || echo \"{role} exited $?\""
        for role, (user, _) in scripts.actors.items())
    return f"""#!/bin/sh
# {cell.name}: run inside the container as root. Exit status: {EXIT_ATTACK_WON} the attack
# succeeded, {EXIT_ATTACK_FAILED} it failed, {EXIT_INCONCLUSIVE} inconclusive (the set-up failed).
set -u
{knobs}
{exports}
# the API and log directories belong to the server's user (root), as in the lab: made
# afresh (a chown would need CAP_CHOWN, which root-no-chown has not)
rm -rf {API_PATH.rsplit('/', 1)[0]} {LOG_FILE.rsplit('/', 1)[0]}
mkdir -m 0755 {API_PATH.rsplit('/', 1)[0]}; mkdir -m 0750 {LOG_FILE.rsplit('/', 1)[0]}
mkdir -p -m 1777 {BARRIERS}; chmod 1777 {BARRIERS}
echo "== the server: $(tail -n 1 /repro/server.sh)"
/bin/sh /repro/server.sh &
server=$!
tries=0
until python3 -m wraplab.actors.api GET /healthz --api unix:{API_PATH} 2>/dev/null \\
        | grep -q '"ok": true'; do
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ] || ! kill -0 "$server" 2>/dev/null; then
        echo "the server did not become healthy:"; cat {LOG_FILE} 2>/dev/null
        exit {EXIT_INCONCLUSIVE}
    fi
    sleep 0.1  # between health polls
done
{scripts.setup}
{actors}
echo "== root checks"
/bin/sh /repro/check.sh
status=$?
kill "$server" 2>/dev/null
exit "$status"
"""


def _host_sh(tag: str, cell: Cell, scripts: Scripts) -> str:
    opts = " ".join(DOCKER_RUN_OPTIONS[cell.placement])
    envs = " ".join(f'-e {k}="${{{k}:-}}"' for k in scripts.knobs)
    return f"""#!/bin/sh
# Build the image and run the attack once, with no network. Exit status:
# {EXIT_ATTACK_WON} the attack succeeded, {EXIT_ATTACK_FAILED} it failed,
# {EXIT_INCONCLUSIVE} inconclusive.
#   BASE_IMAGE=debian:bookworm (default; any Debian-family image), {', '.join(scripts.knobs)}
set -eu
cd "$(dirname "$0")"
tag=${{TAG:-{tag}}}
docker build -q --build-arg BASE_IMAGE="${{BASE_IMAGE:-{DEFAULT_BASE}}}" -t "$tag" . >/dev/null
set +e
docker run --rm --network none {opts} {envs} "$tag"
status=$?
case $status in
    {EXIT_ATTACK_WON}) echo "run-with-docker: the attack SUCCEEDED (exit {EXIT_ATTACK_WON})" ;;
    {EXIT_ATTACK_FAILED}) echo "run-with-docker: the attack failed (exit {EXIT_ATTACK_FAILED})" ;;
    *) echo "run-with-docker: inconclusive (exit $status)"; status={EXIT_INCONCLUSIVE} ;;
esac
exit "$status"
"""


def _readme(cell: Cell, scenario, scripts: Scripts, server_argv: list[str], record: dict,
            tag: str) -> str:
    obs = record["observed"]
    observed = ("not run at export (`wraplab export --no-run`)" if obs is None else
                f"**{obs['verdict']}**" + (f" (guard {obs['guard']})" if obs["guard"] else "")
                + f": {obs['reason']}")
    w = record["wraplab"]
    knobs = "\n".join(f"| `{k}` | `{v}` |" for k, v in scripts.knobs.items())
    actors = "\n".join(f"- `repro/{role}.sh`, run as `{user}`" for role, (user, _)
                       in scripts.actors.items())
    head = (f"{cell.scenario} against {record['target']} ({cell.socket} socket, "
            f"placement {cell.placement})")
    return f"""# {head}

Generated by `wraplab export` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.
Needs Docker only.

## The attack

{scripts.attack}

## Versions

- server under test: `{record['target']}`, started as `{shlex.join(server_argv)}` (as root)
- wraplab {w['version']}, commit `{w['commit']}`; the lab image's inputs (users.conf,
  create-users.sh, wrapref-launcher, pkg/ and the Dockerfile before the reproduction's lines
  were added) hash to `{w['lab_inputs_sha256'][:16]}`
- base image: `{DEFAULT_BASE}` by default (`BASE_IMAGE=` for another Debian-family image; the
  build installs python3, acl and util-linux with apt when the base lacks them)

## Expected and observed

- expected for this profile: **{cell.expectation}**
- observed by wraplab at export: {observed}

## How to run

    ./run-with-docker.sh            # exit 1: the attack succeeded, 0: it failed, 2: inconclusive

It builds `{tag}` and runs it with `--network none`
{'(and `--cap-drop CHOWN`) ' if cell.placement == 'root-no-chown' else ''}(`docker run --rm`).
Inside, `repro/run.sh` starts the server (`repro/server.sh`), waits until it answers, then
runs each actor as its own user:

{actors}

and `repro/check.sh` (root) decides. Variables (environment of `run-with-docker.sh`):

| variable | default |
|---|---|
{knobs}

By hand: `docker build -t {tag} . && docker run --rm --network none {tag}`; to look around,
`docker run --rm -it --network none {tag} bash`, then `sh /repro/run.sh`.
"""
