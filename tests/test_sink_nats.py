"""The nats sink against a real JetStream cluster on loopback (tests/natscluster.py).

Each cluster test starts its own nats-server processes in a temp dir and stops them;
without nats-server these tests skip, with CI=true they fail. Real sockets, so the real
clock: every wait is bounded with ``fail_after``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path

import pytest
import trio

from probepair.config import props as P
from probepair.errors import ConfigError, SinkError
from probepair.events import Item
from probepair.metrics import Metrics
from probepair.sinks import make_sink
from probepair.sinks.asyncbridge import STOP_TIMEOUT
from probepair.sinks.jetstream import (
    CLOSE_TIMEOUT,
    NatsSink,
    parse_servers,
    subject_token,
)
from probepair.sinks.runner import BACKOFF_MAX, SinkRunner
from probepair.sinks.spool import Spool
from tests.natscluster import NatsCluster, free_tcp_port, read_stream, stream_info

WAIT = 30.0  # seconds for any one step against real servers on a loaded machine


def nats_props(url: str, **extra: object) -> P.Props:
    return P.load([("test", {"SinkType": "nats", "SinkUrl": url, **extra})])


def alerts(n: int, tag: bytes = b"") -> list[Item]:
    return [
        (os.urandom(8), b'{"Summary":"alert %d %s","Node":"n1"}' % (i, tag)) for i in range(n)
    ]


# -- configuration ----------------------------------------------------------------------


def test_sink_url_is_a_comma_separated_list_of_nats_and_tls_servers() -> None:
    assert parse_servers(" nats://a:4222, tls://u:p@b:4223 ,") == [
        "nats://a:4222",
        "tls://u:p@b:4223",
    ]


@pytest.mark.parametrize(
    ("url", "bad"),
    [
        ("http://a:4222", "http://a:4222"),
        ("nats://a:4222,a:4223", "a:4223"),
        ("nats://a:port", "nats://a:port"),
        ("nats://", "nats://"),
    ],
)
def test_a_bad_sink_url_names_the_property_and_the_entry(url: str, bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^sink nats: SinkUrl: expected nats://host:port or "
                       rf"tls://host:port, got '{bad}'$"):
        make_sink(nats_props(url))


def test_no_sink_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^sink nats: SinkUrl: SinkType 'nats' needs "):
        make_sink(P.load([("test", {"SinkType": "nats"})]))


@pytest.mark.parametrize(
    ("prop", "value", "what"),
    [
        ("SinkSubject", "alerts.>", "a subject without wildcards"),
        ("SinkSubject", "alerts..x", "a subject without wildcards"),
        ("SinkStream", "A.B", "a stream name"),
    ],
)
def test_bad_subject_or_stream_names_the_property(prop: str, value: str, what: str) -> None:
    with pytest.raises(ConfigError, match=rf"^sink nats: {prop}: expected {what}, got "):
        make_sink(nats_props("nats://127.0.0.1:4222", **{prop: value}))


def test_a_missing_credentials_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "probe.creds"
    with pytest.raises(ConfigError, match=r"^sink nats: SinkCredentialsFile: no such file: '"):
        make_sink(nats_props("nats://127.0.0.1:4222", SinkCredentialsFile=str(missing)))


def test_nats_properties_defaults_and_ranges() -> None:
    props = P.load()
    assert (props.SinkSubject, props.SinkStream, props.SinkReplicas) == (
        "probepair.alerts", "PROBEPAIR", 1,
    )
    # The window must outlast a takeover plus the sink's longest back-off by far.
    assert props.SinkDedupWindow == 600.0
    assert props.SinkDedupWindow > 10 * (props.takeover_bound + BACKOFF_MAX)
    with pytest.raises(ConfigError, match=r"^f: SinkReplicas: expected an integer between 1 "
                       r"and 5, got 7$"):
        P.load([("f", {"SinkReplicas": 7})])


def test_a_short_dedup_window_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="probepair.sinks.jetstream"):
        NatsSink(nats_props("nats://127.0.0.1:4222", SinkDedupWindow=8))
    assert [r.getMessage() for r in caplog.records] == [
        "nats:PROBEPAIR: SinkDedupWindow 8s is short: a takeover (4s) plus the sink's longest "
        f"back-off ({BACKOFF_MAX:g}s) may resend alerts older than the window, stored twice then"
    ]


def test_table_becomes_one_subject_token() -> None:
    assert subject_token("custom.vmstatus") == "custom_vmstatus"
    assert subject_token("a b*>") == "a_b__"


# -- against a real cluster -------------------------------------------------------------


async def test_r3_stream_stores_each_event_key_once(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        sink = NatsSink(nats_props(cluster.url, SinkReplicas=3, SinkDedupWindow=120))
        items = alerts(500)
        table = (os.urandom(8), b'{"Summary":"vm","Table":"custom.vmstatus"}')
        with trio.fail_after(WAIT):
            async with sink.lifetime():
                await sink.open()
                assert await sink.deliver(items) == [k for k, _ in items]
                # A takeover's flush, a spool replay: the same keys again, stored once.
                again = [*items[:200], table]
                assert await sink.deliver(again) == [k for k, _ in again]
                assert sink.duplicates == 200
                await sink.aclose()
        info = await stream_info(cluster.url, "PROBEPAIR")
        contents = await read_stream(cluster.url, "PROBEPAIR")
        await cluster.stop()
        nursery.cancel_scope.cancel()
    assert info.config.num_replicas == 3
    assert info.config.duplicate_window == 120
    assert contents.messages == 501
    assert contents.ids == [k.hex() for k, _ in items] + [table[0].hex()]
    assert contents.payloads[:500] == [p for _, p in items]
    assert contents.subjects == ["probepair.alerts"] * 500 + ["probepair.alerts.custom_vmstatus"]


async def test_deliveries_go_on_when_one_server_is_killed(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path)
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        # Connected to the first server only at first: that is the one killed.
        url = ",".join(s.url for s in cluster.servers)
        sink = NatsSink(nats_props(url, SinkReplicas=3))
        sent: list[Item] = []
        async with sink.lifetime():
            with trio.fail_after(WAIT):
                await sink.open()
                sent += alerts(300, b"before")
                await sink.deliver(sent)
            connected = sink.publisher._nc.connected_url.port  # which member we talk to
            await cluster.kill9([s.port for s in cluster.servers].index(connected))
            failures = 0
            with trio.fail_after(WAIT):
                batch = alerts(300, b"after")
                while True:
                    try:
                        await sink.deliver(batch)
                        break
                    except SinkError:
                        failures += 1  # the runner would spool and retry; retry here
                        await trio.sleep(0.2)
                sent += batch
                await sink.aclose()
        alive = ",".join(s.url for s in cluster.servers if s.port != connected)
        contents = await read_stream(alive, "PROBEPAIR")
        await cluster.stop()
        nursery.cancel_scope.cancel()
    assert sorted(contents.ids) == sorted(k.hex() for k, _ in sent)
    assert contents.messages == len(sent)


async def test_spools_while_no_server_answers_then_replays_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = NatsCluster(tmp_path, size=1)
    wall = [1_000_000.0]
    sink = NatsSink(
        nats_props(cluster.url, SinkDedupWindow=60), wall_clock=lambda: wall[0]
    )
    delivered: list[bytes] = []
    spool = Spool(str(tmp_path / "spool.saf"))
    runner = SinkRunner(sink, Metrics(), lambda keys, at: delivered.extend(keys), spool)
    send, recv = trio.open_memory_channel[list[Item]](4)
    first, second = alerts(50, b"first"), alerts(50, b"second")
    both = sum(12 + len(p) for _, p in first + second)  # spool record: key, length, alert
    async with trio.open_nursery() as servers:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.run, recv)
            with trio.fail_after(WAIT):
                await send.send(first)
                while not spool.pending:  # nobody answers: the batch goes to the spool
                    await trio.sleep(0.05)
                await send.send(second)  # behind the spool, in order
                while spool.backlog_bytes < both:
                    await trio.sleep(0.05)
            assert delivered == []
            wall[0] += 3600  # an hour-long outage: longer than the 60 s window
            with caplog.at_level(logging.WARNING, logger="probepair.sinks.jetstream"):
                await cluster.start(servers)
                with trio.fail_after(WAIT):
                    while len(delivered) < 100:
                        await trio.sleep(0.05)
            await send.aclose()  # the runner drains, closes the sink and returns
        assert not spool.pending
        contents = await read_stream(cluster.url, "PROBEPAIR")
        servers.cancel_scope.cancel()
    assert delivered == [k for k, _ in first + second]
    assert contents.ids == [k.hex() for k, _ in first + second]
    assert any(
        "of outage, longer than stream PROBEPAIR's duplicate window (60s)" in r.getMessage()
        for r in caplog.records
    )


async def test_a_spool_left_by_an_earlier_run_older_than_the_window_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = NatsCluster(tmp_path, size=1)
    old = alerts(20, b"old")
    spool = Spool(str(tmp_path / "spool.saf"))
    spool.append(old)
    hour_ago = time.time() - 3600
    os.utime(spool.path, (hour_ago, hour_ago))
    delivered: list[bytes] = []
    sink = NatsSink(nats_props(cluster.url, SinkDedupWindow=60))
    runner = SinkRunner(sink, Metrics(), lambda keys, at: delivered.extend(keys), spool)
    send, recv = trio.open_memory_channel[list[Item]](4)
    async with trio.open_nursery() as servers:
        await cluster.start(servers)
        with caplog.at_level(logging.WARNING, logger="probepair.sinks.jetstream"):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(runner.run, recv)
                await send.aclose()  # nothing new: the runner replays the spool and ends
        servers.cancel_scope.cancel()
    assert delivered == [k for k, _ in old]
    warnings = [r.getMessage() for r in caplog.records if "of outage" in r.getMessage()]
    assert len(warnings) == 1
    assert re.match(r"^nats:PROBEPAIR: delivering again after 36\d\ds of outage, longer than "
                    r"stream PROBEPAIR's duplicate window \(60s\)", warnings[0])


async def test_a_cancelled_delivery_leaves_the_sink_usable(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path, size=1)
    async with trio.open_nursery() as nursery:
        await cluster.start(nursery)
        sink = NatsSink(nats_props(cluster.url))
        first, second = alerts(2000, b"cancelled"), alerts(10, b"after")
        with trio.fail_after(WAIT):
            async with sink.lifetime():
                await sink.open()
                with trio.CancelScope() as scope:
                    scope.cancel()  # cancels the publishing coroutine on the asyncio loop too
                    await sink.deliver(first)
                assert scope.cancelled_caught
                assert await sink.deliver(second) == [k for k, _ in second]
                await sink.aclose()
        contents = await read_stream(cluster.url, "PROBEPAIR")
        nursery.cancel_scope.cancel()
    # Whatever of the cancelled batch went out is there once; the next batch is complete.
    assert contents.ids[-10:] == [k.hex() for k, _ in second]
    assert len(set(contents.ids)) == len(contents.ids)


async def test_open_fails_quickly_when_no_server_answers() -> None:
    sink = NatsSink(nats_props(f"nats://127.0.0.1:{free_tcp_port()}"))
    with trio.fail_after(WAIT):
        async with sink.lifetime():
            no_server = r"^sink nats:PROBEPAIR: no NATS server answers at "
            with pytest.raises(SinkError, match=no_server):
                await sink.open()
            with pytest.raises(SinkError, match=r"no NATS server answers"):
                await sink.deliver(alerts(1))
            await sink.aclose()


# -- the asyncio bridge's lifetime ------------------------------------------------------


def bridge_threads() -> list[str]:
    """The threads running a nats sink's asyncio loop now (named after the sink)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("probepair-nats:")]


async def test_the_bridge_thread_runs_only_inside_the_lifetime() -> None:
    sink = NatsSink(nats_props(f"nats://127.0.0.1:{free_tcp_port()}"))
    with pytest.raises(RuntimeError, match=r"used outside its lifetime\(\)$"):
        await sink.open()
    assert bridge_threads() == []
    with trio.fail_after(WAIT):
        async with sink.lifetime():
            with pytest.raises(SinkError, match=r"no NATS server answers"):
                await sink.open()  # unreachable: the client keeps reconnecting meanwhile
            with pytest.raises(SinkError, match=r"not connected"):
                await sink.check()
            assert bridge_threads() == ["probepair-nats:PROBEPAIR"]
    assert bridge_threads() == []  # stopped and joined, with no aclose() called
    with pytest.raises(RuntimeError, match=r"used outside its lifetime\(\)$"):
        await sink.deliver(alerts(1))


async def test_a_cancelled_lifetime_still_joins_the_bridge_thread() -> None:
    sink = NatsSink(nats_props(f"nats://127.0.0.1:{free_tcp_port()}"))
    start = time.monotonic()
    with trio.move_on_after(0.2) as scope:  # in the middle of open()'s CONNECT_WAIT
        async with sink.lifetime():
            await sink.open()
    assert scope.cancelled_caught
    assert bridge_threads() == []
    assert time.monotonic() - start < 0.2 + CLOSE_TIMEOUT + STOP_TIMEOUT


async def test_the_runner_leaves_no_bridge_thread_when_no_server_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = NatsSink(nats_props(f"nats://127.0.0.1:{free_tcp_port()}"))
    runner = SinkRunner(sink, Metrics(), lambda keys, at: None)
    send, recv = trio.open_memory_channel[list[Item]](1)
    with caplog.at_level(logging.ERROR, logger="probepair.sinks.jetstream"):
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(runner.run, recv)
                await send.aclose()  # nothing to deliver: the runner opens, fails, closes
    assert bridge_threads() == []
    assert [r.getMessage() for r in caplog.records if r.name == "probepair.sinks.jetstream"] == []
