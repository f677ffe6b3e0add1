"""``$Node`` and ``$PeerAddress``: host names of trap senders, resolved off the event path.

``name_of(ip)`` never blocks: it answers from the cache (a name, or the address
itself while unresolved or unresolvable) and queues a miss for the resolver task,
which looks names up in worker threads (``trio.to_thread``, at most ``RESOLVERS`` at
once) and keeps each answer for ``ActiveHostnameDuration`` minutes (mttrapd's
property). So the first trap from a new host carries its address; later ones its name
(the stock rules ``update(@Node)`` for that reason). ``NoNameResolution``: addresses
only, no lookups at all. Bounded: ``MAX_NAMES`` cached, ``MAX_PENDING`` queued.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Final

import trio

logger = logging.getLogger(__name__)

RESOLVERS: Final = 4  # lookups in flight at once
MAX_NAMES: Final = 65536  # cached answers; cleared when full
MAX_PENDING: Final = 1024  # misses waiting for a lookup; past it, the address is the name


def _lookup(ip: str) -> str:
    try:
        name = socket.gethostbyaddr(ip)[0]
    except (OSError, UnicodeError):
        return ip
    return ip if _is_address(name) else name


def _is_address(name: str) -> bool:
    """Whether ``name`` reads as an IP address. Whoever owns an address writes its PTR
    record, and one that answers "127.0.0.1" must not pass for that sender in
    ``$PeerAddress`` (rules check trusts a loopback sender; OpenSSH refuses such names
    for the same reason): the address itself is shown instead."""
    try:
        ipaddress.ip_address(name.rstrip("."))
    except ValueError:
        return False
    return True


class NameCache:
    """Host names by address, with a time to live (``ttl`` seconds, trio's clock)."""

    def __init__(self, enabled: bool, ttl: float) -> None:
        self.enabled = enabled
        self.ttl = ttl
        self._names: dict[str, tuple[str, float]] = {}
        self._pending: set[str] = set()  # queued or being looked up
        self._queue: list[str] = []  # queued, not yet started
        self._wake = trio.Event()

    def name_of(self, ip: str) -> str:
        """The cached name of ``ip`` (``ip`` itself until known); never blocks."""
        if not self.enabled:
            return ip
        found = self._names.get(ip)
        if found is not None and found[1] > trio.current_time():
            return found[0]
        if ip not in self._pending and len(self._pending) < MAX_PENDING:
            self._pending.add(ip)
            self._queue.append(ip)
            self._wake.set()
        return found[0] if found is not None else ip  # a stale name until renewed

    async def run(self) -> None:
        """Resolve queued misses until cancelled."""
        if not self.enabled:
            return
        limiter = trio.CapacityLimiter(RESOLVERS)
        async with trio.open_nursery() as nursery:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                queue, self._queue = self._queue, []
                for ip in queue:  # at most MAX_PENDING tasks, RESOLVERS of them in threads
                    nursery.start_soon(self._resolve, ip, limiter)

    async def _resolve(self, ip: str, limiter: trio.CapacityLimiter) -> None:
        try:
            name = await trio.to_thread.run_sync(
                _lookup, ip, abandon_on_cancel=True, limiter=limiter
            )
        finally:
            self._pending.discard(ip)
        if len(self._names) >= MAX_NAMES:
            self._names.clear()
        self._names[ip] = (name, trio.current_time() + self.ttl)
