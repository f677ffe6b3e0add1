"""The SNMP BER codec against pyasn1/pysnmp, and under fuzzing.

- Messages pysnmp builds and pyasn1 encodes decode to the same fields here.
- What this codec encodes (answers, test senders) pyasn1 decodes to the same values.
- Any bytes (random, or a valid message mutated) decode or raise BerError, never
  anything else, within the bounds the module documents.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from probepair.feeds.snmp import ber

V1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]
V2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]

U32 = st.integers(0, 2**32 - 1)
oids = st.lists(U32, min_size=0, max_size=12).flatmap(
    lambda rest: st.tuples(st.integers(0, 2), st.integers(0, 39)).map(
        lambda head: (*head, *rest)
    )
)


def _dotted(oid: tuple[int, ...]) -> str:
    return "." + ".".join(map(str, oid))


# (our tag, strategy of our value, pysnmp constructor from that value)
VALUES: list[tuple[int, Any, Any]] = [
    (ber.INTEGER, st.integers(-(2**31), 2**31 - 1), V2.Integer),
    (ber.OCTET_STRING, st.binary(max_size=64), V2.OctetString),
    (ber.OID, oids, V2.ObjectIdentifier),
    (ber.IPADDRESS, st.binary(min_size=4, max_size=4), V2.IpAddress),
    (ber.COUNTER32, U32, V2.Counter32),
    (ber.GAUGE32, U32, V2.Gauge32),
    (ber.TIMETICKS, U32, V2.TimeTicks),
    (ber.COUNTER64, st.integers(0, 2**64 - 1), V2.Counter64),
    (ber.NULL, st.none(), lambda _v: V2.Null("")),
]

varbind = st.sampled_from(VALUES).flatmap(
    lambda spec: st.tuples(oids, st.just(spec[0]), spec[1], st.just(spec[2]))
)


def _ours(tag: int, value: Any) -> ber.Value:
    return _dotted(value) if tag == ber.OID else value


def _v2_message(pdu_type: Any, request_id: int, community: bytes, vbs: list[Any]) -> bytes:
    msg = V2.Message()
    V2.apiMessage.set_defaults(msg)
    V2.apiMessage.set_community(msg, community)
    pdu = pdu_type()
    V2.apiTrapPDU.set_defaults(pdu)
    V2.apiTrapPDU.set_request_id(pdu, request_id)
    V2.apiTrapPDU.set_varbinds(pdu, [(oid, make(value)) for oid, _t, value, make in vbs])
    V2.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


@settings(max_examples=300, deadline=None)
@given(
    request_id=st.integers(-(2**31), 2**31 - 1),
    community=st.binary(max_size=32),
    vbs=st.lists(varbind, max_size=12),
    inform=st.booleans(),
)
def test_v2c_messages_pyasn1_encodes_decode_to_the_same_fields(
    request_id: int, community: bytes, vbs: list[Any], inform: bool
) -> None:
    data = _v2_message(V2.InformRequestPDU if inform else V2.SNMPv2TrapPDU, request_id,
                       community, vbs)
    msg = ber.decode_message(data)
    assert isinstance(msg, ber.Message)
    assert msg.version == ber.V2C and msg.community == community
    assert msg.pdu.tag == (ber.INFORM if inform else ber.TRAP_V2)
    assert msg.pdu.request_id == request_id
    assert msg.pdu.varbinds == [(_dotted(o), t, _ours(t, v)) for o, t, v, _m in vbs]
    # The key material leaves the request-id out: another request-id, the same key.
    other = ber.decode_message(_v2_message(
        V2.InformRequestPDU if inform else V2.SNMPv2TrapPDU, request_id ^ 1, community, vbs))
    assert isinstance(other, ber.Message)
    assert other.pdu.key_material == msg.pdu.key_material


@settings(max_examples=200, deadline=None)
@given(
    enterprise=oids, agent=st.binary(min_size=4, max_size=4), generic=st.integers(0, 6),
    specific=st.integers(0, 2**31 - 1), stamp=U32, vbs=st.lists(varbind, max_size=8),
)
def test_v1_traps_pyasn1_encodes_decode_to_the_same_fields(
    enterprise: tuple[int, ...], agent: bytes, generic: int, specific: int, stamp: int,
    vbs: list[Any],
) -> None:
    vbs = [vb for vb in vbs if vb[1] != ber.COUNTER64]  # SNMPv1 has no Counter64
    msg = V1.Message()
    V1.apiMessage.set_defaults(msg)
    V1.apiMessage.set_community(msg, b"public")
    pdu = V1.TrapPDU()
    V1.apiTrapPDU.set_defaults(pdu)
    V1.apiTrapPDU.set_enterprise(pdu, enterprise)
    V1.apiTrapPDU.set_agent_address(pdu, V1.IpAddress(agent))
    V1.apiTrapPDU.set_generic_trap(pdu, generic)
    V1.apiTrapPDU.set_specific_trap(pdu, specific)
    V1.apiTrapPDU.set_timestamp(pdu, stamp)
    V1.apiTrapPDU.set_varbinds(pdu, [(o, make(v)) for o, _t, v, make in vbs])
    V1.apiMessage.set_pdu(msg, pdu)
    decoded = ber.decode_message(bytes(encoder.encode(msg)))
    assert isinstance(decoded, ber.Message)
    p = decoded.pdu
    assert (decoded.version, p.tag, p.enterprise, p.agent_addr) == (
        ber.V1, ber.TRAP_V1, _dotted(enterprise), agent)
    assert (p.generic, p.specific, p.timestamp) == (generic, specific, stamp)
    assert p.varbinds == [(_dotted(o), t, _ours(t, v)) for o, t, v, _m in vbs]


@settings(max_examples=200, deadline=None)
@given(request_id=st.integers(0, 2**31 - 1), community=st.binary(max_size=16),
       vbs=st.lists(varbind, max_size=10))
def test_what_we_encode_pyasn1_decodes_to_the_same_values(
    request_id: int, community: bytes, vbs: list[Any]
) -> None:
    ours = [(_dotted(o), t, _ours(t, v)) for o, t, v, _m in vbs]
    data = ber.encode_message(
        ber.V2C, community, ber.encode_pdu(ber.RESPONSE, request_id, ber.encode_varbinds(ours)))
    msg, rest = decoder.decode(data, asn1Spec=V2.Message())
    assert rest == b""
    pdu = V2.apiMessage.get_pdu(msg)
    assert int(V2.apiPDU.get_request_id(pdu)) == request_id
    assert bytes(V2.apiMessage.get_community(msg)) == community
    got = V2.apiPDU.get_varbinds(pdu)
    assert [tuple(o) for o, _v in got] == [o for o, _t, _v, _m in vbs]
    for (_o, value), (_oid, tag, expected, make) in zip(got, vbs, strict=True):
        assert value == make(expected) if tag != ber.NULL else True
    # And our decoder reads our encoding back.
    back = ber.decode_message(data)
    assert isinstance(back, ber.Message) and back.pdu.varbinds == ours


def _fuzz_one(data: bytes) -> None:
    try:
        decoded = ber.decode_message(data)
    except ber.BerError as exc:
        assert exc.reason in ("malformed", "too_big", "too_many_varbinds",
                              "unsupported_version", "unsupported_pdu")
        return
    if isinstance(decoded, ber.V3Message) and not decoded.flags & 2:
        try:
            ber.decode_scoped(decoded.scoped)
        except ber.BerError:
            pass


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_only_ber_error(data: bytes) -> None:
    _fuzz_one(data)
    _fuzz_one(b"\x30" + bytes((len(data) & 0x7F,)) + data)  # past the first check


VALID = _v2_message(V2.SNMPv2TrapPDU, 7, b"public", [
    ((1, 3, 6, 1, 2, 1, 1, 3, 0), ber.TIMETICKS, 5, V2.TimeTicks),
    ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), ber.OID, (1, 3, 6, 1, 4, 1, 9, 0, 1), V2.ObjectIdentifier),
    ((1, 3, 6, 1, 4, 1, 9, 1), ber.OCTET_STRING, b"text", V2.OctetString),
])
V3_VALID = ber.encode_v3(1, 4, b"\x80\x00\x00\x00\x01", 1, 2, b"user", b"", b"", ber.encode_scoped(
    b"", b"", ber.encode_pdu(ber.GET, 3, ber.encode_varbinds([]))))[0]


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([VALID, V3_VALID]), st.lists(st.tuples(st.integers(0, 400),
       st.integers(0, 255)), min_size=1, max_size=6), st.integers(0, 400))
def test_mutated_messages_decode_or_raise_only_ber_error(
    base: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(base)
    for pos, byte in edits:
        data[pos % len(data)] = byte
    _fuzz_one(bytes(data))
    _fuzz_one(bytes(data[: cut % (len(data) + 1)]))


def test_bounds_are_enforced_before_the_work() -> None:
    too_big = b"\x30\x83\x01\x00\x00" + bytes(65536)
    for data, reason in [
        (too_big, "too_big"),
        (ber.encode_message(ber.V2C, b"c", ber.encode_pdu(ber.TRAP_V2, 1, ber.encode_varbinds(
            [(".1.3.6.1", ber.NULL, None)] * (ber.MAX_VARBINDS + 1)))), "too_many_varbinds"),
        (ber.encode_message(ber.V2C, b"c", ber.encode_pdu(ber.TRAP_V2, 1, ber.encode_varbinds(
            [("." + ".".join(["1"] * (ber.MAX_OID_ARCS + 1)), ber.NULL, None)]))), "malformed"),
        (ber.encode_message(ber.V2C, b"c", ber.encode_pdu(ber.TRAP_V2, 1, ber.encode_varbinds(
            [(".1.3.6.1.4294967296", ber.NULL, None)]))), "malformed"),
        (ber.encode_message(2, b"c", b""), "unsupported_version"),
        (b"\x30\x80\x02\x01\x01\x00\x00", "malformed"),  # indefinite length
        (VALID + b"\x00", "malformed"),  # trailing bytes
    ]:
        try:
            ber.decode_message(data)
        except ber.BerError as exc:
            assert exc.reason == reason, (reason, exc)
        else:
            raise AssertionError(f"no BerError for {reason}")


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=8))
def test_stream_framing_of_any_bytes_gives_a_length_none_or_ber_error(data: bytes) -> None:
    try:
        n = ber.message_length(data)
    except ber.BerError:
        return
    assert n is None or 2 <= n <= ber.MAX_MESSAGE


def test_message_length_frames_a_tcp_stream() -> None:
    assert ber.message_length(VALID) == len(VALID)
    assert ber.message_length(VALID[:1]) is None
    assert ber.message_length(b"\x30\x82\x01") is None
    assert ber.message_length(b"\x30\x82\x01\x00") == 260


def test_a_get_in_a_v2c_message_decodes_and_v1_pdu_in_v2c_does_not() -> None:
    trap = ber.encode_trap_v1(".1.3.6.1.4.1.9", b"\x7f\x00\x00\x01", 6, 1, 0, [])
    try:
        ber.decode_message(ber.encode_message(ber.V2C, b"c", trap))
    except ber.BerError as exc:
        assert exc.reason == "unsupported_pdu"
    else:
        raise AssertionError("a v1 Trap-PDU in a v2c message decoded")


# ---- SNMPv3 (RFC 3412 / RFC 3414) against pysnmp's message and USM specifications ----

from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message  # noqa: E402
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters  # noqa: E402

U31 = st.integers(0, 2**31 - 1)


@settings(max_examples=300, deadline=None)
@given(msg_id=U31, flags=st.sampled_from([0, 1, 3, 4, 5, 7]), engine=st.binary(max_size=32),
       boots=U31, time_=U31, user=st.binary(max_size=32), auth=st.binary(max_size=48),
       priv=st.binary(max_size=8), request_id=st.integers(-(2**31), 2**31 - 1),
       vbs=st.lists(varbind, max_size=6), secret=st.binary(max_size=80))
def test_v3_messages_we_encode_pysnmp_decodes_and_back(
    msg_id: int, flags: int, engine: bytes, boots: int, time_: int, user: bytes, auth: bytes,
    priv: bytes, request_id: int, vbs: list[Any], secret: bytes,
) -> None:
    ours = [(_dotted(o), t, _ours(t, v)) for o, t, v, _m in vbs]
    pdu = ber.encode_pdu(ber.INFORM, request_id, ber.encode_varbinds(ours))
    msg_data = (ber.tlv(ber.OCTET_STRING, secret) if flags & 2
                else ber.encode_scoped(engine, b"ctx", pdu))
    data, offset = ber.encode_v3(msg_id, flags, engine, boots, time_, user, auth, priv, msg_data)
    assert data[offset : offset + len(auth)] == auth
    # pysnmp's specification reads what we wrote.
    msg, rest = decoder.decode(data, asn1Spec=SNMPv3Message())
    assert rest == b""
    header = msg["msgGlobalData"]
    assert (int(header["msgID"]), bytes(header["msgFlags"]), int(header["msgSecurityModel"])) == (
        msg_id, bytes((flags,)), 3)
    usm, rest = decoder.decode(bytes(msg["msgSecurityParameters"]),
                               asn1Spec=UsmSecurityParameters())
    assert rest == b""
    assert (bytes(usm["msgAuthoritativeEngineId"]), int(usm["msgAuthoritativeEngineBoots"]),
            int(usm["msgAuthoritativeEngineTime"]), bytes(usm["msgUserName"]),
            bytes(usm["msgAuthenticationParameters"]), bytes(usm["msgPrivacyParameters"])) == (
        engine, boots, time_, user, auth, priv)
    # And ours reads pyasn1's re-encoding of the same message identically.
    back = ber.decode_message(bytes(encoder.encode(msg)))
    assert isinstance(back, ber.V3Message)
    assert (back.msg_id, back.flags, back.engine_id, back.boots, back.time, back.user,
            back.auth_params, back.priv_params) == (
        msg_id, flags, engine, boots, time_, user, auth, priv)
    if flags & 2:
        assert back.scoped == secret
    else:
        context, name, got = ber.decode_scoped(back.scoped)
        assert (context, name, got.tag, got.request_id, got.varbinds) == (
            engine, b"ctx", ber.INFORM, request_id, ours)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([ber.OCTET_STRING, ber.OPAQUE, ber.IPADDRESS]), st.binary(max_size=64))
def test_value_tokens_of_any_octets_never_raise(tag: int, value: bytes) -> None:
    from probepair.feeds.snmp.tokens import value_tokens

    if tag == ber.IPADDRESS and len(value) != 4:
        value = value[:4].ljust(4, b"\0")
    shown, raw, text, hexed = value_tokens(tag, value)
    assert raw.encode("latin-1") == value or tag == ber.IPADDRESS
    assert len(text) == len(value) or tag == ber.IPADDRESS
    assert bytes.fromhex(hexed.replace(" ", "")) == value
