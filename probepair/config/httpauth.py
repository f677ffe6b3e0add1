"""Who may read ``/status`` and ``/rules``, and whether an answer came from the real peer.

PURE: stdlib only; the wall clock arrives as ``now`` (seconds since the epoch: the two
hosts of a pair must agree on the time within ``MAX_SKEW``, as NTP keeps them).

A request to ``/status`` or ``/rules`` proves its sender holds ``SharedSecret``:

    Authorization: Probepair-HMAC ts=<unix seconds>, nonce=<32 hex>, mac=<64 hex>

where ``mac = HMAC-SHA256(secret, "probepair-request 1\\n" METHOD "\\n" TARGET "\\n" ts
"\\n" nonce)``. The server accepts it only while ``|now - ts| <= MAX_SKEW`` and only once:
``RequestVerifier`` remembers every nonce it accepted until its timestamp is past the
window (at most ``NONCE_CAPACITY`` of them; a full cache refuses, it never forgets a
nonce early, so a captured request cannot be replayed). Only correctly signed requests
reach the cache, so nobody without the secret can fill it.

The answer proves it came from a holder of the secret *now*: the server signs it with
``X-Probepair-Signature: HMAC-SHA256(secret, "probepair-response 1\\n" nonce "\\n" status
"\\n" SHA-256(body))``, bound to the client's fresh nonce, so a fake server on the
peer's address can neither forge an answer nor replay an old one.

``/metrics`` with ``MetricsAuth: bearer``: ``Authorization: Bearer <token>``, compared in
constant time (``check_bearer``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict
from typing import Final

SCHEME: Final = "Probepair-HMAC"
SIGNATURE_HEADER: Final = "X-Probepair-Signature"
# seconds a signed request stays acceptable either side of its timestamp: two NTP-synced
# hosts differ by milliseconds; 30 s also covers a slow CLI start and a busy peer.
MAX_SKEW: Final = 30.0
# accepted nonces remembered at once: a slave asks /status once a beat period at most and
# an operator runs `probepair status` by hand; 4096 in 60 s is ~70 requests a second.
NONCE_CAPACITY: Final = 4096
_REQUEST: Final = b"probepair-request 1\n"
_RESPONSE: Final = b"probepair-response 1\n"
_HEADER: Final = re.compile(
    r"^Probepair-HMAC ts=(?P<ts>[0-9]{1,12}(?:\.[0-9]{1,6})?), "
    r"nonce=(?P<nonce>[0-9a-f]{32}), mac=(?P<mac>[0-9a-f]{64})$"
)


class Unauthorized(Exception):
    """The request does not prove it holds the secret; ``reason`` says why (for the log)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def request_mac(secret: bytes, method: str, target: str, ts: str, nonce: str) -> str:
    """The hex HMAC a request to ``target`` carries (see the module docstring)."""
    message = _REQUEST + "\n".join((method, target, ts, nonce)).encode("utf-8", "surrogateescape")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def authorization(secret: bytes, method: str, target: str, *, now: float, nonce: str) -> str:
    """The ``Authorization`` header value for one request.

    Args:
        secret: SharedSecret.
        method: ``GET`` or ``HEAD``.
        target: the request target as sent (path and query).
        now: the wall clock, seconds since the epoch.
        nonce: 32 fresh random hex digits (``secrets.token_hex(16)``), never reused.
    """
    ts = f"{now:.3f}"
    return f"{SCHEME} ts={ts}, nonce={nonce}, mac={request_mac(secret, method, target, ts, nonce)}"


def response_mac(secret: bytes, nonce: str, status: int, body: bytes) -> str:
    """The hex HMAC an answer to the request with ``nonce`` carries."""
    message = _RESPONSE + f"{nonce}\n{status}\n".encode() + hashlib.sha256(body).digest()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def check_response(secret: bytes, nonce: str, status: int, body: bytes, signature: str) -> bool:
    """Whether ``signature`` (the answer's header, '' if none) signs this answer."""
    expected = response_mac(secret, nonce, status, body).encode()
    return hmac.compare_digest(signature.strip().encode("ascii", "replace"), expected)


def check_bearer(header: bytes | None, token: bytes) -> bool:
    """Whether ``header`` (the raw ``Authorization`` value) is ``Bearer <token>``.

    Constant time in the token: ``hmac.compare_digest`` over the whole value.
    """
    if header is None or not token:
        return False
    return hmac.compare_digest(header.strip(), b"Bearer " + token)


class RequestVerifier:
    """Checks signed requests and refuses each nonce a second time.

    Args:
        secret: SharedSecret (non-empty).
        max_skew: seconds a request's timestamp may differ from ``now``.
        capacity: nonces remembered at most.
    """

    def __init__(
        self, secret: bytes, *, max_skew: float = MAX_SKEW, capacity: int = NONCE_CAPACITY
    ) -> None:
        assert secret, "an empty secret authenticates nobody"
        self._secret = secret
        self._skew = max_skew
        self._capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> forget after

    def __len__(self) -> int:
        return len(self._seen)

    def verify(self, method: str, target: str, header: bytes | None, *, now: float) -> str:
        """Accept the request once: its nonce (to sign the answer with).

        Raises:
            Unauthorized: no or malformed ``Authorization``, a timestamp outside
                ``max_skew``, a MAC that does not match, a nonce seen before, or the
                nonce cache full.
        """
        if header is None:
            raise Unauthorized(f"no Authorization header ({SCHEME} expected)")
        m = _HEADER.match(header.decode("ascii", "replace").strip())
        if m is None:
            raise Unauthorized(f"malformed Authorization header ({SCHEME} expected)")
        ts, nonce = m["ts"], m["nonce"]
        if abs(now - float(ts)) > self._skew:
            raise Unauthorized(
                f"timestamp {float(ts) - now:+.0f} s from this host's clock, more than "
                f"{self._skew:g} s (are both hosts' clocks synchronised?)"
            )
        expected = request_mac(self._secret, method, target, ts, nonce)
        if not hmac.compare_digest(m["mac"].encode(), expected.encode()):
            raise Unauthorized("signature does not match (another SharedSecret?)")
        self._forget(now)
        if nonce in self._seen:
            raise Unauthorized("replayed request (nonce seen before)")
        if len(self._seen) >= self._capacity:
            raise Unauthorized(f"more than {self._capacity} signed requests within the window")
        # Valid while |now - ts| <= skew, so never after ts + skew <= now + 2 * skew.
        self._seen[nonce] = now + 2 * self._skew
        return nonce

    def _forget(self, now: float) -> None:
        # Entries are in insertion order, so their expiry grows with a steady clock; a
        # clock stepped back only keeps them longer (never forgets one early).
        while self._seen:
            nonce, until = next(iter(self._seen.items()))
            if until >= now:
                break
            del self._seen[nonce]
