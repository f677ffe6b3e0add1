"""Socket options and looks shared by the feeds, the sinks and the heartbeat link."""

from __future__ import annotations

import select
import socket
from pathlib import Path
from typing import Final

WANTED_RCVBUF: Final = 32 * 1024 * 1024  # bytes; ~100k syslog lines, capped by the kernel


def raise_rcvbuf(sock: socket.socket, wanted: int = WANTED_RCVBUF) -> None:
    """Raise SO_RCVBUF to ``wanted`` (SO_RCVBUFFORCE as root), else to ``rmem_max``."""
    try:
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    except (OSError, ValueError):
        rmem_max = 0
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if force is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, wanted)
            return
        except OSError:
            pass  # not root: fall back to what rmem_max allows
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, max(rmem_max, 1 << 20))


def readable_now(sock: socket.socket | int) -> bool:
    """Whether ``sock`` has something to read (or EOF) at this instant: a fresh
    non-blocking look, never a remembered state. A closed socket is not readable."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)
