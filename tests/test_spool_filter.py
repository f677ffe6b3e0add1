"""No replay of what the peer delivered (issue 21 item 3).

While this probe's sink is down, a handover or the peer's flush may deliver what this
probe spooled (or holds for a retry). The peer's acks say so; the runner asks the
failover gate (``covered``) before each replayed chunk and each retry and delivers only
the rest. Property: no spooled alert the peer acked is replayed, and none it did not ack
is dropped. MockClock; the spool's file calls run inline (``offload``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probepair.errors import SinkError
from probepair.events import Item, key_of
from probepair.metrics import Metrics
from probepair.sinks.runner import SinkRunner
from probepair.sinks.spool import Spool
from tests.test_sink_recovery import OutageSink


async def _inline(fn: Any, *args: Any) -> Any:
    await trio.lowlevel.checkpoint()
    return fn(*args)


class PeerAcks:
    """The gate's view of the peer's acks: keys its sink has, each answered once."""

    def __init__(self) -> None:
        self.keys: set[bytes] = set()
        self.answered: list[bytes] = []

    def covered(self, keys: list[bytes]) -> set[bytes]:
        found = self.keys.intersection(keys)
        self.keys -= found
        self.answered.extend(found)
        return found


class RecordingOutageSink(OutageSink):
    """Also records the keys of every failed delivery (spooled or held for a retry)."""

    def __init__(self, down: float, up: float) -> None:
        super().__init__(down, up)
        self.failed: set[bytes] = set()

    async def deliver(self, items: list[Item]) -> list[bytes]:
        try:
            return await super().deliver(items)
        except SinkError:
            self.failed.update(key for key, _ in items)
            raise


def _alert(n: int) -> Item:
    return (key_of(b"%d" % n), b'{"n":%d}' % n)


async def _run(
    sink: OutageSink, spool: Spool | None, peer: PeerAcks, count: int, acked: set[int],
    ack_at: float,
) -> list[Item]:
    """Send alert n at n/10 s (later under back pressure); at ``ack_at`` the peer acks
    those in ``acked``."""
    metrics = Metrics()
    delivered: list[bytes] = []
    runner = SinkRunner(sink, metrics, lambda keys, at: delivered.extend(keys), spool, offload=_inline)
    runner.covered = peer.covered
    send, recv = trio.open_memory_channel[list[Item]](0)
    sent: list[Item] = []

    async def ack() -> None:
        await trio.sleep_until(ack_at)
        peer.keys |= {_alert(n)[0] for n in acked}

    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        nursery.start_soon(ack)
        async with send:
            for n in range(count):
                await trio.sleep_until(n / 10)
                sent.append(_alert(n))
                await send.send([sent[-1]])
            await trio.sleep_until(max(sink.up, ack_at) + 2.0)
    assert set(delivered) <= {k for k, _ in sent}
    return sent


async def test_a_spool_replays_only_what_the_peer_did_not_deliver(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sink = OutageSink(down=1.0, up=9.0)  # alerts 10..89 are spooled
    spool = Spool(str(tmp_path / "s.saf"))
    peer = PeerAcks()
    acked = set(range(10, 60))  # the peer took over at 6 s and flushed 10..59
    try:
        sent = await _run(sink, spool, peer, 100, acked, ack_at=6.0)
    finally:
        spool.close()
    got = [key for _, items in sink.delivered for key, _ in items]
    want = [key for n, (key, _) in enumerate(sent) if n not in acked]
    assert got == want  # in order, once, none the peer delivered
    assert sorted(peer.answered) == sorted(_alert(n)[0] for n in acked)


async def test_held_alerts_of_a_probe_without_a_spool_are_filtered_before_each_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = OutageSink(down=1.0, up=5.0)
    peer = PeerAcks()
    sent = await _run(sink, None, peer, 30, {10}, ack_at=2.0)
    got = [key for _, items in sink.delivered for key, _ in items]
    # Alert 10 is the batch held for a retry when the sink failed; the channel held the
    # rest back meanwhile (back pressure), so they arrive after it and are delivered.
    assert _alert(10)[0] not in got
    assert got == [key for n, (key, _) in enumerate(sent) if n != 10]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    down=st.floats(0.5, 3.0),
    outage=st.floats(0.5, 6.0),
    acked=st.sets(st.integers(0, 59)),
    ack_at=st.floats(0.0, 8.0),
)
def test_the_spool_filter_never_replays_an_acked_alert_nor_drops_an_unacked_one(
    tmp_path: Path, down: float, outage: float, acked: set[int], ack_at: float
) -> None:
    sink = RecordingOutageSink(down=down, up=down + outage)
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}.saf"
    spool = Spool(str(path))
    peer = PeerAcks()
    try:
        sent = trio.run(
            _run, sink, spool, peer, 60, set(acked), ack_at,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
    finally:
        spool.close()
    got = [key for _, items in sink.delivered for key, _ in items]
    answered = set(peer.answered)
    acked_keys = {_alert(n)[0] for n in acked}
    assert answered <= acked_keys
    assert not answered & set(got)  # an alert the peer's sink had is never replayed
    for t, items in sink.delivered:  # ... whichever way: spooled, or held for a retry
        for key, _ in items:
            assert not (key in acked_keys and key in sink.failed and t > ack_at), (t, ack_at)
    # ... and every other alert is delivered, once, in order.
    assert got == [key for key, _ in sent if key not in answered]
