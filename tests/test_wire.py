"""Heartbeat/ack codec: round trips, the fuzz invariant, authentication, replay guard."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probepair.errors import HeartbeatDecodeError
from probepair.failover.wire import (
    MAX_ACK_KEYS,
    MAX_DATAGRAM,
    REPLAY_WINDOW,
    Ack,
    Flag,
    Heartbeat,
    ReplayGuard,
    Role,
    config_digest,
    decode,
    encode,
    make_boot_id,
    node_id_of,
    screen,
)

SECRET = b"s3cret"
BOOT = make_boot_id(1_700_000_000, b"\x01\x02\x03\x04")


def hb(seq: int = 1, boot: bytes = BOOT, **kw: object) -> Heartbeat:
    fields: dict[str, object] = {
        "sender": 7, "boot_id": boot, "epoch": 0, "seq": seq, "role": Role.MASTER,
        "flags": Flag.CONFIGURED_MASTER, "beat_interval": 2.0,
        "config_digest": b"\x00\x01\x02\x03", "acks_sent": 0,
    }
    fields.update(kw)
    return Heartbeat(**fields)  # type: ignore[arg-type]


def ack(seq: int = 1, boot: bytes = BOOT, keys: tuple[bytes, ...] = ()) -> Ack:
    return Ack(7, boot, 0, seq, Role.SLAVE_ACTIVE, 1, keys)


u32 = st.integers(0, 2**32 - 1)
heartbeats = st.builds(
    Heartbeat,
    sender=u32,
    boot_id=st.binary(min_size=8, max_size=8),
    epoch=u32,
    seq=st.integers(0, 2**64 - 1),
    role=st.sampled_from(Role),
    flags=st.sampled_from([Flag(i) for i in range(64)]),
    beat_interval=st.floats(min_value=1e-9, max_value=1e9, allow_nan=False),
    config_digest=st.binary(min_size=4, max_size=4),
    acks_sent=u32,
    echo_boot=st.binary(min_size=8, max_size=8),
    echo_seq=st.integers(0, 2**64 - 1),
    ack_base=u32,
    acks_heard=u32,
    pending=u32,
    sink_failing=st.floats(min_value=0, max_value=1e12, allow_nan=False),
    spool_bytes=st.integers(0, 2**64 - 1),
    # float32 on the wire: any float32 age, and inf (never verified)
    sink_verified_age=st.floats(min_value=0, width=32, allow_nan=False),
    status_port=st.integers(0, 65535),
    # float32 on the wire, finite (at most BufferRetention): the oldest held event's age
    held_age=st.floats(min_value=0, max_value=2.0**100, width=32),
)
acks = st.builds(
    Ack,
    sender=u32,
    boot_id=st.binary(min_size=8, max_size=8),
    epoch=u32,
    seq=st.integers(0, 2**64 - 1),
    role=st.sampled_from(Role),
    serial=u32,
    keys=st.lists(st.binary(min_size=8, max_size=8), max_size=MAX_ACK_KEYS).map(tuple),
    echo_boot=st.binary(min_size=8, max_size=8),
    echo_seq=st.integers(0, 2**64 - 1),
    pending=u32,
    flags=st.sampled_from([Flag.NONE, Flag.IDLE]),
)
secrets = st.sampled_from([b"", SECRET])


@given(msg=st.one_of(heartbeats, acks), secret=secrets)
def test_round_trip(msg: Heartbeat | Ack, secret: bytes) -> None:
    data = encode(msg, secret)
    assert len(data) <= MAX_DATAGRAM
    assert decode(data, secret) == msg


@given(data=st.binary(max_size=2000), secret=secrets)
def test_arbitrary_bytes_raise_only_our_error(data: bytes, secret: bytes) -> None:
    try:
        decode(data, secret)
    except HeartbeatDecodeError as exc:
        assert exc.reason in {"magic", "short", "version", "mac", "unsigned", "malformed"}


@given(tail=st.binary(max_size=100), secret=secrets)
def test_bytes_with_our_magic_raise_only_our_error(tail: bytes, secret: bytes) -> None:
    with pytest.raises(HeartbeatDecodeError):
        decode(b"PBPR\x01" + tail, secret)


def flip_reason(msg: Heartbeat | Ack, raw: bytes, byte: int) -> str:
    """The reason for a datagram with one bit flipped at ``byte``: the cheap checks
    (header bytes, the ack's key count) speak before the MAC; everything else is ``mac``."""
    if byte < 4:
        return "magic"
    if byte == 4:
        return "version"
    if byte == 6:
        return "unsigned" if raw[6] == 1 else "malformed"
    if byte == 5:  # kind: one bit never turns 1 into 2 or back
        return "malformed"
    if byte == 7:
        allowed = 0x3F if isinstance(msg, Heartbeat) else 0x10  # REQUESTED is 0x20
        return "mac" if raw[7] & ~allowed == 0 else "malformed"
    if byte == 8:
        return "mac" if 1 <= raw[8] <= 5 else "malformed"
    if isinstance(msg, Ack) and byte in (57, 58):  # the key count no longer fits the length
        return "malformed"
    return "mac"


@given(msg=st.one_of(heartbeats, acks), data=st.data())
def test_any_bit_flip_is_detected(msg: Heartbeat | Ack, data: st.DataObject) -> None:
    raw = bytearray(encode(msg, SECRET))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(HeartbeatDecodeError) as info:
        decode(bytes(raw), SECRET)
    assert info.value.reason == flip_reason(msg, bytes(raw), bit // 8)
    assert screen(bytes(raw), SECRET) == (None if info.value.reason == "mac" else info.value.reason)


def test_reasons_for_short_magic_version() -> None:
    good = encode(hb(), SECRET)
    cases = {
        b"": "short", b"PB": "short", b"XXXX": "magic", good[:-1][:60]: "short",
        b"NOPE" + good[4:]: "magic", good[:4] + b"\x01" + good[5:]: "version",
    }
    for data, reason in cases.items():
        with pytest.raises(HeartbeatDecodeError) as info:
            decode(data, SECRET)
        assert info.value.reason == reason, data


def test_wrong_secret_is_mac() -> None:
    with pytest.raises(HeartbeatDecodeError, match=r"^mac: bad HMAC"):
        decode(encode(hb(), b"other"), SECRET)


def test_probe_with_secret_rejects_unsigned() -> None:
    with pytest.raises(HeartbeatDecodeError, match=r"^unsigned: peer has no SharedSecret$"):
        decode(encode(hb(), b""), SECRET)


def test_probe_without_secret_rejects_signed() -> None:
    with pytest.raises(HeartbeatDecodeError, match=r"^mac: signed datagram but no Shared"):
        decode(encode(hb(), SECRET), b"")


def test_unsigned_pair_still_detects_corruption() -> None:
    raw = bytearray(encode(hb(), b""))
    raw[20] ^= 0x10
    with pytest.raises(HeartbeatDecodeError, match="^mac"):
        decode(bytes(raw), b"")


def test_malformed_bodies_with_valid_tags() -> None:
    # Valid HMACs over bad contents: only a peer holding the secret could send these,
    # but decode must still refuse them with its own error.
    import hmac

    from probepair.failover import wire

    def signed(header_fields: tuple[object, ...], body: bytes) -> bytes:
        data = wire._HEADER.pack(*header_fields) + body
        return data + hmac.digest(SECRET, data, "sha256")[: wire.TAG_SIZE]

    base = (b"PBPR", wire.VERSION, 1, 0, 0, 1, 7, BOOT, 0, 1, BOOT, 0)

    def hb_body(interval: float = 2.0, failing: float = 0.0, verified: float = 1.0,
                held: float = 0.0) -> bytes:
        return wire._HEARTBEAT.pack(interval, b"abcd", 0, 0, 0, 0, failing, 0, verified, 9100,
                                    held)

    good_body = hb_body()
    assert isinstance(decode(signed(base, good_body), SECRET), Heartbeat)
    never = decode(signed(base, hb_body(verified=float("inf"))), SECRET)
    assert isinstance(never, Heartbeat) and never.sink_verified_age == float("inf")
    # A version 2 heartbeat (no sink_verified_age) is refused by its version byte.
    with pytest.raises(HeartbeatDecodeError, match="^version"):
        decode(signed(base[:1] + (2,) + base[2:], good_body[:-10]), SECRET)
    # A version 3 heartbeat (no held_age) likewise.
    with pytest.raises(HeartbeatDecodeError, match="^version"):
        decode(signed(base[:1] + (3,) + base[2:], good_body[:-4]), SECRET)
    held = decode(signed(base, hb_body(held=8.5)), SECRET)
    assert isinstance(held, Heartbeat) and held.held_age == 8.5
    bad = [
        (base[:5] + (99,) + base[6:], good_body),  # role
        (base[:2] + (9,) + base[3:], good_body),  # kind
        (base[:4] + (64,) + base[5:], good_body),  # flags
        (base, good_body + b"x"),  # length
        (base, hb_body(float("nan"))),
        (base, hb_body(0.0)),
        (base, hb_body(failing=-1.0)),
        (base, hb_body(failing=float("inf"))),
        (base, hb_body(verified=float("nan"))),
        (base, hb_body(verified=-0.5)),
        (base, hb_body(held=float("nan"))),
        (base, hb_body(held=-1.0)),
        (base, hb_body(held=float("inf"))),
        (base[:2] + (2,) + base[3:], wire._ACK.pack(1, 0, 2) + b"k" * 8),  # count
        (base[:2] + (2,) + base[3:], b"\x00"),  # ack header
        (base[:2] + (2,) + base[3:], wire._ACK.pack(1, 0, 500) + b"k" * 4000),
        (base[:2] + (2,) + base[3:4] + (1,) + base[5:], wire._ACK.pack(1, 0, 0)),  # ack flags
    ]
    for fields, body in bad:
        with pytest.raises(HeartbeatDecodeError) as info:
            decode(signed(fields, body), SECRET)
        assert info.value.reason == "malformed"
    with pytest.raises(HeartbeatDecodeError, match="^unsigned"):
        decode(signed(base[:3] + (1,) + base[4:], good_body), SECRET)


def test_encode_rejects_what_does_not_fit() -> None:
    for bad in (hb(boot=b"short"), hb(config_digest=b"toolong"), hb(epoch=-1),
                ack(keys=(b"k",)), ack(keys=(b"k" * 8,) * (MAX_ACK_KEYS + 1))):
        with pytest.raises(ValueError):
            encode(bad, SECRET)
    with pytest.raises(ValueError):
        make_boot_id(0, b"abc")


def test_full_ack_fits_one_datagram() -> None:
    assert MAX_ACK_KEYS == 165
    assert len(encode(ack(keys=(b"k" * 8,) * MAX_ACK_KEYS), SECRET)) <= MAX_DATAGRAM


def test_helpers_are_stable() -> None:
    assert node_id_of("a:1") == node_id_of("a:1") != node_id_of("b:1")
    assert len(config_digest(1.0, "handshake")) == 4
    assert config_digest(1.0) != config_digest(2.0)
    assert make_boot_id(2**32 + 5, b"abcd") == b"\x00\x00\x00\x05abcd"


def reason(guard: ReplayGuard, msg: Heartbeat | Ack) -> str:
    try:
        guard.check(msg)
    except HeartbeatDecodeError as exc:
        return exc.reason
    return "ok"


def test_replay_guard_sequence_window() -> None:
    guard = ReplayGuard(own_boot_id=make_boot_id(1_700_000_000, b"mine"))
    assert guard.peer_boot_id is None
    assert [reason(guard, hb(s)) for s in (5, 6, 6, 4, 8, 7, 7, 5)] == [
        "ok", "ok", "replay", "ok", "ok", "ok", "replay", "replay"]
    assert guard.peer_boot_id == BOOT
    top = 100 + REPLAY_WINDOW
    assert reason(guard, ack(top)) == "ok"
    assert reason(guard, hb(top - REPLAY_WINDOW)) == "stale"  # a window behind the highest
    assert reason(guard, hb(top - REPLAY_WINDOW + 1)) == "ok"  # inside, never seen
    assert reason(guard, hb(10**6)) == "ok"  # a big jump clears the window
    assert reason(guard, hb(10**6 - 1)) == "ok"


def test_replay_guard_boots() -> None:
    mine = make_boot_id(1_700_000_000, b"mine")
    guard = ReplayGuard(own_boot_id=mine)
    assert reason(guard, hb(1, boot=mine)) == "self"
    old = make_boot_id(1_700_000_000, b"old.")
    new = make_boot_id(1_700_000_100, b"new.")
    same_second = make_boot_id(1_700_000_100, b"fast")
    assert reason(guard, hb(50, boot=old)) == "ok"
    assert reason(guard, hb(1, boot=new)) == "ok"  # restarted peer: seq starts over
    assert reason(guard, hb(51, boot=old)) == "stale"  # a recording from before the restart
    assert reason(guard, hb(1, boot=same_second)) == "ok"  # restarted within a second
    assert reason(guard, hb(2, boot=new)) == "stale"  # superseded boot never returns
    assert reason(guard, hb(1, boot=make_boot_id(1_600_000_000, b"anc."))) == "stale"
    assert reason(guard, hb(1, boot=same_second)) == "replay"


GUARD_REASONS = {"self", "stale", "replay", "sender"}
SCREEN_REASONS = {"magic", "short", "version", "unsigned", "mac", "malformed"}


@given(data=st.binary(max_size=1500), secret=secrets,
       seqs=st.lists(st.integers(0, 50), max_size=5, unique=True))
def test_screen_is_total_and_decode_raises_only_its_error(
        data: bytes, secret: bytes, seqs: list[int]) -> None:
    guard = ReplayGuard(own_boot_id=make_boot_id(1_700_000_000, b"mine"))
    for s in seqs:
        guard.check(hb(s))
    before = (guard.peer_boot_id, guard._highest, guard._bitmap)
    assert screen(data, secret, guard) in SCREEN_REASONS | GUARD_REASONS | {None}
    assert (guard.peer_boot_id, guard._highest, guard._bitmap) == before  # screened, not taken
    with pytest.raises(HeartbeatDecodeError) as info:
        decode(data, secret, guard)
    assert info.value.reason in SCREEN_REASONS | GUARD_REASONS


def test_guard_screens_before_the_mac_what_check_would_refuse() -> None:
    mine = make_boot_id(1_700_000_000, b"mine")
    guard = ReplayGuard(own_boot_id=mine)
    guard.check(hb(10_000))
    forged = b"not the secret"  # the cheap checks need no secret: they all speak first
    cases = {
        "self": hb(10_001, boot=mine),
        "replay": hb(10_000),
        "stale": hb(10_000 - REPLAY_WINDOW),
        "sender": hb(10_001, sender=99),
    }
    for reason, msg in cases.items():
        data = encode(msg, forged)
        assert screen(data, SECRET, guard) == reason
        with pytest.raises(HeartbeatDecodeError) as info:
            decode(data, SECRET, guard)
        assert info.value.reason == reason
        if reason != "self":
            with pytest.raises(HeartbeatDecodeError) as info:
                guard.check(msg)  # and check, after a MAC, agrees
            assert info.value.reason == reason
    assert screen(encode(hb(10_001), forged), SECRET, guard) is None  # new: only the MAC can tell
    assert screen(encode(hb(1, boot=make_boot_id(1_800_000_000, b"next")), forged),
                  SECRET, guard) is None  # a restarted peer's new boot id (and sender) is heard
