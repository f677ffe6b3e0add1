"""Several feeds in one probe (``Feeds``) and every feed's sender (issue 23 items 2, 4).

Props: the list, its errors (key, index, file), the one-feed shorthand's equivalence,
--dumpprops. The sender: ``datagrams.reader`` (recvmmsg and its recvfrom fallback) on
real loopback sockets, hypothesis over the bytes; the trailer the key is computed
without is the same over UDP and both TCP framings. One real probe with a UDP and a TCP
feed: both feed it, ``$PeerAddress``/``$PeerPort`` are right (a rule matches on them),
the same message gets the same keys whichever listener it came in on.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import trio
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probepair.config import props
from probepair.config.propsfile import read_props_file
from probepair.errors import ConfigError
from probepair.events import KeyMaker, key_of
from probepair.feeds import make_feeds
from probepair.feeds.datagrams import reader, source_of
from probepair.feeds.framing import SyslogFramer
from probepair.feeds.lines import TRAILER
from probepair.pipeline.tokenise import tokenise_json
from probepair.probe import Probe
from probepair.rules import ast, compile_rules, parser
from probepair.rules.trust import untrusted_mode_assignments

# -- props ---------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "feeds.props"
    path.write_text(text)
    return str(path)


FEEDS_YAML = """\
Feeds:
  - FeedType: udp
    FeedPort: 5514
  - FeedType: tcp
    FeedPort: 5514
    FeedFormat: json
  - {FeedType: snmp, FeedAddress: "::"}
"""


def test_a_feeds_list_gives_one_props_per_feed(tmp_path: Path) -> None:
    path = write(tmp_path, FEEDS_YAML)
    p = props.load([(path, read_props_file(path))])
    assert [(f.FeedType, f.FeedAddress, f.FeedPort, f.FeedFormat) for f in p.feeds] == [
        ("udp", "127.0.0.1", 5514, "syslog"),
        ("tcp", "127.0.0.1", 5514, "json"),
        ("snmp", "::", 162, "syslog"),  # snmp's own default port, as in the shorthand
    ]
    assert all(f.Feeds == () for f in p.feeds)
    assert props.prop_type("Feeds") == "LIST"


def test_the_one_feed_shorthand_equals_a_list_of_one(tmp_path: Path) -> None:
    one = {"FeedType": "tcp", "FeedAddress": "::1", "FeedPort": 6514, "FeedFormat": "line"}
    short = props.load([("test", one)])
    listed = props.load([("test", {"Feeds": [one]})])
    assert short.feeds == (short,)
    assert listed.feeds == (short,)


def test_an_unknown_key_in_a_feed_names_the_key_the_index_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "Feeds:\n  - FeedType: udp\n  - FeedType: tcp\n    FeedProt: 1\n")
    with pytest.raises(ConfigError, match=(
        rf"^{re.escape(path)}: Feeds\[1\]\.FeedProt: unknown key in a feed definition "
        r"\(did you mean 'FeedPort'\?\); expected one of FeedType, FeedAddress, FeedPort, "
        r"FeedFormat, FeedFile, FeedTLSCert, FeedTLSKey, FeedTLSCA$"
    )) as info:
        props.load([(path, read_props_file(path))])
    assert (info.value.source, info.value.key) == (path, "Feeds[1].FeedProt")


@pytest.mark.parametrize(("text", "key", "message"), [
    ("Feeds:\n  - FeedPort: 70000\n", r"Feeds\[0\]\.FeedPort",
     r"expected an integer between 0 and 65535, got 70000"),
    ("Feeds:\n  - FeedType: tcp\n  - FeedType: udpx\n", r"Feeds\[1\]\.FeedType",
     r"expected one of udp, tcp, file, stdin, snmp, got 'udpx'"),
    ("Feeds:\n  - udp\n", r"Feeds\[0\]", r"expected a mapping of FeedType, .*, got 'udp'"),
    ("Feeds: udp\n", "Feeds", r"expected a list of feed definitions, got 'udp'"),
    ("Feeds:\n  - {FeedType: udp, FeedTLSCert: c.pem}\n", r"Feeds\[0\]\.FeedTLSCert",
     r"needs FeedType tcp, got 'udp'"),
    ("Feeds:\n  - {FeedType: snmp}\n  - {FeedType: snmp, FeedPort: 1162}\n",
     r"Feeds\[1\]\.FeedType", r"only one feed of a probe may be snmp"),
    ("Feeds:\n  - {FeedType: udp}\n  - {FeedType: snmp, FeedPort: 5514}\n",
     r"Feeds\[1\]\.FeedPort", r"Feeds\[0\] listens on udp 127\.0\.0\.1:5514 already"),
    ("FeedPort: 1\nFeeds:\n  - {FeedType: udp}\n", "FeedPort",
     r"set in each Feeds definition instead: .*"),
])
def test_feed_definition_errors_name_the_file_and_key(
    tmp_path: Path, text: str, key: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(path)}: {key}: {message}$"):
        props.load([(path, read_props_file(path))])


def test_feeds_from_the_command_line_as_json() -> None:
    p = props.load([("command line", {"Feeds": '[{"FeedType": "tcp", "FeedPort": 0}]'})])
    assert [(f.FeedType, f.FeedPort) for f in p.feeds] == [("tcp", 0)]
    with pytest.raises(ConfigError, match=r"^command line: Feeds: expected a list of feed "):
        props.load([("command line", {"Feeds": "[{FeedType: tcp"})])


def test_dumpprops_lists_feeds_and_loads_back(tmp_path: Path) -> None:
    path = write(tmp_path, FEEDS_YAML)
    p = props.load([(path, read_props_file(path))])
    out = props.dumpprops(p)
    assert re.search(r"^Feeds: \[\{\"FeedType\": \"udp\".* # LIST \(several feeds", out, re.M)
    # The one-feed properties are listed, commented out: they load back as unset.
    assert re.search(r"^# FeedType: 'udp' # STRING .*; not used: Feeds sets it", out, re.M)
    again = write(tmp_path, out)
    assert props.load([(again, read_props_file(again))]) == p
    assert "\nFeeds: [] # LIST" in props.dumpprops(props.load())
    assert yaml.safe_load(props.dumpprops(props.load()))["Feeds"] == []


# -- the sender and the trailer -----------------------------------------------------


def udp_pair(family: socket.AddressFamily, host: str) -> tuple[socket.socket, socket.socket]:
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((host, 0))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(("127.0.0.1", receiver.getsockname()[1]))
    return receiver, sender


def read_all(sock: socket.socket, batched: bool, want: int) -> tuple[list[bytes], list[object]]:
    read = reader(sock, batched=batched)
    raws: list[bytes] = []
    sources: list[object] = []
    for _ in range(1000):
        read(raws, sources, 512)
        if len(raws) >= want:
            break
    return raws, sources


payloads = st.binary(min_size=0, max_size=300)


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvfrom"])
@pytest.mark.parametrize(("family", "host"), [
    (socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::"),
], ids=["ipv4", "ipv6-mapped"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(payloads, min_size=1, max_size=70))
def test_the_reader_gives_each_datagram_stripped_with_its_sender(
    batched: bool, family: socket.AddressFamily, host: str, data: list[bytes]
) -> None:
    receiver, sender = udp_pair(family, host)
    with receiver, sender:
        for d in data:
            sender.send(d)
        raws, sources = read_all(receiver, batched, len(data))
        assert raws == [d.rstrip(TRAILER) for d in data]
        # IPv4 senders of an IPv6 socket show as IPv4, as the snmp feed shows them.
        assert sources == [("127.0.0.1", sender.getsockname()[1])] * len(data)
        assert reader(receiver, batched=batched)([], [], 10) is True  # empty now


def test_source_of_shows_ipv4_mapped_as_ipv4() -> None:
    assert source_of(("::ffff:192.0.2.1", 514, 0, 0)) == ("192.0.2.1", 514)
    assert source_of(("::1", 514, 0, 0)) == ("::1", 514)
    assert source_of(("::ffff:abcd", 514, 0, 0)) == ("::ffff:abcd", 514)  # no IPv4 inside


line_messages = st.binary(min_size=1, max_size=200).filter(
    lambda m: b"\n" not in m and m.rstrip(TRAILER) != b""
)


@given(msg=line_messages, trailer=st.sampled_from([b"", b"\r", b"\x00", b"\r\x00", b"\x00\r"]))
def test_one_message_has_one_key_over_udp_and_both_tcp_framings(msg: bytes, trailer: bytes) -> None:
    """What a sender appends (CR, NUL) never changes the key, whatever the transport."""
    udp = (msg + trailer + b"\n").rstrip(TRAILER)  # what datagrams.reader keeps
    newline = SyslogFramer()
    lines = newline.feed(msg + trailer + b"\n") + newline.finish()
    octets = SyslogFramer()
    body = msg + trailer
    frames = octets.feed(b"%d %s" % (len(body), body)) + octets.finish()
    if not msg[:1].isdigit() or not re.match(rb"[1-9][0-9]* ", msg):
        assert lines == [udp]  # (a line shaped "<digits> text" reads as a frame)
    assert frames == [udp]
    assert key_of(udp) == KeyMaker().key(frames[0], 0.0)


def test_a_json_record_cannot_forge_its_sender() -> None:
    tokens = tokenise_json(b'{"PeerAddress": "10.0.0.1", "PeerPort": 1, "Manager": "x"}')
    assert "PeerAddress" not in tokens and "PeerPort" not in tokens
    assert (tokens["FeedPeerAddress"], tokens["FeedPeerPort"], tokens["FeedManager"]) == (
        "10.0.0.1", "1", "x")


def test_feeds_of_one_probe_share_one_key_maker() -> None:
    p = props.load([("test", {"Feeds": [{"FeedType": "udp"}, {"FeedType": "tcp"}]})])
    udp, tcp = make_feeds(p, lambda: 0.0)
    assert udp._keys is tcp._keys  # type: ignore[attr-defined]
    assert (udp._index, tcp._index) == (0, 1)  # type: ignore[attr-defined]


# -- one probe, two feeds, over loopback --------------------------------------------

RULES = """\
@Summary = $Message
@PeerAddress = $PeerAddress
@PeerPort = $PeerPort
@FeedType = %FeedType
if (match($PeerAddress, "127.0.0.1")) {
    @Trusted = 1
} else {
    @Trusted = 0
}
"""


def fed_alerts(path: Path) -> list[dict[str, object]]:
    """The sink's alerts but the probe's own ProbeWatch events."""
    text = path.read_text() if path.exists() else ""
    lines = [json.loads(line) for line in text.splitlines()]
    return [line for line in lines if line.get("Manager") != "ProbeWatch"]


async def wait_lines(path: Path, count: int) -> list[dict[str, object]]:
    with trio.fail_after(10):
        while True:
            lines = fed_alerts(path)
            if len(lines) >= count:
                return lines
            await trio.sleep(0.02)  # polling a real file: no event tells us it grew


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvfrom"])
async def test_one_probe_with_a_udp_and_a_tcp_feed_reads_both(
    tmp_path: Path, batched: bool
) -> None:
    rules = tmp_path / "peer.rules"
    rules.write_text(RULES)
    sink = tmp_path / "alerts.jsonl"
    p = props.load([("test", {
        "Feeds": [
            {"FeedType": "udp", "FeedPort": 0, "FeedFormat": "syslog"},
            {"FeedType": "tcp", "FeedPort": 0, "FeedFormat": "line"},
        ],
        "RulesFile": str(rules), "SinkFile": str(sink), "StoreAndForward": False,
        "ControlSocket": str(tmp_path / "ctl.sock"), "BatchLatency": 0, "Name": "two",
    })])
    probe = Probe(p, wall_clock=lambda: 1e9, ready=lambda line: None)
    probe.feeds[0].batched = batched  # type: ignore[attr-defined]
    message = b"<13>Nov 22 10:00:00 host app: same message"
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(probe.run)
        udp_at, tcp_at = (a.rsplit(":", 1) for a in addresses["feed"].split(","))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(message + b"\n", (udp_at[0], int(udp_at[1])))
            udp_port = u.getsockname()[1]
            await wait_lines(sink, 1)
        stream = await trio.open_tcp_stream(tcp_at[0], int(tcp_at[1]))
        tcp_port = stream.socket.getsockname()[1]
        async with stream:
            await stream.send_all(message + b"\r\n")
            lines = await wait_lines(sink, 2)
        probe.stop("test done")
    by_feed = {line["FeedType"]: line for line in lines}
    assert by_feed["udp"]["Summary"] == "same message"  # read as syslog
    assert by_feed["tcp"]["Summary"] == ""  # read as line: no $Message
    assert (by_feed["udp"]["PeerAddress"], by_feed["udp"]["PeerPort"]) == (
        "127.0.0.1", str(udp_port))
    assert (by_feed["tcp"]["PeerAddress"], by_feed["tcp"]["PeerPort"]) == (
        "127.0.0.1", str(tcp_port))
    assert by_feed["udp"]["Trusted"] == by_feed["tcp"]["Trusted"] == 1
    # One key maker: the second copy, on the other listener, is the second occurrence.
    assert [line["EventKey"] for line in lines] == [key_of(message).hex(), key_of(message, 1).hex()]
    assert probe.metrics.count("probepair_events_received_total") >= 2


# -- %Mode guarded by the sender ------------------------------------------------------


def mode_spans(text: str) -> list[int]:
    module: ast.Module = parser.parse(text, "t.rules")
    return [span.line for span in untrusted_mode_assignments(module)]


@pytest.mark.parametrize("cond", [
    'match($PeerAddress, "127.0.0.1")',
    '$PeerAddress == "::1"',
    '"127.0.0.2" == $PeerAddress',
    '$PeerIPaddress == "127.0.0.1" && $Message == "become master"',
    'match(%FeedType, "file")',
    '(match(%FeedType, "file") || match($PeerAddress, "127.0.0.1")) && $Message == "x"',
])
def test_a_mode_switch_guarded_by_a_loopback_sender_is_trusted(cond: str) -> None:
    assert mode_spans(f'if ({cond}) {{\n  %Mode = "master"\n}}\n') == []


@pytest.mark.parametrize("cond", [
    'match($PeerAddress, "10.0.0.5")',  # a UDP datagram can claim any LAN address
    '$PeerAddress == "localhost"',  # snmp's $PeerAddress is a name: reverse DNS decides
    'match($PeerAddress, $Hostname)',
    '$PeerAddress == "127.0.0.1" || $Message == "x"',
    'regmatch($PeerAddress, "^127\\\\.")',
    '$FeedPeerAddress == "127.0.0.1"',
    'match(%FeedType, "file") || $Message == "x"',
])
def test_other_sender_guards_are_still_reported(cond: str) -> None:
    assert mode_spans(f'if ({cond}) {{\n  %Mode = "master"\n}}\n') == [2]


@pytest.mark.parametrize(("text", "needs"), [
    ("@Summary = $Message\n", False),
    ("@Node = $PeerAddress\n", True),
    ('if (exists($PeerPort)) { @P = 1 }\n', True),
    ("foreach (t in $*) { @X = t }\n", True),
    ("details($*)\n", True),
])
def test_the_processor_sets_the_sender_tokens_only_for_rules_that_read_them(
    text: str, needs: bool
) -> None:
    assert compile_rules(text, source="t.rules").needs_peer is needs


def test_a_ptr_record_that_reads_as_an_address_never_names_a_trap_sender(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from probepair.feeds.snmp import names

    answers = {"192.0.2.7": "127.0.0.1", "192.0.2.8": "::1.", "192.0.2.9": "router.example"}
    monkeypatch.setattr(names.socket, "gethostbyaddr", lambda ip: (answers[ip], [], [ip]))
    assert [names._lookup(ip) for ip in answers] == ["192.0.2.7", "192.0.2.8", "router.example"]
