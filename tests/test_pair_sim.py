"""Two PeerDrivers over a seeded lossy in-memory network, for hours of virtual time.

Each probe runs what the real runtime will: a feed copy (every event reaches both
probes, each after its own small delay), the gate (``driver.event``), a sink that
acknowledges after a latency (``driver.delivered``), and the driver itself. Kills cancel
a probe's tasks (its queued and in-flight events are lost with it); a restart builds a
fresh machine with a new boot id on the same link. ``autojump_clock`` makes hours of
beats take a fraction of a second, and every random choice is seeded.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from probepair.events import key_of
from probepair.failover import (
    Failback,
    FailoverConfig,
    FailoverMachine,
    HandoverReason,
    Mode,
    Role,
)
from probepair.failover.wire import make_boot_id
from probepair.pair.driver import PeerDriver
from probepair.sinks.runner import check_interval
from tests.fakes import FakeNetwork, ListSink, MemoryLink

SECRET = b"pair secret"
BOUND = 4.0  # BeatInterval + BeatThreshold + HeartbeatTimeout at the defaults 2 + 1 + 1


@dataclass(eq=False)
class SimProbe:
    """One probe process: feed copy -> gate -> sink, plus its PeerDriver."""

    name: str
    mode: Mode
    node_id: int
    link: MemoryLink
    sink: ListSink
    rng: random.Random
    failback: Failback = Failback.HANDSHAKE
    sink_failover: float = 30.0
    driver: PeerDriver | None = None
    roles: list[tuple[float, Role, Role, str]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    split_brains: int = 0
    gap_fills: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    _scope: trio.CancelScope | None = None
    _feed: trio.MemorySendChannel[tuple[float, bytes, bytes]] | None = None
    _to_sink: trio.MemorySendChannel[list[bytes]] | None = None
    _next_at: float = 0.0

    @property
    def alive(self) -> bool:
        return self.driver is not None

    @property
    def active(self) -> bool:
        return self.driver is not None and self.driver.machine.active

    async def start(self, nursery: trio.Nursery) -> None:
        self.link.clear()  # a new process gets a new socket
        boot = make_boot_id(1_700_000_000 + trio.current_time(), self.rng.randbytes(4))
        cfg = FailoverConfig(mode=self.mode, node_id=self.node_id, boot_id=boot,
                             failback=self.failback, sink_failover=self.sink_failover)
        await nursery.start(self._run, cfg, name=f"probe:{self.name}")

    def kill(self) -> None:
        assert self._scope is not None
        self._scope.cancel()
        self.driver = self._feed = self._to_sink = None

    def feed(self, key: bytes, payload: bytes) -> None:
        """The probe's own copy of an event arrives after a small, ordered delay."""
        if self._feed is not None:
            self._next_at = max(self._next_at, trio.current_time() + self.rng.uniform(0, 0.02))
            self._feed.send_nowait((self._next_at, key, payload))

    async def _run(self, cfg: FailoverConfig, *,
                   task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self._scope:
            driver = PeerDriver(FailoverMachine(cfg, now=trio.current_time()), self.link,
                                SECRET, self)
            feed_send, feed_recv = trio.open_memory_channel[tuple[float, bytes, bytes]](10**5)
            sink_send, sink_recv = trio.open_memory_channel[list[bytes]](10**5)
            async with trio.open_nursery() as nursery:
                await nursery.start(driver.run)
                nursery.start_soon(self._gate, driver, feed_recv, sink_send)
                nursery.start_soon(self._deliver, driver, sink_recv)
                nursery.start_soon(self._check_sink, driver)
                self.driver, self._feed, self._to_sink = driver, feed_send, sink_send
                task_status.started()

    async def _gate(self, driver: PeerDriver,
                    feed: trio.MemoryReceiveChannel[tuple[float, bytes, bytes]],
                    to_sink: trio.MemorySendChannel[list[bytes]]) -> None:
        async for at, key, payload in feed:
            await trio.sleep_until(at)
            if driver.event(key, payload):
                to_sink.send_nowait([key])

    async def _check_sink(self, driver: PeerDriver) -> None:
        """The sink runner's checks: a sink that works is verified at its cadence (what
        a sink handover to this probe needs); a failing one (``sink_state``) is not."""
        while True:
            await trio.sleep(check_interval(self.sink_failover))
            if driver.machine.sink_healthy:
                driver.sink_verified(trio.current_time())

    async def _deliver(self, driver: PeerDriver,
                       batches: trio.MemoryReceiveChannel[list[bytes]]) -> None:
        async for keys in batches:
            await trio.sleep(self.rng.uniform(0.001, 0.02))  # sink latency
            self.sink.write(self.name, keys)
            driver.delivered(keys)

    # -- PeerObserver --
    async def on_flush(self, items: list[tuple[bytes, bytes]]) -> None:
        assert self._to_sink is not None
        self._to_sink.send_nowait([key for key, _ in items])

    def on_role_changed(self, old: Role, new: Role, reason: str) -> None:
        self.roles.append((trio.current_time(), old, new, reason))

    def on_heartbeat_sent(self) -> None:
        pass

    def on_heartbeat_received(self) -> None:
        self.arrivals.append(trio.current_time())

    async def on_gap_fill(self, items: list[tuple[bytes, bytes]]) -> None:
        self.gap_fills += len(items)
        await self.on_flush(items)

    def on_handover(self, reason: HandoverReason) -> None:
        pass

    def on_rejected(self, reason: str) -> None:
        # The network duplicates datagrams and delivers old boots' late ones; a first
        # contact (start, partition healed) is not fresh until the echo comes back.
        assert reason in ("replay", "stale", "unfresh"), reason
        self.rejected[reason] += 1

    def on_split_brain(self, active: bool, detail: str) -> None:
        self.split_brains += active

    def on_config_drift(self, local: bytes, peer: bytes) -> None:
        raise AssertionError("config drift in a uniform pair")


@dataclass
class Pair:
    net: FakeNetwork
    master: SimProbe
    slave: SimProbe
    sink: ListSink
    generated: list[bytes] = field(default_factory=list)
    feeding: bool = True
    nursery: trio.Nursery | None = None  # where restarted probes run

    @property
    def probes(self) -> tuple[SimProbe, SimProbe]:
        return self.master, self.slave

    async def run_feed(self, rate: float, until: float, rng: random.Random) -> None:
        """Events at ``rate`` per second (Poisson) until ``until``, to every live probe."""
        i = 0
        while True:
            await trio.sleep(rng.expovariate(rate))
            if trio.current_time() >= until or not self.feeding:
                return
            i += 1
            key, payload = key_of(b"event %d" % i), b"payload %d" % i
            if any(p.alive for p in self.probes):
                self.generated.append(key)
            for probe in self.probes:
                probe.feed(key, payload)

    def active_count(self) -> int:
        return sum(p.active for p in self.probes)


def make_pair(seed: int, *, loss: float = 0.0, duplicate: float = 0.0,
              delay: tuple[float, float] = (0.001, 0.05),
              failback: Failback = Failback.HANDSHAKE) -> Pair:
    net = FakeNetwork(seed=seed, loss=loss, duplicate=duplicate, delay=delay)
    sink = ListSink()
    rng = random.Random(seed + 1)
    master = SimProbe("master", Mode.MASTER, 1, net.a, sink, rng, failback)
    slave = SimProbe("slave", Mode.SLAVE, 2, net.b, sink, rng, failback)
    return Pair(net, master, slave, sink)


async def test_no_false_takeover_while_beats_arrive_within_the_bound(
        autojump_clock: trio.testing.MockClock) -> None:
    # Jitter up to 1.5 s reorders and duplicates beats but never opens a 4 s gap.
    pair = make_pair(seed=1, duplicate=0.2, delay=(0.0, 1.5))
    async with trio.open_nursery() as nursery:
        await nursery.start(pair.net.run)
        await pair.master.start(nursery)
        await pair.slave.start(nursery)
        await trio.sleep(2 * 3600)
        assert [r[1:3] for r in pair.master.roles] == [(Role.MASTER_PENDING, Role.MASTER)]
        assert pair.slave.roles == []
        assert len(pair.slave.arrivals) > 3600  # duplicates included
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("seed", [2, 3])
async def test_with_loss_takeover_happens_exactly_when_a_gap_reaches_the_bound(
        autojump_clock: trio.testing.MockClock, seed: int) -> None:
    pair = make_pair(seed=seed, loss=0.15, duplicate=0.05, delay=(0.0, 0.5))
    async with trio.open_nursery() as nursery:
        await nursery.start(pair.net.run)
        await pair.master.start(nursery)
        await pair.slave.start(nursery)
        await trio.sleep(10.0)
        start = len(pair.slave.arrivals)
        await trio.sleep(3600)
        nursery.cancel_scope.cancel()
    arrivals = pair.slave.arrivals[start - 1:]
    takeovers = [t for t, _, new, _ in pair.slave.roles if new is Role.SLAVE_ACTIVE]
    gaps = [(a, b) for a, b in itertools.pairwise(arrivals) if b - a >= BOUND]
    assert gaps, "the loss rate is meant to cause a few takeovers"
    assert takeovers == [pytest.approx(a + BOUND) for a, _ in gaps]
    # Each spurious takeover is a short split brain, resolved at the next master beat.
    assert pair.slave.split_brains == len(gaps)
    assert pair.active_count() == 1


async def test_takeover_always_within_the_bound_after_the_master_dies(
        autojump_clock: trio.testing.MockClock) -> None:
    pair = make_pair(seed=4, duplicate=0.1, delay=(0.0, 0.3))
    rng = random.Random(4)
    async with trio.open_nursery() as nursery:
        await nursery.start(pair.net.run)
        await pair.master.start(nursery)
        await pair.slave.start(nursery)
        for _ in range(30):
            await trio.sleep(rng.uniform(10, 60))
            assert pair.master.active and not pair.slave.active
            killed = trio.current_time()
            pair.master.kill()
            await trio.sleep(BOUND + 0.5)
            taken = pair.slave.roles[-1]
            assert taken[2] is Role.SLAVE_ACTIVE
            last_beat = max(t for t in pair.slave.arrivals if t <= taken[0])
            assert taken[0] == pytest.approx(last_beat + BOUND)
            assert BOUND - 2.0 <= taken[0] - killed <= BOUND + 0.3
            await trio.sleep(rng.uniform(0, 20))
            await pair.master.start(nursery)  # handshake failback
            await trio.sleep(3.0)
            assert pair.master.active and not pair.slave.active
        nursery.cancel_scope.cancel()


async def test_at_most_one_active_after_convergence_under_chaos(
        autojump_clock: trio.testing.MockClock) -> None:
    pair = make_pair(seed=5, duplicate=0.1, delay=(0.0, 0.4))
    rng = random.Random(5)
    async with trio.open_nursery() as nursery:
        await nursery.start(pair.net.run)
        await pair.master.start(nursery)
        await pair.slave.start(nursery)
        nursery.start_soon(pair.run_feed, 2.0, 2 * 3600, random.Random(55))
        for _ in range(70):  # about two hours
            what = rng.choice(["partition", "kill master", "kill slave", "mode switch"])
            if what == "partition":
                pair.net.partitioned = True
                await trio.sleep(rng.uniform(1, 30))
                pair.net.partitioned = False
            elif what == "mode switch":
                probe = rng.choice(pair.probes)
                assert probe.driver is not None
                probe.driver.request_mode(rng.choice([Mode.MASTER, Mode.SLAVE]))
            else:
                probe = pair.master if what == "kill master" else pair.slave
                probe.kill()
                await trio.sleep(rng.uniform(0.5, 30))
                await probe.start(nursery)
            await trio.sleep(2 * BOUND + 2.0)  # converge
            assert pair.active_count() == 1, what
            await trio.sleep(rng.uniform(0, 60))
        pair.feeding = False
        await trio.sleep(10.0)  # let the last events reach the sink
        nursery.cancel_scope.cancel()
    # At-least-once across all of it: every event reached the sink.
    delivered = set(pair.sink.keys())
    assert [k for k in pair.generated if k not in delivered] == []


async def _fault(pair: Pair, what: str, rng: random.Random) -> None:
    """Break the pair as ``what`` says for a random while, then heal it."""
    if what == "partition":
        pair.net.partitioned = True
        await trio.sleep(rng.uniform(1, 30))
        pair.net.partitioned = False
    elif what.startswith("kill"):
        probe = pair.master if what == "kill master" else pair.slave
        probe.kill()
        await trio.sleep(rng.uniform(0.5, 30))
        assert pair.nursery is not None
        await probe.start(pair.nursery)
    else:
        broken = {"master's sink": [pair.master], "slave's sink": [pair.slave],
                  "both sinks": list(pair.probes)}[what]
        for probe in broken:
            assert probe.driver is not None
            probe.driver.sink_state(trio.current_time(), 0)
        await trio.sleep(rng.uniform(1, 20))
        for probe in broken:
            assert probe.driver is not None
            probe.driver.sink_state(None, 0)
    await trio.sleep(rng.uniform(0, 8))  # the next fault may come before convergence


async def test_without_a_switch_the_configured_master_is_active_again_after_any_faults(
        autojump_clock: trio.testing.MockClock) -> None:
    """Roles converge (issue 21): every automatic switch (silence takeover, sink
    handover, split-brain verdict) is undone by the configured master once its cause is
    gone, whatever the epochs reached meanwhile and across restarts of either side:
    within SinkFailover + two takeover bounds of the heal, the master is the active one."""
    sink_failover = 3.0
    pair = make_pair(seed=11, duplicate=0.05, delay=(0.0, 0.2))
    for probe in pair.probes:
        probe.sink_failover = sink_failover
    rng = random.Random(11)
    faults = ["partition", "kill master", "kill slave", "master's sink", "slave's sink",
              "both sinks"]
    seen: Counter[str] = Counter()
    async with trio.open_nursery() as nursery:
        pair.nursery = nursery
        await nursery.start(pair.net.run)
        await pair.master.start(nursery)
        await pair.slave.start(nursery)
        nursery.start_soon(pair.run_feed, 2.0, 4 * 3600, random.Random(111))
        for step in range(60):
            # One to three faults back to back: a restart before the failback of a sink
            # handover, a partition during a takeover ... (each is healed before the next)
            what = ", ".join(rng.choice(faults) for _ in range(rng.randint(1, 3)))
            for fault in what.split(", "):
                seen[fault] += 1
                await _fault(pair, fault, rng)
            await trio.sleep(sink_failover + 2 * BOUND + 2.0)
            roles = [(p.name, p.driver.machine.role.value if p.driver else None,
                      p.driver.machine.epoch if p.driver else None) for p in pair.probes]
            assert pair.master.active and not pair.slave.active, (step, what, roles)
            await trio.sleep(rng.uniform(0, 30))
        nursery.cancel_scope.cancel()
    assert all(seen[f] for f in faults), seen  # each kind of fault happened
    assert max(p.driver.machine.epoch for p in pair.probes if p.driver) > 5  # epochs moved


ACK_INTERVAL = 0.1  # FailoverConfig.ack_interval, the default the simulated probes run with
SINK_LATENCY = 0.02  # the most SimProbe._deliver waits before the sink takes a batch


def assert_only_takeover_duplicates(pair: Pair, kills: list[tuple[float, float]],
                                    unacked: float) -> int:
    """Every duplicate is the master's delivery of its last ``unacked`` seconds before a
    kill, delivered again by the slave between that kill and the master's return (its
    takeover flush, or the flush of a standby that sees the master restarted).

    ``kills`` holds (killed at, restarted at). A duplicate anywhere else (a failback, an
    ack ignored) fails. Returns the number of duplicates.
    """
    copies: dict[bytes, list[tuple[str, float]]] = {}
    for probe, key, t in pair.sink.records:
        copies.setdefault(key, []).append((probe, t))
    again = {k: c for k, c in copies.items() if len(c) > 1}
    for key, c in again.items():
        assert len(c) == 2, c
        (first, t1), (second, t2) = c
        assert first == "master" and second == "slave", c
        assert any(killed - unacked <= t1 < killed and killed <= t2 <= back + BOUND
                   for killed, back in kills), (c, kills)
    return len(again)


@pytest.mark.parametrize("loss", [0.0, 0.05])
async def test_no_event_lost_across_takeover_and_failback(
        autojump_clock: trio.testing.MockClock, loss: float) -> None:
    pair = make_pair(seed=6, loss=loss, duplicate=0.05, delay=(0.001, 0.05))
    rate = 20.0
    kills: list[tuple[float, float]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(pair.net.run)
        await pair.master.start(nursery)
        await pair.slave.start(nursery)
        nursery.start_soon(pair.run_feed, rate, 400.0, random.Random(66))
        await trio.sleep(100.3)
        pair.master.kill()  # under load: in-flight events die with it
        killed = trio.current_time()
        await trio.sleep(100.0)
        await pair.master.start(nursery)  # handshake failback
        kills.append((killed, trio.current_time()))
        await trio.sleep(100.0)
        pair.master.kill()
        killed = trio.current_time()
        await trio.sleep(1.5)  # back within the bound: the standby slave flushes
        await pair.master.start(nursery)
        kills.append((killed, trio.current_time()))
        await trio.sleep(110.0)
        nursery.cancel_scope.cancel()
    counts = Counter(pair.sink.keys())
    assert [k for k in pair.generated if k not in counts] == []  # none lost
    # Duplicates come only from the two kills, never from the failbacks by handshake:
    # what the master delivered in its last ack period. A lost ack is re-sent when the
    # standby's next beat (every BeatInterval, 2 s) shows it missing, so on a lossy link
    # that period stretches to a beat interval (two here, for a re-send lost as well).
    unacked = ACK_INTERVAL + SINK_LATENCY if loss == 0.0 else 2 * 2.0 + ACK_INTERVAL + SINK_LATENCY
    assert_only_takeover_duplicates(pair, kills, unacked)
    assert pair.master.active and not pair.slave.active


async def test_a_kill_duplicates_at_most_the_masters_last_ack_period(
        autojump_clock: trio.testing.MockClock) -> None:
    """README "Duplicates": after a kill -9 the slave re-delivers only what the master
    delivered in its last ack period (AckInterval, plus the sink's own latency)."""
    pair = make_pair(seed=7, delay=(0.001, 0.01))
    kills: list[tuple[float, float]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(pair.net.run)
        await pair.master.start(nursery)
        await pair.slave.start(nursery)
        # The simulated sink takes one event per 1-20 ms: well below 100 events/s.
        nursery.start_soon(pair.run_feed, 60.0, 60.0, random.Random(77))
        for at in (20.33, 40.71):
            await trio.sleep_until(at)
            pair.master.kill()
            await trio.sleep(BOUND + 2.0)  # the slave takes over
            assert pair.slave.active
            await pair.master.start(nursery)
            kills.append((at, trio.current_time()))
            await trio.sleep(BOUND + 2.0)  # handshake failback
            assert pair.master.active and not pair.slave.active
        await trio.sleep(30.0)
        nursery.cancel_scope.cancel()
    counts = Counter(pair.sink.keys())
    assert [k for k in pair.generated if k not in counts] == []
    duplicates = assert_only_takeover_duplicates(pair, kills, ACK_INTERVAL + SINK_LATENCY)
    assert duplicates > 0  # the kills did land mid-traffic: the bound is not vacuous
