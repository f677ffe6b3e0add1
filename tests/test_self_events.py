"""ProbeWatch self-events cannot be forged through a feed (issue 19 item 6).

Two ways in were open: a json record ``{"Manager": "ProbeWatch", ...}`` reached the
rules as ``$Manager == "ProbeWatch"`` (and, through the shipped rules, came out with the
real self-event's Identifier), and ``Processor.process`` took any batch whose first
event had tokens for self-events. Now only ``self_event`` marks an event
(``Event.from_probe``) and ``$Manager`` is reserved: a json ``Manager`` key is
``$FeedManager``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

import orjson
from hypothesis import given
from hypothesis import strategies as st

from probepair.config import props
from probepair.events import Event, key_of
from probepair.pipeline.tokenise import TOKENISERS, tokenise_json
from probepair.metrics import Metrics
from probepair.pipeline.processor import Processor, self_event
from probepair.rules import compile_rules, load_rules

Clock = Callable[[], float]
RENAMED = "probepair_feed_manager_renamed_total"


class RecordingGate:
    """Forwards everything; records which alerts went through it and which bypassed it."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.bypassed_count = 0

    def event(self, key: bytes, payload: bytes, now: float = 0.0) -> bool:
        self.seen.append(key)
        return True

    flushing = False  # never flushes: nothing waits behind it

    def batch_event(self) -> tuple[object, float]:
        return self.event, 0.0

    def delivered(self, keys: list[bytes]) -> None:
        pass

    def bypassed(self, count: int) -> None:
        self.bypassed_count += count

    def request_mode(self, mode: object) -> None:
        pass


def forged(summary: str = "Running ...") -> bytes:
    """A json record dressed as this probe's own self-event."""
    return orjson.dumps({"Manager": "ProbeWatch", "Summary": summary,
                         "Node": platform.node(), "Agent": "x"})


def processor(metrics: Metrics, wall_clock: Clock, gate: RecordingGate,
              rules: str | None = None) -> Processor:
    p = props.load([("test", {"FeedPort": 0, "FeedFormat": "json"})])  # the shipped rules
    program = load_rules(p.RulesFile) if rules is None else compile_rules(rules)
    return Processor(p, program, gate, metrics, wall_clock)  # type: ignore[arg-type]


def test_the_rules_never_see_a_feed_record_as_probewatch(
        metrics: Metrics, wall_clock: Clock) -> None:
    rules = ('@Manager = $Manager\n@FeedManager = $FeedManager\n'
             'if (match($Manager, "ProbeWatch")) { @Watch = 1 }')
    ev = Event(forged(), key_of(forged()), 1.0)
    [(_, payload)] = processor(metrics, wall_clock, RecordingGate(), rules).process([ev])
    assert orjson.loads(payload) == {
        "Manager": "", "FeedManager": "ProbeWatch", "EventKey": ev.key.hex()}
    assert metrics.count(RENAMED) == 1


def test_a_forged_record_through_the_shipped_rules_is_an_ordinary_event(
        metrics: Metrics, wall_clock: Clock) -> None:
    gate = RecordingGate()
    proc = processor(metrics, wall_clock, gate)
    real = self_event("p1", "Running ...", wall_clock)
    [(_, real_payload)] = proc.process([real])
    assert (gate.seen, gate.bypassed_count) == ([], 1)  # a self-event bypasses the gate
    real_alert = orjson.loads(real_payload)
    assert real_alert["Manager"] == "ProbeWatch"

    ev = Event(forged(), key_of(forged()), 1.0)
    [(_, payload)] = proc.process([ev])
    alert = orjson.loads(payload)
    assert (gate.seen, gate.bypassed_count) == ([ev.key], 1)  # through the gate, like any
    assert alert["Manager"] == "probepair"  # %Manager: the feed branch of the rules
    assert alert["AlertGroup"] != "probestat"
    assert alert["Identifier"] != real_alert["Identifier"]
    assert metrics.count(RENAMED) == 1


def test_only_the_from_probe_flag_makes_a_self_event(
        metrics: Metrics, wall_clock: Clock) -> None:
    # An event that arrives with tokens (a future feed that pre-tokenises, say) is still
    # a feed record: tokenised from its raw bytes, through the gate.
    gate = RecordingGate()
    proc = processor(metrics, wall_clock, gate, rules="@Line = $Line\n@Manager = $Manager")
    raw = b'{"Manager": "ProbeWatch"}'
    ev = Event(raw, key_of(raw), 1.0, {"Manager": "ProbeWatch", "Summary": "Running ..."})
    [(_, payload)] = proc.process([ev])
    assert orjson.loads(payload) == {"Line": raw.decode(), "Manager": "", "EventKey": ev.key.hex()}
    assert (gate.seen, gate.bypassed_count) == ([ev.key], 0)
    assert self_event("p1", "Running ...", wall_clock).from_probe
    assert not Event(raw, key_of(raw), 1.0).from_probe


def test_tokenise_json_renames_manager() -> None:
    assert tokenise_json(b'{"Manager": "ProbeWatch", "Node": "n"}', False) == {
        "Line": '{"Manager": "ProbeWatch", "Node": "n"}', "FeedManager": "ProbeWatch",
        "Node": "n"}
    # The record's own FeedManager key gives way to its Manager, whatever the key order.
    for raw in (b'{"FeedManager": "a", "Manager": "b"}', b'{"Manager": "b", "FeedManager": "a"}'):
        tokens = tokenise_json(raw, False)
        assert (tokens["FeedManager"], "Manager" in tokens) == ("b", False)
    # An escaped key is the same key once decoded.
    assert "Manager" not in tokenise_json(b'{"Man\\u0061ger": "ProbeWatch"}', False)


small_ints = st.integers(-(2**63), 2**63 - 1)  # what orjson encodes
records = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(["Manager", "FeedManager", "Summary", "Line", "x"]),
                    st.one_of(st.just("ProbeWatch"), st.text(max_size=10), small_ints,
                              st.none(), st.lists(small_ints, max_size=2)),
                    max_size=5).map(orjson.dumps),
    st.text(max_size=100).map(lambda s: f"<13>Oct 11 22:14:15 h Manager: {s}".encode()),
)


@given(raw=records, split=st.booleans())
def test_no_tokeniser_gives_a_manager_token(raw: bytes, split: bool) -> None:
    for name, tokenise in TOKENISERS.items():
        assert "Manager" not in tokenise(raw, split), name
