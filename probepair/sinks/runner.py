"""The sink task: batches in, deliveries out, store-and-forward when the sink fails.

Ordering: while the spool holds anything, new alerts are appended behind it, so the
sink sees alerts in arrival order across an outage. Without StoreAndForward the runner
retries the failed batch with back-off and the pipeline waits (back-pressure reaches
the feed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from probepair.errors import SinkError
from probepair.events import Item
from probepair.pipeline.alerts import exact_copies
from probepair.sinks.base import Sink
from probepair.sinks.spool import Spool

if TYPE_CHECKING:
    from probepair.metrics import Metrics
    from probepair.pipeline.channels import ReceiveEnd

logger = logging.getLogger(__name__)

MAX_ITEMS = 4096  # alerts per delivery: one write(2) or one transaction
MAX_BYTES = 4 * 2**20  # alert bytes per delivery: 4096 long alerts must not make 1 GiB
BACKOFF_FIRST = 0.25  # seconds before the first retry of a failed sink
# Seconds between retries at most: a sink that comes back is written to again within
# this (plus one attempt), so delivery resumes well inside a second. A retry of a sink
# that is down costs a refused connect, which is cheap even twice a second.
BACKOFF_MAX = 0.5
CLOSE_GRACE = 5.0  # seconds to finish deliveries at shutdown


class SinkRunner:
    """Delivers batches from a channel to a sink; reports delivered keys."""

    def __init__(
        self,
        sink: Sink,
        metrics: Metrics,
        on_delivered: Callable[[list[bytes]], None],
        spool: Spool | None = None,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self._metrics = metrics
        self._on_delivered = on_delivered
        self._backoff = BACKOFF_FIRST
        self._retry_at = -float("inf")  # trio time of the next attempt after a failure
        self._logged_down = False
        self._failing_since: float | None = None
        # Told when delivery starts failing (trio time) or works again (None), with the
        # spool's bytes: the failover machine's sink health (SinkFailover).
        self.on_health: Callable[[float | None, int], None] | None = None

    def _health(self, failing_since: float | None) -> None:
        if failing_since == self._failing_since:
            return
        self._failing_since = failing_since
        self._metrics.sink_healthy.set(0 if failing_since is not None else 1)
        if self.on_health is not None:
            spooled = self.spool.backlog_bytes if self.spool is not None else 0
            self.on_health(failing_since, spooled)

    async def run(self, recv: ReceiveEnd[list[Item]]) -> None:
        """Deliver until ``recv`` is closed and drained, then close the sink."""
        if self.spool is not None and self.spool.pending:
            # A spool an earlier run left: its alerts are older than its last write. A
            # sink whose resends are idempotent only for a while (nats) wants to know.
            spooled_before = getattr(self.sink, "spooled_before", None)
            if spooled_before is not None:
                spooled_before(os.stat(self.spool.path).st_mtime)
        try:
            await self.sink.open()
        except SinkError as exc:
            self._failed(exc)
        async with recv:
            while True:
                if self.spool is not None and self.spool.pending:
                    # A deadline, not a delay: alerts arriving meanwhile must not
                    # postpone the replay (a steady feed would starve it forever).
                    with trio.move_on_at(self._retry_at):
                        items = await self._next(recv)
                        if items is None:
                            break
                        await self._spool(items)
                        continue
                    await self._replay()
                    continue
                items = await self._next(recv)
                if items is None:
                    break
                await self._deliver_or_spool(items)
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            while self.spool is not None and self.spool.pending:
                if not await self._replay():
                    await trio.sleep_until(min(self._retry_at, trio.current_time() + 1.0))
        if self.spool is not None and self.spool.pending:
            logger.warning(
                "%s: %d bytes left in spool %s; replayed at next start",
                self.sink.name,
                self.spool.backlog_bytes,
                self.spool.path,
            )
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            await self.sink.aclose()

    @staticmethod
    async def _next(recv: ReceiveEnd[list[Item]]) -> list[Item] | None:
        try:
            items = await recv.receive()
        except trio.EndOfChannel:
            return None
        # One copy, then extend it: not a copy of the growing list per batch appended
        # (and never the sender's list, which a sender may still hold).
        own: list[Item] | None = None
        size = sum([len(payload) for _, payload in items])
        while len(items) < MAX_ITEMS and size < MAX_BYTES:
            try:
                batch = recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            size += sum([len(payload) for _, payload in batch])
            if own is None:
                items = own = items + batch
            else:
                own.extend(batch)
        return items

    async def _deliver(self, items: list[Item]) -> bool:
        start = trio.current_time()
        try:
            keys = await self.sink.deliver(items)
        except SinkError as exc:
            self._failed(exc)
            return False
        self._metrics.sink_write_seconds.observe(trio.current_time() - start)
        self._metrics.events_forwarded.inc(len(keys))
        if self._logged_down:
            logger.warning("%s: delivering again", self.sink.name)
            self._logged_down = False
        self._backoff = BACKOFF_FIRST
        self._health(None)
        self._on_delivered(keys)
        return True

    def _failed(self, exc: SinkError) -> None:
        self._metrics.sink_errors.inc()
        if self._failing_since is None:  # since the first failure, not the latest
            self._health(trio.current_time())
        if not self._logged_down:
            logger.error("%s; %s", exc, "spooling" if self.spool is not None else "retrying")
            self._logged_down = True
        # The first retry comes BACKOFF_FIRST after the first failure, then doubles.
        self._retry_at = trio.current_time() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    async def _spool(self, items: list[Item]) -> None:
        # The spool writes, fsyncs and truncates files: on a worker thread, never on the
        # one that sends heartbeats (a slow disk while the sink is down must not look
        # like a dead probe to the peer). One call at a time: this task awaits each.
        assert self.spool is not None
        await trio.to_thread.run_sync(self.spool.append, items)
        self._metrics.spool_bytes.set(self.spool.backlog_bytes)

    async def _deliver_or_spool(self, items: list[Item]) -> None:
        retried = False
        while not await self._deliver(items):
            if self.spool is not None:
                await self._spool(items)
                return
            if not retried:  # held until the sink is back: at their size (issue 9)
                items, retried = exact_copies(items), True
            await trio.sleep_until(self._retry_at)

    async def _replay(self) -> bool:
        """Deliver spooled records until the spool is empty or the sink fails."""
        assert self.spool is not None
        while self.spool.pending:
            items, used = await trio.to_thread.run_sync(self.spool.peek)
            if not items:
                break
            if not await self._deliver(items):
                return False
            await trio.to_thread.run_sync(self.spool.commit, used)
            self._metrics.spool_bytes.set(self.spool.backlog_bytes)
        return True
