"""A standby's sink health is verified, not assumed (issue 21 item 1).

A standby delivers nothing, so only a check can tell it that its sink is down; the
health it reports (and its heartbeats carry) comes from those checks. MockClock.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import trio
import trio.testing

from probepair.config import props as P
from probepair.errors import SinkError
from probepair.events import Item, key_of
from probepair.metrics import Metrics
from probepair.sinks import make_sink
from probepair.sinks.runner import CHECK_INTERVAL, SinkRunner, check_interval

CHECKS = "probepair_sink_checks_total"


class CheckedSink:
    """Works unless ``down`` holds the trio time; its checks may also hang."""

    name = "checked"

    def __init__(self) -> None:
        self.down: tuple[float, float] = (math.inf, math.inf)
        self.hang = False
        self.checks: list[float] = []
        self.deliveries: list[float] = []

    def _is_down(self) -> bool:
        return self.down[0] <= trio.current_time() < self.down[1]

    async def open(self) -> None:
        await trio.lowlevel.checkpoint()

    async def check(self) -> None:
        self.checks.append(trio.current_time())
        if self.hang:
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        if self._is_down():
            raise SinkError(self.name, "down")

    async def deliver(self, items: list[Item]) -> list[bytes]:
        await trio.lowlevel.checkpoint()
        if self._is_down():
            raise SinkError(self.name, "down")
        self.deliveries.append(trio.current_time())
        return [k for k, _ in items]

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def test_the_check_cadence_is_a_quarter_of_sink_failover_at_most_5_s() -> None:
    assert check_interval(30.0) == CHECK_INTERVAL == 5.0
    assert check_interval(3.0) == 0.75
    assert check_interval(0.0) == 5.0  # no sink handover: still checked, for the metric


async def test_an_idle_runner_checks_its_sink_and_reports_what_it_finds(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sink = CheckedSink()
    sink.down = (12.0, 31.0)
    reports: list[tuple[float, float | None]] = []
    runner = SinkRunner(sink, metrics, lambda keys, at: None, check_every=5.0)
    runner.on_health = lambda since, spooled: reports.append((trio.current_time(), since))
    send, recv = trio.open_memory_channel[list[Item]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        await trio.sleep(38.0)
        assert sink.checks == [5.0 * i for i in range(0, 8)]  # at start, then every 5 s
        assert sink.deliveries == []
        await send.aclose()
    # the check at 15 found it down (failing since that check), the one at 35 up again
    assert reports == [(15.0, 15.0), (35.0, None)]
    assert metrics.count(CHECKS, result="failure") == 4  # 15, 20, 25, 30
    assert metrics.count(CHECKS, result="success") == 4  # 0, 5, 10, 35


async def test_a_delivery_counts_as_a_check(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sink = CheckedSink()
    runner = SinkRunner(sink, metrics, lambda keys, at: None, check_every=5.0)
    send, recv = trio.open_memory_channel[list[Item]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        async with send:
            for n in range(10):  # an alert every 2 s: the sink never idles 5 s
                await send.send([(key_of(b"%d" % n), b"{}")])
                await trio.sleep(2.0)
            assert runner.verified_age() <= 2.0
    assert sink.checks == [0.0]  # only the first, before anything was delivered
    assert len(sink.deliveries) == 10


async def test_a_check_that_hangs_is_a_failure(
    metrics: Metrics, autojump_clock: trio.testing.MockClock
) -> None:
    sink = CheckedSink()
    sink.hang = True
    reports: list[float | None] = []
    runner = SinkRunner(sink, metrics, lambda keys, at: None, check_every=2.0)
    runner.on_health = lambda since, spooled: reports.append(since)
    send, recv = trio.open_memory_channel[list[Item]](0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner.run, recv)
        await trio.sleep(3.5)
        await send.aclose()
    assert reports == [0.0]  # failing since the first check, which never answered
    assert metrics.count(CHECKS, result="failure") >= 1
    assert math.isnan(runner.verified_age())


def _load(**values: object) -> P.Props:
    return P.load([("test", {"FeedPort": 0, **values})])


async def test_the_file_sink_check_opens_the_file_and_fails_where_it_cannot(
    tmp_path: Path,
) -> None:
    sink = make_sink(_load(SinkType="file", SinkFile=str(tmp_path / "a.jsonl")))
    await sink.check()  # type: ignore[attr-defined]
    assert (tmp_path / "a.jsonl").exists()
    await sink.aclose()
    (tmp_path / "plain").write_text("")  # a file where the directory should be: even
    bad = make_sink(_load(SinkType="file", SinkFile=str(tmp_path / "plain" / "a.jsonl")))
    with pytest.raises(SinkError, match="cannot open"):  # root cannot open below it
        await bad.check()  # type: ignore[attr-defined]


async def test_the_tcp_sink_check_sees_a_collector_that_closed_the_connection() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    sink = make_sink(_load(SinkType="tcp", SinkAddress=f"127.0.0.1:{port}"))
    async with listener:
        await sink.check()  # type: ignore[attr-defined]  # connects
        server = await listener.accept()
        await sink.check()  # type: ignore[attr-defined]  # still connected
        await server.aclose()  # the collector goes away
        await trio.sleep(0.05)
    with pytest.raises(SinkError):
        await sink.check()  # type: ignore[attr-defined]
    await sink.aclose()


async def test_the_sqlite_sink_check_answers_a_query(tmp_path: Path) -> None:
    sink = make_sink(_load(SinkType="sqlite", SinkDatabase=str(tmp_path / "a.db")))
    await sink.check()  # type: ignore[attr-defined]
    await sink.aclose()
