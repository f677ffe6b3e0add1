"""mttrapd's elements from decoded traps, its functions, and rules/mttrapd.rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from probepair.events import Event
from probepair.feeds.snmp import ber
from probepair.feeds.snmp.control import TrapControl
from probepair.feeds.snmp.tokens import trap_tokens, uptime, v1_fields, value_tokens
from probepair.rules import RulesContext, compile_rules, load_rules

ROOT = Path(__file__).resolve().parents[1]
UP = (".1.3.6.1.2.1.1.3.0", ber.TIMETICKS, 360_100)
IFINDEX = (".1.3.6.1.2.1.2.2.1.1.3", ber.INTEGER, 3)


def _trap_oid(oid: str) -> ber.Varbind:
    return (".1.3.6.1.6.3.1.1.4.1.0", ber.OID, oid)


def _v2(*varbinds: ber.Varbind) -> ber.Pdu:
    data = ber.encode_message(ber.V2C, b"public", ber.encode_pdu(
        ber.TRAP_V2, 9, ber.encode_varbinds(list(varbinds))))
    msg = ber.decode_message(data)
    assert isinstance(msg, ber.Message)
    return msg.pdu


@pytest.mark.parametrize(("varbinds", "expected"), [
    # RFC 3584 §3.2: the standard traps: generic n-1, specific 0, enterprise snmpTraps.
    ([UP, _trap_oid(".1.3.6.1.6.3.1.1.5.1")], (".1.3.6.1.6.3.1.1.5", 0, 0)),
    ([UP, _trap_oid(".1.3.6.1.6.3.1.1.5.3"), IFINDEX], (".1.3.6.1.6.3.1.1.5", 2, 0)),
    # ... unless snmpTrapEnterprise.0 says which enterprise.
    ([UP, _trap_oid(".1.3.6.1.6.3.1.1.5.4"), IFINDEX,
      (".1.3.6.1.6.3.1.1.4.3.0", ber.OID, ".1.3.6.1.4.1.9")], (".1.3.6.1.4.1.9", 3, 0)),
    # Enterprise traps: specific = last arc; a 0 before it goes too.
    ([UP, _trap_oid(".1.3.6.1.4.1.9.9.41.2.0.1")], (".1.3.6.1.4.1.9.9.41.2", 6, 1)),
    ([UP, _trap_oid(".1.3.6.1.4.1.8072.2.3.7")], (".1.3.6.1.4.1.8072.2.3", 6, 7)),
])
def test_v2_traps_map_to_v1_fields_as_rfc3584(
    varbinds: list[ber.Varbind], expected: tuple[str, int, int]
) -> None:
    enterprise, generic, specific, ticks, notify, rest, _agent = v1_fields(_v2(*varbinds))
    assert (enterprise, generic, specific) == expected
    assert ticks == 360_100 and notify == varbinds[1][2]
    assert rest == varbinds[2:]


def test_uptime_is_mttrapds_h_mm_ss() -> None:
    assert uptime(0) == "0:00:00"
    assert uptime(360_100) == "1:00:01"
    assert uptime(100 * (50 * 3600 + 61)) == "50:01:01"


def test_value_formats() -> None:
    assert value_tokens(ber.OCTET_STRING, b"up") == ("up", "up", "up", "75 70")
    assert value_tokens(ber.OCTET_STRING, b"\x00\x1b") == ("00 1B", "\x00\x1b", "..", "00 1B")
    assert value_tokens(ber.OCTET_STRING, "é".encode()) == ("é", "Ã©", "..", "C3 A9")
    assert value_tokens(ber.IPADDRESS, b"\x0a\x00\x00\x01")[0] == "10.0.0.1"
    assert value_tokens(ber.INTEGER, -1) == ("-1", "-1", "-1", "FF")
    assert value_tokens(ber.OID, ".1.3.6") [0] == ".1.3.6"
    assert value_tokens(ber.NULL, None) == ("", "", "", "")


def _tokens(pdu: ber.Pdu, version: int = ber.V2C, **kw: object) -> dict[str, str]:
    args: dict[str, object] = dict(
        version=version, community=b"public", peer_ip="192.0.2.7",
        name_of=lambda ip: {"192.0.2.7": "router7"}.get(ip, ip), protocol="UDP", port=162,
        received=1_700_000_000.5, event_count=12)
    args.update(kw)
    return trap_tokens(pdu, **args)  # type: ignore[arg-type]


def test_v2c_tokens() -> None:
    t = _tokens(_v2(UP, _trap_oid(".1.3.6.1.6.3.1.1.5.3"), IFINDEX,
                    (".1.3.6.1.2.1.2.2.1.2.3", ber.OCTET_STRING, b"eth0")))
    assert t == {
        "SNMP_Version": "2", "community": "public", "notify": ".1.3.6.1.6.3.1.1.5.3",
        "enterprise": ".1.3.6.1.6.3.1.1.5", "generic-trap": "2", "specific-trap": "0",
        "IPaddress": "192.0.2.7", "Node": "router7", "PeerIPaddress": "192.0.2.7",
        "PeerAddress": "router7", "Protocol": "UDP", "ReceivedPort": "162",
        "ReceivedTime": "1700000000", "EventCount": "12", "Uptime": "1:00:01",
        "UpTime": "360100", "ReqId": "9",
        "1": "3", "1_raw": "3", "1_text": "3", "1_hex": "03", "OID1": ".1.3.6.1.2.1.2.2.1.1.3",
        "2": "eth0", "2_raw": "eth0", "2_text": "eth0", "2_hex": "65 74 68 30",
        "OID2": ".1.3.6.1.2.1.2.2.1.2.3",
    }


def test_v1_and_v3_tokens() -> None:
    trap = ber.encode_trap_v1(".1.3.6.1.4.1.9", b"\x0a\x01\x02\x03", 6, 17, 4200, [IFINDEX])
    msg = ber.decode_message(ber.encode_message(ber.V1, b"private", trap))
    assert isinstance(msg, ber.Message)
    t = _tokens(msg.pdu, ber.V1, community=b"private")
    assert (t["SNMP_Version"], t["enterprise"], t["generic-trap"], t["specific-trap"]) == (
        "1", ".1.3.6.1.4.1.9", "6", "17")
    # v1: $IPaddress is the agent-addr, $PeerIPaddress the sender.
    assert (t["IPaddress"], t["Node"], t["PeerIPaddress"]) == ("10.1.2.3", "10.1.2.3", "192.0.2.7")
    assert t["Uptime"] == "0:00:42" and "notify" not in t and t["1"] == "3"
    t = _tokens(_v2(UP, _trap_oid(".1.3.6.1.4.1.9.0.1")), ber.V3,
                v3=(b"\x80\x01", b"\x80\x02", "authPriv", b"alice"))
    assert (t["SNMP_Version"], t["contextEngineID"], t["securityEngineID"]) == ("3", "8001", "8002")
    assert (t["securityLevel"], t["securityName"]) == ("authPriv", "alice")
    assert "community" not in t


def _ctx(control: TrapControl | None, props: dict[str, object] | None = None) -> RulesContext:
    return RulesContext(props=dict(props or {"Manager": "mttrapd", "Server": "NCOMS",
                                             "TrapStat": 1}),
                        assigned={}, log=lambda level, msg: None, on_error=lambda e: None,
                        wall_clock=lambda: 1_700_000_000.0, hostname="probehost", traps=control)


def test_functions_reach_the_trap_control() -> None:
    program = compile_rules(
        '@q = get_queue_size()\n@n = read_trap_count($h)\n@all = read_trap_count()\n'
        '@a = drop_list_add($h)\n@again = drop_list_add($h)\n@d = read_drop_count($h)\n'
        '@r = drop_list_remove($h)\n', source="t.rules")
    control = TrapControl()
    seen: list[tuple[str, bool]] = []
    control.on_blockade = lambda host, blocked: seen.append((host, blocked))
    for _ in range(3):
        control.queue_one("10.0.0.1")
    control.queue_one("10.0.0.2")
    alert = program.run({"h": "10.0.0.1"}, _ctx(control))
    assert alert is not None
    assert (alert["q"], alert["n"], alert["all"], alert["a"], alert["again"], alert["r"]) == (
        4, 3, 4, 1, 0, 1)
    assert seen == [("10.0.0.1", True), ("10.0.0.1", False)]
    # The processor takes an event out: the counts follow.
    control.taken(Event(b"", b"k" * 8, 0.0, {"PeerIPaddress": "10.0.0.1"}))
    assert control.read_trap_count("10.0.0.1") == 2 and control.get_queue_size() == 3
    control.drop_list_add("10.0.0.9")
    control.drop_one("10.0.0.9")
    assert control.read_drop_count("10.0.0.9") == 1 == control.read_drop_count()
    # Without an snmp feed they count nothing.
    alert = program.run({"h": "x"}, _ctx(None))
    assert alert is not None and alert["q"] == 0 and alert["a"] == 0


def _pdu_tokens(varbinds: list[ber.Varbind], ip: str = "192.0.2.7") -> dict[str, str]:
    return _tokens(_v2(UP, *varbinds), peer_ip=ip, name_of=lambda i: i)


def test_shipped_mttrapd_rules_turn_traps_into_alerts() -> None:
    program = load_rules(ROOT / "rules" / "mttrapd.rules")
    control = TrapControl()
    ctx = _ctx(control, {"Manager": "mttrapd", "Server": "NCOMS", "TrapStat": 0})
    down = program.run(_pdu_tokens([_trap_oid(".1.3.6.1.6.3.1.1.5.3"), IFINDEX]), ctx)
    assert down is not None
    assert (down["Summary"], down["Severity"], down["AlertKey"], down["Type"]) == (
        "Link Down", 5, "3", 1)
    assert down["Identifier"] == "192.0.2.7 mttrapd 2 0 3"
    up = program.run(_pdu_tokens([_trap_oid(".1.3.6.1.6.3.1.1.5.4"), IFINDEX]), ctx)
    assert up is not None and (up["Summary"], up["Type"]) == ("Link Up", 2)
    assert up["Identifier"] == down["Identifier"]  # the resolution matches its problem
    ent = program.run(_pdu_tokens([_trap_oid(".1.3.6.1.4.1.9.0.5"),
                                   (".1.3.6.1.4.1.9.1", ber.OCTET_STRING, b"fan\x00")]), ctx)
    assert ent is not None
    assert ent["Summary"] == "Enterprise:.1.3.6.1.4.1.9  Generic Trap:6  Specific Trap:5  fan."
    watch = program.run({"Manager": "ProbeWatch", "Summary": "mttrapd on 192.0.2.9 is blocked",
                         "Node": "probehost", "Agent": "p"}, ctx)
    assert watch is not None
    assert (watch["AlertKey"], watch["Severity"], watch["AlertGroup"]) == (
        "192.0.2.9", 5, "Trap IP Status")


def test_flood_control_blocks_a_flooding_host_and_lets_it_back() -> None:
    program = load_rules(ROOT / "rules" / "mttrapd.rules")
    control = TrapControl()
    seen: list[tuple[str, bool]] = []
    control.on_blockade = lambda host, blocked: seen.append((host, blocked))
    now = [1_700_000_000.0]
    ctx = _ctx(control)
    ctx.wall_clock = lambda: now[0]
    flood = "192.0.2.66"
    for _ in range(1002):
        control.queue_one(flood)
    tokens = _pdu_tokens([_trap_oid(".1.3.6.1.4.1.9.0.5")], ip=flood)
    assert program.run(tokens, ctx) is None  # discarded, and the host blocked
    assert seen == [(flood, True)] and flood in control.drop_list
    ctx.generated.clear()
    now[0] += 31  # the next check, with no traps dropped meanwhile: let back
    for _ in range(1002):
        control.taken(Event(b"", b"k" * 8, 0.0, {"PeerIPaddress": flood}))
    assert program.run(_pdu_tokens([_trap_oid(".1.3.6.1.4.1.9.0.5")]), ctx) is not None
    assert seen == [(flood, True), (flood, False)] and not control.drop_list
