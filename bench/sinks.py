"""Sink throughput: alerts/s each sink accepts, one row per sink and situation.

Each row delivers the same stream of syslog-shaped alerts (13 fields, ~300 bytes, one
Identifier per 4 events so deduplication works) in the runner's batches of 4096, straight
to the sink (no feed, no rules), against a real server started here on loopback and
removed afterwards. It prints alerts/s (wall clock), the probe's CPU µs per alert (all
threads of this process: the sink's worker thread included, the server excluded) and
wall µs per alert (1 / the median rate: an fsync is mostly waiting, not CPU).

    .venv/bin/python bench/sinks.py [--alerts 100000] [--rounds 3] [--batch 4096] [ROW ...]

The ``SinkSync`` rows (``file, SinkSync batch`` ... ``sqlite, SinkSync off``) drive the
real ``SinkRunner`` instead, as the probe does: batches of ``--batch`` alerts through an
unbuffered channel (so the runner never joins two of them), the sink's ``sync()`` (the
file's fsync; for SQLite a ``synchronous=FULL`` commit under ``batch``, a checkpoint
under ``interval``) once per batch under ``batch``, every ``SinkSyncInterval`` (1 s)
under ``interval``, never under ``off``; timed from the first batch sent to the last
key reported delivered (acked to the peer), after a one-alert warm-up that opens the
sink. Small batches are what the runner hands over at low rates (``--batch 10``): there
the sync per batch dominates. Under load the runner joins what waited during a sync into
the next batch (up to 4096), so the 4096 rows bound the throughput. The files live in
``$TMPDIR`` (tempfile's default): point it at the disk the probe writes to.

Rows are registered with ``@row(name)`` on an async context manager that starts what the
row needs and yields a ``Setup`` (the sink's properties, how many writers deliver the
stream at once, and whether to pre-deliver the stream once). To add a sink, add a
function below (see ``postgres`` and ``alertmanager``); ``--list`` shows the rows.
Servers: Debian's postgresql, prometheus-alertmanager and nats-server (``.ci/setup``);
the nats rows start a three-node JetStream cluster (tests/natscluster.py) and publish
into an R1 and an R3 stream of it. ``bench/nats_bridge.py`` compares the two ways of
running nats-py under trio.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probepair.config import props
from probepair.events import key_of
from probepair.metrics import Metrics
from probepair.pipeline.alerts import serialise
from probepair.sinks import Item, Sink, lifetime, make_sink
from probepair.sinks.runner import MAX_ITEMS, SinkRunner


@dataclass
class Setup:
    """What one row runs: a sink per writer, built from ``values`` (property: value)."""

    values: dict[str, object]
    writers: int = 1  # probes delivering the very same stream at once (a pair's overlap)
    resend: bool = False  # deliver the stream once before timing: every key is a repeat
    note: str = ""
    check: Callable[[int], str] | None = field(default=None, repr=False)
    runner: bool = False  # through a SinkRunner (its SinkSync from ``values``), one writer


RowFactory = Callable[[], AbstractAsyncContextManager[Setup]]
ROWS: dict[str, RowFactory] = {}


def row(name: str) -> Callable[[RowFactory], RowFactory]:
    """Register a row under ``name`` (printed in the table; order of registration)."""

    def register(factory: RowFactory) -> RowFactory:
        ROWS[name] = factory
        return factory

    return register


def alerts(n: int, tag: str) -> list[Item]:
    """``n`` syslog-shaped alerts, unique per ``tag``; 4 events per Identifier."""
    now = time.time()
    out = []
    for i in range(n):
        key = key_of(f"{tag} {i}".encode())
        node = f"host{i % 500:03d}"
        fields: dict[str, object] = {
            "Node": node, "NodeAlias": node, "Manager": "probepair", "Agent": "Syslog",
            "AlertGroup": "service", "AlertKey": f"unit{(i // 4) % 97}", "Class": 4000,
            "Summary": f"{node} unit{(i // 4) % 97}.service: Failed with result 'exit-code' {i}",
            "Severity": 4, "Type": 1, "FirstOccurrence": now, "LastOccurrence": now,
            "Identifier": f"{tag} {node} unit{i // 4} service 1 Syslog probepair",
        }
        out.append((key, serialise(fields, key)))
    return out


async def deliver_all(sink: Sink, items: list[Item], batch: int = MAX_ITEMS) -> None:
    for i in range(0, len(items), batch):
        await sink.deliver(items[i : i + batch])


async def through_runner(sink: Sink, p: props.Props, items: list[Item], warm: Item,
                         batch: int) -> float:
    """Send ``items`` in batches of ``batch`` through a ``SinkRunner`` with ``p``'s
    SinkSync; seconds from the first batch sent to the last key reported delivered.
    ``warm`` goes first, untimed: the runner opens the sink for it."""
    acked = 0
    done_at = math.nan
    warmed = trio.Event()

    def delivered(keys: list[bytes], written_at: float) -> None:
        nonlocal acked, done_at
        if not warmed.is_set():
            keys = [key for key in keys if key != warm[0]]
            warmed.set()
        acked += len(keys)
        if acked >= len(items):
            done_at = time.perf_counter()

    runner = SinkRunner(sink, Metrics(), delivered, None, sync=p.SinkSync,
                        sync_interval=p.SinkSyncInterval, check_every=None)
    send, recv = trio.open_memory_channel[list[Item]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        async with send:
            await send.send([warm])
            await warmed.wait()
            t0 = time.perf_counter()
            for i in range(0, len(items), batch):
                await send.send(items[i : i + batch])
    assert acked == len(items), (acked, len(items))
    return done_at - t0


async def run_row(name: str, factory: RowFactory, n: int, rounds: int, batch: int) -> None:
    rates: list[float] = []
    cpus: list[float] = []
    async with factory() as setup:
        p = props.load([("bench", {**setup.values, "Name": "bench"})])
        for r in range(rounds):
            items = alerts(n, f"{name} {r} {time.time_ns()}")
            if setup.runner:
                warm = alerts(1, f"{name} {r} warm {time.time_ns()}")[0]
                cpu0 = time.process_time()
                wall = await through_runner(make_sink(p), p, items, warm, batch)
                cpu = time.process_time() - cpu0  # the warm-up's alert too: 1 in n
                rates.append(n / wall)
                cpus.append(cpu / n * 1e6)
                continue
            sinks = [make_sink(p) for _ in range(setup.writers)]
            async with AsyncExitStack() as lifetimes:
                for sink in sinks:
                    await lifetimes.enter_async_context(lifetime(sink))
                try:
                    for sink in sinks:
                        await sink.open()
                    if setup.resend:
                        await deliver_all(sinks[0], items, batch)
                    cpu0, t0 = time.process_time(), time.perf_counter()
                    async with trio.open_nursery() as nursery:
                        for sink in sinks:
                            nursery.start_soon(deliver_all, sink, items, batch)
                    wall = time.perf_counter() - t0
                    cpu = time.process_time() - cpu0
                finally:
                    for sink in sinks:
                        await sink.aclose()
            rates.append(n / wall)
            cpus.append(cpu / (n * setup.writers) * 1e6)
        checked = setup.check(n * rounds) if setup.check else ""
    best, median = max(rates), statistics.median(rates)
    print(f"{name:<34} {best:>10,.0f} {median:>10,.0f} {statistics.median(cpus):>8.1f} "
          f"{1e6 / median:>8.1f}  "
          f"{setup.note}{'; ' if setup.note and checked else ''}{checked}", flush=True)


# -- rows ----------------------------------------------------------------------------


@row("file")
@asynccontextmanager
async def file_row() -> AsyncIterator[Setup]:
    with tempfile.TemporaryDirectory() as d:
        yield Setup({"SinkType": "file", "SinkFile": f"{d}/alerts.jsonl"}, note="baseline")


@row("sqlite")
@asynccontextmanager
async def sqlite_row() -> AsyncIterator[Setup]:
    with tempfile.TemporaryDirectory() as d:
        yield Setup({"SinkType": "sqlite", "SinkDatabase": f"{d}/alerts.db"})


def _synced(sink: str, mode: str) -> RowFactory:
    @asynccontextmanager
    async def factory() -> AsyncIterator[Setup]:
        with tempfile.TemporaryDirectory() as d:
            where = ({"SinkFile": f"{d}/alerts.jsonl"} if sink == "file"
                     else {"SinkDatabase": f"{d}/alerts.db"})
            yield Setup({"SinkType": sink, **where, "SinkSync": mode}, runner=True,
                        note="through the SinkRunner, to the last ack")

    return factory


for _sink in ("file", "sqlite"):
    for _mode in ("batch", "interval", "off"):
        row(f"{_sink}, SinkSync {_mode}")(_synced(_sink, _mode))


def _postgres(writers: int = 1, resend: bool = False, note: str = "") -> RowFactory:
    @asynccontextmanager
    async def factory() -> AsyncIterator[Setup]:
        from tests import servers

        with servers.postgres(fsync=True) as pg:
            url = pg.create_database("bench")

            def check(fed: int) -> str:
                import psycopg

                with psycopg.connect(url) as db:
                    got = db.execute("SELECT sum(Tally) FROM alerts_status").fetchone()
                tally = int(got[0]) if got and got[0] is not None else 0
                return f"sum(Tally) {tally} for {fed} fed" + ("" if tally == fed else " WRONG")

            yield Setup({"SinkType": "postgres", "SinkUrl": url}, writers=writers,
                        resend=resend, note=note, check=check)

    return factory


row("postgres")(_postgres(note="local server, fsync on"))
row("postgres, both probes at once")(_postgres(writers=2, note="same stream, 2 connections"))
row("postgres, all resends")(_postgres(resend=True, note="a takeover flush of delivered keys"))


@row("alertmanager")
@asynccontextmanager
async def alertmanager_row() -> AsyncIterator[Setup]:
    from tests import servers

    with servers.alertmanager() as am:
        yield Setup({"SinkType": "alertmanager", "SinkUrl": am.url})


def _nats(replicas: int) -> RowFactory:
    @asynccontextmanager
    async def factory() -> AsyncIterator[Setup]:
        import asyncio

        from tests.natscluster import NatsCluster, _stream_info

        with tempfile.TemporaryDirectory() as d:
            cluster = NatsCluster(Path(d))
            async with trio.open_nursery() as nursery:
                await cluster.start(nursery)
                stream = f"BENCH_R{replicas}"

                def check(fed: int) -> str:
                    # A blocking look-up is fine here: the row's timing is over.
                    got = int(asyncio.run(_stream_info(cluster.url, stream)).state.messages)
                    return f"stream holds {got} for {fed} fed" + ("" if got == fed else " WRONG")

                yield Setup({"SinkType": "nats", "SinkUrl": cluster.url, "SinkStream": stream,
                             "SinkSubject": f"bench.r{replicas}", "SinkReplicas": replicas},
                            note=f"3 local servers, R{replicas} stream", check=check)
                await cluster.stop()
                nursery.cancel_scope.cancel()

    return factory


row("nats JetStream R1")(_nats(1))
row("nats JetStream R3")(_nats(3))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="*", help="rows to run (default: all)")
    ap.add_argument("--alerts", type=int, default=100_000, help="alerts per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=MAX_ITEMS,
                    help=f"alerts per delivery (default {MAX_ITEMS}, the runner's most)")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    args = ap.parse_args()
    if args.list:
        print("\n".join(ROWS))
        return 0
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown rows {unknown}; --list shows them")
    if not 1 <= args.batch <= MAX_ITEMS:
        ap.error(f"--batch: expected 1 to {MAX_ITEMS} alerts, got {args.batch}")
    print(f"{'sink':<34} {'best/s':>10} {'median/s':>10} {'CPU µs':>8} {'wall µs':>8}  "
          f"({args.alerts:,} alerts x {args.rounds} rounds, batches of {args.batch})")
    for name in args.rows or ROWS:
        trio.run(run_row, name, ROWS[name], args.alerts, args.rounds, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
