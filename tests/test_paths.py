"""Default paths of the control socket and the spool: never the current directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from probepair.config import paths
from probepair.config.props import load
from probepair.probe import spool_path

HOME = Path("/home/op")


@pytest.mark.parametrize(
    ("env", "euid", "socket", "spool"),
    [
        # systemd's RuntimeDirectory= / StateDirectory= win (the first of a list)
        ({"RUNTIME_DIRECTORY": "/run/pp:/run/other", "STATE_DIRECTORY": "/var/lib/pp",
          "XDG_RUNTIME_DIR": "/run/user/0"}, 0, "/run/pp/a.sock", "/var/lib/pp/a.saf"),
        ({}, 0, "/run/probepair/a.sock", "/var/lib/probepair/a.saf"),
        ({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000,
         "/run/user/1000/probepair/a.sock", "/home/op/.local/state/probepair/a.saf"),
        ({"XDG_RUNTIME_DIR": "/run/user/1000", "XDG_STATE_HOME": "/srv/state"}, 1000,
         "/run/user/1000/probepair/a.sock", "/srv/state/probepair/a.saf"),
        # no runtime dir for this user: the socket joins the spool; relative XDG values
        # are ignored, as the XDG spec says
        ({"XDG_RUNTIME_DIR": "rel", "XDG_STATE_HOME": "rel"}, 1000,
         "/home/op/.local/state/probepair/a.sock", "/home/op/.local/state/probepair/a.saf"),
    ],
)
def test_defaults(env: dict[str, str], euid: int, socket: str, spool: str) -> None:
    assert str(paths.control_socket("a", env, euid, HOME)) == socket
    assert str(paths.spool_file("a", env, euid, HOME)) == spool


def test_probe_spool_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    props = load([("test", {"Name": "p1"})])
    assert spool_path(props, create=True) == str(tmp_path / "state" / "p1.saf")
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    explicit = load([("test", {"SAFFileName": "/x/y.saf"})])
    assert spool_path(explicit) == "/x/y.saf"
