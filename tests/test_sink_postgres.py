"""The postgres sink against a real PostgreSQL (a throwaway cluster, tests/servers.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
import trio
import trio.testing

from probepair.errors import SinkError
from probepair.events import Item
from probepair.metrics import Metrics
from probepair.sinks import make_sink, postgres
from probepair.sinks.base import MAX_TARGET_TABLES
from probepair.sinks.postgres import PostgresSink
from probepair.sinks.runner import SinkRunner
from probepair.sinks.spool import Spool
from tests import servers
from tests.servers import Postgres
from tests.sinkcases import (
    REPEATED,
    REPEATED_ROW,
    alert,
    deliver_repeated_keys,
    deliver_two_identifiers,
    make,
)


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    with servers.postgres() as pg:
        yield pg


@pytest.fixture
def url(server: Postgres, request: pytest.FixtureRequest) -> str:
    name = re.sub(r"\W", "_", request.node.name)[:50].lower()
    return server.create_database(name)


def rows(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(
            "SELECT Identifier, Node, Summary, Severity, Tally, FirstOccurrence, LastOccurrence,"
            " EventKey FROM alerts_status ORDER BY Identifier").fetchall()


async def test_postgres_sink_deduplicates_on_identifier(url: str) -> None:
    sink = make_sink(make(SinkType="postgres", SinkUrl=url))
    assert isinstance(sink, PostgresSink)
    try:
        want = await deliver_two_identifiers(sink)
        assert await sink.deliver([]) == []
    finally:
        await sink.aclose()
    assert rows(url) == [want["web1:cpu"], want["web1:disk"]]


async def test_postgres_sink_folds_repeats_within_one_batch_as_in_sequence(url: str) -> None:
    # Three alerts of one Identifier in one batch give what three batches give (SQLite's
    # row-by-row semantics): first's FirstOccurrence, last's LastOccurrence and Summary.
    batch = [alert(n, Identifier="x", FirstOccurrence=100.0 + n, LastOccurrence=100.0 + n,
                   Severity=n) for n in (1, 2, 3)]
    sink = PostgresSink(make(SinkUrl=url))
    try:
        await sink.deliver(batch)
    finally:
        await sink.aclose()
    assert rows(url) == [("x", "web1", "event 3", 3, 3, 101.0, 103.0, batch[2][0].hex())]


async def test_postgres_sink_ignores_a_repeated_event_key(url: str) -> None:
    sink = PostgresSink(make(SinkUrl=url))
    try:
        await deliver_repeated_keys(sink)
    finally:
        await sink.aclose()
    assert rows(url) == [REPEATED_ROW]
    sink = PostgresSink(make(SinkUrl=url))  # a new connection keeps the delivered keys
    try:
        await sink.deliver([REPEATED[0], alert(3, Identifier="x")])
    finally:
        await sink.aclose()
    assert rows(url)[0][4] == 3


async def test_postgres_sink_odd_fields(url: str) -> None:
    a = alert(1, FirstOccurrence="soon", LastOccurrence=0, Severity="high", Node=7,
              Summary="nul \x00 and \\u0000 text")
    sink = PostgresSink(make(SinkUrl=url))
    try:
        await sink.deliver([a])
    finally:
        await sink.aclose()
    [(ident, node, summary, severity, tally, first, last, key)] = rows(url)
    assert (ident, node, summary, severity, tally, key) == (
        a[0].hex(), "7", "nul \ufffd and \\u0000 text", 0, 1, a[0].hex())
    assert first == last and isinstance(first, float) and first > 1.7e9  # now


async def test_postgres_sink_two_writers_at_once_count_each_event_once(url: str) -> None:
    # Both probes of a pair deliver the same events (a takeover flush racing the
    # master's last batches), in overlapping, differently cut batches.
    events = [alert(n, Identifier=f"id{n % 7}") for n in range(600)]
    sinks = [PostgresSink(make(SinkUrl=url, Name=f"p{i}")) for i in range(2)]
    try:
        async with trio.open_nursery() as nursery:
            for sink, size in zip(sinks, (50, 73), strict=True):
                async def write(sink: PostgresSink = sink, size: int = size) -> None:
                    for i in range(0, len(events), size):
                        await sink.deliver(events[i:i + size])
                nursery.start_soon(write)
    finally:
        for sink in sinks:
            await sink.aclose()
    with psycopg.connect(url) as db:
        tallies = dict(db.execute("SELECT Identifier, Tally FROM alerts_status").fetchall())
        keys = db.execute("SELECT count(*) FROM delivered_keys").fetchone()
    assert tallies == {f"id{i}": len(range(i, 600, 7)) for i in range(7)}
    assert keys == (600,)


async def test_postgres_sink_password_file(server: Postgres, url: str, tmp_path: Path) -> None:
    bare = server.url(url.rsplit("/", 1)[1], password=False)
    pwfile = tmp_path / "pw"
    pwfile.write_text(servers.PG_PASSWORD + "\n")
    sink = make_sink(make(SinkType="postgres", SinkUrl=bare, SinkPasswordFile=str(pwfile)))
    try:
        await sink.deliver([alert(1)])
    finally:
        await sink.aclose()
    assert len(rows(url)) == 1
    pwfile.write_text("wrong\n")
    sink = make_sink(make(SinkType="postgres", SinkUrl=bare, SinkPasswordFile=str(pwfile)))
    with pytest.raises(SinkError, match=r"^sink postgres:postgresql://probepair@127\.0\.0\.1:"
                                        r"\d+/\w+: cannot connect: .*password authentication "
                                        r"failed.*$"):
        await sink.deliver([alert(2)])
    await sink.aclose()


def test_postgres_sink_name_hides_passwords() -> None:
    assert PostgresSink(make(SinkUrl="postgresql://u:pw@h:5432/d?password=x&sslmode=require")
                        ).name == "postgres:postgresql://u:***@h:5432/d?password=***&sslmode=require"


def test_postgres_sink_config_errors(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match=r"^sink postgres: SinkType 'postgres' needs SinkUrl$"):
        PostgresSink(make())
    missing = tmp_path / "nope"
    with pytest.raises(SinkError, match=r"^sink postgres:postgresql://u:\*\*\*@h/d: "
                                        rf"SinkPasswordFile '{re.escape(str(missing))}': "
                                        r"No such file or directory$"):
        PostgresSink(make(SinkUrl="postgresql://u:secret@h/d", SinkPasswordFile=str(missing)))


async def test_postgres_sink_reconnects_and_the_runner_replays_the_spool(
    url: str, tmp_path: Path, metrics: Metrics
) -> None:
    """A server that goes away (connections terminated, refused while "down") and
    comes back: spooled alerts are replayed in order, each once, within the back-off cap."""
    sink = PostgresSink(make(SinkUrl=url, Name="reconnect"))
    spool = Spool(str(tmp_path / "pg.saf"))
    reported: list[bytes] = []
    runner = SinkRunner(sink, metrics, lambda keys, at: reported.extend(keys), spool)
    send, recv = trio.open_memory_channel[list[Item]](0)
    dbname = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"

    def outage(down: bool) -> None:
        with psycopg.connect(admin, autocommit=True) as db:
            db.execute(f'ALTER DATABASE "{dbname}" WITH ALLOW_CONNECTIONS {not down}'.encode())
            if down:
                db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))

    sent = [alert(n, Identifier=f"i{n}") for n in range(30)]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.run, recv)
            async with send:
                await send.send(sent[0:10])
                with trio.fail_after(10):
                    while len(reported) < 10:
                        await trio.sleep(0.01)
                await trio.to_thread.run_sync(outage, True)
                await send.send(sent[10:20])
                with trio.fail_after(10):
                    while not spool.pending:
                        await trio.sleep(0.01)
                await send.send(sent[20:30])
                back = trio.current_time()
                await trio.to_thread.run_sync(outage, False)
                with trio.fail_after(10):
                    while len(reported) < 30:
                        await trio.sleep(0.01)
                resumed = trio.current_time() - back
    finally:
        spool.close()
    assert reported == [k for k, _ in sent]
    assert not spool.pending
    assert value(metrics, "probepair_sink_errors_total") >= 1
    with psycopg.connect(url) as db:
        got = db.execute("SELECT Identifier, Tally FROM alerts_status").fetchall()
    assert sorted(got) == sorted((f"i{n}", 1) for n in range(30))
    print(f"\nresumed {resumed:.3f} s after the database came back")  # shown with -s


def value(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


async def test_postgres_payload_is_the_fields_column(url: str) -> None:
    a = alert(1, Identifier="p", Extra={"nested": [1, 2]})
    sink = PostgresSink(make(SinkUrl=url))
    try:
        await sink.deliver([a])
    finally:
        await sink.aclose()
    with psycopg.connect(url) as db:
        (fields,) = db.execute("SELECT Fields FROM alerts_status").fetchone() or (None,)
    assert isinstance(fields, str)
    assert orjson.loads(fields) == orjson.loads(a[1])


async def test_postgres_target_tables_quoted_and_bounded(url: str) -> None:
    """A rules target's alerts go to its own table (custom.vmstatus -> custom_vmstatus),
    every table name goes into SQL as an identifier (never as text), anything that is
    not a table name stays in alerts_status, and past MAX_TARGET_TABLES the rest do too."""
    schema = postgres.schema('x"; DROP TABLE alerts_status; --')
    with psycopg.connect(url) as db:
        assert 'CREATE TABLE IF NOT EXISTS "x""; DROP TABLE' in schema.as_string(db)
    n = MAX_TARGET_TABLES + 2
    items = [
        alert(1, Identifier="vm1", Table="custom.VmStatus"),
        alert(2, Identifier="odd", Table='x"; DROP TABLE alerts_status; --'),
        *(alert(10 + i, Identifier=f"t{i}", Table=f"custom.t{i}") for i in range(n)),
    ]
    sink = PostgresSink(make(SinkUrl=url))
    try:
        assert len(await sink.deliver(items)) == len(items)
        assert await sink.deliver(items[:1]) == [items[0][0]]  # a resend changes nothing
    finally:
        await sink.aclose()
    with psycopg.connect(url) as db:
        vm = db.execute("SELECT Identifier, Tally FROM custom_vmstatus").fetchall()
        status = db.execute("SELECT Identifier FROM alerts_status ORDER BY 1").fetchall()
        tables = db.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'custom\\_t%'"
        ).fetchone()
    assert vm == [("vm1", 1)]
    assert tables == (MAX_TARGET_TABLES - 1,)  # custom_vmstatus took one of the places
    assert status == sorted([("odd",), ("t63",), ("t64",), ("t65",)])
