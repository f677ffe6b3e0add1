"""A runner's own timers never cut a delivery short (the nats pair lost one batch).

The runner waits for alerts until its next timer (a check, a sync, a spool replay);
that deadline bounded the whole iteration once, so a slow delivery that ran past it
was cancelled and its batch dropped: not delivered, not spooled, not reported, and
the standby had already dropped its copy when this probe took over from a dead
master. The deadline bounds the wait for alerts only. MockClock.
"""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from probepair.errors import SinkError
from probepair.events import Item, key_of
from probepair.metrics import Metrics
from probepair.sinks.runner import SinkRunner, call_here
from probepair.sinks.spool import Spool

CHECK_EVERY = 1.0  # seconds: a runner that checks its idle sink often


class SlowSink:
    """Each delivery takes ``delay`` seconds; down (refusing) while ``down`` is set."""

    name = "slow"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.down = False
        self.stored: list[bytes] = []

    async def open(self) -> None:
        await trio.lowlevel.checkpoint()

    async def check(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise SinkError(self.name, "down")

    async def deliver(self, items: list[Item]) -> list[bytes]:
        await trio.sleep(self.delay)
        if self.down:
            raise SinkError(self.name, "down")
        self.stored.extend(k for k, _ in items)
        return [k for k, _ in items]

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def _batch(start: int, n: int) -> list[Item]:
    return [(key_of(b"ev %d" % i), b'{"n":%d}' % i) for i in range(start, start + n)]


async def _feed(runner: SinkRunner, batches: list[list[Item]], gap: float) -> None:
    send, recv = trio.open_memory_channel[list[Item]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        async with send:
            for batch in batches:
                await trio.sleep(gap)
                await send.send(batch)


async def test_a_delivery_slower_than_the_check_interval_is_not_dropped(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sink = SlowSink(delay=3 * CHECK_EVERY)
    acked: list[bytes] = []
    runner = SinkRunner(sink, metrics, lambda keys, at: acked.extend(keys), check_every=CHECK_EVERY, sync="off")
    batches = [_batch(20 * i, 20) for i in range(5)]
    await _feed(runner, batches, gap=0.8 * CHECK_EVERY)
    sent = [k for batch in batches for k, _ in batch]
    assert sink.stored == sent
    assert acked == sent


async def test_a_batch_held_for_a_dead_sink_outlives_the_check_deadline(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    # No spool: the batch is retried until the sink is back, however long that takes.
    sink = SlowSink(delay=0.0)
    acked: list[bytes] = []
    runner = SinkRunner(sink, metrics, lambda keys, at: acked.extend(keys), check_every=CHECK_EVERY, sync="off")
    first, second = _batch(0, 20), _batch(20, 20)
    send, recv = trio.open_memory_channel[list[Item]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        async with send:
            await send.send(first)
            await trio.sleep(0.5)
            sink.down = True
            await send.send(second)
            await trio.sleep(10 * CHECK_EVERY)
            sink.down = False
    assert sink.stored == [k for k, _ in first + second]
    assert acked == sink.stored


async def test_a_spooled_batch_outlives_a_slow_failing_delivery(
    metrics: Metrics, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # The delivery fails after longer than the check interval: the batch is spooled,
    # replayed when the sink is back, never dropped.
    sink = SlowSink(delay=2 * CHECK_EVERY)
    spool = Spool(str(tmp_path / "spool.saf"))
    acked: list[bytes] = []
    runner = SinkRunner(
        sink, metrics, lambda keys, at: acked.extend(keys), spool, check_every=CHECK_EVERY, sync="off", offload=call_here
    )
    batches = [_batch(20 * i, 20) for i in range(4)]
    send, recv = trio.open_memory_channel[list[Item]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        async with send:
            await send.send(batches[0])
            await trio.sleep(2.5 * CHECK_EVERY)
            sink.down = True
            for batch in batches[1:]:
                await send.send(batch)
                await trio.sleep(0.3 * CHECK_EVERY)
            await trio.sleep(5 * CHECK_EVERY)
            sink.down = False
            await trio.sleep(10 * CHECK_EVERY)
    sent = [k for batch in batches for k, _ in batch]
    assert sorted(sink.stored) == sorted(sent)
    assert sorted(acked) == sorted(sent)
