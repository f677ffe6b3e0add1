"""The rules tree (RulesFile, its includes and lookup tables) as one signed archive.

The active master is the pair's source of truth for its rules. Its tree travels as
one archive, served at ``/rules`` on the metrics endpoint and installed by ``probepair
sync`` (or by ``RulesSync pull``) on the slave:

    probepair-rules 1\\n <64 hex digits: HMAC-SHA256(SharedSecret, first line + body)>\\n <body>

The body is JSON: ``{"main": NAME, "digest": HEX, "settings": HEX, "files": {PATH:
BASE64}}``, paths relative to the directory of RulesFile (``/`` separated, never
absolute, never ``..``); ``settings`` is the serving probe's pair-wide settings digest,
so a slave can check the archive against the config digest of the master's heartbeats
(``pull.heartbeat_approval``: no rollback to an older signed archive). A file that is a
symbolic link resolving outside the RulesFile directory is never served. Without a
SharedSecret nothing is served or accepted.

The *tree digest* (``RulesTree.digest``) covers the contents and relative paths, the
main file by role rather than name, so two probes whose rules live in different
directories (or whose RulesFile is named differently) have the same digest exactly when
they run the same rules. ``probepair status`` shows it and heartbeats carry it (inside
the config digest), which is what readiness compares.

Installing (``install``) replaces the tree's files one by one, each atomically, and
never any other file of the directory (OMNIbus keeps props, log and spool beside the
rules); a journal and a manifest make a crash mid-way recoverable.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import orjson

from probepair.errors import ProbepairError, RulesError
from probepair.rules.compiler import Program, compile_rules

logger = logging.getLogger(__name__)

MAGIC: Final = b"probepair-rules 1\n"
MAX_ARCHIVE: Final = 64 * 2**20  # bytes: a rules tree with its tables is far smaller
_MAC_HEX: Final = 64


class RulesSyncError(ProbepairError):
    """A rules sync failed (fetch, compile or write); the running rules stay.

    Args:
        where: the URL, archive or path concerned.
        message: what went wrong.
    """

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


class ArchiveRefused(RulesSyncError):
    """The archive is unsigned, tampered with, or not a rules archive: nothing used."""


@dataclass(frozen=True, slots=True)
class RulesTree:
    """A rules tree in memory: ``files`` maps relative paths to bytes, ``main`` included.

    ``settings``: the pair-wide settings digest (hex) an archive states ('' if none);
    ``outside``: files read through a symbolic link that leaves the tree (never served).
    Neither counts in ``digest`` or in equality.
    """

    main: str
    files: dict[str, bytes]
    settings: str = field(default="", compare=False)
    outside: tuple[str, ...] = field(default=(), compare=False)

    @property
    def digest(self) -> str:
        """SHA-256 over relative paths and contents; the main file counts by role."""
        h = hashlib.sha256(b"probepair rules tree 1\0")
        for name in sorted(self.files, key=lambda n: (n != self.main, n)):
            data = self.files[name]
            label = b"" if name == self.main else name.encode("utf-8", "surrogateescape")
            h.update(label + b"\0" + len(data).to_bytes(8, "big") + data)
        return h.hexdigest()


def read_tree(rules_file: str, included: Iterable[str]) -> RulesTree:
    """The tree on disk: ``rules_file`` and the files it includes or reads as tables.

    Paths are made relative to the directory of ``rules_file``; one outside it keeps
    its ``..`` path (the digest still counts it; ``pack`` refuses it), and so does a
    file whose symbolic links resolve outside the directory (listed in ``outside``).

    Raises:
        OSError: a file cannot be read.
    """
    root = os.path.dirname(os.path.abspath(rules_file))
    real_root = os.path.realpath(root)
    main = os.path.basename(rules_file)
    files: dict[str, bytes] = {}
    outside: list[str] = []
    for path in (rules_file, *included):
        rel = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
        if rel not in files:
            with open(path, "rb") as f:
                files[rel] = f.read()
            real = os.path.realpath(path)
            if os.path.commonpath((real_root, real)) != real_root:
                outside.append(rel)
    return RulesTree(main, files, outside=tuple(outside))


def _body_mac(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, MAGIC + body, hashlib.sha256).hexdigest()


def pack(tree: RulesTree, secret: bytes, settings: str = "") -> bytes:
    """The signed archive of ``tree``, stating ``settings`` (the settings digest, hex).

    Raises:
        RulesSyncError: no secret, or a file lies outside the RulesFile directory (by
            its path or through a symbolic link).
    """
    if not secret:
        raise RulesSyncError("/rules", "no SharedSecret is set: rules archives are refused")
    if tree.outside:
        raise RulesSyncError(
            "/rules",
            f"{tree.outside[0]!r} is a symbolic link out of the RulesFile directory: "
            "refused (copy the file into the tree)",
        )
    outside = [name for name in tree.files if not safe_path(name)]
    if outside:
        raise RulesSyncError(
            "/rules",
            f"{outside[0]!r} lies outside the RulesFile directory: a synced tree must live "
            "under it",
        )
    body = orjson.dumps(
        {
            "main": tree.main,
            "digest": tree.digest,
            "settings": settings,
            "files": {n: base64.b64encode(d).decode() for n, d in sorted(tree.files.items())},
        }
    )
    return MAGIC + _body_mac(secret, body).encode() + b"\n" + body


def safe_path(name: str) -> bool:
    """A relative ``/`` path inside the tree: no ``..``, no absolute or empty parts."""
    parts = name.split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and "\\" not in name
        and "\0" not in name
        and all(p not in ("", ".", "..") for p in parts)
    )


def unpack(data: bytes, secret: bytes, where: str = "archive") -> RulesTree:
    """Verify and read a rules archive.

    Raises:
        ArchiveRefused: no secret here, not a rules archive, a signature that does not
            match (tampered, or signed with another secret), or a malformed body.
    """
    if not secret:
        raise ArchiveRefused(where, "no SharedSecret is set: rules archives are refused")
    if not data.startswith(MAGIC):
        raise ArchiveRefused(where, "not a probepair rules archive (unsigned or another format)")
    line, sep, body = data[len(MAGIC) :].partition(b"\n")
    if not sep or len(line) != _MAC_HEX:
        raise ArchiveRefused(where, "no signature line: unsigned archive refused")
    # bytes against bytes: compare_digest refuses str with non-ASCII (a TypeError).
    if not hmac.compare_digest(line, _body_mac(secret, body).encode()):
        raise ArchiveRefused(
            where, "signature does not match: tampered with, or signed with another secret"
        )
    try:
        doc = orjson.loads(body)
        main, digest, raw = doc["main"], doc["digest"], doc["files"]
        settings = doc.get("settings", "")
        if not (
            isinstance(main, str)
            and isinstance(digest, str)
            and isinstance(raw, dict)
            and isinstance(settings, str)
            and len(settings) <= 64
        ):
            raise TypeError
        files = {str(n): base64.b64decode(v, validate=True) for n, v in raw.items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error, ValueError):
        raise ArchiveRefused(where, "signed, but its body is malformed") from None
    bad = [n for n in files if not safe_path(n)]
    if bad or main not in files or "/" in main:
        shown = (bad or [main])[0]
        raise ArchiveRefused(where, f"unsafe or missing path in the archive: {shown!r}")
    tree = RulesTree(main, files, settings=settings)
    if tree.digest != digest:
        raise ArchiveRefused(where, "the contents do not match the digest the archive states")
    return tree


def placed(tree: RulesTree, rules_file: str) -> RulesTree:
    """``tree`` with its main file named as this probe's RulesFile.

    Raises:
        RulesSyncError: another file of the tree has that name.
    """
    name = os.path.basename(rules_file)
    if name != tree.main and name in tree.files:
        raise RulesSyncError(
            rules_file, f"the master's tree has its own {name!r}, which would replace RulesFile"
        )
    files = {(name if n == tree.main else n): d for n, d in tree.files.items()}
    return RulesTree(name, files)


def compile_tree(tree: RulesTree, rules_file: str) -> Program:
    """Compile ``tree`` from memory as if installed at ``rules_file`` (nothing written).

    Raises:
        RulesError: the tree does not compile (or includes a file it does not carry).
    """
    root = os.path.dirname(os.path.abspath(rules_file))
    tree = placed(tree, rules_file)

    def read(path: str) -> str:
        rel = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
        if rel not in tree.files:
            raise FileNotFoundError(errno.ENOENT, "not in the synced tree", path)
        return tree.files[rel].decode("utf-8", errors="replace")

    main = tree.files[tree.main].decode("utf-8", errors="replace")
    return compile_rules(main, source=os.path.join(root, tree.main), base_dir=root, read=read)


def check_compiles(tree: RulesTree, rules_file: str) -> Program:
    """``compile_tree``, its errors as a RulesSyncError that keeps the location."""
    try:
        return compile_tree(tree, rules_file)
    except RulesError as exc:
        raise RulesSyncError(rules_file, f"the master's rules do not compile here: {exc}") from None
