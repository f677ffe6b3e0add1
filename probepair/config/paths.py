"""Default places for the control socket and the store-and-forward spool.

Never the current directory: a probe started from another directory (or by a unit
with no WorkingDirectory) would otherwise lose its spool and its ``status`` socket.

- Under systemd, ``RuntimeDirectory=`` and ``StateDirectory=`` set
  ``$RUNTIME_DIRECTORY`` and ``$STATE_DIRECTORY`` (a colon-separated list when the unit
  names several: the first is ours).
- Otherwise, as root: ``/run/probepair`` and ``/var/lib/probepair`` (FHS).
- Otherwise, as a user: ``$XDG_RUNTIME_DIR/probepair`` and ``$XDG_STATE_HOME/probepair``
  (default ``~/.local/state/probepair``); without ``$XDG_RUNTIME_DIR`` the socket goes
  to the state directory too.

The rules take the environment, user id and home as arguments (tests give them); the
``default_*`` functions read them from the process and create the directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

APP: Final = "probepair"


def _systemd(env: Mapping[str, str], name: str) -> Path | None:
    first = env.get(name, "").split(":", 1)[0]
    return Path(first) if first else None


def state_dir(env: Mapping[str, str], euid: int, home: Path) -> Path:
    """Where the spool goes by default."""
    given = _systemd(env, "STATE_DIRECTORY")
    if given is not None:
        return given
    if euid == 0:
        return Path("/var/lib") / APP
    xdg = env.get("XDG_STATE_HOME", "")
    return (Path(xdg) if xdg.startswith("/") else home / ".local" / "state") / APP


def runtime_dir(env: Mapping[str, str], euid: int, home: Path) -> Path:
    """Where the control socket goes by default."""
    given = _systemd(env, "RUNTIME_DIRECTORY")
    if given is not None:
        return given
    if euid == 0:
        return Path("/run") / APP
    xdg = env.get("XDG_RUNTIME_DIR", "")
    return Path(xdg) / APP if xdg.startswith("/") else state_dir(env, euid, home)


def control_socket(name: str, env: Mapping[str, str], euid: int, home: Path) -> Path:
    """The default ``ControlSocket`` of probe ``name``."""
    return runtime_dir(env, euid, home) / f"{name}.sock"


def spool_file(name: str, env: Mapping[str, str], euid: int, home: Path) -> Path:
    """The default ``SAFFileName`` of probe ``name``."""
    return state_dir(env, euid, home) / f"{name}.saf"


def _process() -> tuple[Mapping[str, str], int, Path]:
    try:
        home = Path.home()
    except RuntimeError:  # no HOME and no passwd entry: only root's defaults make sense
        home = Path("/nonexistent")
    return os.environ, os.geteuid(), home


def default_control_socket(name: str, *, create: bool = False) -> str:
    """``control_socket`` for this process; ``create`` makes its directory (mode 0700)."""
    path = control_socket(name, *_process())
    if create:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return str(path)


def default_spool(name: str, *, create: bool = False) -> str:
    """``spool_file`` for this process; ``create`` makes its directory (mode 0700)."""
    path = spool_file(name, *_process())
    if create:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return str(path)
