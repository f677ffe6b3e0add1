"""The role table: which trigger moves which role where (PURE).

This is the single place a role decision is written (h11's ``EVENT_TRIGGERED_TRANSITIONS``
in ``_state.py``): the machine detects a trigger (a timer, a fresh heartbeat, an input),
looks it up here for its current role and, if the table has an entry, changes the role
through its one effect point (``RoleLogic.set_role``). A (role, trigger) pair that is absent
is refused: the role stays and nothing is emitted. The one rule that does not fit a
table, "a heartbeat at a higher epoch: take the mode opposite to the sender's", stays one
special-case method (``PeerInputs.adopt_opposite_mode``), as h11 keeps
``_fire_state_triggered_transitions``.
"""

from __future__ import annotations

import enum
from typing import Final

from probepair.failover.types import Role

__all__ = ["ROLE_TRANSITIONS", "Trigger", "markdown_table", "next_role"]


class Trigger(enum.Enum):
    """What can move a role (see the package docstring for when each fires)."""

    SILENCE = enum.auto()  # no fresh heartbeat from a forwarding peer for the bound
    STALL = enum.auto()  # our own beat ran a bound late (SIGSTOP, a frozen VM)
    HANDED_OVER = enum.auto()  # every ack up to acks_sent arrived (or the give-up timer)
    PENDING_MASTER = enum.auto()  # a returning master beats and failback is allowed
    LOST_VERDICT = enum.auto()  # both master or both active: precedence says the peer
    REQUEST_MASTER = enum.auto()  # request_mode(master): %Mode in rules, or an operator
    REQUEST_SLAVE = enum.auto()  # request_mode(slave)
    SINK_FAILING = enum.auto()  # our sink failed for SinkFailover, the peer's works
    RECLAIM = enum.auto()  # the designated master, moved by an automatic switch, returns


_T = Trigger
ROLE_TRANSITIONS: Final[dict[Role, dict[Trigger, Role]]] = {
    Role.SLAVE_STANDBY: {
        _T.SILENCE: Role.SLAVE_ACTIVE,
        _T.REQUEST_MASTER: Role.MASTER,
        _T.RECLAIM: Role.MASTER_PENDING,
    },
    Role.SLAVE_ACTIVE: {
        _T.STALL: Role.SLAVE_STANDBY,
        _T.PENDING_MASTER: Role.SLAVE_STANDBY,
        _T.LOST_VERDICT: Role.SLAVE_STANDBY,
        _T.REQUEST_MASTER: Role.MASTER,
        _T.REQUEST_SLAVE: Role.SLAVE_STANDBY,
        _T.SINK_FAILING: Role.SLAVE_STANDBY,
        _T.RECLAIM: Role.MASTER,
    },
    Role.MASTER_PENDING: {
        _T.SILENCE: Role.MASTER,
        _T.HANDED_OVER: Role.MASTER,
        _T.LOST_VERDICT: Role.SLAVE_STANDBY,
        _T.REQUEST_MASTER: Role.MASTER,
        _T.REQUEST_SLAVE: Role.SLAVE_STANDBY,
    },
    Role.MASTER: {
        _T.STALL: Role.MASTER_PENDING,
        _T.LOST_VERDICT: Role.SLAVE_STANDBY,
        _T.REQUEST_SLAVE: Role.SLAVE_STANDBY,
        _T.SINK_FAILING: Role.SLAVE_STANDBY,
    },
    Role.STANDARD: {},  # a lone probe: always active, nothing moves it
}


def next_role(role: Role, trigger: Trigger) -> Role | None:
    """The role ``trigger`` moves ``role`` to; None: the table refuses it."""
    return ROLE_TRANSITIONS[role].get(trigger)


# What fires each trigger, in the README's words.
MEANING: Final[dict[Trigger, str]] = {
    Trigger.SILENCE: "no fresh heartbeat from a forwarding peer for the takeover bound",
    Trigger.STALL: "our own beat ran a bound late (SIGSTOP, a frozen VM)",
    Trigger.HANDED_OVER: "the peer handed over and all its acks arrived (or the give-up timer)",
    Trigger.PENDING_MASTER: "a returning master beats and failback is allowed",
    Trigger.LOST_VERDICT: "both master or both active, and precedence says the peer",
    Trigger.REQUEST_MASTER: '`%Mode = "master"` in the rules, or `probepair takeover`',
    Trigger.REQUEST_SLAVE: '`%Mode = "slave"`, or `probepair release`',
    Trigger.SINK_FAILING: "our sink failed for `SinkFailover` while the peer's works",
    Trigger.RECLAIM: (
        "the designated master (props, or the newest switch) is in a slave role by an "
        "automatic switch, its sink works (for `SinkFailover` after a failure), failback "
        "allows it (window, `FailbackDelay`, not manual)"
    ),
}


def markdown_table() -> str:
    """ROLE_TRANSITIONS as the README shows it (a test keeps the two the same):
    a row per trigger, a column per role; an empty cell is a refused pair."""
    roles = [role for role in ROLE_TRANSITIONS if ROLE_TRANSITIONS[role]]  # not standard
    head = "| trigger | fires when | " + " | ".join(f"from `{r.value}`" for r in roles) + " |"
    rule = "|---" * (len(roles) + 2) + "|"
    rows = [
        f"| `{t.name}` | {MEANING[t]} | "
        + " | ".join(
            f"`{ROLE_TRANSITIONS[r][t].value}`" if t in ROLE_TRANSITIONS[r] else "·"
            for r in roles
        )
        + " |"
        for t in Trigger
    ]
    return "\n".join([head, rule, *rows])
