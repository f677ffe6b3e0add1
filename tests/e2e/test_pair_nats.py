"""A pair publishing into a replicated JetStream stream: exactly once through kill -9s.

A real master/slave pair on loopback (as in test_pair_loopback.py) with ``SinkType
nats`` into one R3 stream of a three-node nats-server cluster that the test starts.
At 2,000 events/s the master is killed with SIGKILL three times (the slave takes over,
the master restarts and takes back over by handshake), and one NATS server is killed
with SIGKILL in the middle (the stream keeps its quorum). Then the stream must hold
every sent event exactly once: as many messages as distinct ``Nats-Msg-Id``\\s, and
each sent event key among them once. The takeovers' resends are the stream's
duplicates (its publish acks say so), never a second message.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import trio

from tests.e2e.feeder import Feeder
from tests.e2e.procs import (
    ACTIVE,
    STANDBY,
    PairSide,
    ProbeProcess,
    Timings,
    kill9,
    loopback_pair,
    start_probe,
    wait_metric,
)
from tests.natscluster import NatsCluster, read_stream, stream_info

pytestmark = pytest.mark.e2e

TIMINGS = Timings(beat_interval=0.2, beat_threshold=0.2, heartbeat_timeout=0.2, ack_interval=0.1)
RATE = 2000  # events per second (the figure)
CYCLES = 3  # kill -9 of the master, takeover, restart, failback
NATS_KILL_CYCLE = 1  # the cycle in which one NATS server is killed too
START_TIMEOUT = 15.0  # seconds for a probe to become active or standby
DELIVERY_TIMEOUT = 60.0  # seconds for the stream to hold everything after the feed stops
STREAM = "PROBEPAIR"


def report(text: str) -> None:
    print(f"\nnats pair: {text}")  # shown with -s: the numbers the issue asks for


async def test_pair_into_r3_stream_exactly_once_through_kill9s(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path / "nats")
    m, s = loopback_pair(tmp_path)
    sink_args = ["--sinktype", "nats", "--sinkreplicas", "3"]

    async def start_side(nursery: trio.Nursery, side: PairSide, peer: PairSide) -> ProbeProcess:
        args = side.args(peer, TIMINGS, extra=[*sink_args, "--sinkurl", cluster.url])
        return await start_probe(nursery, args, cwd=side.cwd)

    feeder = Feeder([(m.host, m.feed_port), (s.host, s.feed_port)], rate=RATE)
    async with trio.open_nursery() as servers:
        await cluster.start(servers)
        async with trio.open_nursery() as nursery:
            master = await start_side(nursery, m, s)
            slave = await start_side(nursery, s, m)
            await wait_metric(master, ACTIVE, 1, START_TIMEOUT)
            await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
            nursery.start_soon(feeder.run)
            for cycle in range(CYCLES):
                await feeder.wait_traffic(1.0)
                await kill9(master)
                await wait_metric(slave, ACTIVE, 1, TIMINGS.bound + START_TIMEOUT)
                if cycle == NATS_KILL_CYCLE:
                    await cluster.kill9(0)
                await feeder.wait_traffic(1.0)
                master = await start_side(nursery, m, s)
                await wait_metric(master, ACTIVE, 1, 5 * TIMINGS.bound + START_TIMEOUT)
                await wait_metric(slave, STANDBY, 1, START_TIMEOUT)
            await feeder.wait_traffic(1.0)
            feeder.stop()
            sent = feeder.keys()
            alive = ",".join(srv.url for srv in cluster.servers[1:])
            # Wait for the stream to hold every sent event (it only grows; bounded).
            with trio.move_on_after(DELIVERY_TIMEOUT):
                while True:
                    info = await stream_info(alive, STREAM)
                    if info.state.messages >= len(sent):
                        contents = await read_stream(alive, STREAM)
                        if sent <= set(contents.ids):
                            break
                    await trio.sleep(0.5)
            assert await slave.stop() == 0
            assert await master.stop() == 0
        contents = await read_stream(alive, STREAM)
        info = await stream_info(alive, STREAM)
        servers.cancel_scope.cancel()
    copies = Counter(contents.ids)
    lost = sent - copies.keys()
    twice = {k: n for k, n in copies.items() if n > 1}
    report(
        f"sent {len(sent)} at {RATE}/s through {CYCLES} kill -9 cycles and one NATS server "
        f"killed; stream holds {contents.messages} messages ({len(copies)} distinct ids, "
        f"{contents.messages - len(sent)} ProbeWatch self-events), lost {len(lost)}, "
        f"stored twice {len(twice)}; replicas {info.config.num_replicas}"
    )
    assert info.config.num_replicas == 3
    assert feeder.seqs(lost) == []
    assert twice == {}
    assert contents.messages == len(contents.ids) == len(copies)
    # Anything else in the stream is the probes' own ProbeWatch events.
    others = [p for i, p in zip(contents.ids, contents.payloads, strict=True) if i not in sent]
    assert all(b'"Manager":"ProbeWatch"' in p for p in others)
