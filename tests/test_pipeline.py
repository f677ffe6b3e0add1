"""The processing stage without a rules file: tokens become the alert; the gate decides."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import trio

from probepair.config import props
from probepair.events import Event, Item, key_of
from probepair.metrics import Metrics
from probepair.pipeline.processor import AlwaysForward, Processor


class HoldingGate:
    """Lets every key through except those in ``held``; records what it saw."""

    def __init__(self, held: set[bytes]) -> None:
        self.held = held
        self.seen: list[tuple[bytes, bytes]] = []

    def event(self, key: bytes, payload: bytes, now: float = 0.0) -> bool:
        self.seen.append((key, payload))
        return key not in self.held

    flushing = False  # never flushes: nothing waits behind it

    def batch_event(self) -> tuple[object, float]:
        return self.event, 0.0

    def delivered(self, keys: list[bytes]) -> None:
        pass

    def bypassed(self, count: int) -> None:
        self.bypassed_count = getattr(self, "bypassed_count", 0) + count

    def request_mode(self, mode: str, reason: str) -> None:
        pass


def event(raw: bytes, index: int = 0) -> Event:
    return Event(raw, key_of(raw, index), 1.0)


def processor(metrics: Metrics, wall_clock: Callable[[], float], gate: object,
              fmt: str = "line") -> Processor:
    p = props.load([("test", {"FeedPort": 0, "FeedFormat": fmt, "RulesFile": ""})])
    return Processor(p, None, gate, metrics, wall_clock)  # type: ignore[arg-type]


def test_tokens_become_the_alert(metrics: Metrics, wall_clock: Callable[[], float]) -> None:
    proc = processor(metrics, wall_clock, AlwaysForward(), fmt="syslog")
    ev = event(b"<34>Oct 11 22:14:15 web1 su: failed")
    [(key, payload)] = proc.process([ev])
    assert key == ev.key
    assert orjson.loads(payload) == {
        "Line": "<34>Oct 11 22:14:15 web1 su: failed", "Priority": "34", "Facility": "auth",
        "SyslogSeverity": "2", "Timestamp": "Oct 11 22:14:15", "Hostname": "web1",
        "Program": "su", "ProcId": "", "Message": "failed", "Token1": "Oct",
        "Token2": "11", "Token3": "22:14:15", "Token4": "web1", "Token5": "su:",
        "Token6": "failed", "EventKey": ev.key.hex(),
    }
    assert metrics.registry.get_sample_value("probepair_events_received_total") == 1


def test_gate_holds_some_keys(metrics: Metrics, wall_clock: Callable[[], float]) -> None:
    batch = [event(b"a b"), event(b"held"), event(b"a b", 1), event(b"c")]
    gate = HoldingGate(held={batch[1].key, batch[3].key})
    out = processor(metrics, wall_clock, gate).process(batch)
    assert [key for key, _ in out] == [batch[0].key, batch[2].key]  # in order
    assert [orjson.loads(p) for _, p in out] == [
        {"Line": "a b", "Token1": "a", "Token2": "b", "EventKey": batch[0].key.hex()},
        {"Line": "a b", "Token1": "a", "Token2": "b", "EventKey": batch[2].key.hex()},
    ]
    # the gate saw every alert, already serialised, the held ones too
    assert [key for key, _ in gate.seen] == [ev.key for ev in batch]
    assert gate.seen[1][1] == b'{"Line":"held","Token1":"held","EventKey":"%s"}' % \
        batch[1].key.hex().encode()
    assert metrics.registry.get_sample_value("probepair_events_received_total") == 4


def test_json_format(metrics: Metrics, wall_clock: Callable[[], float]) -> None:
    ev = event(b'{"Node": "web1", "Severity": 4}')
    [(_, payload)] = processor(metrics, wall_clock, AlwaysForward(), fmt="json").process([ev])
    alert = orjson.loads(payload)
    assert (alert["Node"], alert["Severity"], alert["EventKey"]) == ("web1", "4", ev.key.hex())


def test_omnibus_format_reads_the_event(
    metrics: Metrics, wall_clock: Callable[[], float]
) -> None:
    """FeedFormat omnibus: arrival time, sender and event count come from the Event."""
    proc = processor(metrics, wall_clock, AlwaysForward(), fmt="omnibus")
    raw = b"<38>Nov 22 10:00:00 myhost sshd[123]: Failed password for root"
    batch = [Event(raw, key_of(raw), 1_700_000_000.5, source=("192.0.2.1", 514)),
             Event(b"x", key_of(b"x"), 1_700_000_001.0)]
    first, second = (orjson.loads(p) for _, p in proc.process(batch))
    assert (first["Details"], first["Token4"], first["RemoteHostInfo"]) == (
        "Failed password for root", "myhost", "192.0.2.1")
    assert (first["EventCount"], first["ArrivalTime"]) == ("1", "1700000000")
    assert (second["EventCount"], second["Time"], second["Details"]) == ("2", "1700000001", "")
    assert "RemoteHostInfo" not in second


async def test_run_forwards_batches_until_the_feed_ends(
    metrics: Metrics, wall_clock: Callable[[], float]
) -> None:
    gate = HoldingGate(held={key_of(b"held")})
    proc = processor(metrics, wall_clock, gate)
    feed_send, feed_recv = trio.open_memory_channel[list[Event]](4)
    sink_send, sink_recv = trio.open_memory_channel[list[Item]](4)
    async with feed_send, sink_send:
        await feed_send.send([event(b"one"), event(b"held")])
        await feed_send.send([event(b"held")])  # nothing let through: no empty batch
        await feed_send.send([event(b"two")])
        feed_send.close()
        with trio.fail_after(5):
            await proc.run(feed_recv, sink_send)
    batches = [batch async for batch in sink_recv]
    assert [[key for key, _ in batch] for batch in batches] == [[key_of(b"one")], [key_of(b"two")]]


def test_rules_tokens_read_several_times_see_assignments() -> None:
    # The generated rules read a token used in several places once, into a local
    # (rules/codegen.py _bind_tokens), but not one the rules assign: a read after the
    # assignment sees the new value. (Here because tests/rules belongs to the rules owner.)
    from probepair.rules import RulesContext, compile_rules

    program = compile_rules(
        '@A = $x + $y\nif ($y == "2") { $x = "X" + $x }\n@B = $x + $y\n@C = $y + $y\n',
        source="t.rules",
    )
    assert "_t0 = Tg('y', '')" in program.python_source
    ctx = RulesContext(props={}, assigned={}, log=lambda level, msg: None,
                       on_error=lambda exc: None, wall_clock=lambda: 0.0, hostname="h")
    assert program.run({"x": "1", "y": "2"}, ctx) == {"A": "12", "B": "X12", "C": "22"}
    assert program.run({"y": "3"}, ctx) == {"A": "3", "B": "3", "C": "33"}
