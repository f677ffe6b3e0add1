"""JSON-lines file and stdout sinks.

Flush policy: each batch the runner hands over (everything that arrived since the last
write, up to a few thousand alerts) is joined and written with one ``write(2)``, so an
alert is in the file, visible to readers, as soon as its batch is processed (well under
100 ms). ``sync()`` is the fsync the runner calls before it acks keys to the peer
(``SinkSync``; on a worker thread: a slow disk must not delay heartbeats); at clean
shutdown the file is fsynced too.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TYPE_CHECKING

import trio

from probepair.errors import SinkError
from probepair.events import Item

if TYPE_CHECKING:
    from probepair.config.props import Props


def _lines(items: list[Item]) -> bytes:
    """The payloads as newline-terminated lines, in one buffer.

    The trailing b"" gives the last newline: ``join(...) + b"\\n"`` would copy the whole
    buffer once more (~0.3 µs an alert for a 4096-alert batch, mostly page faults).
    """
    lines = [payload for _, payload in items]
    lines.append(b"")
    return b"\n".join(lines)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class FileSink:
    """Appends one JSON object per line to ``SinkFile``."""

    def __init__(self, props: Props) -> None:
        self.path = props.SinkFile
        self.name = f"file:{self.path}"
        self._fd: int | None = None

    async def open(self) -> None:
        try:
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
        except OSError as exc:
            raise SinkError(self.name, f"cannot open: {exc.strerror}") from None

    async def deliver(self, items: list[Item]) -> list[bytes]:
        if not items:
            await trio.lowlevel.checkpoint()
            return []  # b"\n".join([]) + b"\n" would write an empty line
        if self._fd is None:
            await self.open()
        assert self._fd is not None
        data = _lines(items)
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            raise SinkError(self.name, f"cannot write: {exc.strerror}") from None
        # A cancel point, not a schedule point: the runner's next receive is one, and
        # a yield here would cost the scheduler a round per batch.
        await trio.lowlevel.checkpoint_if_cancelled()
        return [key for key, _ in items]

    async def sync(self) -> None:
        """Everything written so far is on disk (``fsync``); a pipe or a special file
        that cannot be synced counts as synced."""
        fd = self._fd
        if fd is None:
            return
        try:
            await trio.to_thread.run_sync(os.fsync, fd)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EROFS, errno.ENOTSUP):
                return  # not a regular file: nothing to make durable
            raise SinkError(self.name, f"cannot fsync: {exc.strerror}") from None

    async def check(self) -> None:
        """The file is open for appending (opened now if need be) and its filesystem
        has room: what a delivery needs, without writing."""
        if self._fd is None:
            await self.open()
        assert self._fd is not None
        try:
            fs = os.fstatvfs(self._fd)
        except OSError as exc:
            raise SinkError(self.name, f"cannot check: {exc.strerror}") from None
        await trio.lowlevel.checkpoint()
        if fs.f_bavail == 0:
            raise SinkError(self.name, "filesystem full")

    async def aclose(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # On a worker thread like every other fsync: a slow disk at stop must not
            # stall the heartbeats and acks of the last seconds.
            await trio.to_thread.run_sync(_sync_and_close, fd)


def _sync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        pass  # fsync is best effort on pipes and special files
    os.close(fd)


class StdoutSink:
    """One JSON object per line on standard output."""

    def __init__(self, props: Props) -> None:
        self.name = "stdout"

    async def open(self) -> None:
        pass

    async def deliver(self, items: list[Item]) -> list[bytes]:
        if not items:
            await trio.lowlevel.checkpoint()
            return []  # b"\n".join([]) + b"\n" would write an empty line
        data = _lines(items)
        try:
            sys.stdout.flush()
            _write_all(sys.stdout.fileno(), data)
        except OSError as exc:
            raise SinkError(self.name, f"cannot write: {exc.strerror}") from None
        # A cancel point, not a schedule point: the runner's next receive is one, and
        # a yield here would cost the scheduler a round per batch.
        await trio.lowlevel.checkpoint_if_cancelled()
        return [key for key, _ in items]

    async def aclose(self) -> None:
        pass
