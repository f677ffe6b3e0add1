"""A sink that comes back is written to again within a second, whatever the outage."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from probepair.errors import SinkError
from probepair.events import Item, key_of
from probepair.metrics import Metrics
from probepair.sinks.runner import BACKOFF_MAX, SinkRunner
from probepair.sinks.spool import Spool


class OutageSink:
    """Down (every delivery fails) from ``down`` until ``up`` seconds of trio time."""

    name = "outage"

    def __init__(self, down: float, up: float) -> None:
        self.down, self.up = down, up
        self.delivered: list[tuple[float, list[Item]]] = []

    async def open(self) -> None:
        await trio.lowlevel.checkpoint()

    async def deliver(self, items: list[Item]) -> list[bytes]:
        await trio.lowlevel.checkpoint()
        if self.down <= trio.current_time() < self.up:
            raise SinkError(self.name, "down")
        self.delivered.append((trio.current_time(), items))
        return [k for k, _ in items]

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@pytest.mark.parametrize("outage", [0.3, 8.0, 120.0])
async def test_delivery_resumes_within_a_second_of_the_sink_coming_back(
    outage: float, tmp_path: Path, metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sink = OutageSink(down=1.0, up=1.0 + outage)
    spool = Spool(str(tmp_path / "s.saf"))
    send, recv = trio.open_memory_channel[list[Item]](0)
    sent: list[Item] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(SinkRunner(sink, metrics, lambda keys, at: None, spool).run, recv)
            async with send:
                while trio.current_time() < sink.up + 1:  # an alert every 0.1 s throughout
                    sent.append((key_of(b"%d" % len(sent)), b'{"n":%d}' % len(sent)))
                    await send.send([sent[-1]])
                    await trio.sleep(0.1)
    finally:
        spool.close()
    first_after = min(t for t, _ in sink.delivered if t >= sink.up)
    assert first_after - sink.up <= BACKOFF_MAX < 1.0
    assert [i for _, items in sink.delivered for i in items] == sent  # in order, once
