"""SNMPv3 USM: RFC 3414's key vectors, the users file, and opening messages."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probepair.feeds.snmp import ber
from probepair.feeds.snmp.usm import (
    Opened,
    Refused,
    User,
    UsersFileError,
    Usm,
    engine_id_for,
    localise,
    parse_users,
    password_to_key,
)

RFC_ENGINE = bytes.fromhex("000000000000000000000002")


def test_rfc3414_a3_md5_key_localisation() -> None:
    ku = password_to_key(b"maplesyrup", hashlib.md5)
    assert ku.hex() == "9faf3283884e92834ebc9847d8edd963"
    assert localise(ku, RFC_ENGINE, hashlib.md5).hex() == "526f5eed9fcce26f8964c2930787d82b"


def test_rfc3414_a3_sha_key_localisation() -> None:
    ku = password_to_key(b"maplesyrup", hashlib.sha1)
    assert ku.hex() == "9fb5cc0381497b3793528939ff788d5d79145211"
    assert localise(ku, RFC_ENGINE, hashlib.sha1).hex() == (
        "6695febc9288e36282235fc7151f128497b38f3f")


def test_users_file_in_mttrapd_form() -> None:
    users = parse_users(
        "# comment\n\n"
        "createUser -e 0x8000000001020304 trapuser SHA authpass123 AES privpass123\n"
        "createUser informer SHA-256 authpass123 AES\n"
        "createUser authonly MD5 authpass123\n"
        "createUser nobody\n"
    )
    assert [(u.name, u.engine.hex(), u.auth, u.priv, u.level) for u in users] == [
        (b"trapuser", "8000000001020304", "SHA", "AES", 3),
        (b"informer", "", "SHA-256", "AES", 3),
        (b"authonly", "", "MD5", "", 1),
        (b"nobody", "", "", "", 0),
    ]
    # No privacy pass phrase: the auth one, as net-snmp does.
    assert users[1].priv_ku == users[1].auth_ku


@pytest.mark.parametrize(("text", "message"), [
    ("createUser u SHA short", "line 1: pass phrases have 8 characters at least"),
    ("\ncreateUser u SHA authpass123 DES privpass123", "line 2: DES privacy is not supported"),
    ("createUser u SHA3 authpass123", "line 1: expected an auth protocol"),
    ("createUser -e zz u SHA authpass123", "line 1: engine ID 'zz' is not hex"),
    ("addUser u", "line 1: expected 'createUser', got 'addUser'"),
    ("createUser -l u", "line 1: option '-l' is not supported"),
])
def test_users_file_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(UsersFileError) as info:
        parse_users(text)
    assert str(info.value).startswith(message)


SENDER = bytes.fromhex("8000000001020304")
LINES = ("createUser -e 0x8000000001020304 trapuser SHA authpass123 AES privpass123\n"
         "createUser informer SHA-512 authpass123 AES privpass456\n")


def _receiver() -> Usm:
    return Usm(parse_users(LINES), engine_id_for("probe-a"), boots=7, started=0.0)


def _trap(usm_sender: Usm, user: User, flags: int, now: float, tag: int = ber.TRAP_V2,
          request_id: int = 5) -> bytes:
    auth, priv = usm_sender.localised(user, usm_sender.engine_id)
    vbs = ber.encode_varbinds([(".1.3.6.1.6.3.1.1.4.1.0", ber.OID, ".1.3.6.1.4.1.9.0.1")])
    scoped = ber.encode_scoped(usm_sender.engine_id, b"", ber.encode_pdu(tag, request_id, vbs))
    return usm_sender.seal(99, flags, user.name, scoped, (user.auth, auth, priv), now)


def _sender(engine: bytes, users: str = LINES) -> tuple[Usm, list[User]]:
    users_ = parse_users(users)
    return Usm(users_, engine, boots=3, started=0.0, salt=41), users_


def _open(usm: Usm, data: bytes, now: float = 10.0) -> Opened | Refused:
    msg = ber.decode_message(data)
    assert isinstance(msg, ber.V3Message)
    return usm.open(msg, data, now)


def test_an_authpriv_trap_opens_and_a_tampered_one_does_not() -> None:
    sender, users = _sender(SENDER)
    data = _trap(sender, users[0], 3, now=100.0)
    opened = _open(_receiver(), data)
    assert isinstance(opened, Opened)
    assert opened.level == "authPriv" and opened.pdu.tag == ber.TRAP_V2
    assert opened.pdu.varbinds == [(".1.3.6.1.6.3.1.1.4.1.0", ber.OID, ".1.3.6.1.4.1.9.0.1")]
    # Traps: the sender is authoritative, its clock is not checked (module docstring).
    for i in range(len(data) - 20, len(data)):  # in the ciphertext
        bad = bytearray(data)
        bad[i] ^= 1
        refused = _open(_receiver(), bytes(bad))
        assert isinstance(refused, Refused) and refused.reason == "wrong_digest"


def test_a_wrong_password_is_a_wrong_digest() -> None:
    sender, users = _sender(SENDER, LINES.replace("authpass123", "authpass999", 1))
    refused = _open(_receiver(), _trap(sender, users[0], 3, now=1.0))
    assert isinstance(refused, Refused) and refused.reason == "wrong_digest"
    assert refused.report is None  # a trap is not reportable


def test_unknown_users_engines_and_levels() -> None:
    sender, users = _sender(bytes.fromhex("8000000001999999"))
    refused = _open(_receiver(), _trap(sender, users[0], 3, now=1.0))
    assert isinstance(refused, Refused) and refused.reason == "unknown_engine"
    stranger = User(b"stranger", b"", "SHA", users[0].auth_ku, "AES", users[0].priv_ku)
    refused = _open(_receiver(), _trap(sender, stranger, 3, now=1.0))
    assert isinstance(refused, Refused) and refused.reason == "unknown_user"
    sender, users = _sender(SENDER)
    refused = _open(_receiver(), _trap(sender, users[0], 1, now=1.0))  # authNoPriv
    assert isinstance(refused, Refused) and refused.reason == "unsupported_security_level"


def test_inform_discovery_then_inform_then_response() -> None:
    receiver = _receiver()
    # Discovery: empty engine, no user, reportable, noAuthNoPriv (net-snmp's probe).
    probe, _ = ber.encode_v3(11, 4, b"", 0, 0, b"", b"", b"", ber.encode_scoped(
        b"", b"", ber.encode_pdu(ber.GET, 77, ber.encode_varbinds([]))))
    refused = _open(receiver, probe, now=50.0)
    assert isinstance(refused, Refused) and refused.reason == "discovery"
    assert refused.report is not None
    report = ber.decode_message(refused.report)
    assert isinstance(report, ber.V3Message)
    assert (report.msg_id, report.engine_id, report.boots, report.time) == (
        11, receiver.engine_id, 7, 50)
    _engine, _name, pdu = ber.decode_scoped(report.scoped)
    assert pdu.tag == ber.REPORT and pdu.request_id == 77
    assert pdu.varbinds == [(".1.3.6.1.6.3.15.1.1.4.0", ber.COUNTER32, 1)]
    # The inform, localised for the receiver's engine with its boots and time.
    users = parse_users(LINES)
    sender = Usm(users, receiver.engine_id, boots=7, started=0.0, salt=5)
    data = _trap(sender, users[1], 7, now=52.0, tag=ber.INFORM, request_id=1234)
    opened = _open(receiver, data, now=52.0)
    assert isinstance(opened, Opened) and opened.pdu.tag == ber.INFORM
    answer = receiver.response(opened, now=52.0)
    # The sender's side opens the Response with the same keys.
    back = _open(sender, answer, now=52.0)
    assert isinstance(back, Opened)
    assert back.pdu.tag == ber.RESPONSE and back.pdu.request_id == 1234
    assert back.pdu.varbind_list == opened.pdu.varbind_list
    # Out of the time window (boots or 150 s): an authenticated report.
    stale = _trap(Usm(users, receiver.engine_id, boots=6, started=0.0), users[1], 7, now=52.0,
                  tag=ber.INFORM)
    refused = _open(receiver, stale, now=52.0)
    assert isinstance(refused, Refused) and refused.reason == "not_in_time_window"
    assert refused.report is not None
    report = ber.decode_message(refused.report)
    assert isinstance(report, ber.V3Message) and report.flags & 1 and report.boots == 7


def test_engine_ids_are_stable_and_differ_per_probe() -> None:
    assert engine_id_for("a") == engine_id_for("a") != engine_id_for("b")
    assert 5 <= len(engine_id_for("a")) <= 32 and engine_id_for("a")[0] & 0x80


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 400))
def test_garbage_after_a_valid_header_is_refused_or_malformed(noise: bytes, at: int) -> None:
    sender, users = _sender(SENDER)
    data = bytearray(_trap(sender, users[0], 3, now=1.0))
    pos = at % len(data)
    data[pos : pos + len(noise)] = noise
    try:
        result = _open(_receiver(), bytes(data))
    except ber.BerError:
        return
    assert isinstance(result, Opened | Refused)


def test_authentic_messages_with_boots_past_32_bits_are_refused_not_raised() -> None:
    sender, users = _sender(SENDER)
    auth, priv = sender.localised(users[0], SENDER)
    scoped = ber.tlv(ber.OCTET_STRING, bytes(40))
    data, off = ber.encode_v3(1, 3, SENDER, 2**40, 2**33, b"trapuser", bytes(12), bytes(8),
                              scoped)
    import hmac as hmac_

    mac = hmac_.new(auth, data, hashlib.sha1).digest()[:12]
    data = data[:off] + mac + data[off + 12 :]
    refused = _open(_receiver(), data)
    assert isinstance(refused, Refused) and refused.reason == "decryption_error"
