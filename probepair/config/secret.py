"""The pair's shared secret: where it comes from, and when it is too weak to start with.

Every heartbeat and ack is signed with HMAC-SHA256 over the secret (wire.py), so whoever
knows it can make the active probe step down or make the standby drop events as acked.
A probe in Mode master or slave therefore refuses to start (exit 2) with a secret that
is empty, shorter than ``MIN_SECRET_BYTES``, or a placeholder such as the one a README or
an example file prints, unless ``AllowInsecureHeartbeats: true`` says the operator knows;
then it warns at every start.

The secret comes from ``SharedSecretFile`` (preferred: the props file stays 0644, the
secret lives in a 0600 file or a systemd credential) or from ``SharedSecret`` inline. A
secret file group or others may access is refused, as ssh refuses such a private key
(POSIX ACLs included: see ``others_may_access``).

Nothing here puts the secret into a message: errors say how long it is and which rule it
breaks, never what it is.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import secrets
import stat
import struct
from collections.abc import Mapping
from typing import Final

from probepair.config.props import Props
from probepair.errors import ConfigError

logger = logging.getLogger(__name__)

# HMAC-SHA256 keys shorter than the 32-byte hash output weaken the MAC (RFC 2104 section 3:
# "less than L bytes is strongly discouraged"); 32 bytes is also what `probepair secret`'s
# 64 hex characters exceed twice over.
MIN_SECRET_BYTES: Final = 32
NEW_SECRET_BYTES: Final = 32  # random bytes in `probepair secret` (64 hex characters)
FILE_MODE_FORBIDDEN: Final = 0o077  # no bit for group or others, as ssh wants of a private key
# POSIX ACL xattr (linux/posix_acl_xattr.h): a u32 version, then (u16 tag, u16 perm, u32 id).
_ACL_XATTR: Final = "system.posix_acl_access"
_ACL_HEADER: Final = struct.Struct("<I")
_ACL_ENTRY: Final = struct.Struct("<HHI")
_ACL_USER: Final = 0x02
_ACL_GROUP_OBJ: Final = 0x04
_ACL_GROUP: Final = 0x08
_ACL_MASK: Final = 0x10
_ACL_OTHER: Final = 0x20
MAX_SECRET_FILE: Final = 4096  # bytes read from SharedSecretFile: a secret is one short line
# Placeholders: found anywhere in the value (any case) ...
PLACEHOLDER_PARTS: Final = ("change-me", "changeme", "change_me", "change me")
# ... or as the whole value (any case, spaces around ignored).
PLACEHOLDER_WORDS: Final = frozenset(
    {"secret", "password", "passwd", "changeit", "example", "test", "default", "<redacted>"}
)
HINT: Final = (
    "put the output of 'probepair secret' in a SharedSecretFile (the same on both probes), "
    "or set AllowInsecureHeartbeats: true to start anyway"
)


def new_secret() -> str:
    """A fresh random secret for a pair: 64 hex characters (``secrets.token_hex(32)``)."""
    return secrets.token_hex(NEW_SECRET_BYTES)


def write_secret_file(path: str, secret: str) -> None:
    """Write ``secret`` and a line break to ``path``, created (or truncated) with mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
        file.write(secret + "\n")


def weakness(secret: str) -> str | None:
    """Why ``secret`` may not sign a pair's heartbeats, or None when it may.

    The answer never contains the secret: it is a phrase to follow "expected a random
    secret of at least 32 bytes, got ...".
    """
    if not secret:
        return "none"
    folded = secret.strip().lower()
    for part in PLACEHOLDER_PARTS:
        if part in folded:
            return f"a placeholder (it contains {part.upper()!r})"
    if folded in PLACEHOLDER_WORDS:
        return "a placeholder (a well-known word)"
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        return f"{size} byte{'s' if size != 1 else ''}"
    if secret in (secret + secret)[1:-1]:  # "aaaa...", "abcabc...": a short pattern repeated
        return "a short pattern repeated"
    return None


# Files that hold a credential, by property: the mode bits nobody may have besides the
# owner, which must be the probe's user or root. SinkPasswordFile may be read by the
# service group (one password file for the probe and, say, a backup job: mode 0640).
SECRET_FILES: Final = {
    "SharedSecretFile": FILE_MODE_FORBIDDEN,
    "SinkPasswordFile": 0o037,
    "SinkCredentialsFile": FILE_MODE_FORBIDDEN,
    "MetricsTokenFile": FILE_MODE_FORBIDDEN,
    "FeedTLSKey": 0o037,  # as /etc/ssl/private keys: the ssl-cert group may read
}


def _refuse_access(
    st: os.stat_result, acl: bytes | None, path: str, name: str, source: str
) -> None:
    """ConfigError naming ``path`` unless its owner and mode suit a ``name`` file."""
    uid = os.geteuid()
    if st.st_uid not in (uid, 0):
        raise ConfigError(
            source,
            name,
            f"{path!r} belongs to uid {st.st_uid}, expected the probe's user (uid {uid}) or "
            f"root: chown {uid} {path}",
        )
    mode = stat.S_IMODE(st.st_mode)
    forbidden = SECRET_FILES.get(name, FILE_MODE_FORBIDDEN)
    if forbidden == FILE_MODE_FORBIDDEN:
        refused = others_may_access(mode, acl, uid)
        expected, fix = "0600 or stricter (no access for group or others)", "600"
    else:
        refused = bool(mode & forbidden)
        expected, fix = "0640 or stricter (the group may read, nothing more)", "640"
    if refused:
        raise ConfigError(
            source,
            name,
            f"{path!r} has mode {mode:04o}{' and an ACL' if acl else ''}, expected "
            f"{expected}: chmod {fix} {path}",
        )


def read_private_file(path: str, name: str, source: str) -> str:
    """The text in credential file ``path`` (property ``name``), stripped.

    Args:
        path: the file.
        name: its property (``SECRET_FILES``): errors name it, and it sets the mode
            allowed.
        source: where the property was set (a props file, or "command line").

    Raises:
        ConfigError: the file cannot be read, is not a regular file, belongs to another
            user than the probe's or root, group or others may access it (naming its
            mode), it is longer than ``MAX_SECRET_FILE`` or not UTF-8 text. The
            message never quotes the file's content.
    """
    try:
        # O_NONBLOCK: a FIFO at the path must not hang the start (it is refused below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise ConfigError(source, name, f"cannot read {path!r}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)  # the file we opened, not whatever the path names by now
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(source, name, f"{path!r} is not a regular file")
        _refuse_access(st, _access_acl(fd), path, name, source)
        data = b""
        while len(data) <= MAX_SECRET_FILE and (chunk := os.read(fd, MAX_SECRET_FILE + 1)):
            data += chunk
    except OSError as exc:
        raise ConfigError(source, name, f"cannot read {path!r}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_FILE:
        raise ConfigError(
            source, name, f"{path!r} is longer than {MAX_SECRET_FILE} bytes, expected one line"
        )
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(
            source,
            name,
            f"{path!r} is not UTF-8 text, expected one line such as 'probepair secret' prints",
        ) from None


def read_secret_file(path: str, source: str) -> str:
    """The secret in ``path``, without the line break and spaces around it.

    Args:
        path: the SharedSecretFile.
        source: where SharedSecretFile was set (a props file, or "command line"), for errors.

    Raises:
        ConfigError: as ``read_private_file``.
    """
    return read_private_file(path, "SharedSecretFile", source)


def check_secret_files(props: Props, origins: Mapping[str, str]) -> None:
    """Refuse to start with a credential file of the wrong owner or mode.

    Checks every set property of ``SECRET_FILES`` but SharedSecretFile (``load_secret``
    reads and checks that one). The .creds file is not read here (nats reads it); a
    missing one is the sink's error.

    Raises:
        ConfigError: naming the property's source, the property and the file.
    """
    for name in SECRET_FILES:
        path = getattr(props, name)
        if name == "SharedSecretFile" or not path:
            continue
        source = origins.get(name, "defaults")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue  # the component that uses it says so, naming it
        except OSError as exc:
            raise ConfigError(source, name, f"cannot read {path!r}: {exc.strerror}") from None
        try:
            acl = os.getxattr(path, _ACL_XATTR)
        except OSError:
            acl = None
        _refuse_access(st, acl, path, name, source)


def read_metrics_token(props: Props, origins: Mapping[str, str] | None = None) -> bytes:
    """The bearer token of ``MetricsAuth: bearer`` (b"" for none).

    Raises:
        ConfigError: an unusable MetricsTokenFile (``read_private_file``), or an empty one.
    """
    if props.MetricsAuth != "bearer":
        return b""
    source = (origins or {}).get("MetricsTokenFile", "props")
    token = read_private_file(props.MetricsTokenFile, "MetricsTokenFile", source)
    if not token:
        raise ConfigError(
            source, "MetricsTokenFile", f"{props.MetricsTokenFile!r} is empty, expected a token"
        )
    return token.encode()


def others_may_access(mode: int, acl: bytes | None, uid: int) -> bool:
    """Whether anyone but the file's owner (and ``uid``, the reader) may access it.

    Without an ACL that is any group or other bit of ``mode``. With one, the group bits
    of ``mode`` are the ACL's mask, not the owning group's access: systemd's
    ``LoadCredential=`` hands the service a 0400 root-owned file plus an ACL entry that
    lets the service's user read it, which shows as mode 0440. So with an ACL: the
    owning group, named groups and named users other than ``uid`` (each through the
    mask), and others, must have no access.

    Args:
        mode: ``st_mode`` of the file.
        acl: the ``system.posix_acl_access`` xattr, or None when the file has none.
        uid: the reader's effective uid.
    """
    if acl is None or len(acl) < _ACL_HEADER.size:
        return bool(mode & FILE_MODE_FORBIDDEN)
    entries = [
        _ACL_ENTRY.unpack_from(acl, offset)
        for offset in range(_ACL_HEADER.size, len(acl) - _ACL_ENTRY.size + 1, _ACL_ENTRY.size)
    ]
    mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), 0o7)
    for tag, perm, ident in entries:
        if tag == _ACL_OTHER and perm:
            return True
        if tag in (_ACL_GROUP_OBJ, _ACL_GROUP) and perm & mask:
            return True
        if tag == _ACL_USER and ident != uid and perm & mask:
            return True
    return False


def _access_acl(fd: int) -> bytes | None:
    try:
        return os.getxattr(fd, _ACL_XATTR)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise


def load_secret(props: Props, origins: Mapping[str, str]) -> Props:
    """``props`` with ``SharedSecret`` set to the secret the pair will sign with.

    Reads ``SharedSecretFile`` when it is set. In Mode master or slave, refuses a weak
    secret unless ``AllowInsecureHeartbeats`` is true; with it, logs a warning (at every
    start, so it is never forgotten). Mode standard signs nothing: nothing is checked.

    Args:
        props: the loaded properties.
        origins: which source set each property (``props.origins``); errors name it.

    Raises:
        ConfigError: one line naming the props file (or "command line") and the property:
            both SharedSecret and SharedSecretFile set, an unusable secret file, or a
            weak secret without AllowInsecureHeartbeats.
    """
    if props.Mode == "standard":
        return props
    name = "SharedSecret"
    secret = props.SharedSecret
    where = ""
    if props.SharedSecretFile:
        if props.SharedSecret:
            raise ConfigError(
                origins.get("SharedSecretFile", "defaults"),
                "SharedSecretFile",
                f"SharedSecret is set too (in {origins.get('SharedSecret', 'defaults')}); "
                "keep only one",
            )
        name = "SharedSecretFile"
        where = f" in {props.SharedSecretFile!r}"
        secret = read_secret_file(props.SharedSecretFile, origins.get(name, "defaults"))
    problem = weakness(secret)
    if problem is not None and not props.AllowInsecureHeartbeats:
        source = origins.get(name) or origins.get("Mode", "defaults")
        raise ConfigError(
            source,
            name,
            f"Mode {props.Mode!r} signs heartbeats with it: expected a random secret of at "
            f"least {MIN_SECRET_BYTES} bytes{where}, got {problem}; {HINT}",
        )
    if props.AllowInsecureHeartbeats:
        if problem is None:
            logger.warning(
                "AllowInsecureHeartbeats is true: an empty, short or placeholder secret would "
                "not be refused; remove it once both probes have a SharedSecretFile"
            )
        else:
            logger.warning(
                "AllowInsecureHeartbeats is true and the secret%s is %s: anyone who can send "
                "to this probe's heartbeat port can forge heartbeats and acks",
                where,
                "empty" if not secret else f"weak ({problem})",
            )
    return dataclasses.replace(props, SharedSecret=secret)
