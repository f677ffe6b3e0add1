"""SQLite sink shaped like the ObjectServer's ``alerts.status``.

Deduplication as the ObjectServer does it: a second alert with the same ``Identifier``
bumps ``Tally`` and updates ``LastOccurrence`` (and Summary, Severity) instead of adding
a row. Beyond the ObjectServer, a table of delivered event keys makes a *resend* of the
same event (after a failover, or a store-and-forward replay) a no-op, so a failover never
inflates ``Tally``. sqlite3 blocks, so each batch runs in one transaction on a worker
thread (trio.to_thread, the one place a library insists on threads).

Targets: an alert whose rules chose another target table carries it in its ``Table``
field (``"custom.vmstatus"``; no field means alerts.status). Each such table is its own
SQLite table (``custom_vmstatus``) with a column per field the rules set (added as new
fields appear), plus ``Serial``, ``EventKey`` and the whole alert in ``Fields``; an
alert with an ``Identifier`` replaces the row with the same one (no Tally: the table's
shape is the rules'). A ``Table`` that is not a table name goes to alerts_status.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
import trio

from probepair.errors import SinkError
from probepair.events import Item
from probepair.sinks.base import admit_target, target_table

if TYPE_CHECKING:
    from probepair.config.props import Props

KEY_RETENTION = 86400.0  # seconds a delivered event key is remembered; far beyond any failover
COLUMNS = ("Node", "NodeAlias", "Manager", "Agent", "AlertGroup", "AlertKey", "Summary")
INT_COLUMNS = ("Severity", "Type")
MAX_COLUMNS = 500  # per target table; SQLite allows 2000, further fields stay in Fields
_OWN_COLUMNS = frozenset({"serial", "eventkey", "fields"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts_status (
    Serial INTEGER PRIMARY KEY AUTOINCREMENT,
    Identifier TEXT NOT NULL UNIQUE,
    Node TEXT, NodeAlias TEXT, Manager TEXT, Agent TEXT, AlertGroup TEXT, AlertKey TEXT,
    Summary TEXT, Severity INTEGER, Type INTEGER,
    FirstOccurrence REAL, LastOccurrence REAL, Tally INTEGER NOT NULL DEFAULT 1,
    EventKey TEXT, Fields TEXT
);
CREATE TABLE IF NOT EXISTS delivered_keys (
    EventKey TEXT PRIMARY KEY,
    Delivered REAL NOT NULL
);
"""

UPSERT = f"""
INSERT INTO alerts_status (Identifier, {", ".join(COLUMNS + INT_COLUMNS)},
    FirstOccurrence, LastOccurrence, Tally, EventKey, Fields)
VALUES ({", ".join("?" * (len(COLUMNS) + len(INT_COLUMNS) + 6))})
ON CONFLICT(Identifier) DO UPDATE SET
    Tally = Tally + 1,
    LastOccurrence = excluded.LastOccurrence,
    Summary = excluded.Summary,
    Severity = excluded.Severity,
    EventKey = excluded.EventKey,
    Fields = excluded.Fields
"""


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return 0


def _time(value: object, default: float) -> float:
    try:
        t = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return t if t > 0 else default


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def target_of(fields: dict[str, object]) -> str | None:
    """The SQLite table of an alert's ``Table`` field (removed), None for alerts_status."""
    return target_table(fields.pop("Table", None))


def _column_value(value: object) -> object:
    if value is None or isinstance(value, str | int | float):
        return value
    return orjson.dumps(value).decode()


class SqliteSink:
    def __init__(self, props: Props, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock  # row timestamps (delivered_at), not a timer
        self._sync_mode = props.SinkSync
        if not props.SinkDatabase:
            raise SinkError("sqlite", "SinkType 'sqlite' needs SinkDatabase")
        self.path = props.SinkDatabase
        self.name = f"sqlite:{self.path}"
        self._db: sqlite3.Connection | None = None
        self._since_prune = 0
        self._columns: dict[str, set[str]] = {}  # target table -> its columns, lower case
        self._refused: set[str] = set()  # target tables past MAX_TARGET_TABLES

    def _open_sync(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # SinkSync batch: each commit reaches the disk before its keys are acked (FULL
        # syncs the WAL at every commit). Otherwise NORMAL, and sync() checkpoints: the
        # WAL is synced before each checkpoint.
        db.execute(f"PRAGMA synchronous={'FULL' if self._sync_mode == 'batch' else 'NORMAL'}")
        db.executescript(SCHEMA)
        return db

    async def open(self) -> None:
        if self._db is None:
            try:
                self._db = await trio.to_thread.run_sync(self._open_sync)
            except sqlite3.Error as exc:
                raise SinkError(self.name, f"cannot open database: {exc}") from None

    def _deliver_sync(self, db: sqlite3.Connection, items: list[Item]) -> None:
        now = self._wall_clock()
        db.execute("BEGIN IMMEDIATE")
        try:
            for key, payload in items:
                hexkey = key.hex()
                cur = db.execute(
                    "INSERT OR IGNORE INTO delivered_keys VALUES (?, ?)", (hexkey, now)
                )
                if cur.rowcount != 1:
                    continue  # a resend of an event already delivered
                fields = orjson.loads(payload)
                table = target_of(fields)
                if table is not None and admit_target(
                    self.name, table, self._columns, self._refused
                ):
                    self._write_target(db, table, fields, hexkey, payload)
                    continue
                ident = str(fields.get("Identifier") or hexkey)
                first = _time(fields.get("FirstOccurrence"), now)
                last = _time(fields.get("LastOccurrence"), now)
                row = (
                    ident,
                    *(str(fields.get(c, "")) for c in COLUMNS),
                    *(_int(fields.get(c, 0)) for c in INT_COLUMNS),
                    first,
                    last,
                    1,
                    hexkey,
                    payload.decode(),
                )
                db.execute(UPSERT, row)
            self._since_prune += len(items)
            if self._since_prune > 10_000:
                db.execute("DELETE FROM delivered_keys WHERE Delivered < ?", (now - KEY_RETENTION,))
                self._since_prune = 0
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _write_target(
        self,
        db: sqlite3.Connection,
        table: str,
        fields: dict[str, object],
        hexkey: str,
        payload: bytes,
    ) -> None:
        known = self._columns.get(table)
        if known is None:
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {_quote(table)} (Serial INTEGER PRIMARY KEY "
                "AUTOINCREMENT, Identifier TEXT UNIQUE, EventKey TEXT, Fields TEXT)"
            )
            rows = db.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
            known = self._columns[table] = {str(r[1]).lower() for r in rows}
        columns: dict[str, object] = {}  # one value per column; SQLite's names ignore case
        for name, value in fields.items():
            low = name.lower()
            if low in _OWN_COLUMNS:
                continue
            if low not in known:
                if len(known) >= MAX_COLUMNS:
                    continue
                db.execute(f"ALTER TABLE {_quote(table)} ADD COLUMN {_quote(name)}")
                known.add(low)
            columns[name] = _column_value(value)
        names = [*columns, "EventKey", "Fields"]
        updates = ", ".join(f"{_quote(n)} = excluded.{_quote(n)}" for n in names)
        db.execute(
            f"INSERT INTO {_quote(table)} ({', '.join(_quote(n) for n in names)}) "
            f"VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT(Identifier) DO UPDATE SET {updates}",
            (*columns.values(), hexkey, payload.decode()),
        )

    async def deliver(self, items: list[Item]) -> list[bytes]:
        await self.open()
        assert self._db is not None
        try:
            await trio.to_thread.run_sync(self._deliver_sync, self._db, items)
        except (sqlite3.Error, orjson.JSONDecodeError) as exc:
            raise SinkError(self.name, f"cannot write: {exc}") from None
        return [key for key, _ in items]

    async def sync(self) -> None:
        """Under SinkSync interval: a checkpoint syncs the WAL (and the database file)."""
        if self._db is None or self._sync_mode != "interval":
            return  # batch: every commit was already synced (synchronous=FULL)
        try:
            await trio.to_thread.run_sync(self._db.execute, "PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            raise SinkError(self.name, f"cannot checkpoint: {exc}") from None

    def _check_sync(self, db: sqlite3.Connection) -> None:
        db.execute("SELECT 1").fetchall()
        fs = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        if fs.f_bavail == 0:
            raise sqlite3.OperationalError("filesystem full")

    async def check(self) -> None:
        """The database opens and answers a query, and its filesystem has room."""
        await self.open()
        assert self._db is not None
        try:
            await trio.to_thread.run_sync(self._check_sync, self._db)
        except (sqlite3.Error, OSError) as exc:
            raise SinkError(self.name, f"check failed: {exc}") from None

    async def aclose(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await trio.to_thread.run_sync(db.close)
