"""Installing a synced rules tree in any layout: the tree's files only, each atomically.

OMNIbus keeps ``syslog.props``, ``syslog.rules``, its includes, the log and the spool in
``$OMNIHOME/probes/<arch>/``; a sync replaces the rules tree's files there and nothing
else, keeps the replaced ones in ``<arch>.prev/``, and a crash at any point is finished
or undone at the next start: the tree is then the old one or the new one, never a mix.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from probepair.config import props as props_mod
from probepair.rules import load_rules
from probepair.rulesync import install
from probepair.rulesync.install import install_tree, places_of, recover
from probepair.rulesync.pull import status_approval, sync_once
from probepair.rulesync.tree import (
    ArchiveRefused,
    RulesSyncError,
    RulesTree,
    check_compiles,
    pack,
    read_tree,
)

SECRET = b"a rules sync secret of enough length"
MASTER_MAIN = 'table sites = "sites.lookup"\ninclude "include/common.rules"\n'
COMMON = '@Summary = "v2: " + $Line\n@Location = lookup($Line, sites)\n'
OLD_MAIN = 'include "include/old.rules"\n'
OLD_INCLUDE = '@Summary = "v1: " + $Line\n'
# What OMNIbus keeps beside the rules (and another probe's rules, sharing the directory).
FOREIGN = {
    "syslog.props": b"Mode: slave\nRulesFile: syslog.rules\n",
    "syslog.log": b"2025-01-01 probe started\n",
    "syslog.saf": b"\x00\x01spooled alerts\xff",
    "mttrapd.rules": b'@Summary = "a trap"\n',
    "include/notes.txt": b"the include directory is the operator's too\n",
}
OLD_MTIME_NS = 1_600_000_000 * 10**9  # a fixed past mtime: any write would change it


class Crash(BaseException):
    """The process dies here: nothing after runs, no cleanup of ours (not an OSError)."""


def master_tree(tmp_path: Path) -> RulesTree:
    root = tmp_path / "master"
    (root / "include").mkdir(parents=True)
    (root / "main.rules").write_text(MASTER_MAIN)
    (root / "include" / "common.rules").write_text(COMMON)
    (root / "sites.lookup").write_text("web1\tlondon\n")
    return tree_of(root / "main.rules")


def omnibus_slave(tmp_path: Path) -> Path:
    """``$OMNIHOME/probes/linux2x86/`` with syslog.rules, its include and the rest."""
    arch = tmp_path / "omnihome" / "probes" / "linux2x86"
    (arch / "include").mkdir(parents=True)
    for rel, data in FOREIGN.items():
        (arch / rel).write_bytes(data)
        os.utime(arch / rel, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    (arch / "syslog.rules").write_text(OLD_MAIN)
    (arch / "include" / "old.rules").write_text(OLD_INCLUDE)
    return arch / "syslog.rules"


def tree_of(rules_file: Path) -> RulesTree:
    return read_tree(str(rules_file), load_rules(rules_file).files)


def foreign_as_found(arch: Path, but: str = "") -> dict[str, tuple[bytes, int]]:
    """Each file that is not part of the rules tree: its bytes and its mtime."""
    return {rel: ((arch / rel).read_bytes(), (arch / rel).stat().st_mtime_ns)
            for rel in FOREIGN if rel != but}


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_the_omnibus_layout_installs_and_never_touches_the_other_files(tmp_path: Path) -> None:
    new = master_tree(tmp_path)
    rules = omnibus_slave(tmp_path)
    arch = rules.parent
    before = foreign_as_found(arch)
    check_compiles(new, str(rules))
    previous = install_tree(new, str(rules), tree_of(rules).files)

    assert previous == str(arch) + ".prev"
    assert tree_of(rules).digest == new.digest
    assert rules.read_text() == MASTER_MAIN  # the master's main.rules, as this RulesFile
    assert foreign_as_found(arch) == before  # bytes and mtime
    assert listing(arch) == sorted(
        [*FOREIGN, "syslog.rules", "include/common.rules", "sites.lookup"]
    )
    assert listing(Path(previous)) == ["include/old.rules", "syslog.rules"]
    assert sorted(os.listdir(arch.parent)) == [
        ".linux2x86.probepair-sync", "linux2x86", "linux2x86.prev"]
    assert tree_of(Path(previous) / "syslog.rules").files == {
        "syslog.rules": OLD_MAIN.encode(), "include/old.rules": OLD_INCLUDE.encode()}


def test_an_include_the_new_tree_drops_is_removed_and_kept_in_prev(tmp_path: Path) -> None:
    rules = omnibus_slave(tmp_path)
    install_tree(master_tree(tmp_path), str(rules), tree_of(rules).files)
    arch = rules.parent
    assert not (arch / "include" / "old.rules").exists()
    assert (arch / "include" / "notes.txt").read_bytes() == FOREIGN["include/notes.txt"]
    assert (Path(str(arch) + ".prev") / "include" / "old.rules").read_text() == OLD_INCLUDE
    # The next sync knows the installed tree from its manifest, even without the running
    # tree's list: the master's tree drops the table, and the table goes.
    smaller = RulesTree("main.rules", {"main.rules": b'include "include/common.rules"\n',
                                       "include/common.rules": b"@Summary = $Line\n"})
    install_tree(smaller, str(rules))
    assert not (arch / "sites.lookup").exists()
    assert (Path(str(arch) + ".prev") / "sites.lookup").read_text() == "web1\tlondon\n"
    assert tree_of(rules).digest == smaller.digest


def test_a_file_the_operator_edited_since_the_last_sync_is_not_removed(tmp_path: Path) -> None:
    rules = omnibus_slave(tmp_path)
    install_tree(master_tree(tmp_path), str(rules), tree_of(rules).files)
    # The operator stops using the include and the table by hand, and edits the table.
    rules.write_text("@Summary = $Line\n")
    (rules.parent / "sites.lookup").write_text("web1\tmine now\n")
    install_tree(RulesTree("main.rules", {"main.rules": b'@Summary = "v3"\n'}), str(rules),
                 tree_of(rules).files)
    assert (rules.parent / "sites.lookup").read_text() == "web1\tmine now\n"
    assert not (rules.parent / "include" / "common.rules").exists()  # as the sync left it


def test_a_master_file_named_like_a_file_outside_the_running_tree_is_refused(
        tmp_path: Path) -> None:
    """A master whose tree carries ``syslog.props`` cannot overwrite the slave's props."""
    rules = omnibus_slave(tmp_path)
    arch = rules.parent
    before = foreign_as_found(arch)
    hostile = RulesTree("main.rules", {"main.rules": b"@Summary = $Line\n",
                                       "syslog.props": b"Mode: master\n"})
    archive = pack(hostile, SECRET)
    with pytest.raises(RulesSyncError, match=(
            r"/linux2x86/syslog\.props: is not part of the running rules tree, and the "
            r"master's tree has a file of that name: not replaced")):
        sync_once("http://peer/rules", str(rules), SECRET, tree_of(rules),
                  fetch=lambda url: archive, approve=status_approval(hostile.digest, "s"))
    assert foreign_as_found(arch) == before
    assert rules.read_text() == OLD_MAIN
    assert not os.path.exists(places_of(str(rules)).journal)


def test_a_hostile_archive_is_still_refused_in_the_omnibus_layout(tmp_path: Path) -> None:
    rules = omnibus_slave(tmp_path)
    arch = rules.parent
    before = foreign_as_found(arch)
    new = master_tree(tmp_path)
    good = pack(new, SECRET)
    tampered = good.replace(b'"main":"main.rules"', b'"main":"syslog.props"')
    with pytest.raises(ArchiveRefused, match=r"signature does not match"):
        sync_once("http://peer/rules", str(rules), SECRET, tree_of(rules),
                  fetch=lambda url: tampered, approve=lambda tree: None)
    # Includes under a directory that is a symbolic link out of the tree: nothing written.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (arch / "include" / "notes.txt").unlink()
    (arch / "include" / "old.rules").unlink()
    (arch / "include").rmdir()
    (arch / "include").symlink_to(outside)
    rules.write_text("@Summary = $Line\n")
    with pytest.raises(RulesSyncError, match=r"'include/common\.rules' leads out of .* through "
                                             r"a symbolic link: refused"):
        install_tree(new, str(rules), tree_of(rules).files)
    assert os.listdir(outside) == []
    assert foreign_as_found(arch, but="include/notes.txt") == {
        rel: v for rel, v in before.items() if rel != "include/notes.txt"}


def crash_after(monkeypatch: pytest.MonkeyPatch, calls: int,
                exc: Callable[[], BaseException] = Crash) -> None:
    """``os.replace`` works ``calls`` times, then the process 'dies' (or fails once) there."""
    real = os.replace
    left = [calls]

    def replace(src: str, dst: str) -> None:
        left[0] -= 1
        if left[0] == -1:
            raise exc()
        real(src, dst)

    monkeypatch.setattr(install.os, "replace", replace)


def every_crash_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      damage: Callable[[Path], None]) -> set[str]:
    """Crash a fresh install at each ``os.replace`` in turn, ``damage`` the state, then
    recover as a start does; the tree digests found afterwards."""
    new = master_tree(tmp_path)
    found = set()
    for n in range(100):
        rules = omnibus_slave(tmp_path / f"crash{n}")
        old = tree_of(rules)
        before = foreign_as_found(rules.parent)
        crash_after(monkeypatch, n)
        try:
            install_tree(new, str(rules), old.files)
        except Crash:
            pass
        else:
            assert n > 5, "the crash points were never reached"
            return found
        finally:
            monkeypatch.undo()
        damage(rules)
        recover(str(rules))
        assert not os.path.exists(places_of(str(rules)).journal)
        assert not [p for p in os.listdir(rules.parent) if p.endswith(".probepair-new")]
        assert foreign_as_found(rules.parent) == before
        digest = tree_of(rules).digest
        assert digest in (old.digest, new.digest), f"a mix after a crash at replace {n}"
        found.add("old" if digest == old.digest else "new")
    raise AssertionError("the install never completed")


def test_a_crash_at_any_point_is_finished_at_the_next_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before the journal is written nothing of the tree has changed (the old tree);
    # after it, the staged files are whole and the install is finished (the new one).
    assert every_crash_point(tmp_path, monkeypatch, lambda rules: None) == {"old", "new"}


def test_a_crash_with_a_damaged_staged_tree_is_rolled_back_from_prev(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def damage(rules: Path) -> None:
        staged = Path(places_of(str(rules)).staged) / "include" / "common.rules"
        if staged.exists():
            staged.write_text("@Summary = \"half written\"\n")

    assert every_crash_point(tmp_path, monkeypatch, damage) == {"old"}


def test_recovery_says_what_it_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    new = master_tree(tmp_path)
    rules = omnibus_slave(tmp_path)
    crash_after(monkeypatch, 6)  # 3 staged, 2 copies to .prev, the journal: then the tree
    with pytest.raises(Crash):
        install_tree(new, str(rules), tree_of(rules).files)
    monkeypatch.undo()
    assert recover(str(rules)) == (
        f"finished the unfinished install of rules tree {new.digest[:12]}")
    assert "syslog.rules: finished the unfinished install of rules tree" in caplog.text
    assert recover(str(rules)) is None  # nothing left to do


def test_a_failed_write_puts_the_old_tree_back_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = omnibus_slave(tmp_path)
    old = tree_of(rules)
    crash_after(monkeypatch, 7, lambda: OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(RulesSyncError, match=r"cannot write the synced tree: No space left"):
        install_tree(master_tree(tmp_path), str(rules), old.files)
    monkeypatch.undo()
    assert tree_of(rules).digest == old.digest
    assert not os.path.exists(places_of(str(rules)).journal)


def test_a_probe_recovers_an_unfinished_install_when_it_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from probepair.probe import Probe

    new = master_tree(tmp_path)
    rules = omnibus_slave(tmp_path)
    crash_after(monkeypatch, 7)
    with pytest.raises(Crash):
        install_tree(new, str(rules), tree_of(rules).files)
    monkeypatch.undo()
    props = props_mod.load([("test", {"RulesFile": str(rules), "SinkType": "stdout"})])
    probe = Probe(props, wall_clock=lambda: 0.0)
    assert probe.rules_digest == new.digest
