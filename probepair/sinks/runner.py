"""The sink task: batches in, deliveries out, store-and-forward when the sink fails.

Ordering: while the spool holds anything, new alerts are appended behind it, so the
sink sees alerts in arrival order across an outage. Without StoreAndForward the runner
retries the failed batch with back-off and the pipeline waits (back-pressure reaches
the feed).

Durable acks (``SinkSync``): a key reaches ``on_delivered`` (and so the peer, which then
forgets the event) only once the sink holds it as durably as it can. ``batch``: the
sink's ``sync()`` (the file sink's fsync; SQLite commits with ``synchronous=FULL``)
runs before the keys of a delivery are reported, at most once per ``batch_gap`` (half an
AckInterval): the deliveries written meanwhile share one sync, so a trickle of small
batches does not pay an fsync each (it did: 87 against 63 µs CPU per event at 1,000/s),
and the keys are reported with the time they were written, so the machine still acks
them within one AckInterval of the write (the duplicate bound of a takeover). ``interval``:
keys wait for the next sync, at most ``SinkSyncInterval`` later (fewer fsyncs, acks that
late).
``off``: reported at write, as before (a power loss of this host can lose alerts the
peer already forgot). Network sinks are durable when they answer (PostgreSQL's commit,
JetStream's quorum ack, an HTTP 2xx): they have no ``sync``.

Verified health (issue 21): a standby delivers nothing, so a failed delivery cannot
tell it that its sink is down, and it used to report a dead sink as healthy, which made
an active probe hand over into it. So when nothing was delivered for
``check_interval``, the runner asks the sink itself (``check()``: a connect, ``SELECT
1``, an empty POST, JetStream's account info, the file's filesystem), bounded by
``check_timeout``; the result is the health it reports (``on_health``), and every
delivery counts as a check too. A health reported as working is thus at most
``check_interval + check_timeout`` old.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import trio

from probepair.errors import SinkError
from probepair.events import Item
from probepair.pipeline.alerts import exact_copies
from probepair.sinks.base import Sink, lifetime
from probepair.sinks.spool import Spool

if TYPE_CHECKING:
    from probepair.metrics import Metrics
    from probepair.pipeline.channels import ReceiveEnd

logger = logging.getLogger(__name__)

T = TypeVar("T")
Offload = Callable[..., Awaitable[Any]]


async def call_here(fn: Callable[..., T], *args: object) -> T:
    """An ``Offload`` that calls ``fn`` on the trio thread (for MockClock tests)."""
    await trio.lowlevel.checkpoint()
    return fn(*args)

MAX_ITEMS = 4096  # alerts per delivery: one write(2) or one transaction
MAX_BYTES = 4 * 2**20  # alert bytes per delivery: 4096 long alerts must not make 1 GiB
BACKOFF_FIRST = 0.25  # seconds before the first retry of a failed sink
# Seconds between retries at most: a sink that comes back is written to again within
# this (plus one attempt), so delivery resumes well inside a second. A retry of a sink
# that is down costs a refused connect, which is cheap even twice a second.
BACKOFF_MAX = 0.5
REPLAY_WAIT = 0.5  # seconds between looks at a spool head that waits for the peer
CLOSE_GRACE = 5.0  # seconds to finish deliveries at shutdown
SPOOL_FULL_LOG_INTERVAL = 10.0  # seconds between logged spool-full drops (all are counted)
CHECK_INTERVAL = 5.0  # seconds without a delivery before the sink is checked, at most


def check_interval(sink_failover: float) -> float:
    """How often an idle sink is checked: often enough that a standby's verified
    health is fresh well inside ``SinkFailover`` (a quarter of it, 5 s at most)."""
    return min(CHECK_INTERVAL, sink_failover / 4) if sink_failover > 0 else CHECK_INTERVAL


class _Timeout:
    """The wait for alerts reached the runner's next timer."""


_TIMEOUT: Final = _Timeout()


class SinkRunner:
    """Delivers batches from a channel to a sink; reports delivered keys."""

    def __init__(
        self,
        sink: Sink,
        metrics: Metrics,
        on_delivered: Callable[[list[bytes], float], None],
        spool: Spool | None = None,
        *,
        sync: str = "batch",
        sync_interval: float = 1.0,
        batch_gap: float = 0.05,
        check_every: float | None = CHECK_INTERVAL,
        offload: Offload = trio.to_thread.run_sync,
    ) -> None:
        self.sink = sink
        # None: never check (a sink without check() is never checked either).
        self._check_every = check_every if getattr(sink, "check", None) is not None else None
        self._check_timeout = max(1.0, min(CHECK_INTERVAL, check_every or CHECK_INTERVAL))
        self._check_at = -float("inf")  # trio time of the next check if nothing is delivered
        self.verified_at: float | None = None  # trio time of the last delivery or check passed
        metrics.sink_verified_age.set_function(self.verified_age)
        # Where the spool's blocking file calls run: a worker thread. Tests under
        # MockClock's autojump pass a direct call (a thread looks like idle time there).
        self._offload = offload
        self._sync_mode = sync
        # Seconds from one sync to the next at least (batch: half an AckInterval).
        self._sync_every = sync_interval if sync == "interval" else batch_gap
        self._sync_at = -float("inf")  # trio time before which no sync starts
        self._unsynced: list[bytes] = []  # delivered, not yet durable: not reported
        self._unsynced_since = math.inf  # trio time the oldest of them was written
        self._last_spool_full_log = -float("inf")
        self._spool_full_unreported = 0  # alerts MaxSAFFileSize dropped since the last report
        # Told how many spooled alerts MaxSAFFileSize dropped (a ProbeWatch event).
        self.on_spool_full: Callable[[int], None] | None = None
        self.spool = spool
        self._metrics = metrics
        self._on_delivered = on_delivered
        # Of undelivered keys, those the peer's sink acknowledged (the failover gate's
        # covered_by_peer): not replayed. None: a lone probe, nothing is covered.
        self.covered: Callable[[list[bytes]], set[bytes]] | None = None
        # Of a spool chunk (feed order): the covered keys, and whether all of it may be
        # replayed now (the failover gate's spool_replay). False: this probe is not active
        # and its peer delivers these events itself; only what precedes a covered key
        # (the peer passed it by) goes now, the rest waits. None: all, always.
        self.spool_gate: Callable[[list[bytes]], tuple[set[bytes], bool]] | None = None
        self._spool_reported = False  # the spool's bytes were last reported as > 0
        # Keys of the spool's next chunk the gate answered as covered: settled there, so
        # never delivered, even when this chunk's delivery fails and it is read again.
        self._settled: set[bytes] = set()
        self._backoff = BACKOFF_FIRST
        self._retry_at = -float("inf")  # trio time of the next attempt after a failure
        self._logged_down = False
        self._failing_since: float | None = None
        # Told when delivery starts failing (trio time) or works again (None), with the
        # spool's bytes: the failover machine's sink health (SinkFailover).
        self.on_health: Callable[[float | None, int], None] | None = None
        # Told each time the sink is seen working (trio time): what the heartbeats report
        # as the sink's verified age, so a sink handover goes only to a verified sink.
        self.on_verified: Callable[[float], None] | None = None

    def verified_age(self) -> float:
        """Seconds since a delivery or a check last showed the sink working (NaN: never,
        or asked outside the trio run)."""
        if self.verified_at is None:
            return math.nan
        try:
            return trio.current_time() - self.verified_at
        except RuntimeError:
            return math.nan

    def _health(self, failing_since: float | None) -> None:
        if failing_since == self._failing_since:
            return
        self._failing_since = failing_since
        self._metrics.sink_healthy.set(0 if failing_since is not None else 1)
        if self.on_health is not None:
            spooled = self.spool.backlog_bytes if self.spool is not None else 0
            self.on_health(failing_since, spooled)

    async def run(self, recv: ReceiveEnd[list[Item]]) -> None:
        """Deliver until ``recv`` is closed and drained, then close the sink.

        All of it inside the sink's ``lifetime()`` when it has one: what the sink runs
        besides its calls (the nats sink's asyncio thread) is started by this task and
        stopped before it returns, on every way out (a cancel, an error), so nothing
        the sink started outlives the nursery this task runs in.
        """
        async with lifetime(self.sink):
            await self._run(recv)

    async def _run(self, recv: ReceiveEnd[list[Item]]) -> None:
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
                # The next timer: a spool replay, a sync, a check of an idle sink. Its
                # deadline bounds only the wait for alerts, never a delivery: one cut
                # short by it would drop its batch (not delivered, not spooled, not
                # acked), which lost a batch when a slow sink met a check deadline.
                spooling = self.spool is not None and self.spool.pending
                timer: Callable[[], Awaitable[object]] | None
                if self._unsynced and (not spooling or self._sync_at < self._retry_at):
                    # Keys wait for a sync: a quiet feed (or a spool that holds the
                    # loop) must not hold them past the sync's date.
                    deadline, timer = self._sync_at, self._sync_and_report
                elif spooling:
                    # A deadline, not a delay: alerts arriving meanwhile must not
                    # postpone the replay (a steady feed would starve it forever).
                    deadline, timer = self._retry_at, self._replay
                elif self._check_every is not None:
                    deadline, timer = self._check_at, self._check
                else:
                    deadline, timer = math.inf, None
                items: list[Item] | _Timeout | None = _TIMEOUT
                with trio.move_on_at(deadline):
                    items = await self._next(recv)
                if isinstance(items, _Timeout):
                    assert timer is not None
                    await timer()
                elif items is None:
                    break
                elif spooling:
                    await self._spool(items)
                else:
                    await self._deliver_or_spool(items)
        with trio.move_on_after(CLOSE_GRACE, shield=True):
            await self._sync_and_report()
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
        now = trio.current_time()
        self._metrics.sink_write_seconds.observe(now - start)
        self._metrics.events_forwarded.inc(len(keys))
        self._verified(now)
        if self._logged_down:
            logger.warning("%s: delivering again", self.sink.name)
            self._logged_down = False
        self._backoff = BACKOFF_FIRST
        self._health(None)
        if self._sync_mode == "off":
            self._on_delivered(keys, now)
        else:
            if not self._unsynced:
                self._unsynced_since = now
            self._unsynced.extend(keys)
            if now >= self._sync_at:
                await self._sync_and_report()
        return True

    async def _sync_and_report(self) -> None:
        """Make what was delivered durable, then report its keys (see SinkSync)."""
        if not self._unsynced:
            return
        keys, self._unsynced = self._unsynced, []
        written_at, self._unsynced_since = self._unsynced_since, math.inf
        self._sync_at = trio.current_time() + self._sync_every
        sync = getattr(self.sink, "sync", None)
        if sync is not None:
            try:
                await sync()
            except SinkError as exc:
                # Written but maybe not durable: not acked, so the peer keeps them (and
                # delivers them itself if this probe dies): at least once, never lost.
                self._metrics.sink_errors.inc()
                logger.error("%s; %d alerts written are not acked to the peer", exc, len(keys))
                return
        self._on_delivered(keys, written_at)

    def _verified(self, now: float) -> None:
        self.verified_at = now
        if self.on_verified is not None:
            self.on_verified(now)
        if self._check_every is not None:
            self._check_at = now + self._check_every

    async def _check(self) -> None:
        """Ask the sink whether it would take alerts now (see the module docstring)."""
        assert self._check_every is not None
        start = trio.current_time()
        check = self.sink.check  # type: ignore[attr-defined]  # present: see __init__
        try:
            with trio.fail_after(self._check_timeout):
                await check()
        except (SinkError, trio.TooSlowError) as exc:
            # The next one an interval after this one ended: a check that hangs until
            # its timeout must not be followed by another at once.
            self._check_at = trio.current_time() + self._check_every
            self._metrics.sink_checks.labels(result="failure").inc()
            if self._failing_since is None:
                self._health(start)
            if not self._logged_down:
                timeout = self._check_timeout
                why = exc if isinstance(exc, SinkError) else f"no answer in {timeout:g} s"
                logger.error("%s: check failed: %s", self.sink.name, why)
                self._logged_down = True
            return
        self._metrics.sink_checks.labels(result="success").inc()
        self._verified(trio.current_time())
        if self._logged_down:
            logger.warning("%s: check passed: the sink takes alerts again", self.sink.name)
            self._logged_down = False
        self._health(None)

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
        dropped = await self._offload(self.spool.append, items)
        if dropped:
            self._metrics.events_discarded.labels(reason="spool_full").inc(dropped)
            # Told as a sum: the drops between two reports are in the next one, so the
            # log and ProbeWatch add up to the metric (they said only the last batch's).
            self._spool_full_unreported += dropped
            now = trio.current_time()
            if now - self._last_spool_full_log >= SPOOL_FULL_LOG_INTERVAL:
                self._last_spool_full_log = now
                dropped, self._spool_full_unreported = self._spool_full_unreported, 0
                logger.error(
                    "%s: spool %s full (MaxSAFFileSize %d bytes): dropped the %d oldest "
                    "alerts since the last report (reported every %gs at most)",
                    self.sink.name, self.spool.path, self.spool.max_bytes, dropped,
                    SPOOL_FULL_LOG_INTERVAL,
                )
                if self.on_spool_full is not None:  # as often as the log line
                    self.on_spool_full(dropped)
        self._metrics.spool_bytes.set(self.spool.backlog_bytes)
        self._report_spool()

    async def _deliver_or_spool(self, items: list[Item]) -> None:
        retried = False
        while not await self._deliver(items):
            if self.spool is not None:
                await self._spool(items)
                return
            if not retried:  # held until the sink is back: at their size (issue 9)
                items, retried = exact_copies(items), True
            await trio.sleep_until(self._retry_at)
            items = self._uncovered(items)
            if not items:
                return

    def _uncovered(self, items: list[Item]) -> list[Item]:
        """``items`` less those the peer's sink acknowledged while ours was down: a
        handover, or the peer's flush, delivered them already (issue 21: a sink fault
        must not duplicate). The machine settles the covered ones (counted there)."""
        covered = self._covered_keys(items)
        if not covered:
            return items
        return [item for item in items if item[0] not in covered]

    def _covered_keys(self, items: list[Item]) -> set[bytes]:
        if self.covered is None:
            return set()
        return self.covered([key for key, _ in items])

    def _report_spool(self) -> None:
        """Tell the failover machine when the spool starts or stops holding alerts: it
        keeps the peer's acks for keys it does not hold while there is a spool to filter."""
        assert self.spool is not None
        pending = self.spool.pending
        if pending != self._spool_reported and self.on_health is not None:
            self._spool_reported = pending
            self.on_health(self._failing_since, self.spool.backlog_bytes)

    async def _replay(self) -> bool | None:
        """Deliver spooled records until the spool is empty (True), the sink fails
        (False), or the rest must wait for the active peer (None; see ``spool_gate``)."""
        assert self.spool is not None
        while self.spool.pending:
            items, used = await self._offload(self.spool.peek)
            if not items:
                break
            settled = self._settled
            keys = [key for key, _ in items]
            if self.spool_gate is None:
                covered, free = self._covered_keys(items), True
            else:
                covered, free = self.spool_gate(keys)
            settled.update(covered)
            upto = len(items)
            if not free:  # what precedes a key the peer delivered, it passed by
                upto = max((i + 1 for i, key in enumerate(keys) if key in settled), default=0)
            todo = [item for item in items[:upto] if item[0] not in settled]
            if todo and not await self._deliver(todo):
                return False
            if upto < len(items):
                settled.update(key for key, _ in todo)  # delivered: not again
                await self._wait_for_peer()
                return None
            await self._offload(self.spool.commit, used)
            settled.clear()  # all of them lay in the chunk just committed
            self._metrics.spool_bytes.set(self.spool.backlog_bytes)
        self._report_spool()
        return True

    async def _wait_for_peer(self) -> None:
        """The spool's head waits for the active peer's acks: look again shortly, and
        meanwhile keep the sink's health true (nothing is delivered to show it works)."""
        now = trio.current_time()
        self._retry_at = now + REPLAY_WAIT
        failing = self._failing_since is not None
        if failing and self._check_every is not None and now >= self._check_at:
            await self._check()
