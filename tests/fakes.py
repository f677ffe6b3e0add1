"""Fakes, not mocks: an in-memory lossy datagram network and a recording sink.

Everything random is drawn from one ``random.Random(seed)``, and every delay is on the
trio clock, so a run under ``autojump_clock`` is exactly reproducible.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import trio

WALL_TIME = 1_700_000_000.0


def wall_clock() -> float:
    """A fixed wall clock (event timestamps are not under test here)."""
    return WALL_TIME


class MemoryLink:
    """One endpoint of a ``FakeNetwork``; implements ``peer.DatagramLink``."""

    def __init__(self, network: FakeNetwork, name: str, capacity: int) -> None:
        self.network = network
        self.name = name
        self._send_inbox, self._inbox = trio.open_memory_channel[bytes](capacity)
        self.peer: MemoryLink | None = None
        self.dropped_full = 0

    async def send(self, data: bytes) -> None:
        """Hand ``data`` to the network (which may lose, delay or duplicate it)."""
        assert self.peer is not None
        self.network.submit(self.peer, bytes(data))
        await trio.lowlevel.checkpoint()

    async def receive(self) -> tuple[bytes, object]:
        """The next datagram addressed to this endpoint."""
        return await self._inbox.receive(), self.peer.name if self.peer else None

    def deliver_nowait(self, data: bytes) -> None:
        """UDP semantics: a full receive queue drops the datagram."""
        try:
            self._send_inbox.send_nowait(data)
        except trio.WouldBlock:
            self.dropped_full += 1

    def clear(self) -> None:
        """Discard what is queued (a restarted process gets a fresh socket)."""
        while True:
            try:
                self._inbox.receive_nowait()
            except trio.WouldBlock:
                return


@dataclass
class FakeNetwork:
    """Two endpoints ``a`` and ``b`` joined by a seeded lossy link.

    Each datagram is lost with probability ``loss``, else delivered after a delay drawn
    uniformly from ``delay`` (so datagrams sent closer together than the spread arrive
    reordered), and a second copy follows with probability ``duplicate``. While
    ``partitioned`` is true everything is lost. ``run`` must be running to deliver.
    """

    seed: int = 0
    loss: float = 0.0
    duplicate: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)
    capacity: int = 256
    partitioned: bool = False
    rng: random.Random = field(init=False)
    sent: int = 0
    lost: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.a = MemoryLink(self, "a", self.capacity)
        self.b = MemoryLink(self, "b", self.capacity)
        self.a.peer, self.b.peer = self.b, self.a
        self._queue: list[tuple[float, int, MemoryLink, bytes]] = []
        self._order = itertools.count()
        self._wake = trio.Event()

    def submit(self, dest: MemoryLink, data: bytes) -> None:
        """Schedule the fate of one datagram."""
        self.sent += 1
        if self.partitioned or self.rng.random() < self.loss:
            self.lost += 1
            return
        copies = 2 if self.rng.random() < self.duplicate else 1
        now = trio.current_time()
        for _ in range(copies):
            at = now + self.rng.uniform(*self.delay)
            heapq.heappush(self._queue, (at, next(self._order), dest, data))
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> NoReturn:
        """Deliver datagrams when their time comes, until cancelled."""
        task_status.started()
        while True:
            deadline = self._queue[0][0] if self._queue else float("inf")
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            while self._queue and self._queue[0][0] <= now:
                _, _, dest, data = heapq.heappop(self._queue)
                dest.deliver_nowait(data)


def memory_link_pair(*, seed: int = 0, loss: float = 0.0, duplicate: float = 0.0,
                     delay: tuple[float, float] = (0.0, 0.0)) -> FakeNetwork:
    """A ``FakeNetwork``; use ``.a`` and ``.b`` as the two links, start ``.run``."""
    return FakeNetwork(seed=seed, loss=loss, duplicate=duplicate, delay=delay)


@dataclass
class ListSink:
    """Records what each probe delivered, with the trio time of delivery."""

    records: list[tuple[str, bytes, float]] = field(default_factory=list)
    clock: Callable[[], float] = trio.current_time

    def write(self, probe: str, keys: list[bytes]) -> None:
        """Deliver ``keys`` on behalf of ``probe``."""
        now = self.clock()
        self.records.extend((probe, key, now) for key in keys)

    def keys(self) -> list[bytes]:
        """Every delivered key, duplicates included, in delivery order."""
        return [key for _, key, _ in self.records]
