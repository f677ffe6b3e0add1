"""The shared secret: refusals, SharedSecretFile's mode check, redaction, `probepair secret`."""

from __future__ import annotations

import logging
import os
import re
import struct
from pathlib import Path

import pytest

from probepair import cli
from probepair.config import props
from probepair.config.propsfile import read_props_file
from probepair.config.secret import (
    MIN_SECRET_BYTES,
    load_secret,
    new_secret,
    others_may_access,
    weakness,
    write_secret_file,
)
from probepair.errors import ConfigError

GOOD = "5f0c9a1e7b3d2c4a6e8f0b1d3c5a7e9f1b3d5c7a9e0f2b4d6c8a0e1f3b5d7c9a"
PAIR = {"Mode": "master", "PeerHost": "10.0.0.2", "PeerPort": 5600}
HINT = ("put the output of 'probepair secret' in a SharedSecretFile (the same on both "
        "probes), or set AllowInsecureHeartbeats: true to start anyway")
ROOT = Path(__file__).resolve().parents[1]


def secret_file(tmp_path: Path, text: str = GOOD, mode: int = 0o600) -> Path:
    path = tmp_path / "secret"
    write_secret_file(str(path), text)
    os.chmod(path, mode)
    return path


def resolve(*sources: tuple[str, dict[str, object]]) -> props.Props:
    return load_secret(props.load(sources), props.origins(sources))


def refusal(*sources: tuple[str, dict[str, object]]) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(*sources)
    return str(info.value)


# --- what is weak ----------------------------------------------------------------------


def test_new_secret_is_64_random_hex_characters_and_strong() -> None:
    first, second = new_secret(), new_secret()
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert first != second
    assert weakness(first) is None


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("", "none"),
        ("s3", "2 bytes"),
        ("x", "1 byte"),
        ("a" * 31, "31 bytes"),
        ("é" * 15 + "a", "31 bytes"),  # bytes, not characters
        ("CHANGE-ME-to-the-same-long-random-secret-on-both-hosts",
         "a placeholder (it contains 'CHANGE-ME')"),
        ("please changeme 0123456789abcdef0123456789", "a placeholder (it contains 'CHANGEME')"),
        ("secret", "a placeholder (a well-known word)"),
        (" Password ", "a placeholder (a well-known word)"),
        ("<redacted>", "a placeholder (a well-known word)"),
        ("0" * 64, "a short pattern repeated"),
        ("password" * 4, "a short pattern repeated"),
        ("a1b2" * 10, "a short pattern repeated"),
    ],
)
def test_weakness(secret: str, problem: str) -> None:
    assert weakness(secret) == problem
    if secret.strip():
        assert secret.strip() not in problem  # never the secret itself


def test_a_long_non_repeating_secret_is_strong() -> None:
    assert weakness("correct horse battery staple, and more words") is None
    assert weakness("x" * (MIN_SECRET_BYTES - 1) + "y") is None


# --- refusals: one line naming the file and the property -------------------------------


def test_empty_secret_is_refused_naming_where_mode_was_set() -> None:
    assert refusal(("conf/m.props", PAIR)) == (
        "conf/m.props: SharedSecret: Mode 'master' signs heartbeats with it: expected a random "
        f"secret of at least 32 bytes, got none; {HINT}")


def test_short_secret_is_refused_naming_its_source() -> None:
    assert refusal(("conf/m.props", PAIR), ("command line", {"SharedSecret": "e2e-secret"})) == (
        "command line: SharedSecret: Mode 'master' signs heartbeats with it: expected a random "
        f"secret of at least 32 bytes, got 10 bytes; {HINT}")


def test_placeholder_is_refused_and_the_shipped_one_too() -> None:
    placeholder = "CHANGE-ME-to-the-same-long-random-secret-on-both-hosts"
    message = refusal(("s.props", {**PAIR, "Mode": "slave", "SharedSecret": placeholder}))
    assert message == (
        "s.props: SharedSecret: Mode 'slave' signs heartbeats with it: expected a random "
        f"secret of at least 32 bytes, got a placeholder (it contains 'CHANGE-ME'); {HINT}")
    assert placeholder not in message.replace("'CHANGE-ME'", "")


def test_repeated_pattern_is_refused() -> None:
    assert "got a short pattern repeated;" in refusal(("p", {**PAIR, "SharedSecret": "ab" * 32}))


def test_weak_secret_in_a_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "short")
    assert refusal(("conf/m.props", {**PAIR, "SharedSecretFile": str(path)})) == (
        "conf/m.props: SharedSecretFile: Mode 'master' signs heartbeats with it: expected a "
        f"random secret of at least 32 bytes in {str(path)!r}, got 5 bytes; {HINT}")
    empty = secret_file(tmp_path, "")
    assert "got none;" in refusal(("conf/m.props", {**PAIR, "SharedSecretFile": str(empty)}))


def test_both_secret_and_secret_file_is_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path)
    assert refusal(("m.props", {**PAIR, "SharedSecret": GOOD}),
                   ("command line", {"SharedSecretFile": str(path)})) == (
        "command line: SharedSecretFile: SharedSecret is set too (in m.props); keep only one")


def test_standard_mode_needs_no_secret() -> None:
    assert resolve(("t", {"SharedSecret": "x"})).SharedSecret == "x"
    assert resolve().SharedSecret == ""


def test_a_good_inline_secret_starts() -> None:
    assert resolve(("m.props", {**PAIR, "SharedSecret": GOOD})).SharedSecret == GOOD


# --- SharedSecretFile -------------------------------------------------------------------


def test_secret_file_is_read_without_its_line_break(tmp_path: Path) -> None:
    path = secret_file(tmp_path)
    assert path.read_text() == GOOD + "\n"
    p = resolve(("m.props", {**PAIR, "SharedSecretFile": str(path)}))
    assert p.SharedSecret == GOOD
    assert p.SharedSecretFile == str(path)
    os.chmod(path, 0o400)  # what systemd's LoadCredential= gives the service
    assert resolve(("m.props", {**PAIR, "SharedSecretFile": str(path)})).SharedSecret == GOOD


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660, 0o620, 0o601, 0o666])
def test_secret_file_open_to_group_or_others_is_refused_naming_the_mode(
    tmp_path: Path, mode: int
) -> None:
    path = secret_file(tmp_path, mode=mode)
    message = refusal(("conf/m.props", {**PAIR, "SharedSecretFile": str(path)}))
    assert message == (
        f"conf/m.props: SharedSecretFile: {str(path)!r} has mode {mode:04o}, expected 0600 "
        f"or stricter (no access for group or others): chmod 600 {path}")
    assert GOOD not in message


def acl(*entries: tuple[int, int, int]) -> bytes:
    """A system.posix_acl_access xattr value (version 2, then tag, perm, id)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
NONE = 0xFFFFFFFF


def test_acl_of_a_systemd_credential_is_private_to_the_service() -> None:
    # LoadCredential=: root's file, mode 0400, plus "user:<service>:r--"; stat shows 0440.
    credential = acl((USER_OBJ, 4, NONE), (USER, 4, 998), (GROUP_OBJ, 0, NONE),
                     (MASK, 4, NONE), (OTHER, 0, NONE))
    assert not others_may_access(0o440, credential, uid=998)
    assert others_may_access(0o440, credential, uid=1000)  # read by someone else
    group = acl((USER_OBJ, 6, NONE), (GROUP_OBJ, 4, NONE), (MASK, 4, NONE), (OTHER, 0, NONE))
    assert others_may_access(0o640, group, uid=0)
    named_group = acl((USER_OBJ, 6, NONE), (GROUP_OBJ, 0, NONE), (GROUP, 4, 50),
                      (MASK, 4, NONE), (OTHER, 0, NONE))
    assert others_may_access(0o640, named_group, uid=0)
    masked = acl((USER_OBJ, 6, NONE), (USER, 4, 1234), (GROUP_OBJ, 4, NONE),
                 (MASK, 0, NONE), (OTHER, 0, NONE))  # after chmod 600: the mask is empty
    assert not others_may_access(0o600, masked, uid=0)
    other = acl((USER_OBJ, 6, NONE), (GROUP_OBJ, 0, NONE), (OTHER, 4, NONE))
    assert others_may_access(0o604, other, uid=0)
    assert not others_may_access(0o600, None, uid=0)
    assert others_may_access(0o620, None, uid=0)


def test_secret_file_with_a_service_acl_is_accepted(tmp_path: Path) -> None:
    path = secret_file(tmp_path, mode=0o400)
    me = os.geteuid()
    try:
        os.setxattr(path, "system.posix_acl_access", acl(
            (USER_OBJ, 4, NONE), (USER, 4, me), (GROUP_OBJ, 0, NONE), (MASK, 4, NONE),
            (OTHER, 0, NONE)))
    except OSError as exc:  # pragma: no cover - a filesystem without POSIX ACLs
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no POSIX ACLs on {tmp_path}: {exc}")
    assert path.stat().st_mode & 0o777 == 0o440
    assert resolve(("m.props", {**PAIR, "SharedSecretFile": str(path)})).SharedSecret == GOOD
    os.setxattr(path, "system.posix_acl_access", acl(
        (USER_OBJ, 4, NONE), (USER, 4, me + 1), (GROUP_OBJ, 0, NONE), (MASK, 4, NONE),
        (OTHER, 0, NONE)))
    assert refusal(("m.props", {**PAIR, "SharedSecretFile": str(path)})) == (
        f"m.props: SharedSecretFile: {str(path)!r} has mode 0440 and an ACL, expected 0600 "
        f"or stricter (no access for group or others): chmod 600 {path}")


def test_secret_file_problems(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert refusal(("cmd", {**PAIR, "SharedSecretFile": str(missing)})) == (
        f"cmd: SharedSecretFile: cannot read {str(missing)!r}: No such file or directory")
    assert refusal(("cmd", {**PAIR, "SharedSecretFile": str(tmp_path)})) == (
        f"cmd: SharedSecretFile: {str(tmp_path)!r} is not a regular file")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff" * 40)
    binary.chmod(0o600)
    assert refusal(("cmd", {**PAIR, "SharedSecretFile": str(binary)})) == (
        f"cmd: SharedSecretFile: {str(binary)!r} is not UTF-8 text, expected one line such "
        "as 'probepair secret' prints")
    big = secret_file(tmp_path, "x" * 5000)
    assert refusal(("cmd", {**PAIR, "SharedSecretFile": str(big)})) == (
        f"cmd: SharedSecretFile: {str(big)!r} is longer than 4096 bytes, expected one line")


def test_write_secret_file_makes_an_existing_file_private(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("old")
    path.chmod(0o644)
    write_secret_file(str(path), GOOD)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == GOOD + "\n"


# --- AllowInsecureHeartbeats ------------------------------------------------------------


def test_allow_insecure_starts_with_a_warning_that_never_shows_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="probepair.config.secret")
    p = resolve(("m.props", {**PAIR, "SharedSecret": "s3cr3t-value",
                             "AllowInsecureHeartbeats": True}))
    assert p.SharedSecret == "s3cr3t-value"
    assert caplog.messages == [
        "AllowInsecureHeartbeats is true and the secret is weak (12 bytes): anyone who can "
        "send to this probe's heartbeat port can forge heartbeats and acks"]
    caplog.clear()
    resolve(("m.props", {**PAIR, "AllowInsecureHeartbeats": "yes"}))
    assert caplog.messages == [
        "AllowInsecureHeartbeats is true and the secret is empty: anyone who can send to "
        "this probe's heartbeat port can forge heartbeats and acks"]
    caplog.clear()
    resolve(("m.props", {**PAIR, "SharedSecret": GOOD, "AllowInsecureHeartbeats": True}))
    assert caplog.messages == [
        "AllowInsecureHeartbeats is true: an empty, short or placeholder secret would not be "
        "refused; remove it once both probes have a SharedSecretFile"]
    assert GOOD not in caplog.text and "s3cr3t-value" not in caplog.text


# --- redaction --------------------------------------------------------------------------


def test_repr_and_rules_mapping_hide_the_secret() -> None:
    p = props.load([("t", {**PAIR, "SharedSecret": GOOD})])
    assert GOOD not in repr(p) and GOOD not in str(p)
    assert props.as_mapping(p)["SharedSecret"] == "<redacted>"  # what %SharedSecret reads
    assert props.as_mapping(props.load())["SharedSecret"] == ""


def test_errors_never_quote_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        props.load([("x.props", {"SharedSecret": [GOOD]})])
    assert str(info.value) == (
        "x.props: SharedSecret: expected a string, got a list (not shown: a secret)")
    # A file YAML rejects is read as OMNIbus lines; a bad line quotes a secret's name only.
    path = tmp_path / "bad.props"
    path.write_text(f'Mode : "master"\nRulesFile : "C:\\x"\nSharedSecret {GOOD}\n')
    with pytest.raises(ConfigError) as info:
        read_props_file(str(path))
    assert re.fullmatch(rf"{re.escape(str(path))}: line \d+: expected 'Name: value', "
                        r"got 'SharedSecret' and a value not shown", str(info.value))


def test_dumpprops_redacts_and_show_secrets_prints() -> None:
    p = props.load([("t", {**PAIR, "SharedSecret": GOOD})])
    out = props.dumpprops(p)
    assert GOOD not in out
    assert "SharedSecret: '<redacted>' # STRING (" in out
    assert f"SharedSecret: '{GOOD}' # STRING (" in props.dumpprops(p, show_secrets=True)
    # an empty secret is no secret: it shows as empty, so a missing one is visible
    assert "SharedSecret: '' # STRING (" in props.dumpprops(props.load())


def test_dumpprops_round_trip_keeps_the_secret_of_the_original_source(tmp_path: Path) -> None:
    original = tmp_path / "m.props"
    original.write_text(f"Mode: master\nPeerHost: 10.0.0.2\nPeerPort: 5600\n"
                        f"SharedSecret: '{GOOD}'\nBeatInterval: 0.5\n")
    sources: list[tuple[str, dict[str, object]]] = [
        (str(original), read_props_file(str(original)))]
    p = props.load(sources)
    dumped = tmp_path / "dumped.props"
    dumped.write_text(props.dumpprops(p, ["dumped"]))
    # The dump loads back (nothing in it is an error) and '<redacted>' sets nothing ...
    alone = props.load([(str(dumped), read_props_file(str(dumped)))])
    assert alone.BeatInterval == 0.5 and alone.SharedSecret == ""
    assert props.dumpprops(alone) == props.dumpprops(p).replace(
        "SharedSecret: '<redacted>'", "SharedSecret: ''")
    # ... so over the original source the secret stays the original's.
    both = sources + [(str(dumped), read_props_file(str(dumped)))]
    assert props.load(both) == p
    assert props.origins(both)["SharedSecret"] == str(original)
    assert props.origins(both)["BeatInterval"] == str(dumped)


def test_dumpprops_round_trip_with_a_secret_file(tmp_path: Path) -> None:
    path = secret_file(tmp_path)
    sources: list[tuple[str, dict[str, object]]] = [
        ("m.props", {**PAIR, "SharedSecretFile": str(path)})]
    p = props.load(sources)
    dumped = tmp_path / "dumped.props"
    dumped.write_text(props.dumpprops(p))
    again = [(str(dumped), read_props_file(str(dumped)))]
    assert props.load(again) == p
    assert resolve(*again).SharedSecret == GOOD


# --- the command line -------------------------------------------------------------------


def test_probepair_secret_prints_a_new_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["secret"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"[0-9a-f]{64}\n", out)
    assert cli.main(["secret"]) == 0
    assert capsys.readouterr().out != out


def test_cli_dumpprops_redacts_unless_show_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--dumpprops", "--mode", "master", "--peerhost", "h", "--peerport", "1",
            "--sharedsecret", GOOD]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert GOOD not in out
    assert "# secrets show as '<redacted>' (--show-secrets prints them)" in out.splitlines()
    assert cli.main([*argv, "--show-secrets"]) == 0
    shown = capsys.readouterr().out
    assert f"SharedSecret: '{GOOD}'" in shown and "<redacted>" not in shown
    # the redacted output is a props file the command line loads back
    dumped = tmp_path / "dumped.props"
    dumped.write_text(out)
    assert cli.main(["--dumpprops", "--props", str(dumped), "--sharedsecret", GOOD]) == 0
    assert capsys.readouterr().out == out


def test_shipped_pair_props_keep_the_secret_in_a_file() -> None:
    for name in ("master", "slave"):
        path = ROOT / "conf" / f"{name}.props"
        values = read_props_file(str(path))
        assert "SharedSecret" not in values
        assert values["SharedSecretFile"] == "/etc/probepair/secret"
        assert "AllowInsecureHeartbeats" not in values
    unit = (ROOT / "conf" / "systemd" / "probepair@.service").read_text()
    assert "\nLoadCredential=secret:/etc/probepair/secret\n" in unit
    assert "--sharedsecretfile %d/secret" in unit
