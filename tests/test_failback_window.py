"""Failback window and delay: cron evaluation, machine transcripts, MockClock pair runs."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest
import trio
import trio.testing

from probepair.config.cron import FailbackWindow, WindowError
from probepair.errors import ConfigError
from probepair.pair.window import drive_window, local_zone, window_status
from probepair.failover import (
    Failback,
    FailoverConfig,
    FailoverMachine,
    Handover,
    HandoverReason,
    Mode,
    Role,
    RoleChanged,
)
from probepair.failover.window import FailbackGate
from probepair.pair.driver import NullObserver, PeerDriver
from probepair.config.props import load
from probepair.failover.wire import make_boot_id
from tests.fakes import FakeNetwork, MemoryLink
from tests.test_failover import BOOT_M2, active_slave, changes, config, master_peer

SECRET = b"window test secret"


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# -- the cron window (pure) -------------------------------------------------------------


def test_window_opens_at_each_start_for_its_length() -> None:
    w = FailbackWindow("0 10 * * *", 600, tz=UTC)
    assert not w.is_open(ts("2026-03-02 09:59:59"))
    assert w.is_open(ts("2026-03-02 10:00:00"))
    assert w.is_open(ts("2026-03-02 10:09:59.5"))
    assert not w.is_open(ts("2026-03-02 10:10:00"))
    assert w.next_change(ts("2026-03-02 09:00:00")) == ts("2026-03-02 10:00:00")
    assert w.next_change(ts("2026-03-02 10:05:00")) == ts("2026-03-02 10:10:00")
    assert w.next_change(ts("2026-03-02 10:10:00")) == ts("2026-03-03 10:00:00")


def test_overlapping_windows_close_when_the_last_one_ends() -> None:
    w = FailbackWindow("*/10 2 * * 1-5", 900, tz=UTC)  # every 10 min from 02:00, 15 min long
    monday = "2026-03-02"
    assert w.is_open(ts(f"{monday} 02:00:00"))
    assert w.next_change(ts(f"{monday} 02:01:00")) == ts(f"{monday} 03:05:00")
    assert w.is_open(ts(f"{monday} 03:04:59")) and not w.is_open(ts(f"{monday} 03:05:00"))
    # Saturday and Sunday have no window: the next one is Monday's.
    assert w.next_change(ts("2026-03-07 12:00:00")) == ts("2026-03-09 02:00:00")


def test_an_always_open_window_has_no_end_within_the_horizon() -> None:
    w = FailbackWindow("* * * * *", 120, tz=UTC)
    assert w.is_open(ts("2026-03-02 10:00:30"))
    assert w.next_change(ts("2026-03-02 10:00:30")) == math.inf


def test_a_window_more_than_a_year_away_counts_as_none() -> None:
    w = FailbackWindow("0 0 29 2 *", 600, tz=UTC)  # leap days only
    assert w.last_start(ts("2026-03-02 00:00:00")) == -math.inf
    assert not w.is_open(ts("2026-03-02 00:00:00"))
    assert w.next_change(ts("2026-03-02 00:00:00")) == math.inf
    assert w.next_change(ts("2027-03-02 00:00:00")) == ts("2028-02-29 00:00:00")


def test_local_time_follows_daylight_saving_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    zone = local_zone()
    assert str(zone) == "Europe/Paris"
    w = FailbackWindow("0 2 * * *", 3600, zone)
    saturday = datetime(2026, 3, 28, 12, tzinfo=zone).timestamp()
    # 02:00 does not exist on the night clocks go forward: cron's way is to run at 03:00.
    opens = datetime.fromtimestamp(w.next_change(saturday), zone)
    assert opens.isoformat() == "2026-03-29T03:00:00+02:00"
    after = datetime.fromtimestamp(w.next_change(opens.timestamp() + 3600), zone)
    assert after.isoformat() == "2026-03-30T02:00:00+02:00"
    monkeypatch.setenv("TZ", "No/Such_Zone")
    assert local_zone() is None


@pytest.mark.parametrize(("expr", "length", "message"), [
    ("0 25 * * *", 60, r"^not a cron expression \(Bad hour\): '0 25 \* \* \*'$"),
    ("daily", 60, r"^not a cron expression \(Wrong number of fields\): 'daily'$"),
    ("0 2 * * *", 0, r"^the window length must be a positive number, got 0$"),
])
def test_bad_windows_are_refused(expr: str, length: float, message: str) -> None:
    with pytest.raises(WindowError, match=message):
        FailbackWindow(expr, length)


def test_props_check_the_window_and_refuse_it_with_immediate() -> None:
    with pytest.raises(ConfigError, match=r"^pair\.props: FailbackWindow: not a cron "
                                          r"expression \(Bad minute\): '61 \* \* \* \*'$"):
        load([("pair.props", {"FailbackWindow": "61 * * * *"})])
    with pytest.raises(ConfigError, match=r"^command line: FailbackWindow: needs Failback "
                                          r"handshake or manual"):
        load([("pair.props", {"Failback": "immediate"}),
              ("command line", {"FailbackWindow": "0 2 * * *"})])
    p = load([("pair.props", {"FailbackWindow": "0 2 * * 6", "FailbackDelay": 30})])
    assert (p.FailbackWindow, p.FailbackWindowLength, p.FailbackDelay) == ("0 2 * * 6", 3600, 30)


def test_status_fields_say_when_the_next_window_opens() -> None:
    w, gate = FailbackWindow("0 10 * * *", 600, tz=UTC), FailbackGate(30)
    gate.set_window(False)
    assert window_status(w, gate, ts("2026-03-02 09:00:00")) == {
        "failback_window": "0 10 * * *", "failback_window_open": False, "failback_delay": 30,
        "next_window_in_seconds": 3600.0}
    gate.set_window(True)
    assert window_status(w, gate, ts("2026-03-02 10:01:00")) == {
        "failback_window": "0 10 * * *", "failback_window_open": True, "failback_delay": 30,
        "failback_window_closes_in_seconds": 540.0, "next_window_in_seconds": 0.0}
    assert window_status(None, FailbackGate(), 0.0) == {
        "failback_window": "", "failback_window_open": True, "failback_delay": 0.0}


# -- the gate (pure) --------------------------------------------------------------------


def test_gate_counts_steady_beats_of_one_boot() -> None:
    gate = FailbackGate(delay=10)
    assert not gate.allows(b"boot-one", 0.0, 4.0)
    assert not gate.allows(b"boot-one", 8.0, 4.0)  # 8 s after 0: a silence, count restarts
    assert not gate.allows(b"boot-one", 10.0, 4.0)
    assert not gate.allows(b"boot-two", 12.0, 4.0)  # restarted: count restarts
    assert gate.steady_for(20.0) == 8.0
    for t in (14.0, 16.0, 18.0, 20.0):
        assert not gate.allows(b"boot-two", t, 4.0)
    assert gate.allows(b"boot-two", 22.0, 4.0)
    gate.set_window(False)
    assert not gate.allows(b"boot-two", 24.0, 4.0)


# -- machine transcripts (plain numbers) ------------------------------------------------


def test_active_slave_keeps_the_role_while_the_window_is_closed() -> None:
    s, master = active_slave(8.0)
    s.window_changed(False)
    for t in range(10, 60, 2):
        s.tick(float(t))
        assert changes(s.receive(master.hb(Role.MASTER_PENDING), float(t))) == []
    assert s.role is Role.SLAVE_ACTIVE and s.active
    s.window_changed(True)  # the runtime saw the window open
    s.tick(60.0)
    actions = s.receive(master.hb(Role.MASTER_PENDING), 60.0)
    assert actions[:2] == [
        RoleChanged(Role.SLAVE_ACTIVE, Role.SLAVE_STANDBY, "handing over to returning master 1"),
        Handover(HandoverReason.FAILBACK),
    ]


def test_failback_delay_waits_for_steady_beats_and_restarts_on_a_new_boot() -> None:
    s, master = active_slave(8.0, failback_delay=6.0)
    for t in (10.0, 12.0, 14.0):
        s.tick(t)
        assert changes(s.receive(master.hb(Role.MASTER_PENDING), t)) == []
    flapped = master_peer(make_boot_id(3_000, b"flap"), listener=s)  # restarted at 15
    for t in (16.0, 18.0, 20.0):
        s.tick(t)
        assert changes(s.receive(flapped.hb(Role.MASTER_PENDING), t)) == []
    s.tick(22.0)
    assert changes(s.receive(flapped.hb(Role.MASTER_PENDING), 22.0)) == [RoleChanged(
        Role.SLAVE_ACTIVE, Role.SLAVE_STANDBY, "handing over to returning master 1")]


def test_operator_takeover_on_the_master_works_outside_the_window() -> None:
    s, master = active_slave(10.0)
    s.window_changed(False)
    m = FailoverMachine(config(Mode.MASTER, boot_id=BOOT_M2), now=10.0)
    m.window_changed(False)
    m.tick(10.0)
    assert m.role is Role.MASTER_PENDING
    actions = m.request_mode(Mode.MASTER, 11.0)
    assert changes(actions)[0].new is Role.MASTER
    s.tick(11.0)
    assert changes(s.receive(master.hb(Role.MASTER, epoch=1), 11.0)) == [RoleChanged(
        Role.SLAVE_ACTIVE, Role.SLAVE_STANDBY, "peer 1 is master at epoch 1")]


def test_sink_takeback_waits_for_the_window() -> None:
    cfg = config(Mode.MASTER, failback=Failback.HANDSHAKE, sink_failover=5.0)
    m = FailoverMachine(replace(cfg, boot_id=make_boot_id(1, b"mast")), now=0.0)
    from tests.test_failover import slave_peer, tick_through

    slave = slave_peer(listener=m)
    m.tick(0.0)
    m.receive(slave.hb(Role.SLAVE_STANDBY), 0.0)
    tick_through(m, 4.0)  # no active peer: the pending master became active
    assert m.role is Role.MASTER
    m.sink_state(5.0, 0, 6.0)
    for t in (6.0, 8.0, 10.0, 12.0):
        m.receive(slave.hb(Role.SLAVE_STANDBY), t)
        m.tick(t)
    assert m.role is Role.SLAVE_STANDBY  # handed over for its sink
    m.sink_state(None, 0, 12.0)
    m.window_changed(False)
    for t in range(14, 40, 2):
        m.receive(slave.hb(Role.MASTER, epoch=1), float(t))
        m.tick(float(t))
    assert m.role is Role.SLAVE_STANDBY  # healthy for 26 s, but the window is closed
    m.window_changed(True)
    m.receive(slave.hb(Role.MASTER, epoch=1), 40.0)
    m.tick(40.0)
    assert m.role is Role.MASTER_PENDING and m.epoch == 2


# -- MockClock: two drivers, a fake network, the runtime window task ---------------------

# trio time 0 is this wall-clock instant; the window opens daily at 10:00 UTC for 10 min.
WALL_ZERO = ts("2026-03-02 09:00:00")
WINDOW = FailbackWindow("0 10 * * *", 600, tz=UTC)


def wall() -> float:
    return WALL_ZERO + trio.current_time()


@dataclass(eq=False)
class Side(NullObserver):
    """One probe: a PeerDriver on a MemoryLink, its window task, a role transcript."""

    name: str
    mode: Mode
    link: MemoryLink
    delay: float = 0.0
    window: FailbackWindow | None = WINDOW
    roles: list[tuple[float, Role, Role, str]] = field(default_factory=list)
    driver: PeerDriver | None = None
    _scope: trio.CancelScope | None = None

    async def start(self, nursery: trio.Nursery) -> None:
        self.link.clear()
        boot = make_boot_id(wall(), random.Random(trio.current_time()).randbytes(4))
        cfg = FailoverConfig(mode=self.mode, node_id=1 if self.mode is Mode.MASTER else 2,
                             boot_id=boot, failback_delay=self.delay)
        await nursery.start(self._run, cfg)

    def kill(self) -> None:
        assert self._scope is not None
        self._scope.cancel()
        self.driver = None

    async def _run(self, cfg: FailoverConfig, *,
                   task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self._scope:
            machine = FailoverMachine(cfg, now=trio.current_time())
            driver = PeerDriver(machine, self.link, SECRET, self)
            async with trio.open_nursery() as nursery:
                if self.window is not None:
                    await nursery.start(drive_window, machine.window_changed, self.window, wall)
                await nursery.start(driver.run)
                self.driver = driver
                task_status.started()

    @property
    def role(self) -> Role:
        assert self.driver is not None
        return self.driver.machine.role

    def on_role_changed(self, old: Role, new: Role, reason: str) -> None:
        self.roles.append((trio.current_time(), old, new, reason))


def pair(delay: float = 0.0) -> tuple[FakeNetwork, Side, Side]:
    net = FakeNetwork(seed=7, delay=(0.001, 0.01))
    return (net, Side("master", Mode.MASTER, net.a, delay),
            Side("slave", Mode.SLAVE, net.b, delay))


def handovers(side: Side) -> list[float]:
    """When ``side`` stepped down from slave-active (rounded to the beat)."""
    return [round(t, 1) for t, old, new, _ in side.roles
            if old is Role.SLAVE_ACTIVE and new is Role.SLAVE_STANDBY]


async def test_a_return_outside_the_window_waits_for_it(
        autojump_clock: trio.testing.MockClock) -> None:
    net, master, slave = pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await master.start(nursery)
        await slave.start(nursery)
        await trio.sleep(30)
        master.kill()  # 09:00:30: the master dies, the slave takes over
        await trio.sleep(60)
        assert slave.role is Role.SLAVE_ACTIVE
        await master.start(nursery)  # 09:01:30: back, but the window opens at 10:00
        await trio.sleep(3600 - 90 - 1)
        assert (master.role, slave.role) == (Role.MASTER_PENDING, Role.SLAVE_ACTIVE)
        assert not slave.driver.machine.failback.window_open  # type: ignore[union-attr]
        await trio.sleep(10)
        assert (master.role, slave.role) == (Role.MASTER, Role.SLAVE_STANDBY)
        nursery.cancel_scope.cancel()
    [stepped] = handovers(slave)
    assert 3600 <= stepped <= 3602  # at the master's first pending beat in the window
    reasons = [r for _, _, new, r in master.roles if new is Role.MASTER]
    assert reasons[-1] == "peer handed over"


async def test_a_return_inside_the_window_hands_back_at_once(
        autojump_clock: trio.testing.MockClock) -> None:
    net, master, slave = pair()
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await master.start(nursery)
        await slave.start(nursery)
        await trio.sleep(3600)  # 10:00: the window is open
        master.kill()
        await trio.sleep(30)
        assert slave.role is Role.SLAVE_ACTIVE
        back = trio.current_time()
        await master.start(nursery)
        await trio.sleep(5)
        assert (master.role, slave.role) == (Role.MASTER, Role.SLAVE_STANDBY)
        nursery.cancel_scope.cancel()
    [stepped] = handovers(slave)
    assert back <= stepped <= back + 2.1


async def test_a_flapping_master_gets_the_role_back_only_once_steady(
        autojump_clock: trio.testing.MockClock) -> None:
    net, master, slave = pair(delay=60.0)
    master.window = slave.window = None  # no window: the delay alone
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await master.start(nursery)
        await slave.start(nursery)
        await trio.sleep(10)
        master.kill()
        await trio.sleep(10)
        assert slave.role is Role.SLAVE_ACTIVE
        for _ in range(10):  # up 40 s, down 3 s (less than the bound): never 60 s steady
            await master.start(nursery)
            await trio.sleep(40)
            assert slave.role is Role.SLAVE_ACTIVE
            master.kill()
            await trio.sleep(3)
        steady_from = trio.current_time()
        await master.start(nursery)
        await trio.sleep(70)
        assert (master.role, slave.role) == (Role.MASTER, Role.SLAVE_STANDBY)
        nursery.cancel_scope.cancel()
    [stepped] = handovers(slave)
    assert steady_from + 60 <= stepped <= steady_from + 62.1
