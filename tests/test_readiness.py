"""Readiness and RulesSync pull on the trio clock, with a scripted machine and peer."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
import trio.testing

from probepair.failover import Role
from probepair.failover.wire import config_digest
from probepair.rulesync.pull import NOT_HEARD, PULL_RETRY, Approve, Readiness
from probepair.rulesync.tree import ArchiveRefused, RulesSyncError, RulesTree

SETTINGS = b"\x01\x02\x03\x04"  # our pair-wide settings digest
CURRENT = RulesTree("main.rules", {"main.rules": b"@Summary = $Line\n"})
OLD = RulesTree("main.rules", {"main.rules": b"@Summary = \"old\"\n"})


@dataclass
class ScriptedMachine:
    role: Role = Role.SLAVE_STANDBY
    peer_role: Role | None = None
    peer_last_heard: float | None = None
    config_drift: bool = False
    beat_interval: float = 2.0
    # the config digest of the master's latest heartbeat: its settings and CURRENT
    peer_config_digest: bytes = config_digest(SETTINGS, CURRENT.digest)


@dataclass
class Harness:
    machine: ScriptedMachine = field(default_factory=ScriptedMachine)
    peer_rules: str = "new"
    pulls: list[str] = field(default_factory=list)
    approvals: list[Approve] = field(default_factory=list)
    pull_error: Exception | None = None
    changes: list[tuple[bool, list[str]]] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)

    def readiness(self, *, pull: bool = True) -> Readiness:
        def do_pull(url: str, approve: Approve) -> None:
            self.pulls.append(url)
            self.approvals.append(approve)
            if self.pull_error is not None:
                raise self.pull_error
            self.machine.config_drift = False  # installed: our digest now matches

        r = Readiness(self.machine, "http://peer/status", "http://peer/rules",  # type: ignore[arg-type]
                      lambda: {}, pull, do_pull, lambda: True,
                      lambda ready, differs: self.changes.append((ready, differs)),
                      self.counts.append, settings=SETTINGS)

        async def what_differs() -> tuple[list[str], str]:
            return ["rules"], self.peer_rules

        r._what_differs = what_differs  # type: ignore[method-assign]
        return r

    def hear(self, role: Role = Role.MASTER, *, drift: bool) -> None:
        self.machine.peer_role = role
        self.machine.peer_last_heard = trio.current_time()
        self.machine.config_drift = drift


async def test_ready_follows_the_heartbeat_digest(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    r = h.readiness(pull=False)
    await r.check()
    assert (r.ready, r.differs) == (False, [NOT_HEARD])
    h.hear(drift=False)
    await r.check()
    h.hear(drift=True)
    await r.check()
    await trio.sleep(10)  # the master went silent: the last verdict stays
    h.machine.config_drift = False
    await r.check()
    assert h.changes == [(False, [NOT_HEARD]), (True, []), (False, ["rules"])]
    assert h.pulls == []
    h.machine.role = Role.SLAVE_ACTIVE  # took over: still desynchronised, no pull
    h.hear(Role.MASTER_PENDING, drift=True)
    await r.check()
    assert h.pulls == [] and r.ready is False
    h.machine.role = Role.MASTER  # a master is the source of truth
    await r.check()
    assert r.ready is True


async def test_pull_syncs_a_standby_slave_and_becomes_ready(
        autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    r = h.readiness()
    h.hear(drift=True)
    await r.check()
    assert (h.pulls, h.counts, r.ready) == (["http://peer/rules"], ["success"], True)


async def test_a_pull_approves_only_the_tree_of_the_masters_latest_heartbeat(
        autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    r = h.readiness()
    h.hear(drift=True)
    await r.check()
    (approve,) = h.approvals
    assert approve(CURRENT) is None  # no settings stated: ours
    assert approve(RulesTree(CURRENT.main, CURRENT.files, settings=SETTINGS.hex())) is None
    refusal = approve(OLD)
    assert refusal is not None
    assert refusal.startswith(f"its tree {OLD.digest[:12]} is not the one the master's latest "
                              "heartbeat announces")
    # the master's settings stated in the archive count, not ours
    assert approve(RulesTree(CURRENT.main, CURRENT.files, settings="ffffffff")) is not None


async def test_a_refused_pull_is_retried_later_or_when_the_master_changes(
        autojump_clock: trio.testing.MockClock) -> None:
    h = Harness(pull_error=ArchiveRefused("http://peer/rules", "signature does not match"))
    r = h.readiness()
    for _ in range(5):  # every beat period: one refusal, then no storm of fetches
        h.hear(drift=True)
        await r.check()
        await trio.sleep(2)
    assert (h.counts, r.ready, r.differs) == (["refused"], False, ["rules"])
    await trio.sleep(PULL_RETRY)
    h.hear(drift=True)
    await r.check()
    h.pull_error = RulesSyncError("main.rules", "does not compile")
    h.peer_rules = "newer"  # the master's rules changed: try at once
    h.hear(drift=True)
    await r.check()
    assert h.counts == ["refused", "refused", "failure"]


async def test_run_checks_once_per_beat_period(autojump_clock: trio.testing.MockClock) -> None:
    h = Harness()
    r = h.readiness(pull=False)
    with trio.move_on_after(2.5):
        await r.run()
    assert h.changes == [(False, [NOT_HEARD])]
