"""Properties: defaults, precedence, props files, validation messages, --dumpprops."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probepair.config import props
from probepair.config.propsfile import read_props_file
from probepair.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "x.props") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def load_file(path: str, cli: dict[str, object] | None = None) -> props.Props:
    sources: list[tuple[str, dict[str, object]]] = [(path, read_props_file(path))]
    if cli is not None:
        sources.append(("command line", cli))
    return props.load(sources)


# --- defaults and precedence -------------------------------------------------------


def test_defaults() -> None:
    p = props.load()
    assert p.Mode == "standard"
    assert p.PeerHost == ""
    assert p.PeerPort == 0
    assert p.ListenPort == 0
    assert p.BeatInterval == 2.0
    assert p.BeatThreshold == 1.0
    assert p.HeartbeatTimeout == 1.0
    assert p.FeedType == "udp"
    assert p.FeedFormat == "syslog"
    assert p.SinkType == "file"
    assert p.StoreAndForward is True
    assert p.MetricsAddress == "127.0.0.1"
    assert p.MetricsPort == 0
    assert p.takeover_bound == 4.0
    assert p.heartbeat_port == 0


def test_types_of_the_table() -> None:
    assert props.prop_type("Mode") == "STRING"
    assert props.prop_type("PeerPort") == "INTEGER"
    assert props.prop_type("BeatInterval") == "FLOAT"
    assert props.prop_type("StoreAndForward") == "BOOLEAN"


def test_precedence_default_file_command_line(tmp_path: Path) -> None:
    path = write(tmp_path, "BeatInterval: 3\nBeatThreshold: 0.5\n")
    p = load_file(path, {"BeatInterval": "4"})
    assert p.BeatInterval == 4.0  # command line beats the file
    assert p.BeatThreshold == 0.5  # file beats the default
    assert p.HeartbeatTimeout == 1.0  # default
    assert load_file(path).BeatInterval == 3.0


def test_listen_port_falls_back_to_peer_port() -> None:
    p = props.load([("test", {"PeerPort": 4100})])
    assert p.heartbeat_port == 4100
    p = props.load([("test", {"PeerPort": 4100, "ListenPort": 4101})])
    assert p.heartbeat_port == 4101


# --- props files ---------------------------------------------------------------------


def test_yaml_props_file(tmp_path: Path) -> None:
    path = write(tmp_path, "Mode: master\nPeerHost: 10.0.0.2\nPeerPort: 4100\n"
                           "StoreAndForward: false\nFeedAddress: '127.0.0.1'\n")
    p = load_file(path)
    assert (p.Mode, p.PeerHost, p.PeerPort) == ("master", "10.0.0.2", 4100)
    assert p.StoreAndForward is False
    assert p.FeedAddress == "127.0.0.1"


def test_omnibus_style_props_file(tmp_path: Path) -> None:
    path = write(tmp_path, (
        "#######################################\n"
        "# probepair master, OMNIbus style\n"
        "#######################################\n"
        "\n"
        "Mode            : 'master'\n"
        "PeerHost        : 'standby.example.com'   # the slave\n"
        "PeerPort        : 4100\n"
        "BeatInterval    : 0.2\n"
        "MessageLevel    : 'info'\n"
    ))
    p = load_file(path)
    assert p.Mode == "master"
    assert p.PeerHost == "standby.example.com"
    assert p.PeerPort == 4100
    assert p.BeatInterval == 0.2
    assert p.MessageLevel == "info"


def test_omnibus_double_quoted_windows_path_falls_back_to_lines(tmp_path: Path) -> None:
    # "C:\x" is not valid YAML (bad escape); OMNIbus files have such values.
    path = write(tmp_path, '# comment\nRulesFile : "C:\\xrules\\syslog.rules"\nPeerPort : 4100\n')
    assert read_props_file(path) == {"RulesFile": "C:\\xrules\\syslog.rules", "PeerPort": "4100"}
    assert load_file(path).PeerPort == 4100


def test_empty_props_file(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing set\n")
    assert read_props_file(path) == {}
    assert load_file(path) == props.load()


def test_missing_props_file(tmp_path: Path) -> None:
    path = str(tmp_path / "missing.props")
    with pytest.raises(ConfigError, match=rf"^{re.escape(path)}: cannot read props file: "
                                          r"No such file or directory$") as info:
        read_props_file(path)
    assert (info.value.source, info.value.key) == (path, None)


def test_props_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- Mode\n- master\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(path)}: expected a mapping of "
                                          r"Name: value, got a list \(not shown: "):
        read_props_file(path)


def test_props_pointed_at_the_secret_file_never_prints_the_secret(tmp_path: Path) -> None:
    secret = "c37086fea370d2816a8e877264fe92cb88ca30012ef8c3b0af78c01ab70df6f2"
    for text in (secret + "\n", f"{secret} {secret}\n: [\n"):
        path = write(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            read_props_file(path)
        assert secret not in str(info.value) and path in str(info.value)


def test_props_file_with_a_line_of_neither_form(tmp_path: Path) -> None:
    path = write(tmp_path, 'Mode : "master"\nRulesFile : "C:\\x"\nthis is not a property\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(path)}: line \d+: expected "
                                          r"'Name: value', got a line of 22 characters without ':' "
                                          r"\(not shown\)$"):
        read_props_file(path)


# --- validation ----------------------------------------------------------------------


def check_error(tmp_path: Path, text: str, key: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(path)}: {key}: {message}$") as info:
        load_file(path)
    assert info.value.source == path
    assert info.value.key == key


def test_unknown_property_with_hint(tmp_path: Path) -> None:
    check_error(tmp_path, "BeatIntervall: 2\n", "BeatIntervall",
                r"unknown property \(did you mean 'BeatInterval'\?\)")


def test_lower_case_property_hints_the_camel_case_name(tmp_path: Path) -> None:
    check_error(tmp_path, "beatinterval: 2\n", "beatinterval",
                r"unknown property \(did you mean 'BeatInterval'\?\)")


def test_unknown_property_without_hint(tmp_path: Path) -> None:
    check_error(tmp_path, "Zzzzzz: 2\n", "Zzzzzz", r"unknown property")


def test_wrong_type(tmp_path: Path) -> None:
    check_error(tmp_path, "PeerPort: many\n", "PeerPort", r"expected an integer, got 'many'")
    check_error(tmp_path, "BeatThreshold: soon\n", "BeatThreshold",
                r"expected a number, got 'soon'")
    check_error(tmp_path, "PeerPort: 1.5\n", "PeerPort", r"expected an integer, got 1\.5")
    check_error(tmp_path, "StoreAndForward: maybe\n", "StoreAndForward",
                r"expected true or false, got 'maybe'")
    check_error(tmp_path, "PeerHost: [a, b]\n", "PeerHost",
                r"expected a string, got \['a', 'b'\]")


def test_out_of_range_port(tmp_path: Path) -> None:
    check_error(tmp_path, "PeerPort: 65536\n", "PeerPort",
                r"expected an integer between 0 and 65535, got 65536")
    check_error(tmp_path, "FeedPort: -1\n", "FeedPort",
                r"expected an integer between 0 and 65535, got -1")


@pytest.mark.parametrize(
    ("value", "shown"),
    [("0", "0"), ("-1", "-1"), ("-0.5", "-0.5"), ("nan", "'nan'"), (".inf", "inf")],
)
def test_non_positive_beat_interval(tmp_path: Path, value: str, shown: str) -> None:
    check_error(tmp_path, f"BeatInterval: {value}\n", "BeatInterval",
                rf"expected a positive number of seconds, got {re.escape(shown)}")


def test_bad_mode(tmp_path: Path) -> None:
    check_error(tmp_path, "Mode: boss\n", "Mode",
                r"expected one of master, slave, standard, got 'boss'")


def test_master_without_peer_host(tmp_path: Path) -> None:
    check_error(tmp_path, "Mode: master\nPeerPort: 4100\n", "PeerHost",
                r"Mode 'master' needs the peer's host")
    check_error(tmp_path, "Mode: slave\nPeerHost: a\n", "PeerPort",
                r"Mode 'slave' needs the peer's port")


def test_command_line_errors_name_the_command_line() -> None:
    with pytest.raises(ConfigError, match=r"^command line: BeatInterval: expected a positive "
                                          r"number of seconds, got '-1'$"):
        props.load([("command line", {"BeatInterval": "-1"})])


def test_fractions_accepted(tmp_path: Path) -> None:
    p = load_file(write(tmp_path, "BeatInterval: 0.2\nHeartbeatTimeout: .5\n"))
    assert p.BeatInterval == 0.2
    assert p.HeartbeatTimeout == 0.5
    assert props.load([("command line", {"BeatInterval": "0.25"})]).BeatInterval == 0.25


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("false", False), ("1", True), ("0", False), ("'true'", True),
     ("'0'", False), ("True", True), ("FALSE", False)],
)
def test_booleans(tmp_path: Path, text: str, expected: bool) -> None:
    assert load_file(write(tmp_path, f"StoreAndForward: {text}\n")).StoreAndForward is expected


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("0", False), ("1", True)])
def test_booleans_from_the_command_line(raw: str, expected: bool) -> None:
    assert props.load([("command line", {"StoreAndForward": raw})]).StoreAndForward is expected


# --- dumpprops -----------------------------------------------------------------------

LINE = re.compile(r"^([A-Za-z]+): (.*) # (STRING|INTEGER|FLOAT|BOOLEAN|LIST) \((.*)\)$")


def test_dumpprops_format() -> None:
    out = props.dumpprops(props.load(), header=["probepair 0.1.0"])
    lines = out.splitlines()
    assert out.endswith("\n")
    assert lines[0] == "# probepair 0.1.0"
    body = lines[1:]
    assert [LINE.match(line)[1] for line in body] == list(props.NAMES)  # type: ignore[index]
    for line in body:
        m = LINE.match(line)
        assert m is not None, line
        assert m[3] == props.prop_type(m[1])
        assert m[4] == props.describe(m[1])
    assert "Mode: 'standard' # STRING (failover role: master, slave or standard " \
           "(no failover))" in body
    assert "PeerPort: 0 # INTEGER (UDP port of the peer probe's heartbeat listener)" in body
    assert "BeatInterval: 2.0 # FLOAT (seconds between heartbeats sent by the master)" in body
    assert "StoreAndForward: true # BOOLEAN (spool alerts to SAFFileName while the sink " \
           "is down)" in body


def test_dumpprops_quotes_strings() -> None:
    p = props.load([("test", {"PeerHost": "it's", "SharedSecret": "two\nlines\t"})])
    out = props.dumpprops(p, show_secrets=True)
    assert "PeerHost: 'it''s' # STRING" in out
    # line breaks and control characters need YAML's double-quoted escapes
    assert 'SharedSecret: "two\\x0alines\\x09" # STRING' in out


def round_trip(tmp_path: Path, p: props.Props) -> None:
    out = props.dumpprops(p, header=["dumped"], show_secrets=True)
    path = write(tmp_path, out, "dumped.props")
    again = load_file(path)
    assert again == p
    assert props.dumpprops(again, header=["dumped"], show_secrets=True) == out


def test_dumpprops_round_trip(tmp_path: Path) -> None:
    round_trip(tmp_path, props.load())
    round_trip(tmp_path, props.load([("test", {
        "Mode": "master", "PeerHost": "10.0.0.2", "PeerPort": 4100, "BeatInterval": 0.2,
        "StoreAndForward": False, "SharedSecret": "s3cr'et \"x\" # not a comment",
        "FeedPort": 0, "RulesFile": "", "SinkFile": "C:\\alerts\\x.jsonl"})]))


text_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    secret=text_values | st.sampled_from(["'", "''", '"', "a'b", "yes", "1", "~", "# x", " pad "]),
    name=text_values,
    beat=st.floats(min_value=1e-3, max_value=1e6, allow_nan=False),
    port=st.integers(0, 65535),
    saf=st.booleans(),
)
def test_dumpprops_round_trip_hypothesis(
    tmp_path: Path, secret: str, name: str, beat: float, port: int, saf: bool
) -> None:
    p = props.load([("test", {"SharedSecret": secret, "Name": name, "BeatInterval": beat,
                              "FeedPort": port, "StoreAndForward": saf})])
    round_trip(tmp_path, p)
