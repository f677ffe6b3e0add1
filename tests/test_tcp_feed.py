"""The tcp feed's bounds (issue 19): FeedMaxConnections, FeedIdleTimeout, descriptors;
its framing per connection (issue 23: RFC 6587 octet counting or newlines).

Connection logic runs on in-memory streams under ``autojump_clock`` (exact times, no
sockets); one test per promise that needs a kernel (the reset a refused client sees).
"""

from __future__ import annotations

import errno
import itertools
import re
import resource
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from trio.testing import MockClock

from probepair.config import props
from probepair.errors import ConfigError
from probepair.events import Batch, Event, KeyMaker, key_of
from probepair.feeds import lines, make_feed
from probepair.feeds.tcp import FD_RESERVE, TcpFeed, descriptor_limit
from probepair.metrics import Metrics

Clock = Callable[[], float]
ROOT = Path(__file__).resolve().parent.parent
OPEN = "probepair_feed_connections"
REFUSED = "probepair_feed_connections_refused_total"
IDLE_CLOSED = "probepair_feed_connections_idle_closed_total"


def make_tcp(metrics: Metrics, wall_clock: Clock, **values: object) -> TcpFeed:
    p = props.load([("test", {"FeedType": "tcp", "FeedAddress": "127.0.0.1",
                              "FeedPort": 0, **values})])
    feed = make_feed(p, wall_clock, metrics)
    assert isinstance(feed, TcpFeed)
    return feed


async def serve_and_close(feed: TcpFeed, send: trio.MemorySendChannel[Batch],
                          stream: trio.abc.Stream) -> None:
    """What trio.serve_listeners does with each accepted stream."""
    try:
        await feed.serve(send, stream)
    finally:
        await trio.aclose_forcefully(stream)


def connect(nursery: trio.Nursery, feed: TcpFeed,
            send: trio.MemorySendChannel[Batch]) -> trio.abc.Stream:
    client, server = trio.testing.memory_stream_pair()
    nursery.start_soon(serve_and_close, feed, send, server)
    return client


async def receive_raws(recv: trio.MemoryReceiveChannel[Batch]) -> list[bytes]:
    return [ev.raw for ev in await recv.receive()]


async def test_past_max_connections_a_client_is_closed_at_once_and_counted(
        metrics: Metrics, wall_clock: Clock, autojump_clock: MockClock) -> None:
    feed = make_tcp(metrics, wall_clock, FeedMaxConnections=2)
    assert metrics.count("probepair_feed_connections_limit") == 2
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        a, b = connect(nursery, feed, send), connect(nursery, feed, send)
        await trio.testing.wait_all_tasks_blocked()
        assert metrics.count(OPEN) == 2
        refused = connect(nursery, feed, send)
        assert await refused.receive_some() == b""  # closed without a byte read
        assert trio.current_time() == 0.0
        assert (metrics.count(REFUSED), metrics.count(OPEN)) == (1, 2)
        # The clients being served go on; the refused one took no slot.
        await b.send_all(b"from b\n")
        assert await receive_raws(recv) == [b"from b"]
        # A slot freed by a client that left serves the next one.
        await a.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert metrics.count(OPEN) == 1
        c = connect(nursery, feed, send)
        await c.send_all(b"from c\n")
        assert await receive_raws(recv) == [b"from c"]
        assert (metrics.count(REFUSED), metrics.count(OPEN)) == (1, 2)
        nursery.cancel_scope.cancel()
    assert metrics.count(OPEN) == 0


async def test_an_idle_client_is_closed_after_the_timeout_with_its_partial_line_delivered(
        metrics: Metrics, wall_clock: Clock, autojump_clock: MockClock) -> None:
    feed = make_tcp(metrics, wall_clock, FeedIdleTimeout=300)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        client = connect(nursery, feed, send)
        await client.send_all(b"first\npart")
        assert await receive_raws(recv) == [b"first"]
        await trio.sleep(299)
        await client.send_all(b"ial")  # data re-arms the timer: idle from t=299 on
        assert await client.receive_some() == b""  # the feed closed the connection ...
        assert trio.current_time() == 299 + 300  # ... FeedIdleTimeout after the last data
        # As at end of stream, the unterminated last line is a record.
        events: list[Event] = await recv.receive()
        assert [ev.raw for ev in events] == [b"partial"]
        await trio.testing.wait_all_tasks_blocked()
        assert (metrics.count(IDLE_CLOSED), metrics.count(OPEN)) == (1, 0)
        nursery.cancel_scope.cancel()


async def test_idle_timeout_zero_keeps_a_silent_client(
        metrics: Metrics, wall_clock: Clock, autojump_clock: MockClock) -> None:
    feed = make_tcp(metrics, wall_clock, FeedIdleTimeout=0)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        client = connect(nursery, feed, send)
        await trio.sleep(10 * 86400)
        await client.send_all(b"still here\n")
        assert await receive_raws(recv) == [b"still here"]
        assert (metrics.count(IDLE_CLOSED), metrics.count(OPEN)) == (0, 1)
        nursery.cancel_scope.cancel()


async def test_a_client_waiting_on_back_pressure_is_not_idle(
        metrics: Metrics, wall_clock: Clock, autojump_clock: MockClock) -> None:
    feed = make_tcp(metrics, wall_clock, FeedIdleTimeout=5)
    send, recv = trio.open_memory_channel[Batch](0)  # nobody takes batches for a while
    async with trio.open_nursery() as nursery:
        client = connect(nursery, feed, send)
        await client.send_all(b"one\n")
        await trio.sleep(60)  # the feed waits to hand "one" on, far past FeedIdleTimeout
        assert await receive_raws(recv) == [b"one"]
        assert (metrics.count(IDLE_CLOSED), metrics.count(OPEN)) == (0, 1)
        assert await client.receive_some() == b""
        assert trio.current_time() == 60 + 5  # idle from the hand-over on
        await trio.testing.wait_all_tasks_blocked()
        assert (metrics.count(IDLE_CLOSED), metrics.count(OPEN)) == (1, 0)
        nursery.cancel_scope.cancel()


async def test_a_stopping_feed_delivers_the_partial_line_it_read(
        metrics: Metrics, wall_clock: Clock, autojump_clock: MockClock) -> None:
    feed = make_tcp(metrics, wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        client = connect(nursery, feed, send)
        await client.send_all(b"whole\nhalf a li")
        assert await receive_raws(recv) == [b"whole"]
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel(reason="stop")
    assert [ev.raw for ev in recv.receive_nowait()] == [b"half a li"]


async def test_a_refused_client_on_a_real_socket_sees_a_reset(
        metrics: Metrics, wall_clock: Clock) -> None:
    feed = make_tcp(metrics, wall_clock, FeedMaxConnections=1)
    send, recv = trio.open_memory_channel[Batch](16)
    with trio.fail_after(10):  # real sockets, real clock
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(feed.run, send)
            first = await trio.open_tcp_stream(host, port)
            await first.send_all(b"served\n")
            assert await receive_raws(recv) == [b"served"]  # accepted and read
            second = await trio.open_tcp_stream(host, port)
            with pytest.raises(trio.BrokenResourceError):  # ECONNRESET: SO_LINGER 0
                await second.receive_some()
            await second.aclose()
            assert metrics.count(REFUSED) == 1
            await first.send_all(b"still served\n")
            assert await receive_raws(recv) == [b"still served"]
            await first.aclose()
            nursery.cancel_scope.cancel()


async def test_accept_failing_with_emfile_neither_spins_nor_ends_the_listener(
        autojump_clock: MockClock) -> None:
    """What the feed relies on in trio.serve_listeners: EMFILE sleeps 100 ms and retries."""

    class Listener(trio.abc.Listener[trio.abc.Stream]):
        def __init__(self) -> None:
            self.calls: list[float] = []

        async def accept(self) -> trio.abc.Stream:
            await trio.lowlevel.checkpoint()
            self.calls.append(trio.current_time())
            if len(self.calls) <= 3:
                raise OSError(errno.EMFILE, "Too many open files")
            return trio.testing.memory_stream_pair()[0]

        async def aclose(self) -> None:
            await trio.lowlevel.checkpoint()

    served = trio.Event()

    async def handler(stream: trio.abc.Stream) -> None:
        served.set()

    listener = Listener()
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, [listener])
        await served.wait()
        nursery.cancel_scope.cancel()
    assert listener.calls[:4] == pytest.approx([0.0, 0.1, 0.2, 0.3])


# -- framing (issue 23): RFC 6587 octet counting beside newline framing ------------------

REJECTED = "probepair_feed_frames_rejected_total"
DETECTED = "probepair_feed_framing_detected_total"


async def test_an_octet_counted_client_sends_multiline_messages_as_one_event_each(
        metrics: Metrics, wall_clock: Clock, autojump_clock: MockClock) -> None:
    feed = make_tcp(metrics, wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    trace = b"<11>1 2024-05-01T10:00:00Z app1 java 7 - - boom\n\tat A.b(A.java:1)"
    async with trio.open_nursery() as nursery:
        counted, lined = connect(nursery, feed, send), connect(nursery, feed, send)
        frames = b"%d %s" % (len(trace), trace) + b"12 <13>same msg"
        for i in range(0, len(frames), 7):  # any segmentation
            await counted.send_all(frames[i:i + 7])
        await lined.send_all(b"<13>same msg\n")
        got = []
        while len(got) < 3:
            got += await recv.receive()
        # Same message, same key, whichever framing each connection used.
        assert sorted((ev.raw, ev.key) for ev in got) == sorted([
            (trace, key_of(trace)), (b"<13>same msg", key_of(b"<13>same msg")),
            (b"<13>same msg", key_of(b"<13>same msg", 1))])
        assert metrics.count(DETECTED, framing="octet-counted") == 1
        assert metrics.count(DETECTED, framing="newline") == 1
        nursery.cancel_scope.cancel()


async def test_a_framing_error_closes_that_connection_only(
        metrics: Metrics, wall_clock: Clock, autojump_clock: MockClock) -> None:
    feed = make_tcp(metrics, wall_clock)
    send, recv = trio.open_memory_channel[Batch](16)
    async with trio.open_nursery() as nursery:
        bad, good = connect(nursery, feed, send), connect(nursery, feed, send)
        await good.send_all(b"4 <1>a")
        assert await receive_raws(recv) == [b"<1>a"]
        # A MSG-LEN past the 1 MiB limit: the frames before it go on, then the close.
        await bad.send_all(b"4 <1>b%d " % (lines.MAX_LINE + 1))
        assert await receive_raws(recv) == [b"<1>b"]
        assert await bad.receive_some() == b""
        await trio.testing.wait_all_tasks_blocked()
        assert (metrics.count(REJECTED, reason="too_big"), metrics.count(OPEN)) == (1, 1)
        await good.send_all(b"4 <1>c")
        assert await receive_raws(recv) == [b"<1>c"]
        # A client that leaves inside a frame: the part is no message (rsyslog drops it too).
        cut = connect(nursery, feed, send)
        await cut.send_all(b"4 <1>d9 <1>e")
        assert await receive_raws(recv) == [b"<1>d"]
        await cut.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert metrics.count(REJECTED, reason="truncated") == 1
        assert metrics.count(REJECTED, reason="malformed") == 0
        nursery.cancel_scope.cancel()


def test_descriptor_limit() -> None:
    assert descriptor_limit(1024, 1024, 256) is None  # systemd's default soft limit will do
    assert descriptor_limit(1024, 524288, 1000) == 1000 + FD_RESERVE  # raised, not to hard
    assert descriptor_limit(resource.RLIM_INFINITY, resource.RLIM_INFINITY, 10**6) is None
    assert descriptor_limit(1024, resource.RLIM_INFINITY, 10**6) == 10**6 + FD_RESERVE
    with pytest.raises(ConfigError, match=re.escape(
            "RLIMIT_NOFILE 1024: FeedMaxConnections: expected at most 768 (the open-files "
            "limit less 256 descriptors kept for the probe itself), got 1000: lower it, or "
            "raise the limit (systemd: LimitNOFILE=)") + "$") as info:
        descriptor_limit(1024, 1024, 1000)
    assert (info.value.source, info.value.key) == ("RLIMIT_NOFILE 1024", "FeedMaxConnections")


def test_the_default_and_the_shipped_unit_fit_their_descriptor_limits() -> None:
    default = props.Props().FeedMaxConnections
    assert descriptor_limit(1024, 1024, default) is None  # systemd without LimitNOFILE=
    unit = (ROOT / "conf" / "systemd" / "probepair@.service").read_text()
    m = re.search(r"^LimitNOFILE=(\d+)$", unit, re.M)
    assert m is not None, "the shipped unit sets LimitNOFILE="
    limit = int(m[1])
    assert descriptor_limit(limit, limit, 16000) is None  # as its comment says


def reference_lines(data: bytes, max_line: int) -> list[bytes]:
    """The records of a whole stream: each line cut into ``max_line`` pieces, CRs at the
    end of each stripped, empty ones dropped; an unterminated last piece only if it is
    not all whitespace."""
    *lines, last = data.split(b"\n")

    def cut(line: bytes) -> list[bytes]:
        return [line[i:i + max_line] for i in range(0, len(line), max_line)]

    out = [piece for line in lines for piece in cut(line)]
    tail = cut(last)
    if tail and len(tail[-1]) < max_line and not tail[-1].strip():
        tail.pop()
    return [stripped for piece in out + tail if (stripped := piece.rstrip(b"\r"))]


@given(data=st.binary(max_size=300).map(lambda b: bytes(b"ab\r\n "[x % 5] for x in b)),
       cuts=st.lists(st.integers(0, 300), max_size=30), max_line=st.sampled_from([4, 16, 1000]))
def test_line_splitter_cuts_long_lines_alike_at_every_split(
        data: bytes, cuts: list[int], max_line: int) -> None:
    """Two probes read the same stream in other segments: they must cut it alike."""
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lines, "MAX_LINE", max_line)
        splitter = lines.LineSplitter(KeyMaker(), lambda: 0.0, lambda: 0.0)
        got = [ev.raw for chunk in chunks for ev in splitter.feed(chunk)]
        got += [ev.raw for ev in splitter.finish()]
    assert got == reference_lines(data, max_line)
