"""File feed: follows ``FeedFile`` like ``tail -F``.

Starts at the end of an existing file (old lines were some earlier run's business), reads
a file that appears later from its start, notices rotation (a new inode at the path:
the rest of the old file is read first, then the new one from its start) and truncation
(size below our offset: read again from 0). Regular files never block, so reads are
plain ``os.read`` between checkpoints; the path is polled every POLL_INTERVAL.

Event key: the byte offset of the line plus the line (DESIGN.md "Event key": file
identity + offset). Inode numbers differ between the two hosts of a pair, so identity is
the content at that offset, numbered by KeyMaker if it repeats after a rotation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from probepair.errors import FeedError
from probepair.events import Batch, Event, KeyMaker
from probepair.feeds.base import MAX_BATCH, send_batch

if TYPE_CHECKING:
    from probepair.config.props import Props
    from probepair.pipeline.channels import SendEnd

POLL_INTERVAL = 0.1  # seconds between looks at an idle file; bounds added latency
READ_SIZE = 1 << 20


class _Follow:
    """One open generation of the file and our position in it."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.ino = os.fstat(fd).st_ino
        self.offset = offset
        self.partial = b""


class FileFeed:
    """Appended lines of ``FeedFile``."""

    def __init__(
        self,
        props: Props,
        wall_clock: Callable[[], float],
        *,
        keys: KeyMaker | None = None,
        index: int = 0,
    ) -> None:
        if not props.FeedFile:
            raise FeedError("file", "FeedType 'file' needs FeedFile")
        self.path = props.FeedFile
        self.name = f"file:{self.path}"
        self._keys = keys if keys is not None else KeyMaker(props.KeyWindow)
        self._index = index
        self._wall_clock = wall_clock

    def _open(self, at_end: bool) -> _Follow | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FeedError(self.name, f"cannot open: {exc.strerror}") from None
        return _Follow(fd, os.lseek(fd, 0, os.SEEK_END) if at_end else 0)

    def _read(self, cur: _Follow) -> Batch:
        """Complete lines available in ``cur`` (up to READ_SIZE bytes)."""
        os.lseek(cur.fd, cur.offset + len(cur.partial), os.SEEK_SET)
        chunk = os.read(cur.fd, READ_SIZE)
        if not chunk:
            return []
        data = cur.partial + chunk
        lines = data.split(b"\n")
        cur.partial = lines.pop()
        t = trio.current_time()
        wall = self._wall_clock()
        out: Batch = []
        for line in lines:
            start = cur.offset
            cur.offset += len(line) + 1
            line = line.rstrip(b"\r")
            if line:
                out.append(
                    Event(line, self._keys.key(b"%d:" % start + line, t), wall, {}, False,
                          None, self._index)
                )
        return out

    async def run(
        self,
        send: SendEnd[Batch],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        cur = self._open(at_end=True)
        task_status.started(self.path)
        try:
            while True:
                if cur is None:
                    await trio.sleep(POLL_INTERVAL)
                    cur = self._open(at_end=False)
                    continue
                batch = self._read(cur)
                if batch:
                    for i in range(0, len(batch), MAX_BATCH):
                        await send_batch(send, batch[i : i + MAX_BATCH])
                    continue
                cur = await self._after_idle(cur, send)
        finally:
            if cur is not None:
                os.close(cur.fd)

    def _finish(self, cur: _Follow) -> Batch:
        """The unterminated last line of a rotated-away generation, as a record."""
        start, line = cur.offset, cur.partial.rstrip(b"\r")
        cur.offset, cur.partial = cur.offset + len(cur.partial), b""
        if not line:
            return []
        key = self._keys.key(b"%d:" % start + line, trio.current_time())
        return [Event(line, key, self._wall_clock(), {}, False, None, self._index)]

    async def _after_idle(self, cur: _Follow, send: SendEnd[Batch]) -> _Follow | None:
        """Sleep a poll interval, then handle rotation or truncation."""
        await trio.sleep(POLL_INTERVAL)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return cur  # rotated away, new file not there yet: keep the old one
        if st.st_ino != cur.ino:
            if os.fstat(cur.fd).st_size > cur.offset + len(cur.partial):
                return cur  # the old generation still has unread lines
            if cur.partial:
                # tail -F prints the old file's last line even without a newline. Keep
                # the old generation one more round in case the writer still appends.
                batch = self._finish(cur)
                if batch:
                    await send_batch(send, batch)
                return cur
            os.close(cur.fd)
            return self._open(at_end=False)
        if st.st_size < cur.offset:
            cur.offset, cur.partial = 0, b""  # truncated (copytruncate rotation)
        return cur
