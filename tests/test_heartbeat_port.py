"""The heartbeat port under hostile input: the source check, the two sockets, the cheap
checks before the MAC, with real loopback sockets (real clock, bounded waits)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import trio
import trio.lowlevel
import trio.testing

from probepair.pair import driver as peer_mod
from probepair.failover import wire
from probepair.failover import FailoverConfig, FailoverMachine, Mode
from probepair.pair.driver import PeerDriver, UdpLink, new_boot_id
from probepair.failover.wire import Ack, Flag, Heartbeat, Role, encode, make_boot_id
from tests.fakes import memory_link_pair, wall_clock
from tests.test_peer import Recorder

SECRET = b"test secret"
WAIT = 5.0  # seconds: every wait here is for loopback datagrams


@dataclass
class Counted:
    foreign: list[int] = field(default_factory=list)

    def __call__(self, n: int) -> None:
        self.foreign.append(n)


def udp(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    return s


async def test_only_the_peer_address_and_port_come_out_others_are_counted() -> None:
    counted = Counted()
    with udp() as peer, udp() as stranger:
        # PeerHost by name: resolved once, the source check compares addresses.
        link = UdpLink("127.0.0.1", 0, "localhost", peer.getsockname()[1], on_foreign=counted)
        async with trio.open_nursery() as nursery:
            port = (await nursery.start(link.serve))[1]
            # One host, two probes, different ports: the port tells them apart.
            for i in range(300):
                stranger.sendto(b"forged %d" % i, ("127.0.0.1", port))
            peer.sendto(b"from the peer", ("127.0.0.1", port))
            with trio.fail_after(WAIT):
                data, source = await link.receive()
                while link.foreign < 300:  # noqa: ASYNC110 (polls a socket or process, nothing to wait on)
                    await trio.sleep(0.01)
            assert (data, source) == (b"from the peer", peer.getsockname())
            assert sum(counted.foreign) == 300 and len(counted.foreign) >= 2  # per batch
            nursery.cancel_scope.cancel()


async def test_the_peer_has_its_own_kernel_queue() -> None:
    """A full queue of strangers' datagrams does not drop the peer's: the kernel puts the
    peer's into the socket connected to it (checked on this kernel, not assumed)."""
    with udp() as peer, udp() as stranger:
        link = UdpLink("127.0.0.1", 0, *peer.getsockname())
        async with trio.open_nursery() as nursery:
            port = (await nursery.start(link.serve))[1]
            assert link._direct is not None and link._shared is not None
            stranger.setblocking(False)
            sent = 0
            with trio.move_on_after(0.3):  # far more than SHARED_RCVBUF holds
                while True:
                    try:
                        stranger.sendto(b"x" * 100, ("127.0.0.1", port))
                        sent += 1
                    except BlockingIOError:
                        await trio.lowlevel.checkpoint()
                    if sent % 1000 == 0:
                        peer.sendto(b"beat %d" % (sent // 1000), ("127.0.0.1", port))
                        await trio.lowlevel.checkpoint()
            beats = sent // 1000
            got = []
            with trio.fail_after(WAIT):
                while len(got) < beats:
                    got.append((await link.receive())[0])
            assert got == [b"beat %d" % i for i in range(1, beats + 1)]
            nursery.cancel_scope.cancel()


async def test_other_binds_of_the_port_still_fail() -> None:
    with udp() as peer:
        link = UdpLink("127.0.0.1", 0, *peer.getsockname())
        async with trio.open_nursery() as nursery:
            port = (await nursery.start(link.serve))[1]
            for host in ("127.0.0.1", "0.0.0.0"):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    with pytest.raises(OSError, match="in use"):
                        s.bind((host, port))
            nursery.cancel_scope.cancel()


async def test_icmp_port_unreachable_breaks_neither_send_nor_receive() -> None:
    gone = udp()
    address = gone.getsockname()
    gone.close()  # nobody listens there: each send comes back as ICMP port unreachable
    link = UdpLink("127.0.0.1", 0, *address)
    async with trio.open_nursery() as nursery:
        port = (await nursery.start(link.serve))[1]
        for _ in range(5):
            try:
                await link.send(b"hello?")
            except ConnectionRefusedError:
                pass  # twice in a row: reported to the driver, which logs it
            await trio.sleep(0.01)
        # The peer comes back on the same port: it is heard, and our sends arrive.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as back:
            back.bind(address)
            await link.send(b"first after")
            back.settimeout(WAIT)
            assert back.recvfrom(100) == (b"first after", ("127.0.0.1", port))
            back.sendto(b"back", ("127.0.0.1", port))
            with trio.fail_after(WAIT):
                assert (await link.receive())[0] == b"back"
        nursery.cancel_scope.cancel()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_peer() -> None:
    counted = Counted()
    with udp("::1") as peer, udp("::1") as stranger:
        link = UdpLink("::1", 0, "::1", peer.getsockname()[1], on_foreign=counted)
        async with trio.open_nursery() as nursery:
            port = (await nursery.start(link.serve))[1]
            stranger.sendto(b"forged", ("::1", port))
            peer.sendto(b"peer", ("::1", port))
            with trio.fail_after(WAIT):
                assert (await link.receive())[0] == b"peer"
                while not counted.foreign:  # noqa: ASYNC110 (polls a socket or process, nothing to wait on)
                    await trio.sleep(0.01)
            assert counted.foreign == [1]
            nursery.cancel_scope.cancel()


def machine(mode: Mode, node: int) -> FailoverMachine:
    cfg = FailoverConfig(mode=mode, node_id=node, boot_id=new_boot_id(wall_clock))
    return FailoverMachine(cfg, now=trio.current_time())


async def test_foreign_datagrams_never_reach_the_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    macs: list[bytes] = []
    real = wire.hmac.digest

    def spy(key: bytes, msg: bytes, digest: str) -> bytes:
        macs.append(msg)
        return real(key, msg, digest)

    monkeypatch.setattr(wire.hmac, "digest", spy)
    rec = Recorder()
    with udp() as peer, udp() as stranger:
        link = UdpLink("127.0.0.1", 0, *peer.getsockname(), on_foreign=rec_source(rec))
        driver = PeerDriver(machine(Mode.SLAVE, 2), link, SECRET, rec)
        forged = encode(Heartbeat(1, make_boot_id(2e9, b"evil"), 9, 1, Role.MASTER,
                                  Flag.CONFIGURED_MASTER, 0.1, bytes(4)), b"guess")
        async with trio.open_nursery() as nursery:
            port = (await nursery.start(link.serve))[1]
            await nursery.start(driver.run)
            macs.clear()
            for _ in range(100):
                stranger.sendto(forged, ("127.0.0.1", port))
            with trio.fail_after(WAIT):
                while rec.rejected.count("source") < 100:  # noqa: ASYNC110 (polls a socket or process, nothing to wait on)
                    await trio.sleep(0.01)
            ours = forged[:-wire.TAG_SIZE]
            assert ours not in macs  # not one HMAC computed for them (ours are signed)
            peer.sendto(forged, ("127.0.0.1", port))  # the same bytes from the peer's port
            with trio.fail_after(WAIT):
                while "mac" not in rec.rejected:  # noqa: ASYNC110 (polls a socket or process, nothing to wait on)
                    await trio.sleep(0.01)
            assert macs.count(ours) == 1
            nursery.cancel_scope.cancel()


def rec_source(rec: Recorder) -> Callable[[int], None]:
    return lambda n: rec.rejected.extend(["source"] * n)


# -- the cheap checks, through the driver: each stage counted under its reason ------------

BOOT = make_boot_id(1_900_000_000, b"peer")


def stage_datagrams(guard_boot: bytes) -> dict[str, bytes]:
    """A forged datagram failing at each cheap stage (none needs the secret)."""
    good = encode(Heartbeat(7, guard_boot, 0, 50, Role.MASTER, Flag.NONE, 2.0, bytes(4)),
                  b"guess")
    ack = encode(Ack(7, guard_boot, 0, 51, Role.MASTER, 1, (b"k" * 8,)), b"guess")
    return {
        "magic": b"GET / HTTP/1.0\r\n\r\n",
        "short": good[:40],
        "version": good[:4] + b"\x01" + good[5:],
        "unsigned": good[:6] + b"\x01" + good[7:],
        "malformed": good[:5] + b"\x09" + good[6:],  # kind
        "replay": encode(Heartbeat(7, guard_boot, 0, 10, Role.MASTER, Flag.NONE, 2.0,
                                   bytes(4)), b"guess"),
        "sender": encode(Heartbeat(8, guard_boot, 0, 99, Role.MASTER, Flag.NONE, 2.0,
                                   bytes(4)), b"guess"),
        "stale": encode(Heartbeat(7, make_boot_id(1_800_000_000, b"old."), 0, 99,
                                  Role.MASTER, Flag.NONE, 2.0, bytes(4)), b"guess"),
        "mac": good,
        "mac ": ack,  # an ack needs the MAC too
    }


async def test_every_cheap_stage_is_counted_under_its_reason(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    macs = []
    real = wire.hmac.digest
    monkeypatch.setattr(wire.hmac, "digest", lambda *a: macs.append(1) or real(*a))
    net = memory_link_pair()
    rec = Recorder()
    driver = PeerDriver(machine(Mode.SLAVE, 2), net.b, SECRET, rec)
    real_hb = Heartbeat(7, BOOT, 0, 10, Role.MASTER, Flag.NONE, 2.0, bytes(4))
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await nursery.start(driver.run)
        await net.a.send(encode(real_hb, SECRET))  # the guard now knows boot, sender, seq 10
        await trio.testing.wait_all_tasks_blocked()
        assert driver.guard.peer_boot_id == BOOT
        rec.rejected.clear()
        cases = stage_datagrams(BOOT)
        for data in cases.values():
            macs.clear()
            await net.a.send(data)
            await trio.testing.wait_all_tasks_blocked()
        assert rec.rejected == [r.strip() for r in cases]
        nursery.cancel_scope.cancel()


async def test_the_peer_reaching_another_local_address_is_still_heard() -> None:
    """A multi-homed host: bound to the wildcard, the connected socket takes the local
    address of the route to the peer (127.0.0.1); a datagram from the peer to another
    local address (127.0.0.2) lands on the shared socket, whose source check passes it."""
    counted = Counted()
    with udp() as peer, udp("127.0.0.2") as stranger:
        link = UdpLink("0.0.0.0", 0, *peer.getsockname(), on_foreign=counted)
        async with trio.open_nursery() as nursery:
            port = (await nursery.start(link.serve))[1]
            peer.sendto(b"to .2", ("127.0.0.2", port))
            stranger.sendto(b"forged", ("127.0.0.2", port))
            peer.sendto(b"to .1", ("127.0.0.1", port))
            with trio.fail_after(WAIT):
                got = {(await link.receive())[0] for _ in range(2)}
                while not counted.foreign:  # noqa: ASYNC110 (polls a socket or process, nothing to wait on)
                    await trio.sleep(0.01)
            assert got == {b"to .2", b"to .1"} and counted.foreign == [1]
            nursery.cancel_scope.cancel()


async def test_unknown_boot_ids_get_an_hmac_budget_the_current_peer_does_not(
        autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    macs: list[bytes] = []
    real = wire.hmac.digest
    monkeypatch.setattr(wire.hmac, "digest", lambda k, m, d: macs.append(m) or real(k, m, d))
    net = memory_link_pair()
    rec = Recorder()
    driver = PeerDriver(machine(Mode.SLAVE, 2), net.b, SECRET, rec)

    def beat(seq: int, boot: bytes = BOOT, secret: bytes = SECRET) -> bytes:
        return encode(Heartbeat(7, boot, 0, seq, Role.MASTER, Flag.NONE, 2.0, bytes(4)), secret)

    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        await nursery.start(driver.run)
        await net.a.send(beat(1))
        await trio.testing.wait_all_tasks_blocked()
        assert driver.guard.peer_boot_id == BOOT
        rec.rejected.clear()
        for i in range(1000):  # a blind forger: fresh boot ids, all at one instant
            net.b.deliver_nowait(beat(1, make_boot_id(2e9, i.to_bytes(4, "big")), b"guess"))
            if i % 10 == 9:
                await trio.testing.wait_all_tasks_blocked()
        assert net.b.dropped_full == 0
        await net.a.send(beat(2))  # the current peer, amid the flood: verified, accepted
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == 0.0  # the flood took no (virtual) time: no refill
        # The first contact (an unknown boot id too) took one token.
        assert rec.rejected.count("mac") == peer_mod.NEW_BOOT_BURST - 1
        assert rec.rejected.count("unverified") == 1000 - peer_mod.NEW_BOOT_BURST + 1
        assert driver.guard._highest == 2
        # After the flood the budget refills: a restarted peer is heard again.
        await trio.sleep(1.0)
        rec.rejected.clear()
        await net.a.send(beat(1, make_boot_id(2e9, b"new!")))
        await trio.testing.wait_all_tasks_blocked()
        assert driver.guard.peer_boot_id == make_boot_id(2e9, b"new!")  # verified, taken
        assert "unverified" not in rec.rejected and "mac" not in rec.rejected
        nursery.cancel_scope.cancel()
