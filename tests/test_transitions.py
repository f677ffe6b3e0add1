"""The role table, walked exhaustively: every (role, trigger) pair moves as
ROLE_TRANSITIONS says or, where the table has no entry, is refused (nothing changes)."""

from __future__ import annotations

import pytest

from probepair.failover import Failback, FailoverMachine, Mode, Role, RoleChanged
from probepair.failover.transitions import ROLE_TRANSITIONS, Trigger, next_role
from probepair.failover.types import Action, HandoverReason
from tests.test_failover import config


def machine_in(role: Role) -> FailoverMachine:
    """A machine brought into ``role`` through its inputs alone."""
    if role is Role.STANDARD:
        m = FailoverMachine(config(Mode.STANDARD), now=0.0)
    elif role is Role.MASTER:
        m = FailoverMachine(config(Mode.MASTER, failback=Failback.IMMEDIATE), now=0.0)
    elif role is Role.MASTER_PENDING:
        m = FailoverMachine(config(Mode.MASTER), now=0.0)
    else:
        m = FailoverMachine(config(Mode.SLAVE), now=0.0)
    m.tick(0.0)
    if role is Role.SLAVE_ACTIVE:
        while m.role is Role.SLAVE_STANDBY:  # silent since start: takes over at the bound
            m.tick(m.next_deadline())
    assert m.role is role
    return m


def test_the_table_names_every_role_and_never_a_self_loop() -> None:
    assert set(ROLE_TRANSITIONS) == set(Role)
    for role, moves in ROLE_TRANSITIONS.items():
        assert role not in moves.values()
    assert ROLE_TRANSITIONS[Role.STANDARD] == {}


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
@pytest.mark.parametrize("trigger", list(Trigger), ids=lambda t: t.name)
def test_every_role_and_trigger_moves_as_the_table_says(role: Role, trigger: Trigger) -> None:
    m = machine_in(role)
    now = m.next_deadline() - 0.05 if role is not Role.STANDARD else 1.0
    actions: list[Action] = []
    moved = m.roles.fire(trigger, "walk", now, actions)
    target = next_role(role, trigger)
    changed = [a for a in actions if isinstance(a, RoleChanged)]
    if target is None:
        assert (moved, m.role, actions) == (False, role, [])
    else:
        assert moved and m.role is target
        assert changed == [RoleChanged(role, target, "walk")]
        assert m.next_deadline() > now  # the STYLE invariant holds after every move


@pytest.mark.parametrize("role", [Role.MASTER, Role.SLAVE_ACTIVE, Role.MASTER_PENDING])
def test_step_down_hands_over_only_when_the_table_allows(role: Role) -> None:
    m = machine_in(role)
    actions: list[Action] = []
    m.roles.step_down(Trigger.SINK_FAILING, "walk", HandoverReason.SINK, 0.5, actions)
    if next_role(role, Trigger.SINK_FAILING) is None:
        assert (m.role, actions) == (role, [])
    else:
        assert m.role is Role.SLAVE_STANDBY and m.handing_over


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.STANDARD],
                         ids=lambda r: r.value)
def test_datagram_builders_are_pure_functions_of_the_state(role: Role) -> None:
    """sending.heartbeat/ack read the state and change nothing: what a datagram says is
    decided in one place, and building it twice gives the same datagram."""
    from probepair.failover.sending import ack, heartbeat
    from probepair.failover.wire import Flag

    m = machine_in(role)
    before = (m.seq, m.role, m.epoch, m.next_deadline(), m.acks_pending)
    hb = heartbeat(m, 99, Flag.IDLE, 5.0)
    assert hb == heartbeat(m, 99, Flag.IDLE, 5.0)
    assert (hb.seq, hb.role, hb.epoch, hb.flags) == (99, role, m.epoch, Flag.IDLE)
    a = ack(m, 100, 7, (b"k" * 8,))
    assert a == ack(m, 100, 7, (b"k" * 8,))
    assert (a.seq, a.serial, a.keys, a.role) == (100, 7, (b"k" * 8,), role)
    assert (m.seq, m.role, m.epoch, m.next_deadline(), m.acks_pending) == before


def test_the_readme_shows_the_table_as_it_is() -> None:
    from pathlib import Path

    from probepair.failover.transitions import markdown_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert markdown_table() in readme
