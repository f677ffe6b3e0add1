"""SNMPv3 User-based Security Model (RFC 3414) for a notification receiver.

PURE apart from the cipher: standard library (hashlib, hmac) for key localisation and
the MACs, ``cryptography`` for AES (RFC 3826); no hand-written cipher, no trio, no
sockets, no clock reads (``now`` is an argument).

What it does with a message (RFC 3414 §3.2, in that order):

1. Engine. A message whose authoritative engine is empty, or is not ours while it asks
   for a report, is a discovery probe (net-snmp's ``snmpinform`` sends one before its
   first inform): answered with a Report of ``usmStatsUnknownEngineIDs`` carrying our
   engine ID, boots and time, so the sender can localise its keys and synchronise.
2. User. ``SnmpUsersFile`` holds mttrapd's ``createUser [-e ENGINEID] name AUTH pass
   [PRIV [pass]]`` lines. A user with ``-e`` is the user of that engine only (a trap
   sender's engine); without it, of any engine, its keys localised on first use for
   each engine (a bounded cache). Unknown names: ``unknown_user``; a name known only
   for other engines: ``unknown_engine``.
3. Level. A message must be at the level its user is configured for (a user with a
   privacy password sends authPriv): anything less is ``unsupported_security_level``,
   so nobody can send unauthenticated traps under a configured name.
4. MAC. HMAC-MD5-96, HMAC-SHA-96 (RFC 3414) or HMAC-SHA-2 (RFC 7860) over the
   message with its authentication parameters zeroed: ``wrong_digest`` if it differs.
5. Time window, only where we are authoritative (informs): engine boots must be ours
   and time within 150 s (RFC 3414 §3.2.7a), else ``not_in_time_window`` with an
   authenticated Report so the sender resynchronises. Traps, whose authoritative
   engine is the sender, are not checked for timeliness (RFC 3414 §3.2.7b would keep
   per-sender clocks; snmptrapd does not check either).
6. Privacy. AES-128-CFB (RFC 3826); a plaintext that does not decode is
   ``decryption_error``.

Engine boots: not persisted; the runtime passes a value that grows with each start
(seconds since a fixed date at start), which RFC 3414 §2.2.2 asks of boots.
"""

from __future__ import annotations

import hashlib
import hmac
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # cryptography >= 47 keeps CFB (RFC 3826's mode) among its "decrepit" modes
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB  # type: ignore[assignment,unused-ignore]

from probepair.feeds.snmp import ber

# name in createUser -> (hash constructor, MAC length in bytes): RFC 3414 §6-7, RFC 7860 §4.
AUTH_PROTOCOLS: Final[dict[str, tuple[Callable[..., hashlib._Hash], int]]] = {
    "MD5": (hashlib.md5, 12),
    "SHA": (hashlib.sha1, 12),
    "SHA1": (hashlib.sha1, 12),
    "SHA-1": (hashlib.sha1, 12),
    "SHA-224": (hashlib.sha224, 16),
    "SHA224": (hashlib.sha224, 16),
    "SHA-256": (hashlib.sha256, 24),
    "SHA256": (hashlib.sha256, 24),
    "SHA-384": (hashlib.sha384, 32),
    "SHA384": (hashlib.sha384, 32),
    "SHA-512": (hashlib.sha512, 48),
    "SHA512": (hashlib.sha512, 48),
}
PRIV_PROTOCOLS: Final = ("AES", "AES128", "AES-128")  # RFC 3826 AES-128-CFB
TIME_WINDOW: Final = 150  # seconds, RFC 3414 §2.2.3
MIN_PASSWORD: Final = 8  # characters: RFC 3414 §11.2 and net-snmp refuse shorter ones
MAX_ENGINE_KEYS: Final = 4096  # (user, engine) localised keys cached; cleared when full
_PASSWORD_BYTES: Final = 1_048_576  # RFC 3414 A.2: hash one megabyte of password

# usmStats counters (RFC 3414 §5) reported to a sender, by reason.
_STATS_OID: Final = ".1.3.6.1.6.3.15.1.1"
REPORT_OIDS: Final = {
    "unsupported_security_level": _STATS_OID + ".1.0",
    "not_in_time_window": _STATS_OID + ".2.0",
    "unknown_user": _STATS_OID + ".3.0",
    "unknown_engine": _STATS_OID + ".4.0",
    "discovery": _STATS_OID + ".4.0",
    "wrong_digest": _STATS_OID + ".5.0",
    "decryption_error": _STATS_OID + ".6.0",
}
REJECT_REASONS: Final = (
    "unsupported_security_model",
    "unsupported_security_level",
    "not_in_time_window",
    "unknown_user",
    "unknown_engine",
    "wrong_digest",
    "decryption_error",
)


class UsersFileError(ValueError):
    """A line of the users file that is no createUser this module reads."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def password_to_key(password: bytes, hash_: Callable[..., hashlib._Hash]) -> bytes:
    """Ku of RFC 3414 A.2: the hash of ``password`` repeated to one megabyte."""
    reps, rest = divmod(_PASSWORD_BYTES, len(password))
    h = hash_()
    h.update(password * reps + password[:rest])
    return h.digest()


def localise(ku: bytes, engine_id: bytes, hash_: Callable[..., hashlib._Hash]) -> bytes:
    """Kul of RFC 3414 §2.6: H(Ku || engineID || Ku)."""
    return hash_(ku + engine_id + ku).digest()


@dataclass(frozen=True, slots=True)
class User:
    """One createUser line: keys are Ku (not localised); ``engine`` b'' means any."""

    name: bytes
    engine: bytes
    auth: str  # '' none, else a key of AUTH_PROTOCOLS
    auth_ku: bytes
    priv: str  # '' none, else AES
    priv_ku: bytes

    @property
    def level(self) -> int:
        """The msgFlags security bits this user sends with (1 auth, 3 auth+priv)."""
        return (1 if self.auth else 0) | (2 if self.priv else 0)


def parse_users(text: str) -> list[User]:
    """The createUser lines of ``text`` (``#`` comments and blank lines skipped).

    Raises:
        UsersFileError: a line that is not ``createUser [-e HEX] name [AUTH pass [PRIV
            [pass]]]``, an unknown protocol, a password under 8 characters.
    """
    users: list[User] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsersFileError(number, str(exc)) from None
        if words[0] != "createUser":
            raise UsersFileError(number, f"expected 'createUser', got {words[0]!r}")
        words = words[1:]
        engine = b""
        if words[:1] == ["-e"]:
            if len(words) < 2:
                raise UsersFileError(number, "expected an engine ID after -e")
            hexid = words[1][2:] if words[1].lower().startswith("0x") else words[1]
            try:
                engine = bytes.fromhex(hexid)
            except ValueError:
                raise UsersFileError(number, f"engine ID {words[1]!r} is not hex") from None
            if not 5 <= len(engine) <= 32:
                raise UsersFileError(number, "an engine ID has 5 to 32 octets (RFC 3411)")
            words = words[2:]
        elif words[:1] and words[0].startswith("-"):
            raise UsersFileError(number, f"option {words[0]!r} is not supported (only -e)")
        if not words:
            raise UsersFileError(number, "expected a user name")
        name, rest = words[0].encode(), words[1:]
        auth = priv = ""
        auth_ku = priv_ku = b""
        if rest:
            auth = rest[0].upper()
            if auth not in AUTH_PROTOCOLS:
                known = "MD5, SHA, SHA-224, SHA-256, SHA-384, SHA-512"
                got = rest[0]
                raise UsersFileError(number, f"expected an auth protocol ({known}), got {got!r}")
            if len(rest) < 2:
                raise UsersFileError(number, f"expected the {auth} pass phrase")
            hash_ = AUTH_PROTOCOLS[auth][0]
            _check_password(number, rest[1])
            auth_ku = password_to_key(rest[1].encode(), hash_)
            if len(rest) > 2:
                priv = rest[2].upper()
                if priv == "DES":
                    raise UsersFileError(number, "DES privacy is not supported: use AES")
                if priv not in PRIV_PROTOCOLS:
                    raise UsersFileError(number, f"expected AES, got {rest[2]!r}")
                priv = "AES"
                phrase = rest[3] if len(rest) > 3 else rest[1]  # net-snmp: default = auth's
                _check_password(number, phrase)
                priv_ku = password_to_key(phrase.encode(), hash_)
                if len(rest) > 4:
                    raise UsersFileError(number, f"unexpected {rest[4]!r} after the pass phrase")
        users.append(User(name, engine, auth, auth_ku, priv, priv_ku))
    return users


def _check_password(number: int, phrase: str) -> None:
    if len(phrase) < MIN_PASSWORD:
        raise UsersFileError(number, f"pass phrases have {MIN_PASSWORD} characters at least")


def engine_id_for(name: str) -> bytes:
    """A stable engine ID for a probe named ``name`` (RFC 3411 §5 format 5, octets):
    the same across restarts, different for the two probes of a pair."""
    digest = hashlib.blake2b(name.encode(), digest_size=12, person=b"probepair-snmp").digest()
    return bytes.fromhex("80001f8805") + digest


@dataclass(frozen=True, slots=True)
class Opened:
    """An authentic (and decrypted) notification."""

    msg: ber.V3Message
    context_engine: bytes
    context_name: bytes
    pdu: ber.Pdu
    level: str  # noAuth, authNoPriv or authPriv (mttrapd's $securityLevel)
    keys: tuple[str, bytes, bytes]  # (auth protocol, localised auth key, priv key)


@dataclass(frozen=True, slots=True)
class Refused:
    """A message dropped for ``reason``; ``report``: a Report datagram to send back."""

    reason: str
    report: bytes | None = None


LEVELS: Final = {0: "noAuth", 1: "authNoPriv", 3: "authPriv"}


class Usm:
    """Our engine and users: opens v3 messages, seals answers.

    Args:
        users: from ``parse_users``.
        engine_id: ours (``engine_id_for``, or SnmpEngineID).
        boots: our engine boots (grows with each start).
        started: ``now`` at start (engine time is ``now - started``).
        salt: the first 64-bit salt for AES (RFC 3826 §3.1.1.1: any start, then +1).
    """

    def __init__(
        self, users: list[User], engine_id: bytes, boots: int, started: float, salt: int = 0
    ) -> None:
        self.engine_id = engine_id
        self.boots = boots
        self.started = started
        self._by_name: dict[bytes, list[User]] = {}
        for user in users:
            self._by_name.setdefault(user.name, []).append(user)
        self._keys: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}
        self._salt = salt
        self.reports_sent = 0

    def engine_time(self, now: float) -> int:
        return max(0, int(now - self.started))

    def localised(self, user: User, engine: bytes) -> tuple[bytes, bytes]:
        """``user``'s (auth, priv) keys localised for ``engine`` (cached)."""
        key = (user.name + b"\0" + user.engine, engine)
        found = self._keys.get(key)
        if found is None:
            hash_ = AUTH_PROTOCOLS[user.auth][0] if user.auth else hashlib.sha1
            auth = localise(user.auth_ku, engine, hash_) if user.auth else b""
            priv = localise(user.priv_ku, engine, hash_)[:16] if user.priv else b""
            if len(self._keys) >= MAX_ENGINE_KEYS:
                self._keys.clear()
            found = self._keys[key] = (auth, priv)
        return found

    def open(self, msg: ber.V3Message, data: bytes, now: float) -> Opened | Refused:
        """Check ``msg`` (decoded from ``data``) as RFC 3414 §3.2 does; see the module."""
        if msg.security_model != 3:
            return Refused("unsupported_security_model")
        level = msg.flags & 3
        if level == 2:
            return Refused("unsupported_security_level")  # priv without auth: RFC 3412 §7.2
        ours = msg.engine_id == self.engine_id
        if not msg.engine_id or (msg.reportable and not ours):
            return self._refuse("discovery" if not msg.engine_id else "unknown_engine", msg, now)
        candidates = self._by_name.get(msg.user)
        if not candidates:
            return self._refuse("unknown_user", msg, now)
        user = next((u for u in candidates if u.engine == msg.engine_id), None) or next(
            (u for u in candidates if not u.engine), None
        )
        if user is None:
            return self._refuse("unknown_engine", msg, now)
        if level != user.level:
            return self._refuse("unsupported_security_level", msg, now)
        auth_key, priv_key = self.localised(user, msg.engine_id)
        if user.auth:
            hash_, size = AUTH_PROTOCOLS[user.auth]
            if len(msg.auth_params) != size:
                return self._refuse("wrong_digest", msg, now)
            off = msg.auth_offset
            zeroed = data[:off] + bytes(size) + data[off + size :]
            mac = hmac.new(auth_key, zeroed, hash_).digest()[:size]
            if not hmac.compare_digest(mac, msg.auth_params):
                return self._refuse("wrong_digest", msg, now)
            if ours and (
                msg.boots != self.boots
                or abs(msg.time - self.engine_time(now)) > TIME_WINDOW
            ):
                keys = (user.auth, auth_key, b"")
                return self._refuse("not_in_time_window", msg, now, keys)
        scoped = msg.scoped
        if user.priv:
            if len(msg.priv_params) != 8:
                return self._refuse("decryption_error", msg, now)
            if not (0 <= msg.boots <= 0xFFFFFFFF and 0 <= msg.time <= 0xFFFFFFFF):
                return self._refuse("decryption_error", msg, now)  # no AES IV of them
            iv = msg.boots.to_bytes(4, "big") + msg.time.to_bytes(4, "big") + msg.priv_params
            decryptor = Cipher(algorithms.AES(priv_key), CFB(iv)).decryptor()
            scoped = decryptor.update(scoped) + decryptor.finalize()
        try:
            engine, name, pdu = ber.decode_scoped(scoped)
        except ber.BerError:
            if user.priv:
                return self._refuse("decryption_error", msg, now)
            raise
        return Opened(msg, engine, name, pdu, LEVELS[level], (user.auth, auth_key, priv_key))

    def _refuse(
        self,
        reason: str,
        msg: ber.V3Message,
        now: float,
        keys: tuple[str, bytes, bytes] | None = None,
    ) -> Refused:
        if not msg.reportable:
            return Refused(reason)
        request_id = 0
        if not msg.flags & 2:
            try:
                request_id = ber.decode_scoped(msg.scoped)[2].request_id
            except ber.BerError:
                pass  # a report with request-id 0: the sender matches on msgID
        varbinds: list[ber.Varbind] = [(REPORT_OIDS[reason], ber.COUNTER32, 1)]
        pdu = ber.encode_pdu(ber.REPORT, request_id, ber.encode_varbinds(varbinds))
        scoped = ber.encode_scoped(self.engine_id, b"", pdu)
        # An authenticated report only for the time window (the sender's keys are
        # good); the others go out noAuthNoPriv (RFC 3414 §3.2 step 7 and §11.3).
        flags = 1 if keys is not None else 0
        user = msg.user if keys is not None or reason != "discovery" else b""
        report = self.seal(msg.msg_id, flags, user, scoped, keys, now)
        self.reports_sent += 1
        return Refused(reason, report)

    def response(self, opened: Opened, now: float) -> bytes:
        """The Response (RFC 3416 §4.2.7) to an opened inform, at its security level."""
        pdu = opened.pdu
        response = ber.encode_pdu(ber.RESPONSE, pdu.request_id, pdu.varbind_list)
        scoped = ber.encode_scoped(opened.context_engine, opened.context_name, response)
        return self.seal(
            opened.msg.msg_id, opened.msg.flags & 3, opened.msg.user, scoped, opened.keys, now
        )

    def seal(
        self,
        msg_id: int,
        flags: int,
        user: bytes,
        scoped: bytes,
        keys: tuple[str, bytes, bytes] | None,
        now: float,
    ) -> bytes:
        """A message from this engine at level ``flags`` (1 auth, 3 auth+priv) with
        ``keys`` (auth protocol, localised auth key, priv key): answers, and the test
        and bench senders, which play a trap sender's engine."""
        boots, time_ = self.boots, self.engine_time(now)
        priv_params = b""
        msg_data = scoped
        if flags & 2:
            assert keys is not None
            self._salt = (self._salt + 1) & 0xFFFFFFFFFFFFFFFF
            priv_params = self._salt.to_bytes(8, "big")
            iv = boots.to_bytes(4, "big") + time_.to_bytes(4, "big") + priv_params
            encryptor = Cipher(algorithms.AES(keys[2]), CFB(iv)).encryptor()
            msg_data = ber.tlv(ber.OCTET_STRING, encryptor.update(scoped) + encryptor.finalize())
        size = AUTH_PROTOCOLS[keys[0]][1] if flags & 1 and keys is not None else 0
        data, off = ber.encode_v3(
            msg_id, flags, self.engine_id, boots, time_, user, bytes(size), priv_params, msg_data
        )
        if size:
            assert keys is not None
            hash_ = AUTH_PROTOCOLS[keys[0]][0]
            mac = hmac.new(keys[1], data, hash_).digest()[:size]
            data = data[:off] + mac + data[off + size :]
        return data
