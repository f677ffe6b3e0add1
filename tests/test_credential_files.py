"""Credential files (secret, postgres password, nats creds, metrics token): owner and mode.

Owner checks against another uid need root to chown; as a user, a file we do not own
cannot be made, so the owner rule is tested through ``_refuse_access`` with a fake stat.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from probepair.config import props
from probepair.config.secret import (
    SECRET_FILES,
    _refuse_access,
    check_secret_files,
    read_metrics_token,
)
from probepair.errors import ConfigError


def _file(tmp_path: Path, name: str, mode: int, text: str = "tok-123\n") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("name", "mode", "ok"),
    [
        ("SinkPasswordFile", 0o600, True),
        ("SinkPasswordFile", 0o640, True),  # the service group may read it
        ("SinkPasswordFile", 0o660, False),  # ... not write it
        ("SinkPasswordFile", 0o644, False),
        ("SinkCredentialsFile", 0o600, True),
        ("SinkCredentialsFile", 0o640, False),
        ("MetricsTokenFile", 0o400, True),
        ("MetricsTokenFile", 0o604, False),
    ],
)
def test_credential_file_modes(tmp_path: Path, name: str, mode: int, ok: bool) -> None:
    path = _file(tmp_path, "cred", mode)
    p = props.load([("conf/x.props", {name: str(path)})])
    if ok:
        check_secret_files(p, {name: "conf/x.props"})
        return
    fix = "640" if name == "SinkPasswordFile" else "600"
    with pytest.raises(ConfigError, match=(
            rf"^conf/x.props: {name}: {re.escape(repr(str(path)))} has mode {mode:04o}, "
            rf"expected .*: chmod {fix} ")):
        check_secret_files(p, {name: "conf/x.props"})


def test_a_file_of_another_user_is_refused_naming_it() -> None:
    st = os.stat_result((0o100600, 0, 0, 1, os.geteuid() + 1, 0, 0, 0, 0, 0))
    with pytest.raises(ConfigError, match=(
            rf"^p: SinkPasswordFile: '/x' belongs to uid {os.geteuid() + 1}, expected the "
            rf"probe's user \(uid {os.geteuid()}\) or root: chown")):
        _refuse_access(st, None, "/x", "SinkPasswordFile", "p")
    root_owned = os.stat_result((0o100600, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    _refuse_access(root_owned, None, "/x", "SinkPasswordFile", "p")  # root: accepted


def test_every_secret_bearing_file_property_is_checked() -> None:
    assert set(SECRET_FILES) == {
        "SharedSecretFile", "SinkPasswordFile", "SinkCredentialsFile", "MetricsTokenFile",
        "FeedTLSKey"}
    assert set(SECRET_FILES) <= set(props.NAMES)


def test_metrics_auth_bearer_needs_a_token_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^conf/x.props: MetricsAuth: bearer needs "
                                          r"MetricsTokenFile"):
        props.load([("conf/x.props", {"MetricsAuth": "bearer"})])
    with pytest.raises(ConfigError, match=r"^conf/x.props: MetricsAuth: expected one of none, "
                                          r"bearer, got 'basic'$"):
        props.load([("conf/x.props", {"MetricsAuth": "basic"})])
    token = _file(tmp_path, "token", 0o600)
    p = props.load([("conf/x.props", {"MetricsAuth": "bearer", "MetricsTokenFile": str(token)})])
    assert read_metrics_token(p) == b"tok-123"
    assert read_metrics_token(props.load()) == b""
    token.chmod(0o644)
    with pytest.raises(ConfigError, match=r"has mode 0644"):
        read_metrics_token(p, {"MetricsTokenFile": "conf/x.props"})
    token.chmod(0o600)
    token.write_text("\n")
    with pytest.raises(ConfigError, match=r"^conf/x.props: MetricsTokenFile: .* is empty"):
        read_metrics_token(p, {"MetricsTokenFile": "conf/x.props"})


def test_errors_about_a_credential_file_never_quote_its_content(tmp_path: Path) -> None:
    secret = "hunter2-" + "z" * 40
    path = _file(tmp_path, "pw", 0o666, secret)
    p = props.load([("conf/x.props", {"SinkPasswordFile": str(path)})])
    with pytest.raises(ConfigError) as info:
        check_secret_files(p, {})
    assert secret not in str(info.value)
