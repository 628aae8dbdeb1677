"""Lab images: built offline, tagged by a hash of their inputs, never rebuilt when unchanged."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from wraplab import images


def test_context_holds_exactly_the_inputs():
    ctx = images.lab_context()
    names = set(ctx.files)
    assert {"Dockerfile", "users.conf", "create-users.sh", "wrapref-launcher",
            "pkg/wraplab/__init__.py", "pkg/wrapref/__init__.py",
            "pkg/wraplab/actors/probe.py"} <= names
    assert all(n in {"Dockerfile", "users.conf", "create-users.sh", "wrapref-launcher"}
               or n.startswith(("pkg/wrapref/", "pkg/wraplab/")) for n in names)
    assert not any("__pycache__" in n for n in names)


def test_hash_depends_on_every_input_and_the_base():
    ctx = images.lab_context()
    digest = ctx.digest("sha256:base-a")
    assert digest == images.lab_context().digest("sha256:base-a")
    assert digest != ctx.digest("sha256:base-b")
    data, mode = ctx.files["users.conf"]
    ctx.add("users.conf", data + b"\n# changed\n", mode)
    assert ctx.digest("sha256:base-a") != digest


@pytest.mark.requires_docker
@pytest.mark.parametrize("base", ["bookworm", "trixie"])
def test_unchanged_inputs_are_not_rebuilt(base):
    first = images.ensure_lab_image(base)  # may build (cold)
    started = time.monotonic()
    again = images.ensure_lab_image(base)
    assert not again.built and again.tag == first.tag and again.id == first.id
    assert time.monotonic() - started < 5
    assert again.tag.startswith(f"{images.LAB_REPO}:{base}-")


@pytest.mark.requires_docker
def test_images_command_is_a_noop_when_up_to_date():
    images.ensure_lab_image("bookworm")
    out = subprocess.run([sys.executable, "-m", "wraplab.cli", "images", "--base", "bookworm"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout and "build " not in out.stdout, out.stdout
