"""The pair's problems as causes, and drift by name (issue 25 item 2). Pure."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from probepair.config.pairwide import PAIR_SETTINGS, differences, file_digests
from probepair.metrics import Metrics
from probepair.ops.problems import CAUSES, peer_problems
from probepair.ops.status import verdict

BOUND = 3.0


def _causes(**facts: Any) -> list[str]:
    base: dict[str, Any] = dict(heard_ago=0.5, up=60.0, bound=BOUND, rejected=(),
                                config_drift=False, differs=(), split_brain=False)
    base.update(facts)
    return peer_problems(**base)


def test_a_healthy_pair_has_no_problem() -> None:
    assert _causes() == []


def test_a_probe_just_started_is_not_yet_silent() -> None:
    assert _causes(heard_ago=None, up=BOUND / 2) == []
    assert _causes(heard_ago=None, up=BOUND * 2) == ["silent"]
    assert _causes(heard_ago=BOUND + 1) == ["silent"]


def test_refused_datagrams_are_their_cause_not_silence() -> None:
    assert _causes(heard_ago=None, rejected=["mac"]) == ["authentication"]
    assert _causes(heard_ago=None, rejected=["unsigned"]) == ["authentication"]
    assert _causes(heard_ago=None, rejected=["version"]) == ["version"]
    # A stray datagram refused for another reason does not hide the silence.
    assert _causes(heard_ago=None, rejected=["short"]) == ["silent"]


def test_drift_splits_into_settings_and_rules() -> None:
    assert _causes(config_drift=True) == ["config_drift"]  # a master: it cannot tell
    assert _causes(config_drift=True, differs=["rules"]) == ["rules_differ"]
    assert _causes(config_drift=True, differs=["rules file a.rules"]) == ["rules_differ"]
    assert _causes(config_drift=True, differs=["BeatInterval (2 here, 3 there)",
                                               "rules file a.rules"]) == [
        "config_drift", "rules_differ"]
    # A drift reported while the peer is silent is stale: silence is the cause.
    assert _causes(config_drift=True, heard_ago=BOUND * 2) == ["silent"]


@given(
    heard_ago=st.none() | st.floats(0, 100),
    up=st.floats(0, 100),
    rejected=st.lists(st.sampled_from(["mac", "unsigned", "version", "short", "unfresh"])),
    drift=st.booleans(),
    differs=st.lists(st.sampled_from(["rules", "rules file x", "config", "BeatInterval"])),
    split=st.booleans(),
)
def test_causes_are_known_ordered_and_split_brain_always_shows(
    heard_ago: float | None, up: float, rejected: list[str], drift: bool,
    differs: list[str], split: bool,
) -> None:
    causes = _causes(heard_ago=heard_ago, up=up, rejected=rejected, config_drift=drift,
                     differs=differs, split_brain=split)
    assert causes == [c for c in CAUSES if c in causes]
    assert ("split_brain" in causes) == split
    assert not ("silent" in causes and "authentication" in causes)


def test_every_cause_is_exported_at_zero_from_the_start() -> None:
    text = Metrics().exposition().decode()
    for cause in CAUSES:
        assert f'probepair_peer_problem{{cause="{cause}"}} 0.0' in text


def test_differences_name_the_property_with_both_values_and_the_rules_file() -> None:
    settings = {name: 1 for name in PAIR_SETTINGS}
    local = {"settings": settings, "rules_files": file_digests(
        {"main.rules": b"a", "inc.rules": b"x", "old.rules": b"o"}, "main.rules")}
    peer = {"settings": {**settings, "BeatThreshold": 2}, "rules_files": file_digests(
        {"syslog.rules": b"a", "inc.rules": b"y", "new.rules": b"n"}, "syslog.rules")}
    assert differences(local, peer) == [
        "BeatThreshold (1 here, 2 on the peer)",
        "rules file inc.rules", "rules file new.rules", "rules file old.rules",
    ]  # the main file counts by role: named apart, same content, no difference
    assert differences(local, local) == []
    assert differences(local, {}) == []  # an older peer tells nothing: no guess


def test_many_differing_rules_files_are_counted_past_five() -> None:
    ours = {"rules_files": {f"f{i}.rules": "a" for i in range(8)}}
    theirs = {"rules_files": {f"f{i}.rules": "b" for i in range(8)}}
    named = differences(ours, theirs)
    assert named[-1] == "3 more rules files" and len(named) == 6


def _side(name: str, **changes: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"name": name, "role": "master", "active": True,
                              "rules": "r", "ready": True, "problems": [],
                              "peer_heard_seconds_ago": 0.2,
                              "peer_address": "10.0.0.2:5600"}
    status.update(changes)
    return status


def test_status_names_silence_with_the_address_probed() -> None:
    local = _side("a", problems=["silent"], peer_heard_seconds_ago=None)
    lines = verdict(local, None, "peer unknown")
    assert lines[0] == ("WARNING: a hears nothing from 10.0.0.2:5600 (never heard): "
                        "firewall, PeerHost or PeerPort, or the peer is down?")


def test_status_names_drift_by_property_from_both_sides() -> None:
    settings = {name: 1 for name in PAIR_SETTINGS}
    local = _side("a", config_drift=True, settings=settings)
    peer = _side("b", role="slave-standby", active=False, config_drift=True,
                 settings={**settings, "BeatInterval": 2})
    assert ("WARNING: config drift between peers: BeatInterval (1 on a, 2 on b)"
            in verdict(local, peer))
