"""mttrapd's elements: a decoded trap as ``$token`` values.

PURE: standard library only.

Names and formats follow the mttrapd probe's elements (IBM's SNMP probe reference,
"Elements"): ``$community``, ``$enterprise``, ``$generic-trap``, ``$specific-trap``,
``$IPaddress``, ``$Node``, ``$notify``, ``$PeerAddress``, ``$PeerIPaddress``,
``$Protocol``, ``$ReceivedPort``, ``$ReceivedTime``, ``$ReqId``, ``$SNMP_Version``
(1, 2 or 3), ``$Uptime`` (h:mm:ss) and ``$UpTime`` (TimeTicks), ``$contextEngineID``,
``$securityEngineID``, ``$securityLevel``, ``$securityName``, ``$EventCount``, and per
varbind ``$n`` (its value), ``$n_raw``, ``$n_text``, ``$n_hex`` and ``$OIDn`` (its OID).

SNMPv2c/v3 notifications: ``sysUpTime.0`` and ``snmpTrapOID.0`` (the first two
varbinds, RFC 3416 §4.2.6) become ``$UpTime``/``$Uptime`` and ``$notify``; ``$1`` is
the first varbind after them, as for a v1 trap. ``$enterprise``, ``$generic-trap`` and
``$specific-trap`` are what RFC 3584 §3.2 maps ``snmpTrapOID.0`` to (a v2 trap seen
by a v1 manager), so the same rules handle both versions.

OIDs are numeric with a leading dot (mttrapd with ``MIBFile: /dev/null``: the stock
rules turn names into this form themselves).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from probepair.feeds.snmp import ber

SYS_UPTIME: Final = ".1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID: Final = ".1.3.6.1.6.3.1.1.4.1.0"
SNMP_TRAP_ENTERPRISE: Final = ".1.3.6.1.6.3.1.1.4.3.0"
SNMP_TRAP_ADDRESS: Final = ".1.3.6.1.6.3.18.1.3.0"  # RFC 3584 §3.1 (4)
SNMP_TRAPS: Final = ".1.3.6.1.6.3.1.1.5"  # coldStart(1) .. egpNeighborLoss(6)

# Names of the per-varbind tokens, computed once for the varbind counts seen (hot path).
_NAMES: Final = [
    (str(i), f"{i}_raw", f"{i}_text", f"{i}_hex", f"OID{i}") for i in range(ber.MAX_VARBINDS + 1)
]
_VERSIONS: Final = {ber.V1: "1", ber.V2C: "2", ber.V3: "3"}  # mttrapd's $SNMP_Version
_PRINTABLE: Final = bytes(range(32, 127))
_DOTS: Final = bytes(c if 32 <= c < 127 else 46 for c in range(256))


def uptime(ticks: int) -> str:
    """TimeTicks (hundredths of a second) as mttrapd's ``0:00:00`` (hours unbounded)."""
    seconds = ticks // 100
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _hex(raw: bytes) -> str:
    return raw.hex(" ").upper()


def _int_bytes(v: int) -> bytes:
    return v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True)


def value_tokens(tag: int, value: ber.Value) -> tuple[str, str, str, str]:
    """(``$n``, ``$n_raw``, ``$n_text``, ``$n_hex``) of one varbind value.

    An OCTET STRING is ``$n`` as text when it is printable UTF-8, else as hex
    (``0A 1B``, net-snmp's Hex-STRING); ``_raw`` keeps every octet (Latin-1),
    ``_text`` shows non-printable octets as ``.``, ``_hex`` is hex always.
    """
    if isinstance(value, bytes):
        if tag == ber.IPADDRESS:
            text = ".".join(map(str, value))
            return text, text, text, _hex(value)
        raw = value.decode("latin-1")
        hexed = _hex(value)
        if not value.translate(None, _PRINTABLE):
            return raw, raw, raw, hexed
        try:
            utf8 = value.decode("utf-8")
        except UnicodeDecodeError:
            utf8 = ""
        shown = utf8 if utf8 and utf8.isprintable() else hexed
        return shown, raw, value.translate(_DOTS).decode("ascii"), hexed
    if isinstance(value, int):
        text = str(value)
        return text, text, text, _hex(_int_bytes(value))
    if isinstance(value, str):
        return value, value, value, _hex(value.encode())
    return "", "", "", ""


def v1_fields(pdu: ber.Pdu) -> tuple[str, int, int, int, str, list[ber.Varbind], bytes]:
    """(enterprise, generic-trap, specific-trap, uptime, notify, varbinds, agent-addr).

    v1: from the Trap-PDU (``notify`` ''). v2: RFC 3584 §3.2 from ``snmpTrapOID.0``:
    a standard trap (snmpTraps.n) is generic n-1, specific 0, enterprise
    ``snmpTrapEnterprise.0`` if given else snmpTraps; any other is generic 6, specific
    its last sub-identifier, enterprise the rest (less a trailing 0). The agent-addr
    is ``snmpTrapAddress.0`` if given, else b'' (the caller uses the sender's address).
    """
    if pdu.tag == ber.TRAP_V1:
        return (pdu.enterprise, pdu.generic, pdu.specific, pdu.timestamp, "", pdu.varbinds,
                pdu.agent_addr)  # fmt: skip
    varbinds = pdu.varbinds
    ticks = 0
    notify = ""
    start = 0
    if varbinds and varbinds[0][0] == SYS_UPTIME and isinstance(varbinds[0][2], int):
        ticks = varbinds[0][2]
        start = 1
    if len(varbinds) > start and varbinds[start][0] == SNMP_TRAP_OID:
        trap = varbinds[start][2]
        notify = trap if isinstance(trap, str) else ""
        start += 1
    rest = varbinds[start:]
    agent = b""
    enterprise_vb = ""
    for oid, _tag, value in rest:
        if oid == SNMP_TRAP_ADDRESS and isinstance(value, bytes):
            agent = value
        elif oid == SNMP_TRAP_ENTERPRISE and isinstance(value, str):
            enterprise_vb = value
    head, _, last = notify.rpartition(".")
    if head == SNMP_TRAPS and last in ("1", "2", "3", "4", "5", "6"):
        return enterprise_vb or SNMP_TRAPS, int(last) - 1, 0, ticks, notify, rest, agent
    specific = int(last) if last.isdigit() else 0
    if head.endswith(".0"):
        head = head[:-2]
    return head, 6, specific, ticks, notify, rest, agent


def trap_tokens(
    pdu: ber.Pdu,
    *,
    version: int,
    community: bytes,
    peer_ip: str,
    name_of: Callable[[str], str],
    protocol: str,
    port: int,
    received: float,
    event_count: int,
    v3: tuple[bytes, bytes, str, bytes] | None = None,
) -> dict[str, str]:
    """Every element of one trap or inform.

    Args:
        version: ber.V1, V2C or V3.
        peer_ip: the address it came from (``$PeerIPaddress``).
        name_of: an IP address's host name from the DNS cache, or the address itself
            (never blocks; NoNameResolution: the address).
        protocol: "UDP" or "TCP"; port: the port it arrived on (``$ReceivedPort``).
        v3: (contextEngineID, securityEngineID, securityLevel, securityName).
    """
    enterprise, generic, specific, ticks, notify, varbinds, agent = v1_fields(pdu)
    ip = ".".join(map(str, agent)) if len(agent) == 4 and any(agent) else peer_ip
    tokens = {
        "SNMP_Version": _VERSIONS[version],
        "enterprise": enterprise,
        "generic-trap": str(generic),
        "specific-trap": str(specific),
        "IPaddress": ip,
        "Node": name_of(ip),
        "PeerIPaddress": peer_ip,
        "PeerAddress": name_of(peer_ip),
        "Protocol": protocol,
        "ReceivedPort": str(port),
        "ReceivedTime": str(int(received)),
        "EventCount": str(event_count),
        "Uptime": uptime(ticks),
        "UpTime": str(ticks),
    }
    if version != ber.V3:
        tokens["community"] = community.decode("latin-1")
    if pdu.tag != ber.TRAP_V1:
        tokens["notify"] = notify
        tokens["ReqId"] = str(pdu.request_id)
    if v3 is not None:
        context, security, level, name = v3
        tokens["contextEngineID"] = context.hex()
        tokens["securityEngineID"] = security.hex()
        tokens["securityLevel"] = level
        tokens["securityName"] = name.decode("utf-8", "replace")
    names = _NAMES
    for i, (oid, tag, value) in enumerate(varbinds, 1):
        n, n_raw, n_text, n_hex, n_oid = names[i]
        tokens[n], tokens[n_raw], tokens[n_text], tokens[n_hex] = value_tokens(tag, value)
        tokens[n_oid] = oid
    return tokens
