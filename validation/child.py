"""The guard's child process (``validation.guard``): a fork of this process
that runs ``validation.evaluator.serve`` and nothing else, and the messages
to and from it.

Forking, not starting a new interpreter: everything the child needs is
imported already, so it is ready in milliseconds (a new interpreter with the
engine takes ~0.3 s), which is what makes stopping one record and going on
cheap. It never returns into this process's code (``os._exit``), never uses
the connections it inherited, dies with its parent, and is reaped here.

Requests are queued and written as the pipe takes them, while replies are
read: a job's next batch can wait in the pipe while the child works on the
last one, and neither side can block the other.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import select
import signal
import time
from typing import Any

from validation import channel
from validation.engine import CompiledSchema
from validation.evaluator import Progress, serve

# The child's own alarm, past the parent's deadline, for when the parent is gone.
GRACE_SECONDS = 5.0
# How long a new child may take to say it is ready: not part of any budget,
# as it is not the input's doing.
STARTUP_SECONDS = 30.0
# What the requests pipe holds (Linux; 64 KiB by default, the most an
# unprivileged process may ask is /proc/sys/fs/pipe-max-size, 1 MiB by
# default): a job's two batches in flight, about 64 KiB of records each, go
# in at once instead of a pipe's worth each time the child has read one,
# which woke both processes several times a batch.
PIPE_BYTES = 1 << 20


class Timeout(Exception):
    """The validation ran past its budget; the child was stopped."""


class Crashed(Exception):
    """The child ended without answering (killed from outside, out of memory)."""


class Failed(Exception):
    """The child raised: a bug, with its traceback."""


class Child:
    """The kept child of one thread. Not thread-safe."""

    def __init__(self) -> None:
        self._owner = os.getpid()
        self._pid: int | None = None
        self._requests = self._replies_fd = -1
        self.progress = Progress()
        self.loaded: set[str] = set()
        self._replies = channel.Replies()
        self._outbox = bytearray()
        self._ready = False

    @property
    def pid(self) -> int | None:
        return self._pid

    def _alive(self) -> bool:
        if self._pid is None:
            return False
        try:
            return os.waitpid(self._pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def spawn(self) -> int:
        if self._owner != os.getpid():  # this process is a fork: that child is its parent's
            self._forget()
            self._owner = os.getpid()
        if self._pid is not None and self._alive():
            return self._pid
        self._forget()
        requests_out, requests_in = os.pipe()
        replies_out, replies_in = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # past pipe-max-size, or not Linux: as it is
            fcntl.fcntl(requests_in, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        shared = mmap.mmap(-1, 8)  # anonymous and shared: this process and the child
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: serve() ends the process, whatever happens
            os.close(requests_in)
            os.close(replies_out)
            serve(requests_out, replies_in, shared, parent)
        os.close(requests_out)
        os.close(replies_in)
        os.set_blocking(requests_in, False)  # requests are written as the child takes them
        self._pid, self._requests, self._replies_fd = pid, requests_in, replies_out
        self._outbox = bytearray()
        self.progress = Progress(shared)
        self.loaded.clear()
        self._ready = False
        self._replies = channel.Replies()
        return pid

    def _forget(self) -> None:
        """Drop the child's pipes (a killed child's, or a parent process's)."""
        for fd in (self._requests, self._replies_fd):
            if fd >= 0:
                os.close(fd)
        self._requests = self._replies_fd = -1
        self._pid = None

    def kill(self) -> None:
        if self._pid is not None and self._owner == os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
        self._forget()

    def stop(self) -> None:
        """Kill the child now and fork its successor."""
        self.kill()
        self.spawn()

    def close(self) -> None:
        self.kill()

    def signal_now(self) -> None:
        """SIGKILL the child and leave it to :meth:`stop` to reap: what it
        wrote before can still be read."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    # -- messages -------------------------------------------------------------
    def send(self, *message: Any) -> None:
        """Queue a request; :meth:`next` writes it as the pipe takes it (a
        job's next batch waits there while the child works on the last)."""
        self.spawn()
        self._outbox += channel.request(message)

    def next(self, timeout: float) -> list[Any] | None:
        """The next reply, or None if none came within ``timeout``; queued
        requests are written meanwhile. Raises Crashed when the child ends."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._replies.pop()
            if message is not None:
                if message[0] == "failed":
                    raise Failed(message[1])
                return message
            writing = [self._requests] if self._outbox else []
            readable, writable, _ = select.select(
                [self._replies_fd], writing, [], max(0.0, deadline - time.monotonic())
            )
            if writable:
                try:
                    del self._outbox[: os.write(self._requests, self._outbox)]
                except BlockingIOError:
                    pass
                except OSError:  # BrokenPipeError: it died
                    raise Crashed() from None
            if readable:
                data = os.read(self._replies_fd, 1 << 20)
                if not data:
                    raise Crashed()
                self._replies.feed(data)
            elif not writable:
                return None

    def reply(self, deadline: float) -> list[Any]:
        """The next reply before ``deadline``; else the child is stopped."""
        try:
            message = self.next(deadline - time.monotonic())
        except Crashed:
            self.stop()
            raise
        if message is None:
            self.stop()
            raise Timeout()
        return message

    def start(self) -> None:
        """A child that has started and said so (its start is no budget's)."""
        self.spawn()
        if not self._ready:
            self.reply(time.monotonic() + STARTUP_SECONDS)  # ["ready"]
            self._ready = True

    def ensure(self, compiled: CompiledSchema, seconds: float) -> float:
        """The schema loaded in a started child; returns the deadline of
        ``seconds`` from there (loading counts against it)."""
        self.start()
        deadline = time.monotonic() + seconds
        if compiled.key not in self.loaded:
            self.send("load", compiled.key, compiled.source.as_tuple(), seconds + GRACE_SECONDS)
            self.reply(deadline)
            self.loaded.add(compiled.key)
        return deadline
