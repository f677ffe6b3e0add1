"""Heartbeat and ack datagrams <-> bytes, their HMAC, and replay protection.

PURE: standard library only (no trio, no socket, no clock reads).

Layout (network byte order), version 4::

    header  magic "PBPR" | version u8 | kind u8 | auth u8 | flags u8 | role u8
            | sender u32 | boot_id 8s | epoch u32 | seq u64
            | echo_boot 8s | echo_seq u64                                   (49 bytes)
    body    heartbeat: beat_interval f64 | config_digest 4s | acks_sent u32
                       | ack_base u32 | acks_heard u32 | pending u32
                       | sink_failing f64 | spool_bytes u64
                       | sink_verified_age f32 | status_port u16 | held_age f32 (54 bytes)
            ack:       serial u32 | pending u32 | count u16 | count x 8-byte event keys
    tag     HMAC-SHA256 over header + body, truncated to 16 bytes

``echo_boot``/``echo_seq`` name the newest datagram the sender has received from us: it
is what makes a datagram provably fresh (the receiver knows when it sent that sequence
number; a captured datagram replayed later echoes an old one). Version 1 had no echo
and is refused (reason ``version``); version 2 had no ``sink_verified_age`` (a standby's
health was assumed, not verified), version 3 no ``held_age`` (a standby first heard after
a stall got only the last bound's acks), and both are refused likewise: upgrade both
probes together.

Magic and version come first so a future format is recognisable. The tag is truncated to
128 bits (RFC 2104 section 5 allows truncation to no less than half the hash length; an
on-path forger needs ~2^128 tries per datagram), which keeps an ack with 168 keys under
1400 bytes.

Empty ``SharedSecret``: datagrams are sent with ``auth = 1`` (unsigned) and the tag is
computed with the published key ``UNSIGNED_KEY``: it catches corruption but
authenticates nothing, and the runtime logs a warning at start. A probe *with* a secret
rejects unsigned datagrams (reason ``unsigned``); a probe without one rejects signed
datagrams it cannot verify (reason ``mac``). There is no silent downgrade.

The boot id is 4 bytes of wall-clock boot time (seconds) plus 4 random bytes. A
``ReplayGuard`` accepts a new boot id only if it is not older than the current one, so
datagrams recorded before a peer restarted cannot be replayed after it; within a boot
id it keeps an anti-replay window of sequence numbers (RFC 4303 section 3.4.3), so acks
reordered by the network are still accepted but never twice.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import struct
from dataclasses import dataclass
from typing import Final

from probepair.errors import HeartbeatDecodeError
from probepair.events import KEY_SIZE
from probepair.failover.role import BOOT_ID_SIZE, DIGEST_SIZE, Role  # re-exported

MAGIC: Final = b"PBPR"
VERSION: Final = 4
TAG_SIZE: Final = 16  # bytes of HMAC-SHA256 kept; see the module docstring
MAX_DATAGRAM: Final = 1400  # bytes: below a 1500-byte Ethernet MTU with IP/UDP headers
# The published key used when no SharedSecret is configured (detects corruption only).
UNSIGNED_KEY: Final = b"probepair unsigned v1"

NO_BOOT: Final = bytes(BOOT_ID_SIZE)  # echo_boot before anything was heard from the peer
_HEADER: Final = struct.Struct("!4sBBBBBI8sIQ8sQ")
_HEARTBEAT: Final = struct.Struct("!d4sIIIIdQfHf")
_ACK: Final = struct.Struct("!IIH")
MAX_ACK_KEYS: Final = (MAX_DATAGRAM - _HEADER.size - _ACK.size - TAG_SIZE) // KEY_SIZE  # 165
F32_MAX: Final = 3.4e38  # below float32's largest finite value; larger ages send inf
_U32: Final = 2**32
_U64: Final = 2**64


class Flag(enum.IntFlag):
    """Heartbeat flags."""

    NONE = 0
    CONFIGURED_MASTER = 1  # Mode is master in the sender's props (split-brain tie break)
    HANDING_OVER = 2  # sender stepped down for a returning master and drains its sink
    HANDED_OVER = 4  # drained; every delivered key is acked up to ``acks_sent``
    ECHO_REQUEST = 8  # please answer with a heartbeat now (it will echo this datagram)
    IDLE = 16  # at sending, the sender's feed was empty and its sink had delivered all
    REQUESTED = 32  # this epoch is the sender's operator or rules switch (a designation)


class _Kind(enum.IntEnum):
    HEARTBEAT = 1
    ACK = 2


class _Auth(enum.IntEnum):
    SIGNED = 0
    UNSIGNED = 1


_ROLE_CODES: Final = {role: code for code, role in enumerate(Role, start=1)}
_ROLES: Final = {code: role for role, code in _ROLE_CODES.items()}
_ALL_FLAGS: Final = int(
    Flag.CONFIGURED_MASTER
    | Flag.HANDING_OVER
    | Flag.HANDED_OVER
    | Flag.ECHO_REQUEST
    | Flag.IDLE
    | Flag.REQUESTED
)
_ACK_FLAGS: Final = int(Flag.IDLE)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A probe's periodic "I am alive, and this is my state".

    Attributes:
        sender: node id of the sender (see ``node_id_of``).
        boot_id: 8 bytes identifying the sender's process lifetime (``make_boot_id``).
        epoch: role-switch counter; every ``%Mode`` switch increments it, higher wins.
        seq: per-boot datagram sequence number (shared with acks), for replay checks.
        role: the sender's role.
        flags: ``Flag`` bits.
        beat_interval: the sender's BeatInterval in seconds (a slave adopts a master's).
        config_digest: digest of pair-wide settings, so drift between peers shows.
        acks_sent: serial of the last ack datagram sent (the handover waits for it).
        echo_boot: the receiver's boot id as the sender knows it (``NO_BOOT``: none yet).
        echo_seq: the newest sequence number the sender has received from ``echo_boot``.
        ack_base: the first of the sender's ack serials that concern the receiver's
            current boot (acks before it were sent before the receiver could hold events).
        acks_heard: the receiver's ack serials the sender holds without a hole, from the
            receiver's ``ack_base`` (the receiver re-sends what is missing above it).
        pending: events the sender forwarded that its sink has not acknowledged yet.
        sink_failing: seconds the sender's sink has been failing (0: delivering).
        spool_bytes: bytes in the sender's store-and-forward spool.
        sink_verified_age: seconds since a delivery or a check last showed the sender's
            sink working (``inf``: never). A sink handover goes only to a standby whose
            sink this shows verified within ``SinkFailover`` (issue 21).
        status_port: the sender's MetricsPort (0: none), at the datagram's source
            address: where ``probepair status`` finds the peer's /status (issue 25).
        held_age: seconds since the oldest event the sender holds for the receiver's
            acks arrived (0: none). A boot the receiver hears for the first time gets
            the acks of that long (and a bound) again, not only the last bound's.
    """

    sender: int
    boot_id: bytes
    epoch: int
    seq: int
    role: Role
    flags: Flag
    beat_interval: float
    config_digest: bytes
    acks_sent: int = 0
    echo_boot: bytes = NO_BOOT
    echo_seq: int = 0
    ack_base: int = 0
    acks_heard: int = 0
    pending: int = 0
    sink_failing: float = 0.0
    spool_bytes: int = 0
    sink_verified_age: float = math.inf
    status_port: int = 0
    held_age: float = 0.0


@dataclass(frozen=True, slots=True)
class Ack:
    """Event keys the sender's sink acknowledged, so the peer can drop its copies.

    Attributes:
        serial: per-boot ack counter, 1 for the first ack datagram (a re-sent ack
            keeps its serial and gets a new ``seq``).
        keys: up to ``MAX_ACK_KEYS`` 8-byte event keys.
        echo_boot, echo_seq: as in ``Heartbeat``.
        pending: events the sender forwarded that its sink has not acknowledged yet.
        flags: only ``Flag.IDLE``.
    """

    sender: int
    boot_id: bytes
    epoch: int
    seq: int
    role: Role
    serial: int
    keys: tuple[bytes, ...]
    echo_boot: bytes = NO_BOOT
    echo_seq: int = 0
    pending: int = 0
    flags: Flag = Flag.NONE


Message = Heartbeat | Ack


def make_boot_id(wall_seconds: float, random4: bytes) -> bytes:
    """A boot id from the wall-clock start time and 4 random bytes (e.g. ``os.urandom(4)``)."""
    if len(random4) != 4:
        raise ValueError(f"expected 4 random bytes, got {len(random4)}")
    return (int(wall_seconds) % _U32).to_bytes(4, "big") + random4


def node_id_of(name: str) -> int:
    """A stable 32-bit node id from a name such as ``"host:port"``."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big")


def config_digest(*values: object) -> bytes:
    """A ``DIGEST_SIZE``-byte digest of the settings both peers must agree on."""
    return hashlib.blake2b(repr(values).encode(), digest_size=DIGEST_SIZE).digest()


def _key(secret: bytes) -> bytes:
    return secret or UNSIGNED_KEY


def encode(msg: Message, secret: bytes) -> bytes:
    """The datagram for ``msg``, signed with ``secret`` (unsigned when it is empty).

    Raises:
        ValueError: a field does not fit the format (a bug in the caller).
    """
    if len(msg.boot_id) != BOOT_ID_SIZE or len(msg.echo_boot) != BOOT_ID_SIZE:
        raise ValueError(f"boot_id and echo_boot must be {BOOT_ID_SIZE} bytes")
    try:
        if isinstance(msg, Heartbeat):
            kind, flags = _Kind.HEARTBEAT, int(msg.flags)
            if len(msg.config_digest) != DIGEST_SIZE:
                raise ValueError(f"config_digest must be {DIGEST_SIZE} bytes")
            body = _HEARTBEAT.pack(
                msg.beat_interval,
                msg.config_digest,
                msg.acks_sent,
                msg.ack_base,
                msg.acks_heard,
                min(msg.pending, _U32 - 1),
                msg.sink_failing,
                msg.spool_bytes,
                msg.sink_verified_age if msg.sink_verified_age < F32_MAX else math.inf,
                msg.status_port,
                min(msg.held_age, F32_MAX),
            )
        else:
            kind, flags = _Kind.ACK, int(msg.flags)
            if flags & ~_ACK_FLAGS:
                raise ValueError("an ack carries only the IDLE flag")
            if len(msg.keys) > MAX_ACK_KEYS:
                raise ValueError(f"an ack carries at most {MAX_ACK_KEYS} keys")
            if any(len(k) != KEY_SIZE for k in msg.keys):
                raise ValueError(f"event keys must be {KEY_SIZE} bytes")
            body = _ACK.pack(msg.serial, min(msg.pending, _U32 - 1), len(msg.keys))
            body += b"".join(msg.keys)
    except struct.error as exc:
        raise ValueError(f"field out of range: {exc}") from None
    auth = _Auth.SIGNED if secret else _Auth.UNSIGNED
    try:
        header = _HEADER.pack(
            MAGIC,
            VERSION,
            kind,
            auth,
            flags,
            _ROLE_CODES[msg.role],
            msg.sender,
            msg.boot_id,
            msg.epoch,
            msg.seq,
            msg.echo_boot,
            msg.echo_seq,
        )
    except struct.error as exc:
        raise ValueError(f"field out of range: {exc}") from None
    signed = header + body
    return signed + hmac.digest(_key(secret), signed, "sha256")[:TAG_SIZE]


# Offsets into the header (see _HEADER), for the checks that run before the MAC.
_VERSION_AT: Final = 4
_KIND_AT: Final = 5
_AUTH_AT: Final = 6
_FLAGS_AT: Final = 7
_ROLE_AT: Final = 8
_SENDER: Final = struct.Struct("!I")
_SENDER_AT: Final = 9
_BOOT_AT: Final = 13
_SEQ: Final = struct.Struct("!Q")
_SEQ_AT: Final = 25
_COUNT: Final = struct.Struct("!H")
_COUNT_AT: Final = _HEADER.size + 8  # the ack's key count, after serial and pending
_HEARTBEAT_SIZE: Final = _HEADER.size + _HEARTBEAT.size + TAG_SIZE
_ACK_MIN_SIZE: Final = _HEADER.size + _ACK.size + TAG_SIZE
_KIND_FLAGS: Final = {int(_Kind.HEARTBEAT): _ALL_FLAGS, int(_Kind.ACK): _ACK_FLAGS}


def screen(data: bytes, secret: bytes, guard: ReplayGuard | None = None) -> str | None:
    """The cheap checks ``decode`` runs before the MAC, without raising.

    Everything here reads a few header bytes: magic, length, version, kind, auth mode,
    role, flags, the body length the kind implies, and (with ``guard``) the sender, boot
    id and sequence number against what the guard has accepted. Nothing is changed: a
    datagram is trusted only after its MAC. A forged datagram that fails here costs
    well under a microsecond, one that passes costs the HMAC (bench/hbflood.py).

    Returns:
        None if the datagram is worth a MAC check, else the ``HeartbeatDecodeError``
        reason ``decode`` would give it (``magic``, ``short``, ``version``,
        ``unsigned``, ``mac``, ``malformed``; with ``guard`` also ``self``, ``stale``,
        ``replay``, ``sender``).
    """
    size = len(data)
    if data[:4] != MAGIC[:size]:
        return "magic"
    if size < _HEADER.size + TAG_SIZE:
        return "short"
    if data[_VERSION_AT] != VERSION:
        return "version"
    auth = data[_AUTH_AT]
    if auth != _Auth.SIGNED:
        if auth != _Auth.UNSIGNED:
            return "malformed"
        if secret:
            return "unsigned"
    elif not secret:
        return "mac"
    allowed = _KIND_FLAGS.get(data[_KIND_AT])
    if allowed is None or data[_FLAGS_AT] & ~allowed or data[_ROLE_AT] not in _ROLES:
        return "malformed"
    if allowed == _ALL_FLAGS:
        if size != _HEARTBEAT_SIZE:
            return "malformed"
    else:
        count = _COUNT.unpack_from(data, _COUNT_AT)[0]
        if count > MAX_ACK_KEYS or size != _ACK_MIN_SIZE + count * KEY_SIZE:
            return "malformed"
    if guard is not None:
        return guard.screen(
            bytes(data[_BOOT_AT : _BOOT_AT + BOOT_ID_SIZE]),
            _SEQ.unpack_from(data, _SEQ_AT)[0],
            _SENDER.unpack_from(data, _SENDER_AT)[0],
        )
    return None


def boot_id_of(data: bytes) -> bytes:
    """The sender's boot id in a datagram that ``screen`` passed (nothing is verified)."""
    return bytes(data[_BOOT_AT : _BOOT_AT + BOOT_ID_SIZE])


_SCREEN_DETAIL: Final = {
    "magic": "not a probepair datagram",
    "version": f"version other than {VERSION}",
    "unsigned": "peer has no SharedSecret",
    "mac": "signed datagram but no SharedSecret here",
    "malformed": "header, length or flags",
}


def decode(data: bytes, secret: bytes, guard: ReplayGuard | None = None) -> Message:
    """Parse and authenticate one datagram.

    Args:
        data: the datagram.
        secret: the SharedSecret (empty: unsigned datagrams).
        guard: if given, its cheap checks (``ReplayGuard.screen``) run before the MAC;
            it is not updated (call ``guard.check`` on the result for that).

    Raises:
        HeartbeatDecodeError: for any input that is not a valid datagram signed the way
            this probe expects; ``reason`` is one of ``magic``, ``short``, ``version``,
            ``unsigned``, ``mac``, ``malformed`` (and, with ``guard``, ``self``,
            ``stale``, ``replay``, ``sender``).
    """
    reason = screen(data, secret, guard)
    if reason is not None:
        if reason == "magic":
            detail = f"not a probepair datagram ({bytes(data[:4])!r})"
        elif reason == "short":
            detail = f"{len(data)} bytes"
        elif reason == "version":
            detail = f"version {data[_VERSION_AT]}, expected {VERSION}"
        else:
            detail = _SCREEN_DETAIL.get(reason, "")
        raise HeartbeatDecodeError(reason, detail)
    signed, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
    if not hmac.compare_digest(hmac.digest(_key(secret), signed, "sha256")[:TAG_SIZE], tag):
        raise HeartbeatDecodeError("mac", "bad HMAC (wrong SharedSecret or corrupted)")
    # screen() has checked kind, role, flags and lengths; what is left is the values.
    header = _HEADER.unpack_from(signed)
    kind, flags, role_code, sender, boot_id, epoch, seq, echo_boot, echo_seq = (
        header[2:3] + header[4:]
    )
    role = _ROLES[role_code]
    body = signed[_HEADER.size :]
    if kind == _Kind.HEARTBEAT:
        (interval, digest, acks_sent, base, heard, pending, failing, spool, verified, port,
         held) = _HEARTBEAT.unpack(body)
        if not (math.isfinite(interval) and interval > 0):
            raise HeartbeatDecodeError("malformed", f"beat interval {interval!r}")
        if not (math.isfinite(failing) and failing >= 0):
            raise HeartbeatDecodeError("malformed", f"sink failing for {failing!r} s")
        if not verified >= 0:  # NaN or negative; inf is "never verified"
            raise HeartbeatDecodeError("malformed", f"sink verified {verified!r} s ago")
        if not (math.isfinite(held) and held >= 0):
            raise HeartbeatDecodeError("malformed", f"events held for {held!r} s")
        return Heartbeat(
            sender,
            bytes(boot_id),
            epoch,
            seq,
            role,
            Flag(flags),
            interval,
            bytes(digest),
            acks_sent,
            bytes(echo_boot),
            echo_seq,
            base,
            heard,
            pending,
            failing,
            spool,
            verified,
            port,
            held,
        )
    serial, pending, _ = _ACK.unpack_from(body)
    raw = body[_ACK.size :]
    keys = tuple(bytes(raw[i : i + KEY_SIZE]) for i in range(0, len(raw), KEY_SIZE))
    return Ack(
        sender,
        bytes(boot_id),
        epoch,
        seq,
        role,
        serial,
        keys,
        bytes(echo_boot),
        echo_seq,
        pending,
        Flag(flags),
    )


def boot_time(boot_id: bytes) -> int:
    """The wall-clock seconds (mod 2**32) a boot id was made at."""
    return int.from_bytes(boot_id[:4], "big")


# Sequence numbers. RFC 4303 allows any size; a burst of re-sent acks reordered by the
# network must not fall below it. Freshness (failover.freshness), not this window, is what
# keeps old datagrams from changing anything; the window only drops exact copies.
REPLAY_WINDOW: Final = 4096
_WINDOW_MASK: Final = (1 << REPLAY_WINDOW) - 1
_OLD_BOOTS: Final = 8  # superseded boot ids remembered, so they cannot come back


class ReplayGuard:
    """Rejects our own, replayed and stale datagrams of the one peer (pure, no clock).

    Args:
        own_boot_id: our boot id; datagrams carrying it come from ourselves (reason
            ``self``: PeerHost points back at this probe, or a loop).
    """

    __slots__ = ("_bitmap", "_boot", "_boot_time", "_highest", "_old", "_sender", "own_boot_id")

    def __init__(self, own_boot_id: bytes) -> None:
        self.own_boot_id = own_boot_id
        self._boot: bytes | None = None
        self._boot_time = -1
        self._sender = -1  # the sender id that came with _boot
        self._highest = 0
        self._bitmap = 0  # bit i set: sequence number _highest - i was seen
        self._old: list[bytes] = []

    @property
    def peer_boot_id(self) -> bytes | None:
        """The peer boot id currently accepted, if any."""
        return self._boot

    def screen(self, boot: bytes, seq: int, sender: int) -> str | None:
        """What ``check`` would say about a datagram with these fields, changing nothing.

        Safe before the MAC: it can only refuse, and everything it refuses ``check``
        refuses too (an authentic peer never changes its sender id within a boot).

        Returns:
            None (acceptable), or the reason ``self``, ``stale``, ``replay`` or ``sender``.
        """
        if boot == self.own_boot_id:
            return "self"
        if boot != self._boot:
            if boot in self._old or boot_time(boot) < self._boot_time:
                return "stale"
            return None
        if sender != self._sender:
            return "sender"
        if seq > self._highest:
            return None
        offset = self._highest - seq
        if offset >= REPLAY_WINDOW:
            return "stale"
        if self._bitmap >> offset & 1:
            return "replay"
        return None

    def check(self, msg: Message) -> None:
        """Accept ``msg`` (and remember its sequence number) or raise.

        Raises:
            HeartbeatDecodeError: reason ``self``, ``stale`` (an older boot id, or a
                sequence number below the window), ``replay`` (seen before) or
                ``sender`` (another sender id than the one this boot id came with).
        """
        boot, seq = msg.boot_id, msg.seq
        reason = self.screen(boot, seq, msg.sender)
        if reason is not None:
            raise HeartbeatDecodeError(reason, _GUARD_DETAIL[reason].format(boot.hex(), seq))
        if boot != self._boot:
            if self._boot is not None:
                self._old = [*self._old[-(_OLD_BOOTS - 1) :], self._boot]
            self._boot, self._boot_time, self._sender = boot, boot_time(boot), msg.sender
            self._highest, self._bitmap = seq, 1
        elif seq > self._highest:
            shift = seq - self._highest
            self._bitmap = ((self._bitmap << shift) | 1) & _WINDOW_MASK
            self._highest = seq
        else:
            self._bitmap |= 1 << (self._highest - seq)


_GUARD_DETAIL: Final = {
    "self": "datagram from this probe",
    "stale": "boot id {0} is older, or sequence {1} below the window",
    "replay": "sequence {1} seen before",
    "sender": "another sender id than boot id {0} came with",
}
