"""PeerDriver and UdpLink: the trio shell, with MockClock and exact times."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import pytest
import trio
import trio.testing

from probepair.events import key_of
from probepair.failover import Failback, FailoverConfig, FailoverMachine, Mode, Role
from probepair.failover.wire import Ack, Heartbeat, decode, encode, make_boot_id
from probepair.pair.driver import NullObserver, PeerDriver, UdpLink, new_boot_id
from tests.fakes import memory_link_pair, wall_clock

SECRET = b"test secret"


@dataclass
class Recorder(NullObserver):
    """Observer that records what it is told, with trio times."""

    roles: list[tuple[float, Role, Role, str]] = field(default_factory=list)
    flushed: list[tuple[bytes, bytes]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    sent: int = 0
    received: int = 0
    split: list[bool] = field(default_factory=list)

    async def on_flush(self, items: list[tuple[bytes, bytes]]) -> None:
        self.flushed.extend(items)

    def on_role_changed(self, old: Role, new: Role, reason: str) -> None:
        self.roles.append((trio.current_time(), old, new, reason))

    def on_heartbeat_sent(self) -> None:
        self.sent += 1

    def on_heartbeat_received(self) -> None:
        self.received += 1

    def on_rejected(self, reason: str) -> None:
        self.rejected.append(reason)

    def on_split_brain(self, active: bool, detail: str) -> None:
        self.split.append(active)


def machine(mode: Mode, node: int, **kw: object) -> FailoverMachine:
    cfg = FailoverConfig(mode=mode, node_id=node, boot_id=new_boot_id(wall_clock), **kw)  # type: ignore[arg-type]
    return FailoverMachine(cfg, now=trio.current_time())


async def test_slave_alone_takes_over_at_exactly_the_bound(
        autojump_clock: trio.testing.MockClock) -> None:
    net = memory_link_pair()
    rec = Recorder()
    driver = PeerDriver(machine(Mode.SLAVE, 2), net.b, SECRET, rec)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await nursery.start(driver.run)
        assert driver.event(key_of(b"x"), b"x") is False
        with trio.fail_after(100):
            while not driver.machine.active:
                await trio.sleep(0.5)
        await trio.testing.wait_all_tasks_blocked()
        assert rec.roles == [(4.0, Role.SLAVE_STANDBY, Role.SLAVE_ACTIVE,
                              "no master heard for 4.0 s since start")]
        assert rec.flushed == [(key_of(b"x"), b"x")]
        assert rec.sent == 3  # at 0, 2 and the takeover at 4
        nursery.cancel_scope.cancel()


async def test_bad_datagrams_are_counted_and_logged_once_per_interval(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    net = memory_link_pair()
    rec = Recorder()
    driver = PeerDriver(machine(Mode.SLAVE, 2), net.b, SECRET, rec, log_interval=10.0)
    own = Heartbeat(2, driver.machine.config.boot_id, 0, 1, Role.MASTER,
                    driver.guard.own_boot_id and 0, 2.0, bytes(4))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await nursery.start(driver.run)
        with caplog.at_level(logging.WARNING, logger="probepair.pair.driver"):
            for _ in range(5):
                await net.a.send(b"garbage")
            await net.a.send(encode(own, SECRET))
            await net.a.send(encode(replace(own, boot_id=make_boot_id(1, b"peer")), b"wrong"))
            await trio.sleep(1.0)
            await net.a.send(b"garbage")
            await trio.sleep(10.0)
            await net.a.send(b"garbage")
            await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert rec.rejected == ["magic"] * 5 + ["self", "mac", "magic", "magic"]
    lines = [r.getMessage() for r in caplog.records if "dropped datagram" in r.getMessage()]
    assert len(lines) == 4  # magic, self, mac, and magic again after 10 s
    assert lines[-1].endswith("(5 more since the last report)")
    assert rec.received == 0


async def test_delivered_wakes_the_loop_for_the_ack(
        autojump_clock: trio.testing.MockClock) -> None:
    net = memory_link_pair()
    driver = PeerDriver(machine(Mode.MASTER, 1, failback=Failback.IMMEDIATE), net.a, SECRET)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await nursery.start(driver.run)
        with trio.move_on_after(0.01):
            await net.b.receive()  # the first heartbeat, at 0
        await trio.sleep(0.5)
        driver.delivered([key_of(b"a"), key_of(b"b")])
        data, _ = await net.b.receive()
        assert trio.current_time() == pytest.approx(0.6)
        msg = decode(data, SECRET)
        assert isinstance(msg, Ack) and msg.keys == (key_of(b"a"), key_of(b"b"))
        nursery.cancel_scope.cancel()


async def test_acks_sent_returns_once_the_deliveries_are_acked_to_the_peer(
        autojump_clock: trio.testing.MockClock) -> None:
    """A stopping probe waits for this instead of a fixed 2 x AckInterval."""
    net = memory_link_pair()
    driver = PeerDriver(machine(Mode.MASTER, 1, failback=Failback.IMMEDIATE), net.a, SECRET)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await nursery.start(driver.run)
        await trio.sleep(0.5)
        with trio.fail_after(0.001):
            await driver.acks_sent()  # nothing delivered: at once
        driver.delivered([key_of(b"a")])
        assert driver.machine.acks_pending
        await driver.acks_sent()
        assert trio.current_time() == pytest.approx(0.6)  # 0.5 + AckInterval
        assert not driver.machine.acks_pending
        keys: list[bytes] = []
        with trio.move_on_after(1.0):
            while not keys:
                msg = decode((await net.b.receive())[0], SECRET)
                keys = list(getattr(msg, "keys", ()))
        assert keys == [key_of(b"a")]
        nursery.cancel_scope.cancel()


async def test_request_mode_is_performed_at_once(
        autojump_clock: trio.testing.MockClock) -> None:
    net = memory_link_pair()
    rec = Recorder()
    driver = PeerDriver(machine(Mode.SLAVE, 2), net.b, SECRET, rec)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await nursery.start(driver.run)
        await trio.sleep(1.0)
        driver.request_mode(Mode.MASTER)
        driver.request_mode(Mode.MASTER)  # idempotent
        await trio.testing.wait_all_tasks_blocked()
        assert rec.roles == [(1.0, Role.SLAVE_STANDBY, Role.MASTER,
                              "mode set to master (epoch 1)")]
        assert driver.event(key_of(b"y"), b"y") is True
        nursery.cancel_scope.cancel()


async def test_udp_pair_on_loopback_fails_over() -> None:
    """Real sockets and the real clock, with 50 ms beats: a few hundred ms in all."""
    timing = {"beat_interval": 0.05, "beat_threshold": 0.05, "heartbeat_timeout": 0.05}
    master_link = UdpLink("127.0.0.1", 0, "", 0)
    slave_link = UdpLink("127.0.0.1", 0, "", 0)
    rec_m, rec_s = Recorder(), Recorder()
    async with trio.open_nursery() as nursery:
        m_addr = await nursery.start(master_link.serve)
        s_addr = await nursery.start(slave_link.serve)
        await master_link.set_peer(*s_addr)
        await slave_link.set_peer(*m_addr)
        master_scope = trio.CancelScope()
        m = PeerDriver(machine(Mode.MASTER, 1, **timing), master_link, SECRET, rec_m)
        s = PeerDriver(machine(Mode.SLAVE, 2, **timing), slave_link, SECRET, rec_s)
        nursery.start_soon(s.run)

        async def run_master() -> None:
            with master_scope:
                await m.run()

        nursery.start_soon(run_master)
        with trio.fail_after(5):
            while not m.machine.active:  # handshake with the standby slave
                await trio.sleep(0.01)
        assert not s.machine.active
        master_scope.cancel()
        with trio.fail_after(5):
            while not s.machine.active:
                await trio.sleep(0.01)
        assert rec_s.roles[-1][2] is Role.SLAVE_ACTIVE
        assert rec_s.received > 0 and rec_m.received > 0
        # Only the first contact is unproven (nothing to echo yet), never anything else.
        assert set(rec_s.rejected) <= {"unfresh"} and len(rec_s.rejected) <= 2
        nursery.cancel_scope.cancel()


async def test_udp_link_send_before_bind_is_an_error() -> None:
    link = UdpLink("127.0.0.1", 0, "127.0.0.1", 9)
    with pytest.raises(trio.ClosedResourceError):
        await link.send(b"x")
    with pytest.raises(RuntimeError):
        _ = link.local_address


def test_boot_ids_are_fresh_and_ordered() -> None:
    a = new_boot_id(lambda: 1000.0)
    b = new_boot_id(lambda: 1000.0)
    assert a[:4] == b[:4] == make_boot_id(1000, b"zzzz")[:4] and a != b
