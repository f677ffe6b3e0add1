"""Issue 9: channels bounded in bytes, BufferBytes wired from props to the machine, and
byte-cap drops counted in the drop metric next to the probepair_buffer_bytes gauge.

Only the accounting is asserted here; RSS figures belong to bench/memory.py.
"""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.testing

from probepair.config import props
from probepair.errors import ConfigError
from probepair.events import Event
from probepair.failover import FailoverMachine
from probepair.metrics import Metrics
from probepair.ops import process as heap
from probepair.pair.observer import PairObserver, failover_config
from probepair.pipeline.alerts import exact_copies
from probepair.pipeline.channels import (
    EVENT_OVERHEAD,
    ITEM_OVERHEAD,
    ByteBudget,
    batch_bytes,
    items_bytes,
    open_bounded_channel,
)
from probepair.sinks.runner import MAX_BYTES, SinkRunner


def size(value: bytes) -> int:
    return len(value)


async def test_a_sender_waits_while_the_byte_budget_is_spent() -> None:
    send, recv = open_bounded_channel(100, 10, size)
    async with send, recv, trio.open_nursery() as nursery:
        await send.send(b"123456")
        assert send.budget.used == 6
        done: list[bytes] = []

        async def second() -> None:
            await send.send(b"12345")  # 6 + 5 > 10: waits for the first to be taken
            done.append(b"sent")

        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        assert done == [] and send.budget.used == 6
        assert await recv.receive() == b"123456"
        await trio.testing.wait_all_tasks_blocked()
        assert done == [b"sent"] and send.budget.used == 5
        assert recv.receive_nowait() == b"12345"
        assert send.budget.used == 0
        assert send.statistics().current_buffer_used == recv.statistics().current_buffer_used == 0


async def test_a_value_larger_than_the_budget_passes_alone() -> None:
    send, recv = open_bounded_channel(100, 10, size)
    async with send, recv:
        await send.send(b"x" * 50)  # nothing in flight: it may pass
        with pytest.raises(trio.WouldBlock):
            send.send_nowait(b"y")
        assert send.budget.used == 50
        assert recv.receive_nowait() == b"x" * 50
        send.send_nowait(b"y")
        assert send.budget.used == 1


async def test_a_send_that_does_not_happen_gives_its_bytes_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, recv = open_bounded_channel(1, 100, size)
    async with send, recv:
        await send.send(b"a")  # the channel is full by count now
        with trio.move_on_after(1) as scope:  # autojump: virtual time
            await send.send(b"bb")
        assert scope.cancelled_caught and send.budget.used == 1
        with pytest.raises(trio.WouldBlock):
            send.send_nowait(b"cc")
        assert send.budget.used == 1


async def test_clones_share_the_budget_and_the_end_of_the_channel() -> None:
    send, recv = open_bounded_channel(10, 100, size)
    async with recv:
        async with send:
            async with send.clone() as other:
                await other.send(b"from clone")
            await send.send(b"from send")
            assert send.budget.used == 19
        assert [v async for v in recv] == [b"from clone", b"from send"]
    assert send.budget.used == 0


def test_budget_rejects_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match=r"^a byte budget needs a limit of at least 1$"):
        ByteBudget(0)


def test_sizes_count_payload_and_per_item_overhead() -> None:
    batch = [Event(b"abc", b"k" * 8, 0.0), Event(b"de", b"j" * 8, 0.0)]
    assert batch_bytes(batch) == 5 + 2 * EVENT_OVERHEAD
    assert items_bytes([(b"k" * 8, b"{}"), (b"j" * 8, b"{1}")]) == 5 + 2 * ITEM_OVERHEAD


def test_buffer_bytes_and_queue_bytes_are_properties() -> None:
    p = props.load()
    assert (p.BufferBytes, p.QueueBytes) == (256 * 2**20, 32 * 2**20)
    with pytest.raises(ConfigError, match=r"^test: BufferBytes: expected an integer >= 65536"):
        props.load([("test", {"BufferBytes": 100})])


async def test_byte_cap_drops_are_counted_and_the_gauge_shows_bytes_held() -> None:
    p = props.load(
        [("test", {"Mode": "slave", "PeerHost": "127.0.0.1", "PeerPort": 9, "BufferBytes": 65536})]
    )
    config = failover_config(p)
    assert config.buffer_bytes == 65536
    machine = FailoverMachine(config, now=0.0)
    metrics = Metrics()
    send, _recv = trio.open_memory_channel[list[tuple[bytes, bytes]]](1)
    observer = PairObserver(metrics, machine, send)
    payload = b"x" * 1000
    for i in range(70):
        assert machine.event(i.to_bytes(8, "big"), payload, 0.0) is False
    observer.sync()
    r = metrics.registry
    # The cap counts 1000 payload bytes + EVENT_COST an event: 56 fit in 65536.
    assert machine.buffer_depth == 56 and machine.buffer_bytes == 56_000
    assert r.get_sample_value("probepair_events_discarded_total", {"reason": "buffer_bytes"}) == 14
    assert r.get_sample_value("probepair_events_discarded_total", {"reason": "buffer_full"}) == 0
    assert r.get_sample_value("probepair_buffer_bytes") == 56_000


def test_exact_copies_drop_what_orjson_keeps_allocated() -> None:
    payload = orjson.dumps({"Summary": "x" * 100})
    assert bytes(payload) is payload  # why a plain bytes() would not do
    [(key, copy)] = exact_copies([(b"k" * 8, payload)])
    assert key == b"k" * 8 and copy == payload and copy is not payload


def test_malloc_trim_is_callable_here() -> None:
    trim = heap.malloc_trim()
    assert trim is not None  # glibc (Debian, the CI image)
    assert trim() in (0, 1)


async def test_the_heap_is_trimmed_every_interval(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []
    monkeypatch.setattr(heap, "malloc_trim", lambda: lambda: calls.append(trio.current_time()))
    with trio.move_on_after(16):
        await heap.trim_heap_forever(5.0)
    assert calls == [5.0, 10.0, 15.0]
    monkeypatch.setattr(heap, "malloc_trim", lambda: None)
    await heap.trim_heap_forever(5.0)  # nothing to call: returns at once


async def test_the_sink_runner_collects_a_delivery_up_to_max_bytes() -> None:
    send, recv = trio.open_memory_channel[list[tuple[bytes, bytes]]](10)
    big = b"x" * (MAX_BYTES // 2 + 1)
    for i in range(3):
        send.send_nowait([(K(i), big)])
    first = await SinkRunner._next(recv)
    assert first is not None and [k for k, _ in first] == [K(0), K(1)]
    assert await SinkRunner._next(recv) == [(K(2), big)]


def K(i: int) -> bytes:
    return i.to_bytes(8, "big")
