"""A small BER codec for the SNMP messages a trap receiver reads and answers.

PURE: standard library only, no trio, no sockets.

Why hand-written (issue 22): pyasn1 decodes a 1-varbind v2c trap in 0.4-1.2 ms and a
10-varbind one in 1.4-3.2 ms, 1-2k traps/s on a core. This module decodes only the
subset a notification receiver needs (RFC 1157 Message and Trap-PDU, RFC 3416 PDUs,
RFC 3412 SNMPv3Message with RFC 3414 UsmSecurityParameters, the ScopedPDU) and encodes
the few answers it sends (Response, Report). tests/test_snmp_ber.py cross-checks it
against pyasn1/pysnmp's decode of the same bytes and fuzzes it.

Invariant (h11's fuzz rule): ``decode_*`` return a value or raise ``BerError``, for
any input. Every cost per datagram is bounded before any work is done:

- ``MAX_MESSAGE`` bytes a message (a UDP payload at most);
- ``MAX_VARBINDS`` varbinds a PDU;
- ``MAX_OID_ARCS`` sub-identifiers an OID, each at most 2^32 - 1 (RFC 2578 §3.5);
- nesting: the grammar is fixed (message > PDU > varbind list > varbind > value), no
  value may be constructed, so nothing recurses and depth is at most 5;
- integers at most 9 content octets (Counter64 with its sign octet).

Lengths may use the long form (BER, not only DER) up to three octets; the indefinite
form and multi-octet tags are rejected (SNMP never uses them, RFC 3417 §8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_MESSAGE: Final = 65535  # bytes: the largest UDP payload, also the TCP frame cap
MAX_VARBINDS: Final = 256  # a trap with more is a flood of one datagram, not an event
MAX_OID_ARCS: Final = 128  # RFC 2578 §3.5: at most 128 sub-identifiers
MAX_SUBID: Final = 0xFFFFFFFF  # RFC 2578 §3.5: each at most 2^32 - 1
MAX_INT_OCTETS: Final = 9  # Counter64 (2^64 - 1) needs a leading zero octet

# Universal and SNMP application tags (RFC 2578 §7.1, RFC 3416 §3).
INTEGER: Final = 0x02
OCTET_STRING: Final = 0x04
NULL: Final = 0x05
OID: Final = 0x06
SEQUENCE: Final = 0x30
IPADDRESS: Final = 0x40
COUNTER32: Final = 0x41
GAUGE32: Final = 0x42
TIMETICKS: Final = 0x43
OPAQUE: Final = 0x44
COUNTER64: Final = 0x46
NO_SUCH_OBJECT: Final = 0x80
NO_SUCH_INSTANCE: Final = 0x81
END_OF_MIB_VIEW: Final = 0x82

GET: Final = 0xA0
GETNEXT: Final = 0xA1
RESPONSE: Final = 0xA2
SET: Final = 0xA3
TRAP_V1: Final = 0xA4
GETBULK: Final = 0xA5
INFORM: Final = 0xA6
TRAP_V2: Final = 0xA7
REPORT: Final = 0xA8
PDU_TAGS: Final = frozenset(
    (GET, GETNEXT, RESPONSE, SET, TRAP_V1, GETBULK, INFORM, TRAP_V2, REPORT)
)

V1: Final = 0
V2C: Final = 1
V3: Final = 3

_UNSIGNED: Final = {COUNTER32: MAX_SUBID, GAUGE32: MAX_SUBID, TIMETICKS: MAX_SUBID,
                    COUNTER64: (1 << 64) - 1}  # fmt: skip
_OCTETS: Final = frozenset((OCTET_STRING, OPAQUE, IPADDRESS))
_EMPTY: Final = frozenset((NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW))

# A varbind: (OID in dotted form with a leading dot, value tag, value). The value is an
# int for INTEGER and the unsigned types, bytes for OCTET STRING/Opaque/IpAddress, a
# dotted OID for OBJECT IDENTIFIER, None for NULL and the three exceptions.
Value = int | bytes | str | None
Varbind = tuple[str, int, Value]


class BerError(Exception):
    """The bytes are no SNMP message this codec reads; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Pdu:
    """One PDU. ``key_material`` is what the event key is computed from: the PDU's
    bytes after its request-id (v1 Trap-PDU: all of it), so two copies of a trap sent
    to the two probes of a pair (each with its own request-id) get the same key.
    ``varbind_list`` is the encoded VarBindList, which a Response to an inform repeats."""

    tag: int
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[Varbind]
    key_material: bytes
    varbind_list: bytes
    enterprise: str = ""  # v1 Trap-PDU fields (RFC 1157 §4.1.6)
    agent_addr: bytes = b""
    generic: int = 0
    specific: int = 0
    timestamp: int = 0


@dataclass(slots=True)
class Message:
    """An SNMPv1 or SNMPv2c message."""

    version: int
    community: bytes
    pdu: Pdu


@dataclass(slots=True)
class V3Message:
    """An SNMPv3Message (RFC 3412 §6) with USM parameters (RFC 3414 §2.4), undecrypted.

    ``auth_offset`` is where ``auth_params`` starts in the datagram: the MAC is computed
    over the datagram with those bytes zeroed (RFC 3414 §6.3.1). ``scoped`` is the
    plaintext ScopedPDU's bytes, or the encrypted octets when ``flags & 2``.
    """

    msg_id: int
    max_size: int
    flags: int
    security_model: int
    engine_id: bytes
    boots: int
    time: int
    user: bytes
    auth_params: bytes
    auth_offset: int
    priv_params: bytes
    scoped: bytes

    @property
    def reportable(self) -> bool:
        return bool(self.flags & 4)


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``pos``, within ``end``."""
    if pos + 2 > end:
        raise BerError("malformed", f"truncated header at {pos}")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise BerError("malformed", f"multi-octet tag at {pos}")
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 3:
            raise BerError("malformed", f"length of {k} octets at {pos - 1}")
        if pos + k > end:
            raise BerError("malformed", f"truncated length at {pos}")
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > end:
        raise BerError("malformed", f"length {n} past the end at {pos}")
    return tag, pos, pos + n


def _expect(data: bytes, pos: int, end: int, want: int, what: str) -> tuple[int, int]:
    tag, s, e = _header(data, pos, end)
    if tag != want:
        raise BerError("malformed", f"expected {what} (tag 0x{want:02x}) at {pos}, got 0x{tag:02x}")
    return s, e


def _int(data: bytes, s: int, e: int) -> int:
    if s == e or e - s > MAX_INT_OCTETS:
        raise BerError("malformed", f"integer of {e - s} octets at {s}")
    return int.from_bytes(data[s:e], "big", signed=True)


def _read_int(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    s, e = _expect(data, pos, end, INTEGER, what)
    return _int(data, s, e), e


def _read_octets(data: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    s, e = _expect(data, pos, end, OCTET_STRING, what)
    return data[s:e], e


# Decoded OIDs by their encoding: traps repeat the same few OIDs (snmpTrapOID.0,
# sysUpTime.0, a vendor's varbinds), so a hit costs a dict lookup. Bounded: cleared
# when full (a flood of distinct OIDs costs a decode each, never memory).
_OID_CACHE: dict[bytes, str] = {}
_OID_CACHE_MAX: Final = 8192


def _oid(data: bytes, s: int, e: int) -> str:
    raw = data[s:e]
    cached = _OID_CACHE.get(raw)
    if cached is not None:
        return cached
    if not raw or len(raw) > MAX_OID_ARCS * 5:
        raise BerError("malformed", f"OID of {len(raw)} octets at {s}")
    if max(raw) < 0x80:
        arcs = list(raw)
    else:
        arcs = []
        v = n = 0
        for b in raw:
            if n == 0 and b == 0x80:
                raise BerError("malformed", f"OID sub-identifier with a leading 0x80 at {s}")
            v = (v << 7) | (b & 0x7F)
            n += 1
            if not b & 0x80:
                arcs.append(v)
                v = n = 0
        if n:
            raise BerError("malformed", f"truncated OID sub-identifier at {s}")
    first = arcs[0]
    x = 0 if first < 40 else 1 if first < 80 else 2
    arcs[0:1] = (x, first - 40 * x)
    if len(arcs) > MAX_OID_ARCS or max(arcs) > MAX_SUBID:
        raise BerError("malformed", f"OID past RFC 2578's bounds at {s}")
    text = "." + ".".join(map(str, arcs))
    if len(_OID_CACHE) >= _OID_CACHE_MAX:
        _OID_CACHE.clear()
    _OID_CACHE[raw] = text
    return text


def _value(data: bytes, tag: int, s: int, e: int) -> Value:
    if tag == INTEGER:
        return _int(data, s, e)
    if tag in _OCTETS:
        if tag == IPADDRESS and e - s != 4:
            raise BerError("malformed", f"IpAddress of {e - s} octets at {s}")
        return data[s:e]
    if tag == OID:
        return _oid(data, s, e)
    high = _UNSIGNED.get(tag)
    if high is not None:
        v = _int(data, s, e)
        if not 0 <= v <= high:
            raise BerError("malformed", f"unsigned value {v} out of range at {s}")
        return v
    if tag in _EMPTY:
        if s != e:
            raise BerError("malformed", f"non-empty NULL at {s}")
        return None
    raise BerError("malformed", f"unknown value tag 0x{tag:02x} at {s}")


def _varbinds(data: bytes, pos: int, end: int) -> tuple[list[Varbind], int, int]:
    """The VarBindList at ``pos``: (varbinds, its start, its end)."""
    s, e = _expect(data, pos, end, SEQUENCE, "VarBindList")
    out: list[Varbind] = []
    append = out.append
    p = s
    while p < e:
        if len(out) >= MAX_VARBINDS:
            raise BerError("too_many_varbinds", f"more than {MAX_VARBINDS} varbinds")
        vs, ve = _expect(data, p, e, SEQUENCE, "VarBind")
        os_, oe = _expect(data, vs, ve, OID, "VarBind name")
        tag, xs, xe = _header(data, oe, ve)
        if xe != ve:
            raise BerError("malformed", f"trailing bytes in a VarBind at {xe}")
        append((_oid(data, os_, oe), tag, _value(data, tag, xs, xe)))
        p = ve
    return out, pos, e


def decode_pdu(data: bytes, pos: int, end: int) -> tuple[Pdu, int]:
    """The PDU at ``pos`` and the position after it.

    Raises:
        BerError: anything but a well-formed PDU of RFC 1157 / RFC 3416.
    """
    tag, s, e = _header(data, pos, end)
    if tag not in PDU_TAGS:
        raise BerError("unsupported_pdu", f"tag 0x{tag:02x} at {pos}")
    if tag == TRAP_V1:
        es, ee = _expect(data, s, e, OID, "enterprise")
        enterprise = _oid(data, es, ee)
        atag, a_s, ae = _header(data, ee, e)
        if atag != IPADDRESS or ae - a_s != 4:
            raise BerError("malformed", f"expected an agent-addr IpAddress at {ee}")
        generic, p = _read_int(data, ae, e, "generic-trap")
        specific, p = _read_int(data, p, e, "specific-trap")
        ttag, ts, te = _header(data, p, e)
        if ttag != TIMETICKS:
            raise BerError("malformed", f"expected a TimeTicks time-stamp at {p}")
        stamp = _value(data, ttag, ts, te)
        assert isinstance(stamp, int)
        varbinds, vs, ve = _varbinds(data, te, e)
        if ve != e:
            raise BerError("malformed", f"trailing bytes in the Trap-PDU at {ve}")
        pdu = Pdu(tag, 0, 0, 0, varbinds, data[pos:e], data[vs:ve], enterprise,
                  data[a_s:ae], generic, specific, stamp)  # fmt: skip
        return pdu, e
    request_id, p = _read_int(data, s, e, "request-id")
    after_id = p
    status, p = _read_int(data, p, e, "error-status")
    index, p = _read_int(data, p, e, "error-index")
    varbinds, vs, ve = _varbinds(data, p, e)
    if ve != e:
        raise BerError("malformed", f"trailing bytes in the PDU at {ve}")
    key = bytes((tag,)) + data[after_id:e]
    return Pdu(tag, request_id, status, index, varbinds, key, data[vs:ve]), e


def decode_message(data: bytes) -> Message | V3Message:
    """An SNMP message: v1/v2c decoded whole, v3 up to its (maybe encrypted) ScopedPDU.

    Raises:
        BerError: reason ``too_big``, ``unsupported_version``, ``unsupported_pdu``,
            ``too_many_varbinds`` or ``malformed``.
    """
    end = len(data)
    if end > MAX_MESSAGE:
        raise BerError("too_big", f"{end} bytes")
    s, e = _expect(data, 0, end, SEQUENCE, "Message")
    if e != end:
        raise BerError("malformed", f"trailing bytes after the message at {e}")
    version, p = _read_int(data, s, e, "version")
    if version in (V1, V2C):
        community, p = _read_octets(data, p, e, "community")
        pdu, p = decode_pdu(data, p, e)
        if p != e:
            raise BerError("malformed", f"trailing bytes after the PDU at {p}")
        if (pdu.tag == TRAP_V1) != (version == V1):
            raise BerError(
                "unsupported_pdu", f"PDU tag 0x{pdu.tag:02x} in a version {version} message"
            )
        return Message(version, community, pdu)
    if version != V3:
        raise BerError("unsupported_version", f"version {version}")
    gs, ge = _expect(data, p, e, SEQUENCE, "msgGlobalData")
    msg_id, q = _read_int(data, gs, ge, "msgID")
    max_size, q = _read_int(data, q, ge, "msgMaxSize")
    flags_raw, q = _read_octets(data, q, ge, "msgFlags")
    model, q = _read_int(data, q, ge, "msgSecurityModel")
    if q != ge or len(flags_raw) != 1:
        raise BerError("malformed", "msgGlobalData")
    ps, pe = _expect(data, ge, e, OCTET_STRING, "msgSecurityParameters")
    us, ue = _expect(data, ps, pe, SEQUENCE, "UsmSecurityParameters")
    if ue != pe:
        raise BerError("malformed", f"trailing bytes in msgSecurityParameters at {ue}")
    engine_id, q = _read_octets(data, us, ue, "msgAuthoritativeEngineID")
    boots, q = _read_int(data, q, ue, "msgAuthoritativeEngineBoots")
    time_, q = _read_int(data, q, ue, "msgAuthoritativeEngineTime")
    user, q = _read_octets(data, q, ue, "msgUserName")
    as_, ae = _expect(data, q, ue, OCTET_STRING, "msgAuthenticationParameters")
    priv, q = _read_octets(data, ae, ue, "msgPrivacyParameters")
    if q != ue:
        raise BerError("malformed", f"trailing bytes in UsmSecurityParameters at {q}")
    tag, ds, de = _header(data, pe, e)
    if de != e:
        raise BerError("malformed", f"trailing bytes after msgData at {de}")
    flags = flags_raw[0]
    if tag != (OCTET_STRING if flags & 2 else SEQUENCE):
        raise BerError("malformed", f"msgData tag 0x{tag:02x} with msgFlags 0x{flags:02x}")
    scoped = data[ds:de] if flags & 2 else data[pe:de]
    auth = data[as_:ae]
    return V3Message(
        msg_id, max_size, flags, model, engine_id, boots, time_, user, auth, as_, priv, scoped
    )


def decode_scoped(data: bytes, *, padded: bool = False) -> tuple[bytes, bytes, Pdu]:
    """A ScopedPDU (RFC 3412 §6): (contextEngineID, contextName, PDU).

    ``padded``: trailing bytes after it are allowed (a block cipher's padding).

    Raises:
        BerError: as ``decode_message``.
    """
    end = len(data)
    s, e = _expect(data, 0, end, SEQUENCE, "ScopedPDU")
    if e != end and not padded:
        raise BerError("malformed", f"trailing bytes after the ScopedPDU at {e}")
    engine, p = _read_octets(data, s, e, "contextEngineID")
    name, p = _read_octets(data, p, e, "contextName")
    pdu, p = decode_pdu(data, p, e)
    if p != e:
        raise BerError("malformed", f"trailing bytes after the PDU at {p}")
    return engine, name, pdu


def message_length(buf: bytes | bytearray) -> int | None:
    """Bytes the message starting ``buf`` takes (a TCP stream, RFC 3430 §2), or None
    while its header is incomplete.

    Raises:
        BerError: not a SEQUENCE, or longer than ``MAX_MESSAGE``.
    """
    if len(buf) < 2:
        return None
    if buf[0] != SEQUENCE:
        raise BerError("malformed", f"stream frame starts with 0x{buf[0]:02x}")
    n = buf[1]
    head = 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 3:
            raise BerError("malformed", f"frame length of {k} octets")
        if len(buf) < 2 + k:
            return None
        n = int.from_bytes(buf[2 : 2 + k], "big")
        head += k
    if head + n > MAX_MESSAGE:
        raise BerError("too_big", f"frame of {head + n} bytes")
    return head + n


# ---- encoding: the answers a receiver sends, and test/bench senders ----


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def tlv(tag: int, content: bytes) -> bytes:
    """One TLV: ``tag``, the definite length of ``content``, ``content``."""
    return bytes((tag,)) + _length(len(content)) + content


def encode_int(value: int, tag: int = INTEGER) -> bytes:
    """A two's-complement INTEGER (or an application integer type with ``tag``)."""
    size = max(1, (value.bit_length() + 8) // 8)  # room for the sign bit
    return tlv(tag, value.to_bytes(size, "big", signed=True))


def encode_oid(oid: str) -> bytes:
    """An OBJECT IDENTIFIER from dotted text (a leading dot is allowed)."""
    arcs = [int(a) for a in oid.strip(".").split(".")]
    subids = [arcs[0] * 40 + arcs[1], *arcs[2:]]
    out = bytearray()
    for v in subids:
        chunk = [v & 0x7F]
        v >>= 7
        while v:
            chunk.append(0x80 | (v & 0x7F))
            v >>= 7
        out.extend(reversed(chunk))
    return tlv(OID, bytes(out))


def encode_value(tag: int, value: Value) -> bytes:
    """A varbind value of type ``tag`` (see ``Varbind``)."""
    if isinstance(value, bytes):
        return tlv(tag, value)
    if isinstance(value, str):
        return encode_oid(value)
    if value is None:
        return tlv(tag, b"")
    return encode_int(value, tag)


def encode_varbinds(varbinds: list[Varbind]) -> bytes:
    """A VarBindList."""
    return tlv(SEQUENCE, b"".join(tlv(SEQUENCE, encode_oid(o) + encode_value(t, v))
                                  for o, t, v in varbinds))  # fmt: skip


def encode_pdu(
    tag: int, request_id: int, varbind_list: bytes, status: int = 0, index: int = 0
) -> bytes:
    """A PDU of RFC 3416 with an encoded VarBindList (``encode_varbinds``)."""
    return tlv(tag, encode_int(request_id) + encode_int(status) + encode_int(index) + varbind_list)


def encode_trap_v1(
    enterprise: str,
    agent_addr: bytes,
    generic: int,
    specific: int,
    timestamp: int,
    varbinds: list[Varbind],
) -> bytes:
    """An RFC 1157 Trap-PDU."""
    body = b"".join(
        (
            encode_oid(enterprise),
            tlv(IPADDRESS, agent_addr),
            encode_int(generic),
            encode_int(specific),
            encode_int(timestamp, TIMETICKS),
            encode_varbinds(varbinds),
        )
    )
    return tlv(TRAP_V1, body)


def encode_message(version: int, community: bytes, pdu: bytes) -> bytes:
    """An SNMPv1/v2c message around an encoded PDU."""
    return tlv(SEQUENCE, encode_int(version) + tlv(OCTET_STRING, community) + pdu)


def encode_scoped(context_engine: bytes, context_name: bytes, pdu: bytes) -> bytes:
    """A plaintext ScopedPDU."""
    return tlv(SEQUENCE, tlv(OCTET_STRING, context_engine) + tlv(OCTET_STRING, context_name) + pdu)


def encode_v3(
    msg_id: int,
    flags: int,
    engine_id: bytes,
    boots: int,
    time: int,
    user: bytes,
    auth_params: bytes,
    priv_params: bytes,
    msg_data: bytes,
    max_size: int = MAX_MESSAGE,
) -> tuple[bytes, int]:
    """An SNMPv3Message with USM parameters, and the offset of ``auth_params`` in it
    (the caller writes the MAC there). ``msg_data``: an encoded ScopedPDU, or
    ``tlv(OCTET_STRING, ciphertext)``."""
    flags_tlv = tlv(OCTET_STRING, bytes((flags,)))
    ids = encode_int(msg_id) + encode_int(max_size)
    global_data = tlv(SEQUENCE, ids + flags_tlv + encode_int(3))
    head = b"".join(
        (tlv(OCTET_STRING, engine_id), encode_int(boots), encode_int(time), tlv(OCTET_STRING, user))
    )
    auth = tlv(OCTET_STRING, auth_params)
    usm = tlv(SEQUENCE, head + auth + tlv(OCTET_STRING, priv_params))
    params = tlv(OCTET_STRING, usm)
    before = encode_int(3) + global_data
    body = before + params + msg_data
    outer = bytes((SEQUENCE,)) + _length(len(body))
    usm_head = len(usm) - len(head) - len(auth) - len(tlv(OCTET_STRING, priv_params))
    auth_head = len(auth) - len(auth_params)
    offset = len(outer) + len(before) + (len(params) - len(usm)) + usm_head + len(head) + auth_head
    return outer + body, offset
