"""nats-py under trio: its own asyncio loop in a thread vs trio-asyncio, alerts/s.

The nats sink (probepair/sinks/jetstream.py) runs nats-py on its own asyncio loop in one
thread. This compares that with trio-asyncio (``pip install trio-asyncio``; its rows are
skipped when it is missing), driving the very same ``Publisher`` (pipelined publishes,
acks awaited per batch) into an R1 stream of a three-node nats-server cluster started on
loopback. Two batch sizes: 16 (a steady 2,000 events/s reaches the sink as ~20 alerts
per 10 ms, so the per-batch cost of the bridge counts) and 1024 (a busy sink). The two
bridges alternate round by round so both see the same machine load.

    .venv/bin/python bench/nats_bridge.py [--alerts 50000] [--rounds 3]

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
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probepair.config import props as props_mod
from probepair.events import Item
from probepair.pipeline.alerts import serialise
from probepair.sinks.jetstream import NatsSink, Publisher
from tests.natscluster import NatsCluster


def batches(total: int, size: int, tag: str) -> list[list[Item]]:
    """``total`` distinct 12-field alerts (~260 bytes each) in batches of ``size``."""
    items: list[Item] = []
    for i in range(total):
        key = os.urandom(8)
        fields: dict[str, Any] = {
            "Identifier": f"host{i % 50}:sshd:{i % 7}", "Node": f"host{i % 50}",
            "NodeAlias": f"10.0.{i % 50}.1", "Manager": "probepair", "Agent": "sshd",
            "AlertGroup": "auth", "AlertKey": f"{tag}-{i}",
            "Summary": f"Failed password for user{i % 13} from 192.0.2.{i % 200} port 22",
            "Severity": 3, "Type": 1, "FirstOccurrence": 1_700_000_000 + i,
            "LastOccurrence": 1_700_000_000 + i,
        }
        items.append((key, serialise(fields, key)))
    return [items[i : i + size] for i in range(0, total, size)]


async def timed(deliver: Callable[[list[Item]], Awaitable[object]],
                work: list[list[Item]]) -> float:
    start = time.perf_counter()
    for b in work:
        await deliver(b)
    return sum(len(b) for b in work) / (time.perf_counter() - start)


def row(name: str, rates: list[float]) -> None:
    med = statistics.median(rates)
    print(f"{name:<36} {max(rates):>10,.0f} {med:>10,.0f} {1e6 / med:>9.1f}", flush=True)


async def compare(url: str, alerts: int, rounds: int) -> None:
    try:
        import trio_asyncio
    except ImportError:
        trio_asyncio = None
        print("trio-asyncio not installed: its rows are skipped", flush=True)
    props = props_mod.load([("bench", {
        "SinkType": "nats", "SinkUrl": url, "SinkStream": "BRIDGE", "SinkSubject": "bridge",
    })])
    for size in (16, 1024):
        total = min(alerts, 20_000) if size < 100 else alerts
        thread_rates: list[float] = []
        aio_rates: list[float] = []
        for r in range(rounds):
            sink = NatsSink(props)
            async with sink.lifetime():
                await sink.open()
                await sink.deliver(batches(1, 1, "warm")[0])  # connects, creates the stream
                thread_rates.append(await timed(sink.deliver, batches(total, size, f"t{r}")))
                await sink.aclose()
            if trio_asyncio is not None:
                async with trio_asyncio.open_loop():
                    pub = Publisher(props, url.split(","), "bench")
                    await trio_asyncio.aio_as_trio(pub.connected)(2.0)
                    publish = trio_asyncio.aio_as_trio(pub.publish)
                    await publish(batches(1, 1, "warm")[0])
                    aio_rates.append(await timed(publish, batches(total, size, f"a{r}")))
                    await trio_asyncio.aio_as_trio(pub.close)()
        row(f"own loop in a thread (batch {size})", thread_rates)
        if aio_rates:
            row(f"trio-asyncio (batch {size})", aio_rates)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--alerts", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # "created stream ..." would break the table
    print(f"{'bridge':<36} {'best/s':>10} {'median/s':>10} {'µs/alert':>9}", flush=True)
    with tempfile.TemporaryDirectory(prefix="probepair-bridge-") as tmp:
        cluster = NatsCluster(Path(tmp))
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            await compare(cluster.url, args.alerts, args.rounds)
            await cluster.stop()
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
