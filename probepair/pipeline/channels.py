"""Memory channels bounded in bytes as well as in batches (issue 9).

A trio memory channel bounds how many batches wait in it, not how large they are: 256
batches of 512 datagrams of 64 KiB would be 8 GiB. ``open_bounded_channel`` pairs one
with a ``ByteBudget``: the sender acquires a batch's size before it sends (and waits
while the budget is spent), the receiver releases it when it takes the batch out. A
batch larger than the whole budget still passes, alone, so nothing can deadlock.

The ends behave as the trio memory channel ends they wrap (``clone``, ``send_nowait``,
``receive_nowait``, ``async with``, ``async for``), so stages need no other change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Generic, TypeAlias, TypeVar

import trio

if TYPE_CHECKING:
    from probepair.events import Batch, Item

T = TypeVar("T")

# Memory an item costs beyond its payload bytes, so that the budget counts what the
# process really holds (measured with CPython 3.11, orjson 3.x on x86-64):
# an Event: the object (48), its key (48), its empty tokens dict (64), the raw bytes
# header (33) and a list slot (8), rounded up;
EVENT_OVERHEAD: Final = 200
# an alert fresh from orjson.dumps keeps orjson's output buffer (~4 KiB, DESIGN.md),
# plus its tuple (64), key (48) and header (33). Flushed alerts are exact-size copies
# and are over-counted: the budget errs on the safe side.
ITEM_OVERHEAD: Final = 4096 + 150


def batch_bytes(batch: Batch) -> int:
    """What a feed batch holds in memory (raw bytes plus per-event overhead)."""
    return sum([len(ev.raw) for ev in batch]) + EVENT_OVERHEAD * len(batch)


def items_bytes(items: list[Item]) -> int:
    """What a batch of serialised alerts holds in memory."""
    return sum([len(payload) for _, payload in items]) + ITEM_OVERHEAD * len(items)


class ByteBudget:
    """Bytes in flight between two stages: the producer acquires, the consumer releases.

    Args:
        limit: bytes in flight at most (one acquisition larger than this passes alone).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a byte budget needs a limit of at least 1")
        self.limit = limit
        self.used = 0
        self._lot = trio.lowlevel.ParkingLot()

    def _fits(self, n: int) -> bool:
        return not self.used or self.used + n <= self.limit

    async def acquire(self, n: int) -> None:
        """Take ``n`` bytes, waiting while they do not fit. Not a checkpoint when they
        fit at once: the channel send that follows is one."""
        while not self._fits(n):
            await self._lot.park()
        self.used += n

    def acquire_nowait(self, n: int) -> None:
        """Take ``n`` bytes now, or raise ``trio.WouldBlock``."""
        if not self._fits(n):
            raise trio.WouldBlock
        self.used += n

    def release(self, n: int) -> None:
        """Give back ``n`` bytes and wake the senders waiting for room."""
        self.used -= n
        if self._lot:
            self._lot.unpark_all()


class BoundedSendChannel(trio.abc.SendChannel[T], Generic[T]):
    """The sending end; see ``open_bounded_channel``."""

    def __init__(
        self,
        inner: trio.MemorySendChannel[tuple[int, T]],
        budget: ByteBudget,
        size_of: Callable[[T], int],
    ) -> None:
        self._inner = inner
        self.budget = budget
        self._size_of = size_of

    async def send(self, value: T) -> None:
        n = self._size_of(value)
        await self.budget.acquire(n)
        sent = False
        try:
            await self._inner.send((n, value))
            sent = True
        finally:
            if not sent:  # cancelled or closed: the batch never entered the channel
                self.budget.release(n)

    def send_nowait(self, value: T) -> None:
        n = self._size_of(value)
        self.budget.acquire_nowait(n)
        sent = False
        try:
            self._inner.send_nowait((n, value))
            sent = True
        finally:
            if not sent:
                self.budget.release(n)

    def clone(self) -> BoundedSendChannel[T]:
        return BoundedSendChannel(self._inner.clone(), self.budget, self._size_of)

    def statistics(self) -> trio.MemoryChannelStatistics:
        """The wrapped channel's statistics (``current_buffer_used`` counts batches)."""
        return self._inner.statistics()

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()


class BoundedReceiveChannel(trio.abc.ReceiveChannel[T], Generic[T]):
    """The receiving end; see ``open_bounded_channel``."""

    def __init__(self, inner: trio.MemoryReceiveChannel[tuple[int, T]], budget: ByteBudget) -> None:
        self._inner = inner
        self.budget = budget

    async def receive(self) -> T:
        n, value = await self._inner.receive()
        self.budget.release(n)
        return value

    def receive_nowait(self) -> T:
        n, value = self._inner.receive_nowait()
        self.budget.release(n)
        return value

    def statistics(self) -> trio.MemoryChannelStatistics:
        """The wrapped channel's statistics (``current_buffer_used`` counts batches)."""
        return self._inner.statistics()

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()


def open_bounded_channel(
    max_items: int, max_bytes: int, size_of: Callable[[T], int]
) -> tuple[BoundedSendChannel[T], BoundedReceiveChannel[T]]:
    """A memory channel holding at most ``max_items`` values and ``max_bytes`` bytes
    (as ``size_of`` counts them; a single larger value passes alone)."""
    send, recv = trio.open_memory_channel[tuple[int, T]](max_items)
    budget = ByteBudget(max_bytes)
    return BoundedSendChannel(send, budget, size_of), BoundedReceiveChannel(recv, budget)


# Either end as the stages see it: a trio memory channel end (tests) or a bounded one.
SendEnd: TypeAlias = "trio.MemorySendChannel[T] | BoundedSendChannel[T]"
ReceiveEnd: TypeAlias = "trio.MemoryReceiveChannel[T] | BoundedReceiveChannel[T]"
