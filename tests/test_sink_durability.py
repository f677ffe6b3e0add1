"""An ack means durable (SinkSync) and the spool is bounded (MaxSAFFileSize)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from probepair.config import props
from probepair.errors import SinkError
from probepair.events import Item, key_of
from probepair.metrics import Metrics
from probepair.sinks.file import FileSink
from probepair.sinks.runner import SPOOL_FULL_LOG_INTERVAL, SinkRunner, call_here
from probepair.sinks.spool import Spool


def item(i: int, size: int = 30) -> Item:
    payload = (b'{"n":%d}' % i).ljust(size, b" ")
    return key_of(payload), payload


class RecordingSink:
    """Delivers everything; records ``deliver`` and ``sync`` calls in order."""

    name = "recording"

    def __init__(self, log: list[str], fail_sync: bool = False) -> None:
        self.log = log
        self.fail_sync = fail_sync

    async def open(self) -> None:
        pass

    async def deliver(self, items: list[Item]) -> list[bytes]:
        await trio.lowlevel.checkpoint()
        self.log.append(f"deliver {len(items)}")
        return [k for k, _ in items]

    async def sync(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.fail_sync:
            raise SinkError(self.name, "cannot fsync: I/O error")
        self.log.append("sync")

    async def aclose(self) -> None:
        pass


async def _run(mode: str, batches: list[list[Item]], gap: float, log: list[str],
               fail_sync: bool = False, *, batch_gap: float = 0.05, linger: float = 0.0,
               reported: list[tuple[int, float, float]] | None = None) -> Metrics:
    """Batches ``gap`` apart into a runner over a RecordingSink, then ``linger`` before
    the close; ``reported``: (keys, written_at, reported at) of each report, from the start."""
    metrics = Metrics()
    start = trio.current_time()

    def delivered(keys: list[bytes], written_at: float) -> None:
        log.append(f"ack {len(keys)}")
        if reported is not None:
            reported.append((len(keys), written_at - start, trio.current_time() - start))

    runner = SinkRunner(RecordingSink(log, fail_sync), metrics, delivered, None,
                        sync=mode, sync_interval=1.0, batch_gap=batch_gap)
    send, recv = trio.open_memory_channel[list[Item]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        async with send:
            for batch in batches:
                await send.send(batch)
                await trio.sleep(gap)
            await trio.sleep(linger)
    return metrics


BATCHES = [[item(10 * b + i) for i in range(3)] for b in range(4)]


async def test_batch_syncs_before_every_ack(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    await _run("batch", BATCHES, 0.1, log)
    assert log == ["deliver 3", "sync", "ack 3"] * 4


async def test_batch_shares_one_sync_among_the_batches_of_half_an_ack_interval(
        autojump_clock: trio.testing.MockClock) -> None:
    # Batches 10 ms apart (a trickle at everyday rates): the first is synced at once,
    # the next three share the sync 50 ms (AckInterval / 2) after it, and are reported
    # with the time the oldest of them was written, which the machine dates its ack by.
    log: list[str] = []
    reported: list[tuple[int, float, float]] = []
    # Open 0.1 s past the last batch: the sync is the timer's, not the close's.
    await _run("batch", BATCHES, 0.01, log, batch_gap=0.05, linger=0.1, reported=reported)
    assert log == ["deliver 3", "sync", "ack 3", "deliver 3", "deliver 3", "deliver 3",
                   "sync", "ack 9"]
    assert [n for n, _, _ in reported] == [3, 9]
    assert reported[1][1] == pytest.approx(0.01)  # the second batch's write
    assert reported[1][2] == pytest.approx(0.05)  # one sync gap after the first sync


async def test_off_acks_at_write(autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    await _run("off", BATCHES, 0.1, log)
    assert log == ["deliver 3", "ack 3"] * 4


async def test_interval_acks_what_one_sync_covers(autojump_clock: trio.testing.MockClock) -> None:
    # Batches at 0.0, 0.4, 0.8, 1.2: the first is synced at once (nothing synced yet),
    # the next three wait for the sync one SinkSyncInterval later, even while idle.
    log: list[str] = []
    await _run("interval", BATCHES, 0.4, log)
    assert log == ["deliver 3", "sync", "ack 3", "deliver 3", "deliver 3", "sync", "ack 6",
                   "deliver 3", "sync", "ack 3"]


async def test_interval_syncs_a_quiet_feed_within_the_interval(
        autojump_clock: trio.testing.MockClock) -> None:
    log: list[str] = []
    start = trio.current_time()
    await _run("interval", BATCHES[:2], 5.0, log)
    assert log == ["deliver 3", "sync", "ack 3", "deliver 3", "sync", "ack 3"]
    assert trio.current_time() - start == pytest.approx(10.0)


async def test_a_failed_sync_acks_nothing(autojump_clock: trio.testing.MockClock) -> None:
    # Written but perhaps not on disk: the peer keeps the events (at least once).
    log: list[str] = []
    metrics = await _run("batch", BATCHES[:2], 0.1, log, fail_sync=True)
    assert log == ["deliver 3", "deliver 3"]
    assert metrics.count("probepair_sink_errors_total") == 2


async def test_the_file_sink_fsyncs_before_the_ack(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = FileSink(props.load([("t", {"SinkFile": str(path)})]))
    calls: list[str] = []
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: bytes | memoryview) -> int:
        if fd == getattr(sink, "_fd", None):
            calls.append("write")
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        if fd == getattr(sink, "_fd", None):
            calls.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    runner = SinkRunner(sink, Metrics(), lambda keys, at: calls.append(f"ack {len(keys)}"), None,
                        sync="batch")
    send, recv = trio.open_memory_channel[list[Item]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        async with send:
            await send.send([item(i) for i in range(5)])
            await trio.sleep(0.05)  # real clock: the fsync runs on a worker thread
    assert calls[:3] == ["write", "fsync", "ack 5"]
    assert len(path.read_bytes().splitlines()) == 5


# --- MaxSAFFileSize ------------------------------------------------------------------


def _drain(spool: Spool) -> list[Item]:
    out: list[Item] = []
    while spool.pending:
        items, used = spool.peek()
        out.extend(items)
        spool.commit(used)
    return out


def test_a_full_spool_drops_the_oldest_whole_records(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s.saf"), max_bytes=1000)
    try:
        record = 12 + 30  # head + payload
        kept_at_most = 1000 // record
        dropped = sum(spool.append([item(i)]) for i in range(100))
        assert dropped == 100 - kept_at_most
        assert spool.backlog_bytes <= 1000
        assert _drain(spool) == [item(i) for i in range(100 - kept_at_most, 100)]
    finally:
        spool.close()


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=40),
       cap=st.integers(200, 3000), reopen_at=st.integers(0, 40))
def test_the_spool_keeps_the_newest_records_in_order_and_counts_the_rest(
        tmp_path_factory: pytest.TempPathFactory, sizes: list[int], cap: int,
        reopen_at: int) -> None:
    path = str(tmp_path_factory.mktemp("spool") / "s.saf")
    spool = Spool(path, max_bytes=cap)
    sent: list[Item] = []
    dropped = 0
    try:
        for n, size in enumerate(sizes):
            batch = [item(len(sent) + i) for i in range(size)]
            sent.extend(batch)
            dropped += spool.append(batch)
            assert spool.backlog_bytes <= max(cap, size * 42)
            assert os.path.getsize(path) < 2 * cap + size * 42  # compacted
            if n == reopen_at:  # a restart in between: the position survives
                spool.close()
                spool = Spool(path, max_bytes=cap)
        kept = _drain(spool)
    finally:
        spool.close()
    assert kept == sent[dropped:]  # the newest, in order; every other one counted


class DownSink:
    """A sink that is down: every delivery fails, so the runner spools."""

    name = "down"

    async def open(self) -> None:
        pass

    async def deliver(self, items: list[Item]) -> list[bytes]:
        await trio.lowlevel.checkpoint()
        raise SinkError(self.name, "cannot connect: connection refused")

    async def aclose(self) -> None:
        pass


async def test_a_full_spool_counts_every_drop_and_tells_probewatch(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    # Room for 10 records of 12 + 30 bytes. Batches of 6, 8, 5, 3, 2 alerts: the 8 drop
    # the 4 oldest, the 5 drop 5, the 3 (under SPOOL_FULL_LOG_INTERVAL later) drop 3, and
    # the 2 (past it) drop 2: all 14 counted, ProbeWatch told as often as the log line,
    # each time of every drop since the last (the 3 and the 2 together).
    record = 12 + 30
    spool = Spool(str(tmp_path / "s.saf"), max_bytes=10 * record)
    metrics = Metrics()
    told: list[int] = []
    runner = SinkRunner(DownSink(), metrics, lambda keys, at: None, spool, offload=call_here)
    runner.on_spool_full = told.append
    send, recv = trio.open_memory_channel[list[Item]](0)
    n = 0
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.run, recv)
            async with send:
                for size, gap in ((6, SPOOL_FULL_LOG_INTERVAL + 1),
                                  (8, SPOOL_FULL_LOG_INTERVAL + 1), (5, 1.0),
                                  (3, SPOOL_FULL_LOG_INTERVAL), (2, 0.0)):
                    await send.send([item(n + i) for i in range(size)])
                    n += size
                    await trio.sleep(gap)
        assert metrics.count("probepair_events_discarded_total", reason="spool_full") == 14
        assert told == [4, 5, 5]
        assert spool.backlog_bytes == 10 * record
        assert _drain(spool) == [item(i) for i in range(n - 10, n)]  # the newest kept
    finally:
        spool.close()
