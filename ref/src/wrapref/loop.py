"""One event loop for the API and every accept loop and handshake: selectors + a deadline heap.

A *task* is a generator.  It yields ``(fd_or_socket, deadline)`` to wait until that fd is
readable (``(fd, deadline, selectors.EVENT_WRITE)``: writable; the yield answers True)
or the monotonic *deadline* passes (False); a None fd is
a plain sleep until the deadline, a None deadline waits for ever.  When the loop stops,
:class:`Stopped` is thrown into every task where it waits, so its own ``except``/``finally``
records the shutdown and cleans up.  A task never blocks: what it does between two yields
is a few non-blocking syscalls.

Threat model: the tasks serve untrusted local peers, so a wait is always bounded by the
task's own deadline (or by the peer closing), never by another task; an fd that epoll
refuses (a regular file or a directory passed as a token) counts as readable at once, as
poll() would say.

One thread runs the loop (started by the first task, joined by :meth:`EventLoop.stop`);
:meth:`spawn` may be called from any thread.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import threading
import time

__all__ = ["EventLoop", "Stopped"]


class Stopped(Exception):
    """The loop is stopping (thrown into every waiting task)."""


class _Task:
    __slots__ = ("gen", "fd", "events", "wait_id", "on_exit")

    def __init__(self, gen, on_exit):
        self.gen = gen
        self.fd = None  # what the task is registered with the selector for, if anything
        self.events = 0
        self.wait_id = 0
        self.on_exit = on_exit


class EventLoop:
    """``spawn(generator)`` runs it in the loop thread; ``stop()`` ends every task and joins."""

    def __init__(self, name: str = "wrapref-loop"):
        self.name = name
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._incoming = []  # tasks spawned from other threads
        self._lock = threading.Lock()
        self._heap = []  # (deadline, seq, task, wait_id)
        self._seq = itertools.count()
        self._tasks = set()
        self._thread = None
        self._stopping = False
        self._closed = False

    # -- any thread --------------------------------------------------------------------

    def spawn(self, gen, on_exit=None) -> None:
        """Run *gen* in the loop; *on_exit()* once it has finished (however it ended).

        From another thread the loop is woken; from a task (the loop's own thread) there
        is no need: the loop takes new tasks before it waits again.
        """
        with self._lock:
            if self._stopping:
                raise RuntimeError("the event loop is stopping")
            self._incoming.append(_Task(gen, on_exit))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            elif self._thread.ident == threading.get_ident():
                return
        self._wake()

    def stop(self, timeout: float | None = None) -> None:
        """Throw :class:`Stopped` into every task, end the thread, close the loop."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake()
        if thread is not None:
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._close()

    @property
    def busy(self) -> int:
        """Tasks running or about to."""
        with self._lock:
            return len(self._tasks) + len(self._incoming)

    # -- the loop thread -----------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # a full pipe already wakes the loop; a closed one means it is over

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _start_incoming(self) -> bool:
        """Run the first step of every task spawned since the last turn, and of those
        these spawn in turn (the loop was not woken for them); whether it is stopping."""
        while True:
            with self._lock:
                incoming, self._incoming = self._incoming, []
                stopping = self._stopping
                self._tasks.update(incoming)
            if not incoming:
                return stopping
            for task in incoming:
                self._step(task, None)

    def _run(self) -> None:
        while True:
            stopping = self._start_incoming()
            if stopping:
                for task in list(self._tasks):
                    self._step(task, Stopped())
                with self._lock:
                    if not self._incoming and not self._tasks:
                        return
                continue
            timeout = None
            while self._heap and self._heap[0][2].wait_id != self._heap[0][3]:
                heapq.heappop(self._heap)  # a wait that already ended
            if self._heap:
                timeout = max(0.0, self._heap[0][0] - time.monotonic())
            ready = self._selector.select(timeout)
            for key, _mask in ready:
                task = key.data
                if task is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                self._step(task, True)
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                _deadline, _seq, task, wait_id = heapq.heappop(self._heap)
                if task.wait_id == wait_id and task in self._tasks:
                    self._step(task, False)

    def _unregister(self, task: _Task) -> None:
        if task.fd is not None:
            try:
                self._selector.unregister(task.fd)
            except (KeyError, ValueError, OSError):
                pass
            task.fd = None

    def _step(self, task: _Task, value) -> None:
        """Resume *task* with *value* (True/False/None, or an exception to throw).

        Its fd stays registered while it runs: a task that waits on the same open socket
        again (an accept loop, a connection read in pieces) keeps its registration, two
        epoll_ctl calls fewer a turn; any other wait replaces it."""
        task.wait_id += 1
        while True:
            try:
                if isinstance(value, BaseException):
                    want = task.gen.throw(value)
                else:
                    want = task.gen.send(value)
                fd, deadline = want[0], want[1]
                events = want[2] if len(want) > 2 else selectors.EVENT_READ
            except BaseException:  # StopIteration, or what the task let escape: it is over
                self._unregister(task)
                self._finish(task)
                return
            if isinstance(value, Stopped):
                value = Stopped()  # a task that waits again while stopping is stopped again
                continue
            if fd is not None and fd is task.fd and events == task.events \
                    and not isinstance(fd, int) and fd.fileno() >= 0:
                pass  # the same open socket: still registered
            else:
                self._unregister(task)
                if fd is not None:
                    try:
                        self._selector.register(fd, events, task)
                    except PermissionError:
                        value = True  # epoll refuses regular files: readable (as poll says)
                        continue
                    except (KeyError, ValueError, OSError):
                        value = True  # a closed (or shared) fd: the task's own read says
                        continue
                    task.fd = fd
                    task.events = events
            if deadline is not None:
                heapq.heappush(self._heap, (deadline, next(self._seq), task, task.wait_id))
            return

    def _finish(self, task: _Task) -> None:
        with self._lock:
            self._tasks.discard(task)
        if task.on_exit is not None:
            task.on_exit()
