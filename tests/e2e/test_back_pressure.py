"""QueueSize back-pressure with a real probe: a slow sink makes the feed wait, so the
kernel drops what the probe cannot take (counted), and the probe loses nothing it took.

README: "under overload the feed waits and the kernel drops
(``probepair_feed_kernel_drops_total``)".
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from tests.e2e.faults import start_http_sink
from tests.e2e.feeder import Feeder
from tests.e2e.procs import free_port, scrape, start_probe
from tests.e2e.sinkcheck import read_keys

pytestmark = pytest.mark.e2e

SENT = 5000


async def test_a_slow_sink_makes_the_kernel_drop_and_the_probe_lose_nothing_it_took(
        tmp_path: Path) -> None:
    port, server_file = free_port(socket.SOCK_STREAM), tmp_path / "server.jsonl"
    feed_port, metrics_port = free_port(), free_port(socket.SOCK_STREAM)
    async with trio.open_nursery() as nursery:
        server = await start_http_sink(nursery, port, server_file, delay=0.2)
        probe = await start_probe(nursery, [
            "--name", "bp", "--feedaddress", "127.0.0.1", "--feedport", str(feed_port),
            "--feedformat", "line", "--rulesfile", "", "--batchlatency", "0",
            "--sinktype", "http", "--sinkurl", f"http://127.0.0.1:{port}/",
            "--storeandforward", "false", "--queuesize", "1", "--feedrcvbuf", "65536",
            "--metricsaddress", "127.0.0.1", "--metricsport", str(metrics_port),
        ], cwd=tmp_path)
        feeder = Feeder([("127.0.0.1", feed_port)], rate=20000)
        await feeder.run(SENT)  # far faster than a sink that takes 0.2 s a batch
        # Everything the probe took reaches the sink (its own ProbeWatch events aside).
        with trio.fail_after(60):
            while True:
                m = await scrape(probe)
                taken = m["probepair_events_received_total"]
                if taken > 0 and len(read_keys(server_file)) >= taken:
                    break
                await trio.sleep(0.2)
        m = await scrape(probe)
        assert await probe.stop() == 0
        server.kill()
    keys = read_keys(server_file)
    drops = m["probepair_feed_kernel_drops_total"]
    print(f"\nsent {SENT}, taken {taken:.0f}, kernel drops {drops:.0f}, in the sink {len(keys)}")
    assert drops > 0  # the feed waited: the kernel dropped what did not fit
    assert taken + drops == SENT  # every datagram is either taken or counted as dropped
    assert len(keys) == len(set(keys)) == taken  # everything taken was delivered, once
    assert set(keys) <= feeder.keys()
