"""Alerts per second into each sink, in-process, on loopback: file and NATS JetStream.

Each row hands the sink ready-made batches (serialised 12-field alerts with their event
keys, as the runner does) and times ``deliver`` until every batch returned, i.e. until
the sink acknowledged all of it: for the file sink the ``write(2)``, for JetStream the
publish acks (stored on a quorum of the stream's replicas). The NATS rows start a
three-node nats-server JetStream cluster on loopback in a temp dir (as the tests do) and
publish into an R1 and an R3 stream of it.

``--bridges`` also compares the two ways of running nats-py (asyncio) under trio with
the same publisher code: its own asyncio loop in one thread (what the sink does) and
trio-asyncio (``pip install trio-asyncio``; skipped when missing), at a small batch (a
steady 2,000 events/s arrives ~20 alerts per 10 ms) and at a large one.

    .venv/bin/python bench/sinks.py [--alerts 100000] [--batch 1024] [--repeat 3] [--bridges]

Numbers on a shared 2-core machine swing ±40% between runs: compare rows of one run.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probepair import props as props_mod
from probepair.alerts import serialise
from probepair.sinks.base import Item
from probepair.sinks.file import FileSink
from probepair.sinks.jetstream import NatsSink, Publisher
from tests.natscluster import NatsCluster


def make_batches(total: int, batch: int, tag: str) -> list[list[Item]]:
    """``total`` distinct alerts (a 12-field alert, ~260 bytes each) in batches."""
    items: list[Item] = []
    for i in range(total):
        key = os.urandom(8)
        fields: dict[str, object] = {
            "Identifier": f"host{i % 50}:sshd:{i % 7}",
            "Node": f"host{i % 50}",
            "NodeAlias": f"10.0.{i % 50}.1",
            "Manager": "probepair",
            "Agent": "sshd",
            "AlertGroup": "auth",
            "AlertKey": f"{tag}-{i}",
            "Summary": f"Failed password for user{i % 13} from 192.0.2.{i % 200} port 22",
            "Severity": 3,
            "Type": 1,
            "FirstOccurrence": 1_700_000_000 + i,
            "LastOccurrence": 1_700_000_000 + i,
        }
        items.append((key, serialise(fields, key)))
    return [items[i : i + batch] for i in range(0, total, batch)]


async def timed(deliver: Callable[[list[Item]], Awaitable[object]],
                batches: list[list[Item]]) -> float:
    """Alerts per second through ``deliver``, one batch after the other."""
    start = time.perf_counter()
    for b in batches:
        await deliver(b)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def row(name: str, rates: list[float]) -> None:
    med = statistics.median(rates)
    print(f"{name:<34} {med:>10,.0f} {max(rates):>10,.0f} {1e6 / med:>9.1f}", flush=True)


async def bench_file(args: argparse.Namespace, tmp: Path) -> None:
    rates = []
    for r in range(args.repeat):
        props = props_mod.load([("bench", {"SinkFile": str(tmp / f"alerts{r}.jsonl")})])
        sink = FileSink(props)
        await sink.open()
        rates.append(await timed(sink.deliver, make_batches(args.alerts, args.batch, "f")))
        await sink.aclose()
    row(f"file (batch {args.batch})", rates)


def nats_props(url: str, replicas: int) -> props_mod.Props:
    return props_mod.load([("bench", {
        "SinkType": "nats", "SinkUrl": url, "SinkReplicas": replicas,
        "SinkStream": f"BENCH_R{replicas}", "SinkSubject": f"bench.r{replicas}",
    })])


async def bench_nats(args: argparse.Namespace, url: str, replicas: int) -> None:
    sink = NatsSink(nats_props(url, replicas))
    await sink.open()
    await sink.deliver(make_batches(10, 10, "warm")[0])  # creates the stream
    rates = []
    for r in range(args.repeat):
        rates.append(await timed(sink.deliver, make_batches(args.alerts, args.batch, f"{r}")))
    await sink.aclose()
    row(f"nats JetStream R{replicas} (batch {args.batch})", rates)


async def bench_bridges(args: argparse.Namespace, url: str) -> None:
    try:
        import trio_asyncio
    except ImportError:
        trio_asyncio = None
        print("trio-asyncio not installed: its rows are skipped", flush=True)
    props = nats_props(url, 1)
    for batch in (16, 1024):
        total = min(args.alerts, 20_000) if batch < 100 else args.alerts
        thread_rates: list[float] = []
        aio_rates: list[float] = []
        for r in range(args.repeat):  # alternate, so both see the same machine load
            sink = NatsSink(props)
            await sink.open()
            await sink.deliver(make_batches(1, 1, "warm")[0])
            thread_rates.append(await timed(sink.deliver, make_batches(total, batch, f"t{r}")))
            await sink.aclose()
            if trio_asyncio is not None:
                async with trio_asyncio.open_loop():
                    pub = Publisher(props, [url.split(",")[0]], "bench")
                    await trio_asyncio.aio_as_trio(pub.connected)(2.0)
                    publish = trio_asyncio.aio_as_trio(pub.publish)
                    await publish(make_batches(1, 1, "warm")[0])
                    aio_rates.append(await timed(publish, make_batches(total, batch, f"a{r}")))
                    await trio_asyncio.aio_as_trio(pub.close)()
        row(f"bridge: own loop, thread (batch {batch})", thread_rates)
        if aio_rates:
            row(f"bridge: trio-asyncio (batch {batch})", aio_rates)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bridges", action="store_true", help="compare the trio bridges")
    parser.add_argument("--no-nats", action="store_true", help="only the file sink")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # "created stream ..." would break the table
    print(f"{'sink':<34} {'median/s':>10} {'best/s':>10} {'µs/alert':>9}", flush=True)
    with tempfile.TemporaryDirectory(prefix="probepair-sinks-") as tmpdir:
        tmp = Path(tmpdir)
        await bench_file(args, tmp)
        if args.no_nats:
            return
        cluster = NatsCluster(tmp / "nats")
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            await bench_nats(args, cluster.url, 1)
            await bench_nats(args, cluster.url, 3)
            if args.bridges:
                await bench_bridges(args, cluster.url)
            await cluster.stop()
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
