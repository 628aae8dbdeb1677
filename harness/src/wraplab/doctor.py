"""``wraplab doctor``: which labs are usable here, and why not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from wraplab import images, paths, users
from wraplab.labs.local import DEFAULT_PYTHON, UID_OFFSET, world_executable


@dataclass
class Check:
    area: str
    name: str
    ok: bool
    detail: str
    warn: bool = False  # ok, but worth saying (e.g. "will be built on first use")


@dataclass
class LabVerdict:
    lab: str
    usable: bool
    state: str  # ready | builds on first use | unusable
    why: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    labs: list[LabVerdict] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return any(lab.usable for lab in self.labs)

    def add(self, area: str, name: str, ok: bool, detail: str, warn: bool = False) -> Check:
        check = Check(area, name, ok, detail, warn)
        self.checks.append(check)
        return check

    def as_dict(self) -> dict[str, Any]:
        return {"usable": self.usable, "checks": [asdict(c) for c in self.checks],
                "labs": [asdict(v) for v in self.labs]}


def _python_version(python: str) -> str:
    try:
        out = subprocess.run([python, "-c", "import platform;print(platform.python_version())"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)


def diagnose(bases: tuple[str, ...] = tuple(images.DEBIAN_SUITES)) -> Report:
    report = Report()
    root = os.geteuid() == 0

    # --- sources
    sources_ok = True
    try:
        repo = paths.repo_root()
        declared = users.load()
        report.add("sources", "users.conf", True,
                   ", ".join(f"{u.role} {u.name} {u.uid}" for u in declared.users))
    except (paths.SourcesMissing, users.UsersError, OSError) as exc:
        report.add("sources", "users.conf", False, str(exc))
        sources_ok = False
        repo = None
    try:
        pkg = paths.wrapref_package()
        report.add("sources", "wrapref package", True, str(pkg))
    except paths.SourcesMissing as exc:
        report.add("sources", "wrapref package", False, str(exc))
        sources_ok = False
    if repo is not None:
        report.add("sources", "repository", True, str(repo))

    # --- Docker
    client = None
    docker_why = ""
    try:
        client = images.docker_client(timeout=10)
        version = client.version()
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        report.add("docker", "engine", True,
                   f"reachable: Docker {version.get('Version')} "
                   f"(API {version.get('ApiVersion')}) at {host}")
    except Exception as exc:
        docker_why = f"Docker is not reachable ({type(exc).__name__}: {exc}); try `make docker-up`"
        report.add("docker", "engine", False, docker_why)
        client = None

    bootstrap = images.bootstrap_problem()
    report.add("docker", "debootstrap", bootstrap is None,
               "present, running as root: missing bases can be bootstrapped offline"
               if bootstrap is None else bootstrap, warn=bootstrap is not None)

    for name in bases:
        lab = f"docker-{name}"
        if client is None:
            report.labs.append(LabVerdict(lab, False, "unusable", docker_why))
            continue
        base = images.resolve_base(name)
        base_id = images.image_id(client, base.image)
        if base_id:
            report.add("images", base.image, True, f"present ({base_id[7:19]})")
        elif bootstrap is None and base.bootstrappable:
            report.add("images", base.image, True,
                       f"missing; `wraplab images --base {name}` bootstraps it (~45 s, needs "
                       f"the Debian mirror {images.mirror()})", warn=True)
        else:
            why = bootstrap or "not present and not bootstrappable"
            report.add("images", base.image, False, f"missing, and {why}")
            report.labs.append(LabVerdict(lab, False, "unusable",
                                          f"no base image {base.image}: {why}"))
            continue
        if not sources_ok:
            report.labs.append(LabVerdict(lab, False, "unusable", "sources missing (see above)"))
            continue
        tag = images.expected_lab_tag(client, base) if base_id else None
        if tag and images.image_id(client, tag):
            report.add("images", tag, True, "present, up to date with the sources")
            report.labs.append(LabVerdict(lab, True, "ready", tag))
        else:
            what = tag or f"{images.LAB_REPO}:{name}-<hash>"
            report.add("images", what, True,
                       "not built for the current sources; built on first use "
                       "or by `wraplab images` (seconds)", warn=True)
            report.labs.append(LabVerdict(lab, True, "builds on first use",
                                          f"{what} is built (and the base bootstrapped) "
                                          "when first needed"))
    if client is not None:
        client.close()

    # --- LocalLab
    python = os.environ.get("WRAPLAB_LOCAL_PYTHON", DEFAULT_PYTHON)
    local_problems = []
    report.add("local", "root", root, "running as root" if root else
               f"running as uid {os.geteuid()}: LocalLab needs root")
    if not root:
        local_problems.append("needs root")
    setpriv = shutil.which("setpriv")
    report.add("local", "setpriv", setpriv is not None,
               setpriv or "missing (apt-get install util-linux): needed to drop CAP_CHOWN")
    if setpriv is None:
        local_problems.append("no setpriv")
    why = world_executable(python)
    report.add("local", "python for actors", why is None,
               f"{python} ({_python_version(python)}), executable by every uid" if why is None
               else f"{why}; set WRAPLAB_LOCAL_PYTHON to a python3 every uid can run")
    if why:
        local_problems.append(why)
    if not sources_ok:
        local_problems.append("sources missing")
    if sys.platform != "linux":
        local_problems.append("not Linux")
    if local_problems:
        report.labs.append(LabVerdict("local", False, "unusable", "; ".join(local_problems)))
    else:
        report.labs.append(LabVerdict("local", True, "ready",
                                      f"actors as uids {UID_OFFSET}+declared, python {python}"))
    return report


def render_plain(report: Report) -> str:
    lines = ["wraplab doctor", ""]
    area = None
    for check in report.checks:
        if check.area != area:
            area = check.area
            lines.append(f"{area}:")
        mark = "ok  " if check.ok and not check.warn else ("note" if check.ok else "FAIL")
        if not check.ok and check.warn:
            mark = "warn"
        lines.append(f"  [{mark}] {check.name}: {check.detail}")
    lines += ["", "labs:"]
    width = max(len(v.lab) for v in report.labs) if report.labs else 0
    for v in report.labs:
        usable = "usable  " if v.usable else "UNUSABLE"
        lines.append(f"  {v.lab:<{width}}  {usable}  {v.state}: {v.why}")
    lines.append("")
    usable = [v.lab for v in report.labs if v.usable]
    lines.append(f"usable labs: {', '.join(usable)}" if usable else "no lab is usable here")
    return "\n".join(lines)


def render_rich(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="wraplab doctor", show_lines=False)
    table.add_column("area")
    table.add_column("check")
    table.add_column("", justify="center")
    table.add_column("detail", overflow="fold")
    for c in report.checks:
        if c.ok:
            mark = "[yellow]note[/]" if c.warn else "[green]ok[/]"
        else:
            mark = "[yellow]warn[/]" if c.warn else "[red]FAIL[/]"
        table.add_row(c.area, c.name, mark, c.detail)
    console.print(table)
    labs = Table(title="labs")
    labs.add_column("lab")
    labs.add_column("usable", justify="center")
    labs.add_column("state")
    labs.add_column("why", overflow="fold")
    for v in report.labs:
        labs.add_row(v.lab, "[green]yes[/]" if v.usable else "[red]no[/]", v.state, v.why)
    console.print(labs)
    usable = [v.lab for v in report.labs if v.usable]
    console.print(f"usable labs: [bold]{', '.join(usable)}[/]" if usable
                  else "[bold red]no lab is usable here[/]")
