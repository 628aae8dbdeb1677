"""The symlink racer's wait for the server's new wrap directory (inotify): a wrap-init the
server answered without making one (a 503 at the pending-wrap cap) ends the wait at once;
it once cost ten seconds a time, most of a hardened race's minute."""

from __future__ import annotations

import os
import time

from wraplab.actors.symlink_race import Inotify


def test_an_answer_without_a_directory_ends_the_wait(tmp_path):
    ino = Inotify(str(tmp_path))
    asked = []

    def answered():
        asked.append(1)
        return True

    try:
        assert ino.wait_dir("wrap-", time.monotonic() + 5, answered) is None
    finally:
        os.close(ino.fd)
    assert asked  # the answer ended it, not the deadline


def test_a_directory_made_before_the_answer_is_still_found(tmp_path):
    ino = Inotify(str(tmp_path))
    try:
        (tmp_path / "other").mkdir()
        (tmp_path / "wrap-abc").mkdir()
        assert ino.wait_dir("wrap-", time.monotonic() + 5, lambda: True) == "wrap-abc"
    finally:
        os.close(ino.fd)
