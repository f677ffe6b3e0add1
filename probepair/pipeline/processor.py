"""The processing stage: tokenise -> rules -> serialise -> failover gate.

This is the per-event hot path, so it is one tight loop over each batch with every
lookup hoisted out of it. The rules hook is one call (``Program.run``); with no rules
file the tokens themselves are the alert. The gate decides only whether the alert is
written now or held by the standby slave (DESIGN.md "The data path").

Rules time and the pair's liveness (README, "Why one costly event cannot stop the
pair"): heartbeats, acks and takeover timers run in other tasks of the same trio loop,
so they wait for whatever this stage does between two schedule points. Two bounds keep
that short whatever the events contain: each event's rules run stops at
``RulesTimeBudget`` (checked in loops, see rules/compiler.py), and a batch is processed
in slices of ``RULES_SLICE`` with schedule points between them. So no task waits longer
than a slice plus one event's budget plus one tokenisation (~40 ms at most by default,
21 ms measured behind 64 KiB poison lines; bench/jitter.py).
"""

from __future__ import annotations

import logging
import math
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio

from probepair.config.feedspec import FEED_KEYS
from probepair.config.props import Props, as_mapping
from probepair.events import Event, derived_key, key_of
from probepair.failover import Mode
from probepair.pipeline.alerts import serialise
from probepair.pipeline.omnibus import OmnibusOptions, OmnibusTokeniser, TokensOf
from probepair.pipeline.tokenise import TOKENISERS

if TYPE_CHECKING:
    from probepair.errors import RulesRuntimeError
    from probepair.events import Batch, Item
    from probepair.metrics import Metrics
    from probepair.pipeline.channels import ReceiveEnd, SendEnd
    from probepair.rules import Program
    from probepair.rules.functions import TrapFunctions

logger = logging.getLogger(__name__)

_LOG_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
}
ERROR_LOG_INTERVAL = 10.0  # seconds between logged rules runtime errors (all are counted)
# Seconds of processing between two schedule points: ~2,500 usual events, so the
# checkpoint costs nothing measurable, yet other tasks never wait much longer.
RULES_SLICE = 0.005


def rules_budget(props: Props) -> float:
    """Seconds of rules time an event may use (math.inf: no budget).

    A pair clamps ``RulesTimeBudget`` to BeatInterval / 8, with a warning: with a slice
    and a tokenisation on top, a heartbeat then waits below BeatInterval / 4.
    """
    budget = props.RulesTimeBudget / 1000.0 if props.RulesTimeBudget else math.inf
    if props.Mode != "standard":
        bound = props.BeatInterval / 8
        if budget > bound:
            if budget != math.inf:
                logger.warning(
                    "RulesTimeBudget %g ms is more than BeatInterval / 8: using %g ms",
                    props.RulesTimeBudget,
                    bound * 1000,
                )
            budget = bound
    return budget


def set_probe_log_level(level: str) -> None:
    """``setlog(LEVEL)``: the probe's log (the root logger cli.setup_logging set up) at
    ``level``. A rules file calls it per event: only a change touches the logger
    (``setLevel`` clears every logger's cache)."""
    value = _LOG_LEVELS.get(level.upper(), logging.INFO)
    root = logging.getLogger()
    if root.level != value:
        logger.warning("rules file sets the log level to %s (setlog)", level.upper())
        root.setLevel(value)


def omnibus_options(props: Props) -> OmnibusOptions:
    """FeedFormat omnibus' tokenising properties."""
    return OmnibusOptions(
        offset_zero=props.OffsetZero,
        offset_one=props.OffsetOne,
        offset_two=props.OffsetTwo,
        break_characters=props.BreakCharacters,
        time_format=props.TimeFormat,
    )


Tokeniser = Callable[[bytes, bool], dict[str, str]]


@dataclass(frozen=True, slots=True)
class FeedReading:
    """How the events of one feed are read: its format's tokeniser, or the feed's own
    tokens (snmp, FeedFormat omnibus), and the feed's properties the rules read
    (``%FeedType``, ``%FeedPort``...: the feed the event came in on)."""

    tokenise: Tokeniser
    tokens_of: TokensOf | None
    props: dict[str, object]
# The gate's call for one event: (key, payload, now) -> forward it now?
GateEvent = Callable[[bytes, bytes, float], bool]


class Gate(Protocol):
    """The failover side of the data path (PeerDriver, or AlwaysForward)."""

    def batch_event(self) -> tuple[GateEvent | None, float]:
        """The per-event call for the next batch and the ``now`` to pass it (None:
        forward everything). Work due once per batch (a clock read, a stall check) is
        done here, not per event."""
        ...

    def delivered(self, keys: list[bytes], written_at: float | None = None) -> None:
        """The sink holds ``keys`` durably; they were written at trio time ``written_at``."""
        ...

    @property
    def flushing(self) -> bool:
        """A takeover's flush is not in the sink's channel yet: wait (``flushed``)
        before sending alerts, so the sink sees them after the flushed ones."""
        ...

    async def flushed(self) -> None: ...

    def covered_by_peer(self, keys: list[bytes]) -> set[bytes]:
        """Of undelivered ``keys``, those the peer's sink already has (not replayed)."""
        ...

    def bypassed(self, count: int) -> None: ...

    def request_mode(self, mode: Mode) -> None: ...


class AlwaysForward:
    """The gate of a standard (lone) probe."""

    flushing = False  # a lone probe never flushes

    def batch_event(self) -> tuple[GateEvent | None, float]:
        return None, 0.0  # forward everything: no call per event

    async def flushed(self) -> None:
        await trio.lowlevel.checkpoint()

    def delivered(self, keys: list[bytes], written_at: float | None = None) -> None:
        pass

    def covered_by_peer(self, keys: list[bytes]) -> set[bytes]:
        return set()

    def bypassed(self, count: int) -> None:
        pass

    def request_mode(self, mode: Mode) -> None:
        logger.warning("Mode %r requested, but a standard probe has no peer", mode.value)


def self_event(name: str, summary: str, wall_clock: Callable[[], float]) -> Event:
    """A ProbeWatch event (``@Manager = "ProbeWatch"``) about this probe itself."""
    now = wall_clock()
    tokens = {"Manager": "ProbeWatch", "Summary": summary, "Node": platform.node(), "Agent": name}
    raw = f"ProbeWatch {name} {now!r} {summary}".encode()
    return Event(raw, key_of(raw), now, tokens, from_probe=True)


def _counting_feed_managers(tokenise: Tokeniser, metrics: Metrics) -> Tokeniser:
    """``tokenise`` counting the records that claim a ``Manager`` (``$FeedManager``)."""
    renamed = metrics.feed_manager_renamed.inc

    def tokenise_counted(raw: bytes, split: bool) -> dict[str, str]:
        tokens = tokenise(raw, split)
        if "FeedManager" in tokens:
            renamed()
        return tokens

    return tokenise_counted


class Processor:
    """Runs batches of events through the rules and the gate."""

    def __init__(
        self,
        props: Props,
        program: Program | None,
        gate: Gate,
        metrics: Metrics,
        wall_clock: Callable[[], float],
        clock: Callable[[], float] = time.perf_counter,
        *,
        tokens_of: Mapping[int, TokensOf] | None = None,
        traps: TrapFunctions | None = None,
        set_log_level: Callable[[str], None] | None = None,
    ) -> None:
        """``tokens_of``: by feed index (``Event.feed``), a feed that tokenises itself
        (snmp) gives each event's tokens (and counts it out of its queue); ``traps``:
        its counters for mttrapd's rules functions; ``set_log_level``: what the rules'
        ``setlog(LEVEL)`` calls (default: ``set_probe_log_level``)."""
        set_log_level = set_log_level or set_probe_log_level
        self.program = program
        self.gate = gate
        self._metrics = metrics
        # One reading per feed (Feeds order), chosen per batch: a feed sends batches of
        # its own events only, so the hot loop never looks at Event.feed.
        omnibus: OmnibusTokeniser | None = None  # one $EventCount for the probe
        readings: list[FeedReading] = []
        for i, feed in enumerate(props.feeds):
            own = (tokens_of or {}).get(i)
            if own is None and feed.FeedFormat == "omnibus":
                omnibus = omnibus or OmnibusTokeniser(omnibus_options(props))
                own = omnibus.tokens
            tokenise = TOKENISERS.get(feed.FeedFormat, TOKENISERS["line"])  # omnibus: above
            if feed.FeedFormat == "json":
                tokenise = _counting_feed_managers(tokenise, metrics)
            values = as_mapping(feed)
            readings.append(FeedReading(tokenise, own, {k: values[k] for k in FEED_KEYS}))
        self._readings = readings
        self._several = len(readings) > 1
        self._last_error_log = -float("inf")
        self._last_budget_log = -float("inf")
        self._clock = clock
        self.budget = rules_budget(props)
        self.ctx = None
        if program is not None:
            from probepair.rules import RulesContext

            self.ctx = RulesContext(
                props=dict(as_mapping(props)),
                assigned={},
                log=self._rules_log,
                on_error=self._rules_error,
                wall_clock=wall_clock,
                hostname=platform.node(),
                clock=clock,
                on_over_budget=self._over_budget,
                traps=traps,
                set_log_level=set_log_level,
            )

    def _rules_log(self, level: str, message: str) -> None:
        logger.log(_LOG_LEVELS.get(level.upper(), logging.INFO), "rules: %s", message)

    def _rules_error(self, error: RulesRuntimeError) -> None:
        self._metrics.rules_errors.inc()
        now = trio.current_time()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            logger.warning(
                "%s (further rules errors are counted, logged every %gs)", error, ERROR_LOG_INTERVAL
            )

    def _over_budget(self, pos: tuple[str, int, int]) -> None:
        self._metrics.rules_over_budget.inc()
        now = self._clock()
        if now - self._last_budget_log >= ERROR_LOG_INTERVAL:
            self._last_budget_log = now
            logger.warning(
                "%s:%d:%d: an event used up RulesTimeBudget (%g ms) here; delivered with "
                "the fields set so far and @RulesOverBudget (further ones are counted, "
                "logged every %gs)",
                *pos,
                self.budget * 1000,
                ERROR_LOG_INTERVAL,
            )

    def _assigned(self) -> None:
        """Apply properties the rules assigned: ``%Mode`` switches the role."""
        assert self.ctx is not None
        mode = self.ctx.assigned.pop("Mode", None)
        self.ctx.assigned.clear()
        if mode is None:
            return
        name = str(mode).lower()
        if name not in ("master", "slave"):
            logger.warning("rules set %%Mode to %r; expected 'master' or 'slave'", mode)
            return
        logger.warning("rules file sets %%Mode = %r", name)
        self.gate.request_mode(Mode(name))

    def _generated(
        self,
        key: bytes,
        gate_event: GateEvent | None,
        append: Callable[[Item], None],
        now: float = 0.0,
    ) -> None:
        """Alerts the rules generated (genevent) for the event ``key``: each gets a key
        derived from it (the same on both probes) and goes through the gate like any
        alert, before the event's own alert (OMNIbus sends them at the genevent call)."""
        assert self.ctx is not None
        generated = self.ctx.generated
        for i, fields in enumerate(generated):
            gkey = derived_key(key, i)
            payload = serialise(fields, gkey)
            if gate_event is None or gate_event(gkey, payload, now):
                append((gkey, payload))
        generated.clear()

    def _self_events(self, batch: Batch) -> list[Item]:
        """ProbeWatch events: the rules see them (tokens and pre-set fields, as OMNIbus
        does) and they bypass the gate, so a standby slave's own events show it is alive.

        Only ``self_event`` sets ``Event.from_probe`` (a record's content cannot: a
        json record's ``Manager`` key reaches the rules as ``$FeedManager``, see
        ``formats.tokenise_json``), and the probe sends self-events in batches of their
        own, so the hot loop of ``process`` never checks for them.
        """
        out: list[Item] = []
        for ev in batch:
            if self.program is None:
                fields: dict[str, object] | None = dict(ev.tokens)
            else:
                assert self.ctx is not None
                self.ctx.deadline = self._clock() + self.budget
                fields = self.program.run(ev.tokens, self.ctx, ev.tokens)
                if self.ctx.generated:
                    self._generated(ev.key, None, out.append)
            if fields is not None:
                out.append((ev.key, serialise(fields, ev.key)))
        self.gate.bypassed(len(out))  # they will be delivered: keep in-flight counts exact
        return out

    def process(self, batch: Batch) -> list[Item]:
        """The alerts of ``batch`` the gate lets through now, in order."""
        out, _ = self.process_some(batch, math.inf)
        return out

    def process_some(self, batch: Batch, until: float) -> tuple[list[Item], Batch]:
        """The alerts of the events of ``batch`` processed before ``until`` (on the
        processor's clock; one event at least), and the events left for the next call."""
        if not batch:
            return [], []
        if batch[0].from_probe:
            return self._self_events(batch), []
        out: list[Item] = []
        append = out.append
        reading = self._readings[batch[0].feed]
        tokenise = reading.tokenise
        tokens_of = reading.tokens_of
        program = self.program
        if self._several and self.ctx is not None:
            self.ctx.props.update(reading.props)  # %FeedType etc. of this batch's feed
        gate = self.gate
        gate_event, now = gate.batch_event()
        discarded = 0
        rest: Batch = []
        if program is None:
            # Tokens as fields: linear in the record, and a batch is <= MAX_BATCH_BYTES.
            for ev in batch:
                key = ev.key
                if tokens_of is None:
                    tokens = tokenise(ev.raw, True)
                    if (source := ev.source) is not None:
                        tokens["PeerAddress"] = source[0]
                        tokens["PeerPort"] = str(source[1])
                else:
                    tokens = tokens_of(ev)
                payload = serialise(tokens, key)
                if gate_event is None or gate_event(key, payload, now):
                    append((key, payload))
            done = len(batch)
        else:
            run = program.run
            split = program.needs_split
            peer = program.needs_peer
            ctx = self.ctx
            assert ctx is not None
            assigned = ctx.assigned
            generated = ctx.generated
            clock = self._clock
            budget = self.budget
            done = 0
            for ev in batch:
                start = clock()  # the one clock read an event: budget and slice
                if start >= until and done:
                    rest = batch[done:]
                    break
                done += 1
                ctx.deadline = start + budget
                key = ev.key
                if tokens_of is None:
                    tokens = tokenise(ev.raw, split)
                    # The sender, from the feed (never from the record: see tokenise).
                    if peer and (source := ev.source) is not None:
                        tokens["PeerAddress"] = source[0]
                        tokens["PeerPort"] = str(source[1])
                else:
                    tokens = tokens_of(ev)
                fields = run(tokens, ctx)
                if assigned:
                    self._assigned()
                if generated:
                    self._generated(key, gate_event, append, now)
                if fields is None:
                    discarded += 1
                    continue
                payload = serialise(fields, key)
                if gate_event is None or gate_event(key, payload, now):
                    append((key, payload))
        self._metrics.events_received.inc(done)
        if discarded:
            self._metrics.events_discarded.labels(reason="rules").inc(discarded)
        return out, rest

    async def run(
        self,
        recv: ReceiveEnd[Batch],
        send: SendEnd[list[Item]],
    ) -> None:
        """Process until ``recv`` ends; the caller closes ``send``.

        A batch is worked in slices of RULES_SLICE with a checkpoint between them, so
        heartbeats and timers never wait for a whole batch of costly events.
        """
        clock, gate = self._clock, self.gate
        async for batch in recv:  # each receive is a schedule point
            rest = batch
            while True:
                out, rest = self.process_some(rest, clock() + RULES_SLICE)
                if out:
                    if gate.flushing:  # behind a takeover's flush, in feed order
                        await gate.flushed()
                    try:
                        send.send_nowait(out)  # saves the scheduler a round per batch
                    except trio.WouldBlock:
                        await send.send(out)
                if not rest:
                    break
                # Two schedule points: a task the first one lets wake (a timer that
                # ran out during the slice, a readable socket) joins this task in
                # trio's next batch, which runs in random order; the second makes
                # sure it runs before the next slice, not after (measured: one
                # checkpoint let a heartbeat wait for two slices, bench/jitter.py).
                await trio.lowlevel.checkpoint()
                await trio.lowlevel.checkpoint()
