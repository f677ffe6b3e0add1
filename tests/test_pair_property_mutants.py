"""A test of the pair property: each mutant the issue names makes it fail.

The pair property (``test_pair_property.check``) once passed a standby that ignores
every ack, a machine that believes unfresh datagrams, one without stall detection and
a returning master that flushes before its acks arrive. Each is planted here in the
real machine (monkeypatch) and run on a fixed scenario; ``check`` must refuse the run,
and the same scenario must pass with the machine as it is. The unfresh mutant is
refused by the transcripts, not the simulation (see its test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from probepair.failover import Failback, Role
from probepair.failover.buffer import StandbyBuffer
from probepair.failover.freshness import Freshness
from probepair.failover.machine import FailoverMachine
from probepair.failover.roles import RoleLogic
from probepair.failover.state import MachineState
from tests.test_pair_property import Sim, Window, check

INF = float("inf")


@dataclass(frozen=True)
class Scenario:
    m_stalls: list[Window]
    s_stalls: list[Window] = ()  # type: ignore[assignment]
    delay: float = 0.002
    replays: int = 0
    failback: Failback = Failback.HANDSHAKE
    seed: int = 1

    def run(self) -> Sim:
        sim = Sim(self.seed, 0.0, 0.0, self.delay,
                  {"m": list(self.m_stalls), "s": list(self.s_stalls)},
                  {"m": [], "s": []}, self.replays, self.failback)
        sim.run()
        return sim


def ignore_acks(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(StandbyBuffer, "ack", lambda self, keys, now: None)


def no_stall_detection(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(MachineState, "stall_at", property(lambda self: INF))


def flush_before_acks(mp: pytest.MonkeyPatch) -> None:
    def take_over(self: RoleLogic, now: float, actions: list[object]) -> None:
        if self.m._role is Role.MASTER_PENDING and self.m._awaiting is not None:
            self.fire(_HANDED_OVER, "peer handed over (mutant: acks not awaited)", now,
                      actions)  # type: ignore[arg-type]

    mp.setattr(RoleLogic, "maybe_take_over_from_handover", take_over)


def accept_unfresh(mp: pytest.MonkeyPatch) -> None:
    original = FailoverMachine.receive

    def receive(self: FailoverMachine, msg: object, now: float) -> list[object]:
        self._role_seq = 0  # nor is an echo from before our last role change refused
        return original(self, msg, now)  # type: ignore[arg-type]

    # Everything echoes what we sent just now, whatever it really echoes.
    mp.setattr(Freshness, "age", lambda self, boot, seq, now: 0.0)
    mp.setattr(FailoverMachine, "receive", receive)


from probepair.failover.transitions import Trigger  # noqa: E402

_HANDED_OVER = Trigger.HANDED_OVER

MUTANTS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], Scenario]] = {
    "a standby that ignores every ack": (ignore_acks, Scenario([(10.0, 18.0)])),
    "no stall detection": (no_stall_detection, Scenario([(10.0, 20.0)])),
    "a returning master that flushes before its acks arrive": (
        flush_before_acks, Scenario([(10.0, 20.0)], delay=0.3)),
}


def test_a_machine_that_believes_unfresh_datagrams_fails_the_transcripts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The simulation's payloads are unique and its replays pass the replay guard only
    # when they were lost on the way, so a believed stale datagram has nothing to harm
    # there; a stale ack harms an event whose payload came again (same key). The
    # MockClock transcripts plant exactly that, and they refuse the mutant.
    from tests import test_failover_v2 as transcripts

    accept_unfresh(monkeypatch)
    for case in (
        transcripts.test_a_captured_heartbeat_replayed_after_the_master_died_changes_nothing,
        transcripts.test_a_replayed_ack_does_not_touch_the_buffer,
    ):
        with pytest.raises(AssertionError):
            case()


@pytest.mark.parametrize("name", list(MUTANTS))
def test_the_scenario_passes_with_the_real_machine(name: str) -> None:
    _, scenario = MUTANTS[name]
    sim = scenario.run()
    check(sim, scenario.failback)


@pytest.mark.parametrize("name", list(MUTANTS))
def test_the_property_refuses_the_mutant(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plant, scenario = MUTANTS[name]
    plant(monkeypatch)
    sim = scenario.run()
    with pytest.raises(AssertionError):
        check(sim, scenario.failback)
