"""Sinks (file, sqlite, tcp, http) and the SinkRunner with store-and-forward."""

from __future__ import annotations

import re
import sqlite3
from functools import partial
from hashlib import blake2b
from pathlib import Path

import h11
import httpx
import orjson
import pytest
import trio
import trio.testing

from probepair.errors import SinkError
from probepair.events import Item, key_of
from probepair.metrics import Metrics
from probepair.sinks import make_sink
from probepair.sinks.file import FileSink
from probepair.sinks.http import HttpSink
from probepair.sinks.runner import SinkRunner, call_here
from probepair.sinks.spool import Spool
from probepair.sinks.sqlite import SqliteSink
from probepair.sinks.tcp import TcpSink
from tests.sinkcases import (
    REPEATED,
    REPEATED_ROW,
    alert,
    deliver_repeated_keys,
    deliver_two_identifiers,
    make,
)

# --- file ----------------------------------------------------------------------------


async def test_file_sink_writes_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = make_sink(make(SinkType="file", SinkFile=str(path)))
    assert isinstance(sink, FileSink)
    await sink.open()
    try:
        items = [alert(1), alert(2)]
        assert await sink.deliver(items) == [items[0][0], items[1][0]]
        assert await sink.deliver([]) == []
        assert await sink.deliver([alert(3)]) == [alert(3)[0]]
    finally:
        await sink.aclose()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # every line is terminated, no blank lines
    assert [orjson.loads(line) for line in lines[:-1]] == [
        {"Node": "web1", "Summary": f"event {n}", "Severity": 4,
         "EventKey": key_of(b"event %d" % n).hex()}
        for n in (1, 2, 3)
    ]


async def test_file_sink_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    path.write_bytes(b'{"old": 1}\n')
    sink = FileSink(make(SinkFile=str(path)))
    try:
        await sink.deliver([alert(1)])  # opens on first use
    finally:
        await sink.aclose()
    assert path.read_bytes().count(b"\n") == 2


async def test_file_sink_cannot_open(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "alerts.jsonl"
    sink = FileSink(make(SinkFile=str(path)))
    with pytest.raises(SinkError, match=rf"^sink file:{re.escape(str(path))}: cannot open: "
                                        r"No such file or directory$"):
        await sink.open()
    await sink.aclose()


# --- sqlite --------------------------------------------------------------------------


def rows(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT Identifier, Node, Summary, Severity, Tally, FirstOccurrence, LastOccurrence,"
            " EventKey FROM alerts_status ORDER BY Serial").fetchall()
    finally:
        db.close()


async def test_sqlite_sink_deduplicates_on_identifier(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    sink = make_sink(make(SinkType="sqlite", SinkDatabase=str(path)))
    assert isinstance(sink, SqliteSink)
    try:
        want = await deliver_two_identifiers(sink)
    finally:
        await sink.aclose()
    assert rows(path) == [want["web1:disk"], want["web1:cpu"]]


async def test_sqlite_sink_ignores_a_repeated_event_key(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    sink = SqliteSink(make(SinkDatabase=str(path)))
    try:
        await deliver_repeated_keys(sink)
    finally:
        await sink.aclose()
    assert rows(path) == [REPEATED_ROW]
    # reopening the database keeps the delivered keys
    sink = SqliteSink(make(SinkDatabase=str(path)))
    try:
        await sink.deliver([REPEATED[0]])
    finally:
        await sink.aclose()
    assert rows(path)[0][4] == 2


async def test_sqlite_sink_without_identifier_uses_the_event_key(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    sink = SqliteSink(make(SinkDatabase=str(path)))
    a = alert(1, FirstOccurrence=100.0, LastOccurrence=100.0)
    try:
        await sink.deliver([a])
    finally:
        await sink.aclose()
    assert rows(path) == [(a[0].hex(), "web1", "event 1", 4, 1, 100.0, 100.0, a[0].hex())]


def test_sqlite_sink_needs_a_database() -> None:
    with pytest.raises(SinkError, match=r"^sink sqlite: SinkType 'sqlite' needs SinkDatabase$"):
        SqliteSink(make())


# --- tcp -----------------------------------------------------------------------------


class LineServer:
    """A TCP server on loopback collecting lines, that can go away and come back."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.port = 0
        self.scope: trio.CancelScope | None = None

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self.scope:
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            self.port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._handle, listeners)
                task_status.started(self.port)

    async def _handle(self, stream: trio.SocketStream) -> None:
        buf = b""
        async with stream:
            while data := await stream.receive_some(65536):
                buf += data
                *lines, buf = buf.split(b"\n")
                self.lines.extend(lines)

    async def wait_lines(self, n: int) -> None:
        with trio.fail_after(5):
            while len(self.lines) < n:
                await trio.sleep(0.001)


async def test_tcp_sink_delivers_reconnects_after_the_server_went_away() -> None:
    server = LineServer()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        sink = make_sink(make(SinkType="tcp", SinkAddress=f"127.0.0.1:{port}"))
        assert isinstance(sink, TcpSink)
        try:
            await sink.open()
            assert await sink.deliver([alert(1), alert(2)]) == [alert(1)[0], alert(2)[0]]
            await server.wait_lines(2)
            assert server.lines == [alert(1)[1], alert(2)[1]]

            assert server.scope is not None
            server.scope.cancel()  # the server goes away (listener and connection)
            lost = rf"^sink tcp:127\.0\.0\.1:{port}: connection lost: .+$"
            with trio.fail_after(5), pytest.raises(SinkError, match=lost):
                while True:  # the kernel may accept a write or two before the reset
                    await sink.deliver([alert(3)])
                    await trio.sleep(0.001)
            with pytest.raises(SinkError, match=rf"^sink tcp:127\.0\.0\.1:{port}: "
                                                r"cannot connect: .+$"):
                await sink.deliver([alert(4)])

            server.lines.clear()
            await nursery.start(server.serve)  # back on the same port
            assert await sink.deliver([alert(5)]) == [alert(5)[0]]
            await server.wait_lines(1)
            assert server.lines == [alert(5)[1]]
        finally:
            await sink.aclose()
        nursery.cancel_scope.cancel()


def test_tcp_sink_needs_host_and_port() -> None:
    with pytest.raises(SinkError, match=r"^sink tcp:nowhere: SinkAddress must be host:port, "
                                        r"got 'nowhere'$"):
        TcpSink(make(SinkAddress="nowhere"))


# --- http ------------------------------------------------------------------------------


async def test_http_sink_posts_json_arrays_with_an_idempotency_key() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200 if len(requests) != 3 else 503)

    sink = HttpSink(make(SinkType="http", SinkUrl="http://sink.example/alerts"),
                    transport=httpx.MockTransport(handler))
    items = [alert(1), alert(2)]
    try:
        assert await sink.deliver(items) == [items[0][0], items[1][0]]
        assert await sink.deliver(items) == [items[0][0], items[1][0]]  # a retry
        with pytest.raises(SinkError, match=r"^sink http:http://sink\.example/alerts: "
                                            r"server answered 503$"):
            await sink.deliver([alert(3)])
    finally:
        await sink.aclose()
    first, retry, other = requests
    assert first.method == "POST"
    assert str(first.url) == "http://sink.example/alerts"
    assert first.headers["Content-Type"] == "application/json"
    assert orjson.loads(first.content) == [orjson.loads(p) for _, p in items]
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["Idempotency-Key"])
    assert retry.headers["Idempotency-Key"] == first.headers["Idempotency-Key"]
    assert other.headers["Idempotency-Key"] != first.headers["Idempotency-Key"]


async def test_http_sink_request_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sink = HttpSink(make(SinkUrl="http://sink.example/"), transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(SinkError, match=r"^sink http:http://sink\.example/: request "
                                            r"failed: ConnectError\('refused'\)$"):
            await sink.deliver([alert(1)])
    finally:
        await sink.aclose()


async def test_http_sink_over_loopback() -> None:
    """httpx on trio against a real HTTP/1.1 server (h11) on 127.0.0.1."""
    got: list[tuple[h11.Request, bytes]] = []

    async def handle(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        async with stream:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    request, body = event, b""
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    got.append((request, body))
                    response = h11.Response(status_code=204, headers=[])
                    await stream.send_all(conn.send(response) or b"")
                    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                    conn.start_next_cycle()
                else:
                    return

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        sink = HttpSink(make(SinkUrl=f"http://127.0.0.1:{port}/alerts"))
        try:
            with trio.fail_after(5):
                assert await sink.deliver([alert(1)]) == [alert(1)[0]]
                assert await sink.deliver([alert(2), alert(3)]) == [alert(2)[0], alert(3)[0]]
        finally:
            await sink.aclose()
        nursery.cancel_scope.cancel()
    assert [(r.method, r.target) for r, _ in got] == [(b"POST", b"/alerts")] * 2
    assert dict(got[0][0].headers)[b"idempotency-key"] == \
        blake2b(alert(1)[0], digest_size=16).hexdigest().encode()
    assert orjson.loads(got[1][1]) == [orjson.loads(alert(2)[1]), orjson.loads(alert(3)[1])]


# --- the runner ------------------------------------------------------------------------


class FlakySink:
    """Fails the first ``failures`` deliveries, then delivers; records attempt times."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[float] = []
        self.delivered: list[Item] = []
        self.closed = False

    async def open(self) -> None:
        await trio.lowlevel.checkpoint()

    async def deliver(self, items: list[Item]) -> list[bytes]:
        await trio.lowlevel.checkpoint()
        self.attempts.append(trio.current_time())
        if self.failures > 0:
            self.failures -= 1
            raise SinkError(self.name, "down")
        self.delivered.extend(items)
        return [key for key, _ in items]

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self.closed = True


def value(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


async def wait_for(cond: object) -> None:
    with trio.fail_after(60):  # virtual seconds under autojump_clock
        while not cond():  # type: ignore[operator]
            await trio.sleep(0.01)


BATCHES = [[alert(n) for n in range(3 * b, 3 * b + 3)] for b in range(4)]
ALL = [item for batch in BATCHES for item in batch]


async def test_runner_spools_while_the_sink_is_down_and_replays_in_order(
    tmp_path: Path, metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sink = FlakySink(failures=3)
    spool = Spool(str(tmp_path / "alerts.saf"))
    reported: list[bytes] = []
    runner = SinkRunner(sink, metrics, lambda keys, at: reported.extend(keys), spool, offload=call_here)
    send, recv = trio.open_memory_channel[list[Item]](0)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.run, recv)
            async with send:
                for batch in BATCHES:  # at 0.0, 0.1, 0.2, 0.3
                    await send.send(batch)
                    await trio.sleep(0.1)
                assert spool.pending
                assert value(metrics, "probepair_spool_bytes") == spool.backlog_bytes > 0
                await wait_for(lambda: len(reported) == len(ALL))
    finally:
        spool.close()
    # fails at 0.0 (spooled), replay fails at 0.25 and 0.75, succeeds at 1.25
    assert sink.attempts == [0.0, 0.25, 0.75, 1.25]
    assert sink.delivered == ALL
    assert reported == [key for key, _ in ALL]
    assert not spool.pending
    assert sink.closed
    assert value(metrics, "probepair_sink_errors_total") == 3
    assert value(metrics, "probepair_events_forwarded_total") == len(ALL)
    assert value(metrics, "probepair_spool_bytes") == 0


async def test_runner_replays_although_alerts_keep_arriving(
    tmp_path: Path, metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sink = FlakySink(failures=1)
    spool = Spool(str(tmp_path / "alerts.saf"))
    reported: list[bytes] = []
    runner = SinkRunner(sink, metrics, lambda keys, at: reported.extend(keys), spool, offload=call_here)
    send, recv = trio.open_memory_channel[list[Item]](0)
    sent: list[Item] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.run, recv)
            async with send:
                for n in range(30):  # one alert every 0.1 s for 3 s
                    sent.append(alert(n))
                    await send.send([sent[-1]])
                    if n == 10:  # at ~1.0 s
                        # the backlog was replayed at 0.25 although alerts kept coming
                        assert sink.attempts[:2] == [0.0, 0.25]
                        assert not spool.pending
                    await trio.sleep(0.1)
    finally:
        spool.close()
    assert sink.delivered == sent
    assert reported == [key for key, _ in sent]


async def test_runner_without_store_and_forward_retries_with_backoff(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sink = FlakySink(failures=3)
    reported: list[bytes] = []
    runner = SinkRunner(sink, metrics, lambda keys, at: reported.extend(keys), spool=None)
    send, recv = trio.open_memory_channel[list[Item]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        async with send:
            await send.send(BATCHES[0])
            await trio.testing.wait_all_tasks_blocked()  # the runner is retrying BATCHES[0]
            await send.send(BATCHES[1])  # back-pressure: waits for the retries
            assert trio.current_time() == 0.25 + 0.5 + 0.5
    assert sink.attempts == [0.0, 0.25, 0.75, 1.25, 1.25]
    assert sink.delivered == BATCHES[0] + BATCHES[1]
    assert reported == [key for key, _ in BATCHES[0] + BATCHES[1]]
    assert value(metrics, "probepair_sink_errors_total") == 3


async def test_runner_backoff_is_capped(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sink = FlakySink(failures=9)
    runner = SinkRunner(sink, metrics, lambda keys, at: None, spool=None)
    send, recv = trio.open_memory_channel[list[Item]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        async with send:
            await send.send(BATCHES[0])
    delays = [b - a for a, b in zip(sink.attempts, sink.attempts[1:], strict=False)]
    assert delays == [0.25] + [0.5] * 8


async def test_runner_replays_a_spool_left_by_a_killed_probe(
    tmp_path: Path, metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    path = str(tmp_path / "alerts.saf")
    spool = Spool(path)
    spool.append(BATCHES[0])
    spool.close()  # killed
    spool = Spool(path)
    sink = FlakySink(failures=0)
    reported: list[bytes] = []
    send, recv = trio.open_memory_channel[list[Item]](0)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(SinkRunner(sink, metrics, lambda keys, at: reported.extend(keys), spool, offload=call_here).run, recv)
            async with send:
                await send.send(BATCHES[1])
    finally:
        spool.close()
    assert sink.delivered == BATCHES[0] + BATCHES[1]  # the spooled alerts first
    assert sink.attempts == [0.0, 0.0]


async def test_runner_flushes_the_spool_at_shutdown(
    tmp_path: Path, metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sink = FlakySink(failures=2)
    spool = Spool(str(tmp_path / "alerts.saf"))
    send, recv = trio.open_memory_channel[list[Item]](0)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(SinkRunner(sink, metrics, lambda keys, at: None, spool, offload=call_here).run, recv)
            async with send:
                await send.send(BATCHES[0])
        # closed at 0.0 with the spool pending: the replay fails at once, succeeds at 0.5
    finally:
        spool.close()
    assert sink.attempts == [0.0, 0.0, 0.5]
    assert sink.delivered == BATCHES[0]
    assert sink.closed
