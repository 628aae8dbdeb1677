"""Lab images: offline Debian bases (debootstrap + ``docker import``) and wraplab's lab image.

Tags:

* ``wraplab/base:bookworm``, ``wraplab/base:trixie`` -- minimal Debian rootfs with python3
  and acl, debootstrapped from ``$WRAPLAB_DEBIAN_MIRROR`` (default
  ``http://deb.debian.org/debian``) when missing and not pullable.
* ``wraplab/lab:<base>-<hash12>`` -- containers/Dockerfile on that base; ``<hash12>`` is a
  SHA-256 over every build input (Dockerfile, users.conf, create-users.sh, the launcher,
  the wrapref and wraplab.actors sources) and the base image id, so unchanged inputs are
  never rebuilt. ``wraplab/lab:<base>`` is moved to the newest build, for people.

Builds use ``network_mode="none"`` and an in-memory tar context of just those inputs;
concurrent builders (``pytest -n auto``) are serialised with a file lock.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import tomllib
from filelock import FileLock

from wraplab import paths
from wraplab.actors.agent import LAUNCHER_MARK  # the agent knows the launcher by it

DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_REPO = "wraplab/base"
LAB_REPO = "wraplab/lab"
LABEL = "wraplab"  # every image and container of ours carries wraplab=1
BOOTSTRAP_PACKAGES = ("python3", "acl")

#: Bases that ``wraplab images`` can bootstrap offline (Debian suite -> Python).
DEBIAN_SUITES = {"bookworm": "3.11", "trixie": "3.13"}

Log = Callable[[str], None]


class ImageError(RuntimeError):
    """An image could not be found, bootstrapped or built."""


def _quiet(_msg: str) -> None:
    pass


#: The API version each Docker endpoint (DOCKER_HOST) negotiated, once per process: a
#: negotiation is a /version request, for which dockerd runs ``runc --version`` and
#: ``docker-init --version``; a matrix makes a few clients per cell.
_API_VERSIONS: dict[str, str] = {}


def api_version() -> str:
    """The API version to ask clients for: the one negotiated here before, else ``auto``."""
    return _API_VERSIONS.get(os.environ.get("DOCKER_HOST", ""), "auto")


def docker_client(timeout: int | None = 600, **kwargs) -> docker.DockerClient:
    """A Docker client from the environment (DOCKER_HOST or the default socket); the API
    version is negotiated by the first client of the process and reused by the others."""
    client = docker.from_env(timeout=timeout, version=api_version(), **kwargs)
    _API_VERSIONS[os.environ.get("DOCKER_HOST", "")] = client.api.api_version
    return client


# ---------------------------------------------------------------- bases


@dataclass(frozen=True)
class Base:
    """Where a lab image starts from. ``name`` is short (``bookworm``), ``image`` the ref."""

    name: str
    image: str
    suite: str | None = None  # a Debian suite we can debootstrap, else None

    @property
    def bootstrappable(self) -> bool:
        return self.suite is not None


def resolve_base(name: str) -> Base:
    """``bookworm``/``trixie`` -> our bootstrappable bases; anything else is an image ref
    (``ubuntu:24.04``, ``python:3.12-slim``) that must be present or pullable."""
    if name in DEBIAN_SUITES:
        return Base(name=name, image=f"{BASE_REPO}:{name}", suite=name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*", name):
        raise ImageError(f"not a base name or image reference: {name!r}")
    short = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.split("/")[-1])
    return Base(name=short, image=name)


def image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def bootstrap_problem() -> str | None:
    """Why this host cannot debootstrap a base, or None."""
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap)"
    if os.geteuid() != 0:
        return "debootstrap needs root (run `sudo wraplab images`)"
    return None


def mirror() -> str:
    return os.environ.get("WRAPLAB_DEBIAN_MIRROR", DEFAULT_MIRROR)


def _tar_stream(rootfs: Path) -> Iterator[bytes]:
    proc = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read(1 << 20):
            yield chunk
    finally:
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.wait() != 0:
            raise ImageError(f"tar of {rootfs} failed: {stderr.strip()}")


def bootstrap_base(client: docker.DockerClient, base: Base, log: Log = print) -> str:
    """debootstrap ``base.suite`` (minbase + python3, acl) and ``docker import`` it as
    ``base.image``. Returns the new image id."""
    if not base.bootstrappable:
        raise ImageError(f"{base.image} is not present and cannot be bootstrapped")
    problem = bootstrap_problem()
    if problem:
        raise ImageError(f"cannot bootstrap {base.image}: {problem}")
    work = Path(tempfile.mkdtemp(prefix=f"wraplab-rootfs-{base.suite}-", dir="/var/tmp"))
    rootfs = work / "rootfs"
    started = time.monotonic()
    try:
        argv = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BOOTSTRAP_PACKAGES)}",
            str(base.suite),
            str(rootfs),
            mirror(),
        ]
        log(f"bootstrap {base.image}: {' '.join(argv)}")
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise ImageError(f"debootstrap {base.suite} failed (exit {proc.returncode}):\n{tail}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            'CMD ["/bin/bash"]',
        ]
        repo, tag = base.image.rsplit(":", 1)
        log(f"bootstrap {base.image}: docker import")
        client.api.import_image_from_stream(
            _tar_stream(rootfs), repository=repo, tag=tag, changes=changes
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    new_id = image_id(client, base.image)
    if new_id is None:
        raise ImageError(f"docker import did not produce {base.image}")
    log(f"bootstrap {base.image}: done in {time.monotonic() - started:.1f}s ({new_id[:19]})")
    return new_id


def ensure_base(client: docker.DockerClient, base: Base, log: Log = print) -> tuple[str, bool]:
    """The base's image id, bootstrapping (or pulling, for foreign bases) when missing.
    Returns ``(id, made)``."""
    found = image_id(client, base.image)
    if found:
        return found, False
    if not base.bootstrappable:
        log(f"pull {base.image}")
        try:
            return client.images.pull(base.image).id, True
        except docker.errors.APIError as exc:
            raise ImageError(f"{base.image} is not present and cannot be pulled: {exc}") from exc
    return bootstrap_base(client, base, log), True


# ---------------------------------------------------------------- build context


@dataclass
class BuildContext:
    """The exact inputs of a lab image, as ``{arcname: (bytes, mode)}``."""

    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)

    def add(self, arcname: str, data: bytes, mode: int = 0o644) -> None:
        self.files[arcname] = (data, mode)

    def add_tree(self, src: Path, prefix: str) -> None:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
                continue
            if path.is_file():
                self.add(f"{prefix}/{rel.as_posix()}", path.read_bytes())

    def digest(self, *extra: str) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            data, mode = self.files[name]
            h.update(f"{name}\0{mode:o}\0{len(data)}\0".encode())
            h.update(data)
        for item in extra:
            h.update(f"extra\0{item}\0".encode())
        return h.hexdigest()

    def tar(self) -> io.BytesIO:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in sorted(self.files):
                data, mode = self.files[name]
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = mode
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
        buf.seek(0)
        return buf


def wrapref_entry_point() -> tuple[str, str] | None:
    """``(module, attr)`` of ref's ``wrapref`` console script, from ref/pyproject.toml."""
    pyproject = paths.ref_project() / "pyproject.toml"
    if not pyproject.is_file():
        return None
    scripts = tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {})
    entry = scripts.get("wrapref")
    if not entry or ":" not in entry:
        return None
    module, attr = entry.split(":", 1)
    return module.strip(), attr.strip()


def wrapref_launcher() -> bytes:
    """``/usr/local/bin/wrapref``: runs ref's console-script entry point with whatever
    ``python3`` is first in PATH (the image's; LocalLab's world-executable one)."""
    entry = wrapref_entry_point()
    if entry is None:
        call = "import runpy\nrunpy.run_module('wrapref', run_name='__main__', alter_sys=True)\n"
    else:
        module, attr = entry
        head, *rest = attr.split(".")
        target = "_entry" + "".join("." + a for a in rest)
        call = f"from {module} import {head} as _entry\nsys.exit({target}())\n"
    return (f"#!/usr/bin/env python3\n{LAUNCHER_MARK.decode()}\nimport sys\n"
            + call).encode()


def actors_init() -> bytes:
    return (paths.PACKAGE_DIR / "__init__.py").read_bytes()


def lab_context() -> BuildContext:
    ctx = BuildContext()
    cdir = paths.containers_dir()
    ctx.add("Dockerfile", (cdir / "Dockerfile").read_bytes())
    ctx.add("users.conf", (cdir / "users.conf").read_bytes())
    ctx.add("create-users.sh", (cdir / "create-users.sh").read_bytes(), 0o755)
    ctx.add("wrapref-launcher", wrapref_launcher(), 0o755)
    ctx.add_tree(paths.wrapref_package(), "pkg/wrapref")
    ctx.add("pkg/wraplab/__init__.py", actors_init())
    ctx.add_tree(paths.ACTORS_DIR, "pkg/wraplab/actors")
    return ctx


# ---------------------------------------------------------------- lab images


@dataclass(frozen=True)
class LabImage:
    base: Base
    tag: str
    id: str
    built: bool  # False: the tag was already there (a no-op)
    base_made: bool
    seconds: float


def lab_tag(base: Base, digest: str) -> str:
    return f"{LAB_REPO}:{base.name}-{digest[:12]}"


def expected_lab_tag(client: docker.DockerClient, base: Base) -> str | None:
    """The tag the current inputs would build, or None when the base is missing."""
    base_id = image_id(client, base.image)
    if base_id is None:
        return None
    return lab_tag(base, lab_context().digest(base_id))


def _lock() -> FileLock:
    return FileLock(str(paths.cache_dir() / "images.lock"), timeout=1800)


def _build(client: docker.DockerClient, base: Base, base_id: str, tag: str, ctx: BuildContext,
           log: Log) -> str:
    repo, version = tag.rsplit(":", 1)
    network = os.environ.get("WRAPLAB_BUILD_NETWORK", "none")
    lines: list[str] = []
    image: str | None = None
    stream = client.api.build(
        fileobj=ctx.tar(),
        custom_context=True,
        tag=tag,
        buildargs={"BASE_IMAGE": base.image},
        network_mode=network,
        labels={LABEL: "1", "wraplab.image": "lab", "wraplab.base": base.name,
                "wraplab.base-id": base_id},
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
    for chunk in stream:
        if "stream" in chunk:
            text = chunk["stream"].rstrip("\n")
            if text:
                lines.append(text)
        if "error" in chunk:
            tail = "\n".join(lines[-25:])
            raise ImageError(f"building {tag} failed: {chunk['error'].strip()}\n{tail}")
        aux = chunk.get("aux") or {}
        if "ID" in aux:
            image = aux["ID"]
    image = image or image_id(client, tag)
    if image is None:
        raise ImageError(f"building {tag} produced no image:\n" + "\n".join(lines[-25:]))
    client.api.tag(image, repo, base.name, force=True)
    return image


def ensure_lab_image(base_name: str, *, client: docker.DockerClient | None = None,
                     log: Log = _quiet) -> LabImage:
    """The lab image for ``base_name``; bootstraps the base and builds when missing.
    Safe to call from many processes at once."""
    started = time.monotonic()
    client = client or docker_client()
    base = resolve_base(base_name)
    ctx = lab_context()
    # Fast path without the lock: both images present.
    base_id = image_id(client, base.image)
    if base_id:
        tag = lab_tag(base, ctx.digest(base_id))
        found = image_id(client, tag)
        if found:
            return LabImage(base, tag, found, False, False, time.monotonic() - started)
    with _lock():
        base_id, base_made = ensure_base(client, base, log)
        tag = lab_tag(base, ctx.digest(base_id))
        found = image_id(client, tag)
        if found:
            return LabImage(base, tag, found, False, base_made, time.monotonic() - started)
        log(f"build {tag} (FROM {base.image}, network "
            f"{os.environ.get('WRAPLAB_BUILD_NETWORK', 'none')})")
        build_started = time.monotonic()
        built_id = _build(client, base, base_id, tag, ctx, log)
        log(f"build {tag}: done in {time.monotonic() - build_started:.1f}s")
        return LabImage(base, tag, built_id, True, base_made, time.monotonic() - started)


def lab_images(client: docker.DockerClient) -> list:
    """Every lab image of ours present (docker Image objects)."""
    return client.images.list(filters={"label": "wraplab.image=lab"})


def remove_stale_lab_images(client: docker.DockerClient, log: Log = print) -> int:
    """Remove lab images that the current inputs would not build (old hashes)."""
    current: set[str] = set()
    for name in DEBIAN_SUITES:
        try:
            tag = expected_lab_tag(client, resolve_base(name))
        except paths.SourcesMissing:
            return 0
        if tag:
            current.add(tag)
    removed = 0
    for image in lab_images(client):
        hashed = [t for t in image.tags if re.search(r"-[0-9a-f]{12}$", t)]
        if hashed and not current.intersection(image.tags):
            for t in image.tags:
                try:
                    client.images.remove(t, noprune=False)
                except docker.errors.APIError as exc:
                    log(f"keep {t}: {exc.explanation or exc}")
                    break
            else:
                removed += 1
                log(f"removed old lab image {', '.join(hashed)}")
    return removed
