"""The rules tree archive: digest, signature, compile from memory, install, sync_once.

Installing in a shared directory, and crashes mid-way: ``test_rulesinstall.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from probepair.failover.wire import config_digest
from probepair.rules import load_rules
from probepair.rulesync.install import install_tree
from probepair.rulesync.pull import heartbeat_approval, status_approval, sync_once
from probepair.rulesync.tree import (
    MAGIC,
    ArchiveRefused,
    RulesSyncError,
    RulesTree,
    check_compiles,
    pack,
    read_tree,
    unpack,
)

SECRET = b"a rules sync secret of enough length"
MAIN = 'table sites = "sites.lookup"\ndefault = "nowhere"\ninclude "lib/common.rules"\n'
COMMON = '@Summary = "v2: " + $Line\n@Identifier = $Line\n@Location = lookup($Line, sites)\n'


def write_tree(root: Path, main: str = MAIN, name: str = "main.rules") -> Path:
    (root / "lib").mkdir(parents=True, exist_ok=True)
    (root / name).write_text(main)
    (root / "lib" / "common.rules").write_text(COMMON)
    (root / "sites.lookup").write_text("web1\tlondon\n")
    return root / name


def tree_of(rules_file: Path) -> RulesTree:
    return read_tree(str(rules_file), load_rules(rules_file).files)


def test_the_digest_ignores_where_the_tree_lives_and_the_main_files_name(tmp_path: Path) -> None:
    a = tree_of(write_tree(tmp_path / "a" / "rules"))
    b = tree_of(write_tree(tmp_path / "b" / "elsewhere", name="probe.rules"))
    assert sorted(a.files) == ["lib/common.rules", "main.rules", "sites.lookup"]
    assert a.digest == b.digest
    (tmp_path / "b" / "elsewhere" / "sites.lookup").write_text("web1\tparis\n")
    assert tree_of(tmp_path / "b" / "elsewhere" / "probe.rules").digest != a.digest


def test_pack_and_unpack_round_trip_and_refuse_tampering(tmp_path: Path) -> None:
    tree = tree_of(write_tree(tmp_path / "rules"))
    archive = pack(tree, SECRET)
    assert archive.startswith(MAGIC)
    assert unpack(archive, SECRET) == tree
    other = pack(RulesTree(tree.main, {**tree.files, "lib/common.rules": b"@Summary = $Line\n"}),
                 SECRET)
    tampered = archive.split(b"\n", 2)[1] + b"\n" + other.split(b"\n", 2)[2]
    tampered = MAGIC + tampered  # the master's signature over a changed tree
    with pytest.raises(ArchiveRefused, match=r"^x: signature does not match: tampered with"):
        unpack(tampered, SECRET, "x")
    with pytest.raises(ArchiveRefused, match="signature does not match"):
        unpack(archive, b"another secret", "x")
    body = archive.split(b"\n", 2)[2]
    with pytest.raises(ArchiveRefused, match=r"^x: not a probepair rules archive \(unsigned"):
        unpack(body, SECRET, "x")
    with pytest.raises(ArchiveRefused, match=r"^x: no signature line: unsigned archive refused$"):
        unpack(MAGIC + body, SECRET, "x")
    with pytest.raises(ArchiveRefused, match=r"^x: no SharedSecret is set"):
        unpack(archive, b"", "x")
    with pytest.raises(RulesSyncError, match=r"^/rules: no SharedSecret is set"):
        pack(tree, b"")


def test_a_signed_archive_with_an_unsafe_path_is_refused() -> None:
    evil = RulesTree("main.rules", {"main.rules": b"", "../../etc/passwd": b"x"})
    with pytest.raises(RulesSyncError, match=r"'\.\./\.\./etc/passwd' lies outside"):
        pack(evil, SECRET)
    import hashlib
    import hmac

    import orjson

    body = orjson.dumps({"main": "main.rules", "digest": evil.digest,
                         "files": {"main.rules": "", "../../etc/passwd": "eA=="}})
    mac = hmac.new(SECRET, MAGIC + body, hashlib.sha256).hexdigest().encode()
    with pytest.raises(ArchiveRefused, match=r"unsafe or missing path in the archive: '\.\./"):
        unpack(MAGIC + mac + b"\n" + body, SECRET)


def test_a_tree_that_does_not_compile_here_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    tree = tree_of(write_tree(tmp_path / "m"))
    broken = RulesTree(tree.main, {**tree.files, "lib/common.rules": b"@Summary = nope($Line)\n"})
    target = write_tree(tmp_path / "s", main='@Summary = "v1"\n')
    with pytest.raises(RulesSyncError, match=r"do not compile here: .*common\.rules:1:12"):
        check_compiles(broken, str(target))
    missing = RulesTree(tree.main, {tree.main: tree.files[tree.main]})
    with pytest.raises(RulesSyncError, match=r"not in the synced tree"):
        check_compiles(missing, str(target))


def test_install_replaces_the_trees_files_and_keeps_the_previous_ones(tmp_path: Path) -> None:
    master = tree_of(write_tree(tmp_path / "m" / "rules"))
    slave_file = tmp_path / "s" / "rules" / "probe.rules"
    slave_file.parent.mkdir(parents=True)
    slave_file.write_text('@Summary = "v1: " + $Line\n')
    old = tree_of(slave_file)
    check_compiles(master, str(slave_file))
    previous = install_tree(master, str(slave_file), old.files)
    assert previous == str(tmp_path / "s" / "rules.prev")
    assert (Path(previous) / "probe.rules").read_text() == '@Summary = "v1: " + $Line\n'
    assert slave_file.read_text() == MAIN
    assert tree_of(slave_file).digest == master.digest
    assert sorted(os.listdir(tmp_path / "s")) == [".rules.probepair-sync", "rules", "rules.prev"]
    assert sorted(os.listdir(tmp_path / "s" / ".rules.probepair-sync")) == [
        "probe.rules.lock", "probe.rules.manifest"]
    program = load_rules(slave_file)
    assert program.run  # the installed tree loads from disk


def test_sync_once_installs_then_reports_nothing_to_do(tmp_path: Path) -> None:
    master = tree_of(write_tree(tmp_path / "m"))
    archive = pack(master, SECRET)
    ok = status_approval(master.digest, "http://peer/status")
    slave_file = tmp_path / "s" / "rules" / "probe.rules"
    slave_file.parent.mkdir(parents=True)
    slave_file.write_text('@Summary = "v1"\n')
    outcome = sync_once("http://peer/rules", str(slave_file), SECRET, tree_of(slave_file),
                        fetch=lambda url: archive, approve=ok)
    assert outcome.changed and outcome.previous is not None
    again = sync_once("http://peer/rules", str(slave_file), SECRET, tree_of(slave_file),
                      fetch=lambda url: archive, approve=ok)
    assert (again.changed, again.digest) == (False, outcome.digest)
    with pytest.raises(RulesSyncError, match=r"^RulesFile: is '': there is no rules tree"):
        sync_once("u", "", SECRET, None, fetch=lambda url: archive, approve=ok)


def test_an_old_signed_archive_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    """No rollback: a validly signed archive of another tree than the master's is refused."""
    old = tree_of(write_tree(tmp_path / "m"))
    old_archive = pack(old, SECRET, "01020304")
    slave_file = tmp_path / "s" / "rules" / "probe.rules"
    slave_file.parent.mkdir(parents=True)
    slave_file.write_text('@Summary = "v2"\n')
    current = tree_of(slave_file)
    for approve, said in (
        (status_approval(current.digest, "http://peer/status"), "http://peer/status reports"),
        (heartbeat_approval(config_digest(bytes.fromhex("01020304"), current.digest), b""),
         "the master's latest heartbeat announces"),
    ):
        with pytest.raises(ArchiveRefused, match=(
                rf"^http://peer/rules: archive refused: its tree {old.digest[:12]} is not the "
                rf"one {said}")):
            sync_once("http://peer/rules", str(slave_file), SECRET, current,
                      fetch=lambda url: old_archive, approve=approve)
        assert slave_file.read_text() == '@Summary = "v2"\n'
        assert not (tmp_path / "s" / "rules.prev").exists()
    # the heartbeat's digest with the settings the archive states: accepted
    approve = heartbeat_approval(config_digest(bytes.fromhex("01020304"), old.digest), b"")
    assert sync_once("http://peer/rules", str(slave_file), SECRET, current,
                     fetch=lambda url: old_archive, approve=approve).changed


def test_a_symlink_out_of_the_tree_is_never_served(tmp_path: Path) -> None:
    outside = tmp_path / "shadow"
    outside.write_text("root:secret-hash\n")
    root = tmp_path / "rules"
    root.mkdir()
    (root / "main.rules").write_text('table t = "t.lookup"\n@Summary = lookup($Line, t)\n')
    (root / "t.lookup").symlink_to(outside)
    tree = tree_of(root / "main.rules")
    assert tree.outside == ("t.lookup",)
    with pytest.raises(RulesSyncError, match=r"^/rules: 't.lookup' is a symbolic link out of"):
        pack(tree, SECRET)
    # a link that stays inside the tree is fine
    (root / "t.lookup").unlink()
    (root / "real.lookup").write_text("a\tb\n")
    (root / "t.lookup").symlink_to(root / "real.lookup")
    assert pack(tree_of(root / "main.rules"), SECRET).startswith(MAGIC)
