"""TLS for the tcp feed (RFC 5425 syslog over TLS): the server context and its failures.

The stdlib ``ssl`` module through ``trio.SSLStream``; nothing hand-made. ``FeedTLSCert``
turns TLS on (a PEM certificate, or chain, with the key unless ``FeedTLSKey`` names the
key file); ``FeedTLSCA`` makes a client certificate mandatory and verified against that
PEM bundle (RFC 5425 §5.2's certificate-based authentication; no name check: a client
certificate the CA signed is the identity). Without it any client may send, encrypted.
TLS 1.2 at least (RFC 9662 updates RFC 5425 to require 1.2). Files are read once, at
start: a bad one stops the start with a ConfigError (exit 2), as a bad props file does.

A handshake holds one ``FeedMaxConnections`` slot and must be done within
``HANDSHAKE_TIMEOUT`` seconds, so a client that stalls mid-handshake (or a plain TCP
client that sends nothing) cannot keep it.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Final

from probepair.errors import ConfigError

if TYPE_CHECKING:
    from probepair.config.props import Props

# Seconds for a client's handshake: ~10 round trips and two signatures take
# milliseconds, even a loaded sender across a WAN well under a second; 10 s is rsyslog's
# own order of magnitude and far below FeedIdleTimeout's 300 s.
HANDSHAKE_TIMEOUT: Final = 10.0
# OpenSSL's reasons for a client certificate that is missing or not verified.
_CERTIFICATE_REASONS: Final = frozenset({
    "PEER_DID_NOT_RETURN_A_CERTIFICATE",
    "CERTIFICATE_VERIFY_FAILED",
    "NO_CERTIFICATE_RETURNED",
    "CERTIFICATE_REQUIRED",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV1_ALERT_UNKNOWN_CA",
})


def server_context(props: Props) -> ssl.SSLContext | None:
    """The feed's TLS server context, or None when ``FeedTLSCert`` is unset.

    Raises:
        ConfigError: a file cannot be read or is not what its property says (naming
            the file, the property and OpenSSL's reason).
    """
    if not props.FeedTLSCert:
        return None
    for name in ("FeedTLSCert", "FeedTLSKey", "FeedTLSCA"):
        path = getattr(props, name)
        if not path:
            continue
        try:  # name the file that is missing (OpenSSL's error does not)
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(path, name, f"cannot read it: {exc.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    name = "FeedTLSKey" if props.FeedTLSKey else "FeedTLSCert"
    try:
        context.load_cert_chain(props.FeedTLSCert, props.FeedTLSKey or None)
    except (OSError, ssl.SSLError) as exc:
        what = (f"the key of FeedTLSCert {props.FeedTLSCert!r}" if props.FeedTLSKey
                else "a certificate with its key")
        raise ConfigError(
            props.FeedTLSKey or props.FeedTLSCert, name, f"cannot load it as {what}: {_why(exc)}"
        ) from None
    if props.FeedTLSCA:
        try:
            context.load_verify_locations(cafile=props.FeedTLSCA)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                props.FeedTLSCA, "FeedTLSCA", f"cannot load a CA bundle from it: {_why(exc)}",
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _why(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    return str(exc.strerror or exc)


def handshake_failure(exc: BaseException) -> str:
    """The ``probepair_feed_tls_handshake_failures_total`` reason of a failed handshake.

    ``exc`` is what ``SSLStream.do_handshake`` raised (trio's BrokenResourceError,
    whose ``__cause__`` is the ssl or OS error).
    """
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return "certificate"
    if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLEOFError):
        if str(cause.reason) in _CERTIFICATE_REASONS:
            return "certificate"
        return "protocol"
    return "closed"
