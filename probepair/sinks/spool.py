"""Store-and-forward spool (OMNIbus' StoreAndForward / SAFFileName).

An append-only file of records ``key (8 bytes) | length (4 bytes, big endian) | alert``
plus a small ``<spool>.pos`` file holding how far replay has got. Appends are fsynced
(they happen only while the sink is down, so their cost is not on the normal path) and
the position is replaced atomically after each delivered chunk, so a probe killed at any
point replays from the last committed position on restart: nothing is lost, and at most
one chunk is delivered twice (the key-aware sinks make even that a no-op).
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

    def __init__(self, path: str) -> None:
        self.path = Path(path)
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

    def append(self, items: list[Item]) -> None:
        data = b"".join([_HEAD.pack(key, len(p)) + p for key, p in items])
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        self.size += len(data)

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
