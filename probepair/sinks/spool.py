"""Store-and-forward spool (OMNIbus' StoreAndForward / SAFFileName).

An append-only file of records ``key (8 bytes) | length (4 bytes, big endian) | alert``
plus a small ``<spool>.pos`` file holding how far replay has got. Appends are fsynced
(they happen only while the sink is down, so their cost is not on the normal path) and
the position is replaced atomically after each delivered chunk, so a probe killed at any
point replays from the last committed position on restart: nothing is lost, and at most
one chunk is delivered twice (the key-aware sinks make even that a no-op).

Bounded (OMNIbus' ``MaxSAFFileSize``): an append that would take the records waiting past
``max_bytes`` first drops the oldest whole records (counted: the runner reports them as
``probepair_events_discarded_total{reason="spool_full"}``), so a long outage under a flood
loses the oldest alerts rather than the disk. Once the replayed-or-dropped head of the
file is as large as the cap, the live tail is copied to a new file (fsynced, renamed over
the old one), so the file on disk stays below twice the cap.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Final

from probepair.events import KEY_SIZE, Item

_HEAD: Final = struct.Struct(f"!{KEY_SIZE}sI")


class Spool:
    """A spool file; ``pending`` while it holds records not yet replayed."""

    def __init__(self, path: str, max_bytes: int = 0) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes  # 0: no cap
        self._pos_path = self.path.with_name(self.path.name + ".pos")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            self.read_pos = int(self._pos_path.read_text())
        except (OSError, ValueError):
            self.read_pos = 0
        self.size = os.fstat(self._fd).st_size
        self.read_pos = min(self.read_pos, self.size)

    @property
    def pending(self) -> bool:
        return self.read_pos < self.size

    @property
    def backlog_bytes(self) -> int:
        return self.size - self.read_pos

    def append(self, items: list[Item]) -> int:
        """Append ``items`` durably (fsync); the number of older records dropped to stay
        within ``max_bytes`` (the newest batch itself is kept whole, whatever its size)."""
        data = b"".join([_HEAD.pack(key, len(p)) + p for key, p in items])
        dropped = 0
        if self.max_bytes and self.backlog_bytes + len(data) > self.max_bytes:
            dropped = self._drop_oldest(self.backlog_bytes + len(data) - self.max_bytes)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        self.size += len(data)
        return dropped

    def _drop_oldest(self, nbytes: int) -> int:
        """Skip at least ``nbytes`` of the oldest whole records; how many were skipped."""
        dropped = 0
        pos = self.read_pos
        while pos < self.size and pos - self.read_pos < nbytes:
            head = os.pread(self._fd, _HEAD.size, pos)
            if len(head) < _HEAD.size:
                break
            _, length = _HEAD.unpack(head)
            pos = min(pos + _HEAD.size + length, self.size)
            dropped += 1
        self.commit(pos - self.read_pos)
        if self.read_pos >= self.max_bytes:
            self._compact()
        return dropped

    def _compact(self) -> None:
        """Copy what waits to a new file and rename it over this one. The position file
        goes first: a crash between the two replays the old file from its start (some
        alerts twice, none lost); after the rename the new file needs no position."""
        tmp = self.path.with_name(self.path.name + ".new")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            pos = self.read_pos
            while pos < self.size:
                chunk = os.pread(self._fd, min(1 << 20, self.size - pos), pos)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                pos += len(chunk)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        self._pos_path.unlink(missing_ok=True)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        self.size -= self.read_pos
        self.read_pos = 0

    def peek(self, max_bytes: int = 1 << 20) -> tuple[list[Item], int]:
        """Records from the replay position (at least one if pending) and their size."""
        data = os.pread(self._fd, max(max_bytes, 1 << 16), self.read_pos)
        items: list[Item] = []
        used = 0
        while used + _HEAD.size <= len(data):
            key, length = _HEAD.unpack_from(data, used)
            end = used + _HEAD.size + length
            if self.read_pos + end > self.size:
                break  # a torn tail: dropped below once nothing precedes it
            if end > len(data):
                if not items:  # one record larger than max_bytes
                    data = os.pread(self._fd, end - used, self.read_pos + used)
                    items.append((key, data[_HEAD.size :]))
                    used = end
                break
            items.append((key, data[used + _HEAD.size : end]))
            used = end
        if not items and self.pending:
            # A torn tail (killed mid-append before fsync): drop it, it was never acked.
            self.size = self.read_pos
            os.ftruncate(self._fd, self.size)
        return items, used

    def commit(self, nbytes: int) -> None:
        """``nbytes`` from the replay position were delivered."""
        self.read_pos += nbytes
        if self.read_pos >= self.size:
            os.ftruncate(self._fd, 0)
            self.size = self.read_pos = 0
            self._pos_path.unlink(missing_ok=True)
            return
        tmp = self._pos_path.with_name(self._pos_path.name + ".tmp")
        tmp.write_text(str(self.read_pos))
        os.replace(tmp, self._pos_path)

    def close(self) -> None:
        os.close(self._fd)
