"""Credentials out of URLs and DSNs, for everything a person or a log may read.

PURE. ``SinkUrl`` may carry a password (``postgresql://u:pw@db/alerts``), a token
(``nats://TOKEN@host``, ``?token=``) or a libpq key=value DSN (``password=pw
sslpassword=pw2``). ``--dumpprops``, the rules' ``%SinkUrl``, sink names in log lines and
metrics all show ``redact_credentials(url)``: the same URL with each credential replaced
by ``***``, so an operator still sees which server is meant.
"""

from __future__ import annotations

import re
from typing import Final

MASK: Final = "***"
# scheme://user:password@ or scheme://token@ (userinfo ends at the last @ before the host)
_USERINFO: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#@,\s]*)@")
# ?password=... &sslpassword=... token, access_token, apikey, api_key, secret, key
_QUERY: Final = re.compile(
    r"(?P<key>[?&;](?:password|sslpassword|passwd|pass|token|access_token|auth_token|"
    r"apikey|api_key|secret|client_secret|nkey|jwt)=)(?P<value>[^&#\s]*)",
    re.IGNORECASE,
)
# libpq key=value: password=pw, password='p w', sslpassword = "..."
_DSN: Final = re.compile(
    r"(?P<key>(?<![\w.])(?:password|sslpassword)\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s'\"]+)",
    re.IGNORECASE,
)
# A username alone is no secret, except where the userinfo IS the credential (a token).
_TOKEN_SCHEMES: Final = frozenset({"nats://", "tls://", "ws://", "wss://"})


def _userinfo(m: re.Match[str]) -> str:
    scheme, info = m["scheme"], m["info"]
    if ":" in info:
        user = info.split(":", 1)[0]
        return f"{scheme}{user}:{MASK}@"
    if scheme.lower() in _TOKEN_SCHEMES and info:
        return f"{scheme}{MASK}@"
    return m[0]


def redact_credentials(text: str) -> str:
    """``text`` with every password and token it carries replaced by ``***``."""
    if "://" not in text:  # a libpq key=value DSN
        return _DSN.sub(lambda m: m["key"] + MASK, text)
    text = _USERINFO.sub(_userinfo, text)
    return _QUERY.sub(lambda m: m["key"] + MASK, text)


def has_credentials(text: str) -> bool:
    return redact_credentials(text) != text
