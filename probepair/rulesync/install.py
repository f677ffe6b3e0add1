"""Installing a synced rules tree file by file, in a directory it may share with others.

OMNIbus keeps ``syslog.props``, ``syslog.rules``, its includes, the log and the spool
side by side in ``$OMNIHOME/probes/<arch>/``, and probes of several kinds share that
directory. So an install replaces the files of the rules tree only, each atomically
(a temporary file in the same directory, fsync, ``os.replace``), and never touches
another file: a file of the new tree that would overwrite one that is not part of the
running tree is refused.

For a RulesFile ``DIR/NAME`` two sibling directories of ``DIR`` hold the rest:

- ``DIR.prev/``: each file as it was before the latest sync that replaced or removed
  it, at the same relative path (so ``DIR.prev/NAME`` loads the previous tree);
- ``.DIR.probepair-sync/``: ``NAME.new/`` (the new tree, staged and fsynced),
  ``NAME.journal`` (the install in progress), ``NAME.manifest`` (the tree installed
  last: paths and hashes) and ``NAME.lock`` (one install or recovery at a time: a
  ``probepair sync`` beside a probe's pull).

Order, so that a crash at any point leaves a state ``recover`` can finish or undo:
stage the new tree, copy the old tree's files to ``DIR.prev``, write the journal
(the new files with their hashes, the old tree's files to remove, what each touched
path held before), replace the includes and tables, then RulesFile itself (the
probe's RulesFile watcher reloads once everything it includes is in place), remove
the old tree's files the new one dropped, fsync the directories, write the manifest
last. A journal without a matching manifest is an unfinished install: ``recover``
finishes it when every staged file still has its hash, or puts every touched path
back from ``DIR.prev`` otherwise. Either way the tree is the old one or the new one,
never a mix.

The old tree is what the running RulesFile includes and reads as tables, plus the
files of the last manifest that still hold what it recorded (a file edited since is
the user's, and stays). Directories an install created stay when it removes files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

import orjson

from probepair.rulesync.tree import RulesSyncError, RulesTree, placed, safe_path

logger = logging.getLogger(__name__)

STATE_SUFFIX: Final = ".probepair-sync"  # .DIR.probepair-sync beside the RulesFile directory
_TMP_SUFFIX: Final = ".probepair-new"  # .NAME.probepair-new beside each file being replaced
_FORMAT: Final = 1

# What a path holds, as the journal and the manifest record it: "sha256:HEX" for a
# regular file, "link:TARGET" for a symbolic link (kept as a link, never followed),
# None for nothing.
Entry = str | None


@dataclass(frozen=True, slots=True)
class Places:
    """Where the tree of one RulesFile lives, and its install state beside it."""

    root: str
    main: str
    prev: str
    state: str

    @property
    def journal(self) -> str:
        return os.path.join(self.state, self.main + ".journal")

    @property
    def manifest(self) -> str:
        return os.path.join(self.state, self.main + ".manifest")

    @property
    def staged(self) -> str:
        return os.path.join(self.state, self.main + ".new")

    @property
    def lock(self) -> str:
        return os.path.join(self.state, self.main + ".lock")


@contextlib.contextmanager
def _locked(places: Places) -> Iterator[None]:
    """One install or recovery of a tree at a time (``probepair sync`` beside a pull)."""
    os.makedirs(places.state, exist_ok=True)
    fd = os.open(places.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def places_of(rules_file: str) -> Places:
    """The directories an install of ``rules_file``'s tree uses."""
    root = os.path.dirname(os.path.abspath(rules_file))
    parent, name = os.path.split(root)
    return Places(
        root,
        os.path.basename(rules_file),
        root + ".prev",
        os.path.join(parent, f".{name}{STATE_SUFFIX}"),
    )


def _hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _path(base: str, rel: str) -> str:
    """``base/rel``, refused when a directory on the way leads out of ``base``."""
    parts = rel.split("/")
    path = os.path.join(base, *parts)
    real_base = os.path.realpath(base)
    real_parent = os.path.realpath(os.path.dirname(path))
    if os.path.commonpath((real_base, real_parent)) != real_base:
        raise RulesSyncError(path, f"{rel!r} leads out of {base} through a symbolic link: refused")
    return path


def _read(path: str) -> bytes | None:
    """The bytes of a regular file (None: absent); a symbolic link is never followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with open(fd, "rb") as f:
        return f.read()


def _entry(path: str) -> tuple[Entry, bytes | None]:
    """What ``path`` holds, and its bytes when it is a regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, None
    if stat.S_ISLNK(st.st_mode):
        return "link:" + os.readlink(path), None
    if not stat.S_ISREG(st.st_mode):
        raise RulesSyncError(path, "is not a regular file: the rules tree cannot replace it")
    data = _read(path)
    return (None, None) if data is None else (_hash(data), data)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_of(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, "." + name + _TMP_SUFFIX)


def _put(path: str, data: bytes | None = None, *, link: str | None = None) -> None:
    """Replace ``path`` atomically by ``data`` (or a symbolic link to ``link``)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = _tmp_of(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    if link is not None:
        os.symlink(link, tmp)
    else:
        try:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
        except FileNotFoundError:
            mode = 0o666  # less the umask, as any new file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with open(fd, "wb") as f:
            f.write(data or b"")
            f.flush()
            os.fsync(f.fileno())
        if mode != 0o666:
            os.chmod(tmp, mode)
    os.replace(tmp, path)


def _put_entry(path: str, entry: str, data: bytes | None) -> None:
    if entry.startswith("link:"):
        _put(path, link=entry[len("link:") :])
    else:
        _put(path, data)


def _load(path: str) -> dict[str, object] | None:
    """A journal or manifest (None: absent); unreadable or malformed is an error."""
    try:
        raw = _read(path)
        doc = None if raw is None else orjson.loads(raw)
    except (OSError, orjson.JSONDecodeError) as exc:
        raise RulesSyncError(path, f"cannot read the rules install state: {exc}") from None
    if doc is None:
        return None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise RulesSyncError(path, "not a rules install state of this version: remove it")
    return doc


def _entries(doc: dict[str, object], key: str, where: str) -> dict[str, Entry]:
    value = doc.get(key)
    if not (
        isinstance(value, dict)
        and all(isinstance(k, str) and safe_path(k) for k in value)
        and all(v is None or isinstance(v, str) for v in value.values())
    ):
        raise RulesSyncError(where, f"malformed rules install state ({key!r}): remove it")
    return dict(value)


def _write(path: str, doc: dict[str, object]) -> None:
    _put(path, orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
    _fsync_dir(os.path.dirname(path))


@dataclass(frozen=True, slots=True)
class Journal:
    """One install: the new tree's files, the old ones to remove, what each path held."""

    digest: str
    files: dict[str, Entry]
    remove: list[str]
    old: dict[str, Entry]
    mark: str  # a fresh token, repeated in the manifest that completes this install

    def to_doc(self) -> dict[str, object]:
        return {
            "format": _FORMAT,
            "digest": self.digest,
            "files": self.files,
            "remove": {rel: self.old[rel] for rel in self.remove},
            "old": self.old,
            "mark": self.mark,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, object], where: str) -> Journal:
        digest = doc.get("digest")
        files, remove = _entries(doc, "files", where), _entries(doc, "remove", where)
        old, mark = _entries(doc, "old", where), doc.get("mark")
        if not (
            isinstance(digest, str)
            and isinstance(mark, str)
            and set(files) | set(remove) <= set(old)
        ):
            raise RulesSyncError(where, "malformed rules install state: remove it")
        return cls(digest, files, sorted(remove), old, mark)


def _old_tree(places: Places, current: Iterable[str]) -> set[str]:
    """The running tree's paths, and the last manifest's files still as installed."""
    old = {rel for rel in current if safe_path(rel)} | {places.main}
    manifest = _load(places.manifest)
    if manifest is not None:
        for rel, entry in _entries(manifest, "files", places.manifest).items():
            try:
                if rel not in old and entry and _entry(_path(places.root, rel))[0] == entry:
                    old.add(rel)
            except RulesSyncError:
                continue  # a directory now, or out of the tree: not the file installed

    return old


def _replace_order(files: Iterable[str], main: str) -> list[str]:
    """Includes and tables first, RulesFile last: what it includes is there when it changes."""
    return sorted(files, key=lambda rel: (rel == main, rel))


def _roll_forward(journal: Journal, data: dict[str, bytes], places: Places) -> None:
    touched: set[str] = set()
    for rel in _replace_order(journal.files, places.main):
        path = _path(places.root, rel)
        if _entry(path)[0] != journal.files[rel]:
            _put(path, data[rel])
        touched.add(os.path.dirname(path))
    for rel in journal.remove:
        path = _path(places.root, rel)
        if _entry(path)[0] == journal.old[rel]:
            os.unlink(path)
        touched.add(os.path.dirname(path))
    for directory in sorted(touched):
        _fsync_dir(directory)
    _write(
        places.manifest,
        {
            "format": _FORMAT,
            "digest": journal.digest,
            "files": journal.files,
            "journal": journal.mark,
        },
    )
    _clean(places)


def _roll_back(journal: Journal, places: Places) -> None:
    """Put back what each touched path held (from ``DIR.prev``), then drop the journal."""
    undo: list[tuple[str, Entry, bytes | None]] = []  # path, what it held, its bytes
    for rel in sorted(set(journal.files) | set(journal.remove)):
        path = _path(places.root, rel)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_tmp_of(path))
        entry, want = _entry(path)[0], journal.old[rel]
        if entry == want or (want is None and entry != journal.files.get(rel)):
            continue  # as it was; or not ours to remove
        data = None
        if want is not None and want.startswith("sha256:"):
            data = _read(_path(places.prev, rel))
            if data is None or _hash(data) != want:
                raise RulesSyncError(
                    _path(places.prev, rel),
                    "the copy of the previous file is missing or changed: cannot roll back "
                    f"the unfinished rules install ({places.journal})",
                )
        undo.append((path, want, data))
    for path, want, data in undo:  # every copy checked before the first change
        if want is None:
            os.unlink(path)
        else:
            _put_entry(path, want, data)
    for directory in sorted({os.path.dirname(path) for path, _w, _d in undo}):
        _fsync_dir(directory)
    _clean(places)


def _clean(places: Places) -> None:
    """The install is over (the manifest is written, or it was undone): drop its state."""
    shutil.rmtree(places.staged, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(places.journal)
    _fsync_dir(places.state)


def _staged(journal: Journal, places: Places) -> dict[str, bytes] | None:
    """The staged new files, when every one of them still has its journal hash."""
    data: dict[str, bytes] = {}
    for rel, entry in journal.files.items():
        path = _path(places.staged, rel)
        if entry is not None and entry.startswith("link:"):
            return None  # the new tree is files only
        raw = _read(path)
        if raw is None or _hash(raw) != entry:
            return None
        data[rel] = raw
    return data


def recover(rules_file: str) -> str | None:
    """Finish or undo an install of ``rules_file``'s tree that did not complete.

    Returns:
        What was done (it is logged too), or None: no unfinished install.

    Raises:
        RulesSyncError: the install state is unreadable, or the install can be neither
            finished (a staged file is missing or changed) nor undone (a copy in
            ``DIR.prev`` is); the files are left as they are for the operator.
    """
    places = places_of(rules_file)
    if not os.path.isfile(places.journal):
        return None
    try:
        with _locked(places):
            done = _recover(places)
    except OSError as exc:
        raise RulesSyncError(
            exc.filename or places.journal,
            f"cannot recover the unfinished rules install: {exc.strerror or exc}",
        ) from None
    if done is not None:
        logger.warning("%s: %s", rules_file, done)
    return done


def _recover(places: Places) -> str | None:
    """``recover`` under the lock (the journal may be gone by then)."""
    doc = _load(places.journal)
    if doc is None:
        return None
    journal = Journal.from_doc(doc, places.journal)
    manifest = _load(places.manifest)
    if manifest is not None and manifest.get("journal") == journal.mark:
        _clean(places)  # it completed: only its state was left
        return None
    data = _staged(journal, places)
    if data is not None:
        _roll_forward(journal, data, places)
        done = f"finished the unfinished install of rules tree {journal.digest[:12]}"
    else:
        _roll_back(journal, places)
        done = (
            f"rolled back the unfinished install of rules tree {journal.digest[:12]} "
            "(its staged files are missing or changed)"
        )
    return done


def _plan(tree: RulesTree, places: Places, current: Iterable[str]) -> tuple[Journal, set[str]]:
    """The journal of installing ``tree`` over the running tree, and the old tree's paths.

    Raises:
        RulesSyncError: a file of the new tree would replace one that is not part of
            the running tree, or a directory, or leads out of the tree.
    """
    old_paths = _old_tree(places, current)
    files: dict[str, Entry] = {rel: _hash(data) for rel, data in tree.files.items()}
    old: dict[str, Entry] = {}
    for rel in sorted(old_paths | set(files)):
        try:
            path = _path(places.root, rel)
        except RulesSyncError:
            if rel in files:
                raise
            logger.info("%s: leads out of the tree, so a sync leaves it alone", rel)
            continue
        entry = _entry(path)[0]
        if rel not in old_paths and entry not in (None, files[rel]):
            raise RulesSyncError(
                path,
                "is not part of the running rules tree, and the master's tree has a file of "
                "that name: not replaced (move it away, or include it in the rules)",
            )
        old[rel] = entry
    remove = [rel for rel in sorted(old_paths - set(files)) if old.get(rel) is not None]
    mark = secrets.token_hex(16)
    return Journal(tree.digest, files, remove, old, mark), old_paths & set(old)


def _back_up(journal: Journal, places: Places, old_paths: Iterable[str]) -> None:
    """Copy the old tree's files to ``DIR.prev`` (links as links), fsynced."""
    touched = {places.prev}
    for rel in old_paths:
        entry = journal.old.get(rel)
        if entry is None:
            continue
        path = _path(places.prev, rel)
        data = None if entry.startswith("link:") else _read(_path(places.root, rel))
        if data is not None and _hash(data) != entry:
            raise RulesSyncError(_path(places.root, rel), "changed while the sync read it: retry")
        _put_entry(path, entry, data)
        touched.add(os.path.dirname(path))
    for directory in sorted(touched):
        _fsync_dir(directory)


def _stage(tree: RulesTree, places: Places) -> None:
    """The new tree in ``.DIR.probepair-sync/NAME.new``, fsynced: what recovery finishes from."""
    shutil.rmtree(places.staged, ignore_errors=True)
    touched = {places.state}
    for rel, data in tree.files.items():
        path = _path(places.staged, rel)
        _put(path, data)
        touched.add(os.path.dirname(path))
    for directory in sorted(touched, reverse=True):
        _fsync_dir(directory)


def install_tree(tree: RulesTree, rules_file: str, current: Iterable[str] = ()) -> str:
    """Replace the files of ``rules_file``'s tree by ``tree``'s; return where the old ones are.

    ``tree`` must have been compiled (``check_compiles``). ``current`` are the relative
    paths of the running tree; other files in the directory are never touched. An
    earlier install that did not complete is finished first (``recover``).

    Raises:
        RulesSyncError: a file of the new tree would replace a file that is not part of
            the running tree, or a write failed (the old tree is then put back, or, if
            even that fails, left for ``recover`` at the next start or sync).
    """
    tree = placed(tree, rules_file)
    places = places_of(rules_file)
    try:
        with _locked(places):
            done = _recover(places)
            if done is not None:
                logger.warning("%s: %s", rules_file, done)
            journal, old_paths = _plan(tree, places, current)
            os.makedirs(places.prev, exist_ok=True)
            _stage(tree, places)
            _back_up(journal, places, sorted(old_paths))
            _write(places.journal, journal.to_doc())
            try:
                _roll_forward(journal, tree.files, places)
            except OSError as exc:
                logger.error(
                    "%s: the install failed (%s): putting the old tree back", rules_file, exc
                )
                _roll_back(journal, places)
                raise
    except OSError as exc:
        raise RulesSyncError(
            exc.filename or places.root, f"cannot write the synced tree: {exc.strerror or exc}"
        ) from None
    return places.prev
