"""PostgreSQL sink: the ObjectServer's ``alerts.status`` in a database both hosts share.

The same table and semantics as the SQLite sink (``sinks/sqlite.py``): a repeated
``Identifier`` bumps ``Tally`` and updates ``LastOccurrence`` (and Summary, Severity,
EventKey, Fields); a repeated event key is ignored, through ``delivered_keys`` whose
primary key makes the first writer of a key win. That is what makes the pair exactly
once when both probes write one database: a key inserted by the other probe's
uncommitted transaction makes ours wait for its outcome, then skip the alert (READ
COMMITTED ``INSERT ... ON CONFLICT``), so no interleaving counts an event twice.

Throughput: one transaction per batch, one statement per table in it. The batch travels
as two binary ``bytea[]`` parameters (keys and JSON payloads) and the server does the
rest: it parses the JSON, keeps the first occurrence of each new key, folds repeats of
an Identifier within the batch into one upsert (a row may be upserted only once per
statement), and writes. Python does no per-alert work beyond building two lists. Rows
are taken in key order and then Identifier order, so two probes writing overlapping
batches lock in the same order and cannot deadlock each other; a deadlock or
serialisation failure from elsewhere is retried at once, a few times.

psycopg 3 runs synchronously on a worker thread (trio.to_thread), as the SQLite sink
does: psycopg's async API runs on asyncio only. A lost connection is a SinkError; the
next delivery reconnects (the runner backs off and spools meanwhile).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import orjson
import psycopg
import psycopg.conninfo
import psycopg.errors
import trio
from psycopg import sql

from probepair.config.redact import redact_credentials
from probepair.errors import SinkError
from probepair.events import Item
from probepair.sinks.base import admit_target, target_table

if TYPE_CHECKING:
    from probepair.config.props import Props

DEFAULT_TABLE: Final = "alerts_status"  # the ObjectServer's alerts.status
_TABLE_MARK: Final = b'"Table":'  # only alerts of a rules target carry the field
KEY_RETENTION: Final = 86400  # seconds a delivered key is remembered (as sinks/sqlite.py)
PRUNE_EVERY: Final = 50_000  # alerts between two deletes of expired keys (an index range scan)
CONNECT_TIMEOUT: Final = 5  # seconds (libpq connect_timeout)
# A server that stops answering mid-transaction: libpq gives up after this many ms of
# unacknowledged data, so a worker thread is never stuck for long on a dead network.
TCP_USER_TIMEOUT_MS: Final = 10_000
RETRIES: Final = 3  # immediate retries of a batch that lost a deadlock or serialisation race
TEXT_COLUMNS: Final = ("Node", "NodeAlias", "Manager", "Agent", "AlertGroup", "AlertKey")

# A NUL character (JSON "\u0000") is valid JSON but not valid PostgreSQL text or jsonb:
# one such alert would fail its batch for ever. Match the escape only where it is one
# (preceded by an even number of backslashes) and substitute U+FFFD.
T = TypeVar("T")
_NUL: Final = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _compose(template: str, table: str) -> sql.Composed:
    """``template`` with each ``{table}`` replaced by ``table`` quoted as an identifier
    (psycopg's ``sql.Identifier``: no table name is ever pasted into SQL as text)."""
    parts = template.split("{table}")
    pieces: list[sql.Composable] = [sql.SQL(parts[0])]
    for part in parts[1:]:
        pieces += [sql.Identifier(table), sql.SQL(part)]
    return sql.Composed(pieces)


@functools.cache
def schema(table: str) -> sql.Composed:
    """DDL for ``table`` and the delivered keys, idempotent (run at every connect)."""
    return _compose(
        """
CREATE TABLE IF NOT EXISTS {table} (
    Serial BIGSERIAL PRIMARY KEY,
    Identifier TEXT NOT NULL UNIQUE,
    Node TEXT, NodeAlias TEXT, Manager TEXT, Agent TEXT, AlertGroup TEXT, AlertKey TEXT,
    Summary TEXT, Severity INTEGER, Type INTEGER,
    FirstOccurrence DOUBLE PRECISION, LastOccurrence DOUBLE PRECISION,
    Tally INTEGER NOT NULL DEFAULT 1,
    EventKey TEXT, Fields TEXT
);
CREATE TABLE IF NOT EXISTS delivered_keys (
    EventKey TEXT PRIMARY KEY,
    Delivered TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS delivered_keys_delivered ON delivered_keys (Delivered);
""",
        table,
    )


def _int(expr: str) -> str:
    """SQL: ``expr`` (text) as an integer, 0 when it is not a number (as ``int()``)."""
    number = "'^-?[0-9]{1,9}(\\.[0-9]*)?$'"
    return f"(CASE WHEN {expr} ~ {number} THEN trunc(({expr})::numeric)::int ELSE 0 END)"


def _time(expr: str) -> str:
    """SQL: ``expr`` (text) as epoch seconds, now when missing, zero or not a number."""
    now = "extract(epoch FROM now())::float8"
    number = f"(CASE WHEN {expr} ~ '^[0-9]{{1,15}}(\\.[0-9]*)?$' THEN ({expr})::float8 END)"
    return f"coalesce(nullif({number}, 0), {now})"


@functools.cache
def upsert(table: str) -> sql.Composed:
    """The one statement that delivers a batch into ``table``.

    Parameters: ``keys`` (bytea[], 8-byte event keys) and ``alerts`` (bytea[], UTF-8 JSON
    objects), in delivery order.
    """
    text = ", ".join(f"coalesce(f.j->>'{c}', '')" for c in TEXT_COLUMNS)
    template = f"""
WITH batch AS (
    SELECT encode(k, 'hex') AS EventKey, convert_from(a, 'UTF8') AS Fields, n AS Seq
    FROM unnest(%(keys)b::bytea[], %(alerts)b::bytea[]) WITH ORDINALITY AS b(k, a, n)
), fresh_keys AS (
    INSERT INTO delivered_keys (EventKey, Delivered)
    SELECT DISTINCT EventKey, now() FROM batch ORDER BY EventKey
    ON CONFLICT DO NOTHING
    RETURNING EventKey
), fresh AS (
    SELECT DISTINCT ON (b.EventKey) b.EventKey, b.Seq, b.Fields, b.Fields::jsonb AS j
    FROM batch b JOIN fresh_keys USING (EventKey)
    ORDER BY b.EventKey, b.Seq
), fresh_ident AS (
    SELECT coalesce(nullif(j->>'Identifier', ''), EventKey) AS Identifier, * FROM fresh
), firsts AS (
    SELECT DISTINCT ON (Identifier) * FROM fresh_ident ORDER BY Identifier, Seq
), lasts AS (
    SELECT DISTINCT ON (Identifier) * FROM fresh_ident ORDER BY Identifier, Seq DESC
), counts AS (
    SELECT Identifier, count(*)::int AS n FROM fresh_ident GROUP BY Identifier
)
INSERT INTO {{table}} (Identifier, {", ".join(TEXT_COLUMNS)}, Summary, Severity, Type,
    FirstOccurrence, LastOccurrence, Tally, EventKey, Fields)
SELECT f.Identifier, {text}, coalesce(l.j->>'Summary', ''),
    {_int("(l.j->>'Severity')")}, {_int("(f.j->>'Type')")},
    {_time("(f.j->>'FirstOccurrence')")}, {_time("(l.j->>'LastOccurrence')")},
    c.n, l.EventKey, l.Fields
FROM firsts f JOIN lasts l USING (Identifier) JOIN counts c USING (Identifier)
ORDER BY f.Identifier
ON CONFLICT (Identifier) DO UPDATE SET
    Tally = {{table}}.Tally + excluded.Tally,
    LastOccurrence = excluded.LastOccurrence,
    Summary = excluded.Summary,
    Severity = excluded.Severity,
    EventKey = excluded.EventKey,
    Fields = excluded.Fields
"""
    return _compose(template, table)


def _clean(payload: bytes) -> bytes:
    return _NUL.sub(rb"\1\\ufffd", payload) if b"\\u0000" in payload else payload


def target_tables(items: list[Item]) -> dict[str, list[Item]]:
    """The batch split by destination table, in order within each table.

    An alert whose ``Table`` field names a rules target (``custom.vmstatus``) goes to
    that target's table (``custom_vmstatus``, lower case so that it needs no quotes in
    psql), created on first use with the alerts_status columns; every other alert goes
    to alerts_status. Only alerts that carry the field are parsed.
    """
    groups: dict[str, list[Item]] = {}
    for item in items:
        table = DEFAULT_TABLE
        if _TABLE_MARK in item[1]:
            try:
                name = target_table(orjson.loads(item[1]).get("Table"))
            except (orjson.JSONDecodeError, AttributeError):
                name = None
            if name is not None:
                table = name.lower()
        groups.setdefault(table, []).append(item)
    return groups


class PostgresSink:
    """Writes alerts into ``alerts_status`` of the database ``SinkUrl`` names.

    Args:
        props: ``SinkUrl`` (a libpq URI), optionally ``SinkPasswordFile``; the password
            may also come from the URI or libpq's ``PGPASSFILE``.

    Raises:
        SinkError: no SinkUrl, or a SinkPasswordFile that cannot be read.
    """

    def __init__(self, props: Props) -> None:
        if not props.SinkUrl:
            raise SinkError("postgres", "SinkType 'postgres' needs SinkUrl")
        self.url = props.SinkUrl
        self.name = f"postgres:{redact_credentials(self.url)}"
        self._params: dict[str, str | int] = {
            "connect_timeout": CONNECT_TIMEOUT,
            "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
            "application_name": f"probepair-{props.Name}"[:63],
        }
        if props.SinkPasswordFile:
            try:
                text = Path(props.SinkPasswordFile).read_text()
            except OSError as exc:
                raise SinkError(
                    self.name, f"SinkPasswordFile {props.SinkPasswordFile!r}: {exc.strerror}"
                ) from None
            self._params["password"] = text.rstrip("\r\n")
        self._db: psycopg.Connection[tuple[object, ...]] | None = None
        self._tables: set[str] = set()
        self._refused: set[str] = set()  # target tables past MAX_TARGET_TABLES
        self._since_prune = 0

    def _connect_sync(self) -> psycopg.Connection[tuple[object, ...]]:
        conninfo = psycopg.conninfo.make_conninfo(self.url, **self._params)
        db = psycopg.connect(conninfo, autocommit=True)
        try:
            self._create_sync(db, DEFAULT_TABLE)
        except BaseException:
            db.close()
            raise
        return db

    def _create_sync(self, db: psycopg.Connection[tuple[object, ...]], table: str) -> None:
        # Two probes creating the tables at once can race in the catalogue (IF NOT EXISTS
        # is not atomic): the loser's error is retried like any other.
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(hashtext('probepair schema'))")
            db.execute(schema(table))
        self._tables.add(table)

    async def open(self) -> None:
        if self._db is None:
            self._db = await self._run(self._connect_sync, "cannot connect")

    async def _run(self, fn: Callable[..., T], what: str, *args: object) -> T:
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except psycopg.Error as exc:
            await self._drop()
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SinkError(self.name, f"{what}: {message}") from None

    def _deliver_sync(self, db: psycopg.Connection[tuple[object, ...]], items: list[Item]) -> None:
        groups = target_tables(items)
        for table in [t for t in groups if t not in self._tables]:  # in order of arrival
            if admit_target(self.name, table, self._tables - {DEFAULT_TABLE}, self._refused):
                self._create_sync(db, table)
            else:
                groups.setdefault(DEFAULT_TABLE, []).extend(groups.pop(table))
        for attempt in range(RETRIES + 1):
            try:
                with db.transaction():  # the whole batch, every table, or nothing
                    for table, group in groups.items():
                        keys = [k for k, _ in group]
                        db.execute(
                            upsert(table),
                            {"keys": keys, "alerts": [_clean(p) for _, p in group]},
                        )
                break
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == RETRIES:
                    raise
        self._since_prune += len(items)
        if self._since_prune >= PRUNE_EVERY:
            self._since_prune = 0
            db.execute(
                "DELETE FROM delivered_keys WHERE Delivered < now() - make_interval(secs => %s)",
                (KEY_RETENTION,),
            )

    async def deliver(self, items: list[Item]) -> list[bytes]:
        if not items:
            await trio.lowlevel.checkpoint()
            return []
        await self.open()
        assert self._db is not None
        await self._run(self._deliver_sync, "cannot write", self._db, items)
        return [key for key, _ in items]

    async def check(self) -> None:
        """Connected (now, if need be) and the server answers ``SELECT 1``."""
        await self.open()
        assert self._db is not None
        await self._run(lambda db: db.execute("SELECT 1").fetchall(), "check failed", self._db)

    async def _drop(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with trio.move_on_after(1, shield=True):
                await trio.to_thread.run_sync(db.close)

    async def aclose(self) -> None:
        await self._drop()
