"""Rules sync from the master and the slave's readiness.

``sync_once`` is the whole sync, blocking (the CLI's ``probepair sync`` runs it; a
probe runs it in a worker thread): fetch ``/rules`` from the peer with a signed request,
verify the answer's and the archive's signatures, check the tree is the one the master
runs now (``approve``), compile the tree completely, install it
(``install.install_tree``: file by file, other files untouched). Any failure raises
``RulesSyncError`` and leaves the running tree as it was.

No rollback: a signed archive stays signed forever, so a signature alone would let an
old one (collected from ``/rules`` at any time) be installed again. A probe's pull
approves only the tree whose digest, with the archive's settings digest, gives the
config digest of the master's latest fresh, authenticated heartbeat
(``heartbeat_approval``); ``probepair sync``, which hears no heartbeat, approves only
the tree digest the master's signed ``/status`` reports (``status_approval``).

``Readiness`` runs in a probe of a pair. Every beat period in which the peer was heard
it compares the config digest of the peer's last heartbeat (pair-wide settings and the
rules tree digest together) with ours. Equal means *ready*. Different means
*desynchronised*; the peer's ``/status`` then tells what differs (``settings_digest``,
``rules``), and with ``RulesSync pull`` a standby slave syncs the rules by itself. A
probe in a master role is the source of truth and always ready.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import trio

from probepair.config.pairwide import differences
from probepair.failover import MASTER_ROLES, FailoverMachine, Role
from probepair.failover.wire import config_digest
from probepair.rulesync import fetch as httpget
from probepair.rulesync import netjson
from probepair.rulesync.install import install_tree
from probepair.rulesync.tree import (
    MAX_ARCHIVE,
    ArchiveRefused,
    RulesSyncError,
    RulesTree,
    check_compiles,
    unpack,
)

logger = logging.getLogger(__name__)

FETCH_TIMEOUT: Final = 10.0  # seconds for one /rules or /status request
MAX_STATUS: Final = 1 << 20  # bytes of a peer's /status (a few KiB)
PULL_RETRY: Final = 30.0  # seconds before a failed pull of the same digest is tried again
NOT_HEARD: Final = "master not heard yet"
RULES_FILE: Final = "rules file "  # how ``differences`` names a rules file


def rules_differ(differs: list[str]) -> bool:
    """Readiness's ``differs`` says the rules trees differ (by file or as a whole)."""
    return any(d == "rules" or d.startswith(RULES_FILE) for d in differs)


def peer_url(host: str, port: int, path: str) -> str:
    """``http://host:port/path`` (IPv6 hosts bracketed)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


Approve = Callable[[RulesTree], str | None]  # a fetched tree: why it is refused, or None


def heartbeat_approval(peer_digest: bytes, local_settings: bytes) -> Approve:
    """Approve the tree the master's latest heartbeat announces (``peer_digest``).

    Heartbeats carry one config digest over the pair-wide settings and the rules tree
    digest; the archive states the master's settings digest (an archive without one is
    checked with ``local_settings``, ours).
    """

    def approve(tree: RulesTree) -> str | None:
        try:
            settings = bytes.fromhex(tree.settings) if tree.settings else local_settings
        except ValueError:
            return "its settings digest is not hex"
        if config_digest(settings, tree.digest) == peer_digest:
            return None
        return (
            f"its tree {tree.digest[:12]} is not the one the master's latest heartbeat "
            f"announces (config digest {peer_digest.hex()}): an old or foreign archive"
        )

    return approve


def status_approval(rules_digest: str, status_url: str) -> Approve:
    """Approve the tree whose digest the master's signed ``/status`` reported."""

    def approve(tree: RulesTree) -> str | None:
        if tree.digest == rules_digest:
            return None
        return (
            f"its tree {tree.digest[:12]} is not the one {status_url} reports running "
            f"({rules_digest[:12] or 'none'}): an old or foreign archive"
        )

    return approve


def fetch_peer_rules_digest(status_url: str, secret: bytes, timeout: float = FETCH_TIMEOUT) -> str:
    """The rules digest a peer's signed ``/status`` reports (blocking, for the CLI).

    Raises:
        RulesSyncError: naming ``status_url``: no signed, well-formed answer with a
            rules digest.
    """
    try:
        code, body = httpget.get(status_url, max_bytes=MAX_STATUS, timeout=timeout, secret=secret)
        if code != 200:
            reason = body[:200].decode("utf-8", "replace").strip()
            raise RulesSyncError(status_url, f"HTTP {code}: {reason!r}")
        status = netjson.loads(body, max_bytes=MAX_STATUS)
    except httpget.FetchError as exc:
        raise RulesSyncError(status_url, exc.message) from None
    except netjson.JSONInputError as exc:
        raise RulesSyncError(status_url, f"expected a JSON object: {exc.reason}") from None
    digest = status.get("rules") if isinstance(status, dict) else None
    if not isinstance(digest, str) or not digest:
        raise RulesSyncError(status_url, "reports no rules digest: the master runs no rules tree")
    return digest


def fetch_archive(url: str, timeout: float = FETCH_TIMEOUT, *, secret: bytes = b"") -> bytes:
    """GET a rules archive (blocking), capped and under one deadline (``httpget``).

    Args:
        secret: SharedSecret: the request is signed and the answer must be.

    Raises:
        RulesSyncError: naming ``url``: unreachable, no complete answer in time, an
            error status (with the peer's reason), an answer not signed for this
            request, or more than MAX_ARCHIVE bytes.
    """
    try:
        code, body = httpget.get(url, max_bytes=MAX_ARCHIVE, timeout=timeout, secret=secret)
    except httpget.FetchError as exc:
        raise RulesSyncError(url, exc.message) from None
    if code != 200:
        reason = body[:200].decode("utf-8", "replace").strip()
        raise RulesSyncError(url, f"HTTP {code}: {reason!r}")
    return body


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """What a sync did: the tree now in place, and where the previous one went."""

    digest: str
    changed: bool
    previous: str | None


def sync_once(
    url: str,
    rules_file: str,
    secret: bytes,
    current: RulesTree | None,
    fetch: Callable[[str], bytes] | None = None,
    *,
    approve: Approve,
) -> SyncOutcome:
    """Fetch, verify, compile and install the peer's rules tree (blocking).

    Args:
        fetch: GETs the archive (default: ``fetch_archive``, signed with ``secret``).
        approve: whether the tree is the master's current one (no rollback).

    Raises:
        ArchiveRefused: unsigned, tampered with, malformed, or not approved (an old
            or foreign archive); nothing written.
        RulesSyncError: no RulesFile, fetch, compile or write failed (nothing changed).
    """
    if not rules_file:
        raise RulesSyncError("RulesFile", "is '': there is no rules tree to sync into")
    if not secret:
        raise ArchiveRefused(url, "no SharedSecret is set: rules archives are refused")
    data = fetch(url) if fetch is not None else fetch_archive(url, secret=secret)
    tree = unpack(data, secret, url)
    refusal = approve(tree)
    if refusal is not None:
        raise ArchiveRefused(url, f"archive refused: {refusal}")
    check_compiles(tree, rules_file)
    if current is not None and tree.digest == current.digest:
        return SyncOutcome(tree.digest, False, None)
    previous = install_tree(tree, rules_file, current.files if current is not None else ())
    logger.warning(
        "rules synced from %s: tree %s installed at %s, the previous one kept in %s",
        url,
        tree.digest[:12],
        rules_file,
        previous,
    )
    return SyncOutcome(tree.digest, True, previous)


class Readiness:
    """Keeps ``ready`` and ``differs`` for one probe of a pair; pulls rules if asked.

    Args:
        machine: the probe's failover machine (its peer's digest and role).
        status_url: the peer's ``/status`` URL ('' when unknown: MetricsPort 0), or
            what gives it when asked (where the peer's heartbeats come from).
        rules_url: the peer's ``/rules`` URL, or what gives it.
        local: our own ``rules`` and ``settings_digest`` as ``/status`` shows them.
        pull: RulesSync is ``pull``: sync when the rules differ (standby slave only).
        do_pull: runs the sync, blocking (``sync_once``); called in a worker thread
            with the rules URL and the approval of the master's latest heartbeat.
        reload: reloads the rules once a pull installed them; False: the reload failed.
        on_change: called with (ready, differs) when either changes.
        count: called with "success", "refused" or "failure" after each pull.
        secret: SharedSecret, to sign ``/status`` requests (and check the answers).
        settings: our pair-wide settings digest (for archives that state none).
    """

    def __init__(
        self,
        machine: FailoverMachine,
        status_url: str | Callable[[], str],
        rules_url: str | Callable[[], str],
        local: Callable[[], dict[str, Any]],
        pull: bool,
        do_pull: Callable[[str, Approve], Any],
        reload: Callable[[], bool],
        on_change: Callable[[bool, list[str]], None],
        count: Callable[[str], None],
        *,
        secret: bytes = b"",
        settings: bytes = b"",
    ) -> None:
        self.machine = machine
        self._status_url = status_url
        self._rules_url = rules_url
        self._local = local
        self.pull = pull
        self._do_pull = do_pull
        self._reload = reload
        self._on_change = on_change
        self._count = count
        self._secret = secret
        self._settings = settings
        self.ready: bool | None = None  # None: not decided yet
        self.differs: list[str] = [NOT_HEARD]
        self._failed: tuple[str, float] = ("", -math.inf)  # peer digest, when a pull failed

    @property
    def status_url(self) -> str:
        url = self._status_url
        return url if isinstance(url, str) else url()

    @property
    def rules_url(self) -> str:
        url = self._rules_url
        return url if isinstance(url, str) else url()

    def _set(self, ready: bool, differs: list[str]) -> None:
        if ready != self.ready or differs != self.differs:
            self.ready, self.differs = ready, differs
            self._on_change(ready, differs)

    async def run(self) -> NoReturn:
        """Check once per beat period until cancelled."""
        while True:
            await trio.sleep(self.machine.beat_interval)  # the master is heard within one
            await self.check()

    async def check(self) -> None:
        m = self.machine
        if m.role in MASTER_ROLES:
            self._set(True, [])
            return
        heard = m.peer_last_heard
        if heard is None:
            self._set(False, [NOT_HEARD])
            return
        if trio.current_time() - heard > 2 * m.beat_interval or m.peer_role is None:
            return  # the master is silent: keep the last verdict
        if not m.config_drift:
            self._set(True, [])
            return
        differs, peer_rules = await self._what_differs()
        if peer_rules is None and self.ready is False and self.differs != [NOT_HEARD]:
            return  # the peer's /status is silent (it may have just died): keep what it said
        if (
            rules_differ(differs)
            and self.pull
            and m.role is Role.SLAVE_STANDBY
            and m.peer_role in MASTER_ROLES
            and peer_rules is not None
            and self._may_retry(peer_rules)
        ) and await self._pull(peer_rules):
            differs = [d for d in differs if not rules_differ([d])]
            if not m.config_drift:
                differs = []
        self._set(not differs, differs)

    def _may_retry(self, peer_rules: str) -> bool:
        digest, at = self._failed
        return peer_rules != digest or trio.current_time() - at >= PULL_RETRY

    async def _pull(self, peer_rules: str) -> bool:
        # The master's latest fresh, authenticated heartbeat (check() saw it within two
        # beat periods) says which tree it runs; nothing else is installed.
        approve = heartbeat_approval(self.machine.peer_config_digest, self._settings)
        try:
            await trio.to_thread.run_sync(self._do_pull, self.rules_url, approve)
        except ArchiveRefused as exc:
            self._count("refused")
            logger.error("rules sync refused the master's archive: %s", exc)
        except RulesSyncError as exc:
            self._count("failure")
            logger.error("rules sync failed, keeping the running rules: %s", exc)
        else:
            if self._reload():
                self._count("success")
                self._failed = ("", -math.inf)
                return True
            self._count("failure")
        self._failed = (peer_rules, trio.current_time())
        return False

    async def _what_differs(self) -> tuple[list[str], str | None]:
        """What the peer's /status says differs (the heartbeat said something does), and
        the rules digest it reports (None: no answer)."""
        if not self.status_url:
            return ["config or rules (the peer's /status is unknown: MetricsPort is 0)"], None
        peer: object = None
        try:
            with trio.fail_after(FETCH_TIMEOUT):
                code, body = await httpget.aget(
                    self.status_url, max_bytes=MAX_STATUS, secret=self._secret
                )
            if code == 200:
                peer = netjson.loads(body, max_bytes=MAX_STATUS)
        except trio.TooSlowError:
            logger.info("peer status %s: no answer within %g s", self.status_url, FETCH_TIMEOUT)
        except (httpget.FetchError, netjson.JSONInputError) as exc:
            logger.info("peer status %s: %s", self.status_url, exc)
        if not isinstance(peer, dict):
            return [f"config or rules ({self.status_url} does not answer)"], None
        local = self._local()
        differs = [
            what
            for what, key in (("config", "settings_digest"), ("rules", "rules"))
            if peer.get(key) != local.get(key)
        ]
        if not differs:  # a stale answer, or PeerMetricsPort points elsewhere
            differs = [f"config or rules ({self.status_url} shows no difference)"]
        # By name where both sides tell (the property with both values, the rules file);
        # a coarse word for what a peer of an older version does not show.
        named = differences(local, peer, "here", "on the master")
        rules_named = any(d.startswith(RULES_FILE) for d in named)
        config_named = any(not d.startswith(RULES_FILE) for d in named)
        shown = list(named)
        if "config" in differs and not config_named:
            shown.insert(0, "config")
        if "rules" in differs and not rules_named:
            shown.append("rules")
        return shown or differs, str(peer.get("rules", ""))
